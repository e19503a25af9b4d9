//! Google's rules for a `StreamingRecognize` call, and the statuses (codes and messages as Google's)
//! for breaking them: message order, the recognition config, the per-request audio size, the stream
//! duration, the audio timeout and the "too fast" pacing limit.

use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
    recognition_config::AudioEncoding, StreamingRecognitionConfig,
};
use tonic::Status;
use voxgate_actors::audio::{AudioFormat, Encoding};

use super::synth::SynthEncoding;

/// Audio in the first request, or no config in it.
pub const MALORDERED_FIRST: &str =
    "Malordered Data Received. Send exactly one config, followed by audio data.";
/// A later request without audio (another config, or nothing).
pub const MALORDERED_LATER: &str = "Malordered Data Received. Expected audio but none was set. \
                                    Send exactly one config, followed by audio data.";
pub const AUDIO_TIMEOUT: &str = "Audio Timeout Error: Long duration elapsed without audio. \
                                 Audio should be sent close to real time.";
pub const TOO_FAST: &str = "Audio data is being streamed too fast. \
                            Please stream audio data approximately at real time.";
pub const UNAVAILABLE: &str = "The service is currently unavailable.";

/// `OUT_OF_RANGE` at the stream duration limit, naming the limit as Google does ("305 seconds").
pub fn stream_limit_status(limit: Duration) -> Status {
    Status::out_of_range(format!(
        "Exceeded maximum allowed stream duration of {} seconds.",
        format_secs(limit)
    ))
}

/// `INVALID_ARGUMENT` for a request whose audio exceeds the per-request limit.
pub fn oversize_status(limit: usize, got: usize) -> Status {
    Status::invalid_argument(format!(
        "Audio chunk can be of a maximum of {limit} bytes. Received audio of {got} bytes instead."
    ))
}

/// `305`, `1.5`, `0.25`: whole seconds without a fraction, others as short as exact.
pub fn format_secs(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}", duration.as_secs())
    } else {
        let text = format!("{secs:.3}");
        text.trim_end_matches('0').to_string()
    }
}

fn invalid_config(what: &str) -> Status {
    Status::invalid_argument(format!("Invalid recognition 'config': {what}"))
}

/// A config the emulator accepted: what the stream needs to know to recognise and to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedConfig {
    /// The synthetic codec's encoding, for the encodings it decodes (LINEAR16, MULAW); `None` for the
    /// others, which are accepted but yield no words.
    pub synth: Option<SynthEncoding>,
    pub sample_rate_hz: u32,
    pub channels: u16,
    pub language_code: String,
    pub interim_results: bool,
    pub single_utterance: bool,
    pub word_time_offsets: bool,
    pub word_confidence: bool,
    /// Bytes per second of audio: exact for uncompressed audio, nominal for compressed (as the
    /// gateway's own arithmetic), used for pacing and fault points.
    pub bytes_per_second: f64,
}

impl AcceptedConfig {
    /// Seconds of audio in `bytes`.
    pub fn audio_secs(&self, bytes: u64) -> f64 {
        bytes as f64 / self.bytes_per_second
    }
}

