//! OpenAI Realtime transcription on `/openai/v1/realtime`, end to end on loopback: OpenAI's
//! official Python SDK (unchanged, pinned in `tests/sdk/requirements.txt`) streams
//! emulator-encoded speech (pcm16 at 24 kHz, G.711 µ-law) through a real `voxgate serve`, and
//! real speech through the offline engine; raw-protocol tests cover each event both ways, the
//! refusals and hostile input, with a native session beside them unaffected.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::dialect::*;
use common::process::{emulator, Process};
use serde_json::{json, Value};
use voxgate_emulator::synth;

const TEXT: &str = "the quick brown fox. jumps over the lazy dog. voxgate streams words";

fn openai_gateway(emulator: &Process) -> Process {
    let env = emulator_env(emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gateway_with("", &env)
}

fn base_url(gateway: &Process) -> String {
    format!("http://{}/openai/v1", gateway.addr)
}

/// The server events among an SDK script's events.
fn events_of(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter_map(|l| l.get("event")).collect()
}

fn of_type<'a>(events: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .copied()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// The completed transcripts, joined by spaces.
fn completed_text(events: &[&Value]) -> String {
    of_type(
        events,
        "conversation.item.input_audio_transcription.completed",
    )
    .iter()
    .filter_map(|e| e["transcript"].as_str())
    .filter(|t| !t.is_empty())
    .collect::<Vec<_>>()
    .join(" ")
}

/// Streams `audio` through the SDK and checks the transcript events of `text`.
async fn sdk_session(gateway: &Process, audio: &[u8], format: &str, text: &str) {
    let turns = synth::expected_transcripts(text).len();
    let args = vec![
        "stream".to_string(),
        base_url(gateway),
        KEY.to_string(),
        temp_file("raw", audio),
        format.to_string(),
        turns.to_string(),
    ];
    let lines = run_sdk_script("openai_transcribe.py", args).await;
    let ctx = format!("{format}: {lines:#?}");
    let events = events_of(&lines);
    assert_eq!(
        events.first().map(|e| &e["type"]),
        Some(&Value::from("session.created")),
        "{ctx}"
    );
    assert_eq!(of_type(&events, "session.updated").len(), 1, "{ctx}");
    assert_eq!(
        completed_text(&events),
        synth::expected_words(text).join(" "),
        "{ctx}"
    );
    // Deltas, speech events and commits for every turn, in the order of a turn.
    let deltas = of_type(&events, "conversation.item.input_audio_transcription.delta");
    assert!(!deltas.is_empty(), "interims arrive as deltas; {ctx}");
    for kind in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ] {
        assert_eq!(of_type(&events, kind).len(), turns, "{kind}; {ctx}");
    }
    let completed = of_type(
        &events,
        "conversation.item.input_audio_transcription.completed",
    );
    for (i, done) in completed.iter().enumerate() {
        let item = &done["item_id"];
        let first_delta = events.iter().position(|e| e["item_id"] == *item);
        let at = events.iter().position(|e| std::ptr::eq(*e, *done));
        assert!(
            first_delta < at,
            "turn {i}: its events come before completed; {ctx}"
        );
        // A turn's deltas add up to a prefix of what it completed with.
        let said: String = deltas
            .iter()
            .filter(|d| d["item_id"] == *item)
            .filter_map(|d| d["delta"].as_str())
            .collect();
        let transcript = done["transcript"].as_str().unwrap_or("");
        assert!(
            transcript.to_lowercase().starts_with(&said.to_lowercase()),
            "{said} / {transcript}"
        );
    }
    assert_eq!(
        lines.last().map(|l| &l["end"]),
        Some(&Value::from("clean")),
        "{ctx}"
    );
}

/// The official SDK streams pcm16 at 24 kHz and G.711 µ-law: deltas from interims, completed
/// transcripts equal to the words, speech events per turn; it closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_transcribes_pcm16_and_g711() {
    let emulator = emulator(&[]);
    let gateway = openai_gateway(&emulator);
    let pcm = synth::encode(TEXT, 24_000, synth::SynthEncoding::Linear16);
    let ulaw = synth::encode(
        "telephone words. still exact",
        8_000,
        synth::SynthEncoding::Mulaw,
    );
    let (a, b) = tokio::join!(
        sdk_session(&gateway, &pcm, "pcm16", TEXT),
        sdk_session(&gateway, &ulaw, "g711_ulaw", "telephone words. still exact"),
    );
    let ((), ()) = (a, b);
}

