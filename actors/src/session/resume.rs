//! Resuming a session after its client's connection dropped (issue #15, `docs/protocol.md`
//! "Resume"): what a resume token carries ([`ResumeState`]), the seam to whoever signs and checks
//! tokens ([`ResumeTokens`], the server's token secret — the actors never see it), and the
//! session's side of it ([`ResumeClock`]): the offset that puts a resumed pipeline's clock at the
//! point the client resumed from, the result count that continues, and when a fresh token is due.
//!
//! No store is involved: the token is the session's state, so any instance sharing the secret can
//! resume it. A resumed connection starts a fresh pipeline whose clock 0 is the client's `from_ms`;
//! the client re-sends its audio from there, so the finals it missed are recognised again, and
//! nothing before `from_ms` can come back twice.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::audio::Encoding;
use crate::messages::Transcript;
use crate::protocol::native::StartRequest;
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// The configuration of a session in a token: the fields of `start`, checked again on resume
/// (a token is only as trustworthy as the limits of the instance that reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeConfig {
    pub encoding: String,
    pub sample_rate_hz: u32,
    pub language_code: String,
    pub interim_results: bool,
    pub enable_automatic_punctuation: bool,
    pub model: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
    pub single_utterance: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternative_language_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub profanity_filter: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpointing: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denoise: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voice_activity_events: bool,
}

impl ResumeConfig {
    pub fn of(config: &StartConfig) -> ResumeConfig {
        ResumeConfig {
            encoding: config.format.encoding.as_str().to_string(),
            sample_rate_hz: config.format.sample_rate_hz,
            language_code: config.language_code.clone(),
            interim_results: config.interim_results,
            enable_automatic_punctuation: config.enable_automatic_punctuation,
            model: config.model.clone(),
            phrases: config.phrases.clone(),
            single_utterance: config.single_utterance,
            alternative_language_codes: config.features.alternative_language_codes.clone(),
            profanity_filter: config.features.profanity_filter,
            endpointing: config.features.endpointing.map(|e| e.as_str().to_string()),
            denoise: config.features.denoise,
            voice_activity_events: config.features.voice_activity_events,
        }
    }

    /// The configuration again, validated as a `start` would be.
    pub fn to_start_config(&self, max_phrases: usize) -> Result<StartConfig, Rejection> {
        // Several languages travel as `language_codes` (a `start` may not give both fields).
        let (language_code, language_codes) = if self.alternative_language_codes.is_empty() {
            (Some(self.language_code.clone()), None)
        } else {
            let all = std::iter::once(&self.language_code)
                .chain(&self.alternative_language_codes)
                .cloned()
                .collect();
            (None, Some(all))
        };
        StartRequest {
            encoding: self.encoding.clone(),
            sample_rate_hz: self.sample_rate_hz,
            language_code,
            language_codes,
            profanity_filter: Some(self.profanity_filter),
            endpointing: self.endpointing.clone(),
            denoise: Some(self.denoise),
            voice_activity_events: Some(self.voice_activity_events),
            interim_results: Some(self.interim_results),
            enable_automatic_punctuation: Some(self.enable_automatic_punctuation),
            model: Some(self.model.clone()),
            phrases: Some(self.phrases.clone()),
            single_utterance: Some(self.single_utterance),
            ..StartRequest::default()
        }
        .validate(max_phrases)
    }
}

/// What a resume token says about its session (the signer adds the key id and the expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// The session id, kept across connections.
    pub sid: String,
    pub cfg: ResumeConfig,
    /// The session clock (ms of audio since the session's first byte) at the end of the last
    /// final delivered: where the client resumes from.
    pub fin: u64,
    /// Final results delivered up to `fin`: the numbering continues from here.
    pub res: u64,
}

/// Why a resume token was refused; each is its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefusal {
    /// Not a token, or not one this version reads.
    Malformed,
    /// Its signature is not the secret's (changed, forged, or another deployment's).
    Forged,
    /// Past its expiry (`[session] resume_window_secs` after it was issued).
    Expired,
    /// Issued to another API key than the one connecting.
    OtherKey,
}

