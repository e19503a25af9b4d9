//! The decision table: one row per (stream state, event) with the default circumstances (breaker
//! closed, credentials retry unused, no restart yet, no progress), checked to cover every pair
//! exactly once; then the circumstances that change a restart (breaker, credentials, intensity,
//! progress, run, jitter).

use std::time::Duration;

use super::*;
use crate::settings::SupervisionSettings;

use Decision::*;
use HalfCloseReason::{EndOfAudio, Finalize, ForcedFinal, Gap};
use StreamEvent::{AudioWaiting, Busy, EndedCleanly, Expired, Failed};
use StreamState::{AwaitingAudio, Done, StartScheduled, Streaming};

/// A retryable code, a code the default policy rejects, and the one with its own retry.
const RETRYABLE: StreamEvent = Failed(tonic::Code::Unavailable);
const REJECTED: StreamEvent = Failed(tonic::Code::InvalidArgument);
const UNAUTHENTICATED: StreamEvent = Failed(tonic::Code::Unauthenticated);

const EVENTS: [StreamEvent; 7] = [
    AudioWaiting,
    EndedCleanly,
    RETRYABLE,
    REJECTED,
    UNAUTHENTICATED,
    Busy,
    Expired,
];

const fn half_closed(reason: HalfCloseReason, audio_waiting: bool) -> StreamState {
    Streaming(Ending::HalfClosed {
        reason,
        audio_waiting,
    })
}

const UNREQUESTED: StreamState = Streaming(Ending::Unrequested);
const UTTERANCE_ENDED: StreamState = Streaming(Ending::EndOfSingleUtterance);

fn all_states() -> Vec<StreamState> {
    let mut states = vec![
        AwaitingAudio,
        StartScheduled,
        UNREQUESTED,
        UTTERANCE_ENDED,
        Done,
    ];
    for reason in [Finalize, Gap, EndOfAudio, ForcedFinal] {
        for audio_waiting in [false, true] {
            states.push(half_closed(reason, audio_waiting));
        }
    }
    states
}

/// The default policy without jitter: the first restart backs off 100 ms, the next 200 ms.
fn policy() -> RestartPolicy {
    RestartPolicy::from_settings(&SupervisionSettings {
        jitter: 0.0,
        ..SupervisionSettings::default()
    })
}

fn first_backoff() -> Decision {
    Backoff(Restart {
        attempt: 1,
        backoff: Duration::from_millis(100),
    })
}

fn state(stream: StreamState, restarts: &RestartTracker) -> State<'_> {
    State {
        stream,
        breaker_open: false,
        credentials_refreshed: false,
        restarts,
        progress: false,
    }
}

fn decide_now(state: &State, event: StreamEvent, policy: &RestartPolicy, now: Instant) -> Decision {
    decide(state, event, policy, now, 0.5)
}

