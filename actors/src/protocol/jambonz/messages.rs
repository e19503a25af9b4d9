//! jambonz's custom speech-to-text messages on the wire, both ways. From jambonz: `start`
//! (`language`, `format`, `encoding`, `sampleRateHz`, `interimResults`, `options.hints`) and
//! `stop`, parsed into [`ClientMessage`]; to jambonz: `transcription` and `error`
//! ([`ServerMessage`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audio::{AudioFormat, Encoding};
use crate::protocol::dialect::quote;
use crate::protocol::native::{fields, is_language_tag, typed_object, MAX_PHRASE_CHARS};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

// ───────────────────────────── jambonz → server ─────────────────────────────

/// A text message from jambonz.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `start`, checked: what the pipeline is started with.
    Start(StartConfig),
    /// `stop`: the remaining results, then the server closes the socket.
    Stop,
}

/// The fields of `start` as jambonz writes them (other fields are ignored: jambonz may add some).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartFields {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    sample_rate_hz: Option<u32>,
    #[serde(default)]
    interim_results: Option<bool>,
    #[serde(default)]
    options: Option<StartOptions>,
}

/// `start.options`: what the application passes on to the recognizer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartOptions {
    /// Strings, or `{phrase, boost}` objects.
    /// (`hintsBoost` and other recognizer options are accepted and unused: the gateway's phrase
    /// hints carry no boost.)
    #[serde(default)]
    hints: Option<Value>,
    #[serde(default)]
    punctuation: Option<bool>,
}

/// jambonz's own audio: 8 kHz unless `sampleRateHz` says otherwise.
pub const DEFAULT_SAMPLE_RATE_HZ: u32 = 8_000;

/// Parses one text message (its size already bounded by the session). `max_phrases` bounds the
/// hints (`[session] max_phrases`).
pub fn parse_client_text(text: &str, max_phrases: usize) -> Result<ClientMessage, Rejection> {
    let (kind, object) = typed_object(text)?;
    match kind.as_str() {
        "start" => start(fields(object, "start")?, max_phrases).map(ClientMessage::Start),
        "stop" => Ok(ClientMessage::Stop),
        other => Err(Rejection::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type `{}` (known: start, stop)",
                quote(other)
            ),
        )),
    }
}

fn start(fields: StartFields, max_phrases: usize) -> Result<StartConfig, Rejection> {
    if let Some(format) = fields.format.as_deref().filter(|f| *f != "raw") {
        return Err(Rejection::new(
            ErrorCode::UnsupportedEncoding,
            format!(
                "format `{}` is not supported: send raw audio",
                quote(format)
            ),
        ));
    }
    if let Some(encoding) = fields
        .encoding
        .as_deref()
        .filter(|e| !e.eq_ignore_ascii_case("LINEAR16"))
    {
        return Err(Rejection::new(
            ErrorCode::UnsupportedEncoding,
            format!(
                "encoding `{}` is not supported: send LINEAR16",
                quote(encoding)
            ),
        ));
    }
    let sample_rate_hz = fields.sample_rate_hz.unwrap_or(DEFAULT_SAMPLE_RATE_HZ);
    if !Encoding::Linear16.sample_rate_allowed(sample_rate_hz) {
        return Err(Rejection::new(
            ErrorCode::UnsupportedSampleRate,
            format!("sampleRateHz {sample_rate_hz} is not supported: 8000–48000"),
        ));
    }
    let language_code = fields.language.unwrap_or_else(|| "en-US".to_string());
    if !is_language_tag(&language_code) {
        return Err(Rejection::new(
            ErrorCode::InvalidConfig,
            format!("language `{}` is not a language tag", quote(&language_code)),
        ));
    }
    let options = fields.options.unwrap_or_default();
    let phrases = match options.hints {
        None | Some(Value::Null) => Vec::new(),
        Some(hints) => hint_phrases(&hints, max_phrases)?,
    };
    Ok(StartConfig {
        format: AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz,
        },
        language_code,
        interim_results: fields.interim_results.unwrap_or(false),
        enable_automatic_punctuation: options.punctuation.unwrap_or(false),
        model: String::new(),
        phrases,
        single_utterance: false,
        features: Default::default(),
        frame_ms: None,
    })
}

/// `options.hints`: an array of strings or of `{phrase, …}` objects.
fn hint_phrases(hints: &Value, max_phrases: usize) -> Result<Vec<String>, Rejection> {
    let refuse = |message: String| Rejection::new(ErrorCode::InvalidConfig, message);
    let Value::Array(items) = hints else {
        return Err(refuse(
            "options.hints must be an array of strings or {phrase} objects".to_string(),
        ));
    };
    if items.len() > max_phrases {
        return Err(refuse(format!("more than {max_phrases} hints")));
    }
    items
        .iter()
        .map(|item| {
            let phrase = match item {
                Value::String(phrase) => Some(phrase.as_str()),
                Value::Object(object) => object.get("phrase").and_then(Value::as_str),
                _ => None,
            }
            .map(str::trim)
            .ok_or_else(|| {
                refuse("options.hints must be an array of strings or {phrase} objects".to_string())
            })?;
            if phrase.is_empty() || phrase.chars().count() > MAX_PHRASE_CHARS {
                return Err(refuse(format!(
                    "hint `{}` must have 1–{MAX_PHRASE_CHARS} characters",
                    quote(phrase)
                )));
            }
            Ok(phrase.to_string())
        })
        .collect()
}

// ───────────────────────────── server → jambonz ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub transcript: String,
    pub confidence: f32,
}

/// Every message the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Transcription {
        is_final: bool,
        alternatives: Vec<Alternative>,
        /// 1: one channel (jambonz's default when there is no diarization).
        channel: u32,
        language: String,
    },
    Error {
        error: String,
    },
}

impl ServerMessage {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // These types always serialise (string keys, finite numbers from the pipeline); the
        // fallback keeps that promise without a panic should it ever stop being true.
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({"type": "error", "error": format!("could not encode a message: {e}")})
                .to_string()
        })
    }
}
