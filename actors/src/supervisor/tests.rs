//! The stream supervisor's tests: the actor with probes in place of the session, the buffer
//! and the recognizers (see [`crate::testing`]), on tokio's paused clock where time matters.

use std::time::Duration;

use super::*;
use crate::recognizer::probe::ProbeRecognizers;
use crate::settings::SupervisionSettings;
use crate::testing::{start_config, Probe, ProbeLog};

const WAIT: Duration = Duration::from_secs(5);

struct Rig {
    supervisor: Addr<StreamSupervisor>,
    recognizers: Rc<ProbeRecognizers>,
    session: ProbeLog,
    buffer: ProbeLog,
}

impl Rig {
    /// The buffer says audio waits: the supervisor opens a stream.
    fn audio_comes(&self) {
        self.supervisor.do_send(AudioPending);
    }
}

fn config(single_utterance: bool) -> Arc<StartConfig> {
    Arc::new(StartConfig {
        single_utterance,
        ..start_config()
    })
}

/// Fast backoff without jitter: the tests run on a paused clock anyway.
fn settings() -> SupervisionSettings {
    SupervisionSettings {
        jitter: 0.0,
        ..SupervisionSettings::default()
    }
}

fn rig_with(settings: &SupervisionSettings, single_utterance: bool) -> Rig {
    let breaker = Arc::new(CircuitBreaker::from_settings(settings));
    rig_sharing(settings, single_utterance, breaker)
}

/// A rig whose supervisor uses `breaker` (shared with other rigs); its first stream is opened
/// (the buffer announced audio).
fn rig_sharing(
    settings: &SupervisionSettings,
    single_utterance: bool,
    breaker: Arc<CircuitBreaker>,
) -> Rig {
    let (session, session_log) = Probe::start_new();
    let (buffer, buffer_log) = Probe::start_new();
    let recognizers = Rc::new(ProbeRecognizers::default());
    let supervisor = StreamSupervisor::new(
        Arc::from("s1"),
        config(single_utterance),
        recognizers.clone(),
        RestartPolicy::from_settings(settings),
        breaker,
        Probe::session_links(&session),
        BufferControl {
            attach: buffer.clone().recipient(),
            detach: buffer.clone().recipient(),
            force_final: buffer.clone().recipient(),
            finalized: buffer.clone().recipient(),
            stop: buffer.recipient(),
        },
    )
    .start();
    let rig = Rig {
        supervisor,
        recognizers,
        session: session_log,
        buffer: buffer_log,
    };
    rig.audio_comes();
    rig
}

fn rig() -> Rig {
    rig_with(&settings(), false)
}

fn event(stream_id: u64, kind: RecognizerEventKind) -> RecognizerEvent {
    RecognizerEvent { stream_id, kind }
}

fn result(is_final: bool, text: &str, start_ms: u64, end_ms: u64) -> RecognizerEventKind {
    RecognizerEventKind::Result(Transcript {
        is_final,
        transcript: text.into(),
        confidence: 0.9,
        stability: if is_final { 0.0 } else { 0.5 },
        start_ms,
        end_ms,
        words: Vec::new(),
        language_code: "en-US".into(),
    })
}

fn failed(code: tonic::Code, message: &str) -> RecognizerEventKind {
    RecognizerEventKind::Ended(Err(StreamFailure {
        code,
        message: message.into(),
    }))
}

fn half_closed(stream_id: u64, reason: HalfCloseReason) -> UpstreamHalfClosed {
    UpstreamHalfClosed {
        stream_id,
        reason,
        at_ms: 0,
    }
}

fn resumes(log: &ProbeLog) -> Vec<(u64, Resume)> {
    log.all::<AttachStream>()
        .iter()
        .map(|a| (a.stream_id, a.resume))
        .collect()
}

/// No stream is opened before audio comes; the first is started with id 1 and attached after
/// what was sent (nothing: the start of the audio).
#[actix_rt::test]
async fn opens_the_first_stream_when_audio_comes() {
    let (session, _) = Probe::start_new();
    let (buffer, _) = Probe::start_new();
    let recognizers = Rc::new(ProbeRecognizers::default());
    let idle = StreamSupervisor::new(
        Arc::from("s0"),
        config(false),
        recognizers.clone(),
        RestartPolicy::from_settings(&settings()),
        Arc::new(CircuitBreaker::from_settings(&settings())),
        Probe::session_links(&session),
        BufferControl {
            attach: buffer.clone().recipient(),
            detach: buffer.clone().recipient(),
            force_final: buffer.clone().recipient(),
            finalized: buffer.clone().recipient(),
            stop: buffer.recipient(),
        },
    )
    .start();
    let none = recognizers
        .wait_started(1, Duration::from_millis(200))
        .await;
    assert!(none.is_empty(), "no stream without audio");
    idle.do_send(AudioPending);
    assert_eq!(recognizers.wait_started(1, WAIT).await.len(), 1);

    let rig = rig();
    let started = rig.recognizers.wait_started(1, WAIT).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].stream_id, 1);
    assert_eq!(&*started[0].session_id, "s1");
    assert_eq!(started[0].config, config(false));
    rig.buffer.wait_count::<AttachStream>(1, WAIT).await;
    assert_eq!(resumes(&rig.buffer), vec![(1, Resume::AfterSent)]);
}

