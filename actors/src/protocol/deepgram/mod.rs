//! Deepgram's live streaming API as a [`Dialect`], for clients written against it (served at
//! `/deepgram/v1/listen`: an SDK's base URL is `ws://HOST:PORT/deepgram`). `docs/dialects.md` has
//! the mapping table; in short:
//!
//! - configuration: the query string ([`config`]), refused before the upgrade with HTTP 400 when it
//!   asks for what the gateway cannot do; the session starts at once;
//! - credential: `Authorization: Token <key>` or `Bearer <key>` (scheme in any case), or the
//!   subprotocols `token, <key>` / `bearer, <key>` browsers use ([`credential`]);
//! - binary frames are audio (an empty one ends the stream, as it does at Deepgram); `KeepAlive`
//!   resets the no-audio timer, `Finalize` flushes (the result it produces carries
//!   `from_finalize: true`), `CloseStream` delivers the last results, one `Metadata`, then 1000;
//! - results: `Results` with `is_final`, `speech_final` (a final at a pause), `start`, `duration`
//!   and the words in seconds; `SpeechStarted` (with `vad_events`) at the first result of an
//!   utterance; `UtteranceEnd` (with `utterance_end_ms`) after each final that ends one;
//! - errors: an `Error` message, then the close Deepgram uses: 1008 `DATA-0000` for audio that
//!   does not decode, 1011 `NET-0001` after `no_audio_timeout_secs` without audio or text; other
//!   codes close as in the native protocol (their code string as the reason).
//!
//! Messages on the wire are in [`messages`]; unit tests in `tests.rs`, property tests of the
//! parsers in `fuzz.rs`.

pub mod config;
pub mod messages;

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderMap, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use bytes::Bytes;

use crate::messages::{AudioAcked, Transcript};
use crate::protocol::dialect::{Close, Dialect, Inbound, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig};
pub use config::{parse_query, DeepgramConfig, DeepgramSettings, QueryRefusal};
use messages::{
    parse_client_text, seconds, Alternative, Channel, ClientMessage, ModelInfo, ResultsMetadata,
    ServerMessage, Word, MONO,
};

/// The subprotocols browsers offer with the credential after them (`token, <key>`); the scheme
/// word is selected, never the credential.
pub const SUBPROTOCOLS: [&str; 2] = ["token", "bearer"];

/// Close reason of audio that cannot be decoded (Deepgram: 1008).
pub const DATA_ERROR: &str = "DATA-0000";
/// Close reason after the no-audio timeout (Deepgram: 1011).
pub const NO_AUDIO_ERROR: &str = "NET-0001";

/// The credential of a Deepgram request: `Authorization: Token|Bearer <key>`, else the
/// subprotocol after `token` or `bearer`. `Ok(None)`: none at all; `Err`: an `Authorization`
/// header of another scheme.
pub fn credential(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| "the Authorization header is not text")?;
        let (scheme, rest) = value.split_once(' ').ok_or("Authorization: Token <key>")?;
        if !SUBPROTOCOLS.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
            return Err("Authorization must be `Token <key>` or `Bearer <token>`");
        }
        return Ok(Some(rest.trim().to_string()));
    }
    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    Ok(offered
        .windows(2)
        .find(|pair| SUBPROTOCOLS.iter().any(|s| pair[0].eq_ignore_ascii_case(s)))
        .map(|pair| pair[1].to_string()))
}

/// A refused handshake as Deepgram writes it: the reason in a `dg-error` header and a JSON body
/// `{err_code, err_msg, request_id}` (HTTP 400 for a bad query, 401 for a bad credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRefusal {
    pub err_code: String,
    pub err_msg: String,
    /// Also sent as `dg-request-id`.
    pub request_id: String,
}

impl HandshakeRefusal {
    pub fn new(err_code: &str, err_msg: &str) -> HandshakeRefusal {
        HandshakeRefusal {
            err_code: err_code.to_string(),
            err_msg: err_msg.to_string(),
            request_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The `dg-error` value: the message in visible ASCII (it may quote the client).
    pub fn header(&self) -> String {
        self.err_msg
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "err_code": self.err_code,
            "err_msg": self.err_msg,
            "request_id": self.request_id,
        })
    }
}

/// One Deepgram session's side of the protocol.
pub struct DeepgramDialect {
    config: DeepgramConfig,
    no_audio_timeout_secs: f64,
    /// The session id, Deepgram's `request_id`.
    request_id: String,
    /// When the session opened (`Metadata.created`).
    created_unix_secs: u64,
    /// A `Finalize` was sent and its result has not come yet.
    finalize_pending: bool,
    /// A result of the current utterance was sent (so the next one is not `SpeechStarted`).
    in_utterance: bool,
}

