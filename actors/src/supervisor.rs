//! The stream supervisor: one per session. It starts each upstream stream (a recognizer actor),
//! attaches it to the audio buffer, routes its results to the session on the session clock,
//! delivers each final exactly once, and decides — by the [`RestartPolicy`] — what happens when a
//! stream ends: rotate to the next stream after a `finalize`, finish after a `stop`, restart with a
//! replay of the audio not yet final after a transient failure, or give up with a coded error.
//!
//! ## Why one recognizer actor per stream, started by the supervisor
//!
//! actix has its own [`actix::Supervisor`]: it restarts a [`actix::Supervised`] actor *in place*
//! when it stops — same address, same mailbox, queued messages kept. That is the wrong shape here:
//!
//! - A restarted stream is a *new* upstream call whose times start again at zero and which needs a
//!   replay from a point only this supervisor knows (the end of the last final result). Keeping the
//!   old mailbox would deliver audio queued for the dead call to the new one, twice or out of order.
//! - Results of the old stream may still be in flight when the new one starts; with a fresh actor
//!   and a fresh stream id per call, stale events are recognised and dropped by id.
//! - The decision to restart depends on the failure's gRPC code, the backoff, the restart intensity
//!   and whether the client already stopped — policy that belongs in one place, not in a
//!   `restarting()` hook of the child.
//!
//! So a recognizer never restarts itself: it reports exactly one `Ended` and stops, and this
//! supervisor (which never restarts itself either) starts the next one through a
//! [`RecognizerFactory`], as an OTP supervisor would start a new child.

use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::messages::*;
use crate::metrics::METRICS;
use crate::protocol::{ErrorCode, StartConfig};
use crate::recognizer::RecognizerFactory;
use crate::restart_policy::{RestartPolicy, RestartTracker};
use crate::settings::grpc_code_name;

/// The stream of the moment.
struct ActiveStream {
    id: u64,
    handle: StreamHandle,
    /// Set when the buffer half-closed this stream (and why): a clean end is then expected.
    half_closed: Option<HalfCloseReason>,
    /// Google signalled the end of the single utterance: a clean end finishes the session.
    end_of_single_utterance: bool,
}

/// The stream supervisor actor. See the module doc.
pub struct StreamSupervisor {
    /// For logs and for each stream request.
    session_id: Arc<str>,
    /// The session's recognition configuration, given to every stream.
    config: Arc<StartConfig>,
    /// Starts recognizers (Google's, or probes in tests).
    recognizers: Rc<dyn RecognizerFactory>,
    policy: RestartPolicy,
    tracker: RestartTracker,
    session: SessionLinks,
    buffer: BufferControl,
    /// The id the next stream gets (1, 2, …): events of older streams are recognised as stale.
    next_stream_id: u64,
    /// `None` between streams (during a backoff) and at the end.
    current: Option<ActiveStream>,
    /// The backoff timer of a pending restart.
    restart_timer: Option<SpawnHandle>,
    /// End of the last final delivered (session clock): earlier finals are duplicates from a
    /// replay, and a restart replays from here.
    last_final_end_ms: Option<u64>,
    summary: PipelineSummary,
    /// Finished, failed or stopped: nothing is started or forwarded any more.
    done: bool,
}

impl StreamSupervisor {
    pub fn new(
        session_id: Arc<str>,
        config: Arc<StartConfig>,
        recognizers: Rc<dyn RecognizerFactory>,
        policy: RestartPolicy,
        session: SessionLinks,
        buffer: BufferControl,
    ) -> StreamSupervisor {
        StreamSupervisor {
            session_id,
            config,
            recognizers,
            policy,
            tracker: RestartTracker::default(),
            session,
            buffer,
            next_stream_id: 1,
            current: None,
            restart_timer: None,
            last_final_end_ms: None,
            summary: PipelineSummary::default(),
            done: false,
        }
    }

    fn start_stream(&mut self, resume: Resume, ctx: &mut Context<Self>) {
        let stream_id = self.next_stream_id;
        self.next_stream_id += 1;
        let handle = self.recognizers.start(StreamRequest {
            stream_id,
            session_id: self.session_id.clone(),
            config: self.config.clone(),
            events: ctx.address().recipient(),
        });
        debug!(session = %self.session_id, stream = stream_id, ?resume, "starting upstream stream");
        self.buffer.attach.do_send(AttachStream {
            stream_id,
            sink: handle.audio.clone(),
            resume,
        });
        self.current = Some(ActiveStream {
            id: stream_id,
            handle,
            half_closed: None,
            end_of_single_utterance: false,
        });
    }

