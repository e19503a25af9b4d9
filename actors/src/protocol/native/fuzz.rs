//! Property tests ("fuzzing" on the stable toolchain, bounded in time: a few hundred cases each,
//! `PROPTEST_CASES` raises it) over everything in this module that reads client input: the text
//! message parser (JSON envelope, base64 audio, nesting), the query-string configuration and the
//! start validation. The properties: no input panics; every rejection is one of the documented
//! codes and quotes the client at bounded length; valid input round-trips. Inputs that ever broke
//! a property are kept in `regressions` as ordinary tests.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// Codes the text parser may answer with (the session state decides the rest).
const PARSER_CODES: [ErrorCode; 5] = [
    ErrorCode::InvalidJson,
    ErrorCode::UnknownType,
    ErrorCode::InvalidMessage,
    ErrorCode::InvalidBase64,
    ErrorCode::InvalidConfig,
];

/// Longest rejection message for any input (client text is quoted at most `QUOTE_CHARS`).
const MAX_MESSAGE_CHARS: usize = 600;

/// Arbitrary JSON values, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("start"),
            Just("audio"),
            Just("keepalive"),
            Just("finalize"),
            Just("stop")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("content".to_string()),
                    Just("encoding".to_string()),
                    Just("sample_rate_hz".to_string()),
                    Just("phrases".to_string()),
                    Just("audio_id".to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_rejection(rejection: &Rejection, allowed: &[ErrorCode]) -> Result<(), TestCaseError> {
    prop_assert!(allowed.contains(&rejection.code), "{rejection:?}");
    prop_assert!(!rejection.message.is_empty());
    prop_assert!(
        rejection.message.chars().count() <= MAX_MESSAGE_CHARS,
        "{} chars",
        rejection.message.chars().count()
    );
    Ok(())
}

/// The depth of arrays and objects in a value.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: a message or a documented rejection, never a panic.
    #[test]
    fn any_text_parses_or_is_rejected(text in "\\PC{0,300}") {
        if let Err(rejection) = parse_client_text(&text) {
            check_rejection(&rejection, &PARSER_CODES)?;
        }
    }

    /// Any JSON value, also with its type set to each known message: the same.
    #[test]
    fn any_json_parses_or_is_rejected(value in json_value(), kind in 0usize..6) {
        let mut value = value;
        if let (Value::Object(map), Some(kind)) = (
            &mut value,
            ["start", "audio", "keepalive", "finalize", "stop"].get(kind),
        ) {
            map.insert("type".into(), json!(kind));
        }
        let text = value.to_string();
        match parse_client_text(&text) {
            Ok(ClientMessage::Start(request)) => {
                if let Err(rejection) = request.validate(5) {
                    check_rejection(&rejection, &[
                        ErrorCode::UnsupportedEncoding,
                        ErrorCode::UnsupportedSampleRate,
                        ErrorCode::InvalidConfig,
                    ])?;
                }
            }
            Ok(_) => {}
            Err(rejection) => check_rejection(&rejection, &PARSER_CODES)?,
        }
    }

    /// The nesting pre-check agrees with the actual depth of the value.
    #[test]
    fn the_nesting_check_agrees_with_the_depth(value in json_value()) {
        let text = value.to_string();
        prop_assert_eq!(
            nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH),
            depth(&value) > MAX_JSON_DEPTH
        );
        prop_assert_eq!(nesting_exceeds(text.as_bytes(), 2), depth(&value) > 2);
    }

    /// Deep nesting of any shape is refused before parsing, at any size.
    #[test]
    fn deep_nesting_is_refused(opens in prop::collection::vec(prop_oneof![Just('['), Just('{')], 17..2_000)) {
        let text: String = opens.into_iter().collect();
        let rejection = parse_client_text(&text).err();
        prop_assert_eq!(rejection.map(|r| r.code), Some(ErrorCode::InvalidJson));
    }

    /// Audio round-trips through standard base64, padded or not.
    #[test]
    fn base64_audio_round_trips(data in prop::collection::vec(any::<u8>(), 0..2_000), padded in any::<bool>()) {
        let mut content = base64::engine::general_purpose::STANDARD.encode(&data);
        if !padded {
            content = content.trim_end_matches('=').to_string();
        }
        let text = json!({"type":"audio","content":content}).to_string();
        prop_assert_eq!(
            parse_client_text(&text),
            Ok(ClientMessage::Audio { data: Bytes::from(data), audio_id: None })
        );
    }

    /// Any content string: decoded audio or `invalid_base64`.
    #[test]
    fn any_base64_content_decodes_or_is_invalid(content in "[A-Za-z0-9+/=_\\-!. ]{0,200}") {
        let text = json!({"type":"audio","content":content}).to_string();
        match parse_client_text(&text) {
            Ok(ClientMessage::Audio { data, .. }) => prop_assert!(data.len() <= content.len()),
            Ok(other) => prop_assert!(false, "{other:?}"),
            Err(rejection) => check_rejection(&rejection, &[ErrorCode::InvalidBase64])?,
        }
    }

    /// The pre-check that jumps over strings answers as a scan of every byte would, on any text
    /// made of brackets, quotes and escapes (unterminated strings and trailing escapes included).
    #[test]
    fn the_nesting_check_matches_a_byte_by_byte_scan(text in "[\\[\\]{}\"\\\\a]{0,64}", limit in 0usize..6) {
        prop_assert_eq!(
            nesting_exceeds(text.as_bytes(), limit),
            nesting_exceeds_byte_by_byte(text.as_bytes(), limit)
        );
    }

    /// Any query string: a configuration, none, or a documented rejection.
    #[test]
    fn any_query_parses_or_is_rejected(query in "\\PC{0,200}") {
        if let Err(rejection) = parse_query_config(&query) {
            check_rejection(&rejection, &[ErrorCode::InvalidConfig, ErrorCode::InvalidMessage])?;
        }
    }

    /// Query strings made of configuration keys and arbitrary values: the same, and a
    /// configuration found validates or is rejected with a start code.
    #[test]
    fn configuration_queries_parse_or_are_rejected(
        pairs in prop::collection::vec(
            (prop::sample::select(QUERY_CONFIG_KEYS.to_vec()), "[A-Za-z0-9%+,_.-]{0,20}"),
            0..10
        )
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match parse_query_config(&query.join("&")) {
            Ok(Some(request)) => {
                if let Err(rejection) = request.validate(3) {
                    check_rejection(&rejection, &[
                        ErrorCode::UnsupportedEncoding,
                        ErrorCode::UnsupportedSampleRate,
                        ErrorCode::InvalidConfig,
                    ])?;
                }
            }
            Ok(None) => prop_assert!(pairs.is_empty()),
            Err(rejection) => check_rejection(&rejection, &[ErrorCode::InvalidConfig, ErrorCode::InvalidMessage])?,
        }
    }
}

