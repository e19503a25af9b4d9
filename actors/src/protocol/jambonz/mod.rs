//! jambonz's custom speech-to-text vendor API as a [`Dialect`] (served at `/jambonz`: the URL
//! given to jambonz for a custom STT vendor is `ws(s)://HOST:PORT/jambonz`, its API key a
//! voxgate key). `docs/dialects.md` has the mapping table; in short:
//!
//! - credential: `Authorization: Bearer <key>`, which jambonz sends with the key entered for the
//!   vendor ([`credential`]);
//! - `start` configures the session (LINEAR16 at `sampleRateHz`, `language`, `interimResults`,
//!   `options.hints` as phrase hints); binary frames are audio; `stop` delivers the remaining
//!   results, then the server closes the socket (1000), as jambonz expects;
//! - a jambonz session is a phone call: its audio goes upstream in frames of
//!   `[dialects.jambonz] frame_ms` (20 ms, as Twilio's and Telnyx's calls), not `[audio]
//!   frame_ms` — jambonz's chunk size is not documented, and a short frame never holds back
//!   audio that arrives in longer chunks (`docs/dialects.md`);
//! - results: `transcription` with `is_final`, one alternative (`transcript`, `confidence`),
//!   `channel` 1 and `language`; interims only when `interimResults` asked for them;
//! - errors: `{"type": "error", "error": "<code>: <message>"}`, then the native close code when
//!   the error ends the session.
//!
//! Messages on the wire are in [`messages`]; unit tests in `tests.rs`, property tests of the
//! parser in `fuzz.rs`.

pub mod messages;

use actix_web::http::header::HeaderMap;
use serde::Deserialize;

use crate::messages::{AudioAcked, Transcript};
use crate::protocol::dialect::{bearer_credential, Close, Dialect, Inbound, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig, TELEPHONY_FRAME_MS};
use messages::{parse_client_text, Alternative, ClientMessage, ServerMessage};

/// `[dialects.jambonz]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JambonzSettings {
    /// Whether `/jambonz` is served.
    pub enabled: bool,
    /// The length of the frames a session's audio goes upstream in, ms: a phone call's 20 ms
    /// by default (`[audio] frame_ms` is for the other dialects).
    pub frame_ms: u64,
}

impl Default for JambonzSettings {
    fn default() -> JambonzSettings {
        JambonzSettings {
            enabled: true,
            frame_ms: TELEPHONY_FRAME_MS,
        }
    }
}

/// The credential of a jambonz request: `Authorization: Bearer <key>`. `Ok(None)`: none; `Err`:
/// another scheme.
pub fn credential(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    bearer_credential(headers)
}

/// A refused handshake: jambonz's error shape as the JSON body.
pub fn refusal_body(message: &str) -> String {
    ServerMessage::Error {
        error: message.to_string(),
    }
    .to_json()
}

/// One jambonz session's side of the protocol.
pub struct JambonzDialect {
    /// `[session] max_phrases`, for the hints.
    max_phrases: usize,
    /// From `start`: whether interim transcriptions are sent.
    interim_results: bool,
    /// From `start`: reported when the recognizer names no language.
    language: String,
    /// `start` arrived.
    started: bool,
    /// The session's upstream frame length (`[dialects.jambonz] frame_ms`).
    frame_ms: u64,
}

impl JambonzDialect {
    pub fn new(max_phrases: usize) -> JambonzDialect {
        JambonzDialect {
            max_phrases,
            interim_results: false,
            language: String::new(),
            started: false,
            frame_ms: TELEPHONY_FRAME_MS,
        }
    }

    /// Sends the session's audio upstream in frames of `frame_ms` (default
    /// [`TELEPHONY_FRAME_MS`]).
    pub fn frame_ms(mut self, frame_ms: u64) -> JambonzDialect {
        self.frame_ms = frame_ms;
        self
    }
}

impl Dialect for JambonzDialect {
    fn name(&self) -> &'static str {
        "jambonz"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(None)
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        actions.push(match parse_client_text(text, self.max_phrases)? {
            ClientMessage::Start(mut config) => {
                config.frame_ms = Some(self.frame_ms);
                // A second `start` is refused by the session (`already_started`): the first
                // one's settings stay.
                if !std::mem::replace(&mut self.started, true) {
                    self.interim_results = config.interim_results;
                    self.language.clone_from(&config.language_code);
                }
                Inbound::Configure(config)
            }
            ClientMessage::Stop => Inbound::Stop,
        });
        Ok(())
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, t: &Transcript, out: &mut Vec<String>) {
        // An empty result says nothing; jambonz would take an empty final for silence.
        if t.transcript.is_empty() || (!t.is_final && !self.interim_results) {
            return;
        }
        let language = if t.language_code.is_empty() {
            self.language.clone()
        } else {
            t.language_code.clone()
        };
        out.push(
            ServerMessage::Transcription {
                is_final: t.is_final,
                alternatives: vec![Alternative {
                    transcript: t.transcript.clone(),
                    confidence: t.confidence,
                }],
                channel: 1,
                language,
            }
            .to_json(),
        );
    }

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {
        // jambonz has no warning message; the session logs every warning.
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        out.push(
            ServerMessage::Error {
                error: format!("{}: {message}", code.as_str()),
            }
            .to_json(),
        );
        Close::of_code(code)
    }

    fn closed(&mut self, _end: SessionEnd<'_>, _out: &mut Vec<String>) -> Close {
        // jambonz does not close after `stop`: the server does, once every result is sent.
        Close::normal("")
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
