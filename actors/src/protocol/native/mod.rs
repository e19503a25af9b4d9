//! voxgate's native client protocol v1 (`GET /v1/listen`), as documented in `docs/protocol.md`:
//! the JSON messages in both directions, the `start` fields as the client writes them and their
//! validation into a [`StartConfig`], the query-string configuration, and the subprotocol.
//!
//! Parsing lives here, apart from the session actor, so it can be tested (and fuzzed) without a socket.
//! The session actor calls [`parse_client_text`] for each text message, [`StartRequest::validate`]
//! for a `start` (or [`parse_query_config`] for a query-string configuration), and
//! [`ServerMessage::to_json`] for everything it sends. A message the client got wrong becomes a
//! [`Rejection`]: the error code and a message for a human.
//!
//! Unit tests are in `tests.rs`, property tests of everything that reads client input in `fuzz.rs`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::audio::{AudioFormat, Encoding};
use crate::protocol::dialect::quote;
use crate::protocol::{
    Endpointing, ErrorCode, Features, Rejection, StartConfig, MAX_LANGUAGE_CODES,
};

mod dialect;

pub use dialect::NativeDialect;

// ───────────────────────────── client → server ─────────────────────────────

/// The WebSocket subprotocol of this protocol. A client that offers subprotocols (a browser
/// sending its credential as `bearer.<credential>`) must offer this one too; the server selects
/// it, never echoing the credential.
pub const SUBPROTOCOL: &str = "voxgate.v1";
/// The prefix of the subprotocol that carries a credential for clients that cannot set headers.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// The Close after `reconnect`: 1012, "Service Restart" in the IANA registry of WebSocket close
/// codes, with the reason [`RECONNECT_CLOSE_REASON`].
pub const RECONNECT_CLOSE_CODE: u16 = 1012;
pub const RECONNECT_CLOSE_REASON: &str = "reconnect";
/// Deepest nesting of arrays and objects accepted in a client message (the protocol needs 2).
pub const MAX_JSON_DEPTH: usize = 16;

/// Longest language tag accepted (BCP-47 tags in practice stay far below it).
pub const MAX_LANGUAGE_CODE_CHARS: usize = 35;
/// Longest phrase hint accepted, in characters.
pub const MAX_PHRASE_CHARS: usize = 100;
/// Longest model name accepted (Google's names are short identifiers such as `latest_long`).
pub const MAX_MODEL_CHARS: usize = 64;

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
    /// Post the session's results to the server's `[webhooks] urls` too (`start` only).
    #[serde(default)]
    pub webhook: Option<bool>,
    /// Interleaved channels of LINEAR16 or MULAW audio, each transcribed on its own (`start`
    /// only; default 1).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Several languages, the first the default (instead of `language_code`).
    #[serde(default)]
    pub language_codes: Option<Vec<String>>,
    #[serde(default)]
    pub profanity_filter: Option<bool>,
    /// `standard`, `short` or `supershort`.
    #[serde(default)]
    pub endpointing: Option<String>,
    #[serde(default)]
    pub denoise: Option<bool>,
    /// `speech_started` / `speech_ended` messages as the upstream hears voice activity.
    #[serde(default)]
    pub voice_activity_events: Option<bool>,
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
        let (language_code, alternative_language_codes) =
            languages(self.language_code, self.language_codes)?;
        let model = self.model.unwrap_or_default();
        if !is_model_name(&model) {
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
            features: Features {
                alternative_language_codes,
                profanity_filter: self.profanity_filter.unwrap_or(false),
                endpointing: self.endpointing.as_deref().map(endpointing).transpose()?,
                denoise: self.denoise.unwrap_or(false),
                voice_activity_events: self.voice_activity_events.unwrap_or(false),
            },
            frame_ms: None,
        })
    }
}

/// The session's language and the others it may speak (`language_code`, or `language_codes` —
/// not both — at most [`MAX_LANGUAGE_CODES`]; default `en-US`).
fn languages(
    code: Option<String>,
    codes: Option<Vec<String>>,
) -> Result<(String, Vec<String>), Rejection> {
    let invalid = |message: String| Rejection::new(ErrorCode::InvalidConfig, message);
    let mut all = match (code, codes) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give language_code or language_codes, not both".to_string(),
            ))
        }
        (None, Some(codes)) if codes.is_empty() => {
            return Err(invalid(
                "language_codes must list at least one language".to_string(),
            ))
        }
        (None, Some(codes)) if codes.len() > MAX_LANGUAGE_CODES => {
            return Err(invalid(format!(
                "{} language_codes given; at most {MAX_LANGUAGE_CODES} are allowed",
                codes.len()
            )))
        }
        (None, Some(codes)) => codes,
        (Some(code), None) => vec![code],
        (None, None) => vec!["en-US".to_string()],
    };
    if let Some(bad) = all.iter().find(|tag| !is_language_tag(tag)) {
        return Err(invalid(format!(
            "language_code `{}` is not a language tag (1–{MAX_LANGUAGE_CODE_CHARS} letters, \
             digits and `-`, e.g. en-US)",
            quote(bad)
        )));
    }
    let first = all.remove(0);
    Ok((first, all))
}

/// `endpointing`'s value, or `invalid_config` listing the accepted ones.
fn endpointing(name: &str) -> Result<Endpointing, Rejection> {
    Endpointing::parse(name).ok_or_else(|| {
        let accepted: Vec<&str> = Endpointing::ALL.iter().map(|e| e.as_str()).collect();
        Rejection::new(
            ErrorCode::InvalidConfig,
            format!(
                "endpointing `{}` is not one of {}",
                quote(name),
                accepted.join(", ")
            ),
        )
    })
}

