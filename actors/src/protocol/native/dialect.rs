//! The native protocol as a [`Dialect`]: `start` (or the query string) configures, `audio` and
//! binary frames carry audio, `keepalive`/`finalize`/`stop` map one to one, and every pipeline
//! report becomes its [`ServerMessage`] (`ready`, `transcript`, `ack`, `warning`, `error`,
//! `closed`). The session's behaviour on `/v1/listen` is exactly that of `docs/protocol.md`.
//! Native clients can resume: `start` with `resume` becomes [`Inbound::Resume`], and the session's
//! [`Progress`] goes out on `ready`, finals and acks (`resume_token`, `final_ms`).

use super::{
    parse_client_text, parse_query_config, ClientMessage, ServerMessage, WordJson,
    RECONNECT_CLOSE_CODE, RECONNECT_CLOSE_REASON,
};
use crate::audio::Encoding;
use crate::messages::{AudioAcked, SpeechActivity, Transcript, VoiceActivity};
use crate::multichannel::MAX_CHANNELS;
use crate::protocol::dialect::{
    Close, Dialect, Inbound, Move, Progress, SessionEnd, WebhookRequest,
};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// One native session's side of the protocol.
pub struct NativeDialect {
    /// The raw query string of the upgrade request (it may carry the configuration).
    query: String,
    /// `[session] max_phrases`, for validating `start`.
    max_phrases: usize,
    /// End of the last final sent (every ack says it).
    final_ms: u64,
    /// A resume token not yet sent: it goes out with the next `ready`, final or ack.
    resume_token: Option<String>,
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
            final_ms: 0,
            resume_token: None,
            webhook: false,
            channels: 1,
        }
    }
}

/// The `transcript` message of a pipeline result (of `channel` in a multichannel session;
/// `resume_token` on finals only).
pub fn transcript_message(
    t: &Transcript,
    channel: Option<usize>,
    resume_token: Option<String>,
) -> ServerMessage {
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
        resume_token: resume_token.filter(|_| t.is_final),
        channel,
    }
}

