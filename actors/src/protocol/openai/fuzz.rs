//! Property tests of what the OpenAI dialect reads from a client: any text is an event or an
//! `error` event with a bounded message (never a panic, never a closed session); appended audio
//! of any length reaches the pipeline whole (A-law doubled in size); any sequence of events and
//! results keeps event ids unique.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// Longest error message for any input (client text is quoted at most 64 characters).
const MAX_MESSAGE_CHARS: usize = 400;

fn event_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[\\[\\{\"\\\\]{0,60}",
        (
            prop::sample::select(vec![
                "session.update",
                "transcription_session.update",
                "input_audio_buffer.append",
                "input_audio_buffer.commit",
                "input_audio_buffer.clear",
                "response.create",
            ]),
            prop_oneof![
                Just(Value::Null),
                "\\PC{0,20}".prop_map(Value::from),
                Just(json!({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcma"}}}})),
                Just(json!({"input_audio_format": "g711_ulaw", "turn_detection": null})),
                Just(json!({"audio": {"input": {"transcription": {"language": 5}}}})),
            ],
            "[A-Za-z0-9+/=]{0,40}",
        )
            .prop_map(|(kind, session, audio)| {
                json!({"type": kind, "session": session, "audio": audio, "event_id": "e"})
                    .to_string()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: events or one `error` event with a bounded message; the session is never ended
    /// by a client's mistake.
    #[test]
    fn any_text_is_an_event_or_an_error_event(texts in prop::collection::vec(event_text(), 1..8)) {
        let mut dialect = OpenAiDialect::new();
        dialect.opened("s", &mut Vec::new());
        for text in texts {
            let mut actions = Vec::new();
            prop_assert!(dialect.text(&text, &mut actions).is_ok());
            for action in &actions {
                if let Inbound::Reply(reply) = action {
                    let value: Value = serde_json::from_str(reply).unwrap_or(Value::Null);
                    prop_assert!(value["type"].is_string(), "{}", reply);
                    if value["type"] == "error" {
                        let message = value["error"]["message"].as_str().unwrap_or("");
                        prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "{}", message);
                    }
                }
            }
        }
    }

    /// Appended audio reaches the pipeline whole, in the configured format.
    #[test]
    fn appended_audio_arrives_whole(
        audio in prop::collection::vec(any::<u8>(), 1..2_000),
        format in prop::sample::select(vec!["pcm16", "g711_ulaw", "g711_alaw"]),
    ) {
        let mut dialect = OpenAiDialect::new();
        dialect.opened("s", &mut Vec::new());
        let update = json!({"type": "transcription_session.update",
            "session": {"input_audio_format": format}});
        prop_assert!(dialect.text(&update.to_string(), &mut Vec::new()).is_ok());
        let content = base64::engine::general_purpose::STANDARD.encode(&audio);
        let append = json!({"type": "input_audio_buffer.append", "audio": content});
        let mut actions = Vec::new();
        prop_assert!(dialect.text(&append.to_string(), &mut actions).is_ok());
        let sent: usize = actions.iter().map(|a| match a {
            Inbound::Audio { data, .. } => data.len(),
            _ => 0,
        }).sum();
        let expected = if format == "g711_alaw" { audio.len() * 2 } else { audio.len() };
        prop_assert_eq!(sent, expected);
    }

    /// Results in any order keep event ids unique and never panic.
    #[test]
    fn results_keep_event_ids_unique(
        results in prop::collection::vec((any::<bool>(), "[a-z ]{0,20}", 0u64..5_000, 0u64..5_000), 0..20),
        manual in any::<bool>(),
    ) {
        let mut dialect = OpenAiDialect::new();
        let mut out = Vec::new();
        dialect.opened("s", &mut out);
        if manual {
            let update = json!({"type": "session.update",
                "session": {"audio": {"input": {"turn_detection": null}}}});
            prop_assert!(dialect.text(&update.to_string(), &mut Vec::new()).is_ok());
        }
        for (is_final, text, a, b) in results {
            let t = Transcript {
                is_final,
                transcript: text,
                confidence: 0.5,
                stability: 0.0,
                start_ms: a.min(b),
                end_ms: a.max(b),
                words: Vec::new(),
                language_code: "en-US".into(),
            };
            dialect.transcript(&t, &mut out);
        }
        let ids: Vec<String> = out.iter()
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .filter_map(|v| v["event_id"].as_str().map(String::from))
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        prop_assert_eq!(unique.len(), ids.len());
        prop_assert_eq!(ids.len(), out.len());
    }
}
