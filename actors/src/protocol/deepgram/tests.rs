//! The Deepgram dialect alone: its query mapping, its client messages, and every server message
//! it writes for the pipeline's reports.

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use serde_json::{json, Value};

use super::*;
use crate::audio::Encoding;
use crate::messages::{PipelineSummary, WordTiming};

const QUERY: &str = "model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true\
                     &punctuate=true&keyterm=voxgate&keywords=gateway:2&utterance_end_ms=1000\
                     &vad_events=true&endpointing=300&tag=abc&mip_opt_out=false";

fn dialect(query: &str) -> DeepgramDialect {
    let config = parse_query(query, 10).unwrap_or_else(|e| panic!("{e:?}"));
    let mut dialect = DeepgramDialect::new(config, &DeepgramSettings::default());
    dialect.opened("req-1", &mut Vec::new());
    dialect
}

fn transcript(is_final: bool, text: &str, start_ms: u64, end_ms: u64) -> Transcript {
    Transcript {
        is_final,
        transcript: text.to_string(),
        confidence: 0.75,
        stability: 0.0,
        start_ms,
        end_ms,
        words: vec![WordTiming {
            word: "Hello".into(),
            start_ms,
            end_ms,
            confidence: 0.5,
        }],
        language_code: "en-us".into(),
    }
}

fn json_of(texts: &[String]) -> Vec<Value> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
        .collect()
}

#[test]
fn the_query_maps_onto_the_start_configuration() {
    let config = parse_query(QUERY, 10).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(config.start.format.encoding, Encoding::Linear16);
    assert_eq!(config.start.format.sample_rate_hz, 16_000);
    assert_eq!(config.start.language_code, "en-US");
    assert!(config.start.interim_results && config.start.enable_automatic_punctuation);
    assert_eq!(config.start.phrases, ["voxgate", "gateway"]);
    assert_eq!(config.model, "nova-3");
    assert_eq!(config.utterance_end_ms, Some(1000));
    assert!(config.vad_events && config.endpointing && config.interim_results);
    let mulaw = parse_query("encoding=mulaw&sample_rate=8000&language=de", 10);
    let mulaw = mulaw.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(mulaw.start.format.encoding, Encoding::Mulaw);
    assert_eq!(mulaw.start.language_code, "de");
    assert!(!mulaw.interim_results && !mulaw.start.interim_results);
    let no_endpointing = parse_query("encoding=linear16&sample_rate=16000&endpointing=false", 10);
    assert_eq!(no_endpointing.map(|c| c.endpointing), Ok(false));
}

#[test]
fn what_the_gateway_cannot_do_is_refused_naming_the_parameter() {
    for (query, names) in [
        ("sample_rate=16000", "encoding"),
        ("encoding=linear32&sample_rate=16000", "linear32"),
        ("encoding=linear16", "sample_rate"),
        ("encoding=linear16&sample_rate=500", "sample_rate"),
        ("encoding=linear16&sample_rate=16000&channels=2", "channels"),
        (
            "encoding=linear16&sample_rate=16000&diarize=true",
            "diarize",
        ),
        ("encoding=linear16&sample_rate=16000&redact=pci", "redact"),
        (
            "encoding=linear16&sample_rate=16000&interim_results=yes",
            "interim_results",
        ),
        (
            "encoding=linear16&sample_rate=16000&language=e%20n",
            "language",
        ),
        ("encoding=linear16&sample_rate=16000&keyterm=", "keyterm"),
        (
            "encoding=linear16&sample_rate=16000&utterance_end_ms=soon",
            "utterance_end_ms",
        ),
    ] {
        match parse_query(query, 10) {
            Err(QueryRefusal(message)) => assert!(message.contains(names), "{query}: {message}"),
            Ok(config) => panic!("{query} accepted: {config:?}"),
        }
    }
    assert!(parse_query("encoding=linear16&sample_rate=16000&diarize=false", 10).is_ok());
    let many = "encoding=linear16&sample_rate=16000&keyterm=a&keyterm=b&keyterm=c";
    assert!(parse_query(many, 2).is_err());
}

