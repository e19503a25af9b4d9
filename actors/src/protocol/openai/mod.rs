//! OpenAI's Realtime API, transcription sessions, as a [`Dialect`] (served at
//! `/openai/v1/realtime?intent=transcription`: an SDK's base URL is `http://HOST:PORT/openai/v1`).
//! `docs/dialects.md` has the mapping table; in short:
//!
//! - the session opens with `session.created`; `session.update` (GA) or
//!   `transcription_session.update` (beta) set the format (pcm16 at 24 kHz, G.711 µ-law or A-law),
//!   language, model and turn detection and are answered with `session.updated` /
//!   `transcription_session.updated`. The pipeline starts at the first
//!   `input_audio_buffer.append`, so format and language are fixed from then on;
//! - `append` carries base64 audio (A-law is transcoded to LINEAR16 here; 24 kHz PCM goes to the
//!   pipeline as it is, and the engines resample it); `commit` flushes (a final follows);
//!   `clear` drops what was appended so far from the transcripts;
//! - each utterance is one item: with turn detection (the default, `server_vad`), the recognizer's
//!   endpointing makes the turns: `input_audio_buffer.speech_started` at its first result,
//!   `conversation.item.input_audio_transcription.delta` for each interim that extends the text,
//!   and at its final `speech_stopped`, `committed` and `…completed`. With `turn_detection: null`
//!   the client's `commit` closes the item instead;
//! - mistakes get an `error` event and the session stays open (OpenAI's way); what ends a session
//!   gets an `error` event (`server_error` or `invalid_request_error`, the voxgate code as `code`)
//!   and the native close code.
//!
//! Wire formats in [`events`]; unit tests in `tests.rs`, property tests of the parser in `fuzz.rs`.

pub mod events;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audio::{AudioFormat, Encoding};
use crate::messages::{AudioAcked, Transcript};
use crate::protocol::dialect::{Close, Dialect, Inbound, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig};
use events::{error_event, parse_client_event, server_event, ClientEvent, EventError, InputFormat};

/// The subprotocol browsers offer (beside `openai-insecure-api-key.<key>`).
pub const SUBPROTOCOLS: [&str; 1] = ["realtime"];
/// The prefix of the subprotocol that carries a browser's key.
pub const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// `[dialects.openai]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiSettings {
    /// Whether `/openai/v1/realtime` is served.
    pub enabled: bool,
}

impl Default for OpenAiSettings {
    fn default() -> OpenAiSettings {
        OpenAiSettings { enabled: true }
    }
}

/// The credential of an OpenAI request: `Authorization: Bearer <key>`, else the subprotocol
/// `openai-insecure-api-key.<key>`. `Ok(None)`: none; `Err`: another scheme.
pub fn credential(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<Option<String>, &'static str> {
    use actix_web::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| "the Authorization header is not text")?;
        return match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => {
                Ok(Some(key.trim().to_string()))
            }
            _ => Err("Authorization must be `Bearer <key>`"),
        };
    }
    Ok(headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(KEY_SUBPROTOCOL_PREFIX)
                .map(String::from)
        }))
}

/// The upgrade's query string: a transcription session (`intent=transcription`, or no intent and
/// no model). A model without that intent asks for a conversation session, which is not served.
pub fn check_query(query: &str) -> Result<(), String> {
    let mut intent = None;
    let mut model = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "intent" => intent = Some(value.into_owned()),
            "model" => model = true,
            _ => {}
        }
    }
    match intent.as_deref() {
        Some("transcription") => Ok(()),
        None if !model => Ok(()),
        _ => Err(
            "this server serves transcription sessions only: connect with \
                  ?intent=transcription (and no model)"
                .to_string(),
        ),
    }
}

/// The JSON body of a refused handshake, in OpenAI's error shape.
pub fn refusal_body(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message, "param": null}})
}

