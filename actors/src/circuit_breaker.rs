//! The circuit breaker shared by every stream supervisor of the process: when the upstream is down
//! for everybody, thousands of sessions must not each hammer it on their own backoff schedule.
//!
//! ```text
//!   closed ──(breaker_failures upstream failures in a row, across sessions)──▶ open
//!   open ──(open time elapsed)──▶ half-open: ONE session gets a permit to try (the probe)
//!   half-open ──probe's stream opens──▶ closed        (every waiting session goes again)
//!   half-open ──probe fails──▶ open, for twice as long (up to breaker_max_open_ms)
//! ```
//!
//! A failure counts only if its gRPC code is in `[supervision] breaker_codes` (the upstream is in
//! trouble: `UNAVAILABLE`, `INTERNAL`…), not one that concerns a single stream (`OUT_OF_RANGE` at a
//! stream limit). Any stream that opens (`RecognizerEventKind::Opened`) resets the count.
//!
//! Sessions ask [`CircuitBreaker::permit`] before opening a stream; while it is open they wait,
//! keep buffering audio, and their waits do not count against their restart intensity. The state
//! is a few fields behind a `std::sync::Mutex` held for a handful of instructions, shared by the
//! worker threads through an `Arc`; time comes in as an argument so the logic is tested exactly.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::metrics::METRICS;
use crate::settings::{parse_grpc_code, SupervisionSettings};

/// While a probe is out, other sessions look again this often.
pub const PROBE_POLL: Duration = Duration::from_millis(500);

/// A probe that never reports (its session ended) is given up after this; then another session
/// may probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a session may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Open a stream (the breaker is closed, or this session is the probe).
    Go,
    /// The upstream is considered down: ask again after this long.
    Wait(Duration),
}

/// The mutable part, behind the lock.
#[derive(Debug)]
struct State {
    /// Counted failures since a stream last opened.
    consecutive_failures: u32,
    /// `Some` while open or half-open: until when no one may try.
    open_until: Option<Instant>,
    /// How long the next opening lasts (doubles with each failed probe).
    next_open: Duration,
    /// When the current probe was allowed (half-open with a probe out).
    probe_since: Option<Instant>,
}

