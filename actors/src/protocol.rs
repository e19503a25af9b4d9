//! The client wire protocol v1 (`GET /v1/listen`), as documented in `docs/protocol.md`: the start
//! configuration, the JSON messages in both directions, and the table of error codes.
//!
//! Parsing lives here, apart from the session actor, so it can be tested (and fuzzed) without a socket.
//! The session actor calls [`parse_client_text`] for each text message, [`StartRequest::validate`]
//! for a `start` (or [`parse_query_config`] for a query-string configuration), and
//! [`ServerMessage::to_json`] for everything it sends. A message the client got wrong becomes a
//! [`Rejection`]: the error code and a message for a human.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::audio::{AudioFormat, Encoding};
use crate::messages::Transcript;

/// What a client asked for in `start` (or in the query string): the recognition configuration of
/// every upstream stream of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct StartConfig {
    pub format: AudioFormat,
    /// BCP-47 language tag, default `en-US`.
    pub language_code: String,
    /// Whether interim (non-final) results are wanted; default true.
    pub interim_results: bool,
    pub enable_automatic_punctuation: bool,
    /// Google model name (`latest_long`, `phone_call`, …); empty = Google's default.
    pub model: String,
    /// Speech adaptation hints.
    pub phrases: Vec<String>,
    /// Stop after the first utterance (Google's `single_utterance`): the session then closes.
    pub single_utterance: bool,
}

/// Every error a client can receive. The code string, the close code and whether the client may
/// retry are fixed here and listed in `docs/protocol.md`; tests assert them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text frame that is not valid JSON, or not an object with a string `type`.
    InvalidJson,
    /// A JSON message of a type this server does not know. The session continues.
    UnknownType,
    /// A known message with missing or ill-typed fields.
    InvalidMessage,
    /// `content` of an `audio` message is not valid base64.
    InvalidBase64,
    /// Audio (or `finalize`) before the session was configured.
    AudioBeforeStart,
    /// A second `start` (or `start` after query-string configuration). The session continues.
    AlreadyStarted,
    /// A frame or message larger than `[session] max_frame_bytes`.
    FrameTooLarge,
    /// A JSON text message larger than `[session] max_json_bytes`.
    JsonTooLarge,
    /// `encoding` is not one of the accepted encodings.
    UnsupportedEncoding,
    /// `sample_rate_hz` is not allowed for the encoding.
    UnsupportedSampleRate,
    /// The audio does not start with its encoding's container signature (Ogg, WebM, FLAC).
    InvalidAudio,
    /// A configuration value out of range (empty language code, too many phrases, …).
    InvalidConfig,
    /// No `start` within `[session] start_timeout_secs`.
    StartTimeout,
    /// No message from the client within `[session] idle_timeout_secs`.
    IdleTimeout,
    /// The session reached `[session] max_session_secs`.
    SessionTooLong,
    /// The client sends audio faster than it can be forwarded and the buffer is full.
    BufferFull,
    /// More than `[session] max_messages_per_sec` WebSocket frames per second (a flood).
    TooManyMessages,
    /// The client's audio ran more than `[session] max_audio_lead_ms` ahead of real time.
    AudioTooFast,
    /// The client does not read what the server sends: more than `[session] max_outgoing_bytes`
    /// are waiting for it.
    SlowConsumer,
    /// `[session] max_sessions` sessions are open already.
    TooManySessions,
    /// This client (its address, or its API key) has its most sessions open already.
    TooManyClientSessions,
    /// The server is shutting down (grace period over).
    ShuttingDown,
    /// The upstream recogniser rejected the request (not retryable: bad config, permission…).
    UpstreamRejected,
    /// The upstream recogniser kept failing and the restart policy gave up.
    UpstreamUnavailable,
    /// A bug or an unexpected failure inside voxgate.
    Internal,
    /// The local speech engine has no free decoder (`[local] workers` streams are running).
    Busy,
}