/// Where the current item (utterance) is.
#[derive(Debug, Default)]
struct Item {
    /// `item_<n>`.
    id: String,
    /// `speech_started` was sent for it.
    started: bool,
    /// Text already sent as deltas (a prefix of what the interims said).
    delta_text: String,
    /// Finals of this item so far (manual turns: several finals may make one item).
    finals: Vec<String>,
    /// A result arrived since the last final (so a commit will bring a final).
    heard: bool,
}

/// One OpenAI session's side of the protocol.
pub struct OpenAiDialect {
    /// `sess_<session id>`.
    session_id: String,
    format: InputFormat,
    model: String,
    language: Option<String>,
    prompt: String,
    /// `None`: the client commits each turn.
    turn_detection: Option<Value>,
    /// The pipeline has started (first append): format and language are fixed.
    configured: bool,
    /// Client audio so far, ms (for `clear`).
    appended_ms: u64,
    /// Bytes appended since the last commit (a commit of nothing is an error).
    appended_since_commit: u64,
    /// Results ending at or before this (ms) are dropped: their audio was cleared.
    cleared_until_ms: u64,
    /// A manual commit waits for its final.
    commit_pending: bool,
    item: Item,
    previous_item_id: Option<String>,
    next_item: u64,
    next_event: u64,
    /// The `event_id` of the client event being handled, echoed by the errors it causes.
    handling_event_id: Option<String>,
}

impl Default for OpenAiDialect {
    fn default() -> OpenAiDialect {
        OpenAiDialect::new()
    }
}

impl OpenAiDialect {
    pub fn new() -> OpenAiDialect {
        let mut dialect = OpenAiDialect {
            session_id: String::new(),
            format: InputFormat::Pcm24k,
            model: "gpt-4o-transcribe".to_string(),
            language: None,
            prompt: String::new(),
            turn_detection: Some(json!({"type": "server_vad", "threshold": 0.5,
                "prefix_padding_ms": 300, "silence_duration_ms": 500})),
            configured: false,
            appended_ms: 0,
            appended_since_commit: 0,
            cleared_until_ms: 0,
            commit_pending: false,
            item: Item::default(),
            previous_item_id: None,
            next_item: 0,
            next_event: 0,
            handling_event_id: None,
        };
        dialect.new_item();
        dialect
    }

    fn new_item(&mut self) {
        self.next_item += 1;
        self.item = Item {
            id: format!("item_{}", self.next_item),
            ..Item::default()
        };
    }

    fn event(&mut self, kind: &str, fields: Value) -> String {
        server_event(&mut self.next_event, kind, fields)
    }

