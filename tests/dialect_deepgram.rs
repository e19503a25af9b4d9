//! Deepgram's live API on `/deepgram/v1/listen`, end to end on loopback: Deepgram's official
//! Python SDK (unchanged, pinned in `tests/sdk/requirements.txt`) streams emulator-encoded speech
//! through a real `voxgate serve` and real speech through the offline engine; raw-protocol tests
//! cover each message type both ways, the credential forms, the refusals and hostile input, with
//! a native session beside them unaffected.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::{emulator, Process};
use serde_json::Value;
use voxgate_emulator::synth;

const TEXT: &str = "the quick brown fox. jumps over the lazy dog. voxgate streams words";

fn deepgram_gateway(emulator: &Process, extra_toml: &str) -> Process {
    let env = emulator_env(emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gateway_with(extra_toml, &env)
}

/// The messages among an SDK script's events.
fn messages(events: &[Value]) -> Vec<&Value> {
    events.iter().filter_map(|e| e.get("message")).collect()
}

/// The final transcripts, joined by spaces.
fn final_text(messages: &[&Value]) -> String {
    messages
        .iter()
        .filter(|m| m["type"] == "Results" && m["is_final"] == true)
        .filter_map(|m| m["channel"]["alternatives"][0]["transcript"].as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The official SDK streams speech, finalizes half-way, closes the stream: interim and final
/// transcripts equal to the words, the flushed result marked, speech events, `Metadata`, 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_streams_speech_and_closes_cleanly() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(&emulator, "");
    let audio = synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16);
    let args = vec![
        format!("ws://{}/deepgram", gateway.addr),
        KEY.to_string(),
        temp_file("raw", &audio),
        "16000".to_string(),
    ];
    let events = run_sdk_script("deepgram_stream.py", args).await;
    let ctx = format!("{events:#?}");
    let messages = messages(&events);
    assert_eq!(
        final_text(&messages),
        synth::expected_words(TEXT).join(" "),
        "{ctx}"
    );
    let results: Vec<&&Value> = messages.iter().filter(|m| m["type"] == "Results").collect();
    let first_final = results.iter().position(|m| m["is_final"] == true);
    let first_interim = results.iter().position(|m| m["is_final"] == false);
    assert!(
        matches!((first_interim, first_final), (Some(i), Some(f)) if i < f),
        "interims come before the first final; {ctx}"
    );
    assert!(
        results.iter().any(|m| m["from_finalize"] == true),
        "the result of Finalize is marked; {ctx}"
    );
    assert!(
        results.iter().any(|m| m["speech_final"] == true),
        "finals at a pause are speech_final; {ctx}"
    );
    // Finals tile the audio in order, words inside their result (seconds).
    let mut last_end = 0.0;
    for m in results.iter().filter(|m| m["is_final"] == true) {
        let start = m["start"].as_f64().unwrap_or(-1.0);
        let end = start + m["duration"].as_f64().unwrap_or(-1.0);
        assert!(start >= last_end - 1e-9 && end > start, "{m}; {ctx}");
        last_end = end;
        for w in m["channel"]["alternatives"][0]["words"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (ws, we) = (w["start"].as_f64(), w["end"].as_f64());
            assert!(
                matches!((ws, we), (Some(ws), Some(we)) if ws >= start - 1e-9 && we <= end + 1e-9 && we > ws),
                "{w} in {m}"
            );
        }
    }
    let kinds: Vec<&str> = messages.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(kinds.contains(&"SpeechStarted"), "{ctx}");
    assert!(kinds.contains(&"UtteranceEnd"), "{ctx}");
    assert_eq!(kinds.last(), Some(&"Metadata"), "Metadata is last; {ctx}");
    let metadata = messages.last().copied().cloned().unwrap_or(Value::Null);
    let seconds = audio.len() as f64 / 32_000.0;
    assert!(
        (metadata["duration"].as_f64().unwrap_or(0.0) - seconds).abs() < 0.01,
        "{metadata}"
    );
    assert_eq!(
        events.last().map(|e| &e["end"]),
        Some(&Value::from("clean")),
        "{ctx}"
    );
}

/// The SDK reports a bad key as invalid credentials (HTTP 401) and an unsupported parameter as
/// Deepgram's HTTP 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_gets_deepgram_refusals() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(&emulator, "");
    let audio = temp_file("raw", &[0u8; 3_200]);
    let base = format!("ws://{}/deepgram", gateway.addr);
    let bad_key = vec![
        base.clone(),
        "wrong-key".into(),
        audio.clone(),
        "16000".into(),
    ];
    let events = run_sdk_script("deepgram_stream.py", bad_key).await;
    assert_eq!(
        events.first().map(|e| &e["refused"]),
        Some(&Value::from(401)),
        "{events:?}"
    );
    assert!(
        events[0]["dg_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{events:?}"
    );
    let bad_parameter = vec![
        base,
        KEY.into(),
        audio,
        "16000".into(),
        r#"{"encoding": "linear32"}"#.into(),
    ];
    let events = run_sdk_script("deepgram_stream.py", bad_parameter).await;
    assert_eq!(
        events.first().map(|e| &e["refused"]),
        Some(&Value::from(400)),
        "{events:?}"
    );
}

/// Real speech (a LibriVox clip) through the offline engine via the SDK: the words come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_streams_real_speech_through_the_offline_engine() {
    let gateway = gateway_with(
        "",
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "local"),
            ("VOXGATE_LOCAL__ENGINE", "moonshine"),
        ],
    );
    let clip = common::librivox::clips()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no LibriVox clip"));
    let args = vec![
        format!("ws://{}/deepgram", gateway.addr),
        KEY.to_string(),
        temp_file("raw", &clip.bytes()),
        "16000".to_string(),
    ];
    let events = run_sdk_script("deepgram_stream.py", args).await;
    let heard = common::librivox::normalise(&final_text(&messages(&events)));
    let errors = common::librivox::word_errors(&clip.reference, &heard);
    assert!(
        errors * 4 <= clip.reference.len(),
        "{errors} word errors in {} words: heard {heard:?}, said {:?}",
        clip.reference.len(),
        clip.reference
    );
    assert_eq!(
        events.last().map(|e| &e["end"]),
        Some(&Value::from("clean")),
        "{events:?}"
    );
}