impl ErrorCode {
    /// Every code, in the order `docs/protocol.md` lists them.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidBase64,
        ErrorCode::AudioBeforeStart,
        ErrorCode::AlreadyStarted,
        ErrorCode::FrameTooLarge,
        ErrorCode::JsonTooLarge,
        ErrorCode::UnsupportedEncoding,
        ErrorCode::UnsupportedSampleRate,
        ErrorCode::InvalidAudio,
        ErrorCode::InvalidConfig,
        ErrorCode::StartTimeout,
        ErrorCode::IdleTimeout,
        ErrorCode::SessionTooLong,
        ErrorCode::BufferFull,
        ErrorCode::TooManyMessages,
        ErrorCode::AudioTooFast,
        ErrorCode::SlowConsumer,
        ErrorCode::TooManySessions,
        ErrorCode::TooManyClientSessions,
        ErrorCode::ShuttingDown,
        ErrorCode::UpstreamRejected,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::Internal,
        ErrorCode::Busy,
    ];

    /// The stable string sent as `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidBase64 => "invalid_base64",
            ErrorCode::AudioBeforeStart => "audio_before_start",
            ErrorCode::AlreadyStarted => "already_started",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::JsonTooLarge => "json_too_large",
            ErrorCode::InvalidAudio => "invalid_audio",
            ErrorCode::TooManyMessages => "too_many_messages",
            ErrorCode::AudioTooFast => "audio_too_fast",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::TooManyClientSessions => "too_many_client_sessions",
            ErrorCode::UnsupportedEncoding => "unsupported_encoding",
            ErrorCode::UnsupportedSampleRate => "unsupported_sample_rate",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::StartTimeout => "start_timeout",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::SessionTooLong => "session_too_long",
            ErrorCode::BufferFull => "buffer_full",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::UpstreamRejected => "upstream_rejected",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Busy => "busy",
        }
    }

    /// The WebSocket close code that follows the error, or `None` when the session continues.
    pub fn close_code(self) -> Option<u16> {
        match self {
            ErrorCode::UnknownType | ErrorCode::AlreadyStarted => None,
            ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::InvalidBase64 => {
                Some(1007)
            }
            ErrorCode::UnsupportedEncoding
            | ErrorCode::UnsupportedSampleRate
            | ErrorCode::InvalidAudio => Some(1003),
            ErrorCode::AudioBeforeStart
            | ErrorCode::InvalidConfig
            | ErrorCode::StartTimeout
            | ErrorCode::IdleTimeout
            | ErrorCode::SessionTooLong
            | ErrorCode::BufferFull
            | ErrorCode::TooManyMessages
            | ErrorCode::AudioTooFast
            | ErrorCode::SlowConsumer
            | ErrorCode::TooManyClientSessions => Some(1008),
            ErrorCode::FrameTooLarge | ErrorCode::JsonTooLarge => Some(1009),
            ErrorCode::TooManySessions | ErrorCode::Busy => Some(1013),
            ErrorCode::ShuttingDown => Some(1001),
            ErrorCode::UpstreamRejected | ErrorCode::UpstreamUnavailable | ErrorCode::Internal => {
                Some(1011)
            }
        }
    }

    /// Whether the same request may succeed if the client simply tries again later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::TooManySessions
                | ErrorCode::TooManyClientSessions
                | ErrorCode::SlowConsumer
                | ErrorCode::Busy
                | ErrorCode::ShuttingDown
                | ErrorCode::UpstreamUnavailable
                | ErrorCode::Internal
        )
    }
}

// ───────────────────────────── client → server ─────────────────────────────

/// The WebSocket subprotocol of this protocol. A client that offers subprotocols (a browser
/// sending its credential as `bearer.<credential>`) must offer this one too; the server selects
/// it, never echoing the credential.
pub const SUBPROTOCOL: &str = "voxgate.v1";
/// The prefix of the subprotocol that carries a credential for clients that cannot set headers.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// Deepest nesting of arrays and objects accepted in a client message (the protocol needs 2).
pub const MAX_JSON_DEPTH: usize = 16;

/// Longest language tag accepted (BCP-47 tags in practice stay far below it).
pub const MAX_LANGUAGE_CODE_CHARS: usize = 35;
/// Longest phrase hint accepted, in characters.
pub const MAX_PHRASE_CHARS: usize = 100;
/// Longest model name accepted (Google's names are short identifiers such as `latest_long`).
pub const MAX_MODEL_CHARS: usize = 64;
/// At most this much of a client's text is quoted back in an error message.
const QUOTE_CHARS: usize = 64;

/// A message the client got wrong: what the session sends back as `error` (and whether it then
/// closes follows from the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    /// For a human: what was wrong, naming the field.
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

