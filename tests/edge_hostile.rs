//! Hostile input at the byte level: malformed and truncated frames, protocol violations in
//! fragmentation and control frames, invalid UTF-8, giant or deeply nested JSON, huge base64,
//! audio that is not audio, wrong sample rates. Each gets its error and close code; a session
//! open beside them keeps working throughout.

mod common;

use std::time::Duration;

use common::raw::{
    frame, frame_with, header_declaring, RawClient, Read, BINARY, CONTINUATION, PING, TEXT,
};
use common::{raw_session, test_config, TestServer, WAIT};
use serde_json::json;
use voxgate_actors::messages::AudioIn;
use voxgate_actors::protocol::ErrorCode;

/// What a hostile client sends, and whether it sends `start` first.
struct Case {
    name: &'static str,
    configured: bool,
    bytes: Vec<u8>,
    code: ErrorCode,
}

fn cases() -> Vec<Case> {
    let text = |t: &str| frame(TEXT, t.as_bytes());
    let deep = format!(
        r#"{{"type":"keepalive","x":{}{}}}"#,
        "[".repeat(1_000),
        "]".repeat(1_000)
    );
    let big_base64 = json!({"type":"audio","content":"A".repeat(3_000)}).to_string();
    let padded_keepalive = json!({"type":"keepalive","pad":"x".repeat(3_000)}).to_string();
    let mut fragmented_json = frame_with(TEXT, false, true, &[b' '; 1_500]);
    fragmented_json.extend(frame_with(CONTINUATION, true, true, &[b' '; 1_500]));
    let mut interleaved = frame_with(TEXT, false, true, b"{\"type\":");
    interleaved.extend(frame(BINARY, &[1, 2, 3]));
    let mut rsv = frame(BINARY, &[1, 2, 3]);
    rsv[0] |= 0x40;
    vec![
        Case {
            name: "unmasked client frame",
            configured: true,
            bytes: frame_with(BINARY, true, false, &[1, 2, 3]),
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "reserved bits set",
            configured: true,
            bytes: rsv,
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "unknown opcode",
            configured: false,
            bytes: frame(0x3, b"x"),
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "control frame over 125 bytes",
            configured: true,
            bytes: frame(PING, &[0; 200]),
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "fragmented control frame",
            configured: true,
            bytes: frame_with(PING, false, true, b"abc"),
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "continuation without a first fragment",
            configured: true,
            bytes: frame(CONTINUATION, &[1, 2]),
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "data frame inside a fragmented message",
            configured: true,
            bytes: interleaved,
            code: ErrorCode::InvalidMessage,
        },
        Case {
            name: "declared length with the top bit set",
            configured: true,
            bytes: header_declaring(BINARY, u64::MAX),
            code: ErrorCode::FrameTooLarge,
        },
        Case {
            name: "a ping declaring 1 GB",
            configured: false,
            bytes: header_declaring(PING, 1 << 30),
            code: ErrorCode::FrameTooLarge,
        },
        Case {
            name: "invalid UTF-8 in a text frame",
            configured: false,
            bytes: frame(TEXT, &[b'{', 0xc3, 0x28, b'}']),
            code: ErrorCode::InvalidJson,
        },
        Case {
            name: "invalid UTF-8 split over fragments",
            configured: true,
            bytes: [
                frame_with(TEXT, false, true, &[b'{', 0xe2]),
                frame_with(CONTINUATION, true, true, &[0x28, 0xa1, b'}']),
            ]
            .concat(),
            code: ErrorCode::InvalidJson,
        },
        Case {
            name: "deeply nested JSON",
            configured: true,
            bytes: text(&deep),
            code: ErrorCode::InvalidJson,
        },
        Case {
            name: "JSON over max_json_bytes",
            configured: false,
            bytes: text(&padded_keepalive),
            code: ErrorCode::JsonTooLarge,
        },
        Case {
            name: "huge base64 audio",
            configured: true,
            bytes: text(&big_base64),
            code: ErrorCode::JsonTooLarge,
        },
        Case {
            name: "fragmented JSON over max_json_bytes",
            configured: true,
            bytes: fragmented_json,
            code: ErrorCode::JsonTooLarge,
        },
        Case {
            name: "base64 that is not",
            configured: true,
            bytes: text(r#"{"type":"audio","content":"@@@@"}"#),
            code: ErrorCode::InvalidBase64,
        },
        Case {
            name: "JSON that is not an object",
            configured: true,
            bytes: text("[{\"type\":\"stop\"}]"),
            code: ErrorCode::InvalidJson,
        },
        Case {
            name: "a sample rate no encoding has",
            configured: false,
            bytes: text(r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":4294967295}"#),
            code: ErrorCode::UnsupportedSampleRate,
        },
        Case {
            name: "a sample rate beyond any number",
            configured: false,
            bytes: text(r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":1e400}"#),
            code: ErrorCode::InvalidJson,
        },
        Case {
            name: "a sample rate that is not an integer",
            configured: false,
            bytes: text(r#"{"type":"start","encoding":"LINEAR16","sample_rate_hz":1.6e4}"#),
            code: ErrorCode::InvalidMessage,
        },
    ]
}

/// Every hostile frame gets its error and close; the bystander keeps streaming.
#[actix_rt::test]
async fn hostile_frames_get_their_error_and_close() {
    let mut server = TestServer::start(test_config()).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let mut sent = 0;
    for case in cases() {
        let (mut raw, pipeline) = if case.configured {
            let (raw, pipeline) = raw_session(&mut server).await;
            (raw, Some(pipeline))
        } else {
            (RawClient::connect(server.addr).await, None)
        };
        raw.write(&case.bytes).await;
        let error = raw.expect_error(case.code).await;
        eprintln!("{}: {error}", case.name);
        if let Some(pipeline) = pipeline {
            assert_eq!(
                pipeline.stops(1).await,
                1,
                "{}: pipeline stopped",
                case.name
            );
        }
        sent += 1;
        bystander.send_binary(&[sent]).await;
        assert_eq!(
            bystander_pipeline.audio(sent as usize).await.len(),
            sent as usize,
            "{}: the bystander still streams",
            case.name
        );
    }
    bystander.quiet_for(Duration::from_millis(50)).await;
    drop(bystander);
    server.stop().await;
}

/// A frame cut short: if the client then leaves, the session ends with it; if it stays silent,
/// the heartbeat ends it (`client_timeout`). Either way the pipeline stops and the place is freed.
#[actix_rt::test]
async fn truncated_frames_and_half_open_connections_end_the_session() {
    let mut config = test_config();
    config.session.heartbeat_interval_secs = 0.1;
    config.session.client_timeout_secs = 0.4;
    config.session.max_sessions = 2;
    let mut server = TestServer::start(config).await;

    // Truncated, then the client goes away.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let mut truncated = frame(BINARY, &[7; 100]);
    truncated.truncate(40);
    raw.write(&truncated).await;
    drop(raw);
    assert_eq!(
        pipeline.stops(1).await,
        1,
        "the session ended with its client"
    );

    // Truncated, then silence (a half-open connection: nothing more ever arrives).
    let (mut raw, pipeline) = raw_session(&mut server).await;
    raw.write(&truncated).await;
    let began = std::time::Instant::now();
    // The client reads but never answers a ping: the server's pings go unanswered.
    let close = loop {
        match raw.read(WAIT).await {
            Read::Frame(f) if f.opcode == PING => continue,
            Read::Frame(f) => break f.close(),
            other => panic!("expected the client_timeout close, got {other:?}"),
        }
    };
    assert_eq!(close, Some((1008, "client_timeout".to_string())));
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        raw.read(WAIT).await,
        Read::End,
        "dropped without a handshake"
    );
    assert_eq!(pipeline.stops(1).await, 1);

    // Both places are free again.
    let (_a, _) = raw_session(&mut server).await;
    let (_b, _) = raw_session(&mut server).await;
    server.stop().await;
}

/// Audio that cannot be audio of the declared encoding: container formats must start with their
/// signature (which may arrive split over frames); raw PCM has none and is forwarded as it is.
#[actix_rt::test]
async fn audio_that_is_not_audio() {
    let mut server = TestServer::start(test_config()).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    for (encoding, rate, signature) in [
        ("OGG_OPUS", 48_000, &b"OggS"[..]),
        ("WEBM_OPUS", 48_000, &[0x1a, 0x45, 0xdf, 0xa3][..]),
        ("FLAC", 16_000, &b"fLaC"[..]),
    ] {
        let start = json!({"type":"start","encoding":encoding,"sample_rate_hz":rate});
        // Junk first: invalid_audio.
        let mut client = server.connect("/v1/listen").await;
        client.send_json(&start).await;
        client.expect_type("ready").await;
        let pipeline = server.next_pipeline().await;
        client.send_binary(b"<html>not audio</html>").await;
        let error = client.expect_error(ErrorCode::InvalidAudio).await;
        assert!(error["message"]
            .as_str()
            .is_some_and(|m| m.contains(encoding)));
        assert_eq!(pipeline.stops(1).await, 1);
        assert!(
            pipeline.log.all::<AudioIn>().is_empty(),
            "nothing forwarded"
        );

        // The signature split over two frames, then anything: accepted.
        let mut client = server.connect("/v1/listen").await;
        client.send_json(&start).await;
        client.expect_type("ready").await;
        let pipeline = server.next_pipeline().await;
        client.send_binary(&signature[..1]).await;
        client
            .send_binary(&[&signature[1..], &b"payload"[..]].concat())
            .await;
        client.send_binary(b"anything after the start").await;
        assert_eq!(pipeline.audio(3).await.len(), 3, "{encoding}: forwarded");
        client.quiet_for(Duration::from_millis(50)).await;
    }
    // LINEAR16 has no signature: any bytes are samples.
    let (mut pcm, _, pcm_pipeline) = server.started_session().await;
    pcm.send_binary(b"<html>noise, as far as PCM goes</html>")
        .await;
    assert_eq!(pcm_pipeline.audio(1).await.len(), 1);
    bystander.send_binary(&[1]).await;
    assert_eq!(bystander_pipeline.audio(1).await.len(), 1);
    drop((bystander, pcm));
    server.stop().await;
}
