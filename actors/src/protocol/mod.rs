//! Client-facing protocols: how a client speaks to voxgate over its WebSocket.
//!
//! - [`dialect`]: the [`Dialect`] trait, the seam between the session actor and a wire protocol.
//!   The session owns the socket, timers, limits and pipeline; a dialect turns client frames into
//!   [`Inbound`] actions and pipeline reports into the client's messages.
//! - [`native`]: voxgate's own protocol v1 (`GET /v1/listen`, `docs/protocol.md`): its JSON
//!   messages in both directions, the start configuration as the client writes it, the
//!   query-string configuration, and its subprotocol.
//! - [`deepgram`]: Deepgram's live API (`/deepgram/v1/listen`), for clients written against it.
//! - [`openai`]: OpenAI's Realtime transcription sessions (`/openai/v1/realtime`).
//! - [`media_stream`]: telephony media streams, Twilio (`/twilio`) and Telnyx (`/telnyx`); their
//!   transcripts leave by webhook (`crate::webhooks`).
//! - [`jambonz`]: jambonz's custom speech-to-text vendor API (`/jambonz`).
//! - [`vosk`]: vosk-server's WebSocket protocol (`/vosk`), for existing vosk clients.
//!
//! `docs/dialects.md` says, per dialect, what maps to what and what is not supported.
//!
//! What stays here, at the protocol level, is what every dialect shares because the rest of the
//! gateway speaks it:
//! - [`StartConfig`]: what a session asked for. The pipeline and every recognizer are started from
//!   it, whichever dialect the client used to ask.
//! - [`ErrorCode`] ([`error_code`]): the gateway's table of everything that can end or disturb a
//!   session — raised by the session, the audio buffer, the supervisor and the server's admission,
//!   none of which know the client's dialect. Its code strings, WebSocket close codes and
//!   retryability are those of the native protocol, documented in `docs/protocol.md`; a dialect
//!   maps each code onto its own error messages and close codes.
//! - [`Features`] ([`features`]): what a session may ask for that not every upstream honours, and
//!   the check that refuses it by name where the configured upstream cannot.
//! - [`Rejection`]: an error code with a message for a human — what any check of client input
//!   answers.
//!
//! The dialects read the actors' result messages (`Transcript`, `AudioAcked`) to write them out;
//! nothing below the session knows the dialects.

pub mod deepgram;
pub mod dialect;
mod error_code;
mod features;
pub mod jambonz;
pub mod media_stream;
pub mod native;
pub mod openai;
pub mod vosk;

use crate::audio::AudioFormat;

pub use dialect::{Dialect, Inbound, WebhookRequest};
pub use error_code::ErrorCode;
pub use features::{Endpointing, Features, Honoured, MAX_LANGUAGE_CODES};

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
    /// What not every upstream honours; checked against the configured one at `start`.
    pub features: Features,
    /// The length of the frames the session's audio is regrouped into upstream, when its dialect
    /// chose one (a phone call: [`TELEPHONY_FRAME_MS`] by default); `None`: `[audio] frame_ms`.
    pub frame_ms: Option<u64>,
}

/// A phone call's upstream frame length by default (`[dialects.twilio|telnyx|jambonz]
/// frame_ms`): the 20 ms a telephony provider sends a message, so no call audio waits in the
/// audio buffer for the rest of a longer frame.
pub const TELEPHONY_FRAME_MS: u64 = 20;

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
