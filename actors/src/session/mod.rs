//! The session actor: one per WebSocket connection on `/v1/listen` (and on each dialect's path).
//! It owns the socket, the heartbeat, the start/idle/session timers and the limits; it starts its
//! pipeline through a [`PipelineFactory`] once configured. What the client's frames mean and what
//! the client is sent is its [`Dialect`]'s (native protocol v1, `docs/protocol.md`, or a vendor's,
//! `docs/dialects.md`): the session asks it for [`Inbound`] actions and hands it every pipeline
//! report. It knows nothing of audio buffering or Google, nor of any dialect's words.
//!
//! Every line of socket handling is in this folder: this file is the actor; beside it
//! [`upgrade`](mod@upgrade) (the handshake, admission and what the server hands a session),
//! [`fragments`] (fragmented messages put back together), [`resume`] (resume tokens' state and the
//! clock of a resumed session), [`tail`] (what finishes a session whose results outlive its
//! socket: a telephony call's last finals after the provider hung up), and the byte-level helpers
//! [`frame_limit`] (oversized frames, from their header), [`read_gate`] (read-ahead budget and
//! pacing), [`outgoing`] (the backlog of a client that does not read, and the transcript as a
//! client message) and [`input_rate`] (how fast a client may send). `actix-web-actors` is
//! deprecated upstream in favour of `actix-ws`, and keeping the socket here means that move
//! touches these files only. The server calls [`upgrade()`] and never sees the socket.
//!
//! Lifecycle, in phases:
//! - `AwaitingStart`: waits for `start` (or was configured from the query string at once).
//! - `Streaming`: audio, `finalize` and `stop` go to the pipeline in arrival order; results come back.
//! - `Ending`: `EndOfAudio` was sent (client `stop`, or the end of a shutdown grace period); waits
//!   for `PipelineFinished` to send `closed` (or the shutdown error).
//! - `Closing`: a Close frame was sent; waits briefly for the client's Close, then stops.
//!
//! When the actor stops, for whatever reason — or is dropped without stopping, when the
//! connection fails under it — it sends `StopPipeline` and releases its session permit.
//!
//! (Over 600 lines on purpose: this is one state machine — every handler asks which phase the
//! session is in — and reads best whole; everything that is not the actor is in the files beside.)

mod fragments;
mod frame_limit;
mod input_rate;
mod outgoing;
mod read_gate;
pub mod resume;
mod tail;
mod upgrade;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;
use tokio_stream::wrappers::WatchStream;

use crate::audio::AudioFormat;
use crate::audio::SignatureCheck;
use crate::messages::{
    AudioAcked, AudioIn, ChannelAudioIn, ChannelTranscript, EndOfAudio, Finalize, PipelineError,
    PipelineFinished, PipelineHandle, PipelineSummary, PipelineWarning, SessionLinks, StopPipeline,
    Transcript, VoiceActivity,
};
use crate::metrics::METRICS;
use crate::multichannel;
use crate::pipeline::PipelineFactory;
use crate::protocol::dialect::{Close, Dialect, Inbound, Move, Progress, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig};
use crate::quiet_watch::{note_stall, Look, QuietWatch};
use crate::settings::SessionSettings;
use fragments::{Reassembled, Reassembler};
use input_rate::InputRate;
use outgoing::{frame_len, OutgoingMeter};
use read_gate::ReadGate;
use resume::{resumable_encoding, ResumeClock, ResumeConfig, ResumeTokens};
use tail::{Departed, Handover, Relayed, Report, TailLink};
use upgrade::ActiveSession;
pub use upgrade::{
    check_upgrade, upgrade, Admission, SessionParams, SessionPermit, ShutdownNotice, UpgradeRefused,
};

/// How long the session waits for the client's Close frame after sending its own.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest an ack waits for another message to leave with (about a frame of audio).
pub const ACK_HOLD: Duration = Duration::from_millis(100);

/// Warning code: audio or `finalize` after `stop` was dropped (sent once per session).
pub const WARNING_AUDIO_AFTER_STOP: &str = "audio_after_stop";

/// Close reason of a connection from which nothing arrived for `client_timeout_secs`.
pub const CLIENT_TIMEOUT_REASON: &str = "client_timeout";

/// Where the session is in its life (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingStart,
    Streaming,
    Ending(EndCause),
    Closing,
}

/// Why the session sent `EndOfAudio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndCause {
    /// The client sent `stop`: it gets `closed` and 1000.
    ClientStop,
    /// The shutdown grace period ended: the client gets `shutting_down` and 1001.
    Shutdown,
}

/// The shutdown channel's value, as a stream item of its own type.
struct ShutdownSignal(Option<ShutdownNotice>);