    fn on_result(&mut self, transcript: Transcript) {
        self.tracker.succeeded();
        if !transcript.is_final {
            self.session.transcripts.do_send(transcript);
            return;
        }
        if self
            .last_final_end_ms
            .is_some_and(|last| transcript.end_ms <= last)
        {
            debug!(session = %self.session_id, end_ms = transcript.end_ms, "duplicate final dropped");
            return;
        }
        self.last_final_end_ms = Some(transcript.end_ms);
        self.summary.results += 1;
        self.buffer.finalized.do_send(Finalized {
            upto_ms: transcript.end_ms,
        });
        self.session.transcripts.do_send(transcript);
    }

    fn on_clean_end(&mut self, stream: ActiveStream, ctx: &mut Context<Self>) {
        if stream.end_of_single_utterance {
            self.finish(ctx);
            return;
        }
        match stream.half_closed {
            Some(HalfCloseReason::Finalize) => {
                self.tracker.succeeded();
                self.start_stream(Resume::AfterSent, ctx);
            }
            Some(HalfCloseReason::EndOfAudio) => self.finish(ctx),
            None => {
                // Upstream closed a stream nobody asked it to close: its audio may not all be
                // final, so it is restarted with a replay like after a transient failure.
                let failure = StreamFailure {
                    code: tonic::Code::Ok,
                    message: "upstream ended the stream before it was half-closed".to_string(),
                };
                self.restart(stream.id, failure, ctx);
            }
        }
    }

    fn on_failure(
        &mut self,
        stream: ActiveStream,
        failure: StreamFailure,
        ctx: &mut Context<Self>,
    ) {
        if self.policy.is_retryable(failure.code) {
            self.restart(stream.id, failure, ctx);
        } else {
            warn!(
                session = %self.session_id,
                stream = stream.id,
                code = grpc_code_name(failure.code),
                message = %failure.message,
                "upstream rejected the stream"
            );
            let message = if failure.message.is_empty() {
                format!("upstream failed with {}", grpc_code_name(failure.code))
            } else {
                failure.message
            };
            self.fail(ErrorCode::UpstreamRejected, message, ctx);
        }
    }

    /// Restarts after a failure of stream `failed_id`, if the intensity allows.
    fn restart(&mut self, failed_id: u64, failure: StreamFailure, ctx: &mut Context<Self>) {
        let code = grpc_code_name(failure.code);
        let Some(restart) =
            self.tracker
                .next_restart(&self.policy, Instant::now(), rand::random::<f64>())
        else {
            warn!(
                session = %self.session_id,
                stream = failed_id,
                code,
                message = %failure.message,
                "upstream keeps failing: giving up"
            );
            let message = format!(
                "the upstream recognizer kept failing ({} restarts allowed within the restart period); \
                 last failure: {code}: {}",
                self.tracker.recent_restarts(),
                failure.message
            );
            self.fail(ErrorCode::UpstreamUnavailable, message, ctx);
            return;
        };
        self.buffer.detach.do_send(DetachStream {
            stream_id: failed_id,
        });
        METRICS.stream_restarts.with_label_values(&[code]).inc();
        self.summary.restarts += 1;
        let backoff_ms = restart.backoff.as_millis();
        warn!(
            session = %self.session_id,
            stream = failed_id,
            code,
            message = %failure.message,
            attempt = restart.attempt,
            backoff_ms,
            "upstream stream failed: restarting"
        );
        self.session.warnings.do_send(PipelineWarning {
            code: "upstream_reconnecting",
            message: format!("upstream stream failed ({code}); reconnecting in {backoff_ms} ms"),
        });
        self.restart_timer = Some(ctx.run_later(restart.backoff, |act, ctx| {
            act.restart_timer = None;
            if !act.done {
                let from = act.last_final_end_ms.unwrap_or(0);
                act.start_stream(Resume::FromMs(from), ctx);
            }
        }));
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        info!(session = %self.session_id, results = self.summary.results, restarts = self.summary.restarts, "pipeline finished");
        self.session.finished.do_send(PipelineFinished {
            summary: self.summary,
        });
        self.shut_down(ctx);
    }

    fn fail(&mut self, code: ErrorCode, message: String, ctx: &mut Context<Self>) {
        self.session.errors.do_send(PipelineError { code, message });
        self.shut_down(ctx);
    }

    /// Stops for good; [`Actor::stopped`] cancels the stream and stops the buffer.
    fn shut_down(&mut self, ctx: &mut Context<Self>) {
        self.done = true;
        ctx.stop();
    }
}

