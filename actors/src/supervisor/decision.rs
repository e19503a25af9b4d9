//! The supervisor's decision, as a pure function: given where the session's upstream stream is
//! ([`StreamState`]), what just happened to it ([`StreamEvent`]), the [`RestartPolicy`], the
//! restart history and the time, [`decide`] says what happens next ([`Decision`]).
//!
//! Every rule of supervision is here and nowhere else — which end finishes the session, which
//! one opens the next stream or waits for audio, which failure restarts and how, when the restart
//! intensity gives up, when the circuit breaker holds restarts back. The actor
//! ([`super::StreamSupervisor`]) only carries decisions out (streams, timers, messages, metrics,
//! logs), so the rules are read and tested here as a table, without actors or clocks.
//!
//! Rotation (replacing a healthy stream before Google's duration limit) and the forced final (a
//! half-close when no final came for long) are not decisions about an ended stream and stay with
//! the actor; what follows the end of an expired or force-closed stream is decided here.

use tokio::time::Instant;

use crate::messages::{HalfCloseReason, StreamFailure};
use crate::restart_policy::{Restart, RestartPolicy, RestartTracker};

/// How the stream attached to the buffer is expected to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Nobody asked it to end: a clean end is a surprise (its audio may not all be final).
    Unrequested,
    /// The buffer half-closed it (`finalize`, an audio gap, or `stop`); `audio_waiting`: audio
    /// came meanwhile, for the stream after this one.
    HalfClosed {
        reason: HalfCloseReason,
        audio_waiting: bool,
    },
    /// Google signalled the end of the single utterance: a clean end finishes the session.
    EndOfSingleUtterance,
}

/// Where the session's upstream stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// No stream is open and no start is scheduled: the next audio opens one (at the start,
    /// after a `finalize`, after an audio gap).
    AwaitingAudio,
    /// A start is scheduled: after a backoff, or when the circuit breaker lets it through.
    StartScheduled,
    /// A stream is attached to the buffer.
    Streaming(Ending),
    /// Finished, failed or stopped: nothing is started any more.
    Done,
}

/// What happened, as far as the decision is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// The buffer holds audio and no stream takes it (`AudioPending`).
    AudioWaiting,
    /// The attached stream ended cleanly.
    EndedCleanly,
    /// The attached stream failed with this gRPC code.
    Failed(tonic::Code),
    /// The attached stream could not start: no recognizer capacity.
    Busy,
    /// The upstream ended the stream at its duration limit (Google v1: `OUT_OF_RANGE` "Exceeded
    /// maximum allowed stream duration"; v2: `ABORTED` "Max duration of 5 minutes reached for
    /// stream."): a rotation the upstream did, never a failure.
    Expired,
}

/// What Google (and the emulator) say when a stream reaches its duration limit, v1…
const DURATION_LIMIT_MESSAGE: &str = "maximum allowed stream duration";
/// …and v2 (`Max duration of … reached for stream.`), both lowercased.
const V2_DURATION_LIMIT_MESSAGE: (&str, &str) = ("max duration of ", " reached for stream");

impl StreamEvent {
    /// The event of a stream that ended with `failure`: its duration limit is an expiry, any
    /// other status a failure with its code.
    pub fn of_failure(failure: &StreamFailure) -> StreamEvent {
        let message = failure.message.to_ascii_lowercase();
        let (v2_start, v2_end) = V2_DURATION_LIMIT_MESSAGE;
        let expired = match failure.code {
            tonic::Code::OutOfRange => message.contains(DURATION_LIMIT_MESSAGE),
            tonic::Code::Aborted => message.starts_with(v2_start) && message.contains(v2_end),
            _ => false,
        };
        if expired {
            StreamEvent::Expired
        } else {
            StreamEvent::Failed(failure.code)
        }
    }
}

/// Everything the decision reads besides the event.
#[derive(Debug, Clone, Copy)]
pub struct State<'a> {
    pub stream: StreamState,
    /// The process-wide circuit breaker is open (read after the failure at hand was recorded).
    pub breaker_open: bool,
    /// The one immediate retry with fresh credentials after `UNAUTHENTICATED` was used since a
    /// stream last opened.
    pub credentials_refreshed: bool,
    /// The session's restarts: the intensity window and the run of consecutive failures.
    pub restarts: &'a RestartTracker,
    /// The upstream made progress since the previous restart: a final was delivered, or a result
    /// reached audio no earlier result had reached. A restart after progress is not a crash loop
    /// and is not counted against the intensity.
    pub progress: bool,
}

/// What the supervisor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the event changes nothing (no stream it concerns, or a start already coming).
    Ignore,
    /// Open the next stream after the audio already sent, once the circuit breaker permits.
    OpenNext,
    /// Note that audio waits: the next stream opens after the half-closed one ends.
    OpenNextAfterThisOne,
    /// The stream ended as asked and no audio waits: open none until audio comes.
    AwaitAudio,
    /// All the session's audio is recognised: report the summary and stop.
    Finish,
    /// `UNAUTHENTICATED` (an expired or revoked token): fetch fresh credentials and restart at
    /// once, replaying from the last final; no backoff, not counted against the intensity.
    RetryWithFreshCredentials,
    /// The upstream is down for everyone: restart, replaying from the last final, when the
    /// circuit breaker lets a stream through; not counted against the intensity.
    AwaitBreaker,
    /// Restart after this backoff, replaying from the last final; counted against the intensity.
    Backoff(Restart),
    /// The stream failed after making progress: restart after this backoff, replaying from the
    /// last final; not counted against the intensity.
    BackoffAfterProgress(Restart),
    /// Open the next stream at once, replaying from the end of the last final: the upstream ended
    /// the stream at its duration limit (a rotation), or a forced final ended it as asked. Not a
    /// restart: no backoff, no warning, not counted.
    ContinueFromLastFinal,
    /// The restart intensity is used up: end the session with `upstream_unavailable`.
    GiveUp { restarts_in_period: usize },
    /// A failure no restart cures: end the session with `upstream_rejected`.
    Reject,
    /// No recognizer capacity: end the session with `busy` (the client may retry later).
    FailBusy,
}

