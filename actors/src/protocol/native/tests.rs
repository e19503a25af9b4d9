//! Tests of the native protocol: parsing and validation of client messages, the query-string
//! configuration, and the exact JSON of every server message.

use super::*;
use crate::audio::{AudioFormat, Encoding};
use crate::protocol::StartConfig;
use crate::testing::start_config;
use serde_json::json;

fn parse(text: &str) -> Result<ClientMessage, Rejection> {
    parse_client_text(text)
}

fn code_of(text: &str) -> Option<ErrorCode> {
    parse(text).err().map(|r| r.code)
}

fn start(text: &str) -> StartRequest {
    match parse(text) {
        Ok(ClientMessage::Start(s)) => s,
        other => panic!("expected a start message, got {other:?}"),
    }
}

#[test]
fn full_start_message_parses_and_validates() {
    let request = start(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
            "language_code":"de-DE","interim_results":false,
            "enable_automatic_punctuation":true,"model":"latest_long",
            "phrases":["voxgate","actix"],"single_utterance":true}"#,
    );
    let config = request.validate(500);
    assert_eq!(
        config,
        Ok(StartConfig {
            format: AudioFormat {
                encoding: Encoding::Linear16,
                sample_rate_hz: 16_000
            },
            language_code: "de-DE".into(),
            interim_results: false,
            enable_automatic_punctuation: true,
            model: "latest_long".into(),
            phrases: vec!["voxgate".into(), "actix".into()],
            single_utterance: true,
            features: Default::default(),
            frame_ms: None,
        })
    );
}

#[test]
fn minimal_start_gets_the_documented_defaults() {
    let config =
        start(r#"{"type":"start","encoding":"mulaw","sample_rate_hz":8000}"#).validate(500);
    assert_eq!(
        config,
        Ok(StartConfig {
            format: AudioFormat {
                encoding: Encoding::Mulaw,
                sample_rate_hz: 8_000
            },
            ..start_config()
        })
    );
}

#[test]
fn null_optional_fields_mean_default() {
    let config = start(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"language_code":null,
            "model":null,"phrases":null,"interim_results":null}"#,
    )
    .validate(500);
    let config = config.map_err(|r| r.message);
    assert_eq!(
        config.as_ref().map(|c| c.language_code.as_str()),
        Ok("en-US")
    );
    assert_eq!(config.map(|c| c.interim_results), Ok(true));
}

#[test]
fn start_with_missing_or_ill_typed_fields_is_invalid_message() {
    for text in [
        r#"{"type":"start","sample_rate_hz":16000}"#,
        r#"{"type":"start","encoding":"LINEAR16"}"#,
        r#"{"type":"start","encoding":16,"sample_rate_hz":16000}"#,
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":"16000"}"#,
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":-1}"#,
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000.5}"#,
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"phrases":"a"}"#,
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"interim_results":1}"#,
    ] {
        assert_eq!(code_of(text), Some(ErrorCode::InvalidMessage), "{text}");
    }
}

#[test]
fn start_validation_errors_have_their_codes() {
    let check = |text: &str, max_phrases: usize, code: ErrorCode| {
        let got = start(text).validate(max_phrases).err().map(|r| r.code);
        assert_eq!(got, Some(code), "{text}");
    };
    check(
        r#"{"type":"start","encoding":"MP3","sample_rate_hz":16000}"#,
        5,
        ErrorCode::UnsupportedEncoding,
    );
    check(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":96000}"#,
        5,
        ErrorCode::UnsupportedSampleRate,
    );
    check(
        r#"{"type":"start","encoding":"AMR","sample_rate_hz":16000}"#,
        5,
        ErrorCode::UnsupportedSampleRate,
    );
    check(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":0}"#,
        5,
        ErrorCode::UnsupportedSampleRate,
    );
    for language in ["", "en_US", "en US", &"a".repeat(36), "ü"] {
        let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                          "language_code":language})
        .to_string();
        check(&text, 5, ErrorCode::InvalidConfig);
    }
    let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                      "phrases":["a","b","c"]})
    .to_string();
    check(&text, 2, ErrorCode::InvalidConfig);
    assert!(
        start(&text).validate(3).is_ok(),
        "3 phrases within a limit of 3"
    );
    for phrase in [String::new(), " ".into(), "x".repeat(101)] {
        let text = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                          "phrases":[phrase]})
        .to_string();
        check(&text, 5, ErrorCode::InvalidConfig);
    }
    let long_ok = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                         "phrases":["é".repeat(100)], "language_code": "a".repeat(35)})
    .to_string();
    assert!(
        start(&long_ok).validate(5).is_ok(),
        "limits are inclusive, in characters"
    );
    check(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,"model":"a b"}"#,
        5,
        ErrorCode::InvalidConfig,
    );
}

