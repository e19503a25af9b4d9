//! jambonz's custom speech-to-text vendor API on `/jambonz`, end to end on loopback: a real
//! `voxgate serve` in front of the emulator, driven over a raw WebSocket exactly as a jambonz
//! voice gateway drives a custom vendor (`Authorization: Bearer`, `start`, binary L16 at 8 kHz,
//! `stop`, and the server closes): interim and final `transcription`s with the exact words of
//! emulator-encoded speech. Refusals (bad key, bad JSON, a wrong sample rate) are the documented
//! ones, and a session beside them is unaffected.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::{emulator, Process};
use serde_json::Value;
use voxgate_emulator::synth;

const TEXT: &str = "the quick brown fox. jumps over the lazy dog. jambonz calls voxgate";

fn jambonz_gateway(emulator: &Process) -> Process {
    let env = emulator_env(emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gateway_with("", &env)
}

fn url(gateway: &Process) -> String {
    format!("ws://{}/jambonz", gateway.addr)
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

/// A socket to `/jambonz` with the key, as jambonz opens it.
async fn connect(url: &str) -> Socket {
    open(url, &[("Authorization", &bearer())])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// The final transcripts, joined.
fn final_text(messages: &[Value]) -> String {
    messages
        .iter()
        .filter(|m| m["type"] == "transcription" && m["is_final"] == true)
        .filter_map(|m| m["alternatives"][0]["transcript"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A jambonz session: `start`, `text` spoken at 8 kHz in real time (20 ms frames, as a media
/// server sends them), `stop`; what came back, and the server's close.
async fn jambonz_session(
    ws: &mut Socket,
    start: &str,
    text: &str,
) -> (Vec<Value>, Option<(u16, String)>) {
    send_text(ws, start).await;
    let audio = synth::encode(text, 8_000, synth::SynthEncoding::Linear16);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    // Five 20 ms frames per 100 ms tick: real time without a timer per frame.
    for chunk in audio.chunks(1_600) {
        ticker.tick().await;
        for frame in chunk.chunks(320) {
            send_binary(ws, frame).await;
        }
    }
    send_text(ws, r#"{"type":"stop"}"#).await;
    read_until_close(ws, Duration::from_secs(20)).await
}

async fn send_binary(ws: &mut Socket, data: &[u8]) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Binary(data.to_vec().into()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// jambonz's start with interim results and hints: interim then final transcriptions in
/// jambonz's shape, the finals exactly the words, and after `stop` the server closes with 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jambonz_gets_interim_and_final_transcriptions() {
    let emulator = emulator(&[]);
    let gateway = jambonz_gateway(&emulator);
    let mut ws = connect(&url(&gateway)).await;
    let start = r#"{"type":"start","language":"en-US","format":"raw","encoding":"LINEAR16",
        "sampleRateHz":8000,"interimResults":true,"options":{"hints":["voxgate"],"hintsBoost":5}}"#;
    let (messages, close) = jambonz_session(&mut ws, start, TEXT).await;
    let ctx = format!("{messages:#?}");
    assert_eq!(
        final_text(&messages),
        synth::expected_words(TEXT).join(" "),
        "{ctx}"
    );
    for m in &messages {
        assert_eq!(m["type"], "transcription", "{ctx}");
        assert_eq!(m["channel"], 1, "{m}");
        assert!(m["language"].is_string(), "{m}");
        let alternative = &m["alternatives"][0];
        assert!(alternative["transcript"].is_string(), "{m}");
        let confidence = alternative["confidence"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&confidence), "{m}");
    }
    let first_interim = messages.iter().position(|m| m["is_final"] == false);
    let first_final = messages.iter().position(|m| m["is_final"] == true);
    assert!(
        matches!((first_interim, first_final), (Some(i), Some(f)) if i < f),
        "interims come before the first final; {ctx}"
    );
    assert_eq!(close, Some((1000, String::new())), "{ctx}");
}

/// Without `interimResults` only finals come, still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_interim_results_only_finals_come() {
    let emulator = emulator(&[]);
    let gateway = jambonz_gateway(&emulator);
    let mut ws = connect(&url(&gateway)).await;
    let text = "finals only. please";
    let start = r#"{"type":"start","language":"en-US","sampleRateHz":8000,"interimResults":false}"#;
    let (messages, close) = jambonz_session(&mut ws, start, text).await;
    assert!(
        messages.iter().all(|m| m["is_final"] == true),
        "{messages:#?}"
    );
    assert_eq!(final_text(&messages), synth::expected_words(text).join(" "));
    assert_eq!(close.map(|c| c.0), Some(1000));
}

/// The documented refusals: no key, a bad key or another scheme is HTTP 401 with jambonz's error
/// body; bad JSON is an `error` and 1007; a sample rate out of range an `error` and 1003; an
/// unknown message an `error` while the session goes on — and a session beside them gets its
/// words exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_a_good_session_unaffected() {
    let emulator = emulator(&[]);
    let gateway = jambonz_gateway(&emulator);
    let good = tokio::spawn({
        let url = url(&gateway);
        async move {
            let mut ws = connect(&url).await;
            let text = "beside the refusals";
            let start = r#"{"type":"start","language":"en-US","sampleRateHz":8000}"#;
            let (messages, close) = jambonz_session(&mut ws, start, text).await;
            assert_eq!(final_text(&messages), synth::expected_words(text).join(" "));
            assert_eq!(close.map(|c| c.0), Some(1000));
        }
    });
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-key")],
        vec![("Authorization", "Token dialect-key-0123456789")],
    ] {
        match open(&url(&gateway), &headers).await {
            Err((status, text)) => {
                assert_eq!(status, 401, "{text}");
                assert!(text.contains(r#""type":"error""#), "{text}");
            }
            Ok(_) => panic!("{headers:?} accepted"),
        }
    }
    for (sent, code, close) in [
        ("{not json", "invalid_json", 1007),
        (
            r#"{"type":"start","sampleRateHz":4000}"#,
            "unsupported_sample_rate",
            1003,
        ),
    ] {
        let mut ws = connect(&url(&gateway)).await;
        send_text(&mut ws, sent).await;
        let (messages, closed) = read_until_close(&mut ws, Duration::from_secs(10)).await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0]["type"], "error", "{messages:?}");
        let error = messages[0]["error"].as_str().unwrap_or("");
        assert!(error.starts_with(code), "{error}");
        assert_eq!(closed, Some((close, code.to_string())), "{sent}");
    }
    // An unknown message is answered and the session goes on to a clean end.
    let mut ws = connect(&url(&gateway)).await;
    send_text(&mut ws, r#"{"type":"pause"}"#).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    send_text(&mut ws, r#"{"type":"stop"}"#).await;
    let (messages, closed) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(closed.map(|c| c.0), Some(1000));
    good.await.unwrap_or_else(|e| panic!("good session: {e}"));
}