/// Results pass through unchanged (times included); finals tell the buffer what is final.
#[actix_rt::test]
async fn results_pass_through_and_finals_are_finalized() {
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, result(false, "hel", 120, 480)));
    rig.supervisor
        .do_send(event(1, result(true, "hello", 120, 910)));
    let got = rig.session.wait_count::<Transcript>(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].is_final, got[0].start_ms, got[0].end_ms),
        (false, 120, 480)
    );
    assert_eq!(
        (got[1].is_final, got[1].start_ms, got[1].end_ms),
        (true, 120, 910)
    );
    let fin = rig.buffer.wait_count::<Finalized>(1, WAIT).await;
    assert_eq!(fin[0].upto_ms, 910);
}

/// A retryable failure detaches the stream, warns the client, and after the backoff starts a
/// new stream replaying from the end of the last final; finals it repeats are dropped, and
/// events of the dead stream are ignored.
#[actix_rt::test]
async fn retryable_failure_restarts_with_replay_and_dedup() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, result(true, "one", 0, 1_000)));
    rig.supervisor
        .do_send(event(1, failed(tonic::Code::Unavailable, "Stream removed")));
    let detach = rig.buffer.wait_count::<DetachStream>(1, WAIT).await;
    assert_eq!(detach[0].stream_id, 1);
    let warnings = rig.session.wait_count::<PipelineWarning>(1, WAIT).await;
    assert_eq!(warnings[0].code, "upstream_reconnecting");
    let before = tokio::time::Instant::now();
    let started = rig.recognizers.wait_started(2, WAIT).await;
    assert_eq!(started.len(), 2);
    assert_eq!(started[1].stream_id, 2);
    assert!(
        before.elapsed() >= Duration::from_millis(100),
        "restarted after the backoff"
    );
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(
        resumes(&rig.buffer),
        vec![(1, Resume::AfterSent), (2, Resume::FromMs(1_000))]
    );
    // A late event of stream 1, a repeated final, then a new one.
    rig.supervisor
        .do_send(event(1, result(true, "stale", 1_000, 2_000)));
    rig.supervisor
        .do_send(event(2, result(true, "one", 0, 1_000)));
    rig.supervisor
        .do_send(event(2, result(true, "two", 1_000, 1_800)));
    let got = rig.session.wait_count::<Transcript>(2, WAIT).await;
    let texts: Vec<&str> = got.iter().map(|t| t.transcript.as_str()).collect();
    assert_eq!(texts, vec!["one", "two"]);
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(
        fin[0].summary,
        PipelineSummary {
            results: 2,
            restarts: 1,
            billed_ms: 0,
        }
    );
}

/// Consecutive failures back off exponentially (100, 200, 400 ms).
#[actix_rt::test]
async fn consecutive_failures_back_off_exponentially() {
    tokio::time::pause();
    let rig = rig();
    let mut gaps = Vec::new();
    for n in 1..=3u64 {
        rig.recognizers.wait_started(n as usize, WAIT).await;
        rig.supervisor
            .do_send(event(n, failed(tonic::Code::Internal, "boom")));
        let failed_at = tokio::time::Instant::now();
        rig.recognizers.wait_started(n as usize + 1, WAIT).await;
        gaps.push(failed_at.elapsed().as_millis());
    }
    // The paused clock jumps to each timer's deadline, give or take its millisecond tick.
    for (gap, nominal) in gaps.iter().zip([100, 200, 400]) {
        assert!((nominal..=nominal + 5).contains(gap), "gaps {gaps:?}");
    }
}

/// More restarts than the intensity allows end the session with `upstream_unavailable`, and
/// the stream and buffer are stopped.
#[actix_rt::test]
async fn intensity_exceeded_gives_up() {
    tokio::time::pause();
    let rig = rig_with(
        &SupervisionSettings {
            max_restarts: 2,
            ..settings()
        },
        false,
    );
    for n in 1..=3u64 {
        rig.recognizers.wait_started(n as usize, WAIT).await;
        rig.supervisor
            .do_send(event(n, failed(tonic::Code::ResourceExhausted, "quota")));
    }
    let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, ErrorCode::UpstreamUnavailable);
    assert!(
        errors[0].message.contains("RESOURCE_EXHAUSTED"),
        "{}",
        errors[0].message
    );
    assert_eq!(rig.recognizers.wait_started(3, WAIT).await.len(), 3);
    rig.buffer.wait_count::<StopPipeline>(1, WAIT).await;
    assert_eq!(rig.buffer.all::<StopPipeline>().len(), 1);
    assert!(
        rig.supervisor.send(StopPipeline).await.is_err(),
        "supervisor stopped"
    );
}

