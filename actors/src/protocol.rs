//! The client wire protocol v1 (`GET /v1/listen`), as documented in `docs/protocol.md`: the start
//! configuration, the JSON messages in both directions, and the table of error codes.
//!
//! Parsing lives here, apart from the session actor, so it can be tested (and fuzzed) without a socket.

use serde::Serialize;

use crate::audio::AudioFormat;

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
    /// `encoding` is not one of the accepted encodings.
    UnsupportedEncoding,
    /// `sample_rate_hz` is not allowed for the encoding.
    UnsupportedSampleRate,
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
    /// `[session] max_sessions` sessions are open already.
    TooManySessions,
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
            ErrorCode::UnsupportedEncoding | ErrorCode::UnsupportedSampleRate => Some(1003),
            ErrorCode::AudioBeforeStart
            | ErrorCode::InvalidConfig
            | ErrorCode::StartTimeout
            | ErrorCode::IdleTimeout
            | ErrorCode::SessionTooLong
            | ErrorCode::BufferFull => Some(1008),
            ErrorCode::FrameTooLarge => Some(1009),
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
                | ErrorCode::Busy
                | ErrorCode::ShuttingDown
                | ErrorCode::UpstreamUnavailable
                | ErrorCode::Internal
        )
    }
}
