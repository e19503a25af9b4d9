//! The native protocol as a [`Dialect`]: `start` (or the query string) configures, `audio` and
//! binary frames carry audio, `keepalive`/`finalize`/`stop` map one to one, and every pipeline
//! report becomes its [`ServerMessage`] (`ready`, `transcript`, `ack`, `warning`, `error`,
//! `closed`). The session's behaviour on `/v1/listen` is exactly that of `docs/protocol.md`.

use bytes::Bytes;

use super::{parse_client_text, parse_query_config, ClientMessage, ServerMessage, WordJson};
use crate::audio::Encoding;
use crate::messages::{AudioAcked, Transcript};
use crate::multichannel::MAX_CHANNELS;
use crate::protocol::dialect::{Close, Dialect, Inbound, SessionEnd, WebhookRequest};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// One native session's side of the protocol.
pub struct NativeDialect {
    /// The raw query string of the upgrade request (it may carry the configuration).
    query: String,
    /// `[session] max_phrases`, for validating `start`.
    max_phrases: usize,
    /// `start` asked for `webhook: true`.
    webhook: bool,
    /// `start`'s `channels`.
    channels: usize,
}

impl NativeDialect {
    pub fn new(query: impl Into<String>, max_phrases: usize) -> NativeDialect {
        NativeDialect {
            query: query.into(),
            max_phrases,
            webhook: false,
            channels: 1,
        }
    }
}

/// The `transcript` message of a pipeline result (of `channel` in a multichannel session).
pub fn transcript_message(t: &Transcript, channel: Option<usize>) -> ServerMessage {
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
        channel,
    }
}

/// `channels` of `start`: 1 to [`MAX_CHANNELS`], and more than one only for audio that can be
/// split by sample (LINEAR16, MULAW).
fn check_channels(channels: usize, encoding: Encoding) -> Result<(), Rejection> {
    if !(1..=MAX_CHANNELS).contains(&channels) {
        return Err(Rejection::new(
            ErrorCode::InvalidConfig,
            format!("channels must be 1 to {MAX_CHANNELS}, not {channels}"),
        ));
    }
    if channels > 1 && !matches!(encoding, Encoding::Linear16 | Encoding::Mulaw) {
        return Err(Rejection::new(
            ErrorCode::InvalidConfig,
            format!(
                "{} audio cannot carry {channels} interleaved channels; LINEAR16 and MULAW can",
                encoding.as_str()
            ),
        ));
    }
    Ok(())
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
                let webhook = request.webhook.unwrap_or(false);
                let channels = request.channels.unwrap_or(1);
                let config = request.validate(self.max_phrases)?;
                check_channels(channels, config.format.encoding)?;
                self.webhook = webhook;
                self.channels = channels;
                Inbound::Configure(config)
            }
            ClientMessage::Audio { data, audio_id } => Inbound::Audio { data, audio_id },
            ClientMessage::KeepAlive => Inbound::KeepAlive,
            ClientMessage::Finalize => Inbound::Finalize,
            ClientMessage::Stop => Inbound::Stop,
        });
        Ok(())
    }

    fn binary(&mut self, data: Bytes) -> Result<Inbound, Rejection> {
        Ok(Inbound::Audio {
            data,
            audio_id: None,
        })
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
        out.push(transcript_message(transcript, None).to_json());
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn channel_transcript(
        &mut self,
        channel: usize,
        transcript: &Transcript,
        out: &mut Vec<String>,
    ) {
        out.push(transcript_message(transcript, Some(channel)).to_json());
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
        Close::after(code)
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
        Close::normal("closed")
    }

    fn webhook_request(&self) -> Option<WebhookRequest> {
        self.webhook.then(|| WebhookRequest {
            tracks: vec!["mono".into()],
            ..WebhookRequest::default()
        })
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
            serde_json::from_str::<serde_json::Value>(&transcript_message(&t, None).to_json())
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

    #[test]
    fn channels_are_checked_and_tag_the_transcripts() {
        let start = |extra: &str| {
            format!(r#"{{"type":"start","encoding":"MULAW","sample_rate_hz":8000{extra}}}"#)
        };
        let mut native = NativeDialect::new("", 10);
        let mut actions = Vec::new();
        assert!(native
            .text(&start(r#","channels":2"#), &mut actions)
            .is_ok());
        assert_eq!(native.channels(), 2);
        let mut out = Vec::new();
        let t = Transcript {
            is_final: true,
            transcript: "x".into(),
            confidence: 1.0,
            stability: 0.0,
            start_ms: 0,
            end_ms: 1,
            words: Vec::new(),
            language_code: "en-US".into(),
        };
        native.channel_transcript(1, &t, &mut out);
        native.transcript(&t, &mut out);
        let channels: Vec<serde_json::Value> = out
            .iter()
            .map(|m| {
                serde_json::from_str::<serde_json::Value>(m).unwrap_or_default()["channel"].clone()
            })
            .collect();
        assert_eq!(channels, [json!(1), serde_json::Value::Null]);
        for bad in [r#","channels":0"#, r#","channels":9"#] {
            let refused = NativeDialect::new("", 10).text(&start(bad), &mut actions);
            assert_eq!(refused.map_err(|r| r.code), Err(ErrorCode::InvalidConfig));
        }
        let flac = r#"{"type":"start","encoding":"FLAC","sample_rate_hz":16000,"channels":2}"#;
        let refused = NativeDialect::new("", 10).text(flac, &mut actions);
        assert_eq!(refused.map_err(|r| r.code), Err(ErrorCode::InvalidConfig));
    }
}