/// Every (state, event) pair with its decision, in the default circumstances.
fn table() -> Vec<(StreamState, StreamEvent, Decision)> {
    let mut rows = vec![
        // No stream: audio opens one; nothing else concerns the session.
        (AwaitingAudio, AudioWaiting, OpenNext),
        (AwaitingAudio, EndedCleanly, Ignore),
        (AwaitingAudio, RETRYABLE, Ignore),
        (AwaitingAudio, REJECTED, Ignore),
        (AwaitingAudio, UNAUTHENTICATED, Ignore),
        (AwaitingAudio, Busy, Ignore),
        (AwaitingAudio, Expired, Ignore),
        // A start is coming (backoff or breaker): audio waits for it.
        (StartScheduled, AudioWaiting, Ignore),
        (StartScheduled, EndedCleanly, Ignore),
        (StartScheduled, RETRYABLE, Ignore),
        (StartScheduled, REJECTED, Ignore),
        (StartScheduled, UNAUTHENTICATED, Ignore),
        (StartScheduled, Busy, Ignore),
        (StartScheduled, Expired, Ignore),
        // Finished, failed or stopped: nothing more.
        (Done, AudioWaiting, Ignore),
        (Done, EndedCleanly, Ignore),
        (Done, RETRYABLE, Ignore),
        (Done, REJECTED, Ignore),
        (Done, UNAUTHENTICATED, Ignore),
        (Done, Busy, Ignore),
        (Done, Expired, Ignore),
        // A stream nobody asked to end: its clean end is restarted like a failure.
        (UNREQUESTED, AudioWaiting, Ignore),
        (UNREQUESTED, EndedCleanly, first_backoff()),
        (UNREQUESTED, RETRYABLE, first_backoff()),
        (UNREQUESTED, REJECTED, Reject),
        (UNREQUESTED, UNAUTHENTICATED, RetryWithFreshCredentials),
        (UNREQUESTED, Busy, FailBusy),
        // The upstream's duration limit is a rotation, whatever the stream was doing.
        (UNREQUESTED, Expired, ContinueFromLastFinal),
        // The single utterance ended: its clean end is the session's end.
        (UTTERANCE_ENDED, AudioWaiting, Ignore),
        (UTTERANCE_ENDED, EndedCleanly, Finish),
        (UTTERANCE_ENDED, RETRYABLE, first_backoff()),
        (UTTERANCE_ENDED, REJECTED, Reject),
        (UTTERANCE_ENDED, UNAUTHENTICATED, RetryWithFreshCredentials),
        (UTTERANCE_ENDED, Busy, FailBusy),
        (UTTERANCE_ENDED, Expired, ContinueFromLastFinal),
    ];
    // Half-closed streams: audio is noted for after the end; a `stop` finishes, a `finalize` or
    // a gap opens the next stream if audio waits, else waits for it; a forced final continues
    // from its end at once. Failures are restarted whatever the half-close (the replay ends the
    // same way again), an expiry is a rotation.
    for (reason, audio_waiting, clean_end) in [
        (Finalize, false, AwaitAudio),
        (Finalize, true, OpenNext),
        (Gap, false, AwaitAudio),
        (Gap, true, OpenNext),
        (EndOfAudio, false, Finish),
        (EndOfAudio, true, Finish),
        (ForcedFinal, false, ContinueFromLastFinal),
        (ForcedFinal, true, ContinueFromLastFinal),
    ] {
        let s = half_closed(reason, audio_waiting);
        rows.extend([
            (s, AudioWaiting, OpenNextAfterThisOne),
            (s, EndedCleanly, clean_end),
            (s, RETRYABLE, first_backoff()),
            (s, REJECTED, Reject),
            (s, UNAUTHENTICATED, RetryWithFreshCredentials),
            (s, Busy, FailBusy),
            (s, Expired, ContinueFromLastFinal),
        ]);
    }
    rows
}

/// The table covers every (state, event) pair exactly once.
#[test]
fn the_table_is_exhaustive() {
    let rows = table();
    for s in all_states() {
        for e in EVENTS {
            let n = rows
                .iter()
                .filter(|(rs, re, _)| *rs == s && *re == e)
                .count();
            assert_eq!(n, 1, "{s:?} × {e:?} appears {n} times");
        }
    }
    assert_eq!(rows.len(), all_states().len() * EVENTS.len());
}

/// Each row's decision is what `decide` answers.
#[test]
fn every_state_and_event_decides_as_the_table_says() {
    let p = policy();
    let restarts = RestartTracker::default();
    let now = Instant::now();
    for (s, e, expected) in table() {
        assert_eq!(
            decide_now(&state(s, &restarts), e, &p, now),
            expected,
            "{s:?} × {e:?}"
        );
    }
}

/// Every gRPC code of a failed stream goes the policy's way: restart or reject;
/// `UNAUTHENTICATED` gets its credentials retry first, then the policy's answer.
#[test]
fn every_failure_code_is_classified_by_the_policy() {
    let p = policy();
    let restarts = RestartTracker::default();
    let now = Instant::now();
    // Every code but OK (0): CANCELLED (1) to UNAUTHENTICATED (16).
    for code in (1..=16).map(tonic::Code::from) {
        let expected = if p.is_retryable(code) {
            first_backoff()
        } else {
            Reject
        };
        let refreshed = State {
            credentials_refreshed: true,
            ..state(UNREQUESTED, &restarts)
        };
        assert_eq!(
            decide_now(&refreshed, Failed(code), &p, now),
            expected,
            "{code:?}"
        );
        if code != tonic::Code::Unauthenticated {
            let fresh = state(UNREQUESTED, &restarts);
            assert_eq!(decide_now(&fresh, Failed(code), &p, now), expected);
        }
    }
}

