//! Audio encodings the gateway accepts and the arithmetic that turns bytes into milliseconds.
//!
//! Time in voxgate is measured on the *session clock*: milliseconds of audio since the first byte the
//! client sent. For the uncompressed encodings (LINEAR16, MULAW) a byte offset maps exactly to a time;
//! for the compressed ones the gateway cannot know the duration of a chunk without decoding it, so it
//! uses a nominal bit rate (documented in `docs/protocol.md`) for its bounds and acknowledgements only.
//!
//! - this file: [`Encoding`], [`AudioFormat`] and their arithmetic.
//! - [`mulaw`]: G.711 µ-law, the one codec for the engines, the emulator and the tools.
//! - [`alaw`]: G.711 A-law, its sibling.
//! - [`signature`]: [`SignatureCheck`], the check that container audio (FLAC, Ogg, WebM) starts
//!   with its container's signature.

pub mod alaw;
pub mod mulaw;
pub mod signature;

use serde::{Deserialize, Serialize};

pub use signature::{SignatureCheck, SignatureMismatch};

/// The audio encodings clients may send (`encoding` in `start`): Google Speech v1's, and v2's
/// `ALAW` (which v1 lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Encoding {
    Linear16,
    Mulaw,
    Alaw,
    Flac,
    OggOpus,
    WebmOpus,
    Amr,
    AmrWb,
}

impl Encoding {
    /// Every accepted encoding, in the order the docs list them.
    pub const ALL: [Encoding; 8] = [
        Encoding::Linear16,
        Encoding::Mulaw,
        Encoding::Alaw,
        Encoding::Flac,
        Encoding::OggOpus,
        Encoding::WebmOpus,
        Encoding::Amr,
        Encoding::AmrWb,
    ];

    /// The name used on the wire and in Google's enum.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Linear16 => "LINEAR16",
            Encoding::Mulaw => "MULAW",
            Encoding::Alaw => "ALAW",
            Encoding::Flac => "FLAC",
            Encoding::OggOpus => "OGG_OPUS",
            Encoding::WebmOpus => "WEBM_OPUS",
            Encoding::Amr => "AMR",
            Encoding::AmrWb => "AMR_WB",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(name: &str) -> Option<Encoding> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
    }

    /// Sample rates this encoding allows, as Google documents them.
    pub fn sample_rate_allowed(self, rate: u32) -> bool {
        match self {
            Encoding::Amr => rate == 8_000,
            Encoding::AmrWb => rate == 16_000,
            Encoding::OggOpus | Encoding::WebmOpus => {
                matches!(rate, 8_000 | 12_000 | 16_000 | 24_000 | 48_000)
            }
            _ => (8_000..=48_000).contains(&rate),
        }
    }

    /// Whether a byte offset maps exactly to a time (fixed bytes per sample).
    pub fn is_uncompressed(self) -> bool {
        self.sample_bytes().is_some()
    }

    /// Bytes of one sample of one channel, for the uncompressed encodings.
    pub fn sample_bytes(self) -> Option<usize> {
        match self {
            Encoding::Linear16 => Some(2),
            Encoding::Mulaw | Encoding::Alaw => Some(1),
            Encoding::Flac
            | Encoding::OggOpus
            | Encoding::WebmOpus
            | Encoding::Amr
            | Encoding::AmrWb => None,
        }
    }

    /// The bytes every stream of this encoding starts with (its container's signature), for the
    /// encodings that have one: FLAC `fLaC`, Ogg `OggS`, WebM/Matroska's EBML magic. Raw PCM,
    /// µ-law and AMR frames have none: any bytes are valid samples there.
    pub fn stream_signature(self) -> Option<&'static [u8]> {
        match self {
            Encoding::Flac => Some(b"fLaC"),
            Encoding::OggOpus => Some(b"OggS"),
            Encoding::WebmOpus => Some(&[0x1a, 0x45, 0xdf, 0xa3]),
            Encoding::Linear16
            | Encoding::Mulaw
            | Encoding::Alaw
            | Encoding::Amr
            | Encoding::AmrWb => None,
        }
    }
}

/// The format of one session's audio: what the client declared in `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub encoding: Encoding,
    pub sample_rate_hz: u32,
}

impl AudioFormat {
    /// Bytes of audio per second: exact for LINEAR16 (2 bytes/sample), MULAW and ALAW (1 byte/sample),
    /// nominal for compressed encodings (FLAC ≈ 60 % of LINEAR16, Opus/AMR at 32 kbit/s).
    pub fn bytes_per_second(self) -> u64 {
        let rate = u64::from(self.sample_rate_hz);
        match self.encoding {
            Encoding::Linear16 => rate * 2,
            Encoding::Mulaw | Encoding::Alaw => rate,
            Encoding::Flac => rate * 2 * 6 / 10,
            Encoding::OggOpus | Encoding::WebmOpus | Encoding::Amr | Encoding::AmrWb => 4_000,
        }
    }

