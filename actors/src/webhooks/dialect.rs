//! [`WebhookDialect`]: any dialect, with its results posted to webhooks when it asks for it
//! ([`Dialect::webhook_request`]). It checks the request when the client configures the session
//! (a session that asks for webhooks the server cannot post is refused with `invalid_config`),
//! opens the session's queues when the pipeline is ready, and turns the results and the session's
//! end into events. Everything else passes through untouched.

use std::sync::Arc;

use bytes::Bytes;

use super::event::Ending;
use super::{SessionWebhooks, Webhooks};
use crate::messages::{AudioAcked, Transcript, VoiceActivity};
use crate::protocol::dialect::{
    CallEvent, Close, Dialect, Inbound, Move, Progress, SessionEnd, WebhookRequest,
};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// A dialect whose results may also be posted.
pub struct WebhookDialect {
    inner: Box<dyn Dialect>,
    /// `None`: the server posts nothing (`[webhooks] secret` unset).
    webhooks: Option<Arc<Webhooks>>,
    /// The checked request and its receivers, between configuration and `ready`.
    checked: Option<(WebhookRequest, Vec<String>)>,
    /// Open from `ready` on, for a session that posts.
    session: Option<SessionWebhooks>,
}

impl WebhookDialect {
    pub fn wrap(inner: Box<dyn Dialect>, webhooks: Option<Arc<Webhooks>>) -> Box<dyn Dialect> {
        Box::new(WebhookDialect {
            inner,
            webhooks,
            checked: None,
            session: None,
        })
    }

    /// Checks what the inner dialect asks for, now that it is configured.
    fn check(&mut self) -> Result<(), Rejection> {
        let Some(request) = self.inner.webhook_request() else {
            return Ok(());
        };
        let Some(webhooks) = &self.webhooks else {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                "this server posts no webhooks ([webhooks] secret is not set)",
            ));
        };
        let destinations = webhooks
            .destinations(request.url.as_deref())
            .map_err(|message| Rejection::new(ErrorCode::InvalidConfig, message))?;
        self.checked = Some((request, destinations));
        Ok(())
    }
}

impl Dialect for WebhookDialect {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        self.inner.subprotocols()
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        let config = self.inner.initial_config()?;
        if config.is_some() {
            self.check()?;
        }
        Ok(config)
    }

    fn idle_timeout_secs(&self) -> Option<f64> {
        self.inner.idle_timeout_secs()
    }

    fn opened(&mut self, session_id: &str, out: &mut Vec<String>) {
        self.inner.opened(session_id, out)
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        let first = actions.len();
        let parsed = self.inner.text(text, actions);
        let configures = actions[first..]
            .iter()
            .any(|a| matches!(a, Inbound::Configure(_)));
        if configures && self.session.is_none() {
            if let Err(rejection) = self.check() {
                // The session must not start: its results would go nowhere.
                actions.truncate(first);
                return Err(rejection);
            }
        }
        let mut events = Vec::new();
        self.inner.take_call_events(&mut events);
        // (Before `ready` there is no session to post for: the call has not started.)
        if let Some(session) = &mut self.session {
            for event in events {
                session.call_event(event);
            }
        }
        parsed
    }

    fn binary(&mut self, data: Bytes) -> Result<Inbound, Rejection> {
        self.inner.binary(data)
    }

    fn binary_actions(&mut self, data: Bytes, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        self.inner.binary_actions(data, actions)
    }

    fn resumable(&self) -> bool {
        self.inner.resumable()
    }

    fn progress(&mut self, progress: Progress) {
        self.inner.progress(progress)
    }

    fn reconnect(&mut self, to: &Move<'_>, out: &mut Vec<String>) -> Option<Close> {
        self.inner.reconnect(to, out)
    }

    fn ready(&mut self, session_id: &str, out: &mut Vec<String>) {
        self.inner.ready(session_id, out);
        if let (Some(webhooks), Some((request, destinations))) =
            (&self.webhooks, self.checked.take())
        {
            self.session =
                Some(webhooks.open(session_id, self.inner.name(), &destinations, request));
        }
    }

    fn transcript(&mut self, transcript: &Transcript, out: &mut Vec<String>) {
        self.inner.transcript(transcript, out);
        if let Some(session) = &mut self.session {
            session.transcript(transcript, 0);
        }
    }

    /// To the client only: webhooks carry results, not voice activity (docs/dialects.md).
    fn voice_activity(&mut self, activity: &VoiceActivity, out: &mut Vec<String>) {
        self.inner.voice_activity(activity, out);
    }

    fn channels(&self) -> usize {
        self.inner.channels()
    }

    fn channel_transcript(
        &mut self,
        channel: usize,
        transcript: &Transcript,
        out: &mut Vec<String>,
    ) {
        self.inner.channel_transcript(channel, transcript, out);
        if let Some(session) = &mut self.session {
            session.transcript(transcript, channel);
        }
    }

    fn ack(&mut self, ack: &AudioAcked, out: &mut Vec<String>) {
        self.inner.ack(ack, out);
        if let Some(session) = &mut self.session {
            session.audio(ack.audio_ms);
        }
    }

    fn warning(&mut self, code: &str, message: &str, out: &mut Vec<String>) {
        self.inner.warning(code, message, out)
    }

    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close> {
        let close = self.inner.error(code, message, out);
        if let (Some(session), Some(_)) = (&mut self.session, &close) {
            let ending = Ending {
                reason: code.as_str().to_string(),
                audio_ms: session.audio_ms,
                summary: crate::messages::PipelineSummary {
                    results: session.finals,
                    restarts: 0,
                    billed_ms: 0,
                },
            };
            session.end(ending);
        }
        close
    }

    fn closed(&mut self, end: SessionEnd<'_>, out: &mut Vec<String>) -> Close {
        let ending = Ending {
            reason: "closed".into(),
            audio_ms: end.audio_ms,
            summary: end.summary,
        };
        let close = self.inner.closed(end, out);
        if let Some(session) = &mut self.session {
            session.end(ending);
        }
        close
    }

    fn outlives_socket(&self) -> bool {
        self.inner.outlives_socket()
    }

    fn take_call_events(&mut self, events: &mut Vec<CallEvent>) {
        self.inner.take_call_events(events)
    }

    fn webhook_request(&self) -> Option<WebhookRequest> {
        self.inner.webhook_request()
    }
}
