//! The OpenAI dialect alone: its client events, the session configuration they make, and the
//! server events it writes for the pipeline's reports, in both turn modes.

use base64::Engine as _;
use serde_json::Value;

use super::*;
use crate::messages::WordTiming;

fn transcript(is_final: bool, text: &str, start_ms: u64, end_ms: u64) -> Transcript {
    Transcript {
        is_final,
        transcript: text.to_string(),
        confidence: 0.9,
        stability: 0.0,
        start_ms,
        end_ms,
        words: vec![WordTiming {
            word: text.to_string(),
            start_ms,
            end_ms,
            confidence: 0.9,
        }],
        language_code: "en-us".into(),
    }
}

fn opened() -> OpenAiDialect {
    let mut dialect = OpenAiDialect::new();
    let mut out = Vec::new();
    dialect.opened("abc", &mut out);
    let created: Value = serde_json::from_str(&out[0]).unwrap_or(Value::Null);
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["type"], "transcription");
    assert_eq!(created["session"]["id"], "sess_abc");
    dialect
}

fn send(dialect: &mut OpenAiDialect, event: Value) -> Vec<Inbound> {
    let mut actions = Vec::new();
    assert!(dialect.text(&event.to_string(), &mut actions).is_ok());
    actions
}

fn replies(actions: &[Inbound]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Inbound::Reply(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn append(bytes: &[u8]) -> Value {
    let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
    serde_json::json!({"type": "input_audio_buffer.append", "audio": audio})
}

fn types(texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter_map(|v| v["type"].as_str().map(String::from))
        .collect()
}

#[test]
fn updates_are_echoed_and_the_first_append_configures_the_pipeline() {
    let mut dialect = opened();
    let update = serde_json::json!({"type": "session.update", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
            "turn_detection": null}}}});
    let sent = replies(&send(&mut dialect, update));
    assert_eq!(sent[0]["type"], "session.updated");
    assert_eq!(
        sent[0]["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        sent[0]["session"]["audio"]["input"]["turn_detection"],
        Value::Null
    );
    let actions = send(&mut dialect, append(&[0xFF; 800]));
    match actions.as_slice() {
        [Inbound::Configure(config), Inbound::Audio { data, .. }] => {
            assert_eq!(config.format.encoding, Encoding::Mulaw);
            assert_eq!(config.format.sample_rate_hz, 8_000);
            assert_eq!(config.language_code, "de");
            assert_eq!(data.len(), 800);
        }
        other => panic!("{other:?}"),
    }
    // Format and language are fixed now; the model may still change.
    let change = serde_json::json!({"type": "session.update", "session": {"audio": {"input":
        {"format": {"type": "audio/pcm", "rate": 24000}}}}});
    let sent = replies(&send(&mut dialect, change));
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["error"]["type"], "invalid_request_error");
    assert!(matches!(
        send(&mut dialect, append(&[0xFF; 8])).as_slice(),
        [Inbound::Audio { .. }]
    ));
}

