//! Deepgram's live-API query string (`/v1/listen?model=…&encoding=…`) mapped onto a
//! [`StartConfig`] and the few options only the dialect acts on, and the dialect's settings
//! (`[dialects.deepgram]`). A query the gateway cannot honour is refused before the upgrade with
//! HTTP 400, as Deepgram refuses it ([`QueryRefusal`]); unknown keys and values that change nothing
//! voxgate does (`tag`, `mip_opt_out`, …) are accepted, as the SDKs expect.

use serde::Deserialize;

use crate::audio::{AudioFormat, Encoding};
use crate::protocol::dialect::quote;
use crate::protocol::native::{is_language_tag, is_model_name, MAX_PHRASE_CHARS};
use crate::protocol::StartConfig;

/// `[dialects.deepgram]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepgramSettings {
    /// Whether `/deepgram/v1/listen` is served.
    pub enabled: bool,
    /// Deepgram's rule: no audio and no text message for this long closes the stream with 1011
    /// `NET-0001` (Deepgram: about 10 s). Replaces `[session] idle_timeout_secs` on this path.
    pub no_audio_timeout_secs: f64,
}

impl Default for DeepgramSettings {
    fn default() -> DeepgramSettings {
        DeepgramSettings {
            enabled: true,
            no_audio_timeout_secs: 10.0,
        }
    }
}

/// A query Deepgram would refuse (HTTP 400 at the handshake, the reason in `dg-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRefusal(pub String);

/// What a Deepgram client asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepgramConfig {
    /// What the pipeline is started with.
    pub start: StartConfig,
    /// The model name the client gave, echoed in `metadata.model_info.name`.
    pub model: String,
    /// `interim_results` (default false): whether interim `Results` are sent.
    pub interim_results: bool,
    /// `endpointing` not `false`: finals at a pause carry `speech_final: true`.
    pub endpointing: bool,
    /// `utterance_end_ms`: `UtteranceEnd` follows each final that ends an utterance.
    pub utterance_end_ms: Option<u64>,
    /// `vad_events`: `SpeechStarted` when speech begins.
    pub vad_events: bool,
}

/// Options that would change the output in ways voxgate does not do: refused rather than ignored
/// when set (a `false` is accepted).
const UNSUPPORTED_FLAGS: [&str; 5] = [
    "diarize",
    "detect_entities",
    "numerals",
    "profanity_filter",
    "dictation",
];
/// Options refused whatever their value.
const UNSUPPORTED_OPTIONS: [&str; 6] = [
    "diarize_model",
    "redact",
    "search",
    "replace",
    "callback",
    "language_hint",
];