#[test]
fn audio_message_decodes_base64_with_or_without_padding() {
    for content in ["AAEC/w==", "AAEC/w"] {
        let text = json!({"type":"audio","content":content,"audio_id":"a-1"}).to_string();
        assert_eq!(
            parse(&text),
            Ok(ClientMessage::Audio {
                data: Bytes::from_static(&[0, 1, 2, 255]),
                audio_id: Some("a-1".into())
            })
        );
    }
    assert_eq!(
        parse(r#"{"type":"audio","content":""}"#),
        Ok(ClientMessage::Audio {
            data: Bytes::new(),
            audio_id: None
        })
    );
}

#[test]
fn audio_errors_have_their_codes() {
    assert_eq!(
        code_of(r#"{"type":"audio","content":"not base64!"}"#),
        Some(ErrorCode::InvalidBase64)
    );
    assert_eq!(
        code_of(r#"{"type":"audio","content":"AAEC_w"}"#),
        Some(ErrorCode::InvalidBase64),
        "URL-safe alphabet is not standard base64"
    );
    assert_eq!(
        code_of(r#"{"type":"audio"}"#),
        Some(ErrorCode::InvalidMessage)
    );
    assert_eq!(
        code_of(r#"{"type":"audio","content":5}"#),
        Some(ErrorCode::InvalidMessage)
    );
    assert_eq!(
        code_of(r#"{"type":"audio","content":"AA==","audio_id":7}"#),
        Some(ErrorCode::InvalidMessage)
    );
}

#[test]
fn a_start_with_resume_is_a_resume_and_carries_nothing_else() {
    assert_eq!(
        parse(r#"{"type":"start","resume":{"token":"vg1.a.b","from_ms":12340}}"#),
        Ok(ClientMessage::Resume {
            token: "vg1.a.b".into(),
            from_ms: Some(12_340)
        })
    );
    assert_eq!(
        parse(r#"{"type":"start","resume":{"token":"vg1.a.b"}}"#),
        Ok(ClientMessage::Resume {
            token: "vg1.a.b".into(),
            from_ms: None
        })
    );
    for bad in [
        r#"{"type":"start","resume":{"token":"t"},"encoding":"LINEAR16"}"#,
        r#"{"type":"start","resume":{"token":"t","extra":1}}"#,
        r#"{"type":"start","resume":{"from_ms":5}}"#,
        r#"{"type":"start","resume":{"token":"t","from_ms":-5}}"#,
        r#"{"type":"start","resume":"vg1.a.b"}"#,
        r#"{"type":"start","resume":null}"#,
    ] {
        assert_eq!(code_of(bad), Some(ErrorCode::InvalidMessage), "{bad}");
    }
}

#[test]
fn control_messages_parse_and_ignore_extra_fields() {
    assert_eq!(
        parse(r#"{"type":"keepalive"}"#),
        Ok(ClientMessage::KeepAlive)
    );
    assert_eq!(
        parse(r#"{"type":"finalize","x":1}"#),
        Ok(ClientMessage::Finalize)
    );
    assert_eq!(parse(r#"{"type":"stop"}"#), Ok(ClientMessage::Stop));
}

#[test]
fn envelope_errors_have_their_codes() {
    for text in [
        "",
        "{",
        "not json",
        "[1,2]",
        "\"start\"",
        "{}",
        r#"{"type":5}"#,
        "null",
    ] {
        assert_eq!(code_of(text), Some(ErrorCode::InvalidJson), "{text:?}");
    }
    let unknown = parse(r#"{"type":"subscribe"}"#);
    assert_eq!(
        unknown.as_ref().err().map(|r| r.code),
        Some(ErrorCode::UnknownType)
    );
    assert!(unknown
        .err()
        .is_some_and(|r| r.message.contains("subscribe")));
}

#[test]
fn deep_nesting_is_invalid_json_before_parsing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(code_of(&deep), Some(ErrorCode::InvalidJson));
    let nested = |depth: usize| {
        let mut text = String::from(r#"{"type":"keepalive","x":"#);
        text.push_str(&"[".repeat(depth - 1));
        text.push_str(&"]".repeat(depth - 1));
        text.push('}');
        text
    };
    assert_eq!(parse(&nested(MAX_JSON_DEPTH)), Ok(ClientMessage::KeepAlive));
    assert_eq!(
        code_of(&nested(MAX_JSON_DEPTH + 1)),
        Some(ErrorCode::InvalidJson)
    );
    // Brackets in strings, escaped quotes included, are text.
    let in_string = format!(r#"{{"type":"keepalive","x":"\"{}"}}"#, "[".repeat(100));
    assert_eq!(parse(&in_string), Ok(ClientMessage::KeepAlive));
}

#[test]
fn long_client_strings_are_quoted_shortly() {
    let huge = "x".repeat(10_000);
    let rejection = parse(&json!({"type": huge}).to_string()).err();
    assert!(rejection.is_some_and(|r| r.message.len() < 300));
}

#[test]
fn query_with_encoding_is_a_configuration() {
    let request = parse_query_config(
        "encoding=OGG_OPUS&sample_rate_hz=48000&language_code=fr-FR&interim_results=false\
         &enable_automatic_punctuation=1&model=latest_short&single_utterance=TRUE\
         &phrases=a%20b,c&phrases=d+e&token=ignored",
    );
    assert_eq!(
        request,
        Ok(Some(StartRequest {
            encoding: "OGG_OPUS".into(),
            sample_rate_hz: 48_000,
            language_code: Some("fr-FR".into()),
            interim_results: Some(false),
            enable_automatic_punctuation: Some(true),
            model: Some("latest_short".into()),
            phrases: Some(vec!["a b".into(), "c".into(), "d e".into()]),
            single_utterance: Some(true),
            ..StartRequest::default()
        }))
    );
}

#[test]
fn features_parse_from_start_and_query_and_are_checked() {
    let validated = |text: &str| start(text).validate(10);
    let config = validated(
        r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
            "language_codes":["en-US","fr-FR"],"profanity_filter":true,
            "endpointing":"Short","denoise":true,"voice_activity_events":true}"#,
    )
    .expect("valid");
    assert_eq!(config.language_code, "en-US");
    assert_eq!(
        config.features,
        Features {
            alternative_language_codes: vec!["fr-FR".into()],
            profanity_filter: true,
            endpointing: Some(Endpointing::Short),
            denoise: true,
            voice_activity_events: true,
        }
    );
    let query = parse_query_config(
        "encoding=LINEAR16&sample_rate_hz=16000&language_codes=de-DE,%20en-GB\
         &profanity_filter=1&endpointing=supershort&denoise=false&voice_activity_events=true",
    )
    .expect("parses")
    .expect("configures")
    .validate(10)
    .expect("valid");
    assert_eq!(query.language_code, "de-DE");
    assert_eq!(query.features.alternative_language_codes, vec!["en-GB"]);
    assert_eq!(query.features.endpointing, Some(Endpointing::Supershort));
    assert!(query.features.profanity_filter && !query.features.denoise);
    assert!(query.features.voice_activity_events);
    assert_eq!(
        validated(r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000}"#)
            .map(|c| c.features),
        Ok(Features::default())
    );
    for (bad, names) in [
        (
            r#""language_code":"en-US","language_codes":["fr-FR"]"#,
            "not both",
        ),
        (r#""language_codes":[]"#, "at least one"),
        (r#""language_codes":["a","b","c","d"]"#, "at most 3"),
        (r#""language_codes":["en-US","f r"]"#, "language_code `f r`"),
        (r#""endpointing":"fast""#, "endpointing `fast`"),
    ] {
        let text =
            format!(r#"{{"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,{bad}}}"#);
        match validated(&text) {
            Err(rejection) => {
                assert_eq!(rejection.code, ErrorCode::InvalidConfig, "{bad}");
                assert!(
                    rejection.message.contains(names),
                    "{bad}: {}",
                    rejection.message
                );
            }
            Ok(config) => panic!("{bad} accepted: {config:?}"),
        }
    }
}

#[test]
fn query_without_configuration_keys_configures_nothing() {
    assert_eq!(parse_query_config(""), Ok(None));
    assert_eq!(parse_query_config("token=abc&x"), Ok(None));
}

#[test]
fn query_errors_have_their_codes() {
    let code = |q: &str| parse_query_config(q).err().map(|r| r.code);
    assert_eq!(code("sample_rate_hz=16000"), Some(ErrorCode::InvalidConfig));
    assert_eq!(code("language_code=en-US"), Some(ErrorCode::InvalidConfig));
    assert_eq!(code("encoding=LINEAR16"), Some(ErrorCode::InvalidMessage));
    assert_eq!(
        code("encoding=LINEAR16&sample_rate_hz=fast"),
        Some(ErrorCode::InvalidMessage)
    );
    assert_eq!(
        code("encoding=LINEAR16&sample_rate_hz=16000&interim_results=maybe"),
        Some(ErrorCode::InvalidMessage)
    );
    assert_eq!(
        code("encoding=LINEAR16&encoding=MULAW&sample_rate_hz=16000"),
        Some(ErrorCode::InvalidMessage)
    );
    // Validation then applies as to a `start` message.
    let request = parse_query_config("encoding=MP3&sample_rate_hz=16000");
    let validated = request.map(|r| r.map(|r| r.validate(5).err().map(|e| e.code)));
    assert_eq!(validated, Ok(Some(Some(ErrorCode::UnsupportedEncoding))));
}

fn json_of(message: &ServerMessage) -> serde_json::Value {
    serde_json::from_str(&message.to_json()).unwrap_or(serde_json::Value::Null)
}

#[test]
fn ready_ack_warning_closed_serialise_with_exact_fields() {
    assert_eq!(
        json_of(&ServerMessage::Ready {
            session_id: "s1".into(),
            resume_token: None,
        }),
        json!({"type":"ready","session_id":"s1"})
    );
    assert_eq!(
        json_of(&ServerMessage::Ready {
            session_id: "s1".into(),
            resume_token: Some("vg1.a.b".into()),
        }),
        json!({"type":"ready","session_id":"s1","resume_token":"vg1.a.b"})
    );
    assert_eq!(
        json_of(&ServerMessage::Ack {
            audio_ms: 1500,
            audio_id: Some("c7".into()),
            final_ms: 1200,
            resume_token: Some("vg1.a.b".into()),
        }),
        json!({"type":"ack","audio_ms":1500,"audio_id":"c7","final_ms":1200,
               "resume_token":"vg1.a.b"})
    );
    assert_eq!(
        ServerMessage::Ack {
            audio_ms: 500,
            audio_id: None,
            final_ms: 0,
            resume_token: None,
        }
        .to_json(),
        r#"{"type":"ack","audio_ms":500,"final_ms":0}"#
    );
    assert_eq!(
        json_of(&ServerMessage::Warning {
            code: "shutting_down".into(),
            message: "m".into()
        }),
        json!({"type":"warning","code":"shutting_down","message":"m"})
    );
    assert_eq!(
        json_of(&ServerMessage::Closed {
            session_id: "s1".into(),
            audio_ms: 2500,
            audio_seconds: 2.5,
            results: 3,
            restarts: 1,
            billed_ms: 0,
        }),
        json!({"type":"closed","session_id":"s1","audio_ms":2500,"audio_seconds":2.5,
               "results":3,"restarts":1})
    );
    assert_eq!(
        json_of(&ServerMessage::Closed {
            session_id: "s1".into(),
            audio_ms: 2500,
            audio_seconds: 2.5,
            results: 3,
            restarts: 0,
            billed_ms: 3000,
        }),
        json!({"type":"closed","session_id":"s1","audio_ms":2500,"audio_seconds":2.5,
               "results":3,"restarts":0,"billed_ms":3000})
    );
    assert_eq!(
        json_of(&ServerMessage::SpeechStarted { at_ms: 120 }),
        json!({"type":"speech_started","at_ms":120})
    );
    assert_eq!(
        json_of(&ServerMessage::SpeechEnded { at_ms: 980 }),
        json!({"type":"speech_ended","at_ms":980})
    );
}

#[test]
fn error_serialises_code_string_and_retryable() {
    for code in ErrorCode::ALL {
        assert_eq!(
            json_of(&ServerMessage::error(code, "why")),
            json!({"type":"error","code":code.as_str(),"message":"why",
                   "retryable":code.retryable()})
        );
    }
}
