//! The audio buffer: one per session, between the session and the upstream stream of the moment.
//!
//! It owns everything about the session's audio once accepted: its order, its bounds
//! (`max_buffer_ms` unsent → `buffer_full`; `max_replay_ms` retained for replay), its
//! re-chunking into upstream frames ([`frames::FrameStore`]), its acknowledgements to the client
//! (of audio *forwarded upstream*, so that a client sending faster than real time can use them as
//! flow control: what is acknowledged has left the buffer),
//! the pacing of frames to the attached stream, the replay into a new stream after a restart, and
//! the half-close of a stream at `finalize`/`stop`.
//!
//! Pacing is a token bucket per stream ([`crate::token_bucket`]), in milliseconds of audio: a new stream may be sent
//! `max_lead_ms` at once (the burst), and the allowance refills at `catchup_speed` × real time. A
//! client sending at real time is forwarded frame by frame as it arrives; a backlog — the replay
//! after a restart, audio buffered during an outage, a client faster than real time — is fed at
//! `catchup_speed` until the stream has caught up with the live audio. Google's "too fast" rule
//! (audio ≤ burst + factor × elapsed; the emulator's defaults are 10 s and 2×) holds as long as
//! `max_lead_ms` ≤ the burst and `catchup_speed` ≤ the factor. Only when the next frame is not yet
//! allowed does the buffer arm a single timer (`run_later`) for the moment it is: no periodic
//! timer, so an idle or real-time session costs no wake-ups beyond its own audio.
//!
//! Half-closes are markers in the audio: `finalize`/`stop` — and an audio gap, when no client
//! audio arrived for `gap_close_ms` while the gateway was awake to see it (a [`QuietWatch`]: after
//! a stall, audio that waited unread in the socket is no pause) — mark the byte where they fall;
//! when the attached stream reaches that byte the buffer sends it [`UpstreamAudio::End`], tells
//! the supervisor ([`UpstreamHalfClosed`]) and detaches. A marker is forgotten only when the
//! stream it closed ended cleanly (the supervisor attaches the next one with
//! [`Resume::AfterSent`]); after a failure the replay reaches it again and the new stream is
//! half-closed at the same place.
//!
//! A forced final ([`ForceFinal`], from the supervisor when no final came for long) half-closes
//! the attached stream at once, after the audio already sent to it. It is no marker: the audio
//! after it waits for the next stream (announced like after any half-close), and a replay after
//! a failure is not half-closed there again.
//!
//! Streams are opened only for audio: after each half-close (and at the start) the buffer tells
//! the supervisor once, with [`AudioPending`], as soon as audio (or a `stop`) is waiting for the
//! next stream. So a muted client holds no upstream stream open, and Google's audio timeout never
//! ends one.

pub mod frames;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::audio::AudioFormat;
use crate::messages::*;
use crate::metrics::METRICS;
use crate::protocol::ErrorCode;
use crate::quiet_watch::{note_stall, Look, QuietWatch};
use crate::settings::AudioSettings;
use crate::token_bucket::TokenBucket;
use frames::FrameStore;

/// The stream audio goes to now.
struct AttachedStream {
    id: u64,
    sink: Recipient<UpstreamAudio>,
    /// The pacing: tokens are milliseconds of audio this stream may still be sent at once (the
    /// burst), refilling at `catchup_speed` × real time.
    allowance: TokenBucket,
}

/// A client's `finalize` or `stop`: the stream is half-closed after the audio before `at_byte`.
#[derive(Debug, Clone, Copy)]
struct HalfCloseMarker {
    at_byte: u64,
    reason: HalfCloseReason,
    /// The stream already half-closed here (it may yet end cleanly or fail).
    half_closed_on: Option<u64>,
}

/// The audio buffer actor. See the module doc.
pub struct AudioBuffer {
    /// For logs.
    session_id: Arc<str>,
    settings: AudioSettings,
    /// An acknowledgement is sent each time this much more audio was forwarded upstream.
    ack_interval_ms: u64,
    links: AudioBufferLinks,
    /// The audio itself.
    store: FrameStore,
    /// Forwarded audio at the last acknowledgement.
    last_ack_ms: u64,
    /// Ids of JSON audio chunks not yet wholly forwarded, with the byte where each ends.
    pending_ids: VecDeque<(u64, String)>,
    /// The client's id of the most recent JSON audio chunk wholly forwarded, echoed in acks.
    last_audio_id: Option<String>,
    /// Where frames go; `None` between streams (failure, backoff, after a half-close).
    stream: Option<AttachedStream>,
    /// Pending half-closes, in audio order.
    markers: VecDeque<HalfCloseMarker>,
    /// Where the latest half-close point was put (0 before any): a `finalize` with no audio since
    /// has nothing to finalize.
    last_mark_byte: u64,
    /// The one timer armed when the next frame is not yet due.
    pacing_timer: Option<SpawnHandle>,
    /// `buffer_full` was reported: the session is closing, further input is ignored.
    overflowed: bool,
    /// The client sent `stop`: no more audio is accepted.
    audio_ended: bool,
    /// Retained audio is being dropped for `max_replay_ms` (warned once per episode).
    replay_truncated: bool,
    /// The quiet since client audio last arrived, for the audio-gap half-close: counted only while
    /// the gateway was awake, so a stalled gateway does not take the audio waiting unread in its
    /// socket for a pause of the client.
    gap_watch: QuietWatch,
    /// The one timer that looks at `gap_watch`; armed while audio flows.
    gap_timer: Option<SpawnHandle>,
    /// [`AudioPending`] was sent since the last half-close (or the start): not again until the
    /// next half-close.
    announced: bool,
}