    fn start_config(&self) -> StartConfig {
        let format = match self.format {
            InputFormat::Pcm24k => AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 24_000,
            },
            InputFormat::Pcmu => AudioFormat {
                encoding: Encoding::Mulaw,
                sample_rate_hz: 8_000,
            },
            InputFormat::Pcma => AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 8_000,
            },
        };
        let language_code = match self.language.as_deref() {
            None | Some("en") => "en-US".to_string(),
            Some(tag) => tag.to_string(),
        };
        StartConfig {
            format,
            language_code,
            interim_results: true,
            enable_automatic_punctuation: true,
            model: String::new(),
            phrases: Vec::new(),
            single_utterance: false,
            features: Default::default(),
            frame_ms: None,
        }
    }

    /// The transcription session object (GA shape, or beta's flat one).
    fn session_object(&self, beta: bool) -> Value {
        let transcription = json!({"model": self.model, "language": self.language,
            "prompt": self.prompt});
        if beta {
            json!({"id": self.session_id, "object": "realtime.transcription_session",
                "input_audio_format": self.format.beta_name(),
                "input_audio_transcription": transcription,
                "turn_detection": self.turn_detection,
                "input_audio_noise_reduction": null, "include": null})
        } else {
            json!({"type": "transcription", "id": self.session_id,
                "object": "realtime.transcription_session", "expires_at": 0, "include": [],
                "audio": {"input": {"format": self.format.ga_object(),
                    "transcription": transcription, "turn_detection": self.turn_detection,
                    "noise_reduction": null}}})
        }
    }

    fn client_error(&mut self, mut error: EventError) -> Inbound {
        if error.event_id.is_none() {
            error.event_id = self.handling_event_id.clone();
        }
        Inbound::Reply(error_event(
            &mut self.next_event,
            "invalid_request_error",
            &error,
        ))
    }

    fn on_event(&mut self, event: ClientEvent, actions: &mut Vec<Inbound>) {
        match event {
            ClientEvent::Update { beta, update } => {
                let changes_stream = update.format.is_some_and(|f| f != self.format)
                    || update
                        .language
                        .as_ref()
                        .is_some_and(|l| *l != self.language);
                if self.configured && changes_stream {
                    let error = EventError {
                        code: "invalid_value",
                        message: "the audio format and language are fixed once audio has \
                                  arrived; open a new session to change them"
                            .to_string(),
                        param: Some("session".to_string()),
                        event_id: None,
                    };
                    actions.push(self.client_error(error));
                    return;
                }
                if let Some(format) = update.format {
                    self.format = format;
                }
                if let Some(language) = update.language {
                    self.language = language;
                }
                if let Some(model) = update.model {
                    self.model = model;
                }
                if let Some(prompt) = update.prompt {
                    self.prompt = prompt;
                }
                if let Some(turn_detection) = update.turn_detection {
                    self.turn_detection = turn_detection;
                }
                let kind = if beta {
                    "transcription_session.updated"
                } else {
                    "session.updated"
                };
                let session = self.session_object(beta);
                actions.push(Inbound::Reply(
                    self.event(kind, json!({"session": session})),
                ));
            }
            ClientEvent::Append(data) => {
                if data.is_empty() {
                    return;
                }
                if !self.configured {
                    self.configured = true;
                    actions.push(Inbound::Configure(self.start_config()));
                }
                self.appended_ms += data.len() as u64 / self.format.bytes_per_ms();
                self.appended_since_commit += data.len() as u64;
                let data = match self.format {
                    InputFormat::Pcma => Bytes::from(crate::audio::alaw::to_linear16(&data)),
                    InputFormat::Pcm24k | InputFormat::Pcmu => data,
                };
                actions.push(Inbound::Audio {
                    data,
                    audio_id: None,
                });
            }
            ClientEvent::Commit => {
                if self.appended_since_commit < self.format.bytes_per_ms() * 100 {
                    let error = EventError {
                        code: "input_audio_buffer_commit_empty",
                        message: format!(
                            "buffer too small: expected at least 100ms of audio, but buffer \
                             only has {}ms of audio",
                            self.appended_since_commit / self.format.bytes_per_ms()
                        ),
                        param: None,
                        event_id: None,
                    };
                    actions.push(self.client_error(error));
                    return;
                }
                self.appended_since_commit = 0;
                actions.push(Inbound::Finalize);
                if self.turn_detection.is_none() {
                    let committed = self.committed_event();
                    actions.push(Inbound::Reply(committed));
                    if self.item.heard {
                        self.commit_pending = true;
                    } else {
                        // Nothing is being recognised: the item is complete as it is.
                        let mut out = Vec::new();
                        self.complete_item(&mut out);
                        actions.extend(out.into_iter().map(Inbound::Reply));
                    }
                }
            }
            ClientEvent::Clear => {
                self.cleared_until_ms = self.appended_ms;
                self.appended_since_commit = 0;
                self.item.delta_text.clear();
                self.item.finals.clear();
                let cleared = self.event("input_audio_buffer.cleared", json!({}));
                actions.push(Inbound::Reply(cleared));
            }
        }
    }

    fn committed_event(&mut self) -> String {
        let (item_id, previous_item_id) = (self.item.id.clone(), self.previous_item_id.clone());
        self.event(
            "input_audio_buffer.committed",
            json!({"item_id": item_id, "previous_item_id": previous_item_id}),
        )
    }

    /// `…completed` for the current item, then the next item.
    fn complete_item(&mut self, out: &mut Vec<String>) {
        let transcript = self.item.finals.join(" ");
        let item_id = self.item.id.clone();
        let seconds = self.appended_ms as f64 / 1000.0;
        out.push(self.event(
            "conversation.item.input_audio_transcription.completed",
            json!({"item_id": item_id, "content_index": 0, "transcript": transcript,
                "usage": {"type": "duration", "seconds": seconds}}),
        ));
        self.previous_item_id = Some(item_id);
        self.new_item();
    }
}