/// `channels` of `start`: 1 to [`MAX_CHANNELS`], and more than one only for audio that can be
/// split by sample (the uncompressed encodings: LINEAR16, MULAW, ALAW).
fn check_channels(channels: usize, encoding: Encoding) -> Result<(), Rejection> {
    if !(1..=MAX_CHANNELS).contains(&channels) {
        return Err(Rejection::new(
            ErrorCode::InvalidConfig,
            format!("channels must be 1 to {MAX_CHANNELS}, not {channels}"),
        ));
    }
    if channels > 1 && !encoding.is_uncompressed() {
        return Err(Rejection::new(
            ErrorCode::InvalidConfig,
            format!(
                "{} audio cannot carry {channels} interleaved channels; LINEAR16, MULAW and ALAW can",
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
            ClientMessage::Resume { token, from_ms } => Inbound::Resume { token, from_ms },
            ClientMessage::Audio { data, audio_id } => Inbound::Audio { data, audio_id },
            ClientMessage::KeepAlive => Inbound::KeepAlive,
            ClientMessage::Finalize => Inbound::Finalize,
            ClientMessage::Stop => Inbound::Stop,
        });
        Ok(())
    }

    fn resumable(&self) -> bool {
        true
    }

    fn progress(&mut self, progress: Progress) {
        self.final_ms = progress.final_ms;
        if progress.resume_token.is_some() {
            self.resume_token = progress.resume_token;
        }
    }

    fn reconnect(&mut self, to: &Move<'_>, out: &mut Vec<String>) -> Option<Close> {
        out.push(
            ServerMessage::Reconnect {
                session_id: to.session_id.to_string(),
                resume_token: to.resume_token.to_string(),
                from_ms: to.from_ms,
                message: to.message.to_string(),
            }
            .to_json(),
        );
        Some(Close {
            code: RECONNECT_CLOSE_CODE,
            reason: RECONNECT_CLOSE_REASON.to_string(),
        })
    }

    fn ready(&mut self, session_id: &str, out: &mut Vec<String>) {
        out.push(
            ServerMessage::Ready {
                session_id: session_id.to_string(),
                resume_token: self.resume_token.take(),
            }
            .to_json(),
        );
    }

    fn transcript(&mut self, transcript: &Transcript, out: &mut Vec<String>) {
        let token = if transcript.is_final {
            self.resume_token.take()
        } else {
            None
        };
        out.push(transcript_message(transcript, None, token).to_json());
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
        out.push(transcript_message(transcript, Some(channel), None).to_json());
    }

    fn voice_activity(&mut self, event: &VoiceActivity, out: &mut Vec<String>) {
        let at_ms = event.at_ms;
        let message = match event.activity {
            SpeechActivity::Started => ServerMessage::SpeechStarted { at_ms },
            SpeechActivity::Ended => ServerMessage::SpeechEnded { at_ms },
        };
        out.push(message.to_json());
    }

    fn ack(&mut self, ack: &AudioAcked, out: &mut Vec<String>) {
        out.push(
            ServerMessage::Ack {
                audio_ms: ack.audio_ms,
                audio_id: ack.audio_id.clone(),
                final_ms: self.final_ms,
                resume_token: self.resume_token.take(),
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
        Close::of_code(code)
    }

    fn closed(&mut self, end: SessionEnd<'_>, out: &mut Vec<String>) -> Close {
        out.push(
            ServerMessage::Closed {
                session_id: end.session_id.to_string(),
                audio_ms: end.audio_ms,
                audio_seconds: end.audio_ms as f64 / 1000.0,
                results: end.summary.results,
                restarts: end.summary.restarts,
                billed_ms: end.summary.billed_ms,
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
            serde_json::from_str::<serde_json::Value>(
                &transcript_message(&t, None, None).to_json()
            )
            .unwrap_or(serde_json::Value::Null),
            json!({"type":"transcript","is_final":true,"transcript":"hello world",
                   "confidence":0.5,"stability":0.0,"start_ms":100,"end_ms":900,
                   "words":[{"word":"hello","start_ms":100,"end_ms":400,"confidence":0.25}],
                   "language_code":"en-us"})
        );
    }

    fn sent(out: &mut Vec<String>) -> serde_json::Value {
        out.pop()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    #[test]
    fn progress_goes_out_once_on_ready_finals_and_acks() {
        let mut native = NativeDialect::new("", 10);
        assert!(native.resumable());
        let mut out = Vec::new();
        let token = |t: &str| Progress {
            final_ms: 0,
            resume_token: Some(t.to_string()),
        };
        native.progress(token("t0"));
        native.ready("s1", &mut out);
        assert_eq!(sent(&mut out)["resume_token"], "t0");
        let ack = AudioAcked {
            audio_ms: 500,
            audio_id: None,
        };
        native.ack(&ack, &mut out);
        assert_eq!(
            sent(&mut out),
            json!({"type":"ack","audio_ms":500,"final_ms":0})
        );
        let mut result = Transcript {
            is_final: false,
            transcript: "hi".into(),
            confidence: 0.5,
            stability: 0.5,
            start_ms: 0,
            end_ms: 700,
            words: Vec::new(),
            language_code: "en-us".into(),
        };
        // An interim never carries the token; the next final or ack does.
        native.progress(Progress {
            final_ms: 700,
            resume_token: Some("t1".into()),
        });
        native.transcript(&result, &mut out);
        assert_eq!(sent(&mut out).get("resume_token"), None);
        result.is_final = true;
        native.transcript(&result, &mut out);
        assert_eq!(sent(&mut out)["resume_token"], "t1");
        native.progress(Progress {
            final_ms: 700,
            resume_token: None,
        });
        native.ack(&ack, &mut out);
        assert_eq!(
            sent(&mut out),
            json!({"type":"ack","audio_ms":500,"final_ms":700})
        );
        native.progress(token("t2"));
        native.ack(&ack, &mut out);
        assert_eq!(sent(&mut out)["resume_token"], "t2");
    }

    #[test]
    fn reconnect_carries_the_token_and_resume_point_then_closes_with_1012() {
        let mut native = NativeDialect::new("", 10);
        let mut out = Vec::new();
        let to = Move {
            session_id: "s1",
            resume_token: "vg1.t",
            from_ms: 4_200,
            message: "moving",
        };
        let close = native.reconnect(&to, &mut out);
        assert_eq!(
            sent(&mut out),
            json!({"type":"reconnect","session_id":"s1","resume_token":"vg1.t","from_ms":4200,
                   "message":"moving"})
        );
        assert_eq!(
            close,
            Some(Close {
                code: 1012,
                reason: "reconnect".into()
            })
        );
    }

    #[test]
    fn a_start_with_resume_becomes_resume() {
        let mut native = NativeDialect::new("", 10);
        let mut actions = Vec::new();
        let start = r#"{"type":"start","resume":{"token":"vg1.a.b","from_ms":500}}"#;
        assert!(native.text(start, &mut actions).is_ok());
        assert_eq!(
            actions,
            [Inbound::Resume {
                token: "vg1.a.b".into(),
                from_ms: Some(500)
            }]
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
