//! OpenAI Realtime transcription events on the wire. Client events (`session.update`,
//! `transcription_session.update`, `input_audio_buffer.append` / `.commit` / `.clear`) are parsed
//! into [`ClientEvent`]; a mistake becomes an [`EventError`] with OpenAI's error fields (the
//! session answers it with an `error` event and stays open, as OpenAI's does). Server events are
//! built by [`server_event`] with an `event_id` of their own.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::dialect::quote;
use crate::protocol::native::{is_language_tag, typed_object, BASE64};

/// The audio formats of a transcription session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `pcm16` / `{type:"audio/pcm", rate:24000}`: 16-bit little-endian mono at 24 kHz.
    Pcm24k,
    /// `g711_ulaw` / `audio/pcmu`: µ-law at 8 kHz.
    Pcmu,
    /// `g711_alaw` / `audio/pcma`: A-law at 8 kHz (transcoded to LINEAR16).
    Pcma,
}

impl InputFormat {
    /// Bytes of one millisecond of client audio.
    pub fn bytes_per_ms(self) -> u64 {
        match self {
            InputFormat::Pcm24k => 48,
            InputFormat::Pcmu | InputFormat::Pcma => 8,
        }
    }

    /// The beta name (`input_audio_format`).
    pub fn beta_name(self) -> &'static str {
        match self {
            InputFormat::Pcm24k => "pcm16",
            InputFormat::Pcmu => "g711_ulaw",
            InputFormat::Pcma => "g711_alaw",
        }
    }

    /// The GA object (`audio.input.format`).
    pub fn ga_object(self) -> Value {
        match self {
            InputFormat::Pcm24k => json!({"type": "audio/pcm", "rate": 24_000}),
            InputFormat::Pcmu => json!({"type": "audio/pcmu"}),
            InputFormat::Pcma => json!({"type": "audio/pcma"}),
        }
    }
}

/// The fields a session update sets (absent fields stay as they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionUpdate {
    pub format: Option<InputFormat>,
    pub model: Option<String>,
    /// `Some(None)`: `language` set to null (the default).
    pub language: Option<Option<String>>,
    pub prompt: Option<String>,
    /// `Some(None)`: turn detection off (the client commits each turn); `Some(Some(v))`: VAD.
    pub turn_detection: Option<Option<Value>>,
}

/// A client event, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `session.update` (GA, `beta: false`) or `transcription_session.update` (beta).
    Update {
        beta: bool,
        update: SessionUpdate,
    },
    /// `input_audio_buffer.append`: the decoded audio, in the session's format.
    Append(Bytes),
    Commit,
    Clear,
}

/// An `error` event's fields: what the client got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// The `event_id` of the client event at fault, when it had one.
    pub event_id: Option<String>,
}

impl EventError {
    fn new(code: &'static str, message: impl Into<String>, param: Option<&str>) -> EventError {
        EventError {
            code,
            message: message.into(),
            param: param.map(String::from),
            event_id: None,
        }
    }
}

/// Longest model or prompt string kept (echoed back, never used upstream).
const MAX_ECHO_CHARS: usize = 1_024;

/// Parses one client event (its size already bounded by the session), with the client's
/// `event_id` when it gave one: an error it causes later, while being handled, echoes it too.
pub fn parse_client_event(text: &str) -> Result<(ClientEvent, Option<String>), EventError> {
    let (kind, object) = typed_object(text)
        .map_err(|rejection| EventError::new("invalid_json", rejection.message, None))?;
    let event_id = match object.get("event_id") {
        Some(Value::String(id)) => Some(quote(id)),
        _ => None,
    };
    match parse_typed(&kind, &object) {
        Ok(event) => Ok((event, event_id)),
        Err(mut error) => {
            error.event_id = event_id;
            Err(error)
        }
    }
}

fn parse_typed(kind: &str, object: &Map<String, Value>) -> Result<ClientEvent, EventError> {
    match kind {
        "session.update" | "transcription_session.update" => {
            let beta = kind == "transcription_session.update";
            let session = match object.get("session") {
                Some(Value::Object(session)) => session,
                _ => {
                    return Err(EventError::new(
                        "missing_required_parameter",
                        "`session` must be an object",
                        Some("session"),
                    ))
                }
            };
            let update = if beta {
                parse_beta_session(session)?
            } else {
                parse_ga_session(session)?
            };
            Ok(ClientEvent::Update { beta, update })
        }
        "input_audio_buffer.append" => {
            let Some(Value::String(audio)) = object.get("audio") else {
                return Err(EventError::new(
                    "missing_required_parameter",
                    "`audio` must be a base64 string",
                    Some("audio"),
                ));
            };
            let data = BASE64.decode(audio.as_bytes()).map_err(|e| {
                EventError::new(
                    "invalid_value",
                    format!("`audio` is not base64: {e}"),
                    Some("audio"),
                )
            })?;
            Ok(ClientEvent::Append(Bytes::from(data)))
        }
        "input_audio_buffer.commit" => Ok(ClientEvent::Commit),
        "input_audio_buffer.clear" => Ok(ClientEvent::Clear),
        other => Err(EventError::new(
            "invalid_value",
            format!(
                "event type `{}` is not supported in a transcription session (supported: \
                 session.update, transcription_session.update, input_audio_buffer.append, \
                 input_audio_buffer.commit, input_audio_buffer.clear)",
                quote(other)
            ),
            Some("type"),
        )),
    }
}