/// While the breaker is open, every restart waits for it — whatever the intensity left — and
/// what a restart does not cure is still final.
#[test]
fn an_open_breaker_holds_every_restart_back() {
    let p = RestartPolicy::from_settings(&SupervisionSettings {
        max_restarts: 0,
        ..SupervisionSettings::default()
    });
    let restarts = RestartTracker::default();
    let now = Instant::now();
    let open = |stream| State {
        breaker_open: true,
        ..state(stream, &restarts)
    };
    for (s, e, expected) in [
        (UNREQUESTED, RETRYABLE, AwaitBreaker),
        (UNREQUESTED, EndedCleanly, AwaitBreaker),
        (half_closed(EndOfAudio, false), RETRYABLE, AwaitBreaker),
        (UNREQUESTED, REJECTED, Reject),
        (UNREQUESTED, UNAUTHENTICATED, RetryWithFreshCredentials),
        (UNREQUESTED, Busy, FailBusy),
        (half_closed(Finalize, true), EndedCleanly, OpenNext),
    ] {
        assert_eq!(decide_now(&open(s), e, &p, now), expected, "{s:?} × {e:?}");
    }
}

/// The intensity: `max_restarts` restarts within the period, then the session gives up; a
/// restart older than the period no longer counts; the credentials retry is never counted.
#[test]
fn the_intensity_gives_up_and_forgets_old_restarts() {
    let p = RestartPolicy::from_settings(&SupervisionSettings {
        max_restarts: 2,
        restart_period_secs: 10.0,
        jitter: 0.0,
        ..SupervisionSettings::default()
    });
    let start = Instant::now();
    let mut restarts = RestartTracker::default();
    restarts.record_restart(&p, start);
    restarts.record_restart(&p, start + Duration::from_secs(1));
    let soon = start + Duration::from_secs(2);
    let given_up = GiveUp {
        restarts_in_period: 2,
    };
    for e in [RETRYABLE, EndedCleanly] {
        assert_eq!(
            decide_now(&state(UNREQUESTED, &restarts), e, &p, soon),
            given_up
        );
    }
    assert_eq!(
        decide_now(&state(UNREQUESTED, &restarts), UNAUTHENTICATED, &p, soon),
        RetryWithFreshCredentials
    );
    let later = start + Duration::from_secs(10);
    assert_eq!(
        decide_now(&state(UNREQUESTED, &restarts), RETRYABLE, &p, later),
        Backoff(Restart {
            attempt: 3,
            backoff: Duration::from_millis(400)
        }),
        "the first restart left the window; the run goes on"
    );
}

/// Progress since the previous restart (a final, or new audio recognised): the restart backs off
/// but is not counted, so a used-up intensity does not give up; an expiry is never counted; what
/// no restart cures and an open breaker are unchanged; without progress the policy gives up.
#[test]
fn restarts_after_progress_are_not_counted() {
    let p = RestartPolicy::from_settings(&SupervisionSettings {
        max_restarts: 1,
        jitter: 0.0,
        ..SupervisionSettings::default()
    });
    let now = Instant::now();
    let mut used_up = RestartTracker::default();
    used_up.record_restart(&p, now);
    let after_progress = |stream| State {
        progress: true,
        ..state(stream, &used_up)
    };
    let uncounted = BackoffAfterProgress(Restart {
        attempt: 2,
        backoff: Duration::from_millis(200),
    });
    for (s, e, expected) in [
        (UNREQUESTED, RETRYABLE, uncounted),
        (UNREQUESTED, EndedCleanly, uncounted),
        (half_closed(ForcedFinal, true), RETRYABLE, uncounted),
        (half_closed(Gap, false), RETRYABLE, uncounted),
        (UNREQUESTED, Expired, ContinueFromLastFinal),
        (UNREQUESTED, REJECTED, Reject),
        (UNREQUESTED, UNAUTHENTICATED, RetryWithFreshCredentials),
        (UNREQUESTED, Busy, FailBusy),
    ] {
        assert_eq!(
            decide_now(&after_progress(s), e, &p, now),
            expected,
            "{s:?} × {e:?}"
        );
    }
    let breaker_open = State {
        breaker_open: true,
        ..after_progress(UNREQUESTED)
    };
    assert_eq!(decide_now(&breaker_open, RETRYABLE, &p, now), AwaitBreaker);
    let no_progress = state(UNREQUESTED, &used_up);
    assert_eq!(
        decide_now(&no_progress, RETRYABLE, &p, now),
        GiveUp {
            restarts_in_period: 1
        }
    );
    assert_eq!(
        decide_now(&no_progress, Expired, &p, now),
        ContinueFromLastFinal,
        "an expiry is never a failure"
    );
}