pub struct Session {
    /// uuid v4; in every log line and in `ready`/`closed`.
    id: Arc<str>,
    settings: Arc<SessionSettings>,
    pipelines: Rc<dyn PipelineFactory>,
    /// Taken in `started`: admitted (permit kept in `permit`) or refused.
    admission: Option<Admission>,
    /// The session's share of `max_sessions` and its place in `sessions_active`, one thing
    /// ([`ActiveSession`] rides in it); released when the actor stops, or handed to the tail.
    permit: Option<SessionPermit>,
    /// Admitted, and its end not yet logged (a refused one is neither counted nor logged).
    admitted: bool,
    /// The client's wire protocol: reads its frames, writes its messages.
    dialect: Box<dyn Dialect>,
    /// No audio and no keep-alive for this long ends the session (the dialect's rule, else
    /// `[session] idle_timeout_secs`).
    idle_timeout_secs: f64,
    /// Taken in `started` to become a stream.
    shutdown_rx: Option<watch::Receiver<Option<ShutdownNotice>>>,
    /// Identifies the frame guard's markers for oversized frames (see [`frame_limit`]).
    marker_nonce: [u8; frame_limit::NONCE_LEN],
    /// Shared with the frame guard: read-ahead budget, pacing.
    gate: ReadGate,
    /// Shared with the response body: the backlog of server messages.
    outgoing: Rc<OutgoingMeter>,
    /// Frames per second, input against real time, audio lead.
    input_rate: InputRate,
    /// Who the client is (logs only).
    client: Arc<str>,
    /// `[session] max_session_secs`, capped by the credential's scope.
    max_session_secs: f64,
    /// Set once configured: the check of the audio's first bytes against its format.
    signature: Option<SignatureCheck>,
    phase: Phase,
    /// Set once configured; dropped (after `StopPipeline`) when the session closes.
    pipeline: Option<PipelineHandle>,
    /// A multichannel session's per-channel audio (`crate::multichannel`).
    channel_audio: Option<Recipient<ChannelAudioIn>>,
    /// Between the pipeline and this session when the dialect's results outlive the socket
    /// ([`tail`]); taken when the session hands over to it.
    tail: Option<TailLink>,
    /// Cancelled when the session is configured.
    start_timer: Option<SpawnHandle>,
    /// The quiet since the last frame of any kind: `client_timeout_secs` of it drops the
    /// connection. Looked at by the heartbeat, counted only while the gateway was awake.
    client_quiet: QuietWatch,
    /// A look at `client_quiet` between two heartbeats (the timeout ends before the next one).
    client_look: Option<SpawnHandle>,
    /// The quiet since the last audio, `keepalive` or `finalize`: the idle timeout.
    idle_quiet: QuietWatch,
    /// Continuation frames put back together, bounded like whole messages.
    fragments: Reassembler,
    /// Highest `audio_ms` acknowledged by the pipeline (for `closed` and the audio metric).
    acked_ms: u64,
    /// The dialect's ack messages waiting to leave with the next write ([`Session::hold_ack`]).
    held_acks: Vec<String>,
    /// Writes `held_acks` if nothing else does first.
    ack_timer: Option<SpawnHandle>,
    /// The `audio_after_stop` warning is sent once.
    warned_audio_after_stop: bool,
    /// Set when the shutdown notice arrives.
    shutdown: Option<ShutdownNotice>,
    /// Signs and opens resume tokens; `None` when resume is off or the dialect cannot resume.
    resume_tokens: Option<Rc<dyn ResumeTokens>>,
    /// The configuration tokens carry; set once configured, if the session can be resumed.
    resume_config: Option<ResumeConfig>,
    /// The session clock of a resumed connection, and the finals delivered.
    resume: ResumeClock,
}

fn duration_secs(secs: f64) -> Duration {
    // Settings are validated at start-up, but a negative or absurd value must not panic here.
    const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);
    Duration::try_from_secs_f64(secs.max(0.0)).map_or(LONGEST, |d| d.min(LONGEST))
}

impl Session {
    pub fn new(params: SessionParams) -> Session {
        let now = Instant::now();
        let settings = params.settings;
        // A frame of the largest size always fits, and two of them may be read ahead.
        let read_ahead = 2 * (settings.max_frame_bytes as u64 + frame_limit::MAX_HEADER_LEN as u64);
        let max_session_secs = params
            .max_session_secs
            .map_or(settings.max_session_secs, |cap| {
                cap.min(settings.max_session_secs)
            });
        let fragments = Reassembler::new(settings.max_frame_bytes, settings.max_json_bytes);
        let idle_timeout_secs = params
            .dialect
            .idle_timeout_secs()
            .unwrap_or(settings.idle_timeout_secs);
        let quiet_since = TokioInstant::now();
        let client_quiet = QuietWatch::new(
            duration_secs(settings.client_timeout_secs),
            params.stall_tolerance,
            quiet_since,
        );
        let idle_quiet = QuietWatch::new(
            duration_secs(idle_timeout_secs),
            params.stall_tolerance,
            quiet_since,
        );
        Session {
            id: uuid::Uuid::new_v4().to_string().into(),
            gate: ReadGate::new(read_ahead),
            outgoing: Rc::new(OutgoingMeter::default()),
            input_rate: InputRate::new(&settings, now),
            client: params.client,
            max_session_secs,
            signature: None,
            settings,
            pipelines: params.pipelines,
            admission: Some(params.admission),
            permit: None,
            admitted: false,
            dialect: params.dialect,
            idle_timeout_secs,
            shutdown_rx: Some(params.shutdown),
            marker_nonce: *uuid::Uuid::new_v4().as_bytes(),
            phase: Phase::AwaitingStart,
            pipeline: None,
            channel_audio: None,
            tail: None,
            start_timer: None,
            client_quiet,
            client_look: None,
            idle_quiet,
            fragments,
            acked_ms: 0,
            held_acks: Vec::new(),
            ack_timer: None,
            warned_audio_after_stop: false,
            shutdown: None,
            resume_tokens: params.resume,
            resume_config: None,
            resume: ResumeClock::new(),
        }
    }

