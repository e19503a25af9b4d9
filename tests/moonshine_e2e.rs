//! The Moonshine engine end to end on real human speech, through a real `voxgate serve` on
//! loopback (`[local] engine = "moonshine"`, the default): audio is streamed over the WebSocket in
//! 100 ms frames at real time, many sessions at once.
//!
//! - The LibriVox clips of `pocketsphinx-testdata` (16 kHz read speech): WER ≤ 5 %.
//! - The Asterisk prompts (8 kHz telephone speech, see `common::asterisk`): WER ≤ 10 %. CI
//!   streams a fixed subset (every fourth prompt of five words or more and at most 30 s);
//!   `VOXGATE_ASTERISK_ALL=1` streams every prompt.
//! - For both, every session's finals are word for word what the engine gives when its segments
//!   are cut from the whole file and each is decoded directly: streaming loses nothing.
//! - Overload is answered with `busy` at once, and a missing model stops the start-up with a
//!   message naming the file and the command that installs it.

#![cfg(feature = "local")]

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::asterisk::{self, Prompt};
use common::librivox::{self, word_error_rate};
use common::process::*;
use common::segments;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_actors::audio::{AudioFormat, Encoding};
use voxgate_actors::recognizer::local::moonshine::{self, model::MoonshineModel};
use voxgate_actors::recognizer::local::segment_engine::stream_settings;
use voxgate_actors::settings::LocalSettings;

/// Sessions streamed at once.
const CONCURRENT_SESSIONS: usize = 12;

/// The accuracy tests measure words, not admission (tested apart): a machine shared with other
/// tests must not turn their sessions away.
const NO_ADMISSION_LIMIT: [(&str, &str); 2] = [
    ("VOXGATE_LOCAL__MAX_LOAD", "1.0"),
    ("VOXGATE_LOCAL__MAX_QUEUE_WAIT_MS", "60000"),
];

/// One recording to stream, with its reference.
#[derive(Debug, Clone)]
struct Recording {
    name: String,
    rate: u32,
    samples: Vec<i16>,
    reference: Vec<String>,
}

/// The process's model, for direct decoding.
fn model() -> &'static Mutex<MoonshineModel> {
    static MODEL: OnceLock<Mutex<MoonshineModel>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let files = moonshine::model_files(&LocalSettings::default());
        Mutex::new(MoonshineModel::load(&files).unwrap_or_else(|e| panic!("{e}")))
    })
}

/// What the engine says for a recording fed directly (`common::segments`).
fn direct_text(recording: &Recording) -> String {
    let format = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: recording.rate,
    };
    let bytes: Vec<u8> = recording
        .samples
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let settings = stream_settings(&LocalSettings::default(), moonshine::MODEL_TRAITS);
    let mut model = model().lock().unwrap_or_else(|p| p.into_inner());
    segments::direct_text(&mut *model, &settings, format, &bytes)
}

/// Streams `recording` in 100 ms frames at real time, then `stop`; everything the client got.
async fn stream(addr: String, recording: Recording) -> Received {
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":recording.rate,
        "language_code":"en-US","interim_results":true});
    let (mut sink, reader) = start_session_with(&addr, &start, Duration::from_secs(60)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let frame_bytes = recording.rate as usize / 10 * 2;
    let bytes: Vec<u8> = recording
        .samples
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    for chunk in bytes.chunks(frame_bytes) {
        ticker.tick().await;
        if let Err(e) = sink.send(Message::Binary(chunk.to_vec().into())).await {
            // The server closed the session: what it said is in the reader's messages.
            println!("{}: send: {e}", recording.name);
            break;
        }
    }
    let _ = sink
        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await;
    reader.await.unwrap_or_else(|e| panic!("reader: {e}"))
}

fn moonshine_gateway(env: &[(&str, &str)]) -> Process {
    let mut all = vec![
        ("VOXGATE_RECOGNIZER__BACKEND", "local"),
        ("VOXGATE_LOCAL__ENGINE", "moonshine"),
    ];
    all.extend_from_slice(env);
    Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &all,
    )
}

/// Streams every recording (`CONCURRENT_SESSIONS` at a time) and checks each session and its
/// words against the direct decoding; returns the streamed WER (errors, words, rate).
async fn stream_all(addr: &str, recordings: Vec<Recording>, what: &str) -> (usize, usize, f64) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SESSIONS));
    let sessions = recordings.iter().cloned().map(|r| {
        let slots = slots.clone();
        let addr = addr.to_string();
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            stream(addr, r).await
        })
    });
    let received = futures_util::future::join_all(sessions).await;
    let mut streamed = Vec::new();
    for (recording, rx) in recordings.iter().zip(received) {
        let rx = rx.unwrap_or_else(|e| panic!("session task: {e}"));
        let ctx = format!("{what}, {}: {:#?}", recording.name, rx.messages);
        assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{ctx}");
        assert_eq!(rx.of_type("closed").len(), 1, "{ctx}");
        let text = rx.final_text();
        let direct = direct_text(recording);
        let words = asterisk::normalise(&text);
        println!("{what}: {}: {text}", recording.name);
        assert_eq!(
            words,
            asterisk::normalise(&direct),
            "{what}, {}: streamed vs fed directly",
            recording.name
        );
        streamed.push(words);
    }
    let pairs: Vec<(&[String], &[String])> = recordings
        .iter()
        .zip(&streamed)
        .map(|(r, w)| (r.reference.as_slice(), w.as_slice()))
        .collect();
    let wer = word_error_rate(&pairs);
    println!("{what}: {} recordings, WER {wer:?}", recordings.len());
    wer
}