/// Inputs kept from property failures and from review, as plain tests.
mod regressions {
    use super::*;

    /// A string that opens brackets inside an escaped quote must not count them.
    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let text = r#"{"type":"keepalive","x":"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#;
        assert_eq!(parse_client_text(text), Ok(ClientMessage::KeepAlive));
    }

    /// Unbalanced closing brackets cannot make the depth negative and hide later nesting.
    #[test]
    fn closing_brackets_first_do_not_hide_nesting() {
        let text = format!("]]]]]]]]]]{}", "[".repeat(MAX_JSON_DEPTH + 1));
        assert!(nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH));
    }

    /// Multi-byte characters in quoted client strings are cut at a character boundary.
    #[test]
    fn quoting_cuts_at_character_boundaries() {
        let text = json!({"type": "é".repeat(1_000)}).to_string();
        let rejection = parse_client_text(&text).err();
        assert!(
            rejection.is_some_and(|r| r.code == ErrorCode::UnknownType && r.message.len() < 300)
        );
    }

    /// A sample rate beyond u32 is `invalid_message`, not a wrap-around.
    #[test]
    fn sample_rate_beyond_u32() {
        let text = r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":4294967296}"#;
        let rejection = parse_client_text(text).err();
        assert_eq!(rejection.map(|r| r.code), Some(ErrorCode::InvalidMessage));
    }
}

/// The nesting pre-check's definition, one byte at a time (what `nesting_exceeds` must agree with).
fn nesting_exceeds_byte_by_byte(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// What one base64 `audio` message of 100 ms of 16 kHz LINEAR16 costs to parse, and how much of
/// that is the nesting pre-check (a measurement, not a check): `cargo test --release -p
/// voxgate-actors --lib base64_audio_parse_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run explicitly"]
fn base64_audio_parse_cost() {
    let audio: Vec<u8> = (0..3_200u32).map(|i| (i * 7919 % 251) as u8).collect();
    let content = base64::engine::general_purpose::STANDARD.encode(&audio);
    let text = json!({"type": "audio", "content": content}).to_string();
    let rounds = 100_000;
    type Check<'a> = &'a dyn Fn(&str) -> bool;
    let checks: [(&str, Check); 2] = [
        ("nesting pre-check", &|text| {
            !nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH)
        }),
        ("parse_client_text", &|text| parse_client_text(text).is_ok()),
    ];
    for (name, check) in checks {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                for _ in 0..rounds {
                    assert!(check(std::hint::black_box(text.as_str())));
                }
                started.elapsed().as_secs_f64() * 1e6 / rounds as f64
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.2} µs per message of {} bytes, runs {runs:.2?}",
            runs[2],
            text.len()
        );
    }
}