/// A non-retryable failure ends the session at once with Google's message.
#[actix_rt::test]
async fn non_retryable_failure_is_rejected_with_googles_message() {
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    let message = "Invalid recognition 'config': bad encoding.";
    rig.supervisor
        .do_send(event(1, failed(tonic::Code::InvalidArgument, message)));
    let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
    assert_eq!(
        errors,
        vec![PipelineError {
            code: ErrorCode::UpstreamRejected,
            message: format!("INVALID_ARGUMENT: {message}")
        }]
    );
    rig.buffer.wait_count::<StopPipeline>(1, WAIT).await;
    assert_eq!(rig.recognizers.requests().len(), 1, "no restart");
    assert!(rig.session.all::<PipelineWarning>().is_empty());
}

/// Every gRPC code goes the way the default policy says: restart or reject.
#[actix_rt::test]
async fn every_code_is_classified_by_the_policy() {
    tokio::time::pause();
    use tonic::Code::*;
    let policy = RestartPolicy::from_settings(&settings());
    for code in [
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    ] {
        let rig = rig();
        rig.recognizers.wait_started(1, WAIT).await;
        rig.supervisor.do_send(event(1, failed(code, "x")));
        if code == Unauthenticated {
            // One immediate retry with fresh credentials; the second is the policy's.
            let started = rig.recognizers.wait_started(2, WAIT).await;
            assert_eq!(started.len(), 2, "{code:?} is retried once");
            assert_eq!(rig.recognizers.credential_refreshes(), 1);
            rig.supervisor.do_send(event(2, failed(code, "x")));
        }
        if policy.is_retryable(code) {
            let started = rig.recognizers.wait_started(2, WAIT).await;
            assert_eq!(started.len(), 2, "{code:?} restarts");
        } else {
            let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
            assert_eq!(errors.len(), 1, "{code:?} is rejected");
            assert_eq!(errors[0].code, ErrorCode::UpstreamRejected);
        }
    }
}

/// After a `finalize` half-close and a clean end, the next stream continues after the sent
/// audio; this is a rotation, not a restart.
#[actix_rt::test]
async fn finalize_rotates_to_the_next_stream() {
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(event(1, result(true, "a", 0, 700)));
    rig.supervisor
        .do_send(half_closed(1, HalfCloseReason::Finalize));
    rig.audio_comes();
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    rig.recognizers.wait_started(2, WAIT).await;
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(
        resumes(&rig.buffer),
        vec![(1, Resume::AfterSent), (2, Resume::AfterSent)]
    );
    assert!(rig.session.all::<PipelineWarning>().is_empty());
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(
        fin[0].summary,
        PipelineSummary {
            results: 1,
            restarts: 0,
            billed_ms: 0,
        }
    );
}

/// A `stop` that upgrades a `finalize` half-close makes that stream's clean end the last one.
#[actix_rt::test]
async fn upgraded_half_close_finishes_without_another_stream() {
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(half_closed(1, HalfCloseReason::Finalize));
    rig.supervisor
        .do_send(half_closed(1, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(rig.recognizers.requests().len(), 1);
}

/// A clean end nobody asked for is restarted with a replay, like a transient failure.
#[actix_rt::test]
async fn unrequested_clean_end_restarts() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(event(1, result(true, "a", 0, 400)));
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    rig.recognizers.wait_started(2, WAIT).await;
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(resumes(&rig.buffer)[1], (2, Resume::FromMs(400)));
}

/// In single-utterance mode the end of the utterance detaches the stream, and its clean end
/// finishes the pipeline.
#[actix_rt::test]
async fn single_utterance_end_finishes() {
    let rig = rig_with(&settings(), true);
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::EndOfSingleUtterance));
    rig.supervisor
        .do_send(event(1, result(true, "yes", 0, 600)));
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(fin[0].summary.results, 1);
    assert_eq!(rig.buffer.all::<DetachStream>().len(), 1);
    assert_eq!(rig.recognizers.requests().len(), 1);
}

/// A stream that fails after the client's `stop` was half-closed is restarted (the replay
/// ends with End again); once it ends cleanly the pipeline finishes and nothing restarts.
#[actix_rt::test]
async fn failure_after_stop_restarts_then_finishes() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(half_closed(1, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(1, failed(tonic::Code::Unavailable, "reset")));
    rig.recognizers.wait_started(2, WAIT).await;
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    rig.supervisor
        .do_send(event(2, failed(tonic::Code::Unavailable, "late")));
    assert_eq!(
        rig.recognizers.wait_started(3, WAIT).await.len(),
        2,
        "no restart after the finish"
    );
}

/// After `StopPipeline` no restart follows, even one already scheduled, and the buffer stops.
#[actix_rt::test]
async fn stop_prevents_a_scheduled_restart() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, failed(tonic::Code::Unavailable, "x")));
    rig.recognizers.wait_started(2, WAIT).await;
    rig.supervisor
        .do_send(event(2, failed(tonic::Code::Unavailable, "y")));
    rig.session.wait_count::<PipelineWarning>(2, WAIT).await;
    assert!(rig.supervisor.send(StopPipeline).await.is_ok());
    rig.buffer.wait_count::<StopPipeline>(1, WAIT).await;
    assert_eq!(
        rig.recognizers.wait_started(3, WAIT).await.len(),
        2,
        "scheduled restart cancelled"
    );
    assert!(rig.session.all::<PipelineFinished>().is_empty());
    assert!(rig.session.all::<PipelineError>().is_empty());
}

