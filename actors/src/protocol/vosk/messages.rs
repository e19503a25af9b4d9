//! vosk-server's messages on the wire, both ways. From the client: `{"config": {…}}`,
//! `{"eof" : 1}` and `{"reset" : 1}` (parsed as JSON, so spacing does not matter), checked into
//! [`ClientMessage`]. To the client: the partial, result and alternatives objects vosk's
//! recognizer writes (`{"partial": …}`, `{"text": …, "result": [{conf, end, start, word}]}`,
//! `{"alternatives": [{confidence, result, text}]}`), built by [`partial`] and [`result`].

use serde_json::{json, Map, Value};

use crate::messages::WordTiming;
use crate::protocol::dialect::quote;
use crate::protocol::native::{nesting_exceeds, MAX_JSON_DEPTH, MAX_PHRASE_CHARS};
use crate::protocol::{ErrorCode, Rejection};

/// vosk's grammar word for "anything else" in a `phrase_list`: no phrase hint of its own.
const UNKNOWN_WORD: &str = "[unk]";
/// The most alternatives a client may ask for (only one is ever produced).
pub const MAX_ALTERNATIVES: u64 = 1_000;

/// A text message from a vosk client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"config": {…}}`: only the fields present change.
    Config(ConfigUpdate),
    /// `{"eof" : 1}`: no more audio; the final result, then the close.
    Eof,
    /// `{"reset" : 1}`: finish the current utterance and carry on.
    Reset,
}

/// The fields of a `config` message, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigUpdate {
    /// Hz, allowed for LINEAR16.
    pub sample_rate: Option<u32>,
    /// Word times in results (`result`).
    pub words: Option<bool>,
    /// Above 0: results in the `alternatives` form.
    pub max_alternatives: Option<u64>,
    /// Phrase hints (vosk's grammar, without `[unk]`).
    pub phrase_list: Option<Vec<String>>,
}

fn invalid(code: ErrorCode, message: String) -> Rejection {
    Rejection::new(code, message)
}

