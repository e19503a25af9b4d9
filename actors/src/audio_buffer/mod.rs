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
//! audio arrived for `gap_close_ms` — mark the byte where they fall; when the attached stream
//! reaches that byte the buffer sends it [`UpstreamAudio::End`], tells the supervisor
//! ([`UpstreamHalfClosed`]) and detaches. A marker is forgotten only when the stream it closed
//! ended cleanly (the supervisor attaches the next one with [`Resume::AfterSent`]); after a failure
//! the replay reaches it again and the new stream is half-closed at the same place.
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
    /// When client audio last arrived (for the audio-gap half-close).
    last_audio_at: Instant,
    /// The one timer that checks for an audio gap; armed while audio flows.
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
        links: AudioBufferLinks,
    ) -> AudioBuffer {
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
            last_audio_at: Instant::now(),
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

    /// Arms the audio-gap check `after` from now, unless one is armed.
    fn arm_gap_timer(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if self.gap_timer.is_some() || self.settings.gap_close_ms == 0 {
            return;
        }
        self.gap_timer = Some(ctx.run_later(after, |act, ctx| {
            act.gap_timer = None;
            if act.overflowed || act.audio_ended {
                return;
            }
            let gap = Duration::from_millis(act.settings.gap_close_ms);
            let quiet = act.last_audio_at.elapsed();
            if quiet >= gap {
                debug!(session = %act.session_id, quiet_ms = quiet.as_millis() as u64, "no audio: closing the stream until audio comes again");
                act.mark(HalfCloseReason::Gap);
                act.pump(ctx);
            } else {
                act.arm_gap_timer(gap - quiet, ctx);
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
        self.last_audio_at = Instant::now();
        self.arm_gap_timer(Duration::from_millis(self.settings.gap_close_ms), ctx);
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
mod tests {
    use super::*;
    use crate::audio::Encoding;
    use crate::testing::{Probe, ProbeLog};
    use bytes::Bytes;

    const WAIT: Duration = Duration::from_secs(5);
    const L16: AudioFormat = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 16_000,
    };
    /// 16 kHz LINEAR16: 32 bytes per ms.
    const BPMS: usize = 32;

    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    }

    /// A buffer whose session, supervisor and stream are probes.
    struct Rig {
        buffer: Addr<AudioBuffer>,
        session: ProbeLog,
        supervisor: ProbeLog,
    }

    fn rig(settings: AudioSettings, ack_interval_ms: u64) -> Rig {
        let (session, session_log) = Probe::start_new();
        let (supervisor, supervisor_log) = Probe::start_new();
        let links = AudioBufferLinks {
            acks: session.clone().recipient(),
            errors: session.recipient(),
            half_closed: supervisor.clone().recipient(),
            audio_pending: supervisor.recipient(),
        };
        let buffer =
            AudioBuffer::new(Arc::from("s1"), L16, settings, ack_interval_ms, links).start();
        Rig {
            buffer,
            session: session_log,
            supervisor: supervisor_log,
        }
    }

    /// Settings where pacing never holds anything back (tests of content, not timing).
    fn unpaced() -> AudioSettings {
        AudioSettings {
            max_lead_ms: 1_000_000,
            max_buffer_ms: 1_000_000,
            max_replay_ms: 1_000_000,
            gap_close_ms: 0,
            ..AudioSettings::default()
        }
    }

    fn attach(rig: &Rig, id: u64, resume: Resume) -> ProbeLog {
        let (stream, log) = Probe::start_new();
        rig.buffer.do_send(AttachStream {
            stream_id: id,
            sink: stream.recipient(),
            resume,
        });
        log
    }

    fn audio(from: usize, len: usize) -> AudioIn {
        AudioIn {
            data: Bytes::from(pattern(from, len)),
            audio_id: None,
        }
    }

    fn frames(msgs: &[UpstreamAudio]) -> Vec<AudioFrame> {
        msgs.iter()
            .filter_map(|m| match m {
                UpstreamAudio::Frame(f) => Some(f.clone()),
                UpstreamAudio::End => None,
            })
            .collect()
    }

    fn bytes_of(msgs: &[UpstreamAudio]) -> Vec<u8> {
        frames(msgs)
            .iter()
            .flat_map(|f| f.data.iter().copied())
            .collect()
    }

    fn ended(msgs: &[UpstreamAudio]) -> bool {
        msgs.last() == Some(&UpstreamAudio::End)
    }

    /// Many small odd-sized chunks reach the stream in order as exact 100 ms frames, and the
    /// partial last frame is flushed by `finalize`, followed by End and the half-close.
    #[actix_rt::test]
    async fn forwards_in_order_as_exact_frames_and_flushes_on_finalize() {
        let rig = rig(unpaced(), 500);
        let stream = attach(&rig, 1, Resume::FromMs(0));
        let mut at = 0;
        for i in 0..300 {
            let n = 1 + (i * 37) % 211;
            rig.buffer.do_send(audio(at, n));
            at += n;
        }
        rig.buffer.do_send(Finalize);
        let got = stream.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert!(ended(&got), "no End after finalize: {} messages", got.len());
        let fs = frames(&got);
        let (last, full) = fs.split_last().expect("frames were sent");
        assert!(
            full.iter().all(|f| f.data.len() == 3_200),
            "full frames are exactly 100 ms"
        );
        assert_eq!(last.data.len(), at % 3_200, "the partial frame is flushed");
        for pair in fs.windows(2) {
            assert_eq!(
                pair[1].start_byte,
                pair[0].start_byte + pair[0].data.len() as u64
            );
        }
        assert_eq!(bytes_of(&got), pattern(0, at));
        let hc = rig
            .supervisor
            .wait_count::<UpstreamHalfClosed>(1, WAIT)
            .await;
        assert_eq!(hc.len(), 1);
        assert_eq!(hc[0].stream_id, 1);
        assert_eq!(hc[0].reason, HalfCloseReason::Finalize);
        assert_eq!(hc[0].at_ms, (at / BPMS) as u64);
    }

    /// No frame ever exceeds `max_request_bytes`, even when `frame_ms` asks for more.
    #[actix_rt::test]
    async fn never_sends_over_the_request_limit() {
        let rig = rig(
            AudioSettings {
                frame_ms: 1_000,
                max_request_bytes: 10_000,
                ..unpaced()
            },
            500,
        );
        let stream = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 100_000));
        rig.buffer.do_send(EndOfAudio);
        let got = stream.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert!(ended(&got));
        assert!(frames(&got).iter().all(|f| f.data.len() <= 10_000));
        assert_eq!(bytes_of(&got), pattern(0, 100_000));
    }

    /// More unsent audio than `max_buffer_ms` while no stream can take it (the upstream is down)
    /// is refused with `upstream_unavailable`, and nothing after it is accepted.
    #[actix_rt::test]
    async fn buffer_bound_without_a_stream_is_upstream_unavailable() {
        let rig = rig(
            AudioSettings {
                max_buffer_ms: 1_000,
                ..AudioSettings::default()
            },
            100_000,
        );
        // No stream attached: nothing is sent, so everything accepted stays unsent.
        rig.buffer.do_send(audio(0, 1_000 * BPMS));
        rig.buffer.do_send(audio(1_000 * BPMS, BPMS));
        rig.buffer.do_send(audio(0, BPMS));
        rig.buffer.do_send(Finalize);
        let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, ErrorCode::UpstreamUnavailable);
        assert!(errors[0].message.contains("unavailable for too long"));
        // A finalize acknowledgement would carry the total: none comes after the overflow.
        let stream = attach(&rig, 1, Resume::FromMs(0));
        let got = stream
            .wait_for::<UpstreamAudio>(Duration::from_millis(300), |m| m.len() >= 11)
            .await;
        assert_eq!(
            bytes_of(&got),
            pattern(0, 1_000 * BPMS),
            "only the audio within the bound"
        );
        assert!(rig.session.all::<AudioAcked>().is_empty());
    }

    /// A replay from t starts exactly at t's byte; earlier audio is not resent.
    #[actix_rt::test]
    async fn replay_from_ms_cuts_at_the_exact_byte() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 1_000 * BPMS));
        first.wait_count::<UpstreamAudio>(10, WAIT).await;
        rig.buffer.do_send(DetachStream { stream_id: 1 });
        rig.buffer.do_send(Finalized { upto_ms: 300 });
        let second = attach(&rig, 2, Resume::FromMs(437));
        rig.buffer.do_send(audio(1_000 * BPMS, 200 * BPMS));
        let got = second.wait_count::<UpstreamAudio>(8, WAIT).await;
        let fs = frames(&got);
        assert_eq!(fs[0].start_ms, 437);
        assert_eq!(fs[0].start_byte, (437 * BPMS) as u64);
        assert_eq!(
            bytes_of(&got),
            pattern(437 * BPMS, 1_200 * BPMS - 437 * BPMS)
        );
        assert_eq!(
            first.all::<UpstreamAudio>().len(),
            10,
            "the detached stream gets nothing"
        );
    }

    /// AfterSent drops what was sent and continues with the unsent audio.
    #[actix_rt::test]
    async fn after_sent_continues_with_unsent_audio() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 500 * BPMS));
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(audio(500 * BPMS, 300 * BPMS));
        let got = first.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert_eq!(bytes_of(&got), pattern(0, 500 * BPMS));
        let second = attach(&rig, 2, Resume::AfterSent);
        let got = second.wait_count::<UpstreamAudio>(3, WAIT).await;
        assert_eq!(frames(&got)[0].start_ms, 500);
        assert_eq!(bytes_of(&got), pattern(500 * BPMS, 300 * BPMS));
    }

    /// `Finalized` drops retained audio: a later replay from before it starts at the oldest
    /// retained frame instead.
    #[actix_rt::test]
    async fn finalized_audio_is_not_replayed() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 1_000 * BPMS));
        first.wait_count::<UpstreamAudio>(10, WAIT).await;
        rig.buffer.do_send(Finalized { upto_ms: 600 });
        let second = attach(&rig, 2, Resume::FromMs(0));
        let got = second.wait_count::<UpstreamAudio>(4, WAIT).await;
        assert_eq!(frames(&got)[0].start_ms, 600);
        assert_eq!(bytes_of(&got), pattern(600 * BPMS, 400 * BPMS));
    }

    /// Beyond `max_replay_ms` the oldest sent audio is dropped.
    #[actix_rt::test]
    async fn replay_retention_is_bounded() {
        let rig = rig(
            AudioSettings {
                max_replay_ms: 300,
                ..unpaced()
            },
            500,
        );
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 1_000 * BPMS));
        first.wait_count::<UpstreamAudio>(10, WAIT).await;
        let second = attach(&rig, 2, Resume::FromMs(0));
        let got = second.wait_count::<UpstreamAudio>(3, WAIT).await;
        assert_eq!(frames(&got)[0].start_ms, 700);
        assert_eq!(bytes_of(&got), pattern(700 * BPMS, 300 * BPMS));
    }

    /// A client sending 3 s of audio at once is fed at about real time after the lead: the lead
    /// at once, then ~1 frame per 100 ms.
    #[actix_rt::test]
    async fn paces_a_fast_client_to_real_time() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                max_lead_ms: 1_000,
                catchup_speed: 1.0,
                ..AudioSettings::default()
            },
            500,
        );
        let stream = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 3_000 * BPMS));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let at_start = stream.all::<UpstreamAudio>().len();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let after_1s = stream.all::<UpstreamAudio>().len();
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        let after_3s = stream.all::<UpstreamAudio>().len();
        assert!(
            (9..=11).contains(&at_start),
            "lead sent at once: {at_start}"
        );
        assert!(
            (19..=21).contains(&after_1s),
            "one frame per 100 ms: {after_1s}"
        );
        assert_eq!(after_3s, 30, "everything sent once due");
    }

    /// A client sending at real time has each frame forwarded as soon as it is complete, even with
    /// no lead at all.
    #[actix_rt::test]
    async fn real_time_client_is_forwarded_immediately() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                max_lead_ms: 0,
                ..AudioSettings::default()
            },
            500,
        );
        let stream = attach(&rig, 1, Resume::FromMs(0));
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rig.buffer.do_send(audio(i * 100 * BPMS, 100 * BPMS));
            let got = stream.wait_count::<UpstreamAudio>(i + 1, WAIT).await;
            assert_eq!(got.len(), i + 1, "frame {i} forwarded on arrival");
        }
    }

    /// A replay is fed at real time from its start offset, plus the lead.
    #[actix_rt::test]
    async fn replay_is_paced_from_its_start() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                max_lead_ms: 500,
                max_buffer_ms: 100_000,
                catchup_speed: 1.0,
                ..AudioSettings::default()
            },
            500,
        );
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 2_000 * BPMS));
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(first.all::<UpstreamAudio>().len(), 20);
        rig.buffer.do_send(DetachStream { stream_id: 1 });
        let second = attach(&rig, 2, Resume::FromMs(1_000));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let at_start = second.all::<UpstreamAudio>().len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let later = second.all::<UpstreamAudio>().len();
        assert!(
            (5..=6).contains(&at_start),
            "only the lead at once: {at_start}"
        );
        assert!((10..=10).contains(&later), "the rest at real time: {later}");
    }

    /// Acknowledgements come every `ack_interval_ms` of audio forwarded upstream, carry the id of
    /// the latest JSON chunk wholly forwarded, and the half-close of `finalize` acknowledges the total.
    #[actix_rt::test]
    async fn acks_follow_the_interval_and_echo_audio_id() {
        let rig = rig(unpaced(), 500);
        let _stream = attach(&rig, 1, Resume::FromMs(0));
        for i in 0..12 {
            let id = (i % 3 == 0).then(|| format!("a{i}"));
            rig.buffer.do_send(AudioIn {
                data: Bytes::from(pattern(i * 100 * BPMS, 100 * BPMS)),
                audio_id: id,
            });
        }
        rig.buffer.do_send(audio(1_200 * BPMS, 30 * BPMS));
        rig.buffer.do_send(Finalize);
        let acks = rig.session.wait_count::<AudioAcked>(3, WAIT).await;
        assert_eq!(
            acks,
            vec![
                AudioAcked {
                    audio_ms: 500,
                    audio_id: Some("a3".into())
                },
                AudioAcked {
                    audio_ms: 1_000,
                    audio_id: Some("a9".into())
                },
                AudioAcked {
                    audio_ms: 1_230,
                    audio_id: Some("a9".into())
                },
            ]
        );
    }

    /// After `stop`, a stream that fails is replaced: the new one gets the replay and End again.
    #[actix_rt::test]
    async fn end_is_sent_again_after_reattach() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 350 * BPMS));
        rig.buffer.do_send(EndOfAudio);
        let got = first.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert!(ended(&got));
        // Stream 1 failed before its last final; the supervisor restarts from the last final.
        rig.buffer.do_send(DetachStream { stream_id: 1 });
        let second = attach(&rig, 2, Resume::FromMs(200));
        let got = second.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert!(ended(&got), "End re-sent after the replay");
        assert_eq!(bytes_of(&got), pattern(200 * BPMS, 150 * BPMS));
        let hc = rig
            .supervisor
            .wait_count::<UpstreamHalfClosed>(2, WAIT)
            .await;
        let ids: Vec<(u64, HalfCloseReason)> = hc.iter().map(|h| (h.stream_id, h.reason)).collect();
        assert_eq!(
            ids,
            vec![
                (1, HalfCloseReason::EndOfAudio),
                (2, HalfCloseReason::EndOfAudio)
            ]
        );
    }

    /// A `stop` right after a `finalize`, with no audio between, opens no new stream: the
    /// supervisor is told the stream already half-closed there is the last one.
    #[actix_rt::test]
    async fn stop_right_after_finalize_upgrades_the_half_close() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 200 * BPMS));
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(EndOfAudio);
        let hc = rig
            .supervisor
            .wait_count::<UpstreamHalfClosed>(2, WAIT)
            .await;
        let seen: Vec<(u64, HalfCloseReason, u64)> = hc
            .iter()
            .map(|h| (h.stream_id, h.reason, h.at_ms))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, HalfCloseReason::Finalize, 200),
                (1, HalfCloseReason::EndOfAudio, 200)
            ]
        );
        let got = first.all::<UpstreamAudio>();
        assert_eq!(bytes_of(&got), pattern(0, 200 * BPMS));
        assert_eq!(got.iter().filter(|m| **m == UpstreamAudio::End).count(), 1);
    }

    /// A `finalize` before any audio, or twice in a row, half-closes nothing.
    #[actix_rt::test]
    async fn finalize_without_new_audio_does_nothing() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(audio(0, 100 * BPMS));
        rig.buffer.do_send(EndOfAudio);
        let got = first.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert_eq!(got.len(), 2, "one frame, then End");
        let hc = rig
            .supervisor
            .wait_count::<UpstreamHalfClosed>(1, WAIT)
            .await;
        assert_eq!(hc[0].reason, HalfCloseReason::EndOfAudio);
        assert_eq!(hc.len(), 1);
    }

    /// Audio after a `finalize` is not sent on the half-closed stream; it waits for the next one.
    #[actix_rt::test]
    async fn audio_after_finalize_waits_for_the_next_stream() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 200 * BPMS));
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(audio(200 * BPMS, 100 * BPMS));
        let got = first.wait_for::<UpstreamAudio>(WAIT, ended).await;
        assert_eq!(bytes_of(&got), pattern(0, 200 * BPMS));
        let second = attach(&rig, 2, Resume::AfterSent);
        let got = second.wait_count::<UpstreamAudio>(1, WAIT).await;
        assert_eq!(bytes_of(&got), pattern(200 * BPMS, 100 * BPMS));
        assert!(
            !ended(&got),
            "the finalize marker is consumed by the first stream"
        );
        assert_eq!(
            first.all::<UpstreamAudio>().len(),
            3,
            "first: 2 frames + End"
        );
    }

    /// A detached stream gets nothing more; audio keeps being buffered for the next one.
    #[actix_rt::test]
    async fn detach_stops_sending() {
        let rig = rig(unpaced(), 500);
        let first = attach(&rig, 1, Resume::FromMs(0));
        rig.buffer.do_send(audio(0, 200 * BPMS));
        first.wait_count::<UpstreamAudio>(2, WAIT).await;
        rig.buffer.do_send(DetachStream { stream_id: 7 });
        rig.buffer.do_send(audio(200 * BPMS, 100 * BPMS));
        first.wait_count::<UpstreamAudio>(3, WAIT).await;
        rig.buffer.do_send(DetachStream { stream_id: 1 });
        rig.buffer.do_send(audio(300 * BPMS, 100 * BPMS));
        let second = attach(&rig, 2, Resume::FromMs(300));
        let got = second.wait_count::<UpstreamAudio>(1, WAIT).await;
        assert_eq!(bytes_of(&got), pattern(300 * BPMS, 100 * BPMS));
        assert_eq!(
            first.all::<UpstreamAudio>().len(),
            3,
            "a wrong id does not detach; the right one does"
        );
    }

    /// `StopPipeline` stops the buffer: its mailbox closes.
    #[actix_rt::test]
    async fn stop_pipeline_stops() {
        let rig = rig(unpaced(), 500);
        assert!(rig.buffer.send(StopPipeline).await.is_ok());
        assert!(rig.buffer.send(Finalized { upto_ms: 0 }).await.is_err());
    }

    /// A client faster than the stream can be fed (attached, paced) overflows with `buffer_full`.
    #[actix_rt::test]
    async fn buffer_full_when_the_client_outruns_the_stream() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                max_buffer_ms: 1_000,
                max_lead_ms: 500,
                ..AudioSettings::default()
            },
            100_000,
        );
        let _stream = attach(&rig, 1, Resume::FromMs(0));
        for i in 0..20 {
            rig.buffer.do_send(audio(i * 100 * BPMS, 100 * BPMS));
        }
        let errors = rig.session.wait_count::<PipelineError>(1, WAIT).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, ErrorCode::BufferFull);
    }

    /// A 20 s backlog (audio buffered while no stream was attached) is fed at `catchup_speed`
    /// after the burst — 2 s at once, then 1.5 s of audio per second — until the stream has
    /// caught up, after which live audio is forwarded as it comes. The amount sent never exceeds
    /// burst + speed × elapsed (Google's "too fast" rule with the emulator's 10 s and 2×).
    #[actix_rt::test]
    async fn backlog_catches_up_at_catchup_speed() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                max_lead_ms: 2_000,
                catchup_speed: 1.5,
                max_buffer_ms: 100_000,
                max_replay_ms: 100_000,
                gap_close_ms: 0,
                ..AudioSettings::default()
            },
            100_000,
        );
        rig.buffer.do_send(audio(0, 20_000 * BPMS));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stream = attach(&rig, 1, Resume::FromMs(0));
        let t0 = tokio::time::Instant::now();
        let sent_ms = |log: &ProbeLog| frames(&log.all::<UpstreamAudio>()).len() as u64 * 100;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(sent_ms(&stream), 2_000, "the burst at once");
        let mut live_from = None;
        for second in 1..=40u64 {
            // Live audio keeps coming at real time meanwhile.
            let at = (20_000 + (second - 1) * 1_000) as usize;
            rig.buffer.do_send(audio(at * BPMS, 1_000 * BPMS));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let sent = sent_ms(&stream);
            let elapsed_ms = t0.elapsed().as_millis() as u64;
            assert!(
                sent <= 10_000 + 2 * elapsed_ms,
                "too fast at {second} s: {sent} ms"
            );
            let accepted = 20_000 + second * 1_000;
            if second <= 30 {
                let expected = (2_000 + 1_500 * second).min(accepted);
                assert!(
                    sent.abs_diff(expected) <= 100,
                    "at {second} s: sent {sent} ms, expected about {expected}"
                );
            }
            if sent == accepted && live_from.is_none() {
                live_from = Some(second);
            }
        }
        // 2 + 1.5 t = 20 + t → caught up at t = 36 s; live from then on.
        assert!(
            matches!(live_from, Some(s) if (35..=37).contains(&s)),
            "caught up at {live_from:?} s"
        );
    }

    /// No client audio for `gap_close_ms`: the stream is half-closed (reason Gap) at the end of the
    /// audio; the next audio is announced once with `AudioPending` (as the first audio was).
    #[actix_rt::test]
    async fn an_audio_gap_half_closes_and_new_audio_is_announced() {
        tokio::time::pause();
        let rig = rig(
            AudioSettings {
                gap_close_ms: 3_000,
                ..unpaced()
            },
            500,
        );
        rig.buffer.do_send(audio(0, 500 * BPMS));
        let pending = rig.supervisor.wait_count::<AudioPending>(1, WAIT).await;
        assert_eq!(pending.len(), 1, "the first audio is announced");
        let stream = attach(&rig, 1, Resume::AfterSent);
        for i in 1..5 {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            rig.buffer.do_send(audio(i * 500 * BPMS, 500 * BPMS));
        }
        tokio::time::sleep(Duration::from_millis(2_900)).await;
        assert!(
            rig.supervisor.all::<UpstreamHalfClosed>().is_empty(),
            "audio kept coming"
        );
        let got = stream
            .wait_for::<UpstreamAudio>(Duration::from_secs(1), ended)
            .await;
        assert!(ended(&got), "half-closed after 3 s without audio");
        assert_eq!(bytes_of(&got), pattern(0, 2_500 * BPMS));
        let hc = rig
            .supervisor
            .wait_count::<UpstreamHalfClosed>(1, WAIT)
            .await;
        assert_eq!((hc[0].reason, hc[0].at_ms), (HalfCloseReason::Gap, 2_500));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            rig.supervisor.all::<UpstreamHalfClosed>().len(),
            1,
            "one gap, one close"
        );
        assert_eq!(rig.supervisor.all::<AudioPending>().len(), 1);
        rig.buffer.do_send(audio(2_500 * BPMS, 300 * BPMS));
        rig.buffer.do_send(audio(2_800 * BPMS, 300 * BPMS));
        let pending = rig.supervisor.wait_count::<AudioPending>(2, WAIT).await;
        assert_eq!(pending.len(), 2, "announced again after the gap");
        let next = attach(&rig, 2, Resume::AfterSent);
        let got = next.wait_count::<UpstreamAudio>(6, WAIT).await;
        assert_eq!(bytes_of(&got), pattern(2_500 * BPMS, 600 * BPMS));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            rig.supervisor.all::<AudioPending>().len(),
            2,
            "once per half-close"
        );
    }

    /// Audio that arrived before a `finalize` half-close was reached is announced at the
    /// half-close; a `stop` with no audio at all is announced too (its stream only half-closes).
    #[actix_rt::test]
    async fn pending_audio_and_stop_are_announced() {
        let rig = rig(unpaced(), 500);
        let stream = attach(&rig, 1, Resume::AfterSent);
        rig.buffer.do_send(audio(0, 100 * BPMS));
        rig.buffer.do_send(Finalize);
        rig.buffer.do_send(audio(100 * BPMS, 100 * BPMS));
        stream.wait_for::<UpstreamAudio>(WAIT, ended).await;
        let pending = rig.supervisor.wait_count::<AudioPending>(1, WAIT).await;
        assert_eq!(pending.len(), 1);

        let rig = rig_fn_stop_only().await;
        assert_eq!(
            rig.supervisor
                .wait_count::<AudioPending>(1, WAIT)
                .await
                .len(),
            1
        );
    }

    async fn rig_fn_stop_only() -> Rig {
        let rig = rig(unpaced(), 500);
        rig.buffer.do_send(EndOfAudio);
        rig
    }
}