/// Google's duration-limit status is an expiry; any other status (another OUT_OF_RANGE too) a
/// failure with its code.
#[test]
fn the_duration_limit_is_an_expiry() {
    let of = |code, message: &str| {
        StreamEvent::of_failure(&StreamFailure {
            code,
            message: message.into(),
        })
    };
    use tonic::Code::{Aborted, OutOfRange, Unavailable};
    assert_eq!(
        of(
            OutOfRange,
            "Exceeded maximum allowed stream duration of 305 seconds."
        ),
        Expired
    );
    // v2's wording, and its idle timeout (same code) that is a failure.
    assert_eq!(
        of(Aborted, "Max duration of 5 minutes reached for stream."),
        Expired
    );
    assert_eq!(
        of(
            Aborted,
            "Stream timed out after receiving no more client requests."
        ),
        Failed(Aborted)
    );
    assert_eq!(
        of(
            OutOfRange,
            "Audio Timeout Error: Long duration elapsed without audio."
        ),
        Failed(OutOfRange)
    );
    assert_eq!(
        of(
            Unavailable,
            "Exceeded maximum allowed stream duration of 305 seconds."
        ),
        Failed(Unavailable)
    );
}

/// Consecutive restarts back off exponentially; a success starts a new run; the jitter draw
/// picks the point in the range.
#[test]
fn the_backoff_follows_the_run_and_the_jitter_draw() {
    let p = policy();
    let now = Instant::now();
    let mut restarts = RestartTracker::default();
    let mut backoffs = Vec::new();
    for _ in 0..3 {
        let Backoff(restart) = decide_now(&state(UNREQUESTED, &restarts), RETRYABLE, &p, now)
        else {
            panic!("a restart within the intensity backs off");
        };
        backoffs.push(restart.backoff.as_millis());
        restarts.record_restart(&p, now);
    }
    assert_eq!(backoffs, vec![100, 200, 400]);
    restarts.succeeded();
    assert_eq!(
        decide_now(&state(UNREQUESTED, &restarts), RETRYABLE, &p, now),
        first_backoff()
    );

    let jittery = RestartPolicy::from_settings(&SupervisionSettings::default());
    let fresh = RestartTracker::default();
    let at = |unit| decide(&state(UNREQUESTED, &fresh), RETRYABLE, &jittery, now, unit);
    let bounds = |attempt| jittery.backoff_bounds(attempt);
    assert_eq!(
        (at(0.0), at(1.0)),
        (
            Backoff(Restart {
                attempt: 1,
                backoff: bounds(1).0
            }),
            Backoff(Restart {
                attempt: 1,
                backoff: bounds(1).1
            })
        )
    );
}

/// Exactly the decisions that replace a stream that did not end as asked are restarts, each with
/// the reason its log line gives; the table reaches every decision but `AwaitBreaker`, `GiveUp`
/// and `BackoffAfterProgress` (other circumstances, tested above).
#[test]
fn restarts_are_the_replacements_of_failed_streams() {
    let mut decisions: Vec<Decision> = Vec::new();
    let reached = table().into_iter().map(|(_, _, d)| d);
    let after_progress = BackoffAfterProgress(Restart {
        attempt: 1,
        backoff: Duration::from_millis(100),
    });
    for d in reached.chain([
        AwaitBreaker,
        GiveUp {
            restarts_in_period: 1,
        },
        after_progress,
    ]) {
        if !decisions.contains(&d) {
            decisions.push(d);
        }
    }
    let restarts: Vec<(Decision, &str)> = decisions
        .iter()
        .filter_map(|d| d.restart_reason().map(|reason| (*d, reason)))
        .collect();
    assert_eq!(
        restarts,
        vec![
            (first_backoff(), "failure"),
            (RetryWithFreshCredentials, "credentials"),
            (AwaitBreaker, "outage"),
            (after_progress, "failure"),
        ]
    );
    assert_eq!(
        decisions.len(),
        13,
        "every decision is reached: {decisions:?}"
    );
}