impl AudioBuffer {
    pub fn new(
        session_id: Arc<str>,
        format: AudioFormat,
        settings: AudioSettings,
        ack_interval_ms: u64,
        stall_tolerance: Option<Duration>,
        links: AudioBufferLinks,
    ) -> AudioBuffer {
        let gap_watch = QuietWatch::new(
            Duration::from_millis(settings.gap_close_ms),
            stall_tolerance,
            Instant::now(),
        );
        let store = FrameStore::new(
            format,
            settings.frame_ms,
            settings.max_request_bytes,
            settings.max_replay_ms,
        );
        AudioBuffer {
            session_id,
            settings,
            ack_interval_ms: ack_interval_ms.max(1),
            links,
            store,
            last_ack_ms: 0,
            pending_ids: VecDeque::new(),
            last_audio_id: None,
            stream: None,
            markers: VecDeque::new(),
            last_mark_byte: 0,
            pacing_timer: None,
            overflowed: false,
            audio_ended: false,
            replay_truncated: false,
            gap_watch,
            gap_timer: None,
            announced: false,
        }
    }

    /// Tells the supervisor, once per half-close, that audio (or a `stop`) waits for a stream.
    fn announce_pending(&mut self) {
        if self.stream.is_none() && !self.announced {
            self.announced = true;
            self.links.audio_pending.do_send(AudioPending);
        }
    }

    /// The burst: what a stream may be sent at once. Never below one frame, so pacing can always
    /// make progress.
    fn burst_ms(&self) -> f64 {
        self.settings.max_lead_ms.max(self.settings.frame_ms) as f64
    }

    /// Arms the look at the audio gap `after` from now, unless one is armed.
    fn arm_gap_timer(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if self.gap_timer.is_some() || self.settings.gap_close_ms == 0 {
            return;
        }
        let due = Instant::now() + after;
        self.gap_timer = Some(ctx.run_later(after, move |act, ctx| {
            act.gap_timer = None;
            if act.overflowed || act.audio_ended {
                return;
            }
            match act.gap_watch.look(due, Instant::now()) {
                Look::Elapsed => {
                    debug!(session = %act.session_id, gap_close_ms = act.settings.gap_close_ms, "no audio: closing the stream until audio comes again");
                    act.mark(HalfCloseReason::Gap);
                    act.pump(ctx);
                }
                Look::Again(after) => act.arm_gap_timer(after, ctx),
                Look::Stalled { late_by, again } => {
                    note_stall("audio_gap", late_by, &act.session_id);
                    act.arm_gap_timer(again, ctx);
                }
            }
        }));
    }

    /// Acknowledges the audio forwarded so far if it grew by `ack_interval_ms` since the last
    /// acknowledgement, or (`force`) if it grew at all.
    fn ack_forwarded(&mut self, force: bool) {
        let sent = self.store.sent_bytes();
        while self
            .pending_ids
            .front()
            .is_some_and(|(end, _)| *end <= sent)
        {
            self.last_audio_id = self.pending_ids.pop_front().map(|(_, id)| id);
        }
        let sent_ms = self.store.byte_to_ms(sent);
        let grown = sent_ms.saturating_sub(self.last_ack_ms);
        if grown >= self.ack_interval_ms || (force && grown > 0) {
            self.last_ack_ms = sent_ms;
            self.links.acks.do_send(AudioAcked {
                audio_ms: sent_ms,
                audio_id: self.last_audio_id.clone(),
            });
        }
    }

    fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.pacing_timer.take() {
            ctx.cancel_future(handle);
        }
    }

    /// Adds a half-close marker where the accepted audio ends now (the partial frame flushed).
    fn mark(&mut self, reason: HalfCloseReason) {
        let at_byte = self.store.flush_partial();
        if reason != HalfCloseReason::EndOfAudio && at_byte == self.last_mark_byte {
            return; // no audio since the last half-close point: nothing to finalize or close
        }
        self.last_mark_byte = at_byte;
        if let Some(last) = self.markers.back_mut().filter(|m| m.at_byte == at_byte) {
            // No audio since the last half-close point: one half-close does for both.
            match last.half_closed_on {
                None => {
                    last.reason = reason;
                    return;
                }
                Some(stream_id) => {
                    // That stream is already half-closed and may still end cleanly: tell the
                    // supervisor it is the last one. The `stop` marker is kept as well, for when
                    // the supervisor has already moved on to the next stream.
                    self.links.half_closed.do_send(UpstreamHalfClosed {
                        stream_id,
                        reason,
                        at_ms: self.store.byte_to_ms(at_byte),
                    });
                }
            }
        }
        self.markers.push_back(HalfCloseMarker {
            at_byte,
            reason,
            half_closed_on: None,
        });
    }

    /// Sends the attached stream every frame that is due, half-closes it at a marker, and arms the
    /// timer for the next frame that is not due yet.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.pacing_timer.is_some() {
            return;
        }
        while self.stream.is_some() {
            if let Some(marker) = self.markers.front() {
                if marker.half_closed_on.is_none() && self.store.stream_position() >= marker.at_byte
                {
                    self.half_close();
                    return;
                }
            }
            let Some(end_ms) = self.store.next_end_ms() else {
                return;
            };
            let start_ms = self.store.byte_to_ms(self.store.stream_position());
            let burst_ms = self.burst_ms();
            // A frame longer than the burst (compressed audio) goes once the bucket is full.
            let frame_ms = (end_ms.saturating_sub(start_ms) as f64).min(burst_ms);
            let now = Instant::now();
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            // The bucket counts in std instants; tokio's (which tests may pause) convert exactly.
            if let Err(wait) = stream.allowance.try_take(frame_ms, now.into_std()) {
                self.pacing_timer = Some(ctx.run_later(wait, |act, ctx| {
                    act.pacing_timer = None;
                    act.pump(ctx);
                }));
                return;
            }
            let Some(frame) = self.store.take_next() else {
                return;
            };
            stream.sink.do_send(UpstreamAudio::Frame(frame));
            METRICS.upstream_frames.inc();
            self.ack_forwarded(false);
            let dropped_ms = self.store.prune_replay();
            if dropped_ms > 0 {
                if !self.replay_truncated {
                    warn!(
                        session = %self.session_id,
                        max_replay_ms = self.settings.max_replay_ms,
                        "no final result for a long time: dropping the oldest audio kept for replay"
                    );
                }
                self.replay_truncated = true;
            }
        }
    }

    /// The stream reached the front marker: end its audio, tell the supervisor, detach.
    fn half_close(&mut self) {
        let Some(marker) = self.markers.front_mut() else {
            return;
        };
        let Some(stream) = self.stream.take() else {
            return;
        };
        marker.half_closed_on = Some(stream.id);
        let (reason, at_byte) = (marker.reason, marker.at_byte);
        let at_ms = self.store.byte_to_ms(at_byte);
        self.ack_forwarded(true);
        debug!(session = %self.session_id, stream = stream.id, at_ms, ?reason, "half-closing stream");
        // The supervisor hears of the half-close before the stream can possibly end.
        self.links.half_closed.do_send(UpstreamHalfClosed {
            stream_id: stream.id,
            reason,
            at_ms,
        });
        stream.sink.do_send(UpstreamAudio::End);
        self.announced = false;
        if self.store.accepted_bytes() > at_byte {
            self.announce_pending();
        }
    }
}

impl Actor for AudioBuffer {
    type Context = Context<Self>;
}

impl Handler<AudioIn> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, msg: AudioIn, ctx: &mut Context<Self>) {
        if self.overflowed || self.audio_ended {
            debug!(session = %self.session_id, "audio ignored: the buffer no longer accepts audio");
            return;
        }
        let unsent_ms = self.store.unsent_ms_with(msg.data.len());
        if unsent_ms > self.settings.max_buffer_ms {
            self.overflowed = true;
            let limit = self.settings.max_buffer_ms;
            // No stream to take the audio: the upstream has been unavailable for as long as the
            // buffer holds. Otherwise the client sends faster than audio can be forwarded.
            let error = if self.stream.is_none() {
                PipelineError {
                    code: ErrorCode::UpstreamUnavailable,
                    message: format!(
                        "the recognizer has been unavailable for too long: {unsent_ms} ms of audio \
                         would be waiting (limit {limit} ms)"
                    ),
                }
            } else {
                PipelineError {
                    code: ErrorCode::BufferFull,
                    message: format!(
                        "{unsent_ms} ms of audio would be waiting to be sent upstream (limit \
                         {limit} ms): send audio at about real time"
                    ),
                }
            };
            warn!(session = %self.session_id, unsent_ms, code = error.code.as_str(), "audio buffer full");
            self.links.errors.do_send(error);
            return;
        }
        let before_ms = self.store.accepted_ms();
        self.store.push(msg.data);
        if let Some(id) = msg.audio_id {
            self.pending_ids
                .push_back((self.store.accepted_bytes(), id));
        }
        let accepted_ms = self.store.accepted_ms();
        METRICS
            .audio_seconds
            .inc_by((accepted_ms - before_ms) as f64 / 1_000.0);
        let now = Instant::now();
        self.gap_watch.reset(now);
        self.arm_gap_timer(self.gap_watch.first_look_in(now), ctx);
        self.announce_pending();
        self.pump(ctx);
    }
}

