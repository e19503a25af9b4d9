//! The stream supervisor: one per session. It starts each upstream stream (a recognizer actor),
//! attaches it to the audio buffer, routes its results to the session on the session clock,
//! delivers each final exactly once, and decides — by the [`RestartPolicy`] and the process-wide
//! [`CircuitBreaker`] — what happens when a stream ends: open the next one when audio comes after
//! a `finalize` or an audio gap, finish after a `stop`, restart with a replay of the audio not yet
//! final after a transient failure, wait while the upstream is down for everyone, or give up with
//! a coded error. It also rotates healthy streams before Google's duration limit (see `rotation`)
//! and forces a final when speech goes on without a pause for long (see `forced_final`).
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
//! ## Restarts and the circuit breaker
//!
//! A failure with a retryable code restarts after the policy's backoff, counted against the restart
//! intensity unless the upstream made progress since the previous restart (a final delivered, or
//! a result for audio no earlier result reached): only restarts that get nowhere are a crash
//! loop. A stream the upstream ended at its duration limit is replaced at once, like a rotation. An `UNAUTHENTICATED` is retried once at once with fresh credentials. While the shared
//! [`CircuitBreaker`] is open (the upstream failed for everyone) the supervisor does not retry on
//! its own: it waits for the breaker, warns the client once (`upstream_outage`), keeps
//! buffering, and those waits are not counted; when a stream opens again the client gets
//! `upstream_recovered`.
//!
//! ## Layout
//!
//! - this file: the actor — it keeps the streams, timers and links, and carries decisions out.
//! - `rotation`: replacing a healthy stream by a standby opened ahead of time.
//! - `forced_final`: half-closing a stream that gave no final for long, and the word it cuts.
//! - `voice_activity`: which `speech_started` / `speech_ended` reach the client across replays.
//! - `decision`: what happens after each event, as a pure function of the stream's state
//!   (`decision::StreamState`), the event, the policy and the time, with its table of tests.
//! - `tests.rs`: the actor's tests, with probes in place of the session, buffer and recognizers.

mod decision;
mod forced_final;
mod rotation;
mod voice_activity;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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
use decision::{Decision, Ending, StreamEvent, StreamState};
use forced_final::CutWord;
use rotation::Rotation;
use voice_activity::VoiceActivityFilter;

/// Warning: a stream failed and is being restarted (the client loses nothing).
pub const WARNING_UPSTREAM_RECONNECTING: &str = "upstream_reconnecting";
/// Warning: the upstream is down for every session; audio is buffered until it is back.
pub const WARNING_UPSTREAM_OUTAGE: &str = "upstream_outage";
/// Warning: after `upstream_outage`, a stream is open again.
pub const WARNING_UPSTREAM_RECOVERED: &str = "upstream_recovered";

/// What an upstream that closed a stream nobody asked it to close is reported to have said.
const UNREQUESTED_END: &str = "upstream ended the stream before it was half-closed";

/// One upstream stream this supervisor started.
struct ActiveStream {
    id: u64,
    handle: StreamHandle,
    /// When it was started: its age decides the rotation (Google counts from the call's start).
    started_at: Instant,
    /// How it is expected to end (set by the buffer's half-close or Google's end of utterance):
    /// what its clean end leads to.
    ending: Ending,
    /// Whether it was half-closed to force its final, whose last word the half-close may cut.
    cut_word: CutWord,
}

/// Where the session's stream is: the actor's side of [`StreamState`], with the stream and the
/// timer it holds.
enum Phase {
    /// No stream is open and none is scheduled: the next audio opens one.
    AwaitingAudio,
    /// A start is scheduled: the timer of a backoff or of a wait for the circuit breaker.
    StartScheduled(SpawnHandle),
    /// This stream is attached to the buffer.
    Streaming(ActiveStream),
    /// Finished, failed or stopped: nothing is started or forwarded any more.
    Done,
}

