//! End to end, real processes on loopback: a WebSocket client streams emulator-encoded audio in real
//! time through `voxgate serve` (the real Google client code) into `voxgate emulator`, and receives
//! interim and final transcripts equal to the encoded words, then `closed` and close 1000.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::process::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth;

const TEXT: &str = "the quick brown fox. jumps over the lazy dog. voxgate streams words";

#[derive(Clone, Copy, Debug)]
enum Framing {
    Binary,
    Base64,
    Mixed,
}

/// Streams `audio` in 100 ms frames paced at real time, then `stop`; returns what the client saw.
async fn stream_session(addr: &str, audio: Vec<u8>, framing: Framing) -> Received {
    let (mut sink, reader) = start_live_session(addr, Duration::from_secs(30)).await;

    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for (i, chunk) in audio.chunks(3_200).enumerate() {
        ticker.tick().await;
        let as_json = match framing {
            Framing::Binary => false,
            Framing::Base64 => true,
            Framing::Mixed => i % 3 == 1,
        };
        let msg = if as_json {
            let content = base64::engine::general_purpose::STANDARD.encode(chunk);
            Message::Text(
                json!({"type":"audio","content":content,"audio_id":format!("c{i}")})
                    .to_string()
                    .into(),
            )
        } else {
            Message::Binary(chunk.to_vec().into())
        };
        sink.send(msg).await.unwrap_or_else(|e| panic!("send: {e}"));
    }
    sink.send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send stop: {e}"));
    reader.await.unwrap_or_else(|e| panic!("reader: {e}"))
}

fn check_session(rx: &Received, framing: Framing, audio_ms: u64) {
    let ctx = format!("{framing:?}: {:#?}", rx.messages);
    assert_eq!(
        rx.final_text(),
        synth::expected_words(TEXT).join(" "),
        "{ctx}"
    );
    let transcripts = rx.of_type("transcript");
    let first_final = transcripts.iter().position(|m| m["is_final"] == true);
    let first_interim = transcripts.iter().position(|m| m["is_final"] == false);
    assert!(
        matches!((first_interim, first_final), (Some(i), Some(f)) if i < f),
        "interim results come before the first final; {ctx}"
    );
    // Final results are on the session clock: in order, inside the audio, words inside results.
    let mut last_end = 0;
    for m in transcripts.iter().filter(|m| m["is_final"] == true) {
        let (start, end) = (m["start_ms"].as_u64(), m["end_ms"].as_u64());
        let (Some(start), Some(end)) = (start, end) else {
            panic!("final without times: {m}");
        };
        assert!(
            start >= last_end && end > start && end <= audio_ms,
            "{m}; {ctx}"
        );
        last_end = end;
        for w in m["words"].as_array().into_iter().flatten() {
            let ws = w["start_ms"].as_u64().unwrap_or(0);
            let we = w["end_ms"].as_u64().unwrap_or(0);
            assert!(ws >= start && we <= end && we > ws, "word {w} outside {m}");
        }
    }
    let acks = rx.of_type("ack");
    assert!(!acks.is_empty(), "acks are sent; {ctx}");
    if matches!(framing, Framing::Base64) {
        assert!(
            acks.iter().any(|a| a["audio_id"].is_string()),
            "acks echo audio_id"
        );
    }
    let closed = rx.of_type("closed");
    assert_eq!(closed.len(), 1, "{ctx}");
    let closed_ms = closed[0]["audio_ms"].as_u64().unwrap_or(0);
    assert!(
        closed_ms.abs_diff(audio_ms) <= 1,
        "closed.audio_ms {closed_ms} vs {audio_ms}"
    );
    assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{ctx}");
}

/// Binary, base64 JSON and mixed framing, three concurrent sessions through one gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_stream_gets_exact_transcripts_in_every_framing() {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, &[]);
    let audio = synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16);
    let audio_ms = audio.len() as u64 / 32;
    let sessions = [Framing::Binary, Framing::Base64, Framing::Mixed].map(|framing| {
        let addr = gateway.addr.clone();
        let audio = audio.clone();
        tokio::spawn(async move { (framing, stream_session(&addr, audio, framing).await) })
    });
    for s in sessions {
        let (framing, rx) = s.await.unwrap_or_else(|e| panic!("session task: {e}"));
        check_session(&rx, framing, audio_ms);
    }
    // The gateway's metrics count what happened, once. A session's actor ends just after its
    // close frame is sent, so the gauge is polled until it settles.
    let addr = gateway.addr.parse().unwrap_or_else(|e| panic!("{e}"));
    let value = |metrics: &str, name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    let mut metrics = String::new();
    for _ in 0..100 {
        let (status, text) = common::http_get(addr, "/metrics", "").await;
        assert_eq!(status, 200);
        metrics = text;
        if value(&metrics, "voxgate_sessions_active ") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = |name: &str| value(&metrics, name);
    let audio_s = value("voxgate_audio_seconds_total ");
    assert!(
        (audio_s - 3.0 * audio_ms as f64 / 1000.0).abs() < 0.01,
        "{audio_s}"
    );
    assert_eq!(value("voxgate_sessions_total "), 3.0);
    assert_eq!(value("voxgate_sessions_active "), 0.0);
    assert_eq!(value("voxgate_transcripts_total{kind=\"final\"} "), 9.0);
}

/// With the emulator allowing 5 streams per HTTP/2 connection (Google: 100), 12 concurrent sessions
/// on one gateway worker are spread over at least 3 connections, and every one is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_spread_over_a_connection_pool() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let config = voxgate_emulator::EmulatorConfig {
        max_streams_per_connection: 5,
        ..Default::default()
    };
    let emulator = voxgate_emulator::spawn(listener, config)
        .await
        .unwrap_or_else(|e| panic!("emulator: {e}"));
    let endpoint = emulator.endpoint();
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "google"),
            ("VOXGATE_GOOGLE__AUTH", "none"),
            ("VOXGATE_GOOGLE__ENDPOINT", endpoint.as_str()),
            ("VOXGATE_GOOGLE__STREAMS_PER_CONNECTION", "5"),
            ("VOXGATE_SERVER__WORKERS", "1"),
        ],
    );
    let text = "pooled streams. all exact";
    let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
    let sessions: Vec<_> = (0..12)
        .map(|_| {
            let (addr, audio) = (gateway.addr.clone(), audio.clone());
            tokio::spawn(async move { stream_session(&addr, audio, Framing::Binary).await })
        })
        .collect();
    for s in sessions {
        let rx = s.await.unwrap_or_else(|e| panic!("session task: {e}"));
        assert_eq!(
            rx.final_text(),
            synth::expected_words(text).join(" "),
            "{rx:?}"
        );
    }
    let stats = emulator.stats();
    assert_eq!(stats.streams_opened, 12, "{stats:?}");
    assert!(stats.connections_accepted >= 3, "{stats:?}");
}
