//! Delivery of one session's events to one receiver: a queue drained by its own task, one event
//! at a time (so a receiver gets them in order), each retried with exponential backoff until it
//! is accepted (any 2xx) or `max_attempts` failed. The queue is bounded per session and across
//! the process; an event that does not fit, or that no attempt delivered, is dropped, counted
//! (`voxgate_webhook_dropped_total{reason}`) and logged — never silently. Nothing here runs on
//! the audio path: the session only pushes onto an unbounded channel after checking the bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::event::{unix_secs, Event};
use super::signature;
use crate::metrics::METRICS;
use crate::recognizer::google_auth::http::CredentialsHttp;
use crate::recognizer::google_auth::FetchError;

/// What every session's queues share: the client, the key, the policy, the process-wide count.
pub struct Shared {
    pub http: CredentialsHttp,
    pub secret: Vec<u8>,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_queue_per_session: usize,
    pub max_queue_total: usize,
    /// Events queued (not yet delivered or dropped) in the whole process.
    pub queued_total: AtomicUsize,
}

/// Why an event was not delivered (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The process-wide bound (`max_queue_total`).
    QueueFull,
    /// This session's bound for this receiver (`max_queue_per_session`).
    SessionQueueFull,
    /// Every attempt failed.
    GaveUp,
    /// The receiver's certificate is not trusted (a configuration error: retrying cannot help).
    Untrusted,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::SessionQueueFull => "session_queue_full",
            DropReason::GaveUp => "gave_up",
            DropReason::Untrusted => "untrusted",
        }
    }
}

/// `url` without its query (which may carry a receiver's secret), for logs.
fn loggable(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

fn dropped(reason: DropReason, session_id: &str, url: &str, event: &Event, why: &str) {
    METRICS
        .webhook_dropped
        .with_label_values(&[reason.as_str()])
        .inc();
    tracing::warn!(session_id, url = loggable(url), event_id = %event.id, event = event.kind,
        reason = reason.as_str(), "webhook event dropped: {why}");
}

/// One session's queue for one receiver. Dropping it lets the task deliver what is queued and end.
pub struct Queue {
    url: Arc<str>,
    session_id: Arc<str>,
    tx: mpsc::UnboundedSender<Event>,
    /// Events of this queue not yet delivered or dropped.
    pending: Arc<AtomicUsize>,
    shared: Arc<Shared>,
}

impl Queue {
    /// A queue and the task that drains it (on the current Tokio runtime).
    pub fn open(shared: Arc<Shared>, url: &str, session_id: Arc<str>) -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        let url: Arc<str> = Arc::from(url);
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(drain(
            rx,
            url.clone(),
            session_id.clone(),
            pending.clone(),
            shared.clone(),
        ));
        Queue {
            url,
            session_id,
            tx,
            pending,
            shared,
        }
    }

    /// Queues `event` unless a bound is reached (then it is dropped, counted and logged).
    pub fn push(&self, event: Event) -> Result<(), DropReason> {
        let shared = &self.shared;
        let reason = if self.pending.load(Ordering::Relaxed) >= shared.max_queue_per_session {
            Some(DropReason::SessionQueueFull)
        } else if shared.queued_total.fetch_add(1, Ordering::Relaxed) >= shared.max_queue_total {
            shared.queued_total.fetch_sub(1, Ordering::Relaxed);
            Some(DropReason::QueueFull)
        } else {
            None
        };
        if let Some(reason) = reason {
            dropped(
                reason,
                &self.session_id,
                &self.url,
                &event,
                "the queue is full",
            );
            return Err(reason);
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        METRICS.webhook_queued.inc();
        if let Err(mpsc::error::SendError(event)) = self.tx.send(event) {
            // The task is gone (its runtime shut down): nothing will deliver this one.
            self.pending.fetch_sub(1, Ordering::Relaxed);
            shared.queued_total.fetch_sub(1, Ordering::Relaxed);
            METRICS.webhook_queued.dec();
            dropped(
                DropReason::GaveUp,
                &self.session_id,
                &self.url,
                &event,
                "no delivery task",
            );
            return Err(DropReason::GaveUp);
        }
        Ok(())
    }
}

async fn drain(
    mut rx: mpsc::UnboundedReceiver<Event>,
    url: Arc<str>,
    session_id: Arc<str>,
    pending: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    while let Some(event) = rx.recv().await {
        let outcome = deliver(&shared, &url, &session_id, &event).await;
        if let Err((reason, why)) = outcome {
            dropped(reason, &session_id, &url, &event, &why);
        }
        pending.fetch_sub(1, Ordering::Relaxed);
        shared.queued_total.fetch_sub(1, Ordering::Relaxed);
        METRICS.webhook_queued.dec();
    }
}

/// Posts `event` until a 2xx reply or the last attempt.
async fn deliver(
    shared: &Shared,
    url: &str,
    session_id: &str,
    event: &Event,
) -> Result<(), (DropReason, String)> {
    let mut backoff = shared.initial_backoff;
    let mut attempt = 1;
    loop {
        let signed = signature::sign(&shared.secret, unix_secs(), &event.body);
        let headers = [
            (signature::HEADER, signed.as_str()),
            ("voxgate-event", event.kind),
            ("voxgate-event-id", event.id.as_str()),
        ];
        let reply = shared
            .http
            .post(url, "application/json", &headers, event.body.clone())
            .await;
        let failure = match reply {
            Ok(reply) if (200..300).contains(&reply.status) => {
                METRICS.webhook_delivered.inc();
                return Ok(());
            }
            Ok(reply) => format!("HTTP {}", reply.status),
            Err(FetchError::Untrusted(e)) => return Err((DropReason::Untrusted, e)),
            Err(e) => e.to_string(),
        };
        if attempt >= shared.max_attempts {
            return Err((
                DropReason::GaveUp,
                format!("{attempt} attempts failed, the last with {failure}"),
            ));
        }
        METRICS.webhook_retries.inc();
        tracing::info!(session_id, url = loggable(url), event_id = %event.id, attempt,
            backoff_ms = backoff.as_millis() as u64, "webhook delivery failed ({failure}); retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(shared.max_backoff);
        attempt += 1;
    }
}