#[tokio::test]
async fn librivox_clips_through_serve() {
    let gateway = moonshine_gateway(&NO_ADMISSION_LIMIT);
    let recordings: Vec<Recording> = librivox::clips()
        .into_iter()
        .map(|c| Recording {
            name: c.id.clone(),
            rate: 16_000,
            reference: asterisk::normalise(&c.reference.join(" ")),
            samples: c.samples,
        })
        .collect();
    let (errors, words, wer) = stream_all(&gateway.addr, recordings, "LibriVox").await;
    assert!(wer <= 0.05, "LibriVox WER {errors}/{words} = {wer:.3}");
}

/// The prompts streamed: a fixed subset, or all with `VOXGATE_ASTERISK_ALL=1`.
fn asterisk_recordings() -> Vec<Recording> {
    let all = std::env::var("VOXGATE_ASTERISK_ALL").is_ok_and(|v| v == "1");
    let to_recording = |p: Prompt| Recording {
        name: p.key.clone(),
        rate: p.rate,
        reference: p.reference.clone(),
        samples: p.samples,
    };
    let prompts = asterisk::prompts();
    if all {
        return prompts.into_iter().map(to_recording).collect();
    }
    prompts
        .into_iter()
        .filter(|p| p.reference.len() >= 5 && p.seconds() <= 30.0)
        .step_by(4)
        .map(to_recording)
        .collect()
}

#[tokio::test]
async fn asterisk_prompts_through_serve() {
    // Many sessions from one address in a short time: lift the per-address connection rate.
    let mut env = NO_ADMISSION_LIMIT.to_vec();
    env.extend([
        ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1000"),
        ("VOXGATE_SERVER__CONNECTION_BURST_PER_IP", "1000"),
    ]);
    let gateway = moonshine_gateway(&env);
    let recordings = asterisk_recordings();
    let (errors, words, wer) = stream_all(&gateway.addr, recordings, "Asterisk").await;
    assert!(wer <= 0.10, "Asterisk WER {errors}/{words} = {wer:.3}");
}

/// A session arriving while finals keep the workers busier than `max_load` gets `busy`,
/// retryable, close 1013 — at once, not after a timeout.
#[tokio::test]
async fn overload_is_answered_with_busy() {
    let gateway = moonshine_gateway(&[
        ("VOXGATE_LOCAL__WORKERS", "1"),
        ("VOXGATE_LOCAL__MAX_LOAD", "0.000001"),
    ]);
    let clip = librivox::clips()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no clip"));
    let first = stream(
        gateway.addr.clone(),
        Recording {
            name: clip.id.clone(),
            rate: 16_000,
            reference: Vec::new(),
            samples: clip.samples[..16_000 * 3].to_vec(),
        },
    )
    .await;
    assert!(!first.final_text().is_empty(), "{:?}", first.messages);
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000});
    let mut second = connect(&gateway.addr, "").await;
    second.send_json(&start).await;
    second.expect_type("ready").await;
    second.send_binary(&[0u8; 16_000]).await;
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

/// Without the model, `voxgate serve` stops at start-up naming the missing file and the command
/// that installs it.
#[test]
fn a_missing_model_is_a_clear_startup_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"])
        .env("VOXGATE_RECOGNIZER__BACKEND", "local")
        .env("VOXGATE_LOCAL__MOONSHINE_DIR", "/nonexistent/moonshine")
        .output()
        .unwrap_or_else(|e| panic!("run voxgate: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/moonshine/encoder_model.ort"),
        "{stderr}"
    );
    assert!(
        stderr.contains("scripts/setup-offline-engine.sh"),
        "{stderr}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"])
        .env("VOXGATE_RECOGNIZER__BACKEND", "local")
        .env(
            "VOXGATE_LOCAL__ONNXRUNTIME_LIBRARY",
            "/nonexistent/libonnxruntime.so",
        )
        .output()
        .unwrap_or_else(|e| panic!("run voxgate: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(
        stderr.contains("scripts/setup-offline-engine.sh"),
        "{stderr}"
    );
}

#[test]
fn asterisk_normalisation() {
    let n = |t: &str| asterisk::normalise(t).join(" ");
    assert_eq!(n("Press 1, then #."), "press one then pound");
    assert_eq!(
        n("dial 1234 or *"),
        "dial one thousand two hundred thirty four or star"
    );
    assert_eq!(
        n("a 28.8 kilobit modem"),
        "a twenty eight point eight kilobit modem"
    );
    assert_eq!(n("3D audio, 100%"), "three d audio one hundred percent");
    assert_eq!(
        n("It's Mr. Smith's voice-mail"),
        "its mister smiths voice mail"
    );
    assert_eq!(n(&asterisk::drop_brackets("the [beep] tone")), "the tone");
}