/// `StopPipeline` cancels the running stream.
#[actix_rt::test]
async fn stop_cancels_the_running_stream() {
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(StopPipeline);
    let cancels = match rig.recognizers.stream_log(0) {
        Some(log) => log.wait_count::<CancelStream>(1, WAIT).await.len(),
        None => 0,
    };
    assert_eq!(cancels, 1);
    assert_eq!(
        rig.buffer.wait_count::<StopPipeline>(1, WAIT).await.len(),
        1
    );
}

/// Rotation every 10 s (max 20 s), standby replaced after 4 s of waiting.
fn rotating() -> SupervisionSettings {
    SupervisionSettings {
        rotate_after_secs: 10.0,
        max_stream_secs: 20.0,
        standby_max_wait_secs: 4.0,
        ..settings()
    }
}

/// At `rotate_after` a standby stream is opened ahead of time (not attached); the next final
/// switches to it: the old stream is cancelled, the standby attached with a replay from that
/// final's end. Late events of the old stream are ignored, repeated finals dropped; a rotation
/// is neither a restart nor a warning.
#[actix_rt::test]
async fn rotation_switches_to_the_standby_at_the_next_final() {
    tokio::time::pause();
    let rig = rig_with(&rotating(), false);
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, result(true, "one", 0, 4_000)));
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert_eq!(
        rig.recognizers.requests().len(),
        1,
        "no standby before 10 s"
    );
    let started = rig.recognizers.wait_started(2, WAIT).await;
    assert_eq!(started.len(), 2, "standby opened at 10 s");
    assert_eq!(
        rig.buffer.all::<AttachStream>().len(),
        1,
        "not attached yet"
    );
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Opened));
    rig.supervisor
        .do_send(event(1, result(false, "tw", 9_000, 9_500)));
    rig.supervisor
        .do_send(event(1, result(true, "two", 9_000, 9_800)));
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(resumes(&rig.buffer)[1], (2, Resume::FromMs(9_800)));
    let cancels = match rig.recognizers.stream_log(0) {
        Some(log) => log.wait_count::<CancelStream>(1, WAIT).await.len(),
        None => 0,
    };
    assert_eq!(cancels, 1, "the old stream is cancelled");
    rig.supervisor
        .do_send(event(1, result(true, "late", 9_800, 10_500)));
    rig.supervisor
        .do_send(event(2, result(true, "two", 9_000, 9_800)));
    rig.supervisor
        .do_send(event(2, result(true, "three", 9_900, 11_000)));
    let got = rig.session.wait_count::<Transcript>(4, WAIT).await;
    let texts: Vec<&str> = got.iter().map(|t| t.transcript.as_str()).collect();
    assert_eq!(texts, vec!["one", "tw", "two", "three"]);
    assert!(rig.session.all::<PipelineWarning>().is_empty());
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(
        fin[0].summary,
        PipelineSummary {
            results: 3,
            restarts: 0,
            billed_ms: 0,
        }
    );
}

/// Without a final, the standby is replaced every `standby_max_wait` (10 s, 14 s, 18 s) and at
/// the maximum age (20 s) the latest one takes over with a replay from the last final.
#[actix_rt::test]
async fn rotation_at_max_age_without_a_final() {
    tokio::time::pause();
    let rig = rig_with(&rotating(), false);
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, result(true, "one", 0, 1_500)));
    let t0 = tokio::time::Instant::now();
    let started = rig
        .recognizers
        .wait_started(4, Duration::from_secs(19))
        .await;
    assert_eq!(started.len(), 4, "standbys at 10, 14 and 18 s");
    assert!(t0.elapsed() >= Duration::from_secs(18));
    for index in [1, 2] {
        let cancels = match rig.recognizers.stream_log(index) {
            Some(log) => log.wait_count::<CancelStream>(1, WAIT).await.len(),
            None => 0,
        };
        assert_eq!(cancels, 1, "standby {} replaced", index + 1);
    }
    let attached = rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(20),
        "switched at max age"
    );
    assert_eq!(attached.len(), 2);
    assert_eq!(resumes(&rig.buffer)[1], (4, Resume::FromMs(1_500)));
    assert_eq!(rig.recognizers.requests().len(), 4);
}

/// A stream being half-closed is not rotated: its standby is dropped and the next stream
/// starts after its end, when audio waits.
#[actix_rt::test]
async fn a_half_closed_stream_is_not_rotated() {
    tokio::time::pause();
    let rig = rig_with(&rotating(), false);
    rig.recognizers.wait_started(1, WAIT).await;
    rig.recognizers
        .wait_started(2, Duration::from_secs(11))
        .await;
    rig.supervisor
        .do_send(half_closed(1, HalfCloseReason::Finalize));
    rig.supervisor
        .do_send(event(1, result(true, "a", 0, 10_300)));
    let cancels = match rig.recognizers.stream_log(1) {
        Some(log) => log.wait_count::<CancelStream>(1, WAIT).await.len(),
        None => 0,
    };
    assert_eq!(cancels, 1, "the standby is cancelled");
    assert_eq!(rig.buffer.all::<AttachStream>().len(), 1, "no switch");
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        rig.recognizers.requests().len(),
        2,
        "nothing opened without audio"
    );
    rig.audio_comes();
    rig.recognizers.wait_started(3, WAIT).await;
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(resumes(&rig.buffer)[1], (3, Resume::AfterSent));
}