/// A bad key: the SDK's connection is refused with HTTP 401. A bad parameter: an `error` event of
/// OpenAI's shape naming the parameter, and the session stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_gets_openai_errors() {
    let emulator = emulator(&[]);
    let gateway = openai_gateway(&emulator);
    let lines = run_sdk_script(
        "openai_transcribe.py",
        vec!["badparam".into(), base_url(&gateway), "sk-wrong".into()],
    )
    .await;
    let refused = lines
        .first()
        .and_then(|l| l["refused"].as_str())
        .unwrap_or("");
    assert!(refused.contains("401"), "{lines:?}");
    let lines = run_sdk_script(
        "openai_transcribe.py",
        vec!["badparam".into(), base_url(&gateway), KEY.into()],
    )
    .await;
    let events = events_of(&lines);
    let error = of_type(&events, "error");
    assert_eq!(error.len(), 1, "{lines:?}");
    assert_eq!(error[0]["error"]["type"], "invalid_request_error");
    assert_eq!(error[0]["error"]["code"], "invalid_value");
    assert_eq!(
        error[0]["error"]["param"],
        "session.audio.input.format.rate"
    );
    assert_eq!(
        lines.last().map(|l| &l["end"]),
        Some(&Value::from("clean")),
        "{lines:?}"
    );
}

/// Real speech (a LibriVox clip, upsampled to 24 kHz) through the offline engine via the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_transcribes_real_speech_through_the_offline_engine() {
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
    // 16 kHz → 24 kHz by linear interpolation: three output samples per two input samples.
    let samples = &clip.samples;
    let upsampled: Vec<u8> = (0..samples.len() * 3 / 2)
        .flat_map(|i| {
            let at = i as f64 * 2.0 / 3.0;
            let (j, frac) = (at as usize, at.fract());
            let a = f64::from(samples[j]);
            let b = f64::from(*samples.get(j + 1).unwrap_or(&samples[j]));
            ((a + (b - a) * frac).round() as i16).to_le_bytes()
        })
        .collect();
    let args = vec![
        "stream".to_string(),
        base_url(&gateway),
        KEY.to_string(),
        temp_file("raw", &upsampled),
        "pcm16".to_string(),
        "1".to_string(),
    ];
    let lines = run_sdk_script("openai_transcribe.py", args).await;
    let heard = common::librivox::normalise(&completed_text(&events_of(&lines)));
    let errors = common::librivox::word_errors(&clip.reference, &heard);
    assert!(
        errors * 4 <= clip.reference.len(),
        "{errors} word errors in {} words: heard {heard:?}; {lines:?}",
        clip.reference.len()
    );
}

fn realtime_url(gateway: &Process) -> String {
    format!(
        "ws://{}/openai/v1/realtime?intent=transcription",
        gateway.addr
    )
}

fn append(audio: &[u8]) -> String {
    let audio = base64::engine::general_purpose::STANDARD.encode(audio);
    json!({"type": "input_audio_buffer.append", "audio": audio}).to_string()
}

