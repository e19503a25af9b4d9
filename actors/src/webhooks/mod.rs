//! Transcripts to webhooks. A telephony provider owns its media stream's socket, so the words
//! of a call leave by HTTP: each posting session's events (`session.started`, `transcript.final`,
//! `transcript.interim` when `[webhooks] interim`, `session.ended` with a summary) are posted as
//! JSON to the `[webhooks] urls` and, per call, to a URL the call names if `[webhooks] allow`
//! lets it — signed (`Voxgate-Signature`, [`signature`]), in order per session and receiver,
//! retried with backoff, bounded per session and in total, counted in metrics ([`delivery`]).
//! Posting never waits on a receiver: the session only queues.
//!
//! Which sessions post is their dialect's business ([`crate::protocol::Dialect::webhook_request`]:
//! Twilio and Telnyx always, a native client with `webhook: true`); [`WebhookDialect`] wraps any
//! dialect and does the rest, so the session actor knows nothing of webhooks.
//!
//! - [`settings`]: `[webhooks]` and its checks, the allow-list.
//! - [`event`]: the events' JSON.
//! - [`signature`]: signing (and verifying, for receivers and tests).
//! - [`delivery`]: the per-session, per-receiver queue and its retrying task.
//! - [`dialect`](mod@dialect): the dialect wrapper.
//! - [`test_receiver`]: a real HTTP receiver on loopback that can fail and stall on command, for
//!   the tests and for `voxgate bench --dialect twilio` (which times each final's arrival at it).

mod delivery;
pub mod dialect;
pub mod event;
pub mod settings;
pub mod signature;
pub mod test_receiver;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::messages::Transcript;
use crate::protocol::dialect::{CallEvent, WebhookRequest};
use crate::recognizer::google_auth::http::CredentialsHttp;
use crate::recognizer::google_auth::trust::TrustRoots;
pub use delivery::DropReason;
use delivery::{Queue, Shared};
pub use dialect::WebhookDialect;
use event::Ending;
pub use settings::WebhookSettings;

