//! vosk-server's WebSocket protocol as a [`Dialect`], for existing vosk clients (served at
//! `/vosk`: a client switches by changing its URL to `ws://HOST:PORT/vosk`). `docs/dialects.md`
//! has the mapping table; in short:
//!
//! - an optional `{"config": {"sample_rate", "words", "max_alternatives", "phrase_list"}}` before
//!   the audio; the pipeline starts at the first binary frame (LINEAR16 at the configured rate,
//!   `[dialects.vosk] sample_rate` without a config), as vosk builds its recognizer then;
//! - every binary frame gets exactly one reply, as from vosk: the oldest final not yet sent as
//!   `{"text", "result"}`, else the latest interim as `{"partial"}`. The recognizer runs beside
//!   the socket, so a reply says what was recognised when the frame arrived, not after it;
//! - `{"eof" : 1}`: the pipeline is flushed, every final not yet sent comes as one last result,
//!   then the close (1000). `{"reset" : 1}` flushes and carries on;
//! - vosk has no error message: an error is one `{"error", "code"}` object, after a last result
//!   with whatever was recognised and not yet sent, then the native close code.
//!
//! vosk clients send no credential: the key is given as `Authorization: Bearer` or `?key=` in the
//! URL ([`parse_query`], [`credential`]). Messages on the wire are in [`messages`]; unit tests in
//! `tests.rs`, property tests of the parser in `fuzz.rs`.

pub mod messages;

use std::collections::VecDeque;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::audio::{AudioFormat, Encoding};
use crate::messages::{AudioAcked, Transcript};
use crate::protocol::dialect::{bearer_credential, quote, Close, Dialect, Inbound, SessionEnd};
use crate::protocol::native::is_language_tag;
use crate::protocol::{ErrorCode, Rejection, StartConfig};
use messages::{parse_client_text, ClientMessage, ConfigUpdate, ResultShape};

/// `[dialects.vosk]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoskSettings {
    /// Whether `/vosk` is served.
    pub enabled: bool,
    /// The rate of audio sent without a `config` (vosk-server's `VOSK_SAMPLE_RATE`), Hz.
    pub sample_rate: u32,
    /// The language of a vosk session (vosk's protocol has none: its model decides); a client
    /// may give another with `?language=` in the URL.
    pub language: String,
    /// Whether results carry word times without a `config` saying so (`VOSK_SHOW_WORDS`).
    pub words: bool,
}

impl Default for VoskSettings {
    fn default() -> VoskSettings {
        VoskSettings {
            enabled: true,
            sample_rate: 8_000,
            language: "en-US".to_string(),
            words: true,
        }
    }
}

impl VoskSettings {
    /// The range checks of the service's `Config::validate`: (key, ok).
    pub fn checks(&self) -> [(&'static str, bool); 2] {
        [
            (
                "dialects.vosk.sample_rate",
                Encoding::Linear16.sample_rate_allowed(self.sample_rate),
            ),
            ("dialects.vosk.language", is_language_tag(&self.language)),
        ]
    }
}

/// What a vosk client's URL says: `?key=` (its credential, when it cannot send a header) and
/// `?language=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoskQuery {
    pub key: Option<String>,
    pub language: Option<String>,
}

/// Reads the upgrade's query string; `Err`: a language that is not a language tag.
pub fn parse_query(query: &str) -> Result<VoskQuery, String> {
    let mut parsed = VoskQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "key" => parsed.key = Some(value.into_owned()),
            "language" => {
                if !is_language_tag(&value) {
                    return Err(format!(
                        "language `{}` is not a language tag",
                        quote(&value)
                    ));
                }
                parsed.language = Some(value.into_owned());
            }
            _ => {}
        }
    }
    Ok(parsed)
}

/// The credential of a vosk request: `Authorization: Bearer <key>`, else `?key=`. `Err`: an
/// `Authorization` header of another scheme.
pub fn credential(headers: &HeaderMap, query: &VoskQuery) -> Result<Option<String>, &'static str> {
    Ok(bearer_credential(headers)?.or_else(|| query.key.clone()))
}

/// One vosk session's side of the protocol.
pub struct VoskDialect {
    /// `[session] max_phrases`, for `phrase_list`.
    max_phrases: usize,
    language: String,
    sample_rate: u32,
    phrases: Vec<String>,
    shape: ResultShape,
    /// The pipeline was started (at the first binary frame): `config` changes nothing after.
    configured: bool,
    /// `{"eof" : 1}` arrived: no more replies until the last result.
    ended: bool,
    /// Finals not yet sent, oldest first (each frame's reply takes one).
    finals: VecDeque<Transcript>,
    /// The latest interim since the last final.
    partial: String,
}