/// Parses one text message (its size already bounded by the session). `max_phrases` bounds
/// `phrase_list` (`[session] max_phrases`).
pub fn parse_client_text(text: &str, max_phrases: usize) -> Result<ClientMessage, Rejection> {
    const EXPECTED: &str =
        r#"a text message must be {"config": {…}}, {"eof" : 1} or {"reset" : 1}"#;
    if nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(invalid(
            ErrorCode::InvalidJson,
            format!("the message nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        invalid(
            ErrorCode::InvalidJson,
            format!("the message is not JSON ({e}); {EXPECTED}"),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(invalid(ErrorCode::InvalidJson, EXPECTED.to_string()));
    };
    if let Some(config) = object.get("config") {
        let Value::Object(config) = config else {
            return Err(invalid(
                ErrorCode::InvalidMessage,
                "`config` must be an object".to_string(),
            ));
        };
        return parse_config(config, max_phrases).map(ClientMessage::Config);
    }
    for (key, message) in [("eof", ClientMessage::Eof), ("reset", ClientMessage::Reset)] {
        if let Some(flag) = object.get(key) {
            return match flag {
                Value::Bool(true) => Ok(message),
                Value::Number(n) if n.as_f64() == Some(1.0) => Ok(message),
                other => Err(invalid(
                    ErrorCode::InvalidMessage,
                    format!("`{key}` must be 1, not {}", quote(&other.to_string())),
                )),
            };
        }
    }
    Err(invalid(ErrorCode::InvalidMessage, EXPECTED.to_string()))
}

fn parse_config(
    config: &Map<String, Value>,
    max_phrases: usize,
) -> Result<ConfigUpdate, Rejection> {
    let mut update = ConfigUpdate::default();
    if let Some(rate) = config.get("sample_rate") {
        // vosk reads it as a float: 16000 and 16000.0 are the same rate.
        let hz = rate
            .as_f64()
            .filter(|hz| hz.fract() == 0.0 && (8_000.0..=48_000.0).contains(hz));
        let Some(hz) = hz else {
            return Err(invalid(
                ErrorCode::UnsupportedSampleRate,
                format!(
                    "sample_rate {} is not supported: 8000–48000 Hz, 16-bit PCM",
                    quote(&rate.to_string())
                ),
            ));
        };
        update.sample_rate = Some(hz as u32);
    }
    if let Some(words) = config.get("words") {
        update.words = Some(match words {
            Value::Bool(b) => *b,
            Value::Number(n) if n.as_f64() == Some(0.0) => false,
            Value::Number(n) if n.as_f64() == Some(1.0) => true,
            other => {
                return Err(invalid(
                    ErrorCode::InvalidConfig,
                    format!(
                        "`words` must be true or false, not {}",
                        quote(&other.to_string())
                    ),
                ))
            }
        });
    }
    if let Some(alternatives) = config.get("max_alternatives") {
        let Some(n) = alternatives.as_u64().filter(|n| *n <= MAX_ALTERNATIVES) else {
            return Err(invalid(
                ErrorCode::InvalidConfig,
                format!(
                    "`max_alternatives` must be a whole number from 0 to {MAX_ALTERNATIVES}, not {}",
                    quote(&alternatives.to_string())
                ),
            ));
        };
        update.max_alternatives = Some(n);
    }
    if let Some(list) = config.get("phrase_list") {
        update.phrase_list = Some(phrase_list(list, max_phrases)?);
    }
    // `model` names a model directory on a vosk server: never a path here, the gateway's engine
    // decides. Other keys are ignored, as vosk-server ignores them.
    Ok(update)
}

fn phrase_list(list: &Value, max_phrases: usize) -> Result<Vec<String>, Rejection> {
    let Value::Array(items) = list else {
        return Err(invalid(
            ErrorCode::InvalidConfig,
            "`phrase_list` must be an array of strings".to_string(),
        ));
    };
    let mut phrases = Vec::new();
    for item in items {
        let Some(phrase) = item.as_str().map(str::trim) else {
            return Err(invalid(
                ErrorCode::InvalidConfig,
                "`phrase_list` must be an array of strings".to_string(),
            ));
        };
        if phrase == UNKNOWN_WORD {
            continue;
        }
        if phrase.is_empty() || phrase.chars().count() > MAX_PHRASE_CHARS {
            return Err(invalid(
                ErrorCode::InvalidConfig,
                format!(
                    "phrase `{}` must have 1–{MAX_PHRASE_CHARS} characters",
                    quote(phrase)
                ),
            ));
        }
        phrases.push(phrase.to_string());
        if phrases.len() > max_phrases {
            return Err(invalid(
                ErrorCode::InvalidConfig,
                format!("more than {max_phrases} phrases in `phrase_list`"),
            ));
        }
    }
    Ok(phrases)
}

// ───────────────────────────── server → client ─────────────────────────────

/// How results are written, from the client's `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultShape {
    /// `result` word lists.
    pub words: bool,
    /// The `alternatives` form (vosk's `max_alternatives` > 0).
    pub alternatives: bool,
}

/// `{"partial": "…"}`.
pub fn partial(text: &str) -> String {
    json!({ "partial": text }).to_string()
}

/// A result: the text of one or more finals with their words, in the shape asked for. No text
/// at all is `{"text": ""}` (or one empty alternative), as vosk writes it.
pub fn result(
    texts: &[&str],
    words: &[&WordTiming],
    confidence: f32,
    shape: ResultShape,
) -> String {
    let text = texts
        .iter()
        .filter(|t| !t.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        // vosk's result when nothing was recognised, in either shape.
        return if shape.alternatives {
            json!({"alternatives": [{"confidence": 0.0, "text": ""}]}).to_string()
        } else {
            json!({ "text": "" }).to_string()
        };
    }
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let mut object = Map::new();
    if shape.alternatives {
        let mut alternative = Map::new();
        alternative.insert("confidence".into(), json!(confidence));
        if shape.words {
            let list: Vec<Value> = words
                .iter()
                .map(|w| json!({"end": seconds(w.end_ms), "start": seconds(w.start_ms), "word": w.word}))
                .collect();
            alternative.insert("result".into(), Value::Array(list));
        }
        alternative.insert("text".into(), Value::String(text));
        object.insert(
            "alternatives".into(),
            Value::Array(vec![Value::Object(alternative)]),
        );
    } else {
        if shape.words {
            let list: Vec<Value> = words
                .iter()
                .map(|w| {
                    json!({"conf": w.confidence, "end": seconds(w.end_ms),
                        "start": seconds(w.start_ms), "word": w.word})
                })
                .collect();
            object.insert("result".into(), Value::Array(list));
        }
        object.insert("text".into(), Value::String(text));
    }
    Value::Object(object).to_string()
}
