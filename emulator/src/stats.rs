//! Counters of what the emulator saw and did, for tests (and the benchmark) to read back.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by the accept loop and every stream.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_cut: AtomicU64,
    pub streams_opened: AtomicU64,
    pub streams_refused: AtomicU64,
    pub streams_active: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_failed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    pub faults_injected: AtomicU64,
    pub audio_bytes: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_accepted: get(&self.connections_accepted),
            connections_cut: get(&self.connections_cut),
            streams_opened: get(&self.streams_opened),
            streams_refused: get(&self.streams_refused),
            streams_active: get(&self.streams_active),
            streams_completed: get(&self.streams_completed),
            streams_failed: get(&self.streams_failed),
            streams_cancelled: get(&self.streams_cancelled),
            faults_injected: get(&self.faults_injected),
            audio_bytes: get(&self.audio_bytes),
            ..StatsSnapshot::default()
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// Connections cut by a `drop` fault.
    pub connections_cut: u64,
    /// Streams that reached the handler and were admitted.
    pub streams_opened: u64,
    /// Streams refused at once (`refuse_streams`, an outage, shutting down).
    pub streams_refused: u64,
    /// Admitted streams not yet over.
    pub streams_active: u64,
    /// Streams that ended with OK.
    pub streams_completed: u64,
    /// Streams that ended with an error status or a cut connection.
    pub streams_failed: u64,
    /// Streams the client abandoned (cancelled or reset).
    pub streams_cancelled: u64,
    /// Injected faults (statuses and drops).
    pub faults_injected: u64,
    /// Audio bytes received.
    pub audio_bytes: u64,
    /// Access tokens granted by the token endpoint (`--require-auth`).
    pub tokens_issued: u64,
    /// Token requests refused (or answered 503 in a token outage).
    pub token_requests_refused: u64,
    /// Calls refused for their credentials (UNAUTHENTICATED, PERMISSION_DENIED).
    pub calls_refused_credentials: u64,
}
