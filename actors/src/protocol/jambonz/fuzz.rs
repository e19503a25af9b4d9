//! Property tests of what the jambonz dialect reads: any text is `start`, `stop` or a rejection
//! with a parser or configuration code and a bounded message, never a panic; any `start` of
//! supported values configures exactly what it says.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::audio::Encoding;

/// Longest refusal for any input (client text is quoted at most 64 characters).
const MAX_MESSAGE_CHARS: usize = 400;

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,80}".prop_map(Value::from),
        prop::collection::vec("\\PC{0,120}", 0..8).prop_map(|v| json!(v)),
    ]
}

fn text_message() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[\\[\\{\"\\\\:, ]{0,60}",
        (
            prop::sample::select(vec!["start", "stop", "Start", "transcription", ""]),
            any_value(),
            any_value(),
            any_value(),
            any_value(),
        )
            .prop_map(|(kind, language, rate, interim, hints)| {
                json!({"type": kind, "language": language, "sampleRateHz": rate,
                    "interimResults": interim, "options": {"hints": hints}})
                .to_string()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: `start`, `stop`, or a refusal with a parser or configuration code, briefly.
    #[test]
    fn any_text_is_known_or_refused_briefly(text in text_message()) {
        match messages::parse_client_text(&text, 5) {
            Ok(messages::ClientMessage::Start(config)) => {
                prop_assert!(config.phrases.len() <= 5);
                prop_assert!(Encoding::Linear16.sample_rate_allowed(config.format.sample_rate_hz));
            }
            Ok(messages::ClientMessage::Stop) => {}
            Err(rejection) => {
                prop_assert!(matches!(rejection.code, ErrorCode::InvalidJson
                    | ErrorCode::UnknownType | ErrorCode::InvalidMessage
                    | ErrorCode::InvalidConfig | ErrorCode::UnsupportedEncoding
                    | ErrorCode::UnsupportedSampleRate), "{:?}", rejection);
                prop_assert!(rejection.message.chars().count() <= MAX_MESSAGE_CHARS,
                    "{}", rejection.message);
            }
        }
    }

    /// Supported values configure exactly what they say.
    #[test]
    fn supported_starts_round_trip(
        rate in 8_000u32..=48_000,
        interim in any::<bool>(),
        hints in prop::collection::vec("[a-z]{1,20}( [a-z]{1,20})?", 0..5),
        language in "[a-z]{2}-[A-Z]{2}",
    ) {
        let start = json!({"type": "start", "language": language, "format": "raw",
            "encoding": "LINEAR16", "sampleRateHz": rate, "interimResults": interim,
            "options": {"hints": hints}});
        let mut dialect = JambonzDialect::new(5);
        let mut actions = Vec::new();
        prop_assert!(dialect.text(&start.to_string(), &mut actions).is_ok());
        match actions.as_slice() {
            [Inbound::Configure(config)] => {
                prop_assert_eq!(config.format.sample_rate_hz, rate);
                prop_assert_eq!(config.interim_results, interim);
                prop_assert_eq!(&config.phrases, &hints);
                prop_assert_eq!(&config.language_code, &language);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
