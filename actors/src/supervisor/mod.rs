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
mod tests;