impl DeepgramDialect {
    pub fn new(config: DeepgramConfig, settings: &DeepgramSettings) -> DeepgramDialect {
        DeepgramDialect {
            config,
            no_audio_timeout_secs: settings.no_audio_timeout_secs,
            request_id: String::new(),
            created_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            finalize_pending: false,
            in_utterance: false,
        }
    }

    fn results(&self, t: &Transcript, from_finalize: bool) -> ServerMessage {
        ServerMessage::Results {
            channel_index: MONO,
            start: seconds(t.start_ms),
            duration: seconds(t.end_ms.saturating_sub(t.start_ms)),
            is_final: t.is_final,
            speech_final: t.is_final && !from_finalize && self.config.endpointing,
            from_finalize,
            channel: Channel {
                alternatives: vec![Alternative {
                    transcript: t.transcript.clone(),
                    confidence: t.confidence,
                    words: t
                        .words
                        .iter()
                        .map(|w| Word {
                            word: w.word.to_lowercase(),
                            start: seconds(w.start_ms),
                            end: seconds(w.end_ms),
                            confidence: w.confidence,
                            punctuated_word: w.word.clone(),
                        })
                        .collect(),
                }],
            },
            metadata: ResultsMetadata {
                request_id: self.request_id.clone(),
                model_info: ModelInfo {
                    name: self.config.model.clone(),
                    version: env!("CARGO_PKG_VERSION"),
                    arch: "voxgate",
                },
                model_uuid: self.request_id.clone(),
            },
        }
    }
}

impl Dialect for DeepgramDialect {
    fn name(&self) -> &'static str {
        "deepgram"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &SUBPROTOCOLS
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(Some(self.config.start.clone()))
    }

    fn idle_timeout_secs(&self) -> Option<f64> {
        Some(self.no_audio_timeout_secs)
    }

    fn opened(&mut self, session_id: &str, _out: &mut Vec<String>) {
        self.request_id = session_id.to_string();
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        actions.push(match parse_client_text(text)? {
            ClientMessage::KeepAlive => Inbound::KeepAlive,
            ClientMessage::Finalize => {
                self.finalize_pending = true;
                Inbound::Finalize
            }
            ClientMessage::CloseStream => Inbound::Stop,
            ClientMessage::Configure => Inbound::Reply(
                ServerMessage::ConfigureFailure {
                    request_id: self.request_id.clone(),
                    code: "CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                    description: "this server cannot change keyterms or features mid-stream; \
                                  give them in the query string"
                        .to_string(),
                }
                .to_json(),
            ),
        });
        Ok(())
    }

    fn binary(&mut self, data: Bytes) -> Result<Inbound, Rejection> {
        // An empty binary frame is how older clients close the stream.
        if data.is_empty() {
            return Ok(Inbound::Stop);
        }
        Ok(Inbound::Audio {
            data,
            audio_id: None,
        })
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, t: &Transcript, out: &mut Vec<String>) {
        if !t.is_final && !self.config.interim_results && !self.config.vad_events {
            return;
        }
        if self.config.vad_events && !self.in_utterance {
            out.push(
                ServerMessage::SpeechStarted {
                    channel: MONO,
                    timestamp: seconds(t.start_ms),
                }
                .to_json(),
            );
        }
        self.in_utterance = !t.is_final;
        if !t.is_final && !self.config.interim_results {
            return;
        }
        let from_finalize = t.is_final && std::mem::take(&mut self.finalize_pending);
        out.push(self.results(t, from_finalize).to_json());
        if t.is_final && self.config.utterance_end_ms.is_some() {
            if let Some(last) = t.words.last() {
                out.push(
                    ServerMessage::UtteranceEnd {
                        channel: MONO,
                        last_word_end: seconds(last.end_ms),
                    }
                    .to_json(),
                );
            }
        }
    }

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {
        // Deepgram has no warning message; the session logs every warning.
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        let variant = match code {
            ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::InvalidMessage => {
                "SchemaError".to_string()
            }
            other => other.as_str().to_string(),
        };
        out.push(
            ServerMessage::Error {
                variant,
                description: message.to_string(),
            }
            .to_json(),
        );
        let (close, reason) = match code {
            // A text message Deepgram cannot parse is answered and the stream goes on.
            ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::InvalidMessage => {
                return None
            }
            ErrorCode::InvalidAudio => (1008, DATA_ERROR),
            ErrorCode::IdleTimeout => (1011, NO_AUDIO_ERROR),
            other => (other.close_code()?, other.as_str()),
        };
        Some(Close {
            code: close,
            reason: reason.to_string(),
        })
    }

    fn closed(&mut self, end: SessionEnd<'_>, out: &mut Vec<String>) -> Close {
        out.push(
            ServerMessage::Metadata {
                transaction_key: "deprecated",
                request_id: self.request_id.clone(),
                sha256: "",
                created: messages::iso_time(self.created_unix_secs),
                duration: seconds(end.audio_ms),
                channels: 1,
            }
            .to_json(),
        );
        Close {
            code: 1000,
            reason: String::new(),
        }
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