impl VoskDialect {
    pub fn new(settings: &VoskSettings, query: &VoskQuery, max_phrases: usize) -> VoskDialect {
        VoskDialect {
            max_phrases,
            language: query
                .language
                .clone()
                .unwrap_or_else(|| settings.language.clone()),
            sample_rate: settings.sample_rate,
            phrases: Vec::new(),
            shape: ResultShape {
                words: settings.words,
                alternatives: false,
            },
            configured: false,
            ended: false,
            finals: VecDeque::new(),
            partial: String::new(),
        }
    }

    fn start_config(&self) -> StartConfig {
        StartConfig {
            format: AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: self.sample_rate,
            },
            language_code: self.language.clone(),
            // Partials are what vosk answers between finals.
            interim_results: true,
            enable_automatic_punctuation: false,
            model: String::new(),
            phrases: self.phrases.clone(),
            single_utterance: false,
            features: Default::default(),
            frame_ms: None,
        }
    }

    fn apply(&mut self, update: ConfigUpdate) {
        // As in vosk-server, a config counts only before the recognizer is built.
        if self.configured {
            return;
        }
        if let Some(rate) = update.sample_rate {
            self.sample_rate = rate;
        }
        if let Some(words) = update.words {
            self.shape.words = words;
        }
        if let Some(n) = update.max_alternatives {
            self.shape.alternatives = n > 0;
        }
        if let Some(phrases) = update.phrase_list {
            self.phrases = phrases;
        }
    }

    /// The reply to one frame: the oldest final not yet sent, else the latest interim.
    fn frame_reply(&mut self) -> String {
        match self.finals.pop_front() {
            Some(t) => self.result_of(std::slice::from_ref(&t)),
            None => messages::partial(&self.partial),
        }
    }

    /// One result holding `finals` (none: `{"text": ""}`).
    fn result_of(&self, finals: &[Transcript]) -> String {
        let texts: Vec<&str> = finals.iter().map(|t| t.transcript.as_str()).collect();
        let words: Vec<_> = finals.iter().flat_map(|t| t.words.iter()).collect();
        let confidence = if finals.is_empty() {
            0.0
        } else {
            finals.iter().map(|t| t.confidence).sum::<f32>() / finals.len() as f32
        };
        messages::result(&texts, &words, confidence, self.shape)
    }

    /// Every final not yet sent, as one result.
    fn flush(&mut self) -> String {
        let finals: Vec<Transcript> = self.finals.drain(..).collect();
        self.result_of(&finals)
    }
}

impl Dialect for VoskDialect {
    fn name(&self) -> &'static str {
        "vosk"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(None)
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        match parse_client_text(text, self.max_phrases)? {
            ClientMessage::Config(update) => self.apply(update),
            ClientMessage::Eof => {
                self.ended = true;
                actions.push(Inbound::Stop);
            }
            // After eof nothing is answered but the last result.
            ClientMessage::Reset if self.ended => {}
            ClientMessage::Reset => {
                if self.configured {
                    actions.push(Inbound::Finalize);
                }
                // vosk answers a reset with a result: the flushed final comes in a later reply.
                let reply = match self.finals.pop_front() {
                    Some(t) => self.result_of(std::slice::from_ref(&t)),
                    None => self.result_of(&[]),
                };
                actions.push(Inbound::Reply(reply));
            }
        }
        Ok(())
    }

    fn binary_actions(&mut self, data: Bytes, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        if !self.configured && !self.ended {
            self.configured = true;
            actions.push(Inbound::Configure(self.start_config()));
        }
        actions.push(Inbound::Audio {
            data,
            audio_id: None,
        });
        if !self.ended {
            actions.push(Inbound::Reply(self.frame_reply()));
        }
        Ok(())
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, t: &Transcript, _out: &mut Vec<String>) {
        // vosk only ever speaks in reply to a frame: results wait for the next one.
        if t.is_final {
            self.partial.clear();
            if !t.transcript.is_empty() {
                self.finals.push_back(t.clone());
            }
        } else {
            self.partial.clone_from(&t.transcript);
        }
    }

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {
        // vosk has no warning message; the session logs every warning.
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        let close = Close::of_code(code);
        if close.is_some() && !self.finals.is_empty() {
            // What was recognised is not lost to the error that ends the session.
            out.push(self.flush());
        }
        out.push(json!({"error": message, "code": code.as_str()}).to_string());
        close
    }

    fn closed(&mut self, _end: SessionEnd<'_>, out: &mut Vec<String>) -> Close {
        out.push(self.flush());
        Close::normal("")
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