impl ResumeRefusal {
    pub fn rejection(self) -> Rejection {
        let (code, message) = match self {
            ResumeRefusal::Malformed => (ErrorCode::ResumeMalformed, "the resume token is malformed"),
            ResumeRefusal::Forged => (
                ErrorCode::ResumeForged,
                "the resume token's signature is not valid (changed, or signed with another secret)",
            ),
            ResumeRefusal::Expired => (
                ErrorCode::ResumeExpired,
                "the resume token has expired; start a new session",
            ),
            ResumeRefusal::OtherKey => (
                ErrorCode::ResumeOtherKey,
                "the resume token belongs to another API key",
            ),
        };
        Rejection::new(code, message)
    }
}

/// Signs and checks resume tokens for one connection (which knows the connecting key).
pub trait ResumeTokens {
    /// A token for `state`, valid for the resume window from now.
    fn mint(&self, state: &ResumeState) -> String;
    /// The state in `token`, if it is genuine, unexpired and of the connecting key.
    fn open(&self, token: &str) -> Result<ResumeState, ResumeRefusal>;
    /// How long a token is valid.
    fn window(&self) -> Duration;
}

/// Whether a session in `encoding` can be resumed: the client must cut its audio at any
/// millisecond, which only uncompressed audio allows.
pub fn resumable_encoding(encoding: Encoding) -> bool {
    encoding.is_uncompressed()
}

/// A session's resume bookkeeping on one connection: the clock offset of its pipeline, the
/// finals delivered and when the client last got a token.
#[derive(Debug, Clone)]
pub struct ResumeClock {
    /// The session clock at this connection's pipeline clock 0 (the resumed `from_ms`; 0 for a
    /// new session).
    offset_ms: u64,
    /// End of the last final delivered, on the session clock.
    final_ms: u64,
    /// Finals delivered in the whole session.
    results: u64,
    /// Finals delivered before this connection (the pipeline counts its own).
    results_base: u64,
    /// When the client's newest token was minted.
    minted_at: Option<Instant>,
}

impl ResumeClock {
    /// A new session: clock and numbering from 0.
    pub fn new() -> ResumeClock {
        ResumeClock::resumed(0, 0)
    }

    /// A session resumed at `from_ms`, `results` finals delivered before.
    pub fn resumed(from_ms: u64, results: u64) -> ResumeClock {
        ResumeClock {
            offset_ms: from_ms,
            final_ms: from_ms,
            results,
            results_base: results,
            minted_at: None,
        }
    }

    pub fn offset_ms(&self) -> u64 {
        self.offset_ms
    }

    pub fn final_ms(&self) -> u64 {
        self.final_ms
    }

    pub fn results(&self) -> u64 {
        self.results
    }

    pub fn results_base(&self) -> u64 {
        self.results_base
    }

    /// `transcript` from the pipeline's clock onto the session's; a final advances the clock.
    pub fn deliver(&mut self, mut transcript: Transcript) -> Transcript {
        let offset = self.offset_ms;
        transcript.start_ms += offset;
        transcript.end_ms += offset;
        for word in &mut transcript.words {
            word.start_ms += offset;
            word.end_ms += offset;
        }
        if transcript.is_final {
            self.results += 1;
            self.final_ms = self.final_ms.max(transcript.end_ms);
        }
        transcript
    }

    /// The state a token minted now carries.
    pub fn state(&self, session_id: &str, config: &ResumeConfig) -> ResumeState {
        ResumeState {
            sid: session_id.to_string(),
            cfg: config.clone(),
            fin: self.final_ms,
            res: self.results,
        }
    }

    /// Whether the client's newest token is older than half the window (so it is refreshed long
    /// before it expires, even in a session without finals).
    pub fn token_due(&self, window: Duration, now: Instant) -> bool {
        self.minted_at
            .is_none_or(|at| now.saturating_duration_since(at) >= window / 2)
    }

    pub fn minted(&mut self, now: Instant) {
        self.minted_at = Some(now);
    }
}

