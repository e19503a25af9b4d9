//! The restart policy of upstream streams, as data (OTP style): which gRPC codes are worth a
//! restart, how long to back off before each one, how many restarts within a period are
//! tolerated before the supervisor gives up, and when a healthy stream is rotated before Google's
//! stream-duration limit.
//!
//! Everything here is pure — time and randomness come in as arguments — so the schedule can be
//! tested exactly; the [`crate::supervisor::StreamSupervisor`] only asks it what to do.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::settings::{parse_grpc_code, SupervisionSettings};

/// The policy built from `[supervision]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// Codes after which a failed stream is restarted; any other code is final.
    retryable: Vec<tonic::Code>,
    /// Backoff before the first restart of a run of consecutive failures.
    initial_backoff_ms: f64,
    /// Each further consecutive failure multiplies the backoff by this.
    multiplier: f64,
    /// No backoff is longer than this, jitter included.
    max_backoff_ms: f64,
    /// Each backoff is drawn from ± this fraction around its nominal value.
    jitter: f64,
    /// Restart intensity: at most this many restarts within `period`.
    max_restarts: u32,
    period: Duration,
    rotation: RotationPolicy,
    /// A timer later than this means the gateway was stalled (`None`: no stall detection).
    stall_tolerance: Option<Duration>,
}

/// When a healthy stream is replaced by a fresh one before Google's stream-duration limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotationPolicy {
    /// From this age on, the stream is switched at its next final result.
    pub rotate_after: Duration,
    /// At this age it is switched whatever.
    pub max_age: Duration,
    /// A stream opened ahead of time is replaced if it waited this long for its switch.
    pub standby_max_wait: Duration,
    /// A stream that gave no final for this long is half-closed to force one (`None`: never), so
    /// speech without a pause is never replayed from the same point stream after stream.
    pub force_final_after: Option<Duration>,
}

impl RestartPolicy {
    /// Builds the policy from its configuration section. Unknown code names were already rejected
    /// at configuration load; should one slip through it is skipped with a warning, never guessed.
    pub fn from_settings(settings: &SupervisionSettings) -> RestartPolicy {
        let retryable = settings
            .retryable_codes
            .iter()
            .filter_map(|name| {
                let code = parse_grpc_code(name);
                if code.is_none() {
                    warn!(code = %name, "supervision.retryable_codes: unknown gRPC code ignored");
                }
                code
            })
            .collect();
        RestartPolicy {
            retryable,
            initial_backoff_ms: settings.initial_backoff_ms as f64,
            multiplier: settings.backoff_multiplier.max(1.0),
            max_backoff_ms: settings.max_backoff_ms as f64,
            jitter: settings.jitter.clamp(0.0, 1.0),
            max_restarts: settings.max_restarts,
            period: secs(settings.restart_period_secs),
            rotation: RotationPolicy {
                rotate_after: secs(settings.rotate_after_secs),
                max_age: secs(settings.max_stream_secs.max(settings.rotate_after_secs)),
                standby_max_wait: secs(settings.standby_max_wait_secs)
                    .max(Duration::from_millis(100)),
                force_final_after: Some(secs(settings.force_final_after_secs))
                    .filter(|d| !d.is_zero()),
            },
            stall_tolerance: settings.stall_tolerance(),
        }
    }

    /// When streams are rotated.
    pub fn rotation(&self) -> RotationPolicy {
        self.rotation
    }

    /// How late a timer may fire before the gateway counts itself stalled (see
    /// [`crate::quiet_watch`]); `None`: never.
    pub fn stall_tolerance(&self) -> Option<Duration> {
        self.stall_tolerance
    }

    /// The jitter fraction, for waits outside the backoff schedule (the circuit breaker's).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Whether a stream that failed with `code` should be restarted.
    pub fn is_retryable(&self, code: tonic::Code) -> bool {
        self.retryable.contains(&code)
    }

    /// The range the backoff before the `attempt`-th consecutive restart (1-based) is drawn from:
    /// nominal `initial × multiplier^(attempt−1)` capped at the maximum, ± jitter, never above the
    /// maximum.
    pub fn backoff_bounds(&self, attempt: u32) -> (Duration, Duration) {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let nominal = (self.initial_backoff_ms * self.multiplier.powi(exponent))
            .min(self.max_backoff_ms)
            .max(0.0);
        let low = nominal * (1.0 - self.jitter);
        let high = (nominal * (1.0 + self.jitter)).min(self.max_backoff_ms);
        (millis(low), millis(high.max(low)))
    }

    /// The backoff before the `attempt`-th consecutive restart; `unit` in [0, 1] picks the point in
    /// the jitter range (the supervisor passes a random number).
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let (low, high) = self.backoff_bounds(attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        low + (high - low).mul_f64(unit)
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1_000.0).unwrap_or(Duration::ZERO)
}

