//! The recognition features a session may ask for (`language_codes`, `profanity_filter`,
//! `endpointing`, `denoise`, `voice_activity_events`), end to end with real processes: `voxgate
//! serve` on Google v2 passes them on and reports each utterance's detected language, the voice
//! activity the emulator hears (at the times the synthetic script puts speech), and the billed
//! audio in `closed`; on v1 a feature v1 cannot honour is refused with `invalid_config` naming it,
//! while the ones v1 has are accepted.

mod common;

use std::time::Duration;

use common::process::{connect, emulator, gateway, start_session_with, SessionSink};
use futures_util::SinkExt as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth::{self, SynthEncoding};

/// Sends `audio` in `chunk`-byte binary frames.
async fn send_audio(sink: &mut SessionSink, audio: &[u8], chunk: usize) {
    for piece in audio.chunks(chunk) {
        sink.send(Message::binary(piece.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
}

/// Sends a control message (`stop`, `finalize`).
async fn send_control(sink: &mut SessionSink, kind: &str) {
    sink.send(Message::text(json!({ "type": kind }).to_string()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// Milliseconds of 16 kHz audio in `samples`.
fn ms(samples: u64) -> u64 {
    samples / 16
}

/// Whole seconds, rounded up, in ms: how the emulator bills a stream (as Google bills).
fn billed_seconds_ms(ms: u64) -> u64 {
    ms.div_ceil(1_000) * 1_000
}

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
    send_audio(&mut sink, &audio, 3_200).await;
    send_control(&mut sink, "stop").await;
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
        ("voice_activity_events", json!(true)),
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

/// Voice-activity events on v2: `speech_started` at each utterance's first word and
/// `speech_ended` at its last word's end, on the session clock — also in the second stream, which
/// a `finalize` opens after the first utterance (its times count from its own first byte
/// upstream). `closed` carries the audio the emulator billed: each stream's whole seconds, added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_voice_activity_on_the_session_clock_and_billed_seconds_in_closed() {
    let emulator = emulator(&["--apis", "v2"]);
    let gateway = gateway(
        &emulator,
        &[
            ("VOXGATE_GOOGLE__API", "v2"),
            ("VOXGATE_GOOGLE__PROJECT", "voxgate-test"),
        ],
    );
    let start = start_with(json!({"interim_results": true, "voice_activity_events": true}));
    let (mut sink, received) =
        start_session_with(&gateway.addr, &start, Duration::from_secs(15)).await;
    let first = synth::encode_with_timeline("hello there.", 16_000, SynthEncoding::Linear16);
    let second = synth::encode_with_timeline("goodbye now.", 16_000, SynthEncoding::Linear16);
    send_audio(&mut sink, &first.audio, 3_200).await;
    // The first stream ends here; the second opens for the audio that follows.
    send_control(&mut sink, "finalize").await;
    send_audio(&mut sink, &second.audio, 3_200).await;
    send_control(&mut sink, "stop").await;
    let received = received.await.unwrap_or_else(|e| panic!("collector: {e}"));
    let all = &received.messages;

    // Where speech is in the session's audio: the second part starts after the first.
    let second_origin_ms = ms(first.total_samples);
    let mut expected = Vec::new();
    for (encoded, origin_ms) in [(&first, 0), (&second, second_origin_ms)] {
        // One utterance per part: it begins at its first word and ends at its last word's end.
        let begin = encoded.words.first().map_or(0, |w| ms(w.start_sample));
        let end = encoded.utterance_ends.first().copied().map_or(0, ms);
        expected.push(("speech_started", origin_ms + begin));
        expected.push(("speech_ended", origin_ms + end));
    }
    let heard: Vec<(&str, u64)> = all
        .iter()
        .filter(|m| m["type"] == "speech_started" || m["type"] == "speech_ended")
        .map(|m| {
            (
                m["type"].as_str().unwrap_or_default(),
                m["at_ms"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(heard.len(), expected.len(), "{all:#?}");
    for ((kind, at), (want_kind, want_at)) in heard.iter().zip(&expected) {
        assert_eq!(kind, want_kind, "{all:#?}");
        assert!(
            at.abs_diff(*want_at) <= 3,
            "{kind} at {at} ms, expected {want_at} ms: {all:#?}"
        );
    }
    // Each `speech_ended` comes before the final of its utterance.
    let order: Vec<&str> = all
        .iter()
        .filter_map(|m| match m["type"].as_str() {
            Some("transcript") if m["is_final"] == true => Some("final"),
            Some(t @ ("speech_started" | "speech_ended")) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "speech_started",
            "speech_ended",
            "final",
            "speech_started",
            "speech_ended",
            "final"
        ],
        "{all:#?}"
    );

    // Billed: each stream bills the audio up to its final, in whole seconds (the emulator's rule,
    // docs/emulator.md), and the session adds the streams up.
    let final_ends: Vec<u64> = received
        .of_type("transcript")
        .iter()
        .filter(|m| m["is_final"] == true)
        .filter_map(|m| m["end_ms"].as_u64())
        .collect();
    assert_eq!(final_ends.len(), 2, "{all:#?}");
    let billed =
        billed_seconds_ms(final_ends[0]) + billed_seconds_ms(final_ends[1] - second_origin_ms);
    let closed = received.of_type("closed");
    assert_eq!(closed.len(), 1, "{all:#?}");
    assert_eq!(closed[0]["billed_ms"], billed, "{all:#?}");
    assert_eq!(billed, 2_000, "one second per stream: {final_ends:?}");
}

/// `encoding: "ALAW"` at 8 kHz: v2 is sent A-law as it is and the emulator decodes it (exact
/// transcripts); v1, which has no A-law, refuses it at `start` naming the encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alaw_goes_to_v2_as_it_is_and_v1_refuses_it() {
    let alaw_start = json!({"type": "start", "encoding": "ALAW", "sample_rate_hz": 8000,
        "interim_results": false});
    let v2_emulator = emulator(&["--apis", "v2"]);
    let v2 = gateway(
        &v2_emulator,
        &[
            ("VOXGATE_GOOGLE__API", "v2"),
            ("VOXGATE_GOOGLE__PROJECT", "voxgate-test"),
        ],
    );
    let (mut sink, received) =
        start_session_with(&v2.addr, &alaw_start, Duration::from_secs(15)).await;
    let text = "call me back. on line four two.";
    let audio = synth::encode(text, 8_000, SynthEncoding::Alaw);
    send_audio(&mut sink, &audio, 800).await;
    send_control(&mut sink, "stop").await;
    let received = received.await.unwrap_or_else(|e| panic!("collector: {e}"));
    assert_eq!(
        received.final_text(),
        synth::expected_transcripts(text).join(" "),
        "{:#?}",
        received.messages
    );
    assert_eq!(
        received.of_type("closed").len(),
        1,
        "{:#?}",
        received.messages
    );

    let v1_emulator = emulator(&[]);
    let v1 = gateway(&v1_emulator, &[]);
    let mut client = connect(&v1.addr, "").await;
    client.send_json(&alaw_start).await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "invalid_config", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("encoding ALAW") && message.contains("Google Speech-to-Text v1"),
        "{message}"
    );
}