impl Phase {
    fn state(&self) -> StreamState {
        match self {
            Phase::AwaitingAudio => StreamState::AwaitingAudio,
            Phase::StartScheduled(_) => StreamState::StartScheduled,
            Phase::Streaming(stream) => StreamState::Streaming(stream.ending),
            Phase::Done => StreamState::Done,
        }
    }
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
    /// Where the stream is: awaiting audio, a start scheduled, attached, or all over.
    phase: Phase,
    rotation: Rotation,
    /// The rotation timer of the current stream (rotate_after, then standby refresh or max age).
    rotation_timer: Option<SpawnHandle>,
    /// The current stream's forced-final timer: re-armed at its attach and at each of its finals.
    force_final_timer: Option<SpawnHandle>,
    /// The upstream made progress since the previous restart (see `decision::State::progress`).
    progress: bool,
    /// The furthest end of any result (interim or final) of any stream: a result beyond it is
    /// progress.
    furthest_result_end_ms: u64,
    /// End of the last final delivered (session clock): earlier finals are duplicates from a
    /// replay, and a restart replays from here.
    last_final_end_ms: Option<u64>,
    /// The client was told the upstream is unavailable, and is told when a stream opens again.
    told_unavailable: bool,
    /// The one immediate retry with fresh credentials after `UNAUTHENTICATED` was used (until a
    /// stream opens again).
    credentials_refreshed: bool,
    /// Keeps the client's voice-activity events alternating and in time order across replays.
    voice_activity: VoiceActivityFilter,
    summary: PipelineSummary,
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
            phase: Phase::AwaitingAudio,
            rotation: Rotation::NotDue,
            rotation_timer: None,
            force_final_timer: None,
            progress: false,
            furthest_result_end_ms: 0,
            last_final_end_ms: None,
            told_unavailable: false,
            credentials_refreshed: false,
            voice_activity: VoiceActivityFilter::default(),
            summary: PipelineSummary::default(),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The stream attached to the buffer, if any.
    fn current(&self) -> Option<&ActiveStream> {
        match &self.phase {
            Phase::Streaming(stream) => Some(stream),
            _ => None,
        }
    }

    fn current_mut(&mut self) -> Option<&mut ActiveStream> {
        match &mut self.phase {
            Phase::Streaming(stream) => Some(stream),
            _ => None,
        }
    }

