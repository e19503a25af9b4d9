//! Test doubles and fixtures, compiled only for tests (this crate's own, and its users' through
//! the cargo feature `test-util`): a probe actor that stands in for any neighbour, records every
//! message it receives and lets a test wait for and read them back; and [`start_config`], the
//! configuration most tests stream with.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::audio::{AudioFormat, Encoding};
use crate::messages::*;
use crate::protocol::StartConfig;

/// The configuration most tests stream with: the protocol's defaults (LINEAR16 at 16 kHz, en-US,
/// interim results, no punctuation, Google's default model, no hints, not single-utterance). A
/// test that needs another varies it with `StartConfig { field, ..start_config() }`.
pub fn start_config() -> StartConfig {
    StartConfig {
        format: AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        },
        language_code: "en-US".into(),
        interim_results: true,
        enable_automatic_punctuation: false,
        model: String::new(),
        phrases: Vec::new(),
        single_utterance: false,
        features: Default::default(),
        frame_ms: None,
    }
}

/// What a [`Probe`] received, shared with the test that reads it.
#[derive(Clone, Default)]
pub struct ProbeLog {
    received: Arc<Mutex<Vec<Box<dyn Any + Send>>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl ProbeLog {
    fn push<M: Any + Send>(&self, msg: M) {
        if let Ok(mut v) = self.received.lock() {
            v.push(Box::new(msg));
        }
        self.changed.notify_waiters();
    }

    /// Every message of type `M` received so far, in order.
    pub fn all<M: Any + Clone>(&self) -> Vec<M> {
        match self.received.lock() {
            Ok(v) => v
                .iter()
                .filter_map(|m| m.downcast_ref::<M>().cloned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until `ready` holds for the messages of type `M` (checked on every arrival), or
    /// `timeout` passes; returns them either way so the test's assertion shows what did arrive.
    pub async fn wait_for<M: Any + Clone>(
        &self,
        timeout: Duration,
        ready: impl Fn(&[M]) -> bool,
    ) -> Vec<M> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let now = self.all::<M>();
            if ready(&now) {
                return now;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.all::<M>();
            }
        }
    }

    /// Waits until at least `n` messages of type `M` arrived (or `timeout`).
    pub async fn wait_count<M: Any + Clone>(&self, n: usize, timeout: Duration) -> Vec<M> {
        self.wait_for::<M>(timeout, |v| v.len() >= n).await
    }
}

/// Records every message it receives into its [`ProbeLog`].
pub struct Probe {
    log: ProbeLog,
}

impl Probe {
    /// Starts a probe on the current arbiter; returns its address and its log.
    pub fn start_new() -> (Addr<Probe>, ProbeLog) {
        let log = ProbeLog::default();
        let addr = Probe { log: log.clone() }.start();
        (addr, log)
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

macro_rules! probe_handles {
    ($($m:ty),* $(,)?) => {
        $(
            impl Handler<$m> for Probe {
                type Result = ();
                fn handle(&mut self, msg: $m, _: &mut Self::Context) {
                    self.log.push(msg);
                }
            }
        )*
    };
}

probe_handles!(
    AudioIn,
    Finalize,
    EndOfAudio,
    StopPipeline,
    UpstreamAudio,
    CancelStream,
    AttachStream,
    DetachStream,
    ForceFinal,
    Finalized,
    UpstreamHalfClosed,
    AudioPending,
    RecognizerEvent,
    Transcript,
    VoiceActivity,
    AudioAcked,
    PipelineWarning,
    PipelineError,
    PipelineFinished,
    ChannelTranscript,
);

impl Probe {
    /// A full set of session links pointing at this probe.
    pub fn session_links(addr: &Addr<Probe>) -> SessionLinks {
        SessionLinks {
            transcripts: addr.clone().recipient(),
            voice_activity: addr.clone().recipient(),
            acks: addr.clone().recipient(),
            warnings: addr.clone().recipient(),
            errors: addr.clone().recipient(),
            finished: addr.clone().recipient(),
        }
    }
}
