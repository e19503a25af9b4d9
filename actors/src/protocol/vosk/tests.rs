//! The vosk dialect alone: its messages, one reply per frame, the last result after eof, and its
//! errors.

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

use super::*;
use crate::messages::{PipelineSummary, WordTiming};

fn dialect() -> VoskDialect {
    VoskDialect::new(&VoskSettings::default(), &VoskQuery::default(), 5)
}

fn transcript(is_final: bool, text: &str, start_ms: u64, end_ms: u64) -> Transcript {
    Transcript {
        is_final,
        transcript: text.to_string(),
        confidence: 0.5,
        stability: 0.0,
        start_ms,
        end_ms,
        words: text
            .split_whitespace()
            .map(|word| WordTiming {
                word: word.to_string(),
                start_ms,
                end_ms,
                confidence: 0.25,
            })
            .collect(),
        language_code: "en-US".into(),
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The frame's actions, with the reply parsed.
fn frame(dialect: &mut VoskDialect, bytes: &'static [u8]) -> (Vec<Inbound>, Value) {
    let mut actions = Vec::new();
    assert!(dialect
        .binary_actions(Bytes::from_static(bytes), &mut actions)
        .is_ok());
    let reply = match actions.last() {
        Some(Inbound::Reply(text)) => parse(text),
        _ => Value::Null,
    };
    (actions, reply)
}

fn end() -> SessionEnd<'static> {
    SessionEnd {
        session_id: "s",
        audio_ms: 0,
        summary: PipelineSummary::default(),
    }
}

#[test]
fn config_then_the_first_frame_starts_the_pipeline_as_configured() {
    let mut vosk = dialect();
    let config = r#"{ "config" : { "sample_rate" : 16000.0, "phrase_list": ["one two", "[unk]"],
        "model": "/etc/passwd", "extra": 1 } }"#;
    let mut actions = Vec::new();
    assert!(vosk.text(config, &mut actions).is_ok());
    assert!(actions.is_empty(), "config is not answered: {actions:?}");
    let (actions, reply) = frame(&mut vosk, b"\x00\x01");
    match actions.as_slice() {
        [Inbound::Configure(start), Inbound::Audio { data, .. }, Inbound::Reply(_)] => {
            assert_eq!(start.format.encoding, Encoding::Linear16);
            assert_eq!(start.format.sample_rate_hz, 16_000);
            assert_eq!(start.language_code, "en-US");
            assert_eq!(start.phrases, ["one two"]);
            assert!(start.interim_results);
            assert_eq!(data.as_ref(), b"\x00\x01");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reply, json!({"partial": ""}));
    // Later frames only carry audio and their reply; a late config changes nothing.
    assert!(vosk
        .text(r#"{"config": {"sample_rate": 8000}}"#, &mut Vec::new())
        .is_ok());
    let (actions, _) = frame(&mut vosk, b"\x00\x01");
    assert!(matches!(
        actions.as_slice(),
        [Inbound::Audio { .. }, Inbound::Reply(_)]
    ));
    assert_eq!(vosk.start_config().format.sample_rate_hz, 16_000);
}

#[test]
fn without_config_the_settings_and_url_decide() {
    let settings = VoskSettings {
        sample_rate: 16_000,
        ..VoskSettings::default()
    };
    let query = parse_query("key=abc&language=de-DE&other=1").unwrap_or_default();
    assert_eq!(query.key.as_deref(), Some("abc"));
    let mut vosk = VoskDialect::new(&settings, &query, 5);
    let (actions, _) = frame(&mut vosk, b"\x00\x00");
    match actions.first() {
        Some(Inbound::Configure(start)) => {
            assert_eq!(start.format.sample_rate_hz, 16_000);
            assert_eq!(start.language_code, "de-DE");
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_query("language=d%20e").is_err());
}

#[test]
fn each_frame_gets_one_reply_partial_or_the_oldest_final() {
    let mut vosk = dialect();
    let mut out = Vec::new();
    vosk.transcript(&transcript(false, "one", 0, 300), &mut out);
    assert!(out.is_empty(), "results wait for a frame");
    assert_eq!(frame(&mut vosk, b"\x00\x00").1, json!({"partial": "one"}));
    vosk.transcript(&transcript(true, "one two", 0, 600), &mut out);
    vosk.transcript(&transcript(true, "three", 900, 1_200), &mut out);
    vosk.transcript(&transcript(false, "four", 1_500, 1_800), &mut out);
    assert!(out.is_empty());
    assert_eq!(
        frame(&mut vosk, b"\x00\x00").1,
        json!({"result": [
            {"conf": 0.25, "end": 0.6, "start": 0.0, "word": "one"},
            {"conf": 0.25, "end": 0.6, "start": 0.0, "word": "two"}],
            "text": "one two"})
    );
    assert_eq!(frame(&mut vosk, b"\x00\x00").1["text"], "three");
    assert_eq!(frame(&mut vosk, b"\x00\x00").1, json!({"partial": "four"}));
}

#[test]
fn eof_flushes_every_final_not_yet_sent_into_one_last_result() {
    let mut vosk = dialect();
    frame(&mut vosk, b"\x00\x00");
    let mut actions = Vec::new();
    assert!(vosk.text(r#"{"eof" : 1}"#, &mut actions).is_ok());
    assert_eq!(actions, [Inbound::Stop]);
    vosk.transcript(&transcript(true, "one", 0, 300), &mut Vec::new());
    vosk.transcript(&transcript(true, "two three", 600, 900), &mut Vec::new());
    // Frames after eof are not answered (the session drops their audio).
    let (actions, _) = frame(&mut vosk, b"\x00\x00");
    assert!(matches!(actions.as_slice(), [Inbound::Audio { .. }]));
    let mut out = Vec::new();
    let close = vosk.closed(end(), &mut out);
    assert_eq!(close.code, 1000);
    let last: Vec<Value> = out.iter().map(|t| parse(t)).collect();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["text"], "one two three");
    assert_eq!(last[0]["result"].as_array().map(Vec::len), Some(3));
    // Nothing recognised: vosk's empty result.
    let mut silent = dialect();
    let mut out = Vec::new();
    silent.closed(end(), &mut out);
    assert_eq!(out, [r#"{"text":""}"#]);
}

#[test]
fn words_off_and_alternatives_shape_the_results() {
    let mut vosk = dialect();
    assert!(vosk
        .text(r#"{"config": {"words": false}}"#, &mut Vec::new())
        .is_ok());
    vosk.transcript(&transcript(true, "hello there", 0, 500), &mut Vec::new());
    assert_eq!(
        frame(&mut vosk, b"\x00\x00").1,
        json!({"text": "hello there"})
    );
    let mut vosk = dialect();
    assert!(vosk
        .text(
            r#"{"config": {"max_alternatives": 3, "words": 1}}"#,
            &mut Vec::new()
        )
        .is_ok());
    vosk.transcript(&transcript(true, "hello", 0, 500), &mut Vec::new());
    assert_eq!(
        frame(&mut vosk, b"\x00\x00").1,
        json!({"alternatives": [{"confidence": 0.5,
            "result": [{"end": 0.5, "start": 0.0, "word": "hello"}], "text": "hello"}]})
    );
}

#[test]
fn reset_flushes_and_answers_with_a_result() {
    let mut vosk = dialect();
    let mut actions = Vec::new();
    assert!(vosk.text(r#"{"reset":1}"#, &mut actions).is_ok());
    assert_eq!(
        actions,
        [Inbound::Reply(r#"{"text":""}"#.into())],
        "before audio nothing is flushed"
    );
    frame(&mut vosk, b"\x00\x00");
    vosk.transcript(&transcript(true, "done", 0, 500), &mut Vec::new());
    let mut actions = Vec::new();
    assert!(vosk.text(r#"{"reset" : true}"#, &mut actions).is_ok());
    match actions.as_slice() {
        [Inbound::Finalize, Inbound::Reply(text)] => assert_eq!(parse(text)["text"], "done"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_messages_are_refused_with_their_code() {
    for (text, code) in [
        ("not json", ErrorCode::InvalidJson),
        ("[1]", ErrorCode::InvalidJson),
        (r#"{"hello": 1}"#, ErrorCode::InvalidMessage),
        (r#"{"eof": 0}"#, ErrorCode::InvalidMessage),
        (r#"{"config": 5}"#, ErrorCode::InvalidMessage),
        (
            r#"{"config": {"sample_rate": 44}}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"config": {"sample_rate": "16000"}}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"config": {"sample_rate": 16000.5}}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"config": {"max_alternatives": -1}}"#,
            ErrorCode::InvalidConfig,
        ),
        (r#"{"config": {"words": "yes"}}"#, ErrorCode::InvalidConfig),
        (
            r#"{"config": {"phrase_list": "one"}}"#,
            ErrorCode::InvalidConfig,
        ),
        (
            r#"{"config": {"phrase_list": ["a","b","c","d","e","f"]}}"#,
            ErrorCode::InvalidConfig,
        ),
    ] {
        let refused = dialect().text(text, &mut Vec::new());
        assert_eq!(refused.map_err(|r| r.code), Err(code), "{text}");
    }
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let refused = dialect().text(&deep, &mut Vec::new());
    assert_eq!(refused.map_err(|r| r.code), Err(ErrorCode::InvalidJson));
}

#[test]
fn an_error_that_ends_the_session_sends_what_was_recognised_first() {
    let mut vosk = dialect();
    vosk.transcript(&transcript(true, "kept", 0, 500), &mut Vec::new());
    let mut out = Vec::new();
    let close = vosk.error(
        ErrorCode::ShuttingDown,
        "the server is shutting down",
        &mut out,
    );
    assert_eq!(
        close,
        Some(Close {
            code: 1001,
            reason: "shutting_down".into()
        })
    );
    let sent: Vec<Value> = out.iter().map(|t| parse(t)).collect();
    assert_eq!(sent[0]["text"], "kept");
    assert_eq!(
        sent[1],
        json!({"error": "the server is shutting down", "code": "shutting_down"})
    );
    let mut out = Vec::new();
    let close = vosk.error(ErrorCode::InvalidJson, "bad", &mut out);
    assert_eq!(close.map(|c| c.code), Some(1007));
    assert_eq!(out.len(), 1);
}

#[test]
fn the_credential_is_a_bearer_header_or_the_key_in_the_url() {
    let query = VoskQuery {
        key: Some("from-url".into()),
        language: None,
    };
    assert_eq!(
        credential(&HeaderMap::new(), &query),
        Ok(Some("from-url".into()))
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_static("bearer from-header"),
    );
    assert_eq!(credential(&headers, &query), Ok(Some("from-header".into())));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
    assert!(credential(&headers, &query).is_err());
    assert_eq!(
        credential(&HeaderMap::new(), &VoskQuery::default()),
        Ok(None)
    );
}

#[test]
fn settings_are_checked() {
    assert!(VoskSettings::default().checks().iter().all(|(_, ok)| *ok));
    let bad = VoskSettings {
        sample_rate: 100,
        language: "e n".into(),
        ..VoskSettings::default()
    };
    assert!(bad.checks().iter().all(|(_, ok)| !*ok));
}
