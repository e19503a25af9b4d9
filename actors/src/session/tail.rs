//! A session that outlives its socket. A telephony provider sends `stop` and closes its media
//! stream at once (Twilio, Telnyx): the last utterance is still being recognised then, and its
//! final would die with the socket — yet the words leave by webhook, not by that socket. So for
//! a dialect whose results go elsewhere ([`Dialect::outlives_socket`]) the pipeline reports to a
//! [`Tail`] instead of the session:
//!
//! - while the session lives, the tail passes every report on ([`Relayed`]) and keeps a copy
//!   until the session has handled it (a counter they share, both on one thread);
//! - when the session goes (the socket closed, the connection dropped) while its pipeline runs,
//!   it hands the tail its dialect, pipeline and permit ([`Handover`]). The tail replays what the
//!   session never handled, half-closes the upstream streams (`EndOfAudio`, unless `stop` did),
//!   hands each result to the dialect (which posts it) and, once the pipeline has finished,
//!   closes the dialect: `session.ended` with the pipeline's summary, after the last final.
//!   The wait is bounded by the limit the session gives the last results after `stop` (its idle
//!   timeout); past it the session ends with `internal`, as after `stop`.
//!
//! The session's permit goes with the handover, so a call still draining counts against
//! `max_sessions` and in `voxgate_sessions_active` (both ride in the permit) until the tail is
//! done.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::upgrade::SessionPermit;
use crate::messages::{
    AudioAcked, ChannelTranscript, EndOfAudio, PipelineError, PipelineFinished, PipelineHandle,
    PipelineWarning, SessionLinks, StopPipeline, Transcript, VoiceActivity,
};
use crate::metrics::METRICS;
use crate::protocol::dialect::{Close, Dialect, Inbound, SessionEnd};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// A pipeline report, kept as one type so the tail can hold it until the session handled it.
#[derive(Debug, Clone)]
pub enum Report {
    Transcript(Transcript),
    ChannelTranscript(ChannelTranscript),
    Acked(AudioAcked),
    Warning(PipelineWarning),
    Error(PipelineError),
    Finished(PipelineFinished),
}

/// A report the tail passes on to its session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relayed(pub Report);

/// The session has gone; its [`Handover`] waits in the slot they share.
#[derive(Message)]
#[rtype(result = "()")]
struct SessionGone;

/// What a departing session leaves to its tail.
pub struct Handover {
    /// The dialect, with whatever it posts results through.
    pub dialect: Box<dyn Dialect>,
    pub pipeline: PipelineHandle,
    /// The session's share of `max_sessions` and its place in `sessions_active`, held until
    /// the tail is done.
    pub permit: Option<SessionPermit>,
    pub session_id: Arc<str>,
    /// Whether the session already sent `EndOfAudio` (the provider's `stop`).
    pub stopped: bool,
    /// Audio acknowledged so far, ms.
    pub acked_ms: u64,
    /// How long the last results may take.
    pub limit: Duration,
}

/// The session's end of its tail.
pub struct TailLink {
    tail: Addr<Tail>,
    /// Relayed reports the session has handled.
    handled: Rc<Cell<u64>>,
    handover: Rc<RefCell<Option<Handover>>>,
}

impl TailLink {
    /// The session handled one relayed report.
    pub fn handled(&self) {
        self.handled.set(self.handled.get() + 1);
    }

    /// The session is going: from now on the tail finishes its business.
    pub fn hand_over(self, handover: Handover) {
        *self.handover.borrow_mut() = Some(handover);
        self.tail.do_send(SessionGone);
    }
}

/// Starts a tail in front of `session` on the current arbiter: the pipeline's links (and, for a
/// multichannel session, where its channels' results go) point at it — all but voice activity,
/// which goes to `voice_activity` directly (it only matters while the socket is there).
pub fn start(
    session: Recipient<Relayed>,
    voice_activity: Recipient<VoiceActivity>,
) -> (TailLink, SessionLinks, Recipient<ChannelTranscript>) {
    let handled = Rc::new(Cell::new(0));
    let handover = Rc::new(RefCell::new(None));
    let tail = Tail {
        session,
        passed: 0,
        handled: handled.clone(),
        unhandled: VecDeque::new(),
        handover: handover.clone(),
        state: State::Relaying,
    }
    .start();
    let links = SessionLinks {
        transcripts: tail.clone().recipient(),
        voice_activity,
        acks: tail.clone().recipient(),
        warnings: tail.clone().recipient(),
        errors: tail.clone().recipient(),
        finished: tail.clone().recipient(),
    };
    let channel_transcripts = tail.clone().recipient();
    let link = TailLink {
        tail,
        handled,
        handover,
    };
    (link, links, channel_transcripts)
}

enum State {
    /// The session lives: reports go to it.
    Relaying,
    /// The session has gone: the tail delivers the last results itself.
    Draining(Box<Handover>),
    /// Everything is delivered (or given up).
    Done,
}

/// Between a pipeline and a session that may go before its pipeline (see the module doc).
pub struct Tail {
    session: Recipient<Relayed>,
    /// Reports passed to the session so far.
    passed: u64,
    /// Shared with the session: how many of them it handled.
    handled: Rc<Cell<u64>>,
    /// The last reports passed on, oldest first: at least those the session has not handled.
    unhandled: VecDeque<Report>,
    /// Shared with the session: filled when it goes.
    handover: Rc<RefCell<Option<Handover>>>,
    state: State,
}

impl Actor for Tail {
    type Context = Context<Self>;
}

