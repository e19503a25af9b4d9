//! The stream supervisor: one per session. It starts each upstream stream (a recognizer actor),
//! attaches it to the audio buffer, routes its results to the session on the session clock,
//! delivers each final exactly once, and decides — by the [`RestartPolicy`] and the process-wide
//! [`CircuitBreaker`] — what happens when a stream ends: open the next one when audio comes after
//! a `finalize` or an audio gap, finish after a `stop`, restart with a replay of the audio not yet
//! final after a transient failure, wait while the upstream is down for everyone, or give up with
//! a coded error. It also rotates healthy streams before Google's duration limit.
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
//! - A rotation needs two streams alive at once (the next one opened ahead of time), which an
//!   in-place restart cannot express.
//! - The decision to restart depends on the failure's gRPC code, the backoff, the restart intensity,
//!   the shared circuit breaker and whether the client already stopped — policy that belongs in one
//!   place, not in a `restarting()` hook of the child.
//!
//! So a recognizer never restarts itself: it reports exactly one `Ended` and stops, and this
//! supervisor (which never restarts itself either) starts the next one through a
//! [`RecognizerFactory`], as an OTP supervisor would start a new child.
//!
//! ## Rotation
//!
//! At `rotate_after_secs` the supervisor opens the next stream ahead of time (the *standby*: the
//! call and its configuration, no audio). At the current stream's next final result — the point
//! where everything before the final's end is delivered — it cancels the current stream and
//! attaches the standby with a replay from that end; the old stream's unfinalised tail (at most
//! the pacing burst) is recognised again by the new one, and finals are deduplicated by end time.
//! A standby that waited `standby_max_wait_secs` is replaced by a fresh one (Google ends a call
//! that gets no audio for ~10 s); at `max_stream_secs` the switch happens whatever. A rotation is
//! not a failure: no backoff, no warning, not counted against the intensity.
//!
//! ## Restarts and the circuit breaker
//!
//! A failure with a retryable code restarts after the policy's backoff, counted against the restart
//! intensity. An `UNAUTHENTICATED` is retried once at once with fresh credentials. While the shared
//! [`CircuitBreaker`] is open (the upstream failed for everyone) the supervisor does not retry on
//! its own: it waits for the breaker, warns the client once (`upstream_outage`), keeps
//! buffering, and those waits are not counted; when a stream opens again the client gets
//! `upstream_recovered`.

use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::circuit_breaker::{CircuitBreaker, Permit};
use crate::messages::*;
use crate::metrics::METRICS;
use crate::protocol::{ErrorCode, StartConfig};
use crate::recognizer::RecognizerFactory;
use crate::restart_policy::{RestartPolicy, RestartTracker};
use crate::settings::grpc_code_name;

/// Warning: a stream failed and is being restarted (the client loses nothing).
pub const WARNING_UPSTREAM_RECONNECTING: &str = "upstream_reconnecting";
/// Warning: the upstream is down for every session; audio is buffered until it is back.
pub const WARNING_UPSTREAM_OUTAGE: &str = "upstream_outage";
/// Warning: after `upstream_outage`, a stream is open again.
pub const WARNING_UPSTREAM_RECOVERED: &str = "upstream_recovered";