/// After a `finalize` or an audio gap the next stream opens only when audio comes; audio that
/// came while the old stream was ending opens it at that stream's end.
#[actix_rt::test]
async fn after_a_half_close_the_next_stream_waits_for_audio() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(half_closed(1, HalfCloseReason::Gap));
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    let none = rig
        .recognizers
        .wait_started(2, Duration::from_secs(60))
        .await;
    assert_eq!(none.len(), 1, "a muted client holds no stream open");
    rig.audio_comes();
    rig.recognizers.wait_started(2, WAIT).await;
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::Finalize));
    rig.audio_comes();
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    assert_eq!(rig.recognizers.wait_started(3, WAIT).await.len(), 3);
    rig.buffer.wait_count::<AttachStream>(3, WAIT).await;
    let all: Vec<Resume> = resumes(&rig.buffer).iter().map(|r| r.1).collect();
    assert_eq!(all, vec![Resume::AfterSent; 3]);
    assert!(rig.session.all::<PipelineWarning>().is_empty());
}

/// UNAUTHENTICATED: one immediate retry (no backoff, not counted) with fresh credentials; a
/// second one in a row is the policy's (here: not retryable → rejected with Google's text).
#[actix_rt::test]
async fn unauthenticated_is_retried_once_with_fresh_credentials() {
    tokio::time::pause();
    let rig = rig_with(
        &SupervisionSettings {
            max_restarts: 0,
            ..settings()
        },
        false,
    );
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(event(1, result(true, "a", 0, 700)));
    let t0 = tokio::time::Instant::now();
    rig.supervisor.do_send(event(
        1,
        failed(tonic::Code::Unauthenticated, "token expired"),
    ));
    rig.recognizers.wait_started(2, WAIT).await;
    assert_eq!(t0.elapsed(), Duration::ZERO, "no backoff");
    assert_eq!(rig.recognizers.credential_refreshes(), 1);
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(resumes(&rig.buffer)[1], (2, Resume::FromMs(700)));
    // A stream that opens with the fresh token earns the next expiry its own retry.
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Opened));
    rig.supervisor.do_send(event(
        2,
        failed(tonic::Code::Unauthenticated, "token expired"),
    ));
    rig.recognizers.wait_started(3, WAIT).await;
    assert_eq!(rig.recognizers.credential_refreshes(), 2);
    rig.supervisor
        .do_send(event(3, failed(tonic::Code::Unauthenticated, "bad key")));
    let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
    assert_eq!(errors[0].code, ErrorCode::UpstreamRejected);
    assert_eq!(errors[0].message, "UNAUTHENTICATED: bad key");
    assert_eq!(rig.recognizers.requests().len(), 3);
}

fn breaker_settings() -> SupervisionSettings {
    SupervisionSettings {
        breaker_failures: 3,
        breaker_open_ms: 1_000,
        breaker_max_open_ms: 4_000,
        max_restarts: 3,
        restart_period_secs: 600.0,
        ..settings()
    }
}

/// An outage: once the shared breaker opens, restarts wait for it without counting against the
/// intensity (3 here, far fewer than the failed probes), the client is warned once, and told
/// again when a stream opens; nothing is lost (the replay is from the last final).
#[actix_rt::test]
async fn open_breaker_holds_restarts_back_without_counting() {
    tokio::time::pause();
    let rig = rig_with(&breaker_settings(), false);
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(event(1, result(true, "a", 0, 900)));
    for n in 1..=12u64 {
        rig.recognizers
            .wait_started(n as usize, Duration::from_secs(30))
            .await;
        rig.supervisor
            .do_send(event(n, failed(tonic::Code::Unavailable, "down")));
    }
    let started = rig
        .recognizers
        .wait_started(13, Duration::from_secs(30))
        .await;
    assert_eq!(started.len(), 13, "still probing after 12 failures");
    assert!(
        rig.session.all::<PipelineError>().is_empty(),
        "not given up"
    );
    let warnings = rig.session.all::<PipelineWarning>();
    let codes: Vec<&str> = warnings.iter().map(|w| w.code).collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == WARNING_UPSTREAM_OUTAGE)
            .count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == WARNING_UPSTREAM_RECONNECTING)
            .count(),
        2,
        "backoff restarts only before the breaker opened: {codes:?}"
    );
    rig.supervisor
        .do_send(event(13, RecognizerEventKind::Opened));
    let warnings = rig.session.wait_count::<PipelineWarning>(4, WAIT).await;
    assert_eq!(warnings[3].code, WARNING_UPSTREAM_RECOVERED);
    let attached = rig.buffer.all::<AttachStream>();
    assert!(attached[1..]
        .iter()
        .all(|a| a.resume == Resume::FromMs(900)));
}

