//! The media-stream dialect alone: both envelopes' frames, the codecs, the refusals, the
//! webhook request.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::json;

use super::*;

fn twilio_start(encoding: &str, rate: u32, tracks: &[&str]) -> String {
    json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": tracks,
            "customParameters": {"webhook_url": "https://hooks.example/call", "agent": "7"},
            "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1}}})
    .to_string()
}

fn telnyx_start(encoding: &str, rate: u32) -> String {
    json!({"event": "start", "sequence_number": "1", "stream_id": "ST1",
        "start": {"user_id": "U1", "call_control_id": "v3:CC1", "client_state": "YWJj",
            "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1}}})
    .to_string()
}

/// A `media` frame numbered `sequence` (the stream's `start` is 1).
fn media(envelope: Envelope, sequence: u64, track: &str, payload: &[u8]) -> String {
    let payload = BASE64.encode(payload);
    let sequence = sequence.to_string();
    match envelope {
        Envelope::Twilio => {
            json!({"event": "media", "sequenceNumber": sequence, "streamSid": "MZ1",
            "media": {"track": track, "chunk": "1", "timestamp": "5", "payload": payload}})
        }
        Envelope::Telnyx => {
            json!({"event": "media", "sequence_number": sequence, "stream_id": "ST1",
            "media": {"track": track, "chunk": "1", "timestamp": "5", "payload": payload}})
        }
    }
    .to_string()
}

fn run(dialect: &mut MediaStreamDialect, text: &str) -> Result<Vec<Inbound>, ErrorCode> {
    let mut actions = Vec::new();
    dialect
        .text(text, &mut actions)
        .map(|()| actions)
        .map_err(|r| r.code)
}

fn audio(actions: &[Inbound]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Inbound::Audio { data, .. } | Inbound::ChannelAudio { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_twilio_stream_configures_streams_and_stops() {
    let mut twilio = MediaStreamDialect::new(Envelope::Twilio, "en-US", "");
    let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
    assert_eq!(
        run(&mut twilio, &connected.to_string()),
        Ok(vec![Inbound::KeepAlive])
    );
    assert_eq!(
        twilio.webhook_request(),
        None,
        "nothing to post before start"
    );
    let started = run(
        &mut twilio,
        &twilio_start("audio/x-mulaw", 8000, &["inbound"]),
    );
    let Ok([Inbound::Configure(config)]) = started.as_deref() else {
        panic!("start did not configure: {started:?}");
    };
    assert_eq!(config.format.encoding, Encoding::Mulaw);
    assert_eq!(config.format.sample_rate_hz, 8_000);
    assert_eq!(config.language_code, "en-US");
    assert_eq!(
        config.frame_ms,
        Some(20),
        "a call's frames are Twilio's 20 ms"
    );
    let actions = run(
        &mut twilio,
        &media(Envelope::Twilio, 2, "inbound", &[1, 2, 3]),
    );
    assert_eq!(audio(&actions.unwrap_or_default()), vec![vec![1, 2, 3]]);
    let outbound = run(&mut twilio, &media(Envelope::Twilio, 3, "outbound", &[9]));
    assert_eq!(
        outbound,
        Ok(vec![]),
        "a track not announced is not transcribed"
    );
    assert_eq!(twilio.channels(), 1);
    let mark = json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}});
    assert_eq!(
        run(&mut twilio, &mark.to_string()),
        Ok(vec![Inbound::KeepAlive])
    );
    let dtmf = json!({"event": "dtmf", "streamSid": "MZ1",
        "dtmf": {"track": "inbound_track", "digit": "5"}});
    assert_eq!(
        run(&mut twilio, &dtmf.to_string()),
        Ok(vec![Inbound::KeepAlive])
    );
    let stop = json!({"event": "stop", "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"}});
    assert_eq!(run(&mut twilio, &stop.to_string()), Ok(vec![Inbound::Stop]));
    let request = twilio.webhook_request();
    assert_eq!(
        request.as_ref().and_then(|r| r.url.as_deref()),
        Some("https://hooks.example/call")
    );
    assert_eq!(
        request.as_ref().map(|r| r.tracks.clone()),
        Some(vec!["inbound".into()])
    );
    let call = request.map(|r| Value::Object(r.call)).unwrap_or_default();
    assert_eq!(
        call,
        json!({"provider": "twilio", "call_id": "CA1", "stream_id": "MZ1", "account_id": "AC1",
            "custom_parameters": {"webhook_url": "https://hooks.example/call", "agent": "7"}})
    );
}

#[test]
fn both_tracks_are_two_channels() {
    let mut twilio = MediaStreamDialect::new(Envelope::Twilio, "en-US", "");
    let tracks = ["inbound", "outbound"];
    assert!(run(&mut twilio, &twilio_start("audio/x-mulaw", 8000, &tracks)).is_ok());
    assert_eq!(twilio.channels(), 2);
    let inbound = run(&mut twilio, &media(Envelope::Twilio, 2, "inbound", &[1]));
    let outbound = run(&mut twilio, &media(Envelope::Twilio, 3, "outbound", &[2]));
    assert_eq!(
        (inbound, outbound),
        (
            Ok(vec![Inbound::ChannelAudio {
                channel: 0,
                data: Bytes::from_static(&[1])
            }]),
            Ok(vec![Inbound::ChannelAudio {
                channel: 1,
                data: Bytes::from_static(&[2])
            }])
        )
    );
    assert_eq!(
        twilio.webhook_request().map(|r| r.tracks),
        Some(vec!["inbound".to_string(), "outbound".to_string()])
    );
    let mut telnyx = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    assert!(run(&mut telnyx, &telnyx_start("PCMU", 8000)).is_ok());
    assert_eq!(
        telnyx.channels(),
        2,
        "Telnyx names no tracks: both are channels"
    );
}

#[test]
fn refusals_name_the_problem() {
    let mut twilio = MediaStreamDialect::new(Envelope::Twilio, "en-US", "");
    assert_eq!(run(&mut twilio, "{nope"), Err(ErrorCode::InvalidJson));
    assert_eq!(run(&mut twilio, "[1]"), Err(ErrorCode::InvalidJson));
    assert_eq!(
        run(&mut twilio, r#"{"type":"start"}"#),
        Err(ErrorCode::InvalidJson)
    );
    assert_eq!(
        run(&mut twilio, r#"{"event":"start"}"#),
        Err(ErrorCode::InvalidMessage)
    );
    assert_eq!(
        run(
            &mut twilio,
            &twilio_start("audio/x-alaw", 8000, &["inbound"])
        ),
        Err(ErrorCode::UnsupportedEncoding)
    );
    assert_eq!(
        run(
            &mut twilio,
            &twilio_start("audio/x-mulaw", 16000, &["inbound"])
        ),
        Err(ErrorCode::UnsupportedSampleRate)
    );
    let bad_payload = json!({"event": "media", "media": {"track": "inbound", "payload": "@@"}});
    assert_eq!(
        run(&mut twilio, &bad_payload.to_string()),
        Err(ErrorCode::InvalidBase64)
    );
    assert!(twilio.binary(Bytes::from_static(b"x")).is_err());
    assert!(run(
        &mut twilio,
        &twilio_start("audio/x-mulaw", 8000, &["inbound"])
    )
    .is_ok());
    assert_eq!(
        run(
            &mut twilio,
            &twilio_start("audio/x-mulaw", 8000, &["inbound"])
        ),
        Err(ErrorCode::AlreadyStarted)
    );
    let unknown = json!({"event": "something_new", "streamSid": "MZ1"});
    assert_eq!(run(&mut twilio, &unknown.to_string()), Ok(vec![]));
    let mut telnyx = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    assert_eq!(
        run(&mut telnyx, &telnyx_start("G722", 16000)),
        Err(ErrorCode::UnsupportedEncoding)
    );
    // (A fresh stream: on the first, a second frame numbered 1 would be skipped as late.)
    let mut telnyx = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    assert_eq!(
        run(&mut telnyx, &telnyx_start("PCMU", 16000)),
        Err(ErrorCode::UnsupportedSampleRate)
    );
    let mut bad_language =
        MediaStreamDialect::new(Envelope::Telnyx, "en-US", "language_code=x%20y");
    assert_eq!(
        run(&mut bad_language, &telnyx_start("PCMU", 8000)),
        Err(ErrorCode::InvalidConfig)
    );
}

#[test]
fn telnyx_codecs_are_decoded_for_the_pipeline() {
    let mut pcmu = MediaStreamDialect::new(
        Envelope::Telnyx,
        "en-US",
        "webhook_url=http%3A%2F%2F127.0.0.1%3A9%2Fx&token=secret&language_code=fr-FR",
    );
    let started = run(&mut pcmu, &telnyx_start("PCMU", 8000));
    let Ok([Inbound::Configure(config)]) = started.as_deref() else {
        panic!("start did not configure: {started:?}");
    };
    assert_eq!(config.format.encoding, Encoding::Mulaw);
    assert_eq!(config.language_code, "fr-FR");
    let request = pcmu.webhook_request();
    assert_eq!(
        request.as_ref().and_then(|r| r.url.as_deref()),
        Some("http://127.0.0.1:9/x")
    );
    assert_eq!(
        request.map(|r| r.call.get("custom_parameters").cloned()),
        Some(Some(json!({"client_state": "YWJj"}))),
        "the token is never echoed"
    );
    let actions = run(
        &mut pcmu,
        &media(Envelope::Telnyx, 2, "inbound", &[0xff, 0x7f]),
    );
    assert_eq!(audio(&actions.unwrap_or_default()), vec![vec![0xff, 0x7f]]);
    let actions = run(&mut pcmu, &media(Envelope::Telnyx, 3, "outbound", &[0x01]));
    assert_eq!(audio(&actions.unwrap_or_default()), vec![vec![0x01]]);

    let mut l16 = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    let started = run(&mut l16, &telnyx_start("L16", 16000));
    assert!(matches!(started.as_deref(), Ok([Inbound::Configure(c)])
            if c.format.encoding == Encoding::Linear16 && c.format.sample_rate_hz == 16_000));
    let actions = run(
        &mut l16,
        &media(Envelope::Telnyx, 2, "inbound", &[0x12, 0x34, 0xab, 0xcd]),
    );
    assert_eq!(
        audio(&actions.unwrap_or_default()),
        vec![vec![0x34, 0x12, 0xcd, 0xab]]
    );

    let mut pcma = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    assert!(run(&mut pcma, &telnyx_start("PCMA", 8000)).is_ok());
    let actions = run(
        &mut pcma,
        &media(Envelope::Telnyx, 2, "inbound", &[0xd5, 0x55]),
    );
    assert_eq!(
        audio(&actions.unwrap_or_default()),
        vec![alaw::to_linear16(&[0xd5, 0x55])]
    );
}

#[test]
fn the_provider_reads_nothing_but_the_close() {
    let mut twilio = MediaStreamDialect::new(Envelope::Twilio, "en-US", "");
    let mut out = Vec::new();
    twilio.ready("s", &mut out);
    twilio.warning("w", "m", &mut out);
    assert!(out.is_empty());
    let close = twilio.error(ErrorCode::InvalidJson, "bad", &mut out);
    assert_eq!(
        close.map(|c| (c.code, c.reason)),
        Some((1007, "invalid_json".into()))
    );
    assert_eq!(twilio.error(ErrorCode::UnknownType, "x", &mut out), None);
    assert!(out.is_empty());
}

#[test]
fn telnyx_frames_are_put_back_in_order_and_stop_lets_the_rest_go() {
    let mut telnyx = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "");
    assert!(run(&mut telnyx, &telnyx_start("PCMU", 8000)).is_ok());
    let mut got = Vec::new();
    for (sequence, byte) in [(3, 3u8), (2, 2), (2, 2), (4, 4), (6, 6)] {
        let frame = media(Envelope::Telnyx, sequence, "inbound", &[byte]);
        got.extend(audio(&run(&mut telnyx, &frame).unwrap_or_default()));
    }
    assert_eq!(got, [vec![2], vec![3], vec![4]], "6 waits for 5; 2 once");
    let stop = json!({"event": "stop", "sequence_number": "8", "stream_id": "ST1"});
    let actions = run(&mut telnyx, &stop.to_string()).unwrap_or_default();
    assert_eq!(audio(&actions), [vec![6]]);
    assert_eq!(actions.last(), Some(&Inbound::Stop));

    let mut unordered = MediaStreamDialect::new(Envelope::Telnyx, "en-US", "").reorder_window(0);
    assert!(run(&mut unordered, &telnyx_start("PCMU", 8000)).is_ok());
    let late = run(&mut unordered, &media(Envelope::Telnyx, 3, "inbound", &[3]));
    let early = run(&mut unordered, &media(Envelope::Telnyx, 2, "inbound", &[2]));
    assert_eq!(
        [late, early].map(|a| audio(&a.unwrap_or_default())),
        [vec![vec![3]], vec![vec![2]]],
        "window 0: taken as they come"
    );
}

#[test]
fn a_dtmf_digit_is_a_call_event_on_the_session_clock() {
    let mut twilio = MediaStreamDialect::new(Envelope::Twilio, "en-US", "");
    let tracks = ["inbound", "outbound"];
    assert!(run(&mut twilio, &twilio_start("audio/x-mulaw", 8000, &tracks)).is_ok());
    // 100 ms inbound, 50 ms outbound: the clock is the furthest track.
    assert!(run(
        &mut twilio,
        &media(Envelope::Twilio, 2, "inbound", &[0xff; 800])
    )
    .is_ok());
    assert!(run(
        &mut twilio,
        &media(Envelope::Twilio, 3, "outbound", &[0xff; 400])
    )
    .is_ok());
    let dtmf = json!({"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "4",
        "dtmf": {"track": "inbound_track", "digit": "7"}});
    assert_eq!(
        run(&mut twilio, &dtmf.to_string()),
        Ok(vec![Inbound::KeepAlive])
    );
    let mut events = Vec::new();
    twilio.take_call_events(&mut events);
    let expected = json!({"digit": "7", "track": "inbound", "time_ms": 100});
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind, Value::Object(e.fields.clone())))
            .collect::<Vec<_>>(),
        [("call.dtmf", expected)]
    );
    twilio.take_call_events(&mut events);
    assert_eq!(events.len(), 1, "taken once");
}

/// The frame length configured for the provider is the one each of its calls asks the pipeline
/// for.
#[test]
fn a_call_asks_for_the_configured_frame_length() {
    for (envelope, start) in [
        (
            Envelope::Twilio,
            twilio_start("audio/x-mulaw", 8000, &["inbound"]),
        ),
        (Envelope::Telnyx, telnyx_start("PCMU", 8000)),
    ] {
        let mut dialect = MediaStreamDialect::new(envelope, "en-US", "").frame_ms(60);
        let started = run(&mut dialect, &start);
        let Ok([Inbound::Configure(config)]) = started.as_deref() else {
            panic!("{envelope:?}: start did not configure: {started:?}");
        };
        assert_eq!(config.frame_ms, Some(60), "{envelope:?}");
    }
}
