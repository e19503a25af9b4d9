//! The table of error codes a client can receive: the stable code string, the WebSocket close
//! code that follows and whether retrying may help — one row per code, listed in
//! `docs/protocol.md` (a test below holds the two together).

use serde::Serialize;

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
    /// A resume token that is not a token of this format.
    ResumeMalformed,
    /// A resume token whose signature is not valid (changed, or another secret's).
    ResumeForged,
    /// A resume token past its expiry (`[session] resume_window_secs`).
    ResumeExpired,
    /// A resume token issued to another API key than the connecting one.
    ResumeOtherKey,
    /// Resume is off on this server (`[session] resume_window_secs = 0`).
    ResumeUnavailable,
}

impl ErrorCode {
    /// Every code, in the order `docs/protocol.md` lists them.
    pub const ALL: [ErrorCode; 31] = [
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
        ErrorCode::ResumeMalformed,
        ErrorCode::ResumeForged,
        ErrorCode::ResumeExpired,
        ErrorCode::ResumeOtherKey,
        ErrorCode::ResumeUnavailable,
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
            ErrorCode::ResumeMalformed => "resume_malformed",
            ErrorCode::ResumeForged => "resume_forged",
            ErrorCode::ResumeExpired => "resume_expired",
            ErrorCode::ResumeOtherKey => "resume_other_key",
            ErrorCode::ResumeUnavailable => "resume_unavailable",
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
            | ErrorCode::TooManyClientSessions
            | ErrorCode::ResumeMalformed
            | ErrorCode::ResumeForged
            | ErrorCode::ResumeExpired
            | ErrorCode::ResumeOtherKey
            | ErrorCode::ResumeUnavailable => Some(1008),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
