//! The recognition features a session may ask for that not every upstream honours
//! ([`Features`], part of [`super::StartConfig`]), what each upstream honours ([`Honoured`], data
//! declared by each recognizer factory), and the check between them: a feature the configured
//! upstream cannot honour is refused with `invalid_config` naming the field, never silently
//! dropped.
//!
//! Which upstream honours what (docs/protocol.md has the same table for clients):
//!
//! | field | Google v1 | Google v2 | offline engine |
//! |---|---|---|---|
//! | `language_codes` (more than one) | `alternative_language_codes` | `language_codes` | no |
//! | `profanity_filter` | yes | yes | no |
//! | `endpointing` | no | `endpointing_sensitivity` | no |
//! | `denoise` | no | `denoiser_config` | no |
//! | `voice_activity_events` | no | `enable_voice_activity_events` | no |
//! | `encoding: "ALAW"` | no (v1 has no A-law) | `ALAW` | decoded by voxgate |

use super::{ErrorCode, Rejection, StartConfig};
use crate::audio::Encoding;

/// Most languages one session may list: Google v2 takes up to 3 for most models (v1's
/// `alternative_language_codes` also takes up to 3 besides the primary one); more is an error
/// rather than a silent cut.
pub const MAX_LANGUAGE_CODES: usize = 3;

/// How eagerly the upstream ends an utterance at a pause (Google v2's endpointing sensitivity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpointing {
    /// No optimisation for latency (the upstream's default).
    Standard,
    /// Single sentences.
    Short,
    /// Single words or a short command ("yes", "check balance").
    Supershort,
}

impl Endpointing {
    /// Every accepted value, in the order the docs list them.
    pub const ALL: [Endpointing; 3] = [
        Endpointing::Standard,
        Endpointing::Short,
        Endpointing::Supershort,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpointing::Standard => "standard",
            Endpointing::Short => "short",
            Endpointing::Supershort => "supershort",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(name: &str) -> Option<Endpointing> {
        Endpointing::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
    }
}

/// What a session asked for beyond what every upstream does. The default asks for nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    /// Languages the speech may be in besides `language_code` (which stays the first and the
    /// default); each result says which one was heard.
    pub alternative_language_codes: Vec<String>,
    /// Replace profanities with their first letter and asterisks.
    pub profanity_filter: bool,
    /// `None`: the upstream's default.
    pub endpointing: Option<Endpointing>,
    /// Denoise the audio before recognition.
    pub denoise: bool,
    /// Send `speech_started` / `speech_ended` as the upstream detects voice activity.
    pub voice_activity_events: bool,
}

/// What an upstream honours of [`Features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Honoured {
    /// The upstream's name, for the refusal's message.
    pub upstream: &'static str,
    pub several_languages: bool,
    pub profanity_filter: bool,
    pub endpointing: bool,
    pub denoise: bool,
    /// Voice-activity events.
    pub voice_activity: bool,
    /// A-law audio (`encoding: "ALAW"`).
    pub alaw: bool,
}

impl Honoured {
    /// An upstream that honours none of the features (the offline engine).
    pub const NONE: Honoured = Honoured {
        upstream: "the offline engine",
        several_languages: false,
        profanity_filter: false,
        endpointing: false,
        denoise: false,
        voice_activity: false,
        // Decoded to linear samples like MULAW (`crate::audio::alaw`).
        alaw: true,
    };
    /// Google Speech-to-Text v1.
    pub const GOOGLE_V1: Honoured = Honoured {
        upstream: "Google Speech-to-Text v1",
        several_languages: true,
        profanity_filter: true,
        endpointing: false,
        denoise: false,
        // v1 has the fields, but voxgate sends them to v2 only (the emulator's v1 sends no
        // events, so a v1 path could not be tested): refused rather than untested.
        voice_activity: false,
        // Not in v1's encodings; v1 is sent MULAW as it is, so A-law is not transcoded for it.
        alaw: false,
    };
    /// Google Speech-to-Text v2: all of them.
    pub const GOOGLE_V2: Honoured = Honoured {
        upstream: "Google Speech-to-Text v2",
        several_languages: true,
        profanity_filter: true,
        endpointing: true,
        denoise: true,
        voice_activity: true,
        alaw: true,
    };