/// One upstream stream this supervisor started.
struct ActiveStream {
    id: u64,
    handle: StreamHandle,
    /// When it was started: its age decides the rotation (Google counts from the call's start).
    started_at: Instant,
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
    /// Shared by every supervisor of the process: holds starts back while the upstream is down.
    breaker: Arc<CircuitBreaker>,
    session: SessionLinks,
    buffer: BufferControl,
    /// The id the next stream gets (1, 2, …): events of older streams are recognised as stale.
    next_stream_id: u64,
    /// The stream attached to the buffer; `None` before audio, between streams and at the end.
    current: Option<ActiveStream>,
    /// The next stream, opened ahead of a rotation; not attached yet.
    standby: Option<ActiveStream>,
    /// `current` is past `rotate_after`: its next final switches to the standby.
    rotation_due: bool,
    /// The rotation timer of `current` (rotate_after, then standby refresh or max age).
    rotation_timer: Option<SpawnHandle>,
    /// The timer of a pending start: a backoff, or a wait for the circuit breaker.
    restart_timer: Option<SpawnHandle>,
    /// End of the last final delivered (session clock): earlier finals are duplicates from a
    /// replay, and a restart replays from here.
    last_final_end_ms: Option<u64>,
    /// No stream is open because no audio waits for one (the start, after a `finalize` or a gap).
    awaiting_audio: bool,
    /// Audio came while `current` was being half-closed: the next stream starts at its end.
    audio_pending: bool,
    /// The client was told the upstream is unavailable, and is told when a stream opens again.
    told_unavailable: bool,
    /// The one immediate retry with fresh credentials after `UNAUTHENTICATED` was used (until a
    /// stream opens again).
    credentials_refreshed: bool,
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
        breaker: Arc<CircuitBreaker>,
        session: SessionLinks,
        buffer: BufferControl,
    ) -> StreamSupervisor {
        StreamSupervisor {
            session_id,
            config,
            recognizers,
            policy,
            tracker: RestartTracker::default(),
            breaker,
            session,
            buffer,
            next_stream_id: 1,
            current: None,
            standby: None,
            rotation_due: false,
            rotation_timer: None,
            restart_timer: None,
            last_final_end_ms: None,
            awaiting_audio: true,
            audio_pending: false,
            told_unavailable: false,
            credentials_refreshed: false,
            summary: PipelineSummary::default(),
            done: false,
        }
    }

    /// Starts a recognizer (the call opens; nothing is attached yet).
    fn open_stream(&mut self, ctx: &mut Context<Self>) -> ActiveStream {
        let stream_id = self.next_stream_id;
        self.next_stream_id += 1;
        let handle = self.recognizers.start(StreamRequest {
            stream_id,
            session_id: self.session_id.clone(),
            config: self.config.clone(),
            events: ctx.address().recipient(),
        });
        ActiveStream {
            id: stream_id,
            handle,
            started_at: Instant::now(),
            half_closed: None,
            end_of_single_utterance: false,
        }
    }

    /// Makes `stream` the current one: the buffer feeds it from `resume`; its rotation is armed.
    fn attach(&mut self, stream: ActiveStream, resume: Resume, ctx: &mut Context<Self>) {
        debug!(session = %self.session_id, stream = stream.id, ?resume, "attaching upstream stream");
        self.buffer.attach.do_send(AttachStream {
            stream_id: stream.id,
            sink: stream.handle.audio.clone(),
            resume,
        });
        let age = stream.started_at.elapsed();
        self.current = Some(stream);
        self.audio_pending = false;
        self.cancel_rotation(ctx);
        if !self.config.single_utterance {
            let wait = self.policy.rotation().rotate_after.saturating_sub(age);
            self.rotation_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.rotation_timer = None;
                act.on_rotation_due(ctx);
            }));
        }
    }

    fn start_stream(&mut self, resume: Resume, ctx: &mut Context<Self>) {
        let stream = self.open_stream(ctx);
        self.attach(stream, resume, ctx);
    }

    /// Where a replacement stream starts after a failure: the end of the last final.
    fn resume_after_last_final(&self) -> Resume {
        Resume::FromMs(self.last_final_end_ms.unwrap_or(0))
    }

    /// Starts a stream now if the circuit breaker allows it, else waits for the breaker (telling
    /// the client once) and asks again.
    fn start_when_permitted(&mut self, resume: Resume, ctx: &mut Context<Self>) {
        match self.breaker.permit(Instant::now()) {
            Permit::Go => self.start_stream(resume, ctx),
            Permit::Wait(wait) => {
                if !self.told_unavailable {
                    self.told_unavailable = true;
                    self.session.warnings.do_send(PipelineWarning {
                        code: WARNING_UPSTREAM_OUTAGE,
                        message: "the recognizer is unavailable; audio is kept and will be \
                                  transcribed when it is back"
                            .to_string(),
                    });
                }
                // Spread the sessions' next looks so they do not arrive in lockstep.
                let wait = wait.mul_f64(1.0 + self.policy.jitter() * rand::random::<f64>());
                debug!(session = %self.session_id, wait_ms = wait.as_millis() as u64, "upstream down: waiting for the circuit breaker");
                self.restart_timer = Some(ctx.run_later(wait, move |act, ctx| {
                    act.restart_timer = None;
                    if !act.done {
                        act.start_when_permitted(resume, ctx);
                    }
                }));
            }
        }
    }

    fn cancel_rotation(&mut self, ctx: &mut Context<Self>) {
        self.rotation_due = false;
        if let Some(timer) = self.rotation_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(standby) = self.standby.take() {
            standby.handle.cancel.do_send(CancelStream);
        }
    }

    /// `current` reached `rotate_after`: open the standby; switch at the next final.
    fn on_rotation_due(&mut self, ctx: &mut Context<Self>) {
        if self.done
            || self
                .current
                .as_ref()
                .is_none_or(|c| c.half_closed.is_some())
        {
            return;
        }
        self.rotation_due = true;
        self.refresh_standby(ctx);
    }

    /// Opens a (new) standby — unless the upstream is down — and arms the next check: the
    /// standby's refresh or the current stream's maximum age, whichever comes first.
    fn refresh_standby(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.standby.take() {
            old.handle.cancel.do_send(CancelStream);
        }
        if !self.breaker.is_open() {
            let standby = self.open_stream(ctx);
            debug!(session = %self.session_id, stream = standby.id, "standby stream opened for a rotation");
            self.standby = Some(standby);
        }
        let Some(age) = self.current.as_ref().map(|c| c.started_at.elapsed()) else {
            return;
        };
        let rotation = self.policy.rotation();
        let wait = rotation
            .standby_max_wait
            .min(rotation.max_age.saturating_sub(age));
        self.rotation_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.rotation_timer = None;
            if act.done || !act.rotation_due {
                return;
            }
            let age = act.current.as_ref().map(|c| c.started_at.elapsed());
            if age.is_some_and(|age| age >= act.policy.rotation().max_age) {
                act.rotate("maximum age", ctx);
            } else {
                act.refresh_standby(ctx);
            }
        }));
    }

    /// Replaces `current` by the standby (or a new stream), replaying from the last final.
    fn rotate(&mut self, why: &'static str, ctx: &mut Context<Self>) {
        let Some(old) = self.current.take() else {
            return;
        };
        old.handle.cancel.do_send(CancelStream);
        let next = match self.standby.take() {
            Some(standby) => standby,
            None => self.open_stream(ctx),
        };
        METRICS.stream_rotations.inc();
        info!(
            session = %self.session_id,
            from = old.id,
            to = next.id,
            age_ms = old.started_at.elapsed().as_millis() as u64,
            replay_from_ms = self.last_final_end_ms.unwrap_or(0),
            why,
            "upstream stream rotated"
        );
        let resume = self.resume_after_last_final();
        self.attach(next, resume, ctx);
    }

    fn on_opened(&mut self) {
        self.breaker.record_success();
        self.credentials_refreshed = false;
        if self.told_unavailable {
            self.told_unavailable = false;
            self.session.warnings.do_send(PipelineWarning {
                code: WARNING_UPSTREAM_RECOVERED,
                message: "the recognizer is available again".to_string(),
            });
        }
    }

    fn on_result(&mut self, transcript: Transcript, ctx: &mut Context<Self>) {
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
        if self.rotation_due && self.standby.is_some() {
            self.rotate("after a final", ctx);
        }
    }

    fn on_clean_end(&mut self, stream: ActiveStream, ctx: &mut Context<Self>) {
        if stream.end_of_single_utterance {
            self.finish(ctx);
            return;
        }
        match stream.half_closed {
            Some(HalfCloseReason::Finalize | HalfCloseReason::Gap) => {
                self.tracker.succeeded();
                if self.audio_pending {
                    self.audio_pending = false;
                    self.start_when_permitted(Resume::AfterSent, ctx);
                } else {
                    self.awaiting_audio = true;
                }
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
        self.breaker.record_failure(failure.code, Instant::now());
        let code = grpc_code_name(failure.code);
        if failure.code == tonic::Code::Unauthenticated && !self.credentials_refreshed {
            // An expired or revoked token: one immediate retry with fresh credentials, not a
            // failure of the upstream (no backoff, not counted against the intensity).
            self.credentials_refreshed = true;
            self.recognizers.refresh_credentials();
            self.buffer.detach.do_send(DetachStream {
                stream_id: stream.id,
            });
            METRICS.stream_restarts.with_label_values(&[code]).inc();
            self.summary.restarts += 1;
            warn!(session = %self.session_id, stream = stream.id, reason = "credentials", code, attempt = 1, message = %failure.message, "upstream rejected the credentials: retrying with fresh ones");
            let resume = self.resume_after_last_final();
            self.start_stream(resume, ctx);
            return;
        }
        if self.policy.is_retryable(failure.code) {
            self.restart(stream.id, failure, ctx);
        } else {
            warn!(
                session = %self.session_id,
                stream = stream.id,
                code,
                message = %failure.message,
                "upstream rejected the stream"
            );
            let message = if failure.message.is_empty() {
                format!("upstream failed with {code}")
            } else {
                format!("{code}: {}", failure.message)
            };
            self.fail(ErrorCode::UpstreamRejected, message, ctx);
        }
    }

    /// Restarts after a failure of stream `failed_id`: waits for the circuit breaker while the
    /// upstream is down for everyone (not counted), else backs off if the intensity allows.
    fn restart(&mut self, failed_id: u64, failure: StreamFailure, ctx: &mut Context<Self>) {
        let code = grpc_code_name(failure.code);
        self.buffer.detach.do_send(DetachStream {
            stream_id: failed_id,
        });
        let resume = self.resume_after_last_final();
        if self.breaker.is_open() {
            METRICS.stream_restarts.with_label_values(&[code]).inc();
            self.summary.restarts += 1;
            warn!(
                session = %self.session_id,
                stream = failed_id,
                reason = "outage",
                code,
                message = %failure.message,
                "upstream stream failed while the upstream is down: waiting for the circuit breaker"
            );
            self.start_when_permitted(resume, ctx);
            return;
        }
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
        METRICS.stream_restarts.with_label_values(&[code]).inc();
        self.summary.restarts += 1;
        let backoff_ms = restart.backoff.as_millis() as u64;
        warn!(
            session = %self.session_id,
            stream = failed_id,
            reason = "failure",
            code,
            message = %failure.message,
            attempt = restart.attempt,
            backoff_ms,
            "upstream stream failed: restarting"
        );
        self.session.warnings.do_send(PipelineWarning {
            code: WARNING_UPSTREAM_RECONNECTING,
            message: format!("upstream stream failed ({code}); reconnecting in {backoff_ms} ms"),
        });
        self.restart_timer = Some(ctx.run_later(restart.backoff, move |act, ctx| {
            act.restart_timer = None;
            if !act.done {
                act.start_when_permitted(resume, ctx);
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

    /// Stops for good; [`Actor::stopped`] cancels the streams and stops the buffer.
    fn shut_down(&mut self, ctx: &mut Context<Self>) {
        self.done = true;
        ctx.stop();
    }
}

impl Actor for StreamSupervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.done = true;
        if let Some(timer) = self.restart_timer.take() {
            ctx.cancel_future(timer);
        }
        self.cancel_rotation(ctx);
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
        if self.standby.as_ref().is_some_and(|s| s.id == msg.stream_id) {
            match msg.kind {
                RecognizerEventKind::Opened => self.breaker.record_success(),
                RecognizerEventKind::Ended(result) => {
                    debug!(session = %self.session_id, stream = msg.stream_id, ?result, "standby stream ended before its switch");
                    if let Err(failure) = result {
                        self.breaker.record_failure(failure.code, Instant::now());
                    }
                    self.standby = None;
                }
                RecognizerEventKind::Busy(message) => {
                    // No capacity for a second stream now: the current one carries on.
                    debug!(session = %self.session_id, stream = msg.stream_id, %message, "standby stream refused: busy");
                    self.standby = None;
                }
                // A standby has no audio: nothing else is expected from it.
                RecognizerEventKind::Result(_) | RecognizerEventKind::EndOfSingleUtterance => {}
            }
            return;
        }
        let Some(current) = self.current.as_mut().filter(|s| s.id == msg.stream_id) else {
            debug!(session = %self.session_id, stream = msg.stream_id, "event of a former stream ignored");
            return;
        };
        match msg.kind {
            RecognizerEventKind::Opened => self.on_opened(),
            RecognizerEventKind::Result(transcript) => self.on_result(transcript, ctx),
            RecognizerEventKind::EndOfSingleUtterance => {
                current.end_of_single_utterance = true;
                let stream_id = current.id;
                self.buffer.detach.do_send(DetachStream { stream_id });
            }
            RecognizerEventKind::Ended(result) => {
                let Some(stream) = self.current.take() else {
                    return;
                };
                self.cancel_rotation(ctx);
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

    fn handle(&mut self, msg: UpstreamHalfClosed, ctx: &mut Context<Self>) {
        if let Some(current) = self.current.as_mut().filter(|s| s.id == msg.stream_id) {
            current.half_closed = Some(msg.reason);
            // A stream that is ending is not rotated: the next one starts after it.
            self.cancel_rotation(ctx);
        }
    }
}

impl Handler<AudioPending> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, _: AudioPending, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.half_closed.is_some())
        {
            self.audio_pending = true;
        } else if self.awaiting_audio && self.current.is_none() && self.restart_timer.is_none() {
            self.awaiting_audio = false;
            self.start_when_permitted(Resume::AfterSent, ctx);
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
                restarts: 0
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
}