/// The breaker is shared: failures of other sessions open it, and then this session's failure
/// waits for it instead of backing off on its own (no `upstream_reconnecting`).
#[actix_rt::test]
async fn the_breaker_is_shared_by_sessions() {
    tokio::time::pause();
    let settings = breaker_settings();
    let breaker = Arc::new(CircuitBreaker::from_settings(&settings));
    let rigs: Vec<Rig> = (0..4)
        .map(|_| rig_sharing(&settings, false, breaker.clone()))
        .collect();
    for rig in &rigs {
        rig.recognizers.wait_started(1, WAIT).await;
    }
    for rig in &rigs[..3] {
        rig.supervisor
            .do_send(event(1, failed(tonic::Code::Internal, "boom")));
        rig.session.wait_count::<PipelineWarning>(1, WAIT).await;
    }
    assert!(breaker.is_open(), "3 failures across sessions");
    let last = &rigs[3];
    last.supervisor
        .do_send(event(1, failed(tonic::Code::Internal, "boom")));
    let warnings = last.session.wait_count::<PipelineWarning>(1, WAIT).await;
    assert_eq!(warnings[0].code, WARNING_UPSTREAM_OUTAGE);
}

/// A failure that does not concern the upstream as a whole (OUT_OF_RANGE) never opens the
/// breaker, and a standby's failure does not disturb the current stream.
#[actix_rt::test]
async fn stream_specific_failures_do_not_open_the_breaker() {
    tokio::time::pause();
    let settings = SupervisionSettings {
        max_restarts: 100,
        ..breaker_settings()
    };
    let breaker = Arc::new(CircuitBreaker::from_settings(&settings));
    let rig = rig_sharing(&settings, false, breaker.clone());
    for n in 1..=6u64 {
        rig.recognizers.wait_started(n as usize, WAIT).await;
        rig.supervisor.do_send(event(
            n,
            failed(tonic::Code::OutOfRange, "Audio Timeout Error"),
        ));
    }
    rig.recognizers.wait_started(7, WAIT).await;
    assert!(!breaker.is_open());
}

/// A session stopped while it waits for the open breaker starts nothing more: the wait is
/// cancelled with the supervisor.
#[actix_rt::test]
async fn stop_while_waiting_for_the_breaker_starts_nothing() {
    tokio::time::pause();
    let settings = breaker_settings();
    let breaker = Arc::new(CircuitBreaker::from_settings(&settings));
    for _ in 0..3 {
        breaker.record_failure(tonic::Code::Unavailable, tokio::time::Instant::now());
    }
    let rig = rig_sharing(&settings, false, breaker.clone());
    let warnings = rig.session.wait_count::<PipelineWarning>(1, WAIT).await;
    assert_eq!(warnings[0].code, WARNING_UPSTREAM_OUTAGE);
    assert!(rig.recognizers.requests().is_empty(), "held back");
    assert!(rig.supervisor.send(StopPipeline).await.is_ok());
    rig.buffer.wait_count::<StopPipeline>(1, WAIT).await;
    let none = rig
        .recognizers
        .wait_started(1, Duration::from_secs(60))
        .await;
    assert!(none.is_empty(), "no stream after the stop");
}

/// A stream that cannot start for lack of capacity ends the session at once with `busy`
/// (close 1013, retryable): no restart, no backoff, the buffer is stopped.
#[actix_rt::test]
async fn busy_fails_the_session_at_once_without_restart() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor.do_send(event(
        1,
        RecognizerEventKind::Busy("all 2 decoders are in use".into()),
    ));
    let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
    assert_eq!(
        errors,
        vec![PipelineError {
            code: ErrorCode::Busy,
            message: "all 2 decoders are in use".into()
        }]
    );
    assert_eq!(ErrorCode::Busy.as_str(), "busy");
    assert_eq!(ErrorCode::Busy.close_code(), Some(1013));
    assert!(ErrorCode::Busy.retryable());
    assert_eq!(
        rig.buffer.wait_count::<StopPipeline>(1, WAIT).await.len(),
        1
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rig.recognizers.requests().len(), 1, "no restart");
    assert!(rig.session.all::<PipelineWarning>().is_empty());
    assert!(rig.buffer.all::<DetachStream>().is_empty());
}

fn words_result(is_final: bool, words: &[(&str, u64, u64)], end_ms: u64) -> RecognizerEventKind {
    let words: Vec<WordTiming> = words
        .iter()
        .map(|&(word, start_ms, end_ms)| WordTiming {
            word: word.into(),
            start_ms,
            end_ms,
            confidence: 0.9,
        })
        .collect();
    let text: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
    RecognizerEventKind::Result(Transcript {
        is_final,
        transcript: text.join(" "),
        confidence: 0.9,
        stability: 0.0,
        start_ms: words.first().map_or(0, |w| w.start_ms),
        end_ms,
        words,
        language_code: "en-US".into(),
    })
}

