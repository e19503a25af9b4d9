//! The server-wide state every request handler shares: who may open a session (a semaphore of
//! `max_sessions` permits, each held by a session actor for its whole life) and graceful shutdown
//! (a flag for `/readyz` and admission, a `watch` channel that tells every session the deadline
//! and, for a drain by hand-off, when to move, and the drain: waiting until every permit is back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use voxgate_actors::protocol::{ErrorCode, Rejection};
use voxgate_actors::session::{ShutdownNotice, CLOSE_HANDSHAKE_TIMEOUT};
use voxgate_actors::settings::SessionSettings;

use crate::config::Config;

/// The longest a session may take, after the grace period, to deliver its last results.
pub const LONGEST_FLUSH: Duration = Duration::from_secs(5);
/// Slack on top of grace + flush + closing handshake before the server stops regardless.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

/// Why `/readyz` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Shutdown has begun.
    Draining,
    /// `max_sessions` sessions are open.
    Full,
    /// The upstream circuit breaker is open: streams are held back.
    UpstreamUnavailable,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::Full => "full",
            NotReady::UpstreamUnavailable => "upstream_unavailable",
        }
    }
}

pub struct ServerState {
    /// `[session]`, shared by every session.
    pub settings: Arc<SessionSettings>,
    /// One permit per open session.
    sessions: Arc<Semaphore>,
    /// `max_sessions`, as a permit count.
    max_sessions: u32,
    /// Set once shutdown has begun: no new sessions, `/readyz` 503.
    draining: AtomicBool,
    /// `Some` once shutdown has begun; every session holds a receiver.
    notice: watch::Sender<Option<ShutdownNotice>>,
    /// `[server] shutdown_grace_secs`.
    grace: Duration,
    /// How long a session may flush after the grace period: `idle_timeout_secs`, at most
    /// [`LONGEST_FLUSH`].
    flush_timeout: Duration,
    /// `[server] hand_off_delay_secs` when sessions are handed off on a drain (see
    /// [`hand_off_delay`]); `None`: every session is held to the grace period.
    hand_off_delay: Option<Duration>,
    /// `[supervision] stall_tolerance_ms` (`None`: 0, no stall detection): the sessions' own
    /// timers (client and idle timeouts) count only time the gateway was awake.
    pub stall_tolerance: Option<Duration>,
}

/// Whether a drain hands sessions off, and after how long: only when another instance can open
/// this one's resume tokens (a configured, hence shared, `[auth] token_secret`; without it each
/// process signs with a random secret) and resume is on.
fn hand_off_delay(config: &Config) -> Result<Option<Duration>, String> {
    let delay = Duration::try_from_secs_f64(config.server.hand_off_delay_secs)
        .map_err(|e| format!("server.hand_off_delay_secs: {e}"))?;
    let possible = config.server.hand_off
        && config.auth.token_secret.is_some()
        && config.session.resume_window_secs > 0.0;
    Ok(possible.then_some(delay))
}

impl ServerState {
    pub fn new(config: &Config) -> Result<ServerState, String> {
        let max_sessions = u32::try_from(config.session.max_sessions)
            .ok()
            .filter(|n| (*n as usize) <= Semaphore::MAX_PERMITS && *n > 0)
            .ok_or_else(|| {
                format!(
                    "session.max_sessions: {} is out of range",
                    config.session.max_sessions
                )
            })?;
        let grace = Duration::try_from_secs_f64(config.server.shutdown_grace_secs)
            .map_err(|e| format!("server.shutdown_grace_secs: {e}"))?;
        let flush_timeout = Duration::try_from_secs_f64(config.session.idle_timeout_secs.max(0.0))
            .map_or(LONGEST_FLUSH, |idle| idle.min(LONGEST_FLUSH));
        Ok(ServerState {
            settings: Arc::new(config.session.clone()),
            sessions: Arc::new(Semaphore::new(max_sessions as usize)),
            max_sessions,
            draining: AtomicBool::new(false),
            notice: watch::Sender::new(None),
            grace,
            flush_timeout,
            hand_off_delay: hand_off_delay(config)?,
            stall_tolerance: config.supervision.stall_tolerance(),
        })
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A new connection's share of `max_sessions`, or why it gets none.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        if self.is_draining() {
            return Err(Rejection::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; connect again later",
            ));
        }
        self.sessions.clone().try_acquire_owned().map_err(|_| {
            Rejection::new(
                ErrorCode::TooManySessions,
                format!(
                    "the server has {} sessions open, its maximum; try again later",
                    self.max_sessions
                ),
            )
        })
    }

    /// For a new session: the shutdown notice, now or later.
    pub fn subscribe(&self) -> watch::Receiver<Option<ShutdownNotice>> {
        self.notice.subscribe()
    }

    /// Whether a new session would be served now, or why not (`/readyz`).
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            Err(NotReady::Draining)
        } else if self.sessions.available_permits() == 0 {
            Err(NotReady::Full)
        } else if voxgate_actors::metrics::METRICS.breaker_open.get() != 0 {
            // The process has one breaker, and this gauge mirrors it.
            Err(NotReady::UpstreamUnavailable)
        } else {
            Ok(())
        }
    }

    /// Whether a drain hands sessions off (for the log).
    pub fn hands_off(&self) -> bool {
        self.hand_off_delay.is_some()
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        (self.max_sessions as usize).saturating_sub(self.sessions.available_permits())
    }

    /// Starts the shutdown (idempotent in effect: a second call only moves nothing forward) and
    /// returns how long to wait for the sessions to end.
    pub fn begin_shutdown(&self) -> Duration {
        self.draining.store(true, Ordering::SeqCst);
        let now = Instant::now();
        let notice = ShutdownNotice {
            deadline: now + self.grace,
            flush_timeout: self.flush_timeout,
            hand_off_at: self.hand_off_delay.map(|delay| now + delay),
        };
        self.notice.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(notice);
                true
            } else {
                false
            }
        });
        self.grace + self.flush_timeout + CLOSE_HANDSHAKE_TIMEOUT + DRAIN_SLACK
    }

    /// Waits until every session has ended (every permit is back), at most `wait`. True if they did.
    pub async fn drain(&self, wait: Duration) -> bool {
        matches!(
            tokio::time::timeout(wait, self.sessions.acquire_many(self.max_sessions)).await,
            Ok(Ok(_))
        )
    }
}