    /// What happens after `event`: the decision reads the stream's state, the breaker, the
    /// credentials retry and the restart history; the caller carries it out.
    fn decide(&self, event: StreamEvent, now: Instant) -> Decision {
        let state = decision::State {
            stream: self.phase.state(),
            breaker_open: self.breaker.is_open(),
            credentials_refreshed: self.credentials_refreshed,
            restarts: &self.tracker,
            progress: self.progress,
        };
        decision::decide(&state, event, &self.policy, now, rand::random::<f64>())
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
            ending: Ending::Unrequested,
            cut_word: CutWord::NotForced,
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
        self.phase = Phase::Streaming(stream);
        self.arm_rotation(age, ctx);
        self.arm_force_final(ctx);
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
                self.schedule_start(wait, resume, ctx);
            }
        }
    }

    /// After `wait`, starts a stream from `resume` when the circuit breaker permits.
    fn schedule_start(&mut self, wait: Duration, resume: Resume, ctx: &mut Context<Self>) {
        let timer = ctx.run_later(wait, move |act, ctx| {
            if matches!(act.phase, Phase::StartScheduled(_)) {
                act.start_when_permitted(resume, ctx);
            }
        });
        self.phase = Phase::StartScheduled(timer);
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
        if transcript.end_ms > self.furthest_result_end_ms {
            self.furthest_result_end_ms = transcript.end_ms;
            self.progress = true;
        }
        let Some(current) = self.current_mut() else {
            return;
        };
        if current.cut_word == CutWord::LeftToNextStream {
            return; // recognised again by the next stream, from before the cut word
        }
        if !transcript.is_final {
            self.session.transcripts.do_send(transcript);
            return;
        }
        let transcript = if current.cut_word == CutWord::Pending {
            current.cut_word = CutWord::LeftToNextStream;
            match forced_final::without_cut_word(transcript) {
                Some(kept) => kept,
                None => return,
            }
        } else {
            transcript
        };
        if self
            .last_final_end_ms
            .is_some_and(|last| transcript.end_ms <= last)
        {
            debug!(session = %self.session_id, end_ms = transcript.end_ms, "duplicate final dropped");
            return;
        }
        self.last_final_end_ms = Some(transcript.end_ms);
        self.progress = true;
        self.arm_force_final(ctx);
        self.summary.results += 1;
        self.buffer.finalized.do_send(Finalized {
            upto_ms: transcript.end_ms,
        });
        self.session.transcripts.do_send(transcript);
        if self.rotation.standby().is_some() {
            self.rotate("after a final", ctx);
        }
    }

    /// The current stream `stream_id` ended — cleanly, failed with `event`'s code, or refused for
    /// lack of capacity — saying `message`. Decides what follows and carries it out.
    fn on_stream_end(
        &mut self,
        stream_id: u64,
        event: StreamEvent,
        message: String,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let decision = self.decide(event, now);
        // The stream is gone: the decision sets what comes next (`Done` unless it starts one).
        let ended = std::mem::replace(&mut self.phase, Phase::Done);
        let code = match event {
            StreamEvent::Failed(code) => code,
            StreamEvent::Expired => tonic::Code::OutOfRange,
            _ => tonic::Code::Ok,
        };
        let code_name = grpc_code_name(code);
        if let Some(reason) = decision.restart_reason() {
            // Every restart is counted and logged the same way, whatever its reason.
            self.buffer.detach.do_send(DetachStream { stream_id });
            METRICS
                .stream_restarts
                .with_label_values(&[code_name])
                .inc();
            self.summary.restarts += 1;
            let backoff = match decision {
                Decision::Backoff(restart) | Decision::BackoffAfterProgress(restart) => {
                    Some(restart)
                }
                _ => None,
            };
            warn!(
                session = %self.session_id,
                stream = stream_id,
                reason,
                code = code_name,
                %message,
                attempt = backoff.map(|r| r.attempt),
                backoff_ms = backoff.map(|r| r.backoff.as_millis() as u64),
                counted = !matches!(decision, Decision::BackoffAfterProgress(_)),
                "upstream stream failed: restarting"
            );
            // The next restart counts unless the upstream makes progress before it.
            self.progress = false;
        }
        let resume = self.resume_after_last_final();
        match decision {
            Decision::Finish => self.finish(ctx),
            Decision::AwaitAudio => {
                // A stream that ended as asked proved the upstream works.
                self.tracker.succeeded();
                self.phase = Phase::AwaitingAudio;
            }
            Decision::OpenNext => {
                self.tracker.succeeded();
                self.start_when_permitted(Resume::AfterSent, ctx);
            }
            Decision::RetryWithFreshCredentials => {
                self.credentials_refreshed = true;
                self.recognizers.refresh_credentials();
                self.start_stream(resume, ctx);
            }
            Decision::ContinueFromLastFinal => {
                // The stream lived its life (duration limit) or gave its forced final.
                self.tracker.succeeded();
                if event == StreamEvent::Expired {
                    METRICS.stream_rotations.inc();
                    METRICS.stream_expiries.inc();
                    info!(session = %self.session_id, stream = stream_id, %message, replay_from_ms = self.last_final_end_ms.unwrap_or(0), "upstream ended the stream at its duration limit: rotating");
                }
                self.start_when_permitted(resume, ctx);
            }
            Decision::AwaitBreaker => self.start_when_permitted(resume, ctx),
            Decision::Backoff(restart) | Decision::BackoffAfterProgress(restart) => {
                if matches!(decision, Decision::Backoff(_)) {
                    self.tracker.record_restart(&self.policy, now);
                } else {
                    self.tracker.record_uncounted_restart();
                }
                let backoff_ms = restart.backoff.as_millis() as u64;
                self.session.warnings.do_send(PipelineWarning {
                    code: WARNING_UPSTREAM_RECONNECTING,
                    message: format!(
                        "upstream stream failed ({code_name}); reconnecting in {backoff_ms} ms"
                    ),
                });
                self.schedule_start(restart.backoff, resume, ctx);
            }
            Decision::GiveUp { restarts_in_period } => {
                warn!(session = %self.session_id, stream = stream_id, code = code_name, %message, "upstream keeps failing: giving up");
                let message = format!(
                    "the upstream recognizer kept failing ({restarts_in_period} restarts allowed \
                     within the restart period); last failure: {code_name}: {message}"
                );
                self.fail(ErrorCode::UpstreamUnavailable, message, ctx);
            }
            Decision::Reject => {
                warn!(session = %self.session_id, stream = stream_id, code = code_name, %message, "upstream rejected the stream");
                let message = if message.is_empty() {
                    format!("upstream failed with {code_name}")
                } else {
                    format!("{code_name}: {message}")
                };
                self.fail(ErrorCode::UpstreamRejected, message, ctx);
            }
            Decision::FailBusy => {
                // No capacity now: retrying inside the session would only queue it silently
                // behind the streams that hold the decoders; the client may retry later.
                warn!(session = %self.session_id, stream = stream_id, %message, "no recognizer capacity");
                self.fail(ErrorCode::Busy, message, ctx);
            }
            // Never decided for the end of an attached stream (see the decision table): the
            // stream stays as it was.
            Decision::Ignore | Decision::OpenNextAfterThisOne => self.phase = ended,
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        info!(session = %self.session_id, results = self.summary.results, restarts = self.summary.restarts, billed_ms = self.summary.billed_ms, "pipeline finished");
        self.session.finished.do_send(PipelineFinished {
            summary: self.summary,
        });
        self.shut_down(ctx);
    }

    fn fail(&mut self, code: ErrorCode, message: String, ctx: &mut Context<Self>) {
        self.session.errors.do_send(PipelineError { code, message });
        self.shut_down(ctx);
    }

    /// Stops for good; [`Actor::stopped`] cancels the rotation and stops the buffer.
    fn shut_down(&mut self, ctx: &mut Context<Self>) {
        self.end_phase(ctx);
        ctx.stop();
    }

    /// Nothing more is started: a scheduled start is cancelled, the attached stream too.
    fn end_phase(&mut self, ctx: &mut Context<Self>) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::StartScheduled(timer) => {
                ctx.cancel_future(timer);
            }
            Phase::Streaming(stream) => stream.handle.cancel.do_send(CancelStream),
            Phase::AwaitingAudio | Phase::Done => {}
        }
    }
}

