//! Webhooks offered to the native protocol, end to end: a native client whose `start` says
//! `"webhook": true` gets its own messages as ever, and the server's webhook receiver (a real
//! HTTP server started by the test) gets the same finals, signed and in order; a client that
//! does not ask posts nothing; a gateway without webhooks refuses the request with
//! `invalid_config`.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::{emulator, final_text};
use common::telephony::*;
use serde_json::{json, Value};
use voxgate_emulator::synth;

const TEXT: &str = "native clients may post their finals. to a webhook as well";

/// One native session: start (with or without `webhook`), speech at real time, stop.
async fn native_session(addr: &str, webhook: bool) -> (Vec<Value>, Option<(u16, String)>) {
    let url = format!("ws://{addr}/v1/listen");
    let auth = format!("Bearer {KEY}");
    let mut ws = open(&url, &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
    let start = json!({"type": "start", "encoding": "LINEAR16", "sample_rate_hz": 16000,
        "webhook": webhook});
    send_text(&mut ws, &start.to_string()).await;
    let ready = next_json(&mut ws).await;
    if ready["type"] != "ready" {
        let (mut rest, close) = read_until_close(&mut ws, Duration::from_secs(10)).await;
        rest.insert(0, ready);
        return (rest, close);
    }
    let audio = synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16);
    send_audio(&mut ws, &audio, 3_200).await;
    send_text(&mut ws, r#"{"type":"stop"}"#).await;
    let (mut messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
    messages.insert(0, ready);
    (messages, close)
}

/// The webhook gets what the client gets: the same finals, exact, signed, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_client_may_post_its_finals() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let gateway = telephony_gateway(&emulator, &[receiver.url("/native")], "");
    let addr = gateway.addr.to_string();
    let (posting, quiet) = tokio::join!(native_session(&addr, true), native_session(&addr, false));
    for (messages, close) in [&posting, &quiet] {
        assert_eq!(close.as_ref().map(|c| c.0), Some(1000), "{messages:?}");
        assert_eq!(final_text(messages), synth::expected_words(TEXT).join(" "));
    }
    let bodies = wait_ended(&receiver, 1).await;
    let session_id = posting.0[0]["session_id"].as_str().unwrap_or_default();
    assert_eq!(
        sessions(&bodies),
        vec![session_id.to_string()],
        "only the one that asked"
    );
    let events = of_session(&bodies, session_id);
    assert_in_order(&events);
    assert_eq!(track_text(&events, "mono"), final_text(&posting.0));
    let ended = events.last().copied().cloned().unwrap_or_default();
    assert_eq!(ended["type"], "session.ended");
    assert_eq!(ended["reason"], "closed");
    let closed = posting.0.iter().find(|m| m["type"] == "closed").cloned();
    assert_eq!(
        Some(&ended["summary"]["results"]),
        closed.as_ref().map(|c| &c["results"])
    );
}

/// Without `[webhooks]`, asking for one is refused before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_a_server_without_webhooks_is_refused() {
    let emulator = emulator(&[]);
    let env = emulator_env(&emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = gateway_with("", &env);
    let (messages, close) = native_session(&gateway.addr.to_string(), true).await;
    assert_eq!(
        messages.first().map(|m| m["code"].clone()),
        Some(json!("invalid_config"))
    );
    assert_eq!(close, Some((1008, "invalid_config".into())));
}