    /// Sends the dialect's messages in order (after any held ack), unless the client has left
    /// more than `max_outgoing_bytes` unread: then the session ends with `slow_consumer` instead.
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, texts: Vec<String>) {
        let held = self.take_held_acks(ctx);
        for text in held.into_iter().chain(texts) {
            let waiting = self.outgoing.waiting();
            if waiting + frame_len(text.len()) > self.settings.max_outgoing_bytes as u64 {
                let message = format!(
                    "{waiting} bytes of messages are waiting for the client to read them; at \
                     most {} may wait",
                    self.settings.max_outgoing_bytes
                );
                self.fail(ctx, ErrorCode::SlowConsumer, &message);
                return;
            }
            self.put_text(ctx, text);
        }
    }

    /// Holds an ack's messages until the session next writes, at most [`ACK_HOLD`]: an ack is
    /// made as audio leaves for the recogniser, and the result of that audio usually follows
    /// within milliseconds — together they leave in one write instead of two.
    fn hold_ack(&mut self, ctx: &mut ws::WebsocketContext<Self>, texts: Vec<String>) {
        if texts.is_empty() {
            return;
        }
        self.held_acks.extend(texts);
        if self.ack_timer.is_none() {
            self.ack_timer = Some(ctx.run_later(ACK_HOLD, |act, ctx| {
                act.ack_timer = None;
                if !act.held_acks.is_empty() && act.phase != Phase::Closing {
                    act.send(ctx, Vec::new());
                }
            }));
        }
    }

    /// The held ack messages, to be written now; their timer is cancelled (a timer left to fire
    /// for nothing would wake the session for nothing).
    fn take_held_acks(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> Vec<String> {
        if let Some(timer) = self.ack_timer.take() {
            ctx.cancel_future(timer);
        }
        std::mem::take(&mut self.held_acks)
    }

    /// Writes a text frame (after any held ack), counted in the backlog but not checked against
    /// it.
    fn write_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: String) {
        self.write_held_acks(ctx);
        self.put_text(ctx, text);
    }

    fn write_held_acks(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        for held in self.take_held_acks(ctx) {
            self.put_text(ctx, held);
        }
    }

    /// Writes a text frame as it is, counted in the backlog.
    fn put_text(&self, ctx: &mut ws::WebsocketContext<Self>, text: String) {
        self.outgoing.queue(frame_len(text.len()));
        ctx.text(text);
    }

    /// Writes a Close frame (after any held ack), counted in the backlog.
    fn write_close(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reason: Option<ws::CloseReason>,
    ) {
        self.write_held_acks(ctx);
        let payload = reason
            .as_ref()
            .map_or(0, |r| 2 + r.description.as_ref().map_or(0, String::len));
        self.outgoing.queue(frame_len(payload));
        ctx.close(reason);
    }

    /// Sends `error`; closes when the code says so.
    fn fail(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: ErrorCode, message: &str) {
        if self.phase == Phase::Closing {
            return;
        }
        METRICS.errors.with_label_values(&[code.as_str()]).inc();
        match code {
            ErrorCode::Internal | ErrorCode::UpstreamRejected | ErrorCode::UpstreamUnavailable => {
                tracing::warn!(session_id = %self.id, code = code.as_str(), "error: {message}")
            }
            _ => tracing::info!(session_id = %self.id, code = code.as_str(), "error: {message}"),
        }
        // Not `send`: an error is written even past the backlog limit (one more, bounded).
        let mut out = Vec::new();
        let close = self.dialect.error(code, message, &mut out);
        for text in out {
            self.write_text(ctx, text);
        }
        if let Some(Close { code, reason }) = close {
            self.close(ctx, code, &reason);
        }
    }

    /// Sends a Close frame and waits (bounded) for the client's; the pipeline is stopped now.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        self.stop_pipeline();
        self.write_close(
            ctx,
            Some(ws::CloseReason {
                code: ws::CloseCode::from(code),
                description: Some(reason.to_string()),
            }),
        );
        self.phase = Phase::Closing;
        ctx.run_later(CLOSE_HANDSHAKE_TIMEOUT, |act, ctx| {
            tracing::debug!(session_id = %act.id, "no Close from the client; dropping the connection");
            ctx.stop();
        });
    }

    fn stop_pipeline(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop.do_send(StopPipeline);
        }
    }

    /// Admission, timers, the shutdown stream and a query-string configuration.
    fn begin(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.arm_heartbeat(ctx);
        match self.admission.take() {
            Some(Admission::Admitted(permit)) => {
                self.permit = Some(SessionPermit::new((permit, ActiveSession::count())));
                self.admitted = true;
                METRICS.sessions_total.inc();
            }
            Some(Admission::Refused(rejection)) => {
                self.fail(ctx, rejection.code, &rejection.message);
                return;
            }
            None => {}
        }
        tracing::info!(session_id = %self.id, client = %self.client, "session opened");
        let max_session = self.max_session_secs;
        ctx.run_later(duration_secs(max_session), move |act, ctx| {
            let message = format!("the session reached its maximum length of {max_session} s");
            act.fail(ctx, ErrorCode::SessionTooLong, &message);
        });
        if let Some(rx) = self.shutdown_rx.take() {
            ctx.add_stream(WatchStream::new(rx).map(ShutdownSignal));
        }
        let mut out = Vec::new();
        self.dialect.opened(&self.id, &mut out);
        self.send(ctx, out);
        match self.dialect.initial_config() {
            Ok(Some(config)) => self.configure(ctx, config),
            Ok(None) => {
                let secs = self.settings.start_timeout_secs;
                let timer = ctx.run_later(duration_secs(secs), move |act, ctx| {
                    if act.phase == Phase::AwaitingStart {
                        let message = format!("no start message within {secs} s");
                        act.fail(ctx, ErrorCode::StartTimeout, &message);
                    }
                });
                self.start_timer = Some(timer);
            }
            Err(rejection) => self.fail(ctx, rejection.code, &rejection.message),
        }
    }

    /// Starts the pipeline and tells the client it may send audio.
    fn configure(&mut self, ctx: &mut ws::WebsocketContext<Self>, config: StartConfig) {
        if let Some(timer) = self.start_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Err(rejection) = self.pipelines.honoured().check(&config) {
            self.fail(ctx, rejection.code, &rejection.message);
            return;
        }
        tracing::info!(
            session_id = %self.id,
            encoding = config.format.encoding.as_str(),
            sample_rate_hz = config.format.sample_rate_hz,
            language_code = %config.language_code,
            interim_results = config.interim_results,
            single_utterance = config.single_utterance,
            phrases = config.phrases.len(),
            "session configured"
        );
        let me = ctx.address();
        let (links, channel_transcripts) = if self.dialect.outlives_socket() {
            let (tail, links, channel_transcripts) =
                tail::start(me.clone().recipient(), me.clone().recipient());
            self.tail = Some(tail);
            (links, channel_transcripts)
        } else {
            let links = SessionLinks {
                transcripts: me.clone().recipient(),
                voice_activity: me.clone().recipient(),
                acks: me.clone().recipient(),
                warnings: me.clone().recipient(),
                errors: me.clone().recipient(),
                finished: me.clone().recipient(),
            };
            (links, me.recipient())
        };
        self.signature = Some(SignatureCheck::new(config.format.encoding));
        if self.resume_tokens.is_some()
            && self.dialect.resumable()
            && resumable_encoding(config.format.encoding)
            && self.dialect.channels() <= 1
        {
            self.resume_config = Some(ResumeConfig::of(&config));
        }
        let channels = self.dialect.channels();
        if channels > 1 && config.features.voice_activity_events {
            // One channel's speech is not the session's: there is no channel to name in the
            // event, so it is refused rather than half-delivered.
            self.fail(
                ctx,
                ErrorCode::InvalidConfig,
                "voice_activity_events is not available with more than one channel",
            );
            return;
        }
        // Every channel's audio counts against real time: N channels arrive N times as fast.
        let input_format = AudioFormat {
            sample_rate_hz: config.format.sample_rate_hz * channels.max(1) as u32,
            ..config.format
        };
        self.input_rate.set_format(input_format, Instant::now());
        let config = Arc::new(config);
        let pipeline = if channels > 1 {
            match multichannel::start(
                &*self.pipelines,
                channels,
                self.id.clone(),
                config.clone(),
                links,
                channel_transcripts,
            ) {
                Some((pipeline, channel_audio)) => {
                    self.channel_audio = Some(channel_audio);
                    pipeline
                }
                None => {
                    let message = format!(
                        "{} audio cannot have {channels} channels (LINEAR16, MULAW and ALAW can)",
                        config.format.encoding.as_str()
                    );
                    self.fail(ctx, ErrorCode::InvalidConfig, &message);
                    return;
                }
            }
        } else {
            self.pipelines.start(self.id.clone(), config, links)
        };
        self.pipeline = Some(pipeline);
        self.phase = Phase::Streaming;
        self.idle_quiet.reset(TokioInstant::now());
        self.arm_idle(ctx, duration_secs(self.idle_timeout_secs));
        self.report_progress(true);
        let mut out = Vec::new();
        self.dialect.ready(&self.id, &mut out);
        self.send(ctx, out);
    }

    /// Continues the session a resume token describes: same id, clock at `from_ms`, numbering
    /// on from the token's; then as `configure`.
    fn resume_from(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        token: &str,
        from_ms: Option<u64>,
    ) {
        let Some(tokens) = self.resume_tokens.clone() else {
            let message = "resume is off on this server ([session] resume_window_secs = 0)";
            self.fail(ctx, ErrorCode::ResumeUnavailable, message);
            return;
        };
        let state = match tokens.open(token) {
            Ok(state) => state,
            Err(refusal) => {
                let rejection = refusal.rejection();
                self.fail(ctx, rejection.code, &rejection.message);
                return;
            }
        };
        let from_ms = from_ms.unwrap_or(state.fin);
        if from_ms < state.fin {
            let message = format!(
                "from_ms {from_ms} is before the end of the token's last final ({} ms); resume \
                 from there with the newest token received",
                state.fin
            );
            self.fail(ctx, ErrorCode::InvalidMessage, &message);
            return;
        }
        let config = match state.cfg.to_start_config(self.settings.max_phrases) {
            Ok(config) => config,
            Err(rejection) => {
                self.fail(ctx, rejection.code, &rejection.message);
                return;
            }
        };
        tracing::info!(session_id = %state.sid, connection = %self.id, from_ms,
            results = state.res, "session resumed");
        self.id = state.sid.into();
        self.resume = ResumeClock::resumed(from_ms, state.res);
        self.acked_ms = from_ms;
        self.configure(ctx, config);
    }

    /// Tells the dialect how far the session has got, with a fresh resume token when `mint` (or
    /// when the client's newest one is half-way to its expiry), if the session can be resumed.
    fn report_progress(&mut self, mint: bool) {
        let now = Instant::now();
        let token = match (&self.resume_tokens, &self.resume_config) {
            (Some(tokens), Some(cfg)) if mint || self.resume.token_due(tokens.window(), now) => {
                self.resume.minted(now);
                Some(tokens.mint(&self.resume.state(&self.id, cfg)))
            }
            _ => None,
        };
        self.dialect.progress(Progress {
            final_ms: self.resume.final_ms(),
            resume_token: token,
        });
    }

    /// Looks for idleness after `after`, and again as long as the client stays active.
    fn arm_idle(&mut self, ctx: &mut ws::WebsocketContext<Self>, after: Duration) {
        let due = TokioInstant::now() + after;
        ctx.run_later(after, move |act, ctx| {
            if act.phase != Phase::Streaming {
                return;
            }
            match act.idle_quiet.look(due, TokioInstant::now()) {
                Look::Elapsed => {
                    let message =
                        format!("no audio and no keepalive for {} s", act.idle_timeout_secs);
                    act.fail(ctx, ErrorCode::IdleTimeout, &message);
                }
                Look::Again(after) => act.arm_idle(ctx, after),
                Look::Stalled { late_by, again } => {
                    note_stall("idle_timeout", late_by, &act.id);
                    act.arm_idle(ctx, again);
                }
            }
        });
    }

    fn arm_heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let interval = duration_secs(self.settings.heartbeat_interval_secs);
        let due = TokioInstant::now() + interval;
        ctx.run_later(interval, move |act, ctx| act.heartbeat(ctx, due));
    }

    /// Pings the client; drops a connection from which nothing arrived for `client_timeout_secs`.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>, due: TokioInstant) {
        if self.look_at_client(ctx, due) {
            self.outgoing.queue(frame_len(0));
            ctx.ping(b"");
            self.arm_heartbeat(ctx);
        }
    }

    /// The look at the client's quiet that was due at `due`: drops the connection when nothing
    /// came for `client_timeout_secs` while the gateway was awake (a look between heartbeats is
    /// taken when the timeout ends before the next one). Whether the session goes on.
    fn look_at_client(&mut self, ctx: &mut ws::WebsocketContext<Self>, due: TokioInstant) -> bool {
        let now = TokioInstant::now();
        match self.client_quiet.look(due, now) {
            Look::Elapsed => {
                tracing::info!(session_id = %self.id, "nothing from the client for {} s; dropping it",
                    self.settings.client_timeout_secs);
                self.release();
                self.write_close(
                    ctx,
                    Some(ws::CloseReason {
                        code: ws::CloseCode::Policy,
                        description: Some(CLIENT_TIMEOUT_REASON.to_string()),
                    }),
                );
                ctx.stop();
                return false;
            }
            Look::Stalled { late_by, .. } => note_stall("client_timeout", late_by, &self.id),
            Look::Again(after) => {
                let heartbeat = duration_secs(self.settings.heartbeat_interval_secs);
                if after < heartbeat && self.client_look.is_none() {
                    let due = now + after;
                    self.client_look = Some(ctx.run_later(after, move |act, ctx| {
                        act.client_look = None;
                        act.look_at_client(ctx, due);
                    }));
                }
            }
        }
        true
    }

    fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: &str) {
        if text.len() > self.settings.max_json_bytes {
            let message = format!(
                "a JSON message of {} bytes exceeds max_json_bytes ({} bytes); send audio as \
                 binary frames",
                text.len(),
                self.settings.max_json_bytes
            );
            self.fail(ctx, ErrorCode::JsonTooLarge, &message);
            return;
        }
        let mut actions = Vec::new();
        let parsed = self.dialect.text(text, &mut actions);
        self.on_actions(ctx, actions, parsed);
    }

    /// A binary frame, through the dialect (audio in every dialect that takes binary frames).
    fn on_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>, data: Bytes) {
        let mut actions = Vec::new();
        let parsed = self.dialect.binary_actions(data, &mut actions);
        self.on_actions(ctx, actions, parsed);
    }

    /// The actions the dialect read from one frame, then its rejection if it had one.
    fn on_actions(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        actions: Vec<Inbound>,
        parsed: Result<(), Rejection>,
    ) {
        // Actions before a rejection (none in practice) still count: they were the client's.
        for action in actions {
            self.on_action(ctx, action);
        }
        if let Err(rejection) = parsed {
            self.fail(ctx, rejection.code, &rejection.message);
        }
    }

    fn on_action(&mut self, ctx: &mut ws::WebsocketContext<Self>, action: Inbound) {
        if self.phase == Phase::Closing {
            return;
        }
        match action {
            Inbound::Configure(config) if self.phase == Phase::AwaitingStart => {
                self.configure(ctx, config)
            }
            Inbound::Resume { token, from_ms } if self.phase == Phase::AwaitingStart => {
                self.resume_from(ctx, &token, from_ms)
            }
            Inbound::Configure(_) | Inbound::Resume { .. } => self.fail(
                ctx,
                ErrorCode::AlreadyStarted,
                "the session is configured already; this start is ignored",
            ),
            Inbound::Audio { data, audio_id } => self.on_audio(ctx, data, audio_id, None),
            Inbound::ChannelAudio { channel, data } => {
                self.on_audio(ctx, data, None, Some(channel))
            }
            Inbound::KeepAlive => self.idle_quiet.reset(TokioInstant::now()),
            Inbound::Finalize => match self.phase {
                Phase::AwaitingStart => self.fail(
                    ctx,
                    ErrorCode::AudioBeforeStart,
                    "finalize before start: send start first",
                ),
                Phase::Streaming => {
                    self.idle_quiet.reset(TokioInstant::now());
                    if let Some(pipeline) = &self.pipeline {
                        pipeline.finalize.do_send(Finalize);
                    }
                }
                Phase::Ending(_) => self.warn_after_stop(ctx),
                Phase::Closing => {}
            },
            Inbound::Stop => self.on_stop(ctx),
            Inbound::Reply(text) => self.send(ctx, vec![text]),
        }
    }

    /// Audio for the pipeline (interleaved when multichannel), or for one `channel` of it.
    fn on_audio(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        data: Bytes,
        audio_id: Option<String>,
        channel: Option<usize>,
    ) {
        match self.phase {
            Phase::AwaitingStart => self.fail(
                ctx,
                ErrorCode::AudioBeforeStart,
                "audio before start: send start first",
            ),
            Phase::Streaming => {
                let now = Instant::now();
                self.idle_quiet.reset(TokioInstant::now());
                if data.is_empty() {
                    return;
                }
                if let Err(rejection) = self.input_rate.audio(data.len(), now) {
                    self.fail(ctx, rejection.code, &rejection.message);
                    return;
                }
                if let Some(Err(mismatch)) = self.signature.as_mut().map(|s| s.check(&data)) {
                    self.fail(ctx, ErrorCode::InvalidAudio, &mismatch.to_string());
                    return;
                }
                match (channel, &self.channel_audio, &self.pipeline) {
                    (Some(channel), Some(channels), _) => {
                        channels.do_send(ChannelAudioIn { channel, data })
                    }
                    (Some(_), None, Some(pipeline)) | (None, _, Some(pipeline)) => {
                        pipeline.audio.do_send(AudioIn { data, audio_id })
                    }
                    (_, _, None) => {}
                }
            }
            Phase::Ending(_) => self.warn_after_stop(ctx),
            Phase::Closing => {}
        }
    }

    /// `bytes` of data arrived: pauses reading when the client is over its input rate.
    fn on_input(&mut self, bytes: usize) {
        if let Some(until) = self.input_rate.input(bytes, Instant::now()) {
            tracing::debug!(session_id = %self.id, "input faster than allowed: pacing");
            self.gate.pause_until(until);
        }
    }

    fn warn_after_stop(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.warned_audio_after_stop {
            self.warned_audio_after_stop = true;
            let mut out = Vec::new();
            let message = "audio and finalize after stop are ignored";
            self.dialect
                .warning(WARNING_AUDIO_AFTER_STOP, message, &mut out);
            self.send(ctx, out);
        }
    }

    fn on_stop(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        match self.phase {
            Phase::AwaitingStart => {
                // Nothing was configured, so nothing is pending: the session is over.
                self.send_closed(ctx, PipelineSummary::default());
            }
            Phase::Streaming => {
                tracing::info!(session_id = %self.id, "stop: flushing the pipeline");
                if let Some(pipeline) = &self.pipeline {
                    pipeline.end.do_send(EndOfAudio);
                }
                self.phase = Phase::Ending(EndCause::ClientStop);
                // The wait for the last results is bounded; the pipeline reports its own
                // upstream failures, so running out of time here means something is stuck.
                let secs = self.idle_timeout_secs;
                ctx.run_later(duration_secs(secs), move |act, ctx| {
                    if matches!(act.phase, Phase::Ending(_)) {
                        let message =
                            format!("the last results did not arrive within {secs} s of stop");
                        act.fail(ctx, ErrorCode::Internal, &message);
                    }
                });
            }
            Phase::Ending(_) | Phase::Closing => {}
        }
    }

    fn send_closed(&mut self, ctx: &mut ws::WebsocketContext<Self>, mut summary: PipelineSummary) {
        // The numbering of a resumed session continues from its token's.
        summary.results += self.resume.results_base();
        let mut out = Vec::new();
        let end = SessionEnd {
            session_id: &self.id,
            audio_ms: self.acked_ms,
            summary,
        };
        let Close { code, reason } = self.dialect.closed(end, &mut out);
        self.send(ctx, out);
        tracing::info!(session_id = %self.id, audio_ms = self.acked_ms,
            results = summary.results, restarts = summary.restarts, billed_ms = summary.billed_ms,
            "session closed normally");
        if self.phase != Phase::Closing {
            self.close(ctx, code, &reason);
        }
    }

    /// Continuation frames: reassembled into one message, bounded by `max_frame_bytes`.
    fn on_fragment(&mut self, ctx: &mut ws::WebsocketContext<Self>, item: actix_http::ws::Item) {
        match self.fragments.push(item) {
            Ok(None) => {}
            Ok(Some(Reassembled::Text(text))) => self.on_text(ctx, &text),
            Ok(Some(Reassembled::Binary(data))) => self.on_binary(ctx, data),
            Err(rejection) => self.fail(ctx, rejection.code, &rejection.message),
        }
    }

    fn on_shutdown(&mut self, ctx: &mut ws::WebsocketContext<Self>, notice: ShutdownNotice) {
        if self.shutdown.is_some() || self.phase == Phase::Closing {
            return;
        }
        self.shutdown = Some(notice);
        let grace = notice.deadline.saturating_duration_since(Instant::now());
        // (The warning may end a session whose client does not read: it would not hear the
        // shutdown either.)
        tracing::info!(session_id = %self.id, grace_secs = grace.as_secs_f64(), "server shutting down");
        let message = format!(
            "the server is shutting down; this session will be closed in {:.1} s",
            grace.as_secs_f64()
        );
        let mut out = Vec::new();
        self.dialect
            .warning(ErrorCode::ShuttingDown.as_str(), &message, &mut out);
        self.send(ctx, out);
        if let Some(at) = notice.hand_off_at {
            let wait = at.saturating_duration_since(Instant::now());
            ctx.run_later(wait, |act, ctx| act.hand_off(ctx));
        }
        ctx.run_later(grace, |act, ctx| act.on_grace_over(ctx));
    }

    /// Drain by hand-off: a streaming session that can be resumed, in a dialect whose client can
    /// follow it, is told to move with a token minted now and closes; every other session is held
    /// to the grace period. The resume point is the end of the last final delivered (the resume
    /// design, `resume`): what the pipeline has not finalised yet is recognised again on the new
    /// instance from the audio the client re-sends, so an utterance in flight loses nothing.
    fn hand_off(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.phase != Phase::Streaming {
            return;
        }
        let (Some(tokens), Some(cfg)) = (&self.resume_tokens, &self.resume_config) else {
            return;
        };
        let token = tokens.mint(&self.resume.state(&self.id, cfg));
        let from_ms = self.resume.final_ms();
        let message = "this server is shutting down: resume the session on another instance";
        let to = Move {
            session_id: &self.id,
            resume_token: &token,
            from_ms,
            message,
        };
        let mut out = Vec::new();
        let Some(Close { code, reason }) = self.dialect.reconnect(&to, &mut out) else {
            return;
        };
        tracing::info!(session_id = %self.id, from_ms, "drain: session told to move");
        METRICS.sessions_handed_off.inc();
        // Written even past the backlog limit, like an error: it is the session's last message.
        for text in out {
            self.write_text(ctx, text);
        }
        self.close(ctx, code, &reason);
    }

    /// End of the shutdown grace period: flush what the pipeline has, then close with 1001.
    fn on_grace_over(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(notice) = self.shutdown else {
            return;
        };
        match self.phase {
            Phase::AwaitingStart => {
                self.fail(ctx, ErrorCode::ShuttingDown, "the server is shutting down")
            }
            Phase::Streaming | Phase::Ending(_) => {
                if self.phase == Phase::Streaming {
                    if let Some(pipeline) = &self.pipeline {
                        pipeline.end.do_send(EndOfAudio);
                    }
                    self.phase = Phase::Ending(EndCause::Shutdown);
                }
                ctx.run_later(notice.flush_timeout, |act, ctx| {
                    if matches!(act.phase, Phase::Ending(_)) {
                        act.fail(
                            ctx,
                            ErrorCode::ShuttingDown,
                            "the server is shutting down (the last results did not arrive in time)",
                        );
                    }
                });
            }
            Phase::Closing => {}
        }
    }

    fn on_protocol_error(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        error: ws::ProtocolError,
    ) {
        match error {
            // The codec turns a text frame that is not UTF-8 into this (read errors of the
            // connection end the stream in the frame guard instead); the frame was consumed, so
            // the closing handshake can proceed.
            ws::ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::Other => {
                self.fail(ctx, ErrorCode::InvalidJson, "a text message is not UTF-8");
            }
            other => {
                // The codec may be stuck on a malformed frame: no handshake, close now.
                let code = match other {
                    ws::ProtocolError::Overflow => ErrorCode::FrameTooLarge,
                    _ => ErrorCode::InvalidMessage,
                };
                self.fail(ctx, code, &format!("WebSocket protocol error: {other}"));
                ctx.stop();
            }
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.begin(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.release();
    }
}

impl Session {
    /// Stops the pipeline (or hands it to the tail) and gives the permits back; idempotent.
    fn release(&mut self) {
        self.hand_over();
        self.stop_pipeline();
        self.permit = None;
        if self.admitted {
            self.admitted = false;
            tracing::info!(session_id = %self.id, audio_ms = self.acked_ms, "session ended");
        }
    }

    /// A session whose results outlive its socket, going while its pipeline runs: the tail
    /// finishes its business (the last results, the end) with its dialect, pipeline and permit.
    fn hand_over(&mut self) {
        if !matches!(self.phase, Phase::Streaming | Phase::Ending(_)) {
            return;
        }
        if self.pipeline.is_none() {
            return;
        }
        let Some(tail) = self.tail.take() else {
            return;
        };
        let Some(pipeline) = self.pipeline.take() else {
            return;
        };
        tail.hand_over(Handover {
            dialect: std::mem::replace(&mut self.dialect, Box::new(Departed)),
            pipeline,
            permit: self.permit.take(),
            session_id: self.id.clone(),
            stopped: matches!(self.phase, Phase::Ending(_)),
            acked_ms: self.acked_ms,
            limit: duration_secs(self.idle_timeout_secs),
        });
    }
}

impl Handler<Relayed> for Session {
    type Result = ();

    /// A report through the tail: counted as handled, then as if straight from the pipeline.
    /// After the handover the tail delivers it itself.
    fn handle(&mut self, Relayed(report): Relayed, ctx: &mut Self::Context) {
        let Some(tail) = &self.tail else {
            return;
        };
        tail.handled();
        match report {
            Report::Transcript(m) => Handler::<Transcript>::handle(self, m, ctx),
            Report::ChannelTranscript(m) => Handler::<ChannelTranscript>::handle(self, m, ctx),
            Report::Acked(m) => Handler::<AudioAcked>::handle(self, m, ctx),
            Report::Warning(m) => Handler::<PipelineWarning>::handle(self, m, ctx),
            Report::Error(m) => Handler::<PipelineError>::handle(self, m, ctx),
            Report::Finished(m) => Handler::<PipelineFinished>::handle(self, m, ctx),
        }
    }
}

impl Drop for Session {
    /// The connection can fail under the session (a write error, `TCP_USER_TIMEOUT` on a client
    /// that stopped reading): the actor is then dropped without `stopped`.
    fn drop(&mut self) {
        self.release();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let now = Instant::now();
        self.client_quiet.reset(TokioInstant::now());
        self.gate.frame_received();
        if self.phase != Phase::Closing {
            if let Err(rejection) = self.input_rate.frame(now) {
                self.fail(ctx, rejection.code, &rejection.message);
            }
        }
        let message = match item {
            Ok(message) => message,
            Err(error) => {
                if self.phase != Phase::Closing {
                    self.on_protocol_error(ctx, error);
                } else {
                    ctx.stop();
                }
                return;
            }
        };
        match message {
            ws::Message::Close(reason) => {
                if self.phase != Phase::Closing {
                    tracing::info!(session_id = %self.id, ?reason, "client closed the connection");
                    // The pipeline stop and the permits' release in one step: whoever sees the
                    // pipeline stopped finds the client's places free again.
                    self.release();
                    self.write_close(ctx, reason);
                }
                ctx.stop();
            }
            ws::Message::Ping(payload) => {
                if let Some(declared) = frame_limit::marker_length(&payload, &self.marker_nonce) {
                    self.fragments.reset();
                    let message = format!(
                        "a frame of {declared} bytes exceeds max_frame_bytes ({} bytes)",
                        self.settings.max_frame_bytes
                    );
                    self.fail(ctx, ErrorCode::FrameTooLarge, &message);
                } else if self.phase != Phase::Closing {
                    let waiting = self.outgoing.waiting();
                    if waiting + frame_len(payload.len()) > self.settings.max_outgoing_bytes as u64
                    {
                        let message = format!(
                            "{waiting} bytes of messages and pongs are waiting for the client to \
                             read them"
                        );
                        self.fail(ctx, ErrorCode::SlowConsumer, &message);
                    } else {
                        self.outgoing.queue(frame_len(payload.len()));
                        ctx.pong(&payload);
                    }
                }
            }
            _ if self.phase == Phase::Closing => {}
            ws::Message::Text(text) => {
                self.on_input(text.len());
                self.on_text(ctx, &text)
            }
            ws::Message::Binary(data) => {
                self.on_input(data.len());
                self.on_binary(ctx, data)
            }
            ws::Message::Continuation(item) => {
                let len = match &item {
                    actix_http::ws::Item::FirstText(b)
                    | actix_http::ws::Item::FirstBinary(b)
                    | actix_http::ws::Item::Continue(b)
                    | actix_http::ws::Item::Last(b) => b.len(),
                };
                self.on_input(len);
                self.on_fragment(ctx, item)
            }
            ws::Message::Pong(_) | ws::Message::Nop => {}
        }
    }

    /// The connection ended (the client went away without a Close, or after ours).
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.phase != Phase::Closing {
            tracing::info!(session_id = %self.id, "connection ended without a Close");
        }
        ctx.stop();
    }
}

