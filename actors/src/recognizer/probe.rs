//! A recognizer factory for tests: every stream it starts is a [`Probe`] (which records the audio
//! and cancels it receives), and it records each [`StreamRequest`] — so a test can play the
//! recognizer by sending [`crate::messages::RecognizerEvent`]s to the request's `events`.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::messages::{StreamHandle, StreamRequest};
use crate::protocol::Honoured;
use crate::recognizer::RecognizerFactory;
use crate::testing::{Probe, ProbeLog};

/// Starts probe streams and remembers them, in order.
#[derive(Default)]
pub struct ProbeRecognizers {
    /// Each request with the log of the probe that stands for its stream.
    started: RefCell<Vec<(StreamRequest, ProbeLog)>>,
    /// Woken at each start, for [`ProbeRecognizers::wait_started`].
    changed: tokio::sync::Notify,
    /// How many times the supervisor asked for fresh credentials.
    refreshes: Cell<usize>,
}

impl RecognizerFactory for ProbeRecognizers {
    /// Probes take anything: what they received is for the test to inspect.
    fn honoured(&self) -> Honoured {
        Honoured::GOOGLE_V2
    }

    fn start(&self, request: StreamRequest) -> StreamHandle {
        let (probe, log) = Probe::start_new();
        self.started.borrow_mut().push((request, log));
        self.changed.notify_waiters();
        StreamHandle {
            audio: probe.clone().recipient(),
            cancel: probe.recipient(),
        }
    }

    fn refresh_credentials(&self) {
        self.refreshes.set(self.refreshes.get() + 1);
    }
}

impl ProbeRecognizers {
    /// The requests of every stream started so far.
    pub fn requests(&self) -> Vec<StreamRequest> {
        self.started
            .borrow()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// How many times fresh credentials were asked for.
    pub fn credential_refreshes(&self) -> usize {
        self.refreshes.get()
    }

    /// What the `index`-th stream (0-based) received.
    pub fn stream_log(&self, index: usize) -> Option<ProbeLog> {
        self.started.borrow().get(index).map(|(_, l)| l.clone())
    }

    /// Waits until `n` streams were started (or `timeout`); returns the requests either way.
    pub async fn wait_started(&self, n: usize, timeout: Duration) -> Vec<StreamRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.started.borrow().len() >= n {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.requests()
    }
}
