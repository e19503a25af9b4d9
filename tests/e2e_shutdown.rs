//! Graceful shutdown of the real `voxgate serve` process: on SIGTERM an open session is warned,
//! keeps streaming through the grace period, then is flushed: it receives the finals of all the
//! audio it sent, `error shutting_down` and Close 1001; the process exits successfully.

mod common;

use std::time::Duration;

use common::process::*;
use serde_json::json;
use voxgate_emulator::synth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_warns_flushes_and_closes_open_sessions_with_1001() {
    // Two utterances streamed at real time; SIGTERM arrives during the first, and the grace
    // period outlasts the audio by a second, during which the client sends nothing (no `stop`).
    let text = "before the signal. during the grace period";
    let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
    let grace = format!("{:.1}", audio.len() as f64 / 32_000.0 + 1.0);
    let emulator = emulator(&[]);
    let gateway = gateway(
        &emulator,
        &[("VOXGATE_SERVER__SHUTDOWN_GRACE_SECS", &grace)],
    );
    let mut client = connect(&gateway.addr, "encoding=LINEAR16&sample_rate_hz=16000").await;
    client.expect_type("ready").await;
    let terminated = tokio::task::spawn_blocking(move || gateway.terminate());
    let mut rx = Received::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for chunk in audio.chunks(3_200) {
        ticker.tick().await;
        client.send_binary(chunk).await;
    }
    // Past the grace period: the server flushes, sends its finals and closes.
    loop {
        match client.next_event(Duration::from_secs(10)).await {
            common::Event::Json(v) => rx.messages.push(v),
            common::Event::Close(c) => {
                rx.close = c;
                break;
            }
            common::Event::Ping => {}
            other => panic!("unexpected {other:?}; {rx:?}"),
        }
    }
    let warning = rx.of_type("warning");
    assert_eq!(
        warning.first().map(|w| w["code"].clone()),
        Some(json!("shutting_down")),
        "{rx:?}"
    );
    assert_eq!(
        rx.final_text(),
        synth::expected_words(text).join(" "),
        "{rx:?}"
    );
    let error = rx.of_type("error");
    assert_eq!(error.len(), 1, "{rx:?}");
    assert_eq!(error[0]["code"], "shutting_down");
    assert_eq!(error[0]["retryable"], true);
    assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1001), "{rx:?}");
    let status = terminated.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "voxgate serve exit status after SIGTERM: {status:?}"
    );
}