/// See the module doc. One per process (per backend), shared with `Arc`.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Codes that count as the upstream being in trouble.
    codes: Vec<tonic::Code>,
    /// Counted failures in a row that open the breaker; 0 disables it.
    failures_to_open: u32,
    /// The first opening's length.
    first_open: Duration,
    /// No opening is longer than this.
    max_open: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn from_settings(settings: &SupervisionSettings) -> CircuitBreaker {
        let first_open = Duration::from_millis(settings.breaker_open_ms);
        CircuitBreaker {
            codes: settings
                .breaker_codes
                .iter()
                .filter_map(|name| parse_grpc_code(name))
                .collect(),
            failures_to_open: settings.breaker_failures,
            first_open,
            max_open: Duration::from_millis(settings.breaker_max_open_ms).max(first_open),
            state: Mutex::new(State {
                consecutive_failures: 0,
                open_until: None,
                next_open: first_open,
                probe_since: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked (every update is a plain store).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a failure with `code` says the upstream is in trouble.
    pub fn counts(&self, code: tonic::Code) -> bool {
        self.codes.contains(&code)
    }

    /// Whether the breaker is open or half-open (sessions are held back).
    pub fn is_open(&self) -> bool {
        self.state().open_until.is_some()
    }

    /// May a session open a stream at `now`? See [`Permit`].
    pub fn permit(&self, now: Instant) -> Permit {
        let mut state = self.state();
        let Some(until) = state.open_until else {
            return Permit::Go;
        };
        if now < until {
            return Permit::Wait(until - now);
        }
        match state.probe_since {
            Some(since) if now.saturating_duration_since(since) < PROBE_TIMEOUT => {
                Permit::Wait(PROBE_POLL)
            }
            _ => {
                state.probe_since = Some(now);
                info!("upstream circuit breaker half-open: one session probes the upstream");
                Permit::Go
            }
        }
    }

    /// A stream opened: the upstream works. Closes the breaker.
    pub fn record_success(&self) {
        let mut state = self.state();
        state.consecutive_failures = 0;
        if state.open_until.take().is_some() {
            info!("upstream circuit breaker closed: the upstream works again");
            METRICS.breaker_open.set(0);
        }
        state.probe_since = None;
        state.next_open = self.first_open;
    }

    /// A stream failed with `code` at `now`. Returns whether this failure opened (or re-opened)
    /// the breaker.
    pub fn record_failure(&self, code: tonic::Code, now: Instant) -> bool {
        if !self.counts(code) || self.failures_to_open == 0 {
            return false;
        }
        let mut state = self.state();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let reopen = match state.open_until {
            // Half-open with a probe out: this is the probe (or a stream as unlucky): re-open.
            Some(_) => state.probe_since.is_some(),
            None => state.consecutive_failures >= self.failures_to_open,
        };
        if !reopen {
            return false;
        }
        let open_for = state.next_open;
        state.open_until = Some(now + open_for);
        state.probe_since = None;
        state.next_open = (open_for * 2).min(self.max_open);
        warn!(
            failures = state.consecutive_failures,
            open_ms = open_for.as_millis() as u64,
            "upstream circuit breaker open: sessions wait instead of retrying"
        );
        METRICS.breaker_open.set(1);
        METRICS.breaker_opens.inc();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::from_settings(&SupervisionSettings {
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            breaker_max_open_ms: 3_000,
            ..SupervisionSettings::default()
        })
    }

    const DOWN: tonic::Code = tonic::Code::Unavailable;

    /// It opens after `breaker_failures` counted failures in a row, not before; a success between
    /// resets the count; codes outside `breaker_codes` never count.
    #[test]
    fn opens_after_consecutive_upstream_failures() {
        let b = breaker();
        let t = Instant::now();
        assert!(!b.record_failure(DOWN, t));
        assert!(!b.record_failure(tonic::Code::OutOfRange, t));
        assert!(!b.record_failure(tonic::Code::InvalidArgument, t));
        assert!(!b.record_failure(DOWN, t));
        b.record_success();
        assert!(!b.record_failure(DOWN, t));
        assert!(!b.record_failure(tonic::Code::Internal, t));
        assert_eq!(b.permit(t), Permit::Go);
        assert!(b.record_failure(tonic::Code::ResourceExhausted, t));
        assert!(b.is_open());
        assert_eq!(b.permit(t), Permit::Wait(Duration::from_secs(1)));
    }

    /// Once the open time is over exactly one caller probes; the others wait and poll; a failed
    /// probe re-opens for twice as long (capped), a successful one closes it for everyone.
    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record_failure(DOWN, t);
        }
        let t1 = t + Duration::from_secs(1);
        assert_eq!(b.permit(t1), Permit::Go, "the probe");
        assert_eq!(b.permit(t1), Permit::Wait(PROBE_POLL));
        assert_eq!(b.permit(t1 + PROBE_POLL), Permit::Wait(PROBE_POLL));
        assert!(b.record_failure(DOWN, t1), "the probe failed: re-open");
        assert_eq!(b.permit(t1), Permit::Wait(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.permit(t2), Permit::Go);
        assert!(b.record_failure(DOWN, t2));
        assert_eq!(
            b.permit(t2),
            Permit::Wait(Duration::from_secs(3)),
            "capped at breaker_max_open_ms"
        );
        let t3 = t2 + Duration::from_secs(3);
        assert_eq!(b.permit(t3), Permit::Go);
        b.record_success();
        assert!(!b.is_open());
        for _ in 0..5 {
            assert_eq!(b.permit(t3), Permit::Go, "closed: everyone goes");
        }
        // The next opening starts from the first length again.
        for _ in 0..3 {
            b.record_failure(DOWN, t3);
        }
        assert_eq!(b.permit(t3), Permit::Wait(Duration::from_secs(1)));
    }

    /// Failures of streams that were already running while it is open (no probe out) do not
    /// extend the opening.
    #[test]
    fn failures_while_open_without_probe_do_not_extend_it() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record_failure(DOWN, t);
        }
        let later = t + Duration::from_millis(400);
        assert!(!b.record_failure(DOWN, later));
        assert_eq!(b.permit(later), Permit::Wait(Duration::from_millis(600)));
    }

    /// A probe whose session never reports is given up after `PROBE_TIMEOUT`.
    #[test]
    fn a_silent_probe_is_replaced() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record_failure(DOWN, t);
        }
        let t1 = t + Duration::from_secs(1);
        assert_eq!(b.permit(t1), Permit::Go);
        assert_eq!(b.permit(t1 + PROBE_TIMEOUT / 2), Permit::Wait(PROBE_POLL));
        assert_eq!(b.permit(t1 + PROBE_TIMEOUT), Permit::Go);
    }

    /// `breaker_failures = 0` disables the breaker.
    #[test]
    fn zero_failures_disables_it() {
        let b = CircuitBreaker::from_settings(&SupervisionSettings {
            breaker_failures: 0,
            ..SupervisionSettings::default()
        });
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!b.record_failure(DOWN, t));
        }
        assert_eq!(b.permit(t), Permit::Go);
    }
}