/// The fields of a `start` message (or of a query-string configuration) as the client gave them,
/// before [`StartRequest::validate`] checks them. Optional fields accept `null` as "default".
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StartRequest {
    pub encoding: String,
    pub sample_rate_hz: u32,
    #[serde(default)]
    pub language_code: Option<String>,
    #[serde(default)]
    pub interim_results: Option<bool>,
    #[serde(default)]
    pub enable_automatic_punctuation: Option<bool>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub phrases: Option<Vec<String>>,
    #[serde(default)]
    pub single_utterance: Option<bool>,
}

impl StartRequest {
    /// Checks every field and applies the defaults: the configuration of the session, or the
    /// first problem found (`unsupported_encoding`, `unsupported_sample_rate`, `invalid_config`).
    pub fn validate(self, max_phrases: usize) -> Result<StartConfig, Rejection> {
        let encoding = Encoding::parse(&self.encoding).ok_or_else(|| {
            let accepted: Vec<&str> = Encoding::ALL.iter().map(|e| e.as_str()).collect();
            Rejection::new(
                ErrorCode::UnsupportedEncoding,
                format!(
                    "encoding `{}` is not supported; use one of {}",
                    quote(&self.encoding),
                    accepted.join(", ")
                ),
            )
        })?;
        if !encoding.sample_rate_allowed(self.sample_rate_hz) {
            return Err(Rejection::new(
                ErrorCode::UnsupportedSampleRate,
                format!(
                    "sample_rate_hz {} is not allowed for {}",
                    self.sample_rate_hz,
                    encoding.as_str()
                ),
            ));
        }
        let language_code = self.language_code.unwrap_or_else(|| "en-US".to_string());
        let language_ok = !language_code.is_empty()
            && language_code.chars().count() <= MAX_LANGUAGE_CODE_CHARS
            && language_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !language_ok {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "language_code `{}` is not a language tag (1–{MAX_LANGUAGE_CODE_CHARS} \
                     letters, digits and `-`, e.g. en-US)",
                    quote(&language_code)
                ),
            ));
        }
        let model = self.model.unwrap_or_default();
        let model_ok = model.chars().count() <= MAX_MODEL_CHARS
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !model_ok {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "model `{}` is not a model name (at most {MAX_MODEL_CHARS} letters, digits, \
                     `_`, `-`, `.`)",
                    quote(&model)
                ),
            ));
        }
        let phrases = self.phrases.unwrap_or_default();
        if phrases.len() > max_phrases {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} phrases given; at most {max_phrases} are allowed",
                    phrases.len()
                ),
            ));
        }
        if let Some((i, bad)) = phrases.iter().enumerate().find(|(_, p)| {
            let chars = p.chars().count();
            p.trim().is_empty() || chars > MAX_PHRASE_CHARS
        }) {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "phrases[{i}] `{}` must have 1–{MAX_PHRASE_CHARS} characters",
                    quote(bad)
                ),
            ));
        }
        Ok(StartConfig {
            format: AudioFormat {
                encoding,
                sample_rate_hz: self.sample_rate_hz,
            },
            language_code,
            interim_results: self.interim_results.unwrap_or(true),
            enable_automatic_punctuation: self.enable_automatic_punctuation.unwrap_or(false),
            model,
            phrases,
            single_utterance: self.single_utterance.unwrap_or(false),
        })
    }
}

/// A text message from the client, parsed but not yet checked against the session's state.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"type":"start",…}`: configure the session.
    Start(StartRequest),
    /// `{"type":"audio","content":"<base64>","audio_id":…}`: audio, decoded.
    Audio {
        data: Bytes,
        audio_id: Option<String>,
    },
    /// `{"type":"keepalive"}`: the client is still there (resets the idle timer).
    KeepAlive,
    /// `{"type":"finalize"}`: final results for all audio so far, then carry on.
    Finalize,
    /// `{"type":"stop"}`: no more audio; deliver the last results and close.
    Stop,
}

/// The fields of an `audio` message.
#[derive(Deserialize)]
struct AudioFields {
    content: String,
    #[serde(default)]
    audio_id: Option<String>,
}

