//! Property tests of what the vosk dialect reads from a client: any text is a known message or a
//! rejection with a parser or configuration code and a bounded message (never a panic); any
//! sequence of frames, messages and results answers each frame (before eof) with exactly one
//! reply, and every final reaches the client exactly once — in a frame's reply or in the last
//! result.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::messages::PipelineSummary;

/// Longest refusal for any input (client text is quoted at most 64 characters).
const MAX_MESSAGE_CHARS: usize = 400;

fn text_message() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[\\[\\{\"\\\\:, ]{0,60}",
        "\\{ ?\"(eof|reset|config|x)\" ?: ?(1|0|true|\"1\"|null|\\[\\]|\\{\\}) ?\\}",
        (
            prop_oneof![
                Just(Value::Null),
                (0u64..100_000).prop_map(Value::from),
                (-1e6f64..1e6).prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
            ],
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from)],
            prop::collection::vec("\\PC{0,120}", 0..8),
        )
            .prop_map(|(rate, words, phrases)| {
                serde_json::json!({"config": {"sample_rate": rate, "words": words,
                    "phrase_list": phrases, "max_alternatives": 2}})
                .to_string()
            }),
    ]
}

/// The text of a result in either shape (`text`, or the first of `alternatives`).
fn result_text(reply: &Value) -> Option<&str> {
    reply["text"]
        .as_str()
        .or_else(|| reply["alternatives"][0]["text"].as_str())
}

/// One step of a session, as the dialect sees it.
#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Frame,
    Result { is_final: bool, text: String },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        text_message().prop_map(Step::Text),
        Just(Step::Frame),
        (any::<bool>(), "[a-z]{1,8}( [a-z]{1,8}){0,3}")
            .prop_map(|(is_final, text)| Step::Result { is_final, text }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: a known message or a refusal with a parser or configuration code, briefly.
    #[test]
    fn any_text_is_known_or_refused_briefly(text in text_message()) {
        match messages::parse_client_text(&text, 5) {
            Ok(ClientMessage::Config(update)) => {
                prop_assert!(update.phrase_list.map_or(0, |p| p.len()) <= 5);
                prop_assert!(update.sample_rate.is_none_or(|hz|
                    Encoding::Linear16.sample_rate_allowed(hz)));
            }
            Ok(_) => {}
            Err(rejection) => {
                prop_assert!(matches!(rejection.code, ErrorCode::InvalidJson
                    | ErrorCode::InvalidMessage | ErrorCode::InvalidConfig
                    | ErrorCode::UnsupportedSampleRate), "{:?}", rejection);
                prop_assert!(rejection.message.chars().count() <= MAX_MESSAGE_CHARS,
                    "{}", rejection.message);
            }
        }
    }

    /// One reply per frame before eof, none after; every final is delivered exactly once.
    #[test]
    fn frames_are_answered_once_and_finals_delivered_once(
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let mut vosk = VoskDialect::new(&VoskSettings::default(), &VoskQuery::default(), 5);
        let mut finals_in = Vec::new();
        let mut finals_out = Vec::new();
        let mut ended = false;
        for step in steps {
            match step {
                Step::Text(text) => {
                    let mut actions = Vec::new();
                    if vosk.text(&text, &mut actions).is_ok() {
                        ended |= actions.contains(&Inbound::Stop);
                        for action in actions {
                            if let Inbound::Reply(reply) = action {
                                let value: Value = serde_json::from_str(&reply)
                                    .unwrap_or(Value::Null);
                                let text = result_text(&value);
                                prop_assert!(text.is_some(), "{}", reply);
                                finals_out.push(text.unwrap_or("").to_string());
                            }
                        }
                    }
                }
                Step::Frame => {
                    let mut actions = Vec::new();
                    prop_assert!(vosk.binary_actions(Bytes::from_static(b"\0\0"), &mut actions)
                        .is_ok());
                    let replies: Vec<&String> = actions.iter().filter_map(|a| match a {
                        Inbound::Reply(r) => Some(r),
                        _ => None,
                    }).collect();
                    prop_assert_eq!(replies.len(), usize::from(!ended));
                    for reply in replies {
                        let value: Value = serde_json::from_str(reply).unwrap_or(Value::Null);
                        if let Some(text) = result_text(&value) {
                            finals_out.push(text.to_string());
                        } else {
                            prop_assert!(value["partial"].is_string(), "{}", reply);
                        }
                    }
                }
                Step::Result { is_final, text } => {
                    if is_final {
                        finals_in.push(text.clone());
                    }
                    let t = Transcript {
                        is_final,
                        transcript: text,
                        confidence: 0.5,
                        stability: 0.0,
                        start_ms: 0,
                        end_ms: 1,
                        words: Vec::new(),
                        language_code: "en-US".into(),
                    };
                    let mut out = Vec::new();
                    vosk.transcript(&t, &mut out);
                    prop_assert!(out.is_empty());
                }
            }
        }
        let mut out = Vec::new();
        let end = SessionEnd { session_id: "s", audio_ms: 0, summary: PipelineSummary::default() };
        prop_assert_eq!(vosk.closed(end, &mut out).code, 1000);
        prop_assert_eq!(out.len(), 1);
        let last: Value = serde_json::from_str(&out[0]).unwrap_or(Value::Null);
        prop_assert!(result_text(&last).is_some(), "{}", out[0]);
        finals_out.push(result_text(&last).unwrap_or("").to_string());
        let joined = |texts: &[String]| texts.iter().filter(|t| !t.is_empty())
            .cloned().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(joined(&finals_out), joined(&finals_in));
    }
}