    /// The most bytes one second of real-time audio of this format can take: exact for LINEAR16
    /// and MULAW; for compressed encodings the codec's highest bit rate plus container overhead
    /// (FLAC: LINEAR16 + 10 %, Opus: 510 kbit/s + 10 %), and never below the nominal rate of
    /// [`Self::bytes_per_second`] (AMR and AMR-WB top out below it). Input rate limits use it, so
    /// that no real-time client of any bit rate is ever taken for a fast one.
    pub fn max_bytes_per_second(self) -> u64 {
        let rate = u64::from(self.sample_rate_hz);
        match self.encoding {
            Encoding::Linear16 => rate * 2,
            Encoding::Mulaw | Encoding::Alaw => rate,
            Encoding::Flac => rate * 2 * 11 / 10,
            Encoding::OggOpus | Encoding::WebmOpus => 70_000,
            Encoding::Amr | Encoding::AmrWb => self.bytes_per_second(),
        }
    }

    /// Milliseconds of audio in `bytes` (rounded down).
    pub fn bytes_to_ms(self, bytes: u64) -> u64 {
        bytes * 1_000 / self.bytes_per_second()
    }

    /// Bytes in `ms` milliseconds of audio, rounded down to a whole sample for uncompressed audio.
    pub fn ms_to_bytes(self, ms: u64) -> u64 {
        let raw = ms * self.bytes_per_second() / 1_000;
        match self.encoding {
            Encoding::Linear16 => raw & !1,
            _ => raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input-rate ceilings the documents state (protocol.md's and security.md's "real time")
    /// are the ones `max_bytes_per_second` computes: FLAC and Opus at their top rate + 10 %.
    #[test]
    fn documented_real_time_ceilings_match_the_code() {
        let flac = AudioFormat {
            encoding: Encoding::Flac,
            sample_rate_hz: 16_000,
        };
        assert_eq!(flac.max_bytes_per_second(), 32_000 * 11 / 10);
        let opus = AudioFormat {
            encoding: Encoding::OggOpus,
            sample_rate_hz: 48_000,
        };
        let opus_over_top = opus.max_bytes_per_second() as f64 / (510_000.0 / 8.0);
        assert!((1.09..=1.11).contains(&opus_over_top), "{opus_over_top}");
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        for doc in ["protocol.md", "security.md"] {
            let text = std::fs::read_to_string(docs.join(doc)).unwrap_or_default();
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for claim in ["FLAC as LINEAR16 + 10 %", "Opus 510 kbit/s + 10 %"] {
                assert!(words.contains(claim), "docs/{doc} does not say `{claim}`");
            }
        }
    }

    #[test]
    fn linear16_16k_is_32_bytes_per_ms() {
        let f = AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        };
        assert_eq!(f.ms_to_bytes(100), 3_200);
        assert_eq!(f.bytes_to_ms(3_200), 100);
    }

    #[test]
    fn linear16_odd_rate_rounds_to_whole_samples() {
        let f = AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 44_100,
        };
        assert_eq!(f.ms_to_bytes(1) % 2, 0);
        assert_eq!(f.bytes_to_ms(88_200), 1_000);
    }

    #[test]
    fn encodings_parse_case_insensitively_and_reject_unknown() {
        assert_eq!(Encoding::parse("mulaw"), Some(Encoding::Mulaw));
        assert_eq!(Encoding::parse("OGG_OPUS"), Some(Encoding::OggOpus));
        assert_eq!(Encoding::parse("MP3"), None);
    }

    #[test]
    fn max_byte_rate_is_never_below_the_nominal_one() {
        for encoding in Encoding::ALL {
            for rate in [8_000, 16_000, 48_000] {
                let f = AudioFormat {
                    encoding,
                    sample_rate_hz: rate,
                };
                assert!(f.max_bytes_per_second() >= f.bytes_per_second(), "{f:?}");
            }
        }
    }

    #[test]
    fn container_encodings_have_a_signature_raw_ones_none() {
        assert_eq!(Encoding::OggOpus.stream_signature(), Some(&b"OggS"[..]));
        assert_eq!(Encoding::Flac.stream_signature(), Some(&b"fLaC"[..]));
        assert!(Encoding::WebmOpus.stream_signature().is_some());
        assert_eq!(Encoding::Linear16.stream_signature(), None);
        assert_eq!(Encoding::Mulaw.stream_signature(), None);
    }

    #[test]
    fn sample_rates_follow_google_rules() {
        assert!(Encoding::Linear16.sample_rate_allowed(16_000));
        assert!(!Encoding::Linear16.sample_rate_allowed(96_000));
        assert!(!Encoding::Amr.sample_rate_allowed(16_000));
        assert!(Encoding::AmrWb.sample_rate_allowed(16_000));
    }
}