/// Standard base64 (RFC 4648 alphabet), with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses one text message from the client. (Its size is the session's to bound, before.)
pub fn parse_client_text(text: &str) -> Result<ClientMessage, Rejection> {
    if nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(Rejection::new(
            ErrorCode::InvalidJson,
            format!("the message nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            ErrorCode::InvalidJson,
            format!("the message is not JSON: {e}"),
        )
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(Rejection::new(
            ErrorCode::InvalidJson,
            "a message must be a JSON object with a string `type`",
        ));
    };
    let kind = match object.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidJson,
                "`type` must be a string",
            ))
        }
        None => return Err(Rejection::new(ErrorCode::InvalidJson, "`type` is missing")),
    };
    match kind.as_str() {
        "start" => fields::<StartRequest>(object, "start").map(ClientMessage::Start),
        "audio" => {
            let audio = fields::<AudioFields>(object, "audio")?;
            let data = BASE64.decode(audio.content.as_bytes()).map_err(|e| {
                Rejection::new(
                    ErrorCode::InvalidBase64,
                    format!("`content` is not standard base64: {e}"),
                )
            })?;
            Ok(ClientMessage::Audio {
                data: Bytes::from(data),
                audio_id: audio.audio_id,
            })
        }
        "keepalive" => Ok(ClientMessage::KeepAlive),
        "finalize" => Ok(ClientMessage::Finalize),
        "stop" => Ok(ClientMessage::Stop),
        other => Err(Rejection::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type `{}` (known: start, audio, keepalive, finalize, stop)",
                quote(other)
            ),
        )),
    }
}

/// Whether arrays and objects in the JSON `text` nest deeper than `limit` (brackets inside strings
/// do not count). A linear scan before parsing, so a deeply nested message costs no recursion;
/// strings are skipped with `memchr`, so a long base64 `content` costs next to nothing.
fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        match byte {
            b'"' => {
                // Jump to the closing quote, stepping over escaped characters.
                at += 1;
                loop {
                    let Some(rest) = text.get(at..) else {
                        return false;
                    };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        None => return false,
                        Some(found) if rest[found] == b'\\' => at += found + 2,
                        Some(found) => {
                            at += found + 1;
                            break;
                        }
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// Reads the fields of a `kind` message; a missing or ill-typed field is `invalid_message`.
fn fields<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
    kind: &str,
) -> Result<T, Rejection> {
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("`{kind}` message: {e}")))
}

/// The configuration keys a query string may carry (the fields of `start`).
const QUERY_CONFIG_KEYS: [&str; 8] = [
    "encoding",
    "sample_rate_hz",
    "language_code",
    "interim_results",
    "enable_automatic_punctuation",
    "model",
    "phrases",
    "single_utterance",
];

/// Reads a configuration from the query string of `/v1/listen` (for clients that cannot send a
/// first message). `Ok(None)`: the query does not configure the session (no configuration key;
/// other keys are ignored). With `encoding`, the query is the whole configuration; configuration
/// keys without `encoding` are `invalid_config`. `phrases` may repeat and/or be comma-separated.
pub fn parse_query_config(query: &str) -> Result<Option<StartRequest>, Rejection> {
    let mut request = StartRequest::default();
    let mut encoding: Option<String> = None;
    let mut sample_rate_hz: Option<u32> = None;
    let mut first_key: Option<&'static str> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(&key) = QUERY_CONFIG_KEYS.iter().find(|k| **k == key) else {
            continue;
        };
        first_key.get_or_insert(key);
        let value = value.into_owned();
        match key {
            "encoding" => set_once(&mut encoding, key, value)?,
            "sample_rate_hz" => {
                let rate = value.parse::<u32>().map_err(|_| {
                    Rejection::new(
                        ErrorCode::InvalidMessage,
                        format!(
                            "query parameter sample_rate_hz `{}` is not a number",
                            quote(&value)
                        ),
                    )
                })?;
                set_once(&mut sample_rate_hz, key, rate)?;
            }
            "language_code" => set_once(&mut request.language_code, key, value)?,
            "model" => set_once(&mut request.model, key, value)?,
            "interim_results" => {
                set_once(&mut request.interim_results, key, query_bool(key, &value)?)?
            }
            "enable_automatic_punctuation" => set_once(
                &mut request.enable_automatic_punctuation,
                key,
                query_bool(key, &value)?,
            )?,
            "single_utterance" => {
                set_once(&mut request.single_utterance, key, query_bool(key, &value)?)?
            }
            _ => request.phrases.get_or_insert_with(Vec::new).extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            ),
        }
    }
    let Some(encoding) = encoding else {
        return match first_key {
            None => Ok(None),
            Some(key) => Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "query parameter {key} configures the session, so encoding is required too"
                ),
            )),
        };
    };
    let Some(sample_rate_hz) = sample_rate_hz else {
        return Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "query parameter sample_rate_hz is required with encoding",
        ));
    };
    request.encoding = encoding;
    request.sample_rate_hz = sample_rate_hz;
    Ok(Some(request))
}