/// Every event both ways on the raw socket, in manual-turn mode (the beta update): `commit` of
/// nothing is an error, `commit` after speech closes the item, `clear` is answered, a binary frame
/// is an error, and the browser's key subprotocol is accepted with `realtime` selected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_events_both_ways() {
    let emulator = emulator(&[]);
    let gateway = openai_gateway(&emulator);
    let protocols = format!("realtime, openai-insecure-api-key.{KEY}");
    let mut ws = open(
        &realtime_url(&gateway),
        &[("Sec-WebSocket-Protocol", &protocols)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let update = json!({"type": "transcription_session.update", "session": {
        "input_audio_format": "g711_ulaw", "turn_detection": null,
        "input_audio_transcription": {"model": "whisper-1", "language": "en"}}});
    send_text(&mut ws, &update.to_string()).await;
    let updated = next_json(&mut ws).await;
    assert_eq!(updated["type"], "transcription_session.updated");
    assert_eq!(updated["session"]["turn_detection"], Value::Null);
    send_text(
        &mut ws,
        r#"{"type":"input_audio_buffer.commit","event_id":"c0"}"#,
    )
    .await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error["error"]["event_id"], "c0");
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next_json(&mut ws).await["type"], "error");
    let text = "manual turn. two utterances";
    let audio = synth::encode(text, 8_000, synth::SynthEncoding::Mulaw);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for chunk in audio.chunks(800) {
        ticker.tick().await;
        send_text(&mut ws, &append(chunk)).await;
    }
    send_text(&mut ws, r#"{"type":"input_audio_buffer.commit"}"#).await;
    let mut events = Vec::new();
    let completed = loop {
        let event = next_json(&mut ws).await;
        events.push(event.clone());
        if event["type"] == "conversation.item.input_audio_transcription.completed" {
            break event;
        }
    };
    assert_eq!(
        completed["transcript"],
        synth::expected_words(text).join(" "),
        "{events:#?}"
    );
    assert!(events
        .iter()
        .any(|e| e["type"] == "input_audio_buffer.committed"));
    assert!(!events
        .iter()
        .any(|e| e["type"] == "input_audio_buffer.speech_started"));
    send_text(&mut ws, r#"{"type":"input_audio_buffer.clear"}"#).await;
    assert_eq!(
        next_json(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );
    // A normal close, as the SDKs' websocket libraries send it; the server echoes its code.
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    };
    ws.send(tokio_tungstenite::tungstenite::Message::Close(Some(normal)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, close) = read_until_close(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| c.0), Some(1000));
}

/// Refusals before the upgrade in OpenAI's error shape (401 without or with a bad key; 400 for a
/// conversation session, which this endpoint does not serve); hostile input gets `error` events
/// or, over the size limit, a close; a native session beside them is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_hostile_input() {
    let emulator = emulator(&[]);
    let gateway = openai_gateway(&emulator);
    let url = realtime_url(&gateway);
    for headers in [vec![], vec![("Authorization", "Bearer sk-nope-nope")]] {
        match open(&url, &headers).await {
            Err((status, text)) => {
                assert_eq!(status, 401, "{text}");
                assert!(text.contains("invalid_api_key"), "{text}");
            }
            Ok(_) => panic!("{headers:?} accepted"),
        }
    }
    let bearer = format!("Bearer {KEY}");
    let conversation = format!(
        "ws://{}/openai/v1/realtime?model=gpt-realtime",
        gateway.addr
    );
    match open(&conversation, &[("Authorization", &bearer)]).await {
        Err((status, text)) => assert!(
            status == 400 && text.contains("intent=transcription"),
            "{text}"
        ),
        Ok(_) => panic!("a conversation session was accepted"),
    }
    let native = tokio::spawn({
        let addr = gateway.addr.clone();
        let bearer = bearer.clone();
        async move {
            let mut ws = open(
                &format!("ws://{addr}/v1/listen"),
                &[("Authorization", &bearer)],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
            send_text(
                &mut ws,
                r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000}"#,
            )
            .await;
            assert_eq!(next_json(&mut ws).await["type"], "ready");
            let audio = synth::encode("native beside", 16_000, synth::SynthEncoding::Linear16);
            send_audio(&mut ws, &audio, 3_200).await;
            send_text(&mut ws, r#"{"type":"stop"}"#).await;
            let (messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
            assert!(
                messages.iter().any(|m| m["type"] == "closed"),
                "{messages:?}"
            );
            assert_eq!(close.map(|c| c.0), Some(1000));
        }
    });
    let mut ws = open(&url, &[("Authorization", &bearer)])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    for hostile in [
        format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)),
        "\u{0}\u{1}garbage".to_string(),
        r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":7}}}}"#
            .to_string(),
        r#"{"type":"input_audio_buffer.append","audio":"!!!!"}"#.to_string(),
    ] {
        send_text(&mut ws, &hostile).await;
        assert_eq!(next_json(&mut ws).await["type"], "error", "{hostile}");
    }
    send_text(&mut ws, &append(&[0u8; 60_000])).await;
    let (messages, close) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(close.map(|c| c.0), Some(1009), "{messages:?}");
    native
        .await
        .unwrap_or_else(|e| panic!("native session: {e}"));
}
