//! The native protocol as a [`Dialect`]: `start` (or the query string) configures, `audio` and
//! binary frames carry audio, `keepalive`/`finalize`/`stop` map one to one, and every pipeline
//! report becomes its [`ServerMessage`] (`ready`, `transcript`, `ack`, `warning`, `error`,
//! `closed`). The session's behaviour on `/v1/listen` is exactly that of `docs/protocol.md`.

use super::{parse_client_text, parse_query_config, ClientMessage, ServerMessage, WordJson};
use crate::messages::{AudioAcked, Transcript};
use crate::protocol::dialect::{Close, Dialect, Inbound, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// One native session's side of the protocol.
pub struct NativeDialect {
    /// The raw query string of the upgrade request (it may carry the configuration).
    query: String,
    /// `[session] max_phrases`, for validating `start`.
    max_phrases: usize,
}

impl NativeDialect {
    pub fn new(query: impl Into<String>, max_phrases: usize) -> NativeDialect {
        NativeDialect {
            query: query.into(),
            max_phrases,
        }
    }
}

/// The `transcript` message of a pipeline result.
pub fn transcript_message(t: &Transcript) -> ServerMessage {
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

impl Dialect for NativeDialect {
    fn name(&self) -> &'static str {
        "native"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[super::SUBPROTOCOL]
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        parse_query_config(&self.query)?
            .map(|request| request.validate(self.max_phrases))
            .transpose()
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        actions.push(match parse_client_text(text)? {
            ClientMessage::Start(request) => {
                Inbound::Configure(request.validate(self.max_phrases)?)
            }
            ClientMessage::Audio { data, audio_id } => Inbound::Audio { data, audio_id },
            ClientMessage::KeepAlive => Inbound::KeepAlive,
            ClientMessage::Finalize => Inbound::Finalize,
            ClientMessage::Stop => Inbound::Stop,
        });
        Ok(())
    }

    fn ready(&mut self, session_id: &str, out: &mut Vec<String>) {
        out.push(
            ServerMessage::Ready {
                session_id: session_id.to_string(),
            }
            .to_json(),
        );
    }

    fn transcript(&mut self, transcript: &Transcript, out: &mut Vec<String>) {
        out.push(transcript_message(transcript).to_json());
    }

    fn ack(&mut self, ack: &AudioAcked, out: &mut Vec<String>) {
        out.push(
            ServerMessage::Ack {
                audio_ms: ack.audio_ms,
                audio_id: ack.audio_id.clone(),
            }
            .to_json(),
        );
    }

    fn warning(&mut self, code: &str, message: &str, out: &mut Vec<String>) {
        out.push(
            ServerMessage::Warning {
                code: code.to_string(),
                message: message.to_string(),
            }
            .to_json(),
        );
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        out.push(ServerMessage::error(code, message).to_json());
        code.close_code().map(|close| Close {
            code: close,
            reason: code.as_str().to_string(),
        })
    }

    fn closed(&mut self, end: SessionEnd<'_>, out: &mut Vec<String>) -> Close {
        out.push(
            ServerMessage::Closed {
                session_id: end.session_id.to_string(),
                audio_ms: end.audio_ms,
                audio_seconds: end.audio_ms as f64 / 1000.0,
                results: end.summary.results,
                restarts: end.summary.restarts,
            }
            .to_json(),
        );
        Close {
            code: 1000,
            reason: "closed".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WordTiming;
    use serde_json::json;

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
            serde_json::from_str::<serde_json::Value>(&transcript_message(&t).to_json())
                .unwrap_or(serde_json::Value::Null),
            json!({"type":"transcript","is_final":true,"transcript":"hello world",
                   "confidence":0.5,"stability":0.0,"start_ms":100,"end_ms":900,
                   "words":[{"word":"hello","start_ms":100,"end_ms":400,"confidence":0.25}],
                   "language_code":"en-us"})
        );
    }

    #[test]
    fn a_query_configuration_is_validated_and_a_start_becomes_configure() {
        let mut native = NativeDialect::new("encoding=LINEAR16&sample_rate_hz=16000", 10);
        let config = native.initial_config().ok().flatten();
        assert_eq!(config.map(|c| c.format.sample_rate_hz), Some(16_000));
        assert_eq!(NativeDialect::new("", 10).initial_config(), Ok(None));
        let mut actions = Vec::new();
        let start = r#"{"type":"start","encoding":"MULAW","sample_rate_hz":8000}"#;
        assert!(native.text(start, &mut actions).is_ok());
        assert!(
            matches!(actions.as_slice(), [Inbound::Configure(c)] if c.format.sample_rate_hz == 8000)
        );
        let error = native.text(r#"{"type":"nope"}"#, &mut actions);
        assert_eq!(error.map_err(|r| r.code), Err(ErrorCode::UnknownType));
    }
}