/// Stores a query value, refusing a key given twice (which of the two would be meant?).
fn set_once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), Rejection> {
    if slot.is_some() {
        return Err(Rejection::new(
            ErrorCode::InvalidMessage,
            format!("query parameter {key} is given twice"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// `true`/`false`/`1`/`0` (any case) in a query string.
fn query_bool(key: &str, value: &str) -> Result<bool, Rejection> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Rejection::new(
            ErrorCode::InvalidMessage,
            format!(
                "query parameter {key} `{}` is not true or false",
                quote(value)
            ),
        )),
    }
}

/// The start of a client-supplied string, for quoting it in a message without echoing a megabyte.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

// ───────────────────────────── server → client ─────────────────────────────

/// One word of a `transcript` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordJson {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
}

/// Every JSON message the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The configuration was accepted; audio may flow.
    Ready { session_id: String },
    /// An interim or final result (times on the session clock: ms since the first audio byte).
    Transcript {
        is_final: bool,
        transcript: String,
        confidence: f32,
        stability: f32,
        start_ms: u64,
        end_ms: u64,
        words: Vec<WordJson>,
        language_code: String,
    },
    /// Audio accepted so far (flow control); `audio_id` echoes the last JSON audio message's id.
    Ack {
        audio_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        audio_id: Option<String>,
    },
    /// Something the client should know that does not end the session.
    Warning { code: String, message: String },
    /// An error; the close that may follow is given by the code.
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
    /// After `stop`: every result has been sent; the socket closes with 1000.
    Closed {
        session_id: String,
        audio_ms: u64,
        audio_seconds: f64,
        results: u64,
        restarts: u64,
    },
}