/// A restart the policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// 1 for the first restart after a success, 2 for the next consecutive one, …
    pub attempt: u32,
    pub backoff: Duration,
}

/// One session's restart history: the restarts within the intensity period and the run of
/// consecutive failures.
#[derive(Debug, Default)]
pub struct RestartTracker {
    /// When recent restarts happened, oldest first; those older than the period are forgotten.
    recent: VecDeque<Instant>,
    /// Failures since the upstream last proved to work (a result, or a clean end).
    consecutive: u32,
}

impl RestartTracker {
    /// A stream failed and may be restarted: `Some` with the backoff if the intensity allows one
    /// more restart at `now` (and it is recorded), `None` if the policy gives up. `unit` in
    /// [0, 1] draws the jitter.
    pub fn next_restart(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        unit: f64,
    ) -> Option<Restart> {
        let restart = self.peek_restart(policy, now, unit)?;
        self.record_restart(policy, now);
        Some(restart)
    }

    /// The restart [`Self::next_restart`] would allow at `now`, without recording it: the
    /// supervisor decides with this (a pure function) and records what it carries out.
    pub fn peek_restart(&self, policy: &RestartPolicy, now: Instant, unit: f64) -> Option<Restart> {
        if self.restarts_in_period(policy, now) >= policy.max_restarts as usize {
            return None;
        }
        Some(self.next_backoff(policy, unit))
    }

    /// The next restart of the run of consecutive failures, whatever the intensity: for a restart
    /// that is not counted against it.
    pub fn next_backoff(&self, policy: &RestartPolicy, unit: f64) -> Restart {
        let attempt = self.consecutive.saturating_add(1);
        Restart {
            attempt,
            backoff: policy.backoff(attempt, unit),
        }
    }

    /// Records a restart that is not counted against the intensity (the upstream made progress
    /// before it failed): it only lengthens the run of consecutive failures.
    pub fn record_uncounted_restart(&mut self) {
        self.consecutive = self.consecutive.saturating_add(1);
    }