impl Default for ResumeClock {
    fn default() -> Self {
        ResumeClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WordTiming;
    use crate::testing::start_config;

    fn result(is_final: bool, start_ms: u64, end_ms: u64) -> Transcript {
        Transcript {
            is_final,
            transcript: "alpha".into(),
            confidence: 0.9,
            stability: 0.0,
            start_ms,
            end_ms,
            words: vec![WordTiming {
                word: "alpha".into(),
                start_ms,
                end_ms,
                confidence: 0.9,
            }],
            language_code: "en-US".into(),
        }
    }

    #[test]
    fn a_resumed_clock_shifts_results_and_counts_on() {
        let mut clock = ResumeClock::resumed(12_000, 4);
        let interim = clock.deliver(result(false, 100, 400));
        assert_eq!((interim.start_ms, interim.end_ms), (12_100, 12_400));
        assert_eq!((clock.final_ms(), clock.results()), (12_000, 4));
        let last = clock.deliver(result(true, 100, 900));
        assert_eq!((last.start_ms, last.end_ms), (12_100, 12_900));
        assert_eq!(
            (last.words[0].start_ms, last.words[0].end_ms),
            (12_100, 12_900)
        );
        assert_eq!((clock.final_ms(), clock.results()), (12_900, 5));
        let cfg = ResumeConfig::of(&start_config());
        let state = clock.state("s-1", &cfg);
        assert_eq!(
            (state.fin, state.res, state.sid.as_str()),
            (12_900, 5, "s-1")
        );
    }

    #[test]
    fn a_new_clock_is_the_pipeline_clock() {
        let mut clock = ResumeClock::new();
        let r = clock.deliver(result(true, 100, 900));
        assert_eq!((r.start_ms, r.end_ms, clock.results()), (100, 900, 1));
    }

    #[test]
    fn the_configuration_survives_a_token_and_is_checked_again() {
        let config = start_config();
        let cfg = ResumeConfig::of(&config);
        let json = serde_json::to_string(&cfg).unwrap_or_default();
        let back: Option<ResumeConfig> = serde_json::from_str(&json).ok();
        assert_eq!(back.map(|c| c.to_start_config(10)), Some(Ok(config)));
        // The features a session asked for travel too.
        let featured = StartConfig {
            features: crate::protocol::Features {
                alternative_language_codes: vec!["fr-FR".into(), "de-DE".into()],
                profanity_filter: true,
                endpointing: Some(crate::protocol::Endpointing::Supershort),
                denoise: true,
                voice_activity_events: true,
            },
            ..start_config()
        };
        let json = serde_json::to_string(&ResumeConfig::of(&featured)).unwrap_or_default();
        let back: Option<ResumeConfig> = serde_json::from_str(&json).ok();
        assert_eq!(back.map(|c| c.to_start_config(10)), Some(Ok(featured)));
        let bad = ResumeConfig {
            encoding: "NOPE".into(),
            ..cfg.clone()
        };
        assert_eq!(
            bad.to_start_config(10).map_err(|r| r.code),
            Err(ErrorCode::UnsupportedEncoding)
        );
        let many = ResumeConfig {
            phrases: vec!["a".into(); 3],
            ..cfg
        };
        assert_eq!(
            many.to_start_config(2).map_err(|r| r.code),
            Err(ErrorCode::InvalidConfig)
        );
    }

    #[test]
    fn tokens_are_refreshed_at_half_the_window() {
        let window = Duration::from_secs(120);
        let start = Instant::now();
        let mut clock = ResumeClock::new();
        assert!(clock.token_due(window, start));
        clock.minted(start);
        assert!(!clock.token_due(window, start + Duration::from_secs(59)));
        assert!(clock.token_due(window, start + Duration::from_secs(60)));
    }

    #[test]
    fn every_refusal_has_its_code() {
        let codes: Vec<ErrorCode> = [
            ResumeRefusal::Malformed,
            ResumeRefusal::Forged,
            ResumeRefusal::Expired,
            ResumeRefusal::OtherKey,
        ]
        .iter()
        .map(|r| r.rejection().code)
        .collect();
        assert_eq!(
            codes,
            [
                ErrorCode::ResumeMalformed,
                ErrorCode::ResumeForged,
                ErrorCode::ResumeExpired,
                ErrorCode::ResumeOtherKey
            ]
        );
    }
}