/// Restarts after progress are not counted: with an intensity of 1, a stream that delivered a
/// final and one whose result reached new audio fail without giving up; then two streams that
/// get nowhere (no result, then only a result for audio already recognised) use the intensity
/// up and the session gets `upstream_unavailable`. Every restart warns alike.
#[actix_rt::test]
async fn only_restarts_without_progress_count() {
    tokio::time::pause();
    let rig = rig_with(
        &SupervisionSettings {
            max_restarts: 1,
            ..settings()
        },
        false,
    );
    let internal = || failed(tonic::Code::Internal, "boom");
    rig.recognizers.wait_started(1, WAIT).await;
    rig.supervisor
        .do_send(event(1, result(true, "one", 0, 1_000)));
    rig.supervisor.do_send(event(1, internal()));
    rig.recognizers.wait_started(2, WAIT).await;
    rig.supervisor
        .do_send(event(2, result(false, "tw", 1_000, 1_500)));
    rig.supervisor.do_send(event(2, internal()));
    rig.recognizers.wait_started(3, WAIT).await;
    rig.supervisor.do_send(event(3, internal()));
    rig.recognizers.wait_started(4, WAIT).await;
    assert!(
        rig.session.all::<PipelineError>().is_empty(),
        "one restart without progress is within the intensity"
    );
    rig.supervisor
        .do_send(event(4, result(false, "tw", 1_000, 1_400)));
    rig.supervisor.do_send(event(4, internal()));
    let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, ErrorCode::UpstreamUnavailable);
    assert_eq!(rig.recognizers.requests().len(), 4);
    let reconnecting = rig
        .session
        .all::<PipelineWarning>()
        .iter()
        .filter(|w| w.code == WARNING_UPSTREAM_RECONNECTING)
        .count();
    assert_eq!(reconnecting, 3);
}