impl StreamHandler<ShutdownSignal> for Session {
    fn handle(&mut self, signal: ShutdownSignal, ctx: &mut Self::Context) {
        if let ShutdownSignal(Some(notice)) = signal {
            self.on_shutdown(ctx, notice);
        }
    }

    /// The server dropped its end of the channel; that alone is no reason to stop.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<Transcript> for Session {
    type Result = ();

    fn handle(&mut self, transcript: Transcript, ctx: &mut Self::Context) {
        if self.phase == Phase::Closing {
            return;
        }
        let kind = if transcript.is_final {
            "final"
        } else {
            "interim"
        };
        METRICS.transcripts.with_label_values(&[kind]).inc();
        let transcript = self.resume.deliver(transcript);
        if transcript.is_final {
            self.report_progress(true);
        }
        let mut out = Vec::new();
        self.dialect.transcript(&transcript, &mut out);
        self.send(ctx, out);
    }
}

impl Handler<VoiceActivity> for Session {
    type Result = ();

    fn handle(&mut self, mut event: VoiceActivity, ctx: &mut Self::Context) {
        if self.phase == Phase::Closing {
            return;
        }
        // On the session clock, which a resumed connection's pipeline starts at its offset.
        event.at_ms += self.resume.offset_ms();
        let mut out = Vec::new();
        self.dialect.voice_activity(&event, &mut out);
        self.send(ctx, out);
    }
}