/// `session.update` (GA): `session.type` must be `transcription`; `audio.input` carries the rest.
fn parse_ga_session(session: &Map<String, Value>) -> Result<SessionUpdate, EventError> {
    match session.get("type") {
        None => {}
        Some(Value::String(t)) if t == "transcription" => {}
        Some(other) => {
            return Err(EventError::new(
                "invalid_value",
                format!(
                    "session.type {} is not served here: this endpoint serves transcription \
                     sessions (`?intent=transcription`)",
                    quote(&other.to_string())
                ),
                Some("session.type"),
            ))
        }
    }
    let mut update = SessionUpdate::default();
    let Some(input) = session.get("audio").and_then(|a| a.get("input")) else {
        return Ok(update);
    };
    if let Some(format) = input.get("format") {
        let kind = format.get("type").and_then(Value::as_str).unwrap_or("");
        update.format = Some(match kind {
            "audio/pcm" => {
                let rate = format.get("rate").and_then(Value::as_u64).unwrap_or(24_000);
                if rate != 24_000 {
                    return Err(EventError::new(
                        "invalid_value",
                        format!("audio/pcm is 24000 Hz only, not {rate}"),
                        Some("session.audio.input.format.rate"),
                    ));
                }
                InputFormat::Pcm24k
            }
            "audio/pcmu" => InputFormat::Pcmu,
            "audio/pcma" => InputFormat::Pcma,
            other => {
                return Err(EventError::new(
                    "invalid_value",
                    format!(
                        "audio format `{}` is not one of audio/pcm, audio/pcmu, audio/pcma",
                        quote(other)
                    ),
                    Some("session.audio.input.format.type"),
                ))
            }
        });
    }
    if let Some(transcription) = input.get("transcription") {
        read_transcription(
            transcription,
            "session.audio.input.transcription",
            &mut update,
        )?;
    }
    if let Some(turn_detection) = input.get("turn_detection") {
        update.turn_detection = Some(read_turn_detection(
            turn_detection,
            "session.audio.input.turn_detection",
        )?);
    }
    Ok(update)
}

/// `transcription_session.update` (beta): flat fields.
fn parse_beta_session(session: &Map<String, Value>) -> Result<SessionUpdate, EventError> {
    let mut update = SessionUpdate::default();
    if let Some(format) = session.get("input_audio_format") {
        update.format = Some(match format.as_str().unwrap_or("") {
            "pcm16" => InputFormat::Pcm24k,
            "g711_ulaw" => InputFormat::Pcmu,
            "g711_alaw" => InputFormat::Pcma,
            other => {
                return Err(EventError::new(
                    "invalid_value",
                    format!(
                        "input_audio_format `{}` is not one of pcm16, g711_ulaw, g711_alaw",
                        quote(other)
                    ),
                    Some("session.input_audio_format"),
                ))
            }
        });
    }
    if let Some(transcription) = session.get("input_audio_transcription") {
        read_transcription(
            transcription,
            "session.input_audio_transcription",
            &mut update,
        )?;
    }
    if let Some(turn_detection) = session.get("turn_detection") {
        update.turn_detection = Some(read_turn_detection(
            turn_detection,
            "session.turn_detection",
        )?);
    }
    Ok(update)
}

/// `{model, language, prompt}` (any of them).
fn read_transcription(
    value: &Value,
    param: &str,
    update: &mut SessionUpdate,
) -> Result<(), EventError> {
    if value.is_null() {
        return Ok(());
    }
    let Value::Object(fields) = value else {
        return Err(EventError::new(
            "invalid_type",
            format!("{param} must be an object"),
            Some(param),
        ));
    };
    let text = |name: &str| -> Result<Option<Option<String>>, EventError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.chars().count() <= MAX_ECHO_CHARS => {
                Ok(Some(Some(s.clone())))
            }
            Some(_) => Err(EventError::new(
                "invalid_value",
                format!("{param}.{name} must be a string of at most {MAX_ECHO_CHARS} characters"),
                Some(&format!("{param}.{name}")),
            )),
        }
    };
    update.model = text("model")?.flatten().or(update.model.take());
    update.prompt = text("prompt")?.flatten().or(update.prompt.take());
    if let Some(language) = text("language")? {
        if let Some(tag) = &language {
            if !is_language_tag(tag) {
                return Err(EventError::new(
                    "invalid_value",
                    format!(
                        "language `{}` is not an ISO-639-1 code such as en",
                        quote(tag)
                    ),
                    Some(&format!("{param}.language")),
                ));
            }
        }
        update.language = Some(language);
    }
    Ok(())
}

/// `null` (manual commits) or `{type: server_vad | semantic_vad, …}`.
fn read_turn_detection(value: &Value, param: &str) -> Result<Option<Value>, EventError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(fields) => match fields.get("type").and_then(Value::as_str) {
            Some("server_vad" | "semantic_vad") | None => Ok(Some(value.clone())),
            Some(other) => Err(EventError::new(
                "invalid_value",
                format!(
                    "turn_detection.type `{}` is not server_vad or semantic_vad",
                    quote(other)
                ),
                Some(&format!("{param}.type")),
            )),
        },
        _ => Err(EventError::new(
            "invalid_type",
            format!("{param} must be an object or null"),
            Some(param),
        )),
    }
}

/// A server event: `fields` with `type` and a fresh `event_id` (`event_<n>`, from `counter`).
pub fn server_event(counter: &mut u64, kind: &str, fields: Value) -> String {
    *counter += 1;
    let mut object = match fields {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert("type".to_string(), Value::from(kind));
    object.insert(
        "event_id".to_string(),
        Value::from(format!("event_{counter}")),
    );
    Value::Object(object).to_string()
}

/// The `error` event of `error`; `kind` is OpenAI's error type (`invalid_request_error`,
/// `server_error`).
pub fn error_event(counter: &mut u64, kind: &str, error: &EventError) -> String {
    server_event(
        counter,
        "error",
        json!({"error": {
            "type": kind,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": error.event_id,
        }}),
    )
}