impl Actor for StreamSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_stream(Resume::FromMs(0), ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.done = true;
        if let Some(timer) = self.restart_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(stream) = self.current.take() {
            stream.handle.cancel.do_send(CancelStream);
        }
        self.buffer.stop.do_send(StopPipeline);
    }
}

impl Handler<RecognizerEvent> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RecognizerEvent, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        let Some(current) = self.current.as_mut().filter(|s| s.id == msg.stream_id) else {
            debug!(session = %self.session_id, stream = msg.stream_id, "event of a former stream ignored");
            return;
        };
        match msg.kind {
            RecognizerEventKind::Result(transcript) => self.on_result(transcript),
            RecognizerEventKind::EndOfSingleUtterance => {
                current.end_of_single_utterance = true;
                let stream_id = current.id;
                self.buffer.detach.do_send(DetachStream { stream_id });
            }
            RecognizerEventKind::Ended(result) => {
                let Some(stream) = self.current.take() else {
                    return;
                };
                match result {
                    Ok(()) => self.on_clean_end(stream, ctx),
                    Err(failure) => self.on_failure(stream, failure, ctx),
                }
            }
            RecognizerEventKind::Busy(message) => {
                // No capacity now: retrying inside the session would only queue it silently
                // behind the streams that hold the decoders; the client may retry later.
                let stream = self.current.take().map(|s| s.id);
                warn!(session = %self.session_id, ?stream, %message, "no recognizer capacity");
                self.fail(ErrorCode::Busy, message, ctx);
            }
        }
    }
}

impl Handler<UpstreamHalfClosed> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: UpstreamHalfClosed, _: &mut Context<Self>) {
        if let Some(current) = self.current.as_mut().filter(|s| s.id == msg.stream_id) {
            current.half_closed = Some(msg.reason);
        }
    }
}

impl Handler<StopPipeline> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, _: StopPipeline, ctx: &mut Context<Self>) {
        debug!(session = %self.session_id, "pipeline stopped by the session");
        self.shut_down(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audio::{AudioFormat, Encoding};
    use crate::recognizer::probe::ProbeRecognizers;
    use crate::settings::SupervisionSettings;
    use crate::testing::{Probe, ProbeLog};

    const WAIT: Duration = Duration::from_secs(5);

    struct Rig {
        supervisor: Addr<StreamSupervisor>,
        recognizers: Rc<ProbeRecognizers>,
        session: ProbeLog,
        buffer: ProbeLog,
    }

    fn config(single_utterance: bool) -> Arc<StartConfig> {
        Arc::new(StartConfig {
            format: AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 16_000,
            },
            language_code: "en-US".into(),
            interim_results: true,
            enable_automatic_punctuation: false,
            model: String::new(),
            phrases: Vec::new(),
            single_utterance,
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
        let (session, session_log) = Probe::start_new();
        let (buffer, buffer_log) = Probe::start_new();
        let recognizers = Rc::new(ProbeRecognizers::default());
        let supervisor = StreamSupervisor::new(
            Arc::from("s1"),
            config(single_utterance),
            recognizers.clone(),
            RestartPolicy::from_settings(settings),
            Probe::session_links(&session),
            BufferControl {
                attach: buffer.clone().recipient(),
                detach: buffer.clone().recipient(),
                finalized: buffer.clone().recipient(),
                stop: buffer.recipient(),
            },
        )
        .start();
        Rig {
            supervisor,
            recognizers,
            session: session_log,
            buffer: buffer_log,
        }
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

    /// The first stream is started with id 1 and attached from the start of the audio.
    #[actix_rt::test]
    async fn starts_the_first_stream_from_zero() {
        let rig = rig();
        let started = rig.recognizers.wait_started(1, WAIT).await;
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].stream_id, 1);
        assert_eq!(&*started[0].session_id, "s1");
        assert_eq!(started[0].config, config(false));
        rig.buffer.wait_count::<AttachStream>(1, WAIT).await;
        assert_eq!(resumes(&rig.buffer), vec![(1, Resume::FromMs(0))]);
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
            vec![(1, Resume::FromMs(0)), (2, Resume::FromMs(1_000))]
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
                restarts: 1
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
                message: message.into()
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
        rig.supervisor
            .do_send(event(1, RecognizerEventKind::Ended(Ok(()))));
        rig.recognizers.wait_started(2, WAIT).await;
        rig.buffer.wait_count::<AttachStream>(2, WAIT).await;
        assert_eq!(
            resumes(&rig.buffer),
            vec![(1, Resume::FromMs(0)), (2, Resume::AfterSent)]
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
                restarts: 0
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
}
