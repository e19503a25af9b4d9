//! Tests of the audio buffer actor, with probes in place of the session, supervisor and stream.

use super::*;
use crate::audio::Encoding;
use crate::restart_policy::RestartPolicy;
use crate::settings::SupervisionSettings;
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
    let buffer = AudioBuffer::new(
        Arc::from("s1"),
        L16,
        settings,
        ack_interval_ms,
        RestartPolicy::from_settings(&SupervisionSettings::default()).stall_tolerance(),
        links,
    )
    .start();
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

/// A rig whose streams are half-closed after 3 s without audio: 500 ms of audio came, and stream
/// 1 is attached after it was announced.
async fn closing_after_3_s_without_audio() -> (Rig, ProbeLog) {
    let rig = rig(
        AudioSettings {
            gap_close_ms: 3_000,
            ..unpaced()
        },
        500,
    );
    rig.buffer.do_send(audio(0, 500 * BPMS));
    rig.supervisor.wait_count::<AudioPending>(1, WAIT).await;
    let stream = attach(&rig, 1, Resume::AfterSent);
    (rig, stream)
}

/// A stalled gateway — stopped, or starved of CPU — fires its late timers before it reads the
/// audio that waited in the socket meanwhile: the gap look, due 3 s after the last audio, runs
/// 5 s after it, when the client never paused. It concludes nothing (it was late): the audio
/// read next keeps the stream; a real pause afterwards still closes it, `gap_close_ms` after the
/// last audio (and the confirming look `stall_tolerance_ms` later).
#[actix_rt::test]
async fn a_stalled_gateway_takes_no_unread_audio_for_a_gap() {
    tokio::time::pause();
    let (rig, stream) = closing_after_3_s_without_audio().await;
    stream.wait_count::<UpstreamAudio>(5, WAIT).await;
    // The stall: the clock jumps 5 s at once; the gap look (due at 3 s) runs late.
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Then the gateway reads what waited: 5 s of audio.
    rig.buffer.do_send(audio(500 * BPMS, 5_000 * BPMS));
    tokio::time::sleep(Duration::from_millis(2_900)).await;
    assert!(
        rig.supervisor.all::<UpstreamHalfClosed>().is_empty(),
        "no gap: the client never paused"
    );
    let got = stream
        .wait_for::<UpstreamAudio>(Duration::from_secs(1), ended)
        .await;
    assert!(ended(&got), "a real pause still closes the stream");
    assert_eq!(bytes_of(&got), pattern(0, 5_500 * BPMS));
    let hc = rig.supervisor.all::<UpstreamHalfClosed>();
    assert_eq!(hc.len(), 1);
    assert_eq!((hc[0].reason, hc[0].at_ms), (HalfCloseReason::Gap, 5_500));
}

/// No client audio for `gap_close_ms`: the stream is half-closed (reason Gap) at the end of the
/// audio; the next audio is announced once with `AudioPending` (as the first audio was).
#[actix_rt::test]
async fn an_audio_gap_half_closes_and_new_audio_is_announced() {
    tokio::time::pause();
    let (rig, stream) = closing_after_3_s_without_audio().await;
    let pending = rig.supervisor.all::<AudioPending>();
    assert_eq!(pending.len(), 1, "the first audio is announced");
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

/// A forced final half-closes the attached stream at once, after the audio sent to it (reason
/// ForcedFinal); later audio is announced for the next stream, which continues from the forced
/// final's end and is not half-closed there again. A stale request changes nothing.
#[actix_rt::test]
async fn a_forced_final_half_closes_at_once_and_is_no_marker() {
    let rig = rig(unpaced(), 500);
    let first = attach(&rig, 1, Resume::AfterSent);
    rig.buffer.do_send(audio(0, 1_000 * BPMS));
    first.wait_count::<UpstreamAudio>(10, WAIT).await;
    rig.buffer.do_send(ForceFinal { stream_id: 1 });
    let got = first.wait_for::<UpstreamAudio>(WAIT, ended).await;
    assert!(ended(&got));
    assert_eq!(bytes_of(&got), pattern(0, 1_000 * BPMS));
    let hc = rig
        .supervisor
        .wait_count::<UpstreamHalfClosed>(1, WAIT)
        .await;
    assert_eq!(
        (hc[0].stream_id, hc[0].reason, hc[0].at_ms),
        (1, HalfCloseReason::ForcedFinal, 1_000)
    );
    rig.buffer.do_send(audio(1_000 * BPMS, 500 * BPMS));
    let pending = rig.supervisor.wait_count::<AudioPending>(1, WAIT).await;
    assert_eq!(
        pending.len(),
        1,
        "the audio after it waits for the next stream"
    );
    rig.buffer.do_send(Finalized { upto_ms: 600 });
    let second = attach(&rig, 2, Resume::FromMs(600));
    rig.buffer.do_send(ForceFinal { stream_id: 1 });
    let got = second.wait_count::<UpstreamAudio>(9, WAIT).await;
    assert_eq!(frames(&got)[0].start_ms, 600);
    assert_eq!(bytes_of(&got), pattern(600 * BPMS, 900 * BPMS));
    rig.buffer.do_send(audio(1_500 * BPMS, 100 * BPMS));
    let got = second.wait_count::<UpstreamAudio>(10, WAIT).await;
    assert!(!ended(&got), "not half-closed again");
    assert_eq!(rig.supervisor.all::<UpstreamHalfClosed>().len(), 1);
}