fn listen_url(gateway: &Process, query: &str) -> String {
    format!("ws://{}/deepgram/v1/listen?{query}", gateway.addr)
}

const QUERY: &str = "model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true";

/// Every client message and its answer, on the raw socket: `Configure` is refused with
/// `ConfigureFailure`, an unknown or unparsable message with `Error` (the stream goes on),
/// `KeepAlive` keeps a silent stream open past the no-audio timeout, `Finalize` flushes,
/// `CloseStream` ends with `Metadata` and 1000. The browser credential form (subprotocol
/// `token, <key>`) is accepted and `token` selected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_messages_both_ways() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(
        &emulator,
        "[dialects.deepgram]\nno_audio_timeout_secs = 1.5",
    );
    let protocol = format!("token, {KEY}");
    let mut ws = open(
        &listen_url(&gateway, QUERY),
        &[("Sec-WebSocket-Protocol", &protocol)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    send_text(&mut ws, r#"{"type":"Configure","keyterms":["x"]}"#).await;
    assert_eq!(next_json(&mut ws).await["type"], "ConfigureFailure");
    send_text(&mut ws, r#"{"type":"Shout"}"#).await;
    let error = next_json(&mut ws).await;
    assert_eq!(
        (error["type"].clone(), error["variant"].clone()),
        ("Error".into(), "SchemaError".into())
    );
    send_text(&mut ws, "not json {").await;
    assert_eq!(next_json(&mut ws).await["variant"], "SchemaError");
    // Silent but kept alive for longer than the no-audio timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_text(&mut ws, r#"{"type":"KeepAlive"}"#).await;
    }
    // Finalize in the middle of speech: the words so far come as a final marked from_finalize.
    let text = "keep talking. finalize me";
    let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
    let half = audio.len() / 2 / 3_200 * 3_200;
    send_audio(&mut ws, &audio[..half], 3_200).await;
    send_text(&mut ws, r#"{"type":"Finalize"}"#).await;
    send_audio(&mut ws, &audio[half..], 3_200).await;
    send_text(&mut ws, r#"{"type":"CloseStream"}"#).await;
    let (messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
    let refs: Vec<&Value> = messages.iter().collect();
    assert_eq!(
        final_text(&refs),
        synth::expected_words(text).join(" "),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m["from_finalize"] == true),
        "{messages:#?}"
    );
    assert_eq!(
        messages.last().map(|m| &m["type"]),
        Some(&Value::from("Metadata"))
    );
    assert_eq!(close.map(|c| c.0), Some(1000));
}

/// Deepgram's 10-second rule (here 1 s): no audio and no message closes with 1011 `NET-0001`;
/// audio that is not FLAC on a FLAC stream closes with 1008 `DATA-0000`; a native session beside
/// them is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_bad_audio_close_as_deepgram_does() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(
        &emulator,
        "[dialects.deepgram]\nno_audio_timeout_secs = 1.0",
    );
    let auth = format!("Token {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let native = tokio::spawn({
        let addr = gateway.addr.clone();
        async move {
            let url = format!("ws://{addr}/v1/listen");
            let bearer = format!("Bearer {KEY}");
            let mut ws = open(&url, &[("Authorization", &bearer)])
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            send_text(
                &mut ws,
                r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000}"#,
            )
            .await;
            assert_eq!(next_json(&mut ws).await["type"], "ready");
            let text = "native beside";
            let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
            send_audio(&mut ws, &audio, 3_200).await;
            send_text(&mut ws, r#"{"type":"stop"}"#).await;
            let (messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
            let finals: Vec<&str> = messages
                .iter()
                .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
                .filter_map(|m| m["transcript"].as_str())
                .collect();
            assert_eq!(finals.join(" "), synth::expected_words(text).join(" "));
            assert_eq!(close.map(|c| c.0), Some(1000));
        }
    });
    let mut idle = open(&listen_url(&gateway, QUERY), &headers)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (_, close) = read_until_close(&mut idle, Duration::from_secs(10)).await;
    assert_eq!(close, Some((1011, "NET-0001".to_string())));
    let flac = "model=nova-3&encoding=flac&sample_rate=16000";
    let mut bad = open(&listen_url(&gateway, flac), &headers)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    send_audio(&mut bad, b"definitely not flac", 3_200).await;
    let (messages, close) = read_until_close(&mut bad, Duration::from_secs(10)).await;
    assert_eq!(close, Some((1008, "DATA-0000".to_string())), "{messages:?}");
    assert_eq!(
        messages.first().map(|m| &m["type"]),
        Some(&Value::from("Error"))
    );
    native
        .await
        .unwrap_or_else(|e| panic!("native session: {e}"));
}

/// Refusals before the upgrade, as Deepgram writes them: 401 without or with a bad credential,
/// 400 for a parameter the gateway cannot honour, with `dg-error` and a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_dg_error() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(&emulator, "");
    let url = listen_url(&gateway, QUERY);
    for headers in [
        vec![],
        vec![("Authorization", "Token nope-nope-nope")],
        vec![("Authorization", "Basic abc")],
    ] {
        match open(&url, &headers).await {
            Err((status, text)) => {
                assert_eq!(status, 401, "{text}");
                assert!(
                    text.contains("dg-error") && text.contains("INVALID_AUTH"),
                    "{text}"
                );
            }
            Ok(_) => panic!("{headers:?} accepted"),
        }
    }
    let auth = format!("token {KEY}");
    for query in [
        "encoding=linear16&sample_rate=16000&diarize=true",
        "encoding=linear16&sample_rate=16000&channels=2",
        "encoding=speex&sample_rate=16000",
        "encoding=linear16&sample_rate=16000&interim_results=%FF%FE",
        "sample_rate=16000",
    ] {
        match open(&listen_url(&gateway, query), &[("Authorization", &auth)]).await {
            Err((status, text)) => {
                assert_eq!(status, 400, "{query}: {text}");
                assert!(
                    text.contains("dg-error") && text.contains("err_msg"),
                    "{text}"
                );
            }
            Ok(_) => panic!("{query} accepted"),
        }
    }
}

/// Hostile input on the Deepgram path: deep nesting, a text message over `max_json_bytes`,
/// floods of garbage — answered or closed, never a crash; the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_answered_and_the_server_keeps_serving() {
    let emulator = emulator(&[]);
    let gateway = deepgram_gateway(&emulator, "");
    let auth = format!("Token {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let mut ws = open(&listen_url(&gateway, QUERY), &headers)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    send_text(
        &mut ws,
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["variant"], "SchemaError");
    send_text(
        &mut ws,
        &format!(r#"{{"type":"KeepAlive","x":"{}"}}"#, "a".repeat(100_000)),
    )
    .await;
    let (messages, close) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(close.map(|c| c.0), Some(1009), "{messages:?}");
    // The server still serves a good session.
    let mut good = open(&listen_url(&gateway, QUERY), &headers)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    send_text(&mut good, r#"{"type":"CloseStream"}"#).await;
    let (messages, close) = read_until_close(&mut good, Duration::from_secs(10)).await;
    assert_eq!(
        messages.last().map(|m| &m["type"]),
        Some(&Value::from("Metadata"))
    );
    assert_eq!(close.map(|c| c.0), Some(1000));
}
