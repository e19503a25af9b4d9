//! What every stream of one emulator shares: its configuration, start time, statistics, fault
//! schedule, shutdown signal and recognisers. Apart from the service (which admits streams) and the
//! stream (which runs one), so that neither needs the other to reach it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::EmulatorConfig;
use crate::faults::{FaultSchedule, PlannedFault};
use crate::oauth::Tokens;
use crate::recognizer::Recognizers;
use crate::stats::Stats;

/// What every stream of one emulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    /// When the emulator started: the origin of `refuse_streams_for` and of the outage window.
    pub started: Instant,
    pub stats: Stats,
    pub faults: Mutex<FaultSchedule>,
    /// Cancelled at shutdown: open streams end with `UNAVAILABLE`.
    pub shutdown: CancellationToken,
    /// Numbers streams for logs.
    pub next_stream_id: AtomicU64,
    /// What each stream recognises with.
    pub recognizers: Recognizers,
    /// With `--require-auth`: the tokens granted, which every call must present.
    pub tokens: Option<Arc<Tokens>>,
}

impl Shared {
    pub fn new(
        config: EmulatorConfig,
        shutdown: CancellationToken,
        recognizers: Recognizers,
    ) -> Shared {
        Shared {
            faults: Mutex::new(FaultSchedule::new(&config.faults)),
            config,
            started: Instant::now(),
            stats: Stats::default(),
            shutdown,
            next_stream_id: AtomicU64::new(1),
            recognizers,
            tokens: None,
        }
    }

    /// Why a stream opening now is refused, if it is: shutting down, the refusal window after the
    /// start, or an outage.
    pub fn refusal(&self, now: Instant) -> Option<&'static str> {
        let since_start = now.saturating_duration_since(self.started);
        if self.shutdown.is_cancelled() {
            return Some("shutting down");
        }
        if since_start < self.config.refuse_streams_for {
            return Some("refusing streams after start");
        }
        if let Some(outage) = self.config.outage {
            if since_start >= outage.after && since_start < outage.after + outage.duration {
                return Some("outage");
            }
        }
        None
    }

    pub fn next_fault(&self) -> Option<PlannedFault> {
        match self.faults.lock() {
            Ok(mut schedule) => schedule.next_fault(),
            // A panic elsewhere poisoned the lock; the schedule itself is still usable.
            Err(poisoned) => poisoned.into_inner().next_fault(),
        }
    }
}
