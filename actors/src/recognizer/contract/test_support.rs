//! What the tests of every recognizer share: starting one stream from a factory with a probe for
//! the supervisor, and reading back the events it reported.

use std::sync::Arc;
use std::time::Duration;

use crate::messages::{
    RecognizerEvent, RecognizerEventKind, StreamFailure, StreamHandle, StreamRequest, Transcript,
};
use crate::protocol::StartConfig;
use crate::recognizer::RecognizerFactory;
use crate::testing::{Probe, ProbeLog};

/// Starts stream `stream_id` of session `s1` from `factory`; its events go to the returned log.
pub(crate) fn start_stream(
    factory: &impl RecognizerFactory,
    stream_id: u64,
    config: Arc<StartConfig>,
) -> (StreamHandle, ProbeLog) {
    let (events, log) = Probe::start_new();
    let handle = factory.start(StreamRequest {
        stream_id,
        session_id: Arc::from("s1"),
        config,
        events: events.recipient(),
    });
    (handle, log)
}

/// The `Ended` results among `events`, in order.
pub(crate) fn ended(events: &[RecognizerEvent]) -> Vec<Result<(), StreamFailure>> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RecognizerEventKind::Ended(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until the stream reported its end (or `timeout`); returns its events either way.
pub(crate) async fn until_ended(log: &ProbeLog, timeout: Duration) -> Vec<RecognizerEvent> {
    log.wait_for::<RecognizerEvent>(timeout, |e| !ended(e).is_empty())
        .await
}

/// The results among `events`, in order.
pub(crate) fn transcripts(events: &[RecognizerEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RecognizerEventKind::Result(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}