/// The process's webhooks: settings, HTTP client, key and the process-wide bound. Shared by every
/// worker thread; `None` where `[webhooks] secret` is not set (then nothing is posted).
pub struct Webhooks {
    settings: WebhookSettings,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Webhooks {
    /// The webhooks of `settings` (already validated), or `None` without a secret; an error
    /// names the key (an unreadable `ca_file`).
    pub fn from_settings(settings: &WebhookSettings) -> Result<Option<Arc<Webhooks>>, String> {
        let Some(secret) = settings.secret.as_ref() else {
            return Ok(None);
        };
        let trust = TrustRoots::from_ca_file("webhooks.ca_file", settings.ca_file.as_deref())
            .map_err(|e| e.0)?;
        let timeout = Duration::try_from_secs_f64(settings.timeout_secs)
            .map_err(|e| format!("webhooks.timeout_secs: {e}"))?;
        let http = CredentialsHttp::new(&trust, timeout).map_err(|e| e.0)?;
        Ok(Some(Arc::new(Webhooks {
            shared: Arc::new(Shared {
                http,
                secret: secret.as_bytes().to_vec(),
                max_attempts: settings.max_attempts,
                initial_backoff: Duration::from_millis(settings.initial_backoff_ms),
                max_backoff: Duration::from_millis(settings.max_backoff_ms),
                max_queue_per_session: settings.max_queue_per_session,
                max_queue_total: settings.max_queue_total,
                queued_total: AtomicUsize::new(0),
            }),
            settings: settings.clone(),
        })))
    }

    /// Where a session's events go: `[webhooks] urls` and the call's own URL (if the allow-list
    /// lets it). An error says why the session cannot post.
    pub fn destinations(&self, call_url: Option<&str>) -> Result<Vec<String>, String> {
        let mut urls = self.settings.urls.clone();
        if let Some(url) = call_url {
            if !self.settings.allows(url) {
                return Err(format!(
                    "the webhook URL `{}` is not allowed by [webhooks] allow",
                    crate::protocol::dialect::quote(url)
                ));
            }
            if !urls.iter().any(|u| u == url) {
                urls.push(url.to_string());
            }
        }
        if urls.is_empty() {
            return Err("no webhook URL: [webhooks] urls is empty and the call named none".into());
        }
        Ok(urls)
    }

    /// Opens a session's queues and posts `session.started`.
    pub fn open(
        &self,
        session_id: &str,
        dialect: &str,
        destinations: &[String],
        request: WebhookRequest,
    ) -> SessionWebhooks {
        let id: Arc<str> = Arc::from(session_id);
        let queues = destinations
            .iter()
            .map(|url| Queue::open(self.shared.clone(), url, id.clone()))
            .collect();
        let mut session = SessionWebhooks {
            session_id: id,
            queues,
            interim: self.settings.interim,
            sequence: 0,
            finals: 0,
            posted: 0,
            dropped: 0,
            audio_ms: 0,
            ended: false,
            tracks: request.tracks.clone(),
        };
        let fields = event::started(dialect, &request.call, &request.tracks);
        session.post("session.started", fields);
        session
    }
}

/// One session's side of the webhooks: numbers its events and queues them for every receiver.
/// Dropped without [`SessionWebhooks::end`] (the socket went away), it posts `session.ended`
/// with reason `disconnected`.
pub struct SessionWebhooks {
    session_id: Arc<str>,
    queues: Vec<Queue>,
    interim: bool,
    /// The next event's `sequence`.
    sequence: u64,
    /// Final results seen (the summary of a session that ended without the pipeline's).
    finals: u64,
    /// Transcript events queued (for every receiver).
    posted: u64,
    /// Events dropped at a full queue (for any receiver).
    dropped: u64,
    /// Audio acknowledged so far, ms.
    audio_ms: u64,
    ended: bool,
    /// The name of each channel's track (`inbound`, …); channel `n` without a name is `channel_n`.
    tracks: Vec<String>,
}

impl SessionWebhooks {
    fn post(&mut self, kind: &'static str, fields: Map<String, Value>) {
        let event = event::build(&self.session_id, self.sequence, kind, fields);
        self.sequence += 1;
        for queue in &self.queues {
            if queue.push(event.clone()).is_err() {
                self.dropped += 1;
            }
        }
    }

    /// A result of `channel`: finals always, interims when `[webhooks] interim`.
    pub fn transcript(&mut self, transcript: &Transcript, channel: usize) {
        if transcript.is_final {
            self.finals += 1;
        } else if !self.interim {
            return;
        }
        let track = self
            .tracks
            .get(channel)
            .cloned()
            .unwrap_or_else(|| format!("channel_{channel}"));
        let kind = if transcript.is_final {
            "transcript.final"
        } else {
            "transcript.interim"
        };
        self.posted += 1;
        self.post(kind, event::transcript(transcript, channel, &track));
    }

    /// Something that happened on the call (a DTMF digit).
    pub fn call_event(&mut self, event: CallEvent) {
        self.post(event.kind, event.fields);
    }

    /// Audio acknowledged so far (for the summary of a disconnected session).
    pub fn audio(&mut self, audio_ms: u64) {
        self.audio_ms = self.audio_ms.max(audio_ms);
    }

    /// Posts `session.ended` (once).
    pub fn end(&mut self, ending: Ending) {
        if self.ended {
            return;
        }
        self.ended = true;
        let fields = event::ended(&ending, self.posted, self.dropped);
        self.post("session.ended", fields);
    }
}

impl Drop for SessionWebhooks {
    fn drop(&mut self) {
        let ending = Ending {
            reason: "disconnected".into(),
            audio_ms: self.audio_ms,
            summary: crate::messages::PipelineSummary {
                results: self.finals,
                restarts: 0,
                billed_ms: 0,
            },
        };
        self.end(ending);
    }
}
