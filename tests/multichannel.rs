//! The native protocol's `channels`: a stereo call recording (two interleaved μ-law channels of
//! emulator-encoded speech) through a real gateway; each channel is transcribed on its own and
//! every transcript names its channel; `closed` counts the finals of both.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::emulator;
use serde_json::{json, Value};
use voxgate_emulator::synth;

const LEFT: &str = "the left channel speaks first. then it pauses";
const RIGHT: &str = "while the right channel answers. in its own words";

/// μ-law silence, to even out the channels' lengths.
const MULAW_SILENCE: u8 = 0xff;

fn finals_of(messages: &[Value], channel: u64) -> String {
    messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .filter(|m| m["channel"] == channel)
        .filter_map(|m| m["transcript"].as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_interleaved_channels_are_transcribed_apart() {
    let emulator = emulator(&[]);
    let env = emulator_env(&emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = gateway_with("", &env);
    let url = format!("ws://{}/v1/listen", gateway.addr);
    let auth = format!("Bearer {KEY}");
    let mut ws = open(&url, &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
    let start = json!({"type": "start", "encoding": "MULAW", "sample_rate_hz": 8000,
        "channels": 2});
    send_text(&mut ws, &start.to_string()).await;
    assert_eq!(next_json(&mut ws).await["type"], "ready");
    let mut left = synth::encode(LEFT, 8_000, synth::SynthEncoding::Mulaw);
    let mut right = synth::encode(RIGHT, 8_000, synth::SynthEncoding::Mulaw);
    let len = left.len().max(right.len());
    left.resize(len, MULAW_SILENCE);
    right.resize(len, MULAW_SILENCE);
    let stereo: Vec<u8> = left
        .iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect();
    // 100 ms of both channels per frame; an odd split keeps a frame's last sample for the next.
    send_audio(&mut ws, &stereo, 1_601).await;
    send_text(&mut ws, r#"{"type":"stop"}"#).await;
    let (messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(close.map(|c| c.0), Some(1000), "{messages:?}");
    assert_eq!(
        finals_of(&messages, 0),
        synth::expected_words(LEFT).join(" ")
    );
    assert_eq!(
        finals_of(&messages, 1),
        synth::expected_words(RIGHT).join(" ")
    );
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    let closed = messages.iter().find(|m| m["type"] == "closed").cloned();
    assert_eq!(
        closed.map(|c| c["results"].clone()),
        Some(json!(finals)),
        "closed counts both channels' finals"
    );
}
