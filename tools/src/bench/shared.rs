//! What the sessions of one bench run share: the script, the pacer, the collector of outcomes, the
//! "go" signal, and the count of sessions that have settled. Apart from the run (which builds it)
//! and the two kinds of session (gateway `load`, emulator `direct`), so that neither kind of
//! session needs the run to reach it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::dialect::BenchDialect;
use super::measure::Collector;
use super::pacer::Pacer;
use super::script::{Plan, Script};
use super::telephony::WebhookRouter;

/// Consecutive sessions start this many utterances apart in the script (so finals of different
/// sessions do not coincide).
const START_STRIDE: usize = 7;

/// What sessions share during a run.
pub struct Shared {
    /// What every session says and must hear back.
    pub script: Arc<Script>,
    /// Sends every session's frames.
    pub pacer: Arc<Pacer>,
    /// Where sessions report how they ended.
    pub collector: Collector,
    /// Sessions ask for interim results.
    pub interim: bool,
    /// Steady run: sessions wait for "go" before streaming.
    pub steady: bool,
    /// Set at "go" (direct sessions open their calls then).
    pub go: watch::Receiver<bool>,
    /// The first message of a gateway session, as a client frame (none: the URL configures it).
    pub start_frame: Option<Bytes>,
    /// The protocol gateway sessions speak.
    pub dialect: BenchDialect,
    /// Where calls whose finals come by webhook (Twilio) get them.
    pub webhooks: Option<Arc<WebhookRouter>>,
    /// Sessions that are ready, or failed before being ready.
    settled: AtomicU64,
    /// Notified when `settled` grows.
    settled_changed: Notify,
    /// Plans by starting utterance (steady runs reuse them).
    plans: Vec<OnceLock<Arc<Plan>>>,
    /// Seconds of audio per plan.
    plan_secs: f64,
}

/// What a run gives [`Shared::new`].
pub struct SharedParts {
    pub script: Arc<Script>,
    pub pacer: Arc<Pacer>,
    pub interim: bool,
    pub steady: bool,
    pub go: watch::Receiver<bool>,
    pub start_frame: Option<Bytes>,
    pub dialect: BenchDialect,
    pub webhooks: Option<Arc<WebhookRouter>>,
    /// Seconds of audio per plan.
    pub plan_secs: f64,
}

impl Shared {
    pub fn new(parts: SharedParts) -> Shared {
        Shared {
            plans: (0..parts.script.utterances.len())
                .map(|_| OnceLock::new())
                .collect(),
            plan_secs: parts.plan_secs,
            script: parts.script,
            pacer: parts.pacer,
            collector: Collector::default(),
            interim: parts.interim,
            steady: parts.steady,
            go: parts.go,
            start_frame: parts.start_frame,
            dialect: parts.dialect,
            webhooks: parts.webhooks,
            settled: AtomicU64::new(0),
            settled_changed: Notify::new(),
        }
    }
    /// A session is ready, or failed before it could be: counted once per session.
    pub fn settle(&self) {
        self.settled.fetch_add(1, Ordering::Relaxed);
        self.settled_changed.notify_waiters();
    }

    pub fn plan(&self, n: u64) -> Arc<Plan> {
        let count = self.plans.len();
        let after = (n as usize).wrapping_mul(START_STRIDE) % count;
        self.plans[after]
            .get_or_init(|| Arc::new(self.script.plan(after, self.plan_secs)))
            .clone()
    }

    pub async fn all_settled(&self, sessions: u64) {
        loop {
            let notified = self.settled_changed.notified();
            if self.settled.load(Ordering::Relaxed) >= sessions {
                return;
            }
            notified.await;
        }
    }
}
