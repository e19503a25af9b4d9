//! Deepgram live messages on the wire, both ways: the client's text messages (`KeepAlive`,
//! `Finalize`, `CloseStream`, `Configure`) parsed into [`ClientMessage`], and the server's
//! (`Results`, `Metadata`, `SpeechStarted`, `UtteranceEnd`, `Error`, `ConfigureFailure`) as
//! serialisable types whose fields are the ones Deepgram's SDK models require.

use serde::Serialize;

use crate::protocol::dialect::quote;
use crate::protocol::native::typed_object;
use crate::protocol::{ErrorCode, Rejection};

// ───────────────────────────── client → server ─────────────────────────────

/// A text message from a Deepgram client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    KeepAlive,
    Finalize,
    CloseStream,
    /// Mid-stream keyterm or feature changes: answered with `ConfigureFailure`.
    Configure,
}

/// Parses one text message (its size already bounded by the session).
pub fn parse_client_text(text: &str) -> Result<ClientMessage, Rejection> {
    let (kind, _) = typed_object(text)?;
    match kind.as_str() {
        "KeepAlive" => Ok(ClientMessage::KeepAlive),
        "Finalize" => Ok(ClientMessage::Finalize),
        "CloseStream" => Ok(ClientMessage::CloseStream),
        "Configure" => Ok(ClientMessage::Configure),
        other => Err(Rejection::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type `{}` (known: KeepAlive, Finalize, CloseStream, Configure)",
                quote(other)
            ),
        )),
    }
}

// ───────────────────────────── server → client ─────────────────────────────

/// Channel index and channel count, as Deepgram writes them for mono audio.
pub const MONO: [u32; 2] = [0, 1];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub confidence: f32,
    pub punctuated_word: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub transcript: String,
    pub confidence: f32,
    pub words: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: &'static str,
    pub arch: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultsMetadata {
    pub request_id: String,
    pub model_info: ModelInfo,
    pub model_uuid: String,
}

/// Every message the server sends, tagged by `type` as Deepgram spells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    Results {
        channel_index: [u32; 2],
        /// Seconds from the start of the stream.
        start: f64,
        duration: f64,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
        channel: Channel,
        metadata: ResultsMetadata,
    },
    Metadata {
        transaction_key: &'static str,
        request_id: String,
        sha256: &'static str,
        created: String,
        duration: f64,
        channels: u32,
    },
    SpeechStarted {
        channel: [u32; 2],
        timestamp: f64,
    },
    UtteranceEnd {
        channel: [u32; 2],
        last_word_end: f64,
    },
    Error {
        variant: String,
        description: String,
    },
    ConfigureFailure {
        request_id: String,
        code: &'static str,
        description: String,
    },
}

impl ServerMessage {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // These types always serialise (string keys, finite numbers from the pipeline); the
        // fallback keeps that promise without a panic should it ever stop being true.
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({
                "type": "Error",
                "variant": "InternalError",
                "description": format!("could not encode a message: {e}"),
            })
            .to_string()
        })
    }
}

/// Milliseconds as Deepgram's seconds.
pub fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `unix_secs` as an ISO 8601 UTC time (`2026-11-30T22:34:20.000Z`), for `Metadata.created`.
pub fn iso_time(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs_of_day / 3_600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}