impl Actor for StreamSupervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.end_phase(ctx);
        self.cancel_rotation(ctx);
        self.cancel_force_final(ctx);
        self.buffer.stop.do_send(StopPipeline);
    }
}

impl Handler<RecognizerEvent> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RecognizerEvent, ctx: &mut Context<Self>) {
        if self.is_done() {
            return;
        }
        if let RecognizerEventKind::Billed(added_ms) = msg.kind {
            // Billed audio counts whichever stream it came from (a former one's late response
            // too): each reports the increase of its own cumulative total, so the sum is the
            // sum of every stream's total.
            self.summary.billed_ms += added_ms;
            return;
        }
        if self
            .rotation
            .standby()
            .is_some_and(|s| s.id == msg.stream_id)
        {
            match msg.kind {
                RecognizerEventKind::Opened => self.breaker.record_success(),
                RecognizerEventKind::Ended(result) => {
                    debug!(session = %self.session_id, stream = msg.stream_id, ?result, "standby stream ended before its switch");
                    if let Err(failure) = result {
                        self.breaker.record_failure(failure.code, Instant::now());
                    }
                    self.rotation.take_standby();
                }
                RecognizerEventKind::Busy(message) => {
                    // No capacity for a second stream now: the current one carries on.
                    debug!(session = %self.session_id, stream = msg.stream_id, %message, "standby stream refused: busy");
                    self.rotation.take_standby();
                }
                // A standby has no audio: nothing else is expected from it.
                RecognizerEventKind::Result(_)
                | RecognizerEventKind::EndOfSingleUtterance
                | RecognizerEventKind::VoiceActivity(_)
                | RecognizerEventKind::Billed(_) => {}
            }
            return;
        }
        let Some(current) = self.current_mut().filter(|s| s.id == msg.stream_id) else {
            debug!(session = %self.session_id, stream = msg.stream_id, "event of a former stream ignored");
            return;
        };
        match msg.kind {
            RecognizerEventKind::Opened => self.on_opened(),
            RecognizerEventKind::Result(transcript) => self.on_result(transcript, ctx),
            RecognizerEventKind::VoiceActivity(event) => {
                if self.voice_activity.admit(event) {
                    self.session.voice_activity.do_send(event);
                }
            }
            // Counted above, for every stream.
            RecognizerEventKind::Billed(_) => {}
            RecognizerEventKind::EndOfSingleUtterance => {
                current.ending = Ending::EndOfSingleUtterance;
                let stream_id = current.id;
                self.buffer.detach.do_send(DetachStream { stream_id });
            }
            RecognizerEventKind::Ended(result) => {
                self.cancel_rotation(ctx);
                self.cancel_force_final(ctx);
                let (event, message) = match result {
                    Ok(()) => (StreamEvent::EndedCleanly, UNREQUESTED_END.to_string()),
                    Err(failure) => {
                        let event = StreamEvent::of_failure(&failure);
                        if event != StreamEvent::Expired {
                            self.breaker.record_failure(failure.code, Instant::now());
                        }
                        (event, failure.message)
                    }
                };
                self.on_stream_end(msg.stream_id, event, message, ctx);
            }
            RecognizerEventKind::Busy(message) => {
                self.on_stream_end(msg.stream_id, StreamEvent::Busy, message, ctx);
            }
        }
    }
}

