//! Google's v2 rules for the first request of a `StreamingRecognize` call, and their statuses: the
//! recognizer name (its format, its location against the endpoint's, the implicit recognizer `_`,
//! as the emulator stores none) and the streaming config (`explicit_decoding_config` for headerless
//! audio, rate, channels, languages, voice-activity options). Order, size, pacing and the duration
//! limit are the stream's (`crate::stream`), shared with v1.

use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2::{
    explicit_decoding_config::AudioEncoding, recognition_config::DecodingConfig,
    StreamingRecognitionConfig,
};
use tonic::Status;
use voxgate_actors::audio::{AudioFormat, Encoding};

use crate::rules::{format_secs, AcceptedConfig};
use crate::synth::SynthEncoding;

/// `ABORTED` at the stream duration limit ("5 minutes" as Google words its default).
pub fn stream_limit_status(limit: Duration) -> Status {
    let limit = if limit == Duration::from_secs(300) {
        "5 minutes".to_string()
    } else {
        format!("{} seconds", format_secs(limit))
    };
    Status::aborted(format!("Max duration of {limit} reached for stream."))
}

/// `ABORTED` when the client sent nothing for the audio timeout.
pub const IDLE: &str = "Stream timed out after receiving no more client requests.";

/// A recognizer name's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizerName<'a> {
    pub project: &'a str,
    pub location: &'a str,
    pub recognizer: &'a str,
}

/// Parses `projects/{project}/locations/{location}/recognizers/{recognizer}`.
pub fn parse_recognizer(name: &str) -> Option<RecognizerName<'_>> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", project, "locations", location, "recognizers", recognizer]
            if [project, location, recognizer]
                .iter()
                .all(|p| !p.is_empty()) =>
        {
            Some(RecognizerName {
                project,
                location,
                recognizer,
            })
        }
        _ => None,
    }
}

/// Checks the recognizer of the first request against the endpoint's location; only the implicit
/// recognizer `_` exists (the emulator stores no recognizers).
pub fn check_recognizer(name: &str, location: &str) -> Result<(), Status> {
    let Some(parsed) = parse_recognizer(name) else {
        return Err(Status::invalid_argument(
            "Invalid resource field value in the request.",
        ));
    };
    if parsed.location != location {
        return Err(Status::invalid_argument(format!(
            "Expected resource location to be {location}, but found {} in resource name.",
            parsed.location
        )));
    }
    if parsed.recognizer != "_" {
        return Err(Status::not_found(format!(
            "Unable to find Recognizer {name}."
        )));
    }
    Ok(())
}

fn invalid(what: &str) -> Status {
    Status::invalid_argument(format!("Invalid RecognitionConfig: {what}"))
}