    /// Records a restart at `now`: it counts against the intensity and lengthens the run of
    /// consecutive failures.
    pub fn record_restart(&mut self, policy: &RestartPolicy, now: Instant) {
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) >= policy.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.consecutive = self.consecutive.saturating_add(1);
    }

    /// Restarts within the intensity period at `now`.
    pub fn restarts_in_period(&self, policy: &RestartPolicy, now: Instant) -> usize {
        self.recent
            .iter()
            .filter(|&&at| now.saturating_duration_since(at) < policy.period)
            .count()
    }

    /// The upstream works again: the next failure starts a new run with the initial backoff.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
    }

    /// Restarts counted in the current intensity window.
    pub fn recent_restarts(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_CODES: [tonic::Code; 17] = [
        tonic::Code::Ok,
        tonic::Code::Cancelled,
        tonic::Code::Unknown,
        tonic::Code::InvalidArgument,
        tonic::Code::DeadlineExceeded,
        tonic::Code::NotFound,
        tonic::Code::AlreadyExists,
        tonic::Code::PermissionDenied,
        tonic::Code::ResourceExhausted,
        tonic::Code::FailedPrecondition,
        tonic::Code::Aborted,
        tonic::Code::OutOfRange,
        tonic::Code::Unimplemented,
        tonic::Code::Internal,
        tonic::Code::Unavailable,
        tonic::Code::DataLoss,
        tonic::Code::Unauthenticated,
    ];

    fn policy() -> RestartPolicy {
        RestartPolicy::from_settings(&SupervisionSettings::default())
    }

    /// The default policy restarts exactly the transient codes and treats the rest as final
    /// (`UNAUTHENTICATED` gets its one fresh-token retry from the supervisor, not from this list).
    #[test]
    fn default_policy_classifies_every_grpc_code() {
        use tonic::Code::*;
        let p = policy();
        for code in ALL_CODES {
            let expected = matches!(
                code,
                Unavailable
                    | Internal
                    | ResourceExhausted
                    | DeadlineExceeded
                    | OutOfRange
                    | Aborted
                    | Unknown
            );
            assert_eq!(p.is_retryable(code), expected, "{code:?}");
        }
    }

    /// Without jitter the schedule is initial × multiplier^n, capped.
    #[test]
    fn backoff_is_exponential_and_capped() {
        let p = RestartPolicy::from_settings(&SupervisionSettings {
            jitter: 0.0,
            ..SupervisionSettings::default()
        });
        let schedule: Vec<u128> = (1..=9).map(|n| p.backoff(n, 0.5).as_millis()).collect();
        assert_eq!(
            schedule,
            vec![100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]
        );
        assert_eq!(p.backoff(u32::MAX, 0.5).as_millis(), 5_000);
    }

    /// With jitter every draw stays within ± the fraction and never above the cap, and the whole
    /// range is used.
    #[test]
    fn jitter_stays_within_bounds() {
        let p = policy();
        let (low, high) = p.backoff_bounds(1);
        assert_eq!((low.as_millis(), high.as_millis()), (80, 120));
        assert_eq!(p.backoff(1, 0.0), low);
        assert_eq!(p.backoff(1, 1.0), high);
        let (low, high) = p.backoff_bounds(20);
        assert_eq!((low.as_millis(), high.as_millis()), (4_000, 5_000));
        for i in 0..=100 {
            let d = p.backoff(7, f64::from(i) / 100.0);
            assert!(
                d >= Duration::from_millis(4_000) && d <= Duration::from_millis(5_000),
                "{d:?}"
            );
        }
        let random = p.backoff(3, rand::random::<f64>());
        assert!(random >= Duration::from_millis(320) && random <= Duration::from_millis(480));
    }

    /// Intensity: `max_restarts` restarts within the period are allowed, the next is refused, and
    /// restarts older than the period no longer count.
    #[test]
    fn intensity_limits_restarts_within_the_period() {
        let p = RestartPolicy::from_settings(&SupervisionSettings {
            max_restarts: 3,
            restart_period_secs: 10.0,
            ..SupervisionSettings::default()
        });
        let mut t = RestartTracker::default();
        let start = Instant::now();
        let attempts: Vec<Option<u32>> = (0..4)
            .map(|i| {
                t.next_restart(&p, start + Duration::from_secs(i), 0.5)
                    .map(|r| r.attempt)
            })
            .collect();
        assert_eq!(attempts, vec![Some(1), Some(2), Some(3), None]);
        // 10 s after the first restart it has left the window: one more is allowed.
        let later = t.next_restart(&p, start + Duration::from_secs(10), 0.5);
        assert_eq!(later.map(|r| r.attempt), Some(4));
        assert_eq!(t.recent_restarts(), 3);
    }

    /// A success resets the exponential run but not the intensity window.
    #[test]
    fn success_resets_the_backoff_run() {
        let p = RestartPolicy::from_settings(&SupervisionSettings {
            jitter: 0.0,
            ..SupervisionSettings::default()
        });
        let mut t = RestartTracker::default();
        let now = Instant::now();
        let first = t.next_restart(&p, now, 0.5);
        let second = t.next_restart(&p, now, 0.5);
        assert_eq!(second.map(|r| r.backoff.as_millis()), Some(200));
        t.succeeded();
        let third = t.next_restart(&p, now, 0.5);
        assert_eq!(first.map(|r| r.backoff), third.map(|r| r.backoff));
        assert_eq!(t.recent_restarts(), 3);
    }

    /// `max_restarts = 0` means never restart.
    #[test]
    fn zero_intensity_never_restarts() {
        let p = RestartPolicy::from_settings(&SupervisionSettings {
            max_restarts: 0,
            ..SupervisionSettings::default()
        });
        assert_eq!(
            RestartTracker::default().next_restart(&p, Instant::now(), 0.5),
            None
        );
    }

    /// `peek_restart` answers what `next_restart` then records, and records nothing itself;
    /// `restarts_in_period` leaves restarts older than the period out.
    #[test]
    fn peek_restart_records_nothing() {
        let p = RestartPolicy::from_settings(&SupervisionSettings {
            max_restarts: 2,
            restart_period_secs: 10.0,
            jitter: 0.0,
            ..SupervisionSettings::default()
        });
        let mut t = RestartTracker::default();
        let start = Instant::now();
        for i in 0..2 {
            let at = start + Duration::from_secs(i);
            let peeked = t.peek_restart(&p, at, 0.5);
            assert_eq!(
                peeked,
                t.peek_restart(&p, at, 0.5),
                "peeking twice changes nothing"
            );
            assert_eq!(peeked, t.next_restart(&p, at, 0.5));
        }
        let full = start + Duration::from_secs(2);
        assert_eq!(t.restarts_in_period(&p, full), 2);
        assert_eq!(t.peek_restart(&p, full, 0.5), None);
        let later = start + Duration::from_secs(10);
        assert_eq!(
            t.restarts_in_period(&p, later),
            1,
            "the first left the window"
        );
        assert_eq!(
            t.peek_restart(&p, later, 0.5),
            Some(Restart {
                attempt: 3,
                backoff: Duration::from_millis(400)
            })
        );
    }
}