impl Handler<ChannelTranscript> for Session {
    type Result = ();

    fn handle(&mut self, tagged: ChannelTranscript, ctx: &mut Self::Context) {
        if self.phase == Phase::Closing {
            return;
        }
        let kind = if tagged.transcript.is_final {
            "final"
        } else {
            "interim"
        };
        METRICS.transcripts.with_label_values(&[kind]).inc();
        let mut out = Vec::new();
        self.dialect
            .channel_transcript(tagged.channel, &tagged.transcript, &mut out);
        self.send(ctx, out);
    }
}

impl Handler<AudioAcked> for Session {
    type Result = ();

    fn handle(&mut self, mut ack: AudioAcked, ctx: &mut Self::Context) {
        // (Audio seconds are counted where audio is accepted: the audio buffer.) On the session
        // clock, which a resumed connection's pipeline starts at its offset.
        ack.audio_ms += self.resume.offset_ms();
        self.acked_ms = self.acked_ms.max(ack.audio_ms);
        if self.phase == Phase::Closing {
            return;
        }
        self.report_progress(false);
        let mut out = Vec::new();
        self.dialect.ack(&ack, &mut out);
        self.hold_ack(ctx, out);
    }
}

impl Handler<PipelineWarning> for Session {
    type Result = ();

    fn handle(&mut self, warning: PipelineWarning, ctx: &mut Self::Context) {
        if self.phase == Phase::Closing {
            return;
        }
        tracing::info!(session_id = %self.id, code = warning.code, "warning: {}", warning.message);
        let mut out = Vec::new();
        self.dialect
            .warning(warning.code, &warning.message, &mut out);
        self.send(ctx, out);
    }
}

impl Handler<PipelineError> for Session {
    type Result = ();

    fn handle(&mut self, error: PipelineError, ctx: &mut Self::Context) {
        self.fail(ctx, error.code, &error.message);
    }
}

impl Handler<PipelineFinished> for Session {
    type Result = ();

    fn handle(&mut self, finished: PipelineFinished, ctx: &mut Self::Context) {
        match self.phase {
            // `Streaming`: the pipeline ended by itself (single utterance) — a normal end too.
            Phase::Streaming | Phase::Ending(EndCause::ClientStop) => {
                self.send_closed(ctx, finished.summary)
            }
            Phase::Ending(EndCause::Shutdown) => self.fail(
                ctx,
                ErrorCode::ShuttingDown,
                "the server is shutting down; every result has been sent",
            ),
            Phase::AwaitingStart | Phase::Closing => {}
        }
    }
}
