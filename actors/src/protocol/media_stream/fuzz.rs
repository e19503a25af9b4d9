//! Property tests of what the media-stream dialect reads from a provider: any text is actions or
//! a rejection with a bounded message and one of the documented codes (never a panic); every
//! media payload reaches the channel of its track whole and in order, in both envelopes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// Longest rejection message for any input (provider text is quoted at most 64 characters).
const MAX_MESSAGE_CHARS: usize = 400;

fn envelope() -> impl Strategy<Value = Envelope> {
    prop_oneof![Just(Envelope::Twilio), Just(Envelope::Telnyx)]
}

fn frame_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[\\[\\{\"\\\\]{0,60}",
        (
            prop::sample::select(vec![
                "connected",
                "start",
                "media",
                "mark",
                "dtmf",
                "stop",
                "error",
                "clear",
            ]),
            prop_oneof![
                Just(Value::Null),
                "\\PC{0,20}".prop_map(Value::from),
                Just(
                    json!({"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": "8000",
                    "channels": 1}, "tracks": ["inbound", "outbound"]})
                ),
                Just(json!({"media_format": {"encoding": "L16", "sample_rate": 16000}})),
                Just(json!({"mediaFormat": {"encoding": 5}})),
                Just(json!({"track": "outbound", "payload": "AAEC"})),
                Just(json!({"payload": "@@@"})),
                Just(json!({"name": 1, "digit": []})),
            ],
        )
            .prop_map(|(event, part)| {
                json!({"event": event, "start": part, "media": part, "mark": part,
                    "dtmf": part, "stop": part, "streamSid": "MZ", "stream_id": "ST"})
                .to_string()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: actions, or a rejection with one of the documented codes and a bounded message.
    #[test]
    fn any_text_is_actions_or_a_documented_rejection(
        envelope in envelope(),
        texts in prop::collection::vec(frame_text(), 1..8),
    ) {
        let mut dialect = MediaStreamDialect::new(envelope, "en-US", "");
        for text in texts {
            let mut actions = Vec::new();
            if let Err(rejection) = dialect.text(&text, &mut actions) {
                prop_assert!(matches!(rejection.code,
                    ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::InvalidBase64
                    | ErrorCode::UnsupportedEncoding | ErrorCode::UnsupportedSampleRate
                    | ErrorCode::InvalidConfig | ErrorCode::AlreadyStarted), "{:?}", rejection);
                prop_assert!(rejection.message.chars().count() <= MAX_MESSAGE_CHARS,
                    "{}", rejection.message);
            }
        }
    }

    /// Media of both tracks, in any order and sizes, reaches each track's channel whole and in
    /// order; a track not announced reaches none.
    #[test]
    fn media_reaches_its_channel_whole_and_in_order(
        envelope in envelope(),
        chunks in prop::collection::vec(
            (prop::sample::select(vec!["inbound", "outbound", "inbound_track", "other"]),
             prop::collection::vec(any::<u8>(), 0..200)),
            0..40),
    ) {
        let mut dialect = MediaStreamDialect::new(envelope, "en-US", "");
        let start = match envelope {
            Envelope::Twilio => json!({"event": "start", "start": {"tracks": ["inbound", "outbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
            Envelope::Telnyx => json!({"event": "start", "start": {
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}),
        };
        let mut actions = Vec::new();
        prop_assert!(dialect.text(&start.to_string(), &mut actions).is_ok());
        let mut got = [Vec::new(), Vec::new()];
        let mut expected = [Vec::new(), Vec::new()];
        for (track, payload) in &chunks {
            let frame = json!({"event": "media",
                "media": {"track": track, "payload": BASE64.encode(payload)}});
            let mut actions = Vec::new();
            prop_assert!(dialect.text(&frame.to_string(), &mut actions).is_ok());
            match *track {
                "inbound" | "inbound_track" => expected[0].extend_from_slice(payload),
                "outbound" => expected[1].extend_from_slice(payload),
                _ => {}
            }
            for action in actions {
                match action {
                    Inbound::ChannelAudio { channel, data } if channel < 2 => {
                        got[channel].extend_from_slice(&data)
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
        prop_assert_eq!(got, expected);
    }
}
