//! PocketSphinx end to end on real human speech, real processes on loopback: every LibriVox clip of
//! `pocketsphinx-testdata` is streamed over the WebSocket in 100 ms frames at real time (all clips
//! at once), and the final transcripts are word for word what the engine says when fed the whole
//! file directly:
//! - through `voxgate serve` with `[recognizer] backend = "local"`, `[local] engine = "pocketsphinx"`;
//! - through `voxgate serve` (backend `google`, the real Google client code) into
//!   `voxgate emulator --recognizer pocketsphinx`.
//!
//! And when every decoder is in use, a new session gets `busy` (retryable, close 1013).

#![cfg(feature = "local")]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::librivox::{clips, normalise, word_error_rate, Clip};
use common::process::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::recognizer::local::engine::{PocketSphinxEngine, SpeechEngine};
use voxgate_actors::settings::LocalSettings;

/// The clips and what the engine says for each when fed the whole file directly.
fn direct() -> &'static Vec<(Clip, Vec<String>)> {
    static DIRECT: OnceLock<Vec<(Clip, Vec<String>)>> = OnceLock::new();
    DIRECT.get_or_init(|| {
        let mut engine =
            PocketSphinxEngine::load(&LocalSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        clips()
            .into_iter()
            .map(|clip| {
                engine.begin(true).unwrap_or_else(|e| panic!("{e}"));
                let mut results = engine.push(&clip.samples).unwrap_or_else(|e| panic!("{e}"));
                results.extend(engine.finish().unwrap_or_else(|e| panic!("{e}")));
                let text: Vec<String> = results
                    .into_iter()
                    .filter(|r| r.is_final)
                    .map(|r| r.transcript)
                    .collect();
                let words = normalise(&text.join(" "));
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
    let workers = direct().len().to_string();
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "local"),
            ("VOXGATE_LOCAL__ENGINE", "pocketsphinx"),
            ("VOXGATE_LOCAL__WORKERS", workers.as_str()),
        ],
    );
    every_clip_word_for_word(&gateway.addr, "serve (local)").await;
}

#[tokio::test]
async fn librivox_through_serve_into_the_pocketsphinx_emulator() {
    let workers = direct().len().to_string();
    let emulator = emulator(&[
        "--recognizer",
        "pocketsphinx",
        "--pocketsphinx-workers",
        workers.as_str(),
    ]);
    let gateway = gateway(&emulator, &[]);
    every_clip_word_for_word(&gateway.addr, "serve → emulator (pocketsphinx)").await;
}

/// One decoder, two sessions: the second gets `busy`, retryable, and close 1013.
#[tokio::test]
async fn a_session_without_a_free_decoder_gets_busy() {
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "local"),
            ("VOXGATE_LOCAL__ENGINE", "pocketsphinx"),
            ("VOXGATE_LOCAL__WORKERS", "1"),
        ],
    );
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000});
    let mut first = connect(&gateway.addr, "").await;
    first.send_json(&start).await;
    first.expect_type("ready").await;
    // An acknowledgement means the first session's audio reaches its stream: it holds the decoder.
    first.send_binary(&[0u8; 16_000]).await;
    first.expect_type("ack").await;
    let mut second = connect(&gateway.addr, "").await;
    second.send_json(&start).await;
    // The session is configured (`ready`); its first stream opens with its first audio and
    // finds no decoder.
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
    second.expect_close(1013, "busy").await;
}
