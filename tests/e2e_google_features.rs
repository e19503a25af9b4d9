//! The recognition features a session may ask for (`language_codes`, `profanity_filter`,
//! `endpointing`, `denoise`), end to end with real processes: `voxgate serve` on Google v2 passes
//! them on and reports each utterance's detected language; on v1 a feature v1 cannot honour is
//! refused with `invalid_config` naming it, while the ones v1 has are accepted.

mod common;

use std::time::Duration;

use common::process::{connect, emulator, gateway, start_session_with};
use futures_util::SinkExt as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth::{self, SynthEncoding};

fn start_with(features: Value) -> Value {
    let mut start = json!({"type": "start", "encoding": "LINEAR16", "sample_rate_hz": 16000,
        "interim_results": false});
    if let (Some(start), Some(features)) = (start.as_object_mut(), features.as_object()) {
        start.extend(features.clone());
    }
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_takes_every_feature_and_reports_the_language_heard() {
    let emulator = emulator(&["--apis", "v2"]);
    let gateway = gateway(
        &emulator,
        &[
            ("VOXGATE_GOOGLE__API", "v2"),
            ("VOXGATE_GOOGLE__PROJECT", "voxgate-test"),
        ],
    );
    let start = start_with(json!({"language_codes": ["en-US", "fr-FR"],
        "profanity_filter": true, "endpointing": "short", "denoise": true}));
    let (mut sink, received) =
        start_session_with(&gateway.addr, &start, Duration::from_secs(15)).await;
    let text = "hello there. fr bonjour le monde. goodbye now.";
    let audio = synth::encode(text, 16_000, SynthEncoding::Linear16);
    for chunk in audio.chunks(3_200) {
        sink.send(Message::binary(chunk.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
    sink.send(Message::text(json!({"type": "stop"}).to_string()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    let received = received.await.unwrap_or_else(|e| panic!("collector: {e}"));
    let finals: Vec<(String, String)> = received
        .of_type("transcript")
        .iter()
        .filter(|m| m["is_final"] == true)
        .map(|m| {
            (
                m["transcript"].as_str().unwrap_or_default().to_string(),
                m["language_code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = synth::expected_transcripts(text)
        .into_iter()
        .zip(["en-US", "fr-FR", "en-US"])
        .map(|(t, l)| (t, l.to_string()))
        .collect();
    assert_eq!(finals, expected, "{:#?}", received.messages);
    assert!(
        received.of_type("closed").len() == 1,
        "{:#?}",
        received.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_refuses_what_it_cannot_honour_by_name_and_takes_the_rest() {
    let emulator = emulator(&[]);
    let gateway = gateway(&emulator, &[]);
    for (field, value) in [
        ("endpointing", json!("supershort")),
        ("denoise", json!(true)),
    ] {
        let mut client = connect(&gateway.addr, "").await;
        client.send_json(&start_with(json!({ field: value }))).await;
        let error = client.expect_type("error").await;
        assert_eq!(error["code"], "invalid_config", "{field}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(field) && message.contains("Google Speech-to-Text v1"),
            "{field}: {message}"
        );
    }
    // What v1 has (alternative languages, the profanity filter) starts a session.
    let start = start_with(json!({"language_codes": ["en-US", "de-DE"], "profanity_filter": true}));
    let mut client = connect(&gateway.addr, "").await;
    client.send_json(&start).await;
    client.expect_type("ready").await;
}