/// A stream the upstream ends at its duration limit is replaced at once, replaying from the last
/// final: no backoff, no warning, not a restart — even with an intensity of 0.
#[actix_rt::test]
async fn the_duration_limit_is_a_rotation() {
    tokio::time::pause();
    let rig = rig_with(
        &SupervisionSettings {
            max_restarts: 0,
            ..settings()
        },
        false,
    );
    for n in 1..=3u64 {
        rig.recognizers.wait_started(n as usize, WAIT).await;
        rig.supervisor
            .do_send(event(n, result(true, "word", n * 1_000, n * 1_000 + 500)));
        let expired_at = tokio::time::Instant::now();
        rig.supervisor.do_send(event(
            n,
            failed(
                tonic::Code::OutOfRange,
                "Exceeded maximum allowed stream duration of 3 seconds.",
            ),
        ));
        rig.buffer
            .wait_count::<AttachStream>(n as usize + 1, WAIT)
            .await;
        assert!(
            expired_at.elapsed() < Duration::from_millis(5),
            "no backoff"
        );
        assert_eq!(
            resumes(&rig.buffer)[n as usize],
            (n + 1, Resume::FromMs(n * 1_000 + 500))
        );
    }
    assert!(rig.session.all::<PipelineWarning>().is_empty());
    assert!(rig.session.all::<PipelineError>().is_empty());
    rig.supervisor
        .do_send(half_closed(4, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(4, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(
        fin[0].summary,
        PipelineSummary {
            results: 3,
            restarts: 0,
            billed_ms: 0,
        }
    );
}

/// A rig whose streams are forced to a final after 10 s without one; its first stream started.
async fn forcing_after_10_s() -> Rig {
    let rig = rig_with(
        &SupervisionSettings {
            force_final_after_secs: 10.0,
            ..settings()
        },
        false,
    );
    rig.recognizers.wait_started(1, WAIT).await;
    rig
}

/// No final for `force_final_after_secs` (10 s here; the timer restarts at each final): the
/// buffer is asked to half-close the stream; its final comes without the word the half-close
/// may have cut, ending halfway before it; the stream's later results are left out, and after
/// its clean end the next stream continues from that final's end at once. A stream half-closed
/// by the buffer itself is not forced.
#[actix_rt::test]
async fn no_final_for_long_forces_one() {
    tokio::time::pause();
    let rig = forcing_after_10_s().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    rig.supervisor
        .do_send(event(1, words_result(true, &[("zero", 100, 400)], 700)));
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert!(
        rig.buffer.all::<ForceFinal>().is_empty(),
        "10 s after the last final, not before"
    );
    let forced = rig.buffer.wait_count::<ForceFinal>(1, WAIT).await;
    assert_eq!(forced[0].stream_id, 1);
    rig.supervisor.do_send(UpstreamHalfClosed {
        stream_id: 1,
        reason: HalfCloseReason::ForcedFinal,
        at_ms: 16_000,
    });
    rig.supervisor.do_send(AudioPending);
    let words = [
        ("one", 1_000, 1_300),
        ("two", 1_400, 1_700),
        ("thr", 15_900, 16_000),
    ];
    rig.supervisor
        .do_send(event(1, words_result(false, &words, 16_000)));
    rig.supervisor
        .do_send(event(1, words_result(true, &words, 16_000)));
    rig.supervisor.do_send(event(
        1,
        words_result(true, &[("late", 16_000, 16_100)], 16_200),
    ));
    rig.supervisor
        .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
    rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
    assert_eq!(resumes(&rig.buffer)[1], (2, Resume::FromMs(8_800)));
    let got = rig.session.wait_count::<Transcript>(3, WAIT).await;
    let finals: Vec<(&str, u64)> = got
        .iter()
        .filter(|t| t.is_final)
        .map(|t| (t.transcript.as_str(), t.end_ms))
        .collect();
    assert_eq!(finals, vec![("zero", 700), ("one two", 8_800)]);
    let finalized: Vec<u64> = rig
        .buffer
        .all::<Finalized>()
        .iter()
        .map(|f| f.upto_ms)
        .collect();
    assert_eq!(finalized, vec![700, 8_800]);
    // Stream 2 is half-closed by a gap before its timer: never forced.
    rig.supervisor.do_send(half_closed(2, HalfCloseReason::Gap));
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(rig.buffer.all::<ForceFinal>().len(), 1);
    assert!(rig.session.all::<PipelineWarning>().is_empty());
}

/// A stalled gateway — stopped, or starved of CPU — fires its late timers before it reads the
/// results that came meanwhile: the forced-final look, due 10 s after the last final, runs 12 s
/// after it, when the upstream's next final waits unread. It forces nothing (it was late, and
/// the final read next re-arms the timer); a stream that really gives no final is still forced,
/// `force_final_after` after the gateway woke (and the confirming look `stall_tolerance_ms`
/// later).
#[actix_rt::test]
async fn a_stalled_gateway_forces_no_final_it_has_not_read() {
    tokio::time::pause();
    let rig = forcing_after_10_s().await;
    rig.supervisor
        .do_send(event(1, words_result(true, &[("zero", 100, 400)], 700)));
    rig.session.wait_count::<Transcript>(1, WAIT).await;
    // The stall: the clock jumps 12 s at once; the look (due at 10 s) runs late.
    tokio::time::advance(Duration::from_secs(12)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        rig.buffer.all::<ForceFinal>().is_empty(),
        "a late look forces nothing"
    );
    // The final that waited unread, then nothing: forced 10 s (+ the confirmation) later.
    rig.supervisor.do_send(event(
        1,
        words_result(true, &[("one", 1_000, 1_300)], 1_600),
    ));
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert!(rig.buffer.all::<ForceFinal>().is_empty());
    let forced = rig.buffer.wait_count::<ForceFinal>(1, WAIT).await;
    assert_eq!(forced[0].stream_id, 1);
    let finals: Vec<String> = rig
        .session
        .all::<Transcript>()
        .iter()
        .map(|t| t.transcript.clone())
        .collect();
    assert_eq!(finals, ["zero", "one"], "both finals whole");
}

fn speech(activity: SpeechActivity, at_ms: u64) -> RecognizerEventKind {
    RecognizerEventKind::VoiceActivity(VoiceActivity { activity, at_ms })
}

/// Voice activity reaches the session as the streams report it, already on the session clock;
/// across a restart the replaying stream's repeat of a beginning the client heard is dropped.
/// Billed audio is the sum of each stream's own total, a former stream's late report included,
/// and comes in the summary.
#[actix_rt::test]
async fn voice_activity_and_billing_survive_a_restart() {
    tokio::time::pause();
    let rig = rig();
    rig.recognizers.wait_started(1, WAIT).await;
    for kind in [
        speech(SpeechActivity::Started, 300),
        speech(SpeechActivity::Ended, 1_000),
        result(true, "one", 0, 1_000),
        RecognizerEventKind::Billed(1_000),
        speech(SpeechActivity::Started, 1_400),
        RecognizerEventKind::Billed(1_000),
        failed(tonic::Code::Unavailable, "Stream removed"),
    ] {
        rig.supervisor.do_send(event(1, kind));
    }
    rig.recognizers.wait_started(2, WAIT).await;
    // Stream 2 replays from 1 000: it hears the same beginning again, then the end; a late
    // billing report of stream 1 still counts, its voice activity does not.
    for (stream, kind) in [
        (1, RecognizerEventKind::Billed(1_000)),
        (1, speech(SpeechActivity::Ended, 1_900)),
        (2, speech(SpeechActivity::Started, 1_400)),
        (2, speech(SpeechActivity::Ended, 2_000)),
        (2, result(true, "two", 1_000, 2_000)),
        (2, RecognizerEventKind::Billed(2_000)),
    ] {
        rig.supervisor.do_send(event(stream, kind));
    }
    rig.supervisor
        .do_send(half_closed(2, HalfCloseReason::EndOfAudio));
    rig.supervisor
        .do_send(event(2, RecognizerEventKind::Ended(Ok(()))));
    let fin = rig.session.wait_count::<PipelineFinished>(1, WAIT).await;
    assert_eq!(fin[0].summary.billed_ms, 5_000);
    assert_eq!(fin[0].summary.restarts, 1);
    let heard: Vec<(SpeechActivity, u64)> = rig
        .session
        .all::<VoiceActivity>()
        .iter()
        .map(|v| (v.activity, v.at_ms))
        .collect();
    assert_eq!(
        heard,
        vec![
            (SpeechActivity::Started, 300),
            (SpeechActivity::Ended, 1_000),
            (SpeechActivity::Started, 1_400),
            (SpeechActivity::Ended, 2_000),
        ]
    );
}