#[test]
fn beta_updates_and_alaw_transcoding() {
    let mut dialect = opened();
    let update = serde_json::json!({"type": "transcription_session.update", "session": {
        "input_audio_format": "g711_alaw", "input_audio_transcription": {"model": "whisper-1"}}});
    let sent = replies(&send(&mut dialect, update));
    assert_eq!(sent[0]["type"], "transcription_session.updated");
    assert_eq!(sent[0]["session"]["input_audio_format"], "g711_alaw");
    assert_eq!(
        sent[0]["session"]["input_audio_transcription"]["model"],
        "whisper-1"
    );
    match send(&mut dialect, append(&[0xD5; 80])).as_slice() {
        [Inbound::Configure(config), Inbound::Audio { data, .. }] => {
            assert_eq!(config.format.encoding, Encoding::Linear16);
            assert_eq!(config.format.sample_rate_hz, 8_000);
            assert_eq!(data.len(), 160, "A-law becomes 16-bit PCM");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mistakes_are_error_events_and_the_session_goes_on() {
    let mut dialect = opened();
    for (event, code) in [
        ("not json".to_string(), "invalid_json"),
        (r#"{"type":"response.create","event_id":"e1"}"#.to_string(), "invalid_value"),
        (r#"{"type":"input_audio_buffer.append","audio":"***"}"#.to_string(), "invalid_value"),
        (r#"{"type":"input_audio_buffer.append"}"#.to_string(), "missing_required_parameter"),
        (r#"{"type":"session.update","session":{"type":"realtime"}}"#.to_string(), "invalid_value"),
        (r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}}"#.to_string(), "invalid_value"),
        (r#"{"type":"input_audio_buffer.commit"}"#.to_string(), "input_audio_buffer_commit_empty"),
    ] {
        let mut actions = Vec::new();
        assert!(dialect.text(&event, &mut actions).is_ok());
        let sent = replies(&actions);
        assert_eq!(sent.len(), 1, "{event}: {actions:?}");
        assert_eq!(sent[0]["type"], "error", "{event}");
        assert_eq!(sent[0]["error"]["code"], code, "{event}");
    }
    let sent = replies(&send(
        &mut dialect,
        serde_json::json!({"type": "response.create", "event_id": "e7"}),
    ));
    assert_eq!(sent[0]["error"]["event_id"], "e7");
    // An error found while handling a well-formed event echoes its id too, and only its own.
    let sent = replies(&send(
        &mut dialect,
        serde_json::json!({"type": "input_audio_buffer.commit", "event_id": "c0"}),
    ));
    assert_eq!(sent[0]["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(sent[0]["error"]["event_id"], "c0");
    let sent = replies(&send(
        &mut dialect,
        serde_json::json!({"type": "input_audio_buffer.commit"}),
    ));
    assert_eq!(sent[0]["error"]["event_id"], Value::Null);
    assert!(matches!(
        dialect.binary(Bytes::from_static(b"x")),
        Ok(Inbound::Reply(_))
    ));
}

#[test]
fn server_vad_turns_become_items_with_deltas() {
    let mut dialect = opened();
    let mut out = Vec::new();
    dialect.transcript(&transcript(false, "hello", 100, 500), &mut out);
    dialect.transcript(&transcript(false, "hello world", 100, 800), &mut out);
    dialect.transcript(&transcript(false, "hello word", 100, 900), &mut out);
    dialect.transcript(&transcript(true, "Hello world.", 100, 1_000), &mut out);
    dialect.transcript(&transcript(true, "Again.", 1_500, 2_000), &mut out);
    assert_eq!(
        types(&out),
        [
            "input_audio_buffer.speech_started",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.delta",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
        ]
    );
    let events: Vec<Value> = out
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    assert_eq!(events[1]["delta"], "hello");
    assert_eq!(events[2]["delta"], " world");
    assert_eq!(events[0]["audio_start_ms"], 100);
    assert_eq!(events[3]["audio_end_ms"], 1_000);
    assert_eq!(events[5]["transcript"], "Hello world.");
    assert_eq!(events[5]["item_id"], "item_1");
    assert_eq!(events[8]["previous_item_id"], "item_1");
    assert_eq!(events[9]["item_id"], "item_2");
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
}

#[test]
fn manual_turns_complete_at_commit_and_clear_drops_audio() {
    let mut dialect = opened();
    let manual = serde_json::json!({"type": "session.update", "session": {"audio": {"input":
        {"turn_detection": null}}}});
    send(&mut dialect, manual);
    send(&mut dialect, append(&[0u8; 48 * 1_000]));
    let mut out = Vec::new();
    dialect.transcript(&transcript(true, "one.", 0, 400), &mut out);
    dialect.transcript(&transcript(false, "two", 500, 700), &mut out);
    assert_eq!(
        types(&out),
        ["conversation.item.input_audio_transcription.delta"],
        "no VAD events, the final stays in the item"
    );
    let actions = send(
        &mut dialect,
        serde_json::json!({"type": "input_audio_buffer.commit"}),
    );
    assert!(actions.contains(&Inbound::Finalize));
    assert_eq!(replies(&actions)[0]["type"], "input_audio_buffer.committed");
    let mut out = Vec::new();
    dialect.transcript(&transcript(true, "two.", 500, 900), &mut out);
    let completed: Value = serde_json::from_str(&out[out.len() - 1]).unwrap_or(Value::Null);
    assert_eq!(completed["transcript"], "one. two.");
    // Cleared audio's results are dropped.
    send(&mut dialect, append(&[0u8; 48 * 500]));
    let cleared = replies(&send(
        &mut dialect,
        serde_json::json!({"type": "input_audio_buffer.clear"}),
    ));
    assert_eq!(cleared[0]["type"], "input_audio_buffer.cleared");
    let mut out = Vec::new();
    dialect.transcript(&transcript(true, "gone", 1_000, 1_400), &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn session_ending_errors_close_with_the_native_code() {
    let mut dialect = opened();
    let mut out = Vec::new();
    let close = dialect.error(ErrorCode::UpstreamUnavailable, "down", &mut out);
    assert_eq!(close.map(|c| c.code), Some(1011));
    let error: Value = serde_json::from_str(&out[0]).unwrap_or(Value::Null);
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(error["error"]["code"], "upstream_unavailable");
    assert_eq!(dialect.error(ErrorCode::UnknownType, "x", &mut out), None);
}

#[test]
fn credentials_come_from_the_header_or_the_subprotocol() {
    use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
    let mut headers = HeaderMap::new();
    assert_eq!(credential(&headers), Ok(None));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-1"));
    assert_eq!(credential(&headers), Ok(Some("sk-1".into())));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Token sk-1"));
    assert!(credential(&headers).is_err());
    let mut browser = HeaderMap::new();
    browser.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("realtime, openai-insecure-api-key.sk-2"),
    );
    assert_eq!(credential(&browser), Ok(Some("sk-2".into())));
}

#[test]
fn only_transcription_sessions_are_served() {
    assert!(check_query("intent=transcription").is_ok());
    assert!(check_query("").is_ok());
    assert!(check_query("intent=transcription&model=x").is_ok());
    assert!(check_query("model=gpt-realtime").is_err());
    assert!(check_query("intent=conversation").is_err());
}