    /// `Ok` if this upstream honours everything `config` asks for; otherwise `invalid_config`
    /// naming the first field it cannot honour, and the upstream.
    pub fn check(&self, config: &StartConfig) -> Result<(), Rejection> {
        let asked = &config.features;
        let refused = if config.format.encoding == Encoding::Alaw && !self.alaw {
            Some("encoding ALAW")
        } else if !asked.alternative_language_codes.is_empty() && !self.several_languages {
            Some("language_codes (more than one language)")
        } else if asked.profanity_filter && !self.profanity_filter {
            Some("profanity_filter")
        } else if asked.endpointing.is_some() && !self.endpointing {
            Some("endpointing")
        } else if asked.denoise && !self.denoise {
            Some("denoise")
        } else if asked.voice_activity_events && !self.voice_activity {
            Some("voice_activity_events")
        } else {
            None
        };
        match refused {
            None => Ok(()),
            Some(field) => Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{field} is not honoured by this server's upstream ({}); remove it",
                    self.upstream
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFormat;

    fn config(features: Features) -> StartConfig {
        StartConfig {
            format: AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 16_000,
            },
            language_code: "en-US".to_string(),
            interim_results: true,
            enable_automatic_punctuation: false,
            model: String::new(),
            phrases: Vec::new(),
            single_utterance: false,
            features,
            frame_ms: None,
        }
    }

    #[test]
    fn each_upstream_refuses_exactly_what_it_cannot_honour_naming_the_field() {
        let asks = [
            (
                "language_codes",
                Features {
                    alternative_language_codes: vec!["fr-FR".to_string()],
                    ..Features::default()
                },
                [false, true, true],
            ),
            (
                "profanity_filter",
                Features {
                    profanity_filter: true,
                    ..Features::default()
                },
                [false, true, true],
            ),
            (
                "endpointing",
                Features {
                    endpointing: Some(Endpointing::Short),
                    ..Features::default()
                },
                [false, false, true],
            ),
            (
                "denoise",
                Features {
                    denoise: true,
                    ..Features::default()
                },
                [false, false, true],
            ),
            (
                "voice_activity_events",
                Features {
                    voice_activity_events: true,
                    ..Features::default()
                },
                [false, false, true],
            ),
        ];
        let upstreams = [Honoured::NONE, Honoured::GOOGLE_V1, Honoured::GOOGLE_V2];
        for (field, features, honoured_by) in asks {
            let config = config(features);
            for (upstream, honoured) in upstreams.iter().zip(honoured_by) {
                match upstream.check(&config) {
                    Ok(()) => assert!(honoured, "{field} accepted by {upstream:?}"),
                    Err(rejection) => {
                        assert!(!honoured, "{field} refused by {upstream:?}");
                        assert_eq!(rejection.code, ErrorCode::InvalidConfig);
                        assert!(
                            rejection.message.starts_with(field),
                            "{}",
                            rejection.message
                        );
                    }
                }
            }
        }
        for upstream in upstreams {
            assert_eq!(upstream.check(&config(Features::default())), Ok(()));
        }
        let mut alaw = config(Features::default());
        alaw.format = AudioFormat {
            encoding: Encoding::Alaw,
            sample_rate_hz: 8_000,
        };
        for (upstream, honoured) in upstreams.iter().zip([true, false, true]) {
            match upstream.check(&alaw) {
                Ok(()) => assert!(honoured, "ALAW accepted by {upstream:?}"),
                Err(rejection) => {
                    assert!(!honoured, "ALAW refused by {upstream:?}");
                    assert_eq!(rejection.code, ErrorCode::InvalidConfig);
                    assert!(rejection.message.starts_with("encoding ALAW"));
                }
            }
        }
    }

    #[test]
    fn endpointing_names_round_trip() {
        for e in Endpointing::ALL {
            assert_eq!(Endpointing::parse(e.as_str()), Some(e));
            assert_eq!(Endpointing::parse(&e.as_str().to_uppercase()), Some(e));
        }
        assert_eq!(Endpointing::parse("fast"), None);
    }
}