impl Handler<Finalize> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, _: Finalize, ctx: &mut Context<Self>) {
        if self.overflowed || self.audio_ended {
            return;
        }
        self.mark(HalfCloseReason::Finalize);
        self.pump(ctx);
    }
}

impl Handler<EndOfAudio> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, _: EndOfAudio, ctx: &mut Context<Self>) {
        if self.overflowed || self.audio_ended {
            return;
        }
        self.audio_ended = true;
        self.mark(HalfCloseReason::EndOfAudio);
        self.announce_pending();
        self.pump(ctx);
    }
}

impl Handler<AttachStream> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, msg: AttachStream, ctx: &mut Context<Self>) {
        self.cancel_timer(ctx);
        match msg.resume {
            Resume::FromMs(t) => {
                let start = self.store.resume_from(t);
                if start.missing_ms > 0 {
                    warn!(
                        session = %self.session_id,
                        stream = msg.stream_id,
                        requested_ms = t,
                        start_ms = start.start_ms,
                        "replay starts late: the audio before was dropped (max_replay_ms)"
                    );
                }
                // Every half-close ahead happens again on the new stream, once per point.
                let mut merged: VecDeque<HalfCloseMarker> = VecDeque::new();
                for marker in self.markers.drain(..) {
                    match merged.back_mut() {
                        Some(last) if last.at_byte == marker.at_byte => {
                            if marker.reason == HalfCloseReason::EndOfAudio {
                                last.reason = marker.reason;
                            }
                        }
                        _ => merged.push_back(HalfCloseMarker {
                            half_closed_on: None,
                            ..marker
                        }),
                    }
                }
                self.markers = merged;
            }
            Resume::AfterSent => {
                if self
                    .markers
                    .front()
                    .is_some_and(|m| m.half_closed_on.is_some())
                {
                    // The stream half-closed there ended cleanly: that marker is done with.
                    self.markers.pop_front();
                }
                self.store.resume_after_sent();
            }
        }
        self.replay_truncated = false;
        debug!(session = %self.session_id, stream = msg.stream_id, resume = ?msg.resume, start_ms = self.store.stream_start_ms(), "stream attached");
        self.stream = Some(AttachedStream {
            id: msg.stream_id,
            sink: msg.sink,
            allowance: TokenBucket::full(
                self.burst_ms(),
                1_000.0 * self.settings.catchup_speed.max(1.0),
                Instant::now().into_std(),
            ),
        });
        self.pump(ctx);
    }
}

impl Handler<ForceFinal> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, msg: ForceFinal, ctx: &mut Context<Self>) {
        if self.stream.as_ref().is_none_or(|s| s.id != msg.stream_id) {
            return; // already half-closed, detached or replaced: its final comes anyway
        }
        let Some(stream) = self.stream.take() else {
            return;
        };
        self.cancel_timer(ctx);
        let at_ms = self.store.byte_to_ms(self.store.stream_position());
        self.ack_forwarded(true);
        debug!(session = %self.session_id, stream = stream.id, at_ms, "half-closing stream to force its final");
        self.links.half_closed.do_send(UpstreamHalfClosed {
            stream_id: stream.id,
            reason: HalfCloseReason::ForcedFinal,
            at_ms,
        });
        stream.sink.do_send(UpstreamAudio::End);
        self.announced = false;
        if self.store.accepted_bytes() > self.store.stream_position() {
            self.announce_pending();
        }
    }
}

impl Handler<DetachStream> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, msg: DetachStream, ctx: &mut Context<Self>) {
        if self.stream.as_ref().is_some_and(|s| s.id == msg.stream_id) {
            self.stream = None;
            self.cancel_timer(ctx);
        }
    }
}

impl Handler<Finalized> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, msg: Finalized, _: &mut Context<Self>) {
        self.store.finalized(msg.upto_ms);
        self.replay_truncated = false;
    }
}

impl Handler<StopPipeline> for AudioBuffer {
    type Result = ();

    fn handle(&mut self, _: StopPipeline, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