/// Whether `tag` looks like a language tag: 1–[`MAX_LANGUAGE_CODE_CHARS`] letters, digits and `-`
/// (every dialect's language field is checked by it).
pub(crate) fn is_language_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.chars().count() <= MAX_LANGUAGE_CODE_CHARS
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether `model` is empty or a model name: at most [`MAX_MODEL_CHARS`] letters, digits, `_`,
/// `-`, `.`.
pub(crate) fn is_model_name(model: &str) -> bool {
    model.chars().count() <= MAX_MODEL_CHARS
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `{"type":"start","resume":{"token":"vg1.…","from_ms":12340}}`: nothing else may come with
/// `resume` (the configuration is the token's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeStart {
    #[serde(rename = "type")]
    _type: String,
    resume: ResumeFields,
}

/// The `resume` object of a resuming `start`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeFields {
    token: String,
    #[serde(default)]
    from_ms: Option<u64>,
}

/// A text message from the client, parsed but not yet checked against the session's state.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"type":"start",…}`: configure the session.
    Start(StartRequest),
    /// `{"type":"start","resume":{"token":…,"from_ms":…}}`: continue a dropped session.
    Resume { token: String, from_ms: Option<u64> },
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
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses one text message from the client. (Its size is the session's to bound, before.)
pub fn parse_client_text(text: &str) -> Result<ClientMessage, Rejection> {
    let (kind, object) = typed_object(text)?;
    match kind.as_str() {
        "start" if object.contains_key("resume") => {
            fields::<ResumeStart>(object, "start").map(|start| ClientMessage::Resume {
                token: start.resume.token,
                from_ms: start.resume.from_ms,
            })
        }
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

/// A client message as a JSON object and its string `type`, bounded in nesting first: the shape
/// every JSON dialect shares (`invalid_json` otherwise).
pub(crate) fn typed_object(
    text: &str,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), Rejection> {
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
    Ok((kind, object))
}

/// Whether arrays and objects in the JSON `text` nest deeper than `limit` (brackets inside strings
/// do not count). A linear scan before parsing, so a deeply nested message costs no recursion;
/// strings are skipped with `memchr`, so a long base64 `content` costs next to nothing.
pub(crate) fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
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
pub(crate) fn fields<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
    kind: &str,
) -> Result<T, Rejection> {
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("`{kind}` message: {e}")))
}

/// The configuration keys a query string may carry (the fields of `start`).
const QUERY_CONFIG_KEYS: [&str; 13] = [
    "encoding",
    "sample_rate_hz",
    "language_code",
    "interim_results",
    "enable_automatic_punctuation",
    "model",
    "phrases",
    "single_utterance",
    "language_codes",
    "profanity_filter",
    "endpointing",
    "denoise",
    "voice_activity_events",
];

/// The non-empty, trimmed items of a comma-separated query value.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

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
                set_once(&mut sample_rate_hz, key, query_number(key, &value)?)?;
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
            "language_codes" => set_once(&mut request.language_codes, key, comma_list(&value))?,
            "profanity_filter" => {
                set_once(&mut request.profanity_filter, key, query_bool(key, &value)?)?
            }
            "endpointing" => set_once(&mut request.endpointing, key, value)?,
            "denoise" => set_once(&mut request.denoise, key, query_bool(key, &value)?)?,
            "voice_activity_events" => set_once(
                &mut request.voice_activity_events,
                key,
                query_bool(key, &value)?,
            )?,
            _ => request
                .phrases
                .get_or_insert_with(Vec::new)
                .extend(comma_list(&value)),
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

/// A whole number in a query string.
fn query_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Rejection> {
    value.parse::<T>().map_err(|_| {
        Rejection::new(
            ErrorCode::InvalidMessage,
            format!("query parameter {key} `{}` is not a number", quote(value)),
        )
    })
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
    /// The configuration was accepted; audio may flow. `resume_token`: what the client presents to
    /// resume the session after its connection drops (absent when resume is off).
    Ready {
        session_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
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
        /// On finals, when resume is on: the token to resume from the end of this final.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// The channel of a multichannel session (`channels` in `start`); absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<usize>,
    },
    /// Audio accepted so far (flow control); `audio_id` echoes the last JSON audio message's id;
    /// `final_ms`: the end of the last final sent (audio before it is never needed again);
    /// `resume_token`: a refreshed token, now and then, for a session whose last one grows old.
    Ack {
        audio_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        audio_id: Option<String>,
        final_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// The upstream heard speech begin at `at_ms` (session clock; `voice_activity_events`).
    SpeechStarted { at_ms: u64 },
    /// The upstream heard speech end at `at_ms` (session clock; `voice_activity_events`).
    SpeechEnded { at_ms: u64 },
    /// Something the client should know that does not end the session.
    Warning { code: String, message: String },
    /// An error; the close that may follow is given by the code.
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
    /// Drain by hand-off: this instance is shutting down; resume the session (through the same
    /// URL, so the balancer picks another instance) with `resume_token` from `from_ms`, the end of
    /// the last final sent. The socket then closes with [`RECONNECT_CLOSE_CODE`].
    Reconnect {
        session_id: String,
        resume_token: String,
        from_ms: u64,
        message: String,
    },
    /// After `stop`: every result has been sent; the socket closes with 1000.
    Closed {
        session_id: String,
        audio_ms: u64,
        audio_seconds: f64,
        results: u64,
        restarts: u64,
        /// Audio the upstream billed for this session, summed over its streams (Google v2's
        /// `total_billed_duration`); absent when it billed none or reports none (v1, the
        /// offline engine).
        #[serde(skip_serializing_if = "is_zero")]
        billed_ms: u64,
    },
}

/// For `skip_serializing_if`.
fn is_zero(value: &u64) -> bool {
    *value == 0
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
mod tests;