#[test]
fn client_messages_map_onto_session_actions() {
    let mut dg = dialect(QUERY);
    let mut actions = Vec::new();
    for text in [
        r#"{"type":"KeepAlive"}"#,
        r#"{"type":"Finalize"}"#,
        r#"{"type":"CloseStream"}"#,
    ] {
        assert!(dg.text(text, &mut actions).is_ok());
    }
    assert_eq!(
        actions,
        [Inbound::KeepAlive, Inbound::Finalize, Inbound::Stop]
    );
    let mut actions = Vec::new();
    assert!(dg
        .text(r#"{"type":"Configure","keyterms":["x"]}"#, &mut actions)
        .is_ok());
    match actions.as_slice() {
        [Inbound::Reply(text)] => {
            let reply: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            assert_eq!(reply["type"], "ConfigureFailure");
            assert_eq!(reply["request_id"], "req-1");
        }
        other => panic!("{other:?}"),
    }
    let unknown = dg.text(r#"{"type":"Nope"}"#, &mut Vec::new());
    assert_eq!(unknown.map_err(|r| r.code), Err(ErrorCode::UnknownType));
    assert_eq!(
        dg.binary(Bytes::from_static(b"\x01\x02")),
        Ok(Inbound::Audio {
            data: Bytes::from_static(b"\x01\x02"),
            audio_id: None
        })
    );
    assert_eq!(dg.binary(Bytes::new()), Ok(Inbound::Stop));
}

#[test]
fn results_carry_deepgram_fields_and_speech_events() {
    let mut dg = dialect(QUERY);
    let mut out = Vec::new();
    dg.transcript(&transcript(false, "hello", 500, 900), &mut out);
    dg.transcript(&transcript(true, "Hello", 500, 1_200), &mut out);
    let sent = json_of(&out);
    let kinds: Vec<&str> = sent.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["SpeechStarted", "Results", "Results", "UtteranceEnd"]
    );
    assert_eq!(sent[0]["timestamp"], 0.5);
    assert_eq!(sent[1]["is_final"], false);
    assert_eq!(
        sent[2],
        json!({"type":"Results","channel_index":[0,1],"start":0.5,"duration":0.7,
               "is_final":true,"speech_final":true,"from_finalize":false,
               "channel":{"alternatives":[{"transcript":"Hello","confidence":0.75,
                 "words":[{"word":"hello","start":0.5,"end":1.2,"confidence":0.5,
                           "punctuated_word":"Hello"}]}]},
               "metadata":{"request_id":"req-1",
                           "model_info":{"name":"nova-3","version":env!("CARGO_PKG_VERSION"),
                                         "arch":"voxgate"},
                           "model_uuid":"req-1"}})
    );
    assert_eq!(sent[3]["last_word_end"], 1.2);
}

#[test]
fn the_final_after_finalize_is_marked_and_interims_follow_the_query() {
    let mut dg = dialect("encoding=linear16&sample_rate=16000");
    let mut out = Vec::new();
    dg.transcript(&transcript(false, "hel", 0, 300), &mut out);
    assert!(out.is_empty(), "no interims without interim_results");
    let _ = dg.text(r#"{"type":"Finalize"}"#, &mut Vec::new());
    dg.transcript(&transcript(true, "hello", 0, 600), &mut out);
    dg.transcript(&transcript(true, "again", 600, 900), &mut out);
    let sent = json_of(&out);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (
            sent[0]["from_finalize"].clone(),
            sent[0]["speech_final"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(sent[1]["from_finalize"], false);
}

#[test]
fn errors_close_as_deepgram_does_and_close_stream_ends_with_metadata() {
    let mut dg = dialect(QUERY);
    let mut out = Vec::new();
    let close = dg.error(ErrorCode::InvalidAudio, "not FLAC", &mut out);
    assert_eq!(
        close.map(|c| (c.code, c.reason)),
        Some((1008, DATA_ERROR.to_string()))
    );
    let close = dg.error(ErrorCode::IdleTimeout, "quiet", &mut out);
    assert_eq!(
        close.map(|c| (c.code, c.reason)),
        Some((1011, NO_AUDIO_ERROR.to_string()))
    );
    assert_eq!(dg.error(ErrorCode::InvalidJson, "bad", &mut out), None);
    let close = dg.error(ErrorCode::TooManySessions, "full", &mut out);
    assert_eq!(close.map(|c| c.code), Some(1013));
    let sent = json_of(&out);
    assert_eq!(sent[0]["type"], "Error");
    assert_eq!(sent[2]["variant"], "SchemaError");
    let mut out = Vec::new();
    let end = SessionEnd {
        session_id: "req-1",
        audio_ms: 2_500,
        summary: PipelineSummary::default(),
    };
    assert_eq!(dg.closed(end, &mut out).code, 1000);
    let metadata = &json_of(&out)[0];
    assert_eq!(metadata["type"], "Metadata");
    assert_eq!(metadata["duration"], 2.5);
    assert_eq!(metadata["channels"], 1);
    assert_eq!(metadata["request_id"], "req-1");
}

#[test]
fn iso_times_are_utc_calendar_dates() {
    assert_eq!(messages::iso_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(messages::iso_time(951_782_400), "2000-02-29T00:00:00.000Z");
    assert_eq!(
        messages::iso_time(1_796_078_060),
        "2026-11-30T22:34:20.000Z"
    );
}

#[test]
fn credentials_come_from_the_header_or_the_subprotocols() {
    let mut headers = HeaderMap::new();
    assert_eq!(credential(&headers), Ok(None));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Token k1"));
    assert_eq!(credential(&headers), Ok(Some("k1".into())));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer k2"));
    assert_eq!(credential(&headers), Ok(Some("k2".into())));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic k3"));
    assert!(credential(&headers).is_err());
    let mut browser = HeaderMap::new();
    browser.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("token, k4"),
    );
    assert_eq!(credential(&browser), Ok(Some("k4".into())));
}
