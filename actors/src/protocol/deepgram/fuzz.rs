//! Property tests of everything the Deepgram dialect reads from a client: the query string and
//! the text messages. No input panics; a refused query names what is wrong in a bounded message;
//! a text message is one of the four known ones or a rejection with a parser code; any query of
//! supported values configures the session it describes.

use proptest::prelude::*;

use super::*;

/// Longest refusal for any input (client text is quoted at most 64 characters).
const MAX_MESSAGE_CHARS: usize = 400;

/// Query keys the dialect knows, and some it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("encoding".to_string()),
        Just("sample_rate".to_string()),
        Just("language".to_string()),
        Just("model".to_string()),
        Just("interim_results".to_string()),
        Just("endpointing".to_string()),
        Just("utterance_end_ms".to_string()),
        Just("channels".to_string()),
        Just("keywords".to_string()),
        Just("keyterm".to_string()),
        Just("diarize".to_string()),
        Just("redact".to_string()),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary key/value pairs (percent-encoded) never panic, and a refusal is bounded.
    #[test]
    fn any_query_is_parsed_or_refused_briefly(
        pairs in prop::collection::vec((key(), "\\PC{0,300}"), 0..12),
    ) {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        match parse_query(&query, 5) {
            Ok(config) => {
                prop_assert!(config.start.phrases.len() <= 5);
                prop_assert!(config.start.format.encoding.sample_rate_allowed(
                    config.start.format.sample_rate_hz));
            }
            Err(QueryRefusal(message)) => {
                prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "{}", message);
            }
        }
    }

    /// Raw bytes as a query (invalid percent-encoding, lone `&`, `=`) never panic.
    #[test]
    fn raw_query_bytes_never_panic(query in "\\PC{0,200}") {
        let _ = parse_query(&query, 5);
    }

    /// Supported values configure exactly what they say.
    #[test]
    fn supported_queries_round_trip(
        rate in prop::sample::select(vec![8_000u32, 16_000, 22_050, 24_000, 44_100, 48_000]),
        interim in any::<bool>(),
        terms in prop::collection::vec("[a-z]{1,20}", 0..4),
    ) {
        let mut query = format!("model=nova-3&encoding=linear16&sample_rate={rate}\
                                 &interim_results={interim}");
        for term in &terms {
            query.push_str(&format!("&keyterm={term}"));
        }
        let config = parse_query(&query, 10);
        prop_assert!(config.is_ok(), "{:?}", config);
        if let Ok(config) = config {
            prop_assert_eq!(config.start.format.sample_rate_hz, rate);
            prop_assert_eq!(config.interim_results, interim);
            prop_assert_eq!(config.start.phrases, terms);
        }
    }

    /// Any text message is a known one or a rejection with a parser code; the dialect never
    /// panics on it.
    #[test]
    fn any_text_message_is_known_or_rejected(text in prop_oneof![
        "\\PC{0,200}",
        "\\{\"type\":\"(KeepAlive|Finalize|CloseStream|Configure|[A-Za-z]{0,10})\"(,\"channel\":[0-9]{1,3})?\\}",
        "[\\[\\{\"\\\\]{0,60}",
    ]) {
        match messages::parse_client_text(&text) {
            Ok(_) => {}
            Err(rejection) => prop_assert!(matches!(
                rejection.code,
                ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::InvalidMessage
            ), "{:?}", rejection),
        }
        let config = parse_query("encoding=linear16&sample_rate=16000", 5);
        prop_assert!(config.is_ok());
        if let Ok(config) = config {
            let mut dialect = DeepgramDialect::new(config, &DeepgramSettings::default());
            let _ = dialect.text(&text, &mut Vec::new());
        }
    }
}
