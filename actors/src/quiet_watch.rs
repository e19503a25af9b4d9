//! Watching for a span without an event — no client audio (the audio gap), no final result (the
//! forced final) — on a gateway that may itself be starved of CPU or stopped.
//!
//! A timer cannot tell "nothing came" from "the gateway could not look": when the process is
//! stopped (SIGSTOP) or starved (an overloaded machine, an event loop far behind), every timer
//! that came due meanwhile fires at once when it runs again — before the audio and the results
//! that waited in its sockets have been read. Acting then would half-close a stream in the middle
//! of an utterance the client never paused (the audio gap) or cut a word off a final that was
//! merely unread (the forced final): an utterance split in two, a letter lost at the cut.
//!
//! So the span is counted only while the gateway was demonstrably awake:
//!
//! - a look that runs more than `tolerance` after it was due means the gateway was stalled until
//!   now: the watch starts again from now (the gateway may be late, never wrong);
//! - a look that finds the span passed, on time, is confirmed by one more look `tolerance` later,
//!   also on time and with still nothing come: a stall that ended just after the first look was
//!   due leaves its unread input time to be read.
//!
//! The rule is the pure [`QuietWatch::look`]; its owner keeps the one timer and acts on
//! [`Look::Elapsed`]. A `tolerance` of `None` turns stall detection off: the first look that finds
//! the span passed acts, as a plain timer would.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::metrics::METRICS;

/// What a look at a [`QuietWatch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The span passed without the event while the gateway watched: act.
    Elapsed,
    /// Look again after this long.
    Again(Duration),
    /// The look ran `late_by` after its time: the gateway was stalled, the watch starts again
    /// from now; look again after `again`.
    Stalled { late_by: Duration, again: Duration },
}

/// A span to watch pass without an event, counting only time the gateway was awake. See the
/// module doc.
#[derive(Debug, Clone, Copy)]
pub struct QuietWatch {
    span: Duration,
    /// A look later than this after its time means the gateway was stalled (`None`: never).
    tolerance: Option<Duration>,
    /// Where the quiet being watched starts: the last event, or the end of the last stall seen.
    since: Instant,
    /// The previous look, on time, found the span passed: the next one confirms it.
    passed_once: bool,
}

impl QuietWatch {
    /// A watch of `span` whose quiet starts `now`.
    pub fn new(span: Duration, tolerance: Option<Duration>, now: Instant) -> QuietWatch {
        QuietWatch {
            span,
            tolerance: tolerance.filter(|t| !t.is_zero()),
            since: now,
            passed_once: false,
        }
    }

    /// The event came at `now`: the quiet starts again.
    pub fn reset(&mut self, now: Instant) {
        self.since = now;
        self.passed_once = false;
    }

    /// When the first look is due.
    pub fn first_look_in(&self, now: Instant) -> Duration {
        self.span
            .saturating_sub(now.saturating_duration_since(self.since))
    }

    /// The look that was due at `due`, taken at `now`.
    pub fn look(&mut self, due: Instant, now: Instant) -> Look {
        let Some(tolerance) = self.tolerance else {
            let quiet = now.saturating_duration_since(self.since);
            return match self.span.checked_sub(quiet) {
                Some(left) if !left.is_zero() => Look::Again(left),
                _ => Look::Elapsed,
            };
        };
        let late_by = now.saturating_duration_since(due);
        if late_by > tolerance {
            // Stalled until now: what came meanwhile may not have been read yet.
            self.reset(now);
            return Look::Stalled {
                late_by,
                again: self.span,
            };
        }
        let quiet = now.saturating_duration_since(self.since);
        if quiet < self.span {
            self.passed_once = false;
            return Look::Again(self.span - quiet);
        }
        if self.passed_once {
            return Look::Elapsed;
        }
        self.passed_once = true;
        Look::Again(tolerance)
    }
}

/// Counts a stall a look saw (`voxgate_stalled_timers_total{timer}`) and logs it: the sign of a
/// gateway stopped or starved of CPU.
pub fn note_stall(timer: &'static str, late_by: Duration, session_id: &str) {
    METRICS.stalled_timers.with_label_values(&[timer]).inc();
    debug!(
        session = session_id,
        timer,
        late_ms = late_by.as_millis() as u64,
        "timer fired late: the gateway was stalled; watching again from now"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: Duration = Duration::from_secs(5);
    const TOLERANCE: Duration = Duration::from_millis(250);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// On an awake gateway the span passes at its time, confirmed `tolerance` later.
    #[test]
    fn an_awake_gateway_acts_once_confirmed() {
        let t0 = Instant::now();
        let mut watch = QuietWatch::new(SPAN, Some(TOLERANCE), t0);
        assert_eq!(watch.first_look_in(t0), SPAN);
        let due = t0 + SPAN;
        assert_eq!(watch.look(due, due + ms(3)), Look::Again(TOLERANCE));
        let confirm = due + ms(3) + TOLERANCE;
        assert_eq!(watch.look(confirm, confirm + ms(3)), Look::Elapsed);
    }

    /// An event before the look: the quiet counts from it.
    #[test]
    fn an_event_restarts_the_quiet() {
        let t0 = Instant::now();
        let mut watch = QuietWatch::new(SPAN, Some(TOLERANCE), t0);
        watch.reset(t0 + ms(2_000));
        assert_eq!(watch.look(t0 + SPAN, t0 + SPAN), Look::Again(ms(2_000)));
        // An event between the first look and its confirmation: not elapsed.
        let due = t0 + ms(7_000);
        assert_eq!(watch.look(due, due), Look::Again(TOLERANCE));
        watch.reset(due + ms(100));
        let confirm = due + TOLERANCE;
        assert_eq!(watch.look(confirm, confirm), Look::Again(SPAN - ms(150)));
    }

    /// A look that runs late (the process was stopped or starved): nothing is concluded, the
    /// watch starts again from the moment it runs — whatever the quiet seems to be.
    #[test]
    fn a_late_look_starts_the_watch_again() {
        let t0 = Instant::now();
        let mut watch = QuietWatch::new(SPAN, Some(TOLERANCE), t0);
        let woke = t0 + ms(9_000);
        assert_eq!(
            watch.look(t0 + SPAN, woke),
            Look::Stalled {
                late_by: ms(4_000),
                again: SPAN
            }
        );
        // Its confirmation running late too.
        let due = woke + SPAN;
        assert_eq!(watch.look(due, due), Look::Again(TOLERANCE));
        let late = due + TOLERANCE + ms(400);
        assert_eq!(
            watch.look(due + TOLERANCE, late),
            Look::Stalled {
                late_by: ms(400),
                again: SPAN
            }
        );
        // Awake from then on: elapsed a span (and a confirmation) later.
        let due = late + SPAN;
        assert_eq!(watch.look(due, due), Look::Again(TOLERANCE));
        assert_eq!(watch.look(due + TOLERANCE, due + TOLERANCE), Look::Elapsed);
    }

    /// Without stall detection the first look that finds the span passed acts, late or not.
    #[test]
    fn without_a_tolerance_a_look_acts_at_once() {
        let t0 = Instant::now();
        for tolerance in [None, Some(Duration::ZERO)] {
            let mut watch = QuietWatch::new(SPAN, tolerance, t0);
            assert_eq!(watch.look(t0 + SPAN, t0 + ms(9_000)), Look::Elapsed);
            let mut watch = QuietWatch::new(SPAN, tolerance, t0);
            assert_eq!(
                watch.look(t0 + ms(3_000), t0 + ms(3_000)),
                Look::Again(ms(2_000))
            );
        }
    }
}