impl ServerMessage {
    /// An `error` message; `retryable` follows from the code.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: message.into(),
            retryable: code.retryable(),
        }
    }

    /// The `transcript` message of a pipeline result.
    pub fn transcript(t: &Transcript) -> ServerMessage {
        ServerMessage::Transcript {
            is_final: t.is_final,
            transcript: t.transcript.clone(),
            confidence: t.confidence,
            stability: t.stability,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            words: t
                .words
                .iter()
                .map(|w| WordJson {
                    word: w.word.clone(),
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    confidence: w.confidence,
                })
                .collect(),
            language_code: t.language_code.clone(),
        }
    }

    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // These types always serialise (string keys, no fallible impls); the fallback keeps that
        // promise without a panic should it ever stop being true.
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({
                "type": "error",
                "code": ErrorCode::Internal.as_str(),
                "message": format!("could not encode a message: {e}"),
                "retryable": ErrorCode::Internal.retryable(),
            })
            .to_string()
        })
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WordTiming;
    use serde_json::json;

    fn parse(text: &str) -> Result<ClientMessage, Rejection> {
        parse_client_text(text)
    }

    fn code_of(text: &str) -> Option<ErrorCode> {
        parse(text).err().map(|r| r.code)
    }

    fn start(text: &str) -> StartRequest {
        match parse(text) {
            Ok(ClientMessage::Start(s)) => s,
            other => panic!("expected a start message, got {other:?}"),
        }
    }

    #[test]
    fn full_start_message_parses_and_validates() {
        let request = start(
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                "language_code":"de-DE","interim_results":false,
                "enable_automatic_punctuation":true,"model":"latest_long",
                "phrases":["voxgate","actix"],"single_utterance":true}"#,
        );
        let config = request.validate(500);
        assert_eq!(
            config,
            Ok(StartConfig {
                format: AudioFormat {
                    encoding: Encoding::Linear16,
                    sample_rate_hz: 16_000
                },
                language_code: "de-DE".into(),
                interim_results: false,
                enable_automatic_punctuation: true,
                model: "latest_long".into(),
                phrases: vec!["voxgate".into(), "actix".into()],
                single_utterance: true,
            })
        );
    }

    #[test]
    fn minimal_start_gets_the_documented_defaults() {
        let config =
            start(r#"{"type":"start","encoding":"mulaw","sample_rate_hz":8000}"#).validate(500);
        assert_eq!(
            config,
            Ok(StartConfig {
                format: AudioFormat {
                    encoding: Encoding::Mulaw,
                    sample_rate_hz: 8_000
                },
                language_code: "en-US".into(),
                interim_results: true,
                enable_automatic_punctuation: false,
                model: String::new(),
                phrases: Vec::new(),
                single_utterance: false,
            })
        );
    }

    #[test]
    fn null_optional_fields_mean_default() {
        let config = start(
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"language_code":null,
                "model":null,"phrases":null,"interim_results":null}"#,
        )
        .validate(500);
        let config = config.map_err(|r| r.message);
        assert_eq!(
            config.as_ref().map(|c| c.language_code.as_str()),
            Ok("en-US")
        );
        assert_eq!(config.map(|c| c.interim_results), Ok(true));
    }

    #[test]
    fn start_with_missing_or_ill_typed_fields_is_invalid_message() {
        for text in [
            r#"{"type":"start","sample_rate_hz":16000}"#,
            r#"{"type":"start","encoding":"LINEAR16"}"#,
            r#"{"type":"start","encoding":16,"sample_rate_hz":16000}"#,
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":"16000"}"#,
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":-1}"#,
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000.5}"#,
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"phrases":"a"}"#,
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"interim_results":1}"#,
        ] {
            assert_eq!(code_of(text), Some(ErrorCode::InvalidMessage), "{text}");
        }
    }

    #[test]
    fn start_validation_errors_have_their_codes() {
        let check = |text: &str, max_phrases: usize, code: ErrorCode| {
            let got = start(text).validate(max_phrases).err().map(|r| r.code);
            assert_eq!(got, Some(code), "{text}");
        };
        check(
            r#"{"type":"start","encoding":"MP3","sample_rate_hz":16000}"#,
            5,
            ErrorCode::UnsupportedEncoding,
        );
        check(
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":96000}"#,
            5,
            ErrorCode::UnsupportedSampleRate,
        );
        check(
            r#"{"type":"start","encoding":"AMR","sample_rate_hz":16000}"#,
            5,
            ErrorCode::UnsupportedSampleRate,
        );
        check(
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":0}"#,
            5,
            ErrorCode::UnsupportedSampleRate,
        );
        for language in ["", "en_US", "en US", &"a".repeat(36), "ü"] {
            let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                              "language_code":language})
            .to_string();
            check(&text, 5, ErrorCode::InvalidConfig);
        }
        let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                          "phrases":["a","b","c"]})
        .to_string();
        check(&text, 2, ErrorCode::InvalidConfig);
        assert!(
            start(&text).validate(3).is_ok(),
            "3 phrases within a limit of 3"
        );
        for phrase in [String::new(), " ".into(), "x".repeat(101)] {
            let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                              "phrases":[phrase]})
            .to_string();
            check(&text, 5, ErrorCode::InvalidConfig);
        }
        let long_ok = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                             "phrases":["é".repeat(100)], "language_code": "a".repeat(35)})
        .to_string();
        assert!(
            start(&long_ok).validate(5).is_ok(),
            "limits are inclusive, in characters"
        );
        check(
            r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"model":"a b"}"#,
            5,
            ErrorCode::InvalidConfig,
        );
    }

    #[test]
    fn audio_message_decodes_base64_with_or_without_padding() {
        for content in ["AAEC/w==", "AAEC/w"] {
            let text = json!({"type":"audio","content":content,"audio_id":"a-1"}).to_string();
            assert_eq!(
                parse(&text),
                Ok(ClientMessage::Audio {
                    data: Bytes::from_static(&[0, 1, 2, 255]),
                    audio_id: Some("a-1".into())
                })
            );
        }
        assert_eq!(
            parse(r#"{"type":"audio","content":""}"#),
            Ok(ClientMessage::Audio {
                data: Bytes::new(),
                audio_id: None
            })
        );
    }

    #[test]
    fn audio_errors_have_their_codes() {
        assert_eq!(
            code_of(r#"{"type":"audio","content":"not base64!"}"#),
            Some(ErrorCode::InvalidBase64)
        );
        assert_eq!(
            code_of(r#"{"type":"audio","content":"AAEC_w"}"#),
            Some(ErrorCode::InvalidBase64),
            "URL-safe alphabet is not standard base64"
        );
        assert_eq!(
            code_of(r#"{"type":"audio"}"#),
            Some(ErrorCode::InvalidMessage)
        );
        assert_eq!(
            code_of(r#"{"type":"audio","content":5}"#),
            Some(ErrorCode::InvalidMessage)
        );
        assert_eq!(
            code_of(r#"{"type":"audio","content":"AA==","audio_id":7}"#),
            Some(ErrorCode::InvalidMessage)
        );
    }

    #[test]
    fn control_messages_parse_and_ignore_extra_fields() {
        assert_eq!(
            parse(r#"{"type":"keepalive"}"#),
            Ok(ClientMessage::KeepAlive)
        );
        assert_eq!(
            parse(r#"{"type":"finalize","x":1}"#),
            Ok(ClientMessage::Finalize)
        );
        assert_eq!(parse(r#"{"type":"stop"}"#), Ok(ClientMessage::Stop));
    }

    #[test]
    fn envelope_errors_have_their_codes() {
        for text in [
            "",
            "{",
            "not json",
            "[1,2]",
            "\"start\"",
            "{}",
            r#"{"type":5}"#,
            "null",
        ] {
            assert_eq!(code_of(text), Some(ErrorCode::InvalidJson), "{text:?}");
        }
        let unknown = parse(r#"{"type":"subscribe"}"#);
        assert_eq!(
            unknown.as_ref().err().map(|r| r.code),
            Some(ErrorCode::UnknownType)
        );
        assert!(unknown
            .err()
            .is_some_and(|r| r.message.contains("subscribe")));
    }

    #[test]
    fn deep_nesting_is_invalid_json_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(code_of(&deep), Some(ErrorCode::InvalidJson));
        let nested = |depth: usize| {
            let mut text = String::from(r#"{"type":"keepalive","x":"#);
            text.push_str(&"[".repeat(depth - 1));
            text.push_str(&"]".repeat(depth - 1));
            text.push('}');
            text
        };
        assert_eq!(parse(&nested(MAX_JSON_DEPTH)), Ok(ClientMessage::KeepAlive));
        assert_eq!(
            code_of(&nested(MAX_JSON_DEPTH + 1)),
            Some(ErrorCode::InvalidJson)
        );
        // Brackets in strings, escaped quotes included, are text.
        let in_string = format!(r#"{{"type":"keepalive","x":"\"{}"}}"#, "[".repeat(100));
        assert_eq!(parse(&in_string), Ok(ClientMessage::KeepAlive));
    }

    #[test]
    fn long_client_strings_are_quoted_shortly() {
        let huge = "x".repeat(10_000);
        let rejection = parse(&json!({"type": huge}).to_string()).err();
        assert!(rejection.is_some_and(|r| r.message.len() < 300));
    }

    #[test]
    fn query_with_encoding_is_a_configuration() {
        let request = parse_query_config(
            "encoding=OGG_OPUS&sample_rate_hz=48000&language_code=fr-FR&interim_results=false\
             &enable_automatic_punctuation=1&model=latest_short&single_utterance=TRUE\
             &phrases=a%20b,c&phrases=d+e&token=ignored",
        );
        assert_eq!(
            request,
            Ok(Some(StartRequest {
                encoding: "OGG_OPUS".into(),
                sample_rate_hz: 48_000,
                language_code: Some("fr-FR".into()),
                interim_results: Some(false),
                enable_automatic_punctuation: Some(true),
                model: Some("latest_short".into()),
                phrases: Some(vec!["a b".into(), "c".into(), "d e".into()]),
                single_utterance: Some(true),
            }))
        );
    }

    #[test]
    fn query_without_configuration_keys_configures_nothing() {
        assert_eq!(parse_query_config(""), Ok(None));
        assert_eq!(parse_query_config("token=abc&x"), Ok(None));
    }

    #[test]
    fn query_errors_have_their_codes() {
        let code = |q: &str| parse_query_config(q).err().map(|r| r.code);
        assert_eq!(code("sample_rate_hz=16000"), Some(ErrorCode::InvalidConfig));
        assert_eq!(code("language_code=en-US"), Some(ErrorCode::InvalidConfig));
        assert_eq!(code("encoding=LINEAR16"), Some(ErrorCode::InvalidMessage));
        assert_eq!(
            code("encoding=LINEAR16&sample_rate_hz=fast"),
            Some(ErrorCode::InvalidMessage)
        );
        assert_eq!(
            code("encoding=LINEAR16&sample_rate_hz=16000&interim_results=maybe"),
            Some(ErrorCode::InvalidMessage)
        );
        assert_eq!(
            code("encoding=LINEAR16&encoding=MULAW&sample_rate_hz=16000"),
            Some(ErrorCode::InvalidMessage)
        );
        // Validation then applies as to a `start` message.
        let request = parse_query_config("encoding=MP3&sample_rate_hz=16000");
        let validated = request.map(|r| r.map(|r| r.validate(5).err().map(|e| e.code)));
        assert_eq!(validated, Ok(Some(Some(ErrorCode::UnsupportedEncoding))));
    }

    fn json_of(message: &ServerMessage) -> serde_json::Value {
        serde_json::from_str(&message.to_json()).unwrap_or(serde_json::Value::Null)
    }

    #[test]
    fn ready_ack_warning_closed_serialise_with_exact_fields() {
        assert_eq!(
            json_of(&ServerMessage::Ready {
                session_id: "s1".into()
            }),
            json!({"type":"ready","session_id":"s1"})
        );
        assert_eq!(
            json_of(&ServerMessage::Ack {
                audio_ms: 1500,
                audio_id: Some("c7".into())
            }),
            json!({"type":"ack","audio_ms":1500,"audio_id":"c7"})
        );
        assert_eq!(
            ServerMessage::Ack {
                audio_ms: 500,
                audio_id: None
            }
            .to_json(),
            r#"{"type":"ack","audio_ms":500}"#
        );
        assert_eq!(
            json_of(&ServerMessage::Warning {
                code: "shutting_down".into(),
                message: "m".into()
            }),
            json!({"type":"warning","code":"shutting_down","message":"m"})
        );
        assert_eq!(
            json_of(&ServerMessage::Closed {
                session_id: "s1".into(),
                audio_ms: 2500,
                audio_seconds: 2.5,
                results: 3,
                restarts: 1
            }),
            json!({"type":"closed","session_id":"s1","audio_ms":2500,"audio_seconds":2.5,
                   "results":3,"restarts":1})
        );
    }

    #[test]
    fn error_serialises_code_string_and_retryable() {
        for code in ErrorCode::ALL {
            assert_eq!(
                json_of(&ServerMessage::error(code, "why")),
                json!({"type":"error","code":code.as_str(),"message":"why",
                       "retryable":code.retryable()})
            );
        }
    }

    #[test]
    fn transcript_serialises_every_field() {
        let t = Transcript {
            is_final: true,
            transcript: "hello world".into(),
            confidence: 0.5,
            stability: 0.0,
            start_ms: 100,
            end_ms: 900,
            words: vec![WordTiming {
                word: "hello".into(),
                start_ms: 100,
                end_ms: 400,
                confidence: 0.25,
            }],
            language_code: "en-us".into(),
        };
        assert_eq!(
            json_of(&ServerMessage::transcript(&t)),
            json!({"type":"transcript","is_final":true,"transcript":"hello world",
                   "confidence":0.5,"stability":0.0,"start_ms":100,"end_ms":900,
                   "words":[{"word":"hello","start_ms":100,"end_ms":400,"confidence":0.25}],
                   "language_code":"en-us"})
        );
    }

    #[test]
    fn error_code_table_is_consistent() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "codes are distinct");
        for code in ErrorCode::ALL {
            let serde_name = serde_json::to_value(code).unwrap_or(serde_json::Value::Null);
            assert_eq!(serde_name, json!(code.as_str()));
        }
    }

    /// docs/protocol.md lists every code with its close code and retryability, as the code says.
    #[test]
    fn every_error_code_is_documented_as_implemented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!doc.is_empty(), "{} is missing", path.display());
        for code in ErrorCode::ALL {
            let prefix = format!("| `{}` |", code.as_str());
            let row = doc.lines().find(|l| l.starts_with(&prefix));
            let cells: Vec<&str> = row
                .map(|r| r.split('|').map(str::trim).collect())
                .unwrap_or_default();
            assert_eq!(
                cells.len(),
                6,
                "{code:?}: no table row `{prefix} when | close | retryable |`"
            );
            let close = code
                .close_code()
                .map_or("— (continues)".to_string(), |c| c.to_string());
            assert_eq!(
                cells[3], close,
                "close code of {code:?} in docs/protocol.md"
            );
            let retryable = if code.retryable() { "yes" } else { "no" };
            assert_eq!(
                cells[4], retryable,
                "retryable of {code:?} in docs/protocol.md"
            );
        }
    }
}