/// `en-us` → `en-US`, `zh-hant-tw` → `zh-Hant-TW`: BCP-47 case, as Google normalises tags.
pub fn normalise_language(tag: &str) -> String {
    tag.trim()
        .split(['-', '_'])
        .enumerate()
        .map(|(i, part)| match (i, part.len()) {
            (0, _) => part.to_ascii_lowercase(),
            (_, 2) => part.to_ascii_uppercase(),
            (_, 4) => {
                let lower = part.to_ascii_lowercase();
                let mut chars = lower.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            }
            _ => part.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// What the v2 config asks of the responses, beyond [`AcceptedConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseOptions {
    /// The languages given, normalised, in order (the first is reported unless detection says
    /// otherwise).
    pub languages: Vec<String>,
    pub voice_activity_events: bool,
    pub speech_timeouts: SpeechTimeouts,
}

/// `voice_activity_timeout`, in seconds of the stream's audio (`None`: not set).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpeechTimeouts {
    /// Close the stream if no speech has begun this far into it.
    pub start: Option<f64>,
    /// Close the stream if no speech begins again this long after speech ended.
    pub end: Option<f64>,
}

/// A protobuf duration in seconds; `None` when unset, zero or negative (no timeout).
fn positive_secs(duration: Option<&prost_types::Duration>) -> Option<f64> {
    let d = duration?;
    let secs = d.seconds as f64 + f64::from(d.nanos) / 1e9;
    (secs > 0.0).then_some(secs)
}

/// Checks the first request's streaming config as Google does for the implicit recognizer (whose
/// config must be complete).
pub fn accept_config(
    streaming: &StreamingRecognitionConfig,
) -> Result<(AcceptedConfig, ResponseOptions), Status> {
    let Some(config) = &streaming.config else {
        return Err(invalid("config is required."));
    };
    let explicit = match &config.decoding_config {
        Some(DecodingConfig::ExplicitDecodingConfig(explicit)) => Some(explicit),
        // Headers tell the encoding: accepted, but the synthetic codec reads headerless PCM only.
        Some(DecodingConfig::AutoDecodingConfig(_)) => None,
        None => return Err(invalid("a decoding config is required.")),
    };
    let (synth, rate, channels, bytes_per_second) = match explicit {
        None => (None, 16_000, 1, 32_000.0),
        Some(explicit) => {
            let encoding = AudioEncoding::try_from(explicit.encoding)
                .map_err(|_| invalid("unknown encoding."))?;
            let rate = u32::try_from(explicit.sample_rate_hertz).unwrap_or(0);
            let channels = match explicit.audio_channel_count {
                0 | 1 => 1u16,
                n @ 2..=8 => n as u16,
                _ => return Err(invalid("audio_channel_count must be 1 to 8.")),
            };
            let (synth, bytes_per_second) = decoding(encoding, rate, channels)?;
            (synth, rate, channels, bytes_per_second)
        }
    };
    let languages: Vec<String> = config
        .language_codes
        .iter()
        .map(|tag| normalise_language(tag))
        .collect();
    if languages.is_empty() || languages.iter().any(String::is_empty) {
        return Err(invalid("language_codes is required."));
    }
    let features = config.features.clone().unwrap_or_default();
    let streaming_features = streaming.streaming_features.unwrap_or_default();
    if streaming_features.voice_activity_timeout.is_some()
        && !streaming_features.enable_voice_activity_events
    {
        return Err(invalid(
            "voice_activity_timeout requires enable_voice_activity_events.",
        ));
    }
    let accepted = AcceptedConfig {
        synth,
        sample_rate_hz: rate,
        channels,
        language_code: languages[0].clone(),
        interim_results: streaming_features.interim_results,
        single_utterance: false,
        word_time_offsets: features.enable_word_time_offsets,
        word_confidence: features.enable_word_confidence,
        bytes_per_second,
    };
    let options = ResponseOptions {
        languages,
        voice_activity_events: streaming_features.enable_voice_activity_events,
        speech_timeouts: streaming_features
            .voice_activity_timeout
            .map(|t| SpeechTimeouts {
                start: positive_secs(t.speech_start_timeout.as_ref()),
                end: positive_secs(t.speech_end_timeout.as_ref()),
            })
            .unwrap_or_default(),
    };
    Ok((accepted, options))
}

/// What the emulator decodes for an explicit encoding at `rate` Hz, and the bytes per second.
fn decoding(
    encoding: AudioEncoding,
    rate: u32,
    channels: u16,
) -> Result<(Option<SynthEncoding>, f64), Status> {
    let gateway = match encoding {
        AudioEncoding::Linear16 => Some(Encoding::Linear16),
        AudioEncoding::Mulaw => Some(Encoding::Mulaw),
        AudioEncoding::Alaw => Some(Encoding::Alaw),
        AudioEncoding::Flac => Some(Encoding::Flac),
        AudioEncoding::Amr => Some(Encoding::Amr),
        AudioEncoding::AmrWb => Some(Encoding::AmrWb),
        AudioEncoding::OggOpus => Some(Encoding::OggOpus),
        AudioEncoding::WebmOpus => Some(Encoding::WebmOpus),
        AudioEncoding::Mp3
        | AudioEncoding::Mp4Aac
        | AudioEncoding::M4aAac
        | AudioEncoding::MovAac => None,
        AudioEncoding::Unspecified => return Err(invalid("encoding is required.")),
    };
    let rate_ok = match gateway {
        Some(e) => e.sample_rate_allowed(rate),
        None => (8_000..=48_000).contains(&rate),
    };
    if !rate_ok {
        return Err(invalid("bad sample_rate_hertz."));
    }
    let synth = match encoding {
        AudioEncoding::Linear16 => Some(SynthEncoding::Linear16),
        AudioEncoding::Mulaw => Some(SynthEncoding::Mulaw),
        AudioEncoding::Alaw => Some(SynthEncoding::Alaw),
        _ => None,
    };
    let bytes_per_second = match gateway {
        Some(encoding) => {
            let per_channel = AudioFormat {
                encoding,
                sample_rate_hz: rate,
            }
            .bytes_per_second() as f64;
            if encoding.is_uncompressed() {
                per_channel * f64::from(channels)
            } else {
                per_channel
            }
        }
        // The compressed containers: a nominal 128 kbit/s.
        None => 16_000.0,
    };
    Ok((synth, bytes_per_second))
}

#[cfg(test)]
mod tests;