impl Handler<UpstreamHalfClosed> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: UpstreamHalfClosed, ctx: &mut Context<Self>) {
        if let Some(current) = self.current_mut().filter(|s| s.id == msg.stream_id) {
            current.ending = match current.ending {
                // The utterance's end finishes the session whatever half-close follows.
                Ending::EndOfSingleUtterance => Ending::EndOfSingleUtterance,
                // A `stop` upgrading a `finalize` keeps the note that audio waits.
                Ending::HalfClosed { audio_waiting, .. } => Ending::HalfClosed {
                    reason: msg.reason,
                    audio_waiting,
                },
                Ending::Unrequested => Ending::HalfClosed {
                    reason: msg.reason,
                    audio_waiting: false,
                },
            };
            if msg.reason == HalfCloseReason::ForcedFinal {
                current.cut_word = CutWord::Pending;
            }
            // A stream that is ending is not rotated nor forced: the next one starts after it.
            self.cancel_rotation(ctx);
            self.cancel_force_final(ctx);
        }
    }
}

impl Handler<AudioPending> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, _: AudioPending, ctx: &mut Context<Self>) {
        match self.decide(StreamEvent::AudioWaiting, Instant::now()) {
            Decision::OpenNext => self.start_when_permitted(Resume::AfterSent, ctx),
            Decision::OpenNextAfterThisOne => {
                if let Some(Ending::HalfClosed { audio_waiting, .. }) =
                    self.current_mut().map(|c| &mut c.ending)
                {
                    *audio_waiting = true;
                }
            }
            // Audio decides nothing else: a stream takes it, a start is coming, or all is over.
            _ => {}
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
