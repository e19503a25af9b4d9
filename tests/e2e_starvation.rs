//! A starved gateway, end to end with real processes on loopback: `voxgate serve` is stopped with
//! SIGSTOP for a few seconds while a client streams emulator-encoded speech at real time through
//! it, then continued with SIGCONT — what CPU starvation does to it, made deterministic: every
//! timer that came due during the stop fires at once when it runs again, before the audio and the
//! results that waited in its sockets meanwhile have been read.
//!
//! The promise under test: the gateway may be late, but every final is exactly one utterance of
//! the script, whole, once, in order, at its audio offsets. Each test's stop is longer than one
//! span after which the gateway acts on an absence — the audio gap after which it closes a silent
//! client's stream (`gap_close_ms`), or the time without a final after which it forces one
//! (`force_final_after_secs`) — shortened so that a short stop outlasts it; the client never
//! paused and finals came all along, so neither may happen. See docs/reliability.md ("A starved
//! gateway").

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth::{self, SynthEncoding};

/// 16 kHz LINEAR16.
const BYTES_PER_MS: usize = 32;
const CHUNK_MS: usize = 100;

/// Short utterances (the longest well under the forced-final time), numbered so that a split, a
/// lost or a repeated one shows.
const TEXT: &str = "alpha bravo charlie 0. delta echo foxtrot golf 1. hotel india 2. \
    juliet kilo lima mike 3. november oscar papa 4. quebec romeo sierra tango 5. \
    uniform victor 6. whiskey zulu alpha bravo 7. charlie delta echo 8. foxtrot golf hotel 9. \
    india juliet kilo 10. lima mike november oscar 11. papa quebec 12. romeo sierra tango 13.";

/// Sends SIGSTOP or SIGCONT to `pid`.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -{name}: {e}"));
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Streams `audio` at real time in 100 ms chunks; after `stop_at_ms` of audio the gateway is
/// stopped for `stall` (the client carries on sending: its audio waits in the socket), then
/// continued. Returns everything the client received.
async fn stream_through_a_stall(
    gateway: &Process,
    audio: &[u8],
    stop_at_ms: usize,
    stall: Duration,
) -> Received {
    let (mut sink, reader) = start_live_session(&gateway.addr, Duration::from_secs(60)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(CHUNK_MS as u64));
    let mut continue_at = None;
    for (i, chunk) in audio.chunks(CHUNK_MS * BYTES_PER_MS).enumerate() {
        ticker.tick().await;
        if i * CHUNK_MS == stop_at_ms {
            signal(gateway.pid(), "STOP");
            continue_at = Some(tokio::time::Instant::now() + stall);
        }
        if continue_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            signal(gateway.pid(), "CONT");
            continue_at = None;
        }
        sink.send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
    if continue_at.is_some() {
        signal(gateway.pid(), "CONT");
    }
    sink.send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send stop: {e}"));
    reader.await.unwrap_or_else(|e| panic!("reader: {e}"))
}

/// Every final is one utterance of `text`, whole, in order, each once, its words at their audio
/// offsets (±3 ms); the session ends with `closed` and no error.
fn check_every_final_exact(rx: &Received, text: &str, label: &str) {
    let errors = rx.of_type("error");
    assert!(errors.is_empty(), "{label}: errors {errors:?}");
    let finals: Vec<_> = rx
        .of_type("transcript")
        .into_iter()
        .filter(|m| m["is_final"] == true)
        .collect();
    let got: Vec<&str> = finals
        .iter()
        .filter_map(|m| m["transcript"].as_str())
        .collect();
    assert_eq!(got, synth::expected_transcripts(text), "{label}: finals");
    let words: Vec<_> = finals
        .iter()
        .flat_map(|m| m["words"].as_array().into_iter().flatten().cloned())
        .collect();
    let timeline = synth::encode_with_timeline(text, 16_000, SynthEncoding::Linear16);
    assert_words_at_their_offsets(&words, &timeline, label);
    assert_eq!(rx.of_type("closed").len(), 1, "{label}");
    assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{label}");
}

/// Where the stop begins: inside the fourth utterance, after its first two words (on a chunk
/// boundary), less than the forced-final time after the third utterance's final.
fn stop_point(timeline: &synth::Encoded) -> usize {
    let third_word = timeline
        .words
        .iter()
        .find(|w| w.word == "lima")
        .map(|w| (w.start_sample / 16) as usize)
        .unwrap_or_else(|| panic!("no lima"));
    (third_word / CHUNK_MS) * CHUNK_MS
}

/// Streams [`TEXT`] through `gateway`, stopped for 4 s at [`stop_point`]; checks every final.
async fn stall_and_check(gateway: &Process, label: &str) {
    let timeline = synth::encode_with_timeline(TEXT, 16_000, SynthEncoding::Linear16);
    let stop_at_ms = stop_point(&timeline);
    let rx =
        stream_through_a_stall(gateway, &timeline.audio, stop_at_ms, Duration::from_secs(4)).await;
    check_every_final_exact(&rx, TEXT, label);
    // The stall was seen (a timer fired late), and cost no restart.
    assert!(
        metric(&gateway.addr, "voxgate_stalled_timers_total").await >= 1.0,
        "{label}: no stall seen"
    );
    assert_eq!(
        metric(&gateway.addr, "voxgate_stream_restarts_total").await,
        0.0,
        "{label}"
    );
}

/// The gateway is stopped for 4 s in the middle of an utterance, longer than its audio gap (2 s):
/// when it runs again its gap check comes first, but the client never paused — its audio waited
/// in the socket. The stream is not closed there: every final comes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_audio_gap_splits_no_utterance() {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, &[("VOXGATE_AUDIO__GAP_CLOSE_MS", "2000")]);
    stall_and_check(&gateway, "stopped 4 s, gap 2 s").await;
}

/// The gateway is stopped for 4 s in the middle of an utterance, 3 s after the last final it saw
/// come due during the stop (no audio gap here): finals came all along, the gateway could not
/// read them. No final is forced: no word is cut off an utterance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_forced_final_time_cuts_no_utterance() {
    let emulator = emulator(&[]);
    let gateway = gateway(
        &emulator,
        &[
            ("VOXGATE_AUDIO__GAP_CLOSE_MS", "0"),
            ("VOXGATE_SUPERVISION__FORCE_FINAL_AFTER_SECS", "3"),
        ],
    );
    stall_and_check(&gateway, "stopped 4 s, forced final after 3 s").await;
}

/// The gateway is stopped for 4 s in the middle of an utterance, longer than the session's own
/// timeouts (nothing at all from the client for 2 s drops it, no audio for 2 s ends it with
/// `idle_timeout`): the client sent all along, its frames waited in the socket. The session goes
/// on, and every final comes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_session_timeouts_ends_no_session() {
    let emulator = emulator(&[]);
    let gateway = gateway(
        &emulator,
        &[
            ("VOXGATE_SESSION__HEARTBEAT_INTERVAL_SECS", "1"),
            ("VOXGATE_SESSION__CLIENT_TIMEOUT_SECS", "2"),
            ("VOXGATE_SESSION__IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    stall_and_check(&gateway, "stopped 4 s, client and idle timeouts 2 s").await;
}