/// Checks the first request's config as Google does (the subset the emulator understands).
pub fn accept_config(streaming: &StreamingRecognitionConfig) -> Result<AcceptedConfig, Status> {
    let Some(config) = &streaming.config else {
        return Err(invalid_config("config is required."));
    };
    let encoding =
        AudioEncoding::try_from(config.encoding).map_err(|_| invalid_config("bad encoding.."))?;
    let (synth, gateway_encoding) = match encoding {
        AudioEncoding::Linear16 => (Some(SynthEncoding::Linear16), Some(Encoding::Linear16)),
        AudioEncoding::Mulaw => (Some(SynthEncoding::Mulaw), Some(Encoding::Mulaw)),
        AudioEncoding::Flac => (None, Some(Encoding::Flac)),
        AudioEncoding::Amr => (None, Some(Encoding::Amr)),
        AudioEncoding::AmrWb => (None, Some(Encoding::AmrWb)),
        AudioEncoding::OggOpus => (None, Some(Encoding::OggOpus)),
        AudioEncoding::WebmOpus => (None, Some(Encoding::WebmOpus)),
        AudioEncoding::SpeexWithHeaderByte => (None, None),
        // No header to read the encoding from; MP3 is v1p1beta1 only.
        AudioEncoding::EncodingUnspecified | AudioEncoding::Mp3 => {
            return Err(invalid_config("bad encoding.."));
        }
    };
    let rate = u32::try_from(config.sample_rate_hertz).unwrap_or(0);
    let rate_ok = match gateway_encoding {
        Some(e) => e.sample_rate_allowed(rate),
        None => rate == 16_000, // Speex wideband
    };
    if !rate_ok {
        return Err(invalid_config("bad sample rate hertz."));
    }
    let channels = match config.audio_channel_count {
        0 | 1 => 1u16,
        n @ 2..=8 => n as u16,
        _ => return Err(invalid_config("bad audio channel count.")),
    };
    if config.language_code.trim().is_empty() {
        return Err(invalid_config("language_code is required."));
    }
    let bytes_per_second = match gateway_encoding {
        Some(encoding) => {
            let format = AudioFormat {
                encoding,
                sample_rate_hz: rate,
            };
            let per_channel = format.bytes_per_second() as f64;
            if encoding.is_uncompressed() {
                per_channel * f64::from(channels)
            } else {
                per_channel
            }
        }
        None => 4_000.0,
    };
    Ok(AcceptedConfig {
        synth,
        sample_rate_hz: rate,
        channels,
        language_code: config.language_code.clone(),
        interim_results: streaming.interim_results,
        single_utterance: streaming.single_utterance,
        word_time_offsets: config.enable_word_time_offsets,
        word_confidence: config.enable_word_confidence,
        bytes_per_second,
    })
}

/// The "streamed too fast" rule: audio may lead the wall clock by `burst` plus
/// `(factor − 1) × elapsed`.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub burst: Duration,
    pub realtime_factor: f64,
}

impl Pacing {
    /// Whether `audio_secs` of audio received `elapsed` after the stream opened is too much.
    pub fn too_fast(&self, audio_secs: f64, elapsed: Duration) -> bool {
        audio_secs > self.burst.as_secs_f64() + self.realtime_factor * elapsed.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::RecognitionConfig;

    fn streaming(encoding: AudioEncoding, rate: i32, language: &str) -> StreamingRecognitionConfig {
        StreamingRecognitionConfig {
            config: Some(RecognitionConfig {
                encoding: encoding as i32,
                sample_rate_hertz: rate,
                language_code: language.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn limit_messages_name_the_configured_figure() {
        assert_eq!(format_secs(Duration::from_secs(305)), "305");
        assert_eq!(format_secs(Duration::from_millis(1500)), "1.5");
        assert_eq!(
            stream_limit_status(Duration::from_secs(305)).message(),
            "Exceeded maximum allowed stream duration of 305 seconds."
        );
    }

    #[test]
    fn configs_are_checked_like_google() {
        let ok = accept_config(&streaming(AudioEncoding::Linear16, 16_000, "en-US"));
        assert_eq!(ok.ok().map(|c| c.bytes_per_second), Some(32_000.0));
        for (config, what) in [
            (streaming(AudioEncoding::Linear16, 96_000, "en-US"), "rate"),
            (streaming(AudioEncoding::Linear16, 16_000, " "), "language"),
            (
                streaming(AudioEncoding::EncodingUnspecified, 16_000, "en-US"),
                "encoding",
            ),
            (streaming(AudioEncoding::Amr, 16_000, "en-US"), "AMR rate"),
            (StreamingRecognitionConfig::default(), "no config"),
        ] {
            let status = accept_config(&config).expect_err(what);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
        }
        let opus = accept_config(&streaming(AudioEncoding::OggOpus, 48_000, "en-US"));
        assert_eq!(opus.ok().map(|c| c.synth), Some(None));
    }

    #[test]
    fn pacing_allows_the_burst_then_the_factor() {
        let pacing = Pacing {
            burst: Duration::from_secs(10),
            realtime_factor: 2.0,
        };
        assert!(!pacing.too_fast(10.0, Duration::ZERO));
        assert!(pacing.too_fast(10.1, Duration::ZERO));
        assert!(!pacing.too_fast(30.0, Duration::from_secs(10)));
        assert!(pacing.too_fast(30.1, Duration::from_secs(10)));
    }
}