impl Tail {
    fn report(&mut self, report: Report, ctx: &mut Context<Self>) {
        self.adopt(ctx);
        match self.state {
            State::Relaying => {
                // A session that went without handing over closed its pipeline itself.
                if !self.session.connected() {
                    return;
                }
                let pending = self.passed - self.handled.get();
                while self.unhandled.len() as u64 > pending {
                    self.unhandled.pop_front();
                }
                self.unhandled.push_back(report.clone());
                self.passed += 1;
                self.session.do_send(Relayed(report));
            }
            State::Draining(_) => self.deliver(report, ctx),
            State::Done => {}
        }
    }

    /// Takes over from the session if it has gone.
    fn adopt(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.state, State::Relaying) {
            return;
        }
        let Some(handover) = self.handover.borrow_mut().take() else {
            return;
        };
        let pending = (self.passed - self.handled.get()) as usize;
        let handled = self.unhandled.len().saturating_sub(pending);
        let replay: Vec<Report> = self.unhandled.drain(..).skip(handled).collect();
        if !handover.stopped {
            handover.pipeline.end.do_send(EndOfAudio);
        }
        let limit = handover.limit;
        tracing::info!(session_id = %handover.session_id, replayed = replay.len(),
            "the socket is gone; delivering the last results (at most {} s)", limit.as_secs_f64());
        self.state = State::Draining(Box::new(handover));
        ctx.run_later(limit, move |act, ctx| {
            if let State::Draining(handover) = &mut act.state {
                let message = format!(
                    "the last results did not arrive within {} s of the socket's close",
                    limit.as_secs_f64()
                );
                tracing::warn!(session_id = %handover.session_id, "{message}");
                METRICS
                    .errors
                    .with_label_values(&[ErrorCode::Internal.as_str()])
                    .inc();
                handover
                    .dialect
                    .error(ErrorCode::Internal, &message, &mut Vec::new());
                act.end(ctx);
            }
        });
        for report in replay {
            self.deliver(report, ctx);
        }
    }

    /// A report after the session has gone: to the dialect, whose socket messages nobody reads.
    fn deliver(&mut self, report: Report, ctx: &mut Context<Self>) {
        let State::Draining(handover) = &mut self.state else {
            return;
        };
        let dialect = &mut handover.dialect;
        let mut unread = Vec::new();
        match report {
            Report::Transcript(transcript) => {
                count(&transcript);
                dialect.transcript(&transcript, &mut unread);
            }
            Report::ChannelTranscript(tagged) => {
                count(&tagged.transcript);
                dialect.channel_transcript(tagged.channel, &tagged.transcript, &mut unread);
            }
            Report::Acked(ack) => {
                handover.acked_ms = handover.acked_ms.max(ack.audio_ms);
                dialect.ack(&ack, &mut unread);
            }
            Report::Warning(warning) => {
                tracing::info!(session_id = %handover.session_id, code = warning.code,
                    "warning after the socket's close: {}", warning.message);
            }
            Report::Error(error) => {
                METRICS
                    .errors
                    .with_label_values(&[error.code.as_str()])
                    .inc();
                tracing::info!(session_id = %handover.session_id, code = error.code.as_str(),
                    "error after the socket's close: {}", error.message);
                dialect.error(error.code, &error.message, &mut unread);
                self.end(ctx);
            }
            Report::Finished(finished) => {
                let end = SessionEnd {
                    session_id: &handover.session_id,
                    audio_ms: handover.acked_ms,
                    summary: finished.summary,
                };
                dialect.closed(end, &mut unread);
                tracing::info!(session_id = %handover.session_id, results = finished.summary.results,
                    "every result delivered after the socket's close");
                self.end(ctx);
            }
        }
    }

    /// Stops the pipeline and frees the permit; the dialect goes with the handover.
    fn end(&mut self, ctx: &mut Context<Self>) {
        if let State::Draining(mut handover) = std::mem::replace(&mut self.state, State::Done) {
            handover.pipeline.stop.do_send(StopPipeline);
            // The call's place in `max_sessions` and `sessions_active` is free again.
            drop(handover.permit.take());
        }
        ctx.stop();
    }
}

fn count(transcript: &Transcript) {
    let kind = if transcript.is_final {
        "final"
    } else {
        "interim"
    };
    METRICS.transcripts.with_label_values(&[kind]).inc();
}

impl Handler<SessionGone> for Tail {
    type Result = ();

    fn handle(&mut self, _: SessionGone, ctx: &mut Context<Self>) {
        self.adopt(ctx);
    }
}

macro_rules! report_handler {
    ($message:ty, $report:expr) => {
        impl Handler<$message> for Tail {
            type Result = ();

            fn handle(&mut self, message: $message, ctx: &mut Context<Self>) {
                self.report(($report)(message), ctx);
            }
        }
    };
}

report_handler!(Transcript, Report::Transcript);
report_handler!(ChannelTranscript, Report::ChannelTranscript);
report_handler!(AudioAcked, Report::Acked);
report_handler!(PipelineWarning, Report::Warning);
report_handler!(PipelineError, Report::Error);
report_handler!(PipelineFinished, Report::Finished);

/// What a session holds in place of the dialect it handed over; it is never asked anything
/// that reaches a client (the session is stopping).
pub struct Departed;

impl Dialect for Departed {
    fn name(&self) -> &'static str {
        "departed"
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(None)
    }

    fn text(&mut self, _text: &str, _actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        Ok(())
    }

    fn binary(&mut self, _data: Bytes) -> Result<Inbound, Rejection> {
        Ok(Inbound::KeepAlive)
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, _transcript: &Transcript, _out: &mut Vec<String>) {}

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {}

    fn error(&mut self, code: ErrorCode, _message: &str, _out: &mut Vec<String>) -> Option<Close> {
        Close::of_code(code)
    }

    fn closed(&mut self, _end: SessionEnd<'_>, _out: &mut Vec<String>) -> Close {
        Close::normal("closed")
    }
}
