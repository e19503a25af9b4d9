//! The jambonz dialect alone: `start`/`stop` onto the session, `transcription` and `error` out.

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::audio::Encoding;
use crate::messages::PipelineSummary;

const START: &str = r#"{"type":"start","language":"en-GB","format":"raw","encoding":"LINEAR16",
    "sampleRateHz":8000,"interimResults":true,
    "options":{"hints":["voxgate",{"phrase":"jambonz","boost":10}],"hintsBoost":20}}"#;

fn started(start: &str) -> (JambonzDialect, StartConfig) {
    let mut dialect = JambonzDialect::new(5);
    let mut actions = Vec::new();
    assert!(dialect.text(start, &mut actions).is_ok());
    match actions.as_slice() {
        [Inbound::Configure(config)] => {
            let config = config.clone();
            (dialect, config)
        }
        other => panic!("{other:?}"),
    }
}

fn transcript(is_final: bool, text: &str) -> Transcript {
    Transcript {
        is_final,
        transcript: text.to_string(),
        confidence: 0.75,
        stability: 0.0,
        start_ms: 0,
        end_ms: 500,
        words: Vec::new(),
        language_code: "en-gb".into(),
    }
}

fn sent(dialect: &mut JambonzDialect, t: &Transcript) -> Vec<Value> {
    let mut out = Vec::new();
    dialect.transcript(t, &mut out);
    out.iter()
        .map(|m| serde_json::from_str(m).unwrap_or(Value::Null))
        .collect()
}

#[test]
fn start_configures_the_session() {
    let (_, config) = started(START);
    assert_eq!(config.format.encoding, Encoding::Linear16);
    assert_eq!(config.format.sample_rate_hz, 8_000);
    assert_eq!(config.language_code, "en-GB");
    assert!(config.interim_results);
    assert_eq!(config.phrases, ["voxgate", "jambonz"]);
    assert_eq!(config.frame_ms, Some(20), "a phone call's frames");
    // The least jambonz may send: 8 kHz, en-US, no interims.
    let (_, config) = started(r#"{"type":"start","extra":{"x":1}}"#);
    assert_eq!(config.format.sample_rate_hz, 8_000);
    assert_eq!(config.language_code, "en-US");
    assert!(!config.interim_results && config.phrases.is_empty());
    let (_, config) = started(r#"{"type":"start","sampleRateHz":16000,"options":{}}"#);
    assert_eq!(config.format.sample_rate_hz, 16_000);
}

#[test]
fn stop_and_audio_map_onto_session_actions() {
    let (mut dialect, _) = started(START);
    let mut actions = Vec::new();
    assert!(dialect.text(r#"{"type":"stop"}"#, &mut actions).is_ok());
    assert_eq!(actions, [Inbound::Stop]);
    assert_eq!(
        dialect.binary(Bytes::from_static(b"\x01\x02")),
        Ok(Inbound::Audio {
            data: Bytes::from_static(b"\x01\x02"),
            audio_id: None
        })
    );
}

#[test]
fn transcriptions_carry_jambonz_fields_and_interims_only_when_asked() {
    let (mut dialect, _) = started(START);
    assert_eq!(
        sent(&mut dialect, &transcript(false, "hello")),
        [json!({"type": "transcription", "is_final": false,
            "alternatives": [{"transcript": "hello", "confidence": 0.75}],
            "channel": 1, "language": "en-gb"})]
    );
    assert_eq!(
        sent(&mut dialect, &transcript(true, "hello world"))[0]["is_final"],
        true
    );
    assert!(sent(&mut dialect, &transcript(true, "")).is_empty());
    let (mut quiet, _) = started(r#"{"type":"start","language":"de-DE"}"#);
    assert!(sent(&mut quiet, &transcript(false, "hallo")).is_empty());
    let mut unnamed = transcript(true, "hallo");
    unnamed.language_code.clear();
    assert_eq!(sent(&mut quiet, &unnamed)[0]["language"], "de-DE");
}

#[test]
fn bad_messages_are_refused_with_their_code() {
    for (text, code) in [
        ("not json", ErrorCode::InvalidJson),
        (r#"{"type":"pause"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"start","encoding":"MULAW"}"#,
            ErrorCode::UnsupportedEncoding,
        ),
        (
            r#"{"type":"start","format":"wav"}"#,
            ErrorCode::UnsupportedEncoding,
        ),
        (
            r#"{"type":"start","sampleRateHz":4000}"#,
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            r#"{"type":"start","sampleRateHz":"fast"}"#,
            ErrorCode::InvalidMessage,
        ),
        (
            r#"{"type":"start","language":"e n"}"#,
            ErrorCode::InvalidConfig,
        ),
        (
            r#"{"type":"start","options":{"hints":"one"}}"#,
            ErrorCode::InvalidConfig,
        ),
        (
            r#"{"type":"start","options":{"hints":[""]}}"#,
            ErrorCode::InvalidConfig,
        ),
        (
            r#"{"type":"start","options":{"hints":["a","b","c","d","e","f"]}}"#,
            ErrorCode::InvalidConfig,
        ),
    ] {
        let refused = JambonzDialect::new(5).text(text, &mut Vec::new());
        assert_eq!(refused.map_err(|r| r.code), Err(code), "{text}");
    }
}

#[test]
fn errors_are_jambonz_error_messages_then_the_native_close() {
    let mut dialect = JambonzDialect::new(5);
    let mut out = Vec::new();
    let close = dialect.error(ErrorCode::UnsupportedSampleRate, "too slow", &mut out);
    assert_eq!(
        out,
        [r#"{"type":"error","error":"unsupported_sample_rate: too slow"}"#]
    );
    assert_eq!(
        close,
        Some(Close {
            code: 1003,
            reason: "unsupported_sample_rate".into()
        })
    );
    assert_eq!(dialect.error(ErrorCode::UnknownType, "x", &mut out), None);
    let end = SessionEnd {
        session_id: "s",
        audio_ms: 0,
        summary: PipelineSummary::default(),
    };
    let mut out = Vec::new();
    assert_eq!(dialect.closed(end, &mut out).code, 1000);
    assert!(out.is_empty());
}

#[test]
fn the_credential_is_a_bearer_key() {
    let mut headers = HeaderMap::new();
    assert_eq!(credential(&headers), Ok(None));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k-1"));
    assert_eq!(credential(&headers), Ok(Some("k-1".into())));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Token k-1"));
    assert!(credential(&headers).is_err());
    assert_eq!(refusal_body("no"), r#"{"type":"error","error":"no"}"#);
}

/// `[dialects.jambonz] frame_ms` is the frame length the session asks the pipeline for.
#[test]
fn start_asks_for_the_configured_frame_length() {
    let mut dialect = JambonzDialect::new(5).frame_ms(100);
    let mut actions = Vec::new();
    assert!(dialect.text(START, &mut actions).is_ok());
    let frame_ms = match actions.as_slice() {
        [Inbound::Configure(config)] => config.frame_ms,
        other => panic!("{other:?}"),
    };
    assert_eq!(frame_ms, Some(100));
}
