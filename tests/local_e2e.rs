//! PocketSphinx end to end on real human speech, real processes on loopback: every LibriVox clip of
//! `pocketsphinx-testdata` is streamed over the WebSocket in 100 ms frames at real time (all clips
//! at once, on two shared workers), and the final transcripts are word for word what the engine
//! says when the whole file is cut into the same segments and each is decoded directly:
//! - through `voxgate serve` with `[recognizer] backend = "local"`, `[local] engine = "pocketsphinx"`;
//! - through `voxgate serve` (backend `google`, the real Google client code) into
//!   `voxgate emulator --recognizer pocketsphinx`.
//!
//! And when finals keep the workers busier than `max_load`, a new session gets `busy`
//! (retryable, close 1013).

#![cfg(feature = "local")]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::librivox::{clips, normalise, word_error_rate, Clip};
use common::process::*;
use common::segments;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::audio::{AudioFormat, Encoding};
use voxgate_actors::recognizer::local::pocketsphinx::{self, PocketSphinxDecoder};
use voxgate_actors::recognizer::local::segment_engine::stream_settings;
use voxgate_actors::settings::LocalSettings;

/// Workers of the gateways: fewer than the clips streamed at once.
const WORKERS: &str = "2";

/// The clips and what the engine says for each when fed the whole file directly.
fn direct() -> &'static Vec<(Clip, Vec<String>)> {
    static DIRECT: OnceLock<Vec<(Clip, Vec<String>)>> = OnceLock::new();
    DIRECT.get_or_init(|| {
        let settings = LocalSettings::default();
        let mut decoder = PocketSphinxDecoder::load(&settings).unwrap_or_else(|e| panic!("{e}"));
        let cuts = stream_settings(&settings, pocketsphinx::MODEL_TRAITS);
        let format = AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        };
        clips()
            .into_iter()
            .map(|clip| {
                let text = segments::direct_text(&mut decoder, &cuts, format, &clip.bytes());
                let words = normalise(&text);
                (clip, words)
            })
            .collect()
    })
}

/// Streams `audio` (LINEAR16, 16 kHz) in 100 ms binary frames at real time, then `stop`; returns
/// everything the client received and the close code.
async fn stream_session(addr: String, audio: Vec<u8>) -> Received {
    let (mut sink, reader) = start_live_session(&addr, Duration::from_secs(60)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for chunk in audio.chunks(3_200) {
        ticker.tick().await;
        sink.send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
    sink.send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send stop: {e}"));
    reader.await.unwrap_or_else(|e| panic!("reader: {e}"))
}

/// Streams every clip through the gateway at `addr` at once and checks the words, the session
/// end, and the error rate against the direct decoding.
async fn every_clip_word_for_word(addr: &str, path: &str) {
    let direct = direct();
    let sessions = direct
        .iter()
        .map(|(clip, _)| tokio::spawn(stream_session(addr.to_string(), clip.bytes())));
    let received = futures_util::future::join_all(sessions).await;
    let mut streamed = Vec::new();
    for ((clip, expected), rx) in direct.iter().zip(received) {
        let rx = rx.unwrap_or_else(|e| panic!("session task: {e}"));
        let ctx = format!("{path}, {}: {:#?}", clip.id, rx.messages);
        assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{ctx}");
        assert_eq!(rx.of_type("closed").len(), 1, "{ctx}");
        assert!(!rx.of_type("transcript").is_empty(), "{ctx}");
        let words = normalise(&rx.final_text());
        println!("{path}: {}: {}", clip.id, words.join(" "));
        assert_eq!(&words, expected, "{path}: {} words differ", clip.id);
        streamed.push(words);
    }
    let pairs: Vec<(&[String], &[String])> = direct
        .iter()
        .zip(&streamed)
        .map(|((c, _), w)| (c.reference.as_slice(), w.as_slice()))
        .collect();
    let direct_pairs: Vec<(&[String], &[String])> = direct
        .iter()
        .map(|(c, w)| (c.reference.as_slice(), w.as_slice()))
        .collect();
    let (through, fed) = (word_error_rate(&pairs), word_error_rate(&direct_pairs));
    println!("{path}: WER {through:?}, engine fed directly {fed:?}");
    assert!(through.0 <= fed.0, "{path}: {through:?} vs {fed:?}");
}

#[tokio::test]
async fn librivox_through_serve_with_the_local_backend() {
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "local"),
            ("VOXGATE_LOCAL__ENGINE", "pocketsphinx"),
            ("VOXGATE_LOCAL__WORKERS", WORKERS),
            // Words are measured here, admission apart: a busy test machine must not refuse.
            ("VOXGATE_LOCAL__MAX_LOAD", "1.0"),
            ("VOXGATE_LOCAL__MAX_QUEUE_WAIT_MS", "60000"),
        ],
    );
    every_clip_word_for_word(&gateway.addr, "serve (local)").await;
}

#[tokio::test]
async fn librivox_through_serve_into_the_pocketsphinx_emulator() {
    let emulator = emulator(&[
        "--recognizer",
        "pocketsphinx",
        "--pocketsphinx-workers",
        WORKERS,
    ]);
    let gateway = gateway(&emulator, &[]);
    every_clip_word_for_word(&gateway.addr, "serve → emulator (pocketsphinx)").await;
}

/// A session arriving while finals keep the workers busier than `max_load` gets `busy`,
/// retryable, close 1013 — at once, with the measured figures, not after a timeout.
#[tokio::test]
async fn overload_is_answered_with_busy() {
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "local"),
            ("VOXGATE_LOCAL__ENGINE", "pocketsphinx"),
            ("VOXGATE_LOCAL__WORKERS", "1"),
            ("VOXGATE_LOCAL__MAX_LOAD", "0.000001"),
        ],
    );
    let (clip, _) = &direct()[0];
    let first = stream_session(gateway.addr.clone(), clip.bytes()[..96_000].to_vec()).await;
    assert!(!first.final_text().is_empty(), "{:?}", first.messages);
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000});
    let mut second = connect(&gateway.addr, "").await;
    second.send_json(&start).await;
    // The session is configured (`ready`); its first stream opens with its first audio and is
    // refused.
    second.expect_type("ready").await;
    second.send_binary(&[0u8; 16_000]).await;
    // The audio may be acknowledged (it left the buffer) before the stream reports busy.
    let error = loop {
        let msg = second.expect_json().await;
        if msg["type"] != "ack" {
            break msg;
        }
    };
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "busy", "{error}");
    assert_eq!(error["retryable"], true, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("% busy")),
        "{error}"
    );
    second.expect_close(1013, "busy").await;
}