impl Decision {
    /// Why this decision restarts a stream that did not end as asked — the `reason` of the
    /// restart's log line — or `None` if it restarts none. Every restart is counted (metric,
    /// summary) and logged alike, whatever its reason.
    pub fn restart_reason(&self) -> Option<&'static str> {
        match self {
            Decision::RetryWithFreshCredentials => Some("credentials"),
            Decision::AwaitBreaker => Some("outage"),
            Decision::Backoff(_) | Decision::BackoffAfterProgress(_) => Some("failure"),
            Decision::Ignore
            | Decision::ContinueFromLastFinal
            | Decision::OpenNext
            | Decision::OpenNextAfterThisOne
            | Decision::AwaitAudio
            | Decision::Finish
            | Decision::GiveUp { .. }
            | Decision::Reject
            | Decision::FailBusy => None,
        }
    }
}

/// What happens after `event` in `state`. `jitter_unit` in [0, 1] is the random draw that picks
/// the backoff within its jitter range, an argument so the function stays pure.
pub fn decide(
    state: &State,
    event: StreamEvent,
    policy: &RestartPolicy,
    now: Instant,
    jitter_unit: f64,
) -> Decision {
    use HalfCloseReason::{EndOfAudio, Finalize, ForcedFinal, Gap};
    use StreamEvent::{AudioWaiting, Busy, EndedCleanly, Expired, Failed};
    let ending = match (state.stream, event) {
        (StreamState::AwaitingAudio, AudioWaiting) => return Decision::OpenNext,
        // No stream: no end, failure or capacity refusal concerns this session; a start is
        // already coming, or nothing is to be started any more.
        (StreamState::AwaitingAudio | StreamState::StartScheduled | StreamState::Done, _) => {
            return Decision::Ignore
        }
        (StreamState::Streaming(ending), _) => ending,
    };
    match (ending, event) {
        (Ending::HalfClosed { .. }, AudioWaiting) => Decision::OpenNextAfterThisOne,
        // The attached stream takes the audio.
        (Ending::Unrequested | Ending::EndOfSingleUtterance, AudioWaiting) => Decision::Ignore,
        (Ending::EndOfSingleUtterance, EndedCleanly) => Decision::Finish,
        (
            Ending::HalfClosed {
                reason: EndOfAudio, ..
            },
            EndedCleanly,
        ) => Decision::Finish,
        (
            Ending::HalfClosed {
                reason: Finalize | Gap,
                audio_waiting: true,
            },
            EndedCleanly,
        ) => Decision::OpenNext,
        (
            Ending::HalfClosed {
                reason: Finalize | Gap,
                audio_waiting: false,
            },
            EndedCleanly,
        ) => Decision::AwaitAudio,
        // A forced final ended its stream: the next one continues from that final's end (the audio
        // after it, sent or not, is recognised by the next stream), whether audio waits or not.
        (
            Ending::HalfClosed {
                reason: ForcedFinal,
                ..
            },
            EndedCleanly,
        ) => Decision::ContinueFromLastFinal,
        // The upstream's duration limit, whatever the stream was doing: a rotation, replaying from
        // the last final (a half-close ahead is replayed too).
        (_, Expired) => Decision::ContinueFromLastFinal,
        // Upstream closed a stream nobody asked it to close: its audio may not all be final, so
        // it is restarted with a replay like after a transient failure.
        (Ending::Unrequested, EndedCleanly) => restart(state, policy, now, jitter_unit),
        (_, Failed(tonic::Code::Unauthenticated)) if !state.credentials_refreshed => {
            Decision::RetryWithFreshCredentials
        }
        (_, Failed(code)) if policy.is_retryable(code) => restart(state, policy, now, jitter_unit),
        (_, Failed(_)) => Decision::Reject,
        (_, Busy) => Decision::FailBusy,
    }
}

/// A restart after a failure (or an unrequested end): waits for the circuit breaker while the
/// upstream is down for everyone (not counted); backs off without counting if the upstream made
/// progress since the previous restart (a flaky but working upstream keeps the session); else
/// backs off if the restart intensity allows one more. The intensity rule is this one place.
fn restart(state: &State, policy: &RestartPolicy, now: Instant, jitter_unit: f64) -> Decision {
    if state.breaker_open {
        return Decision::AwaitBreaker;
    }
    if state.progress {
        return Decision::BackoffAfterProgress(state.restarts.next_backoff(policy, jitter_unit));
    }
    match state.restarts.peek_restart(policy, now, jitter_unit) {
        Some(restart) => Decision::Backoff(restart),
        None => Decision::GiveUp {
            restarts_in_period: state.restarts.restarts_in_period(policy, now),
        },
    }
}

#[cfg(test)]
mod tests;