impl Dialect for OpenAiDialect {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &SUBPROTOCOLS
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(None)
    }

    fn opened(&mut self, session_id: &str, out: &mut Vec<String>) {
        self.session_id = format!("sess_{session_id}");
        let session = self.session_object(false);
        out.push(self.event("session.created", json!({"session": session})));
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        match parse_client_event(text) {
            Ok((event, event_id)) => {
                self.handling_event_id = event_id;
                self.on_event(event, actions);
                self.handling_event_id = None;
            }
            Err(error) => actions.push(self.client_error(error)),
        }
        Ok(())
    }

    fn binary(&mut self, _data: Bytes) -> Result<Inbound, Rejection> {
        let error = EventError {
            code: "invalid_value",
            message: "binary frames are not part of the Realtime API: send audio as \
                      input_audio_buffer.append events"
                .to_string(),
            param: None,
            event_id: None,
        };
        Ok(self.client_error(error))
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, t: &Transcript, out: &mut Vec<String>) {
        if t.end_ms <= self.cleared_until_ms {
            return;
        }
        let vad = self.turn_detection.is_some();
        if vad && !self.item.started {
            self.item.started = true;
            let item_id = self.item.id.clone();
            out.push(self.event(
                "input_audio_buffer.speech_started",
                json!({"item_id": item_id, "audio_start_ms": t.start_ms}),
            ));
        }
        let item_id = self.item.id.clone();
        if !t.is_final {
            self.item.heard = true;
            // Deltas only ever append: a revised interim waits for the final.
            let done = self.item.finals.join(" ");
            let full = if done.is_empty() {
                t.transcript.clone()
            } else {
                format!("{done} {}", t.transcript)
            };
            if let Some(delta) = full.strip_prefix(self.item.delta_text.as_str()) {
                if !delta.is_empty() {
                    let delta = delta.to_string();
                    self.item.delta_text = full;
                    out.push(self.event(
                        "conversation.item.input_audio_transcription.delta",
                        json!({"item_id": item_id, "content_index": 0, "delta": delta}),
                    ));
                }
            }
            return;
        }
        self.item.heard = false;
        if !t.transcript.is_empty() {
            self.item.finals.push(t.transcript.clone());
        }
        if vad {
            out.push(self.event(
                "input_audio_buffer.speech_stopped",
                json!({"item_id": item_id, "audio_end_ms": t.end_ms}),
            ));
            let committed = self.committed_event();
            out.push(committed);
            self.complete_item(out);
        } else if std::mem::take(&mut self.commit_pending) {
            self.complete_item(out);
        } else {
            // Manual turns: the text so far stays in the item until the client commits.
            self.item.delta_text = self.item.finals.join(" ");
        }
    }

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {
        // The Realtime API has no warning event (its `error` events are for mistakes); the
        // session logs every warning.
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        let kind = match code {
            ErrorCode::Internal | ErrorCode::UpstreamRejected | ErrorCode::UpstreamUnavailable => {
                "server_error"
            }
            _ => "invalid_request_error",
        };
        let error = EventError {
            code: code.as_str(),
            message: message.to_string(),
            param: None,
            event_id: None,
        };
        out.push(error_event(&mut self.next_event, kind, &error));
        Close::of_code(code)
    }

    fn closed(&mut self, _end: SessionEnd<'_>, _out: &mut Vec<String>) -> Close {
        Close::normal("")
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