/// Parses the query string of a Deepgram live request. `max_phrases` bounds `keywords` and
/// `keyterm` together (`[session] max_phrases`).
pub fn parse_query(query: &str, max_phrases: usize) -> Result<DeepgramConfig, QueryRefusal> {
    let refuse = |message: String| Err(QueryRefusal(message));
    let mut encoding: Option<String> = None;
    let mut sample_rate: Option<String> = None;
    let mut language: Option<String> = None;
    let mut model = String::new();
    let mut interim_results = false;
    let mut punctuate = false;
    let mut endpointing = true;
    let mut utterance_end_ms = None;
    let mut vad_events = false;
    let mut channels = 1u32;
    let mut phrases: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.as_ref();
        match key.as_ref() {
            "encoding" => encoding = Some(value.to_ascii_lowercase()),
            "sample_rate" => sample_rate = Some(value.to_string()),
            "language" => language = Some(value.to_string()),
            "model" => model = value.to_string(),
            "interim_results" => interim_results = flag(&key, value)?,
            "punctuate" | "smart_format" => punctuate |= flag(&key, value)?,
            "vad_events" => vad_events = flag(&key, value)?,
            "multichannel" => {
                flag(&key, value)?;
            }
            "endpointing" => {
                endpointing = match value {
                    "false" => false,
                    "true" => true,
                    ms => number(&key, ms).map(|_| true)?,
                }
            }
            "utterance_end_ms" => utterance_end_ms = Some(number(&key, value)?),
            "channels" => {
                channels = u32::try_from(number(&key, value)?).unwrap_or(u32::MAX);
            }
            "keywords" | "keyterm" => {
                // `keywords` may carry a boost (`word:2`); the hint is the word.
                let phrase = match key.as_ref() {
                    "keywords" => value.rsplit_once(':').map_or(value, |(word, boost)| {
                        if boost.parse::<f64>().is_ok() {
                            word
                        } else {
                            value
                        }
                    }),
                    _ => value,
                };
                let phrase = phrase.trim();
                if phrase.is_empty() || phrase.chars().count() > MAX_PHRASE_CHARS {
                    return refuse(format!(
                        "{key} `{}` must have 1–{MAX_PHRASE_CHARS} characters",
                        quote(value)
                    ));
                }
                phrases.push(phrase.to_string());
                if phrases.len() > max_phrases {
                    return refuse(format!(
                        "more than {max_phrases} keywords and keyterms are not allowed"
                    ));
                }
            }
            other if UNSUPPORTED_FLAGS.contains(&other) => {
                let set = flag(other, value)?;
                if set {
                    return refuse(format!("{other}=true is not supported by this server"));
                }
            }
            other if UNSUPPORTED_OPTIONS.contains(&other) => {
                return refuse(format!("{other} is not supported by this server"));
            }
            _ => {}
        }
    }
    if channels != 1 {
        return refuse(format!(
            "channels={channels} is not supported by this server: send one channel"
        ));
    }
    let Some(encoding_name) = encoding else {
        return refuse(
            "encoding is required by this server (containerized audio is not detected): \
             use encoding=linear16, mulaw, alaw, flac, opus, ogg-opus, webm-opus, amr-nb or amr-wb \
             with sample_rate"
                .to_string(),
        );
    };
    let encoding = match encoding_name.as_str() {
        "linear16" => Encoding::Linear16,
        "mulaw" => Encoding::Mulaw,
        "alaw" => Encoding::Alaw,
        "flac" => Encoding::Flac,
        "opus" | "ogg-opus" => Encoding::OggOpus,
        "webm-opus" => Encoding::WebmOpus,
        "amr-nb" => Encoding::Amr,
        "amr-wb" => Encoding::AmrWb,
        other => {
            return refuse(format!(
                "encoding `{}` is not supported by this server",
                quote(other)
            ))
        }
    };
    let Some(sample_rate) = sample_rate else {
        return refuse("sample_rate is required with encoding".to_string());
    };
    let sample_rate_hz = match sample_rate.parse::<u32>() {
        Ok(rate) if encoding.sample_rate_allowed(rate) => rate,
        _ => {
            return refuse(format!(
                "sample_rate `{}` is not supported for encoding {encoding_name}",
                quote(&sample_rate)
            ))
        }
    };
    let language_code = match language.as_deref() {
        None | Some("en") => "en-US".to_string(),
        Some(tag) => tag.to_string(),
    };
    if !is_language_tag(&language_code) {
        return refuse(format!(
            "language `{}` is not a language tag",
            quote(&language_code)
        ));
    }
    if !is_model_name(&model) {
        return refuse(format!("model `{}` is not a model name", quote(&model)));
    }
    Ok(DeepgramConfig {
        start: StartConfig {
            format: AudioFormat {
                encoding,
                sample_rate_hz,
            },
            language_code,
            // Interims are also how speech is noticed for `SpeechStarted`.
            interim_results: interim_results || vad_events,
            enable_automatic_punctuation: punctuate,
            // Deepgram's model names mean nothing upstream: the gateway's default model is used.
            model: String::new(),
            phrases,
            single_utterance: false,
            features: Default::default(),
            frame_ms: None,
        },
        model,
        interim_results,
        endpointing,
        utterance_end_ms,
        vad_events,
    })
}

/// `true`/`false` as the SDKs write booleans.
fn flag(key: &str, value: &str) -> Result<bool, QueryRefusal> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryRefusal(format!(
            "{key} `{}` is not true or false",
            quote(value)
        ))),
    }
}

/// A whole number of (milliseconds, channels, …).
fn number(key: &str, value: &str) -> Result<u64, QueryRefusal> {
    value
        .parse::<u64>()
        .map_err(|_| QueryRefusal(format!("{key} `{}` is not a whole number", quote(value))))
}
