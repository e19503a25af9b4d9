//! Every client protocol error over a real WebSocket: the `error` message, the close code and
//! reason (or that the session continues), and that other sessions are not affected.

mod common;

use std::time::Duration;

use common::{start_json, test_config, Client, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use voxgate_actors::messages::{AudioIn, PipelineFinished};
use voxgate_actors::protocol::ErrorCode;

/// What the client does wrong.
enum Wrong {
    Text(&'static str),
    Json(Value),
    Binary(usize),
    InvalidUtf8,
    /// A fragmented binary message of these fragment sizes.
    Fragments(&'static [usize]),
}

async fn send(client: &mut Client, wrong: &Wrong) {
    match wrong {
        Wrong::Text(text) => client.send_text(text).await,
        Wrong::Json(value) => client.send_json(value).await,
        Wrong::Binary(n) => client.send_binary(&vec![0u8; *n]).await,
        Wrong::InvalidUtf8 => {
            client
                .send_frame(&[b'{', 0xff, 0xfe, b'}'], Data::Text, true)
                .await
        }
        Wrong::Fragments(sizes) => {
            for (i, size) in sizes.iter().enumerate() {
                let opcode = if i == 0 { Data::Binary } else { Data::Continue };
                client
                    .send_frame(&vec![1u8; *size], opcode, i + 1 == sizes.len())
                    .await;
            }
        }
    }
}

/// Each case: configured first or not, what is sent, the error expected.
fn cases() -> Vec<(&'static str, bool, Wrong, ErrorCode)> {
    let too_many_phrases = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                                  "phrases":["a","b","c","d"]});
    vec![
        (
            "not JSON",
            false,
            Wrong::Text("hello"),
            ErrorCode::InvalidJson,
        ),
        (
            "not an object",
            true,
            Wrong::Text("[1,2]"),
            ErrorCode::InvalidJson,
        ),
        (
            "no type",
            true,
            Wrong::Json(json!({"content":"AA=="})),
            ErrorCode::InvalidJson,
        ),
        (
            "type not a string",
            false,
            Wrong::Json(json!({"type":1})),
            ErrorCode::InvalidJson,
        ),
        (
            "invalid UTF-8",
            true,
            Wrong::InvalidUtf8,
            ErrorCode::InvalidJson,
        ),
        (
            "unknown type",
            true,
            Wrong::Json(json!({"type":"subscribe"})),
            ErrorCode::UnknownType,
        ),
        (
            "ill-typed audio",
            true,
            Wrong::Json(json!({"type":"audio","content":5})),
            ErrorCode::InvalidMessage,
        ),
        (
            "start without rate",
            false,
            Wrong::Json(json!({"type":"start","encoding":"LINEAR16"})),
            ErrorCode::InvalidMessage,
        ),
        (
            "bad base64",
            true,
            Wrong::Json(json!({"type":"audio","content":"%%%"})),
            ErrorCode::InvalidBase64,
        ),
        (
            "binary before start",
            false,
            Wrong::Binary(10),
            ErrorCode::AudioBeforeStart,
        ),
        (
            "base64 audio before start",
            false,
            Wrong::Json(json!({"type":"audio","content":"AA=="})),
            ErrorCode::AudioBeforeStart,
        ),
        (
            "finalize before start",
            false,
            Wrong::Json(json!({"type":"finalize"})),
            ErrorCode::AudioBeforeStart,
        ),
        (
            "second start",
            true,
            Wrong::Json(start_json()),
            ErrorCode::AlreadyStarted,
        ),
        (
            "oversized binary frame",
            true,
            Wrong::Binary(4_097),
            ErrorCode::FrameTooLarge,
        ),
        (
            "huge binary frame",
            true,
            Wrong::Binary(300_000),
            ErrorCode::FrameTooLarge,
        ),
        (
            "oversized before start",
            false,
            Wrong::Binary(5_000),
            ErrorCode::FrameTooLarge,
        ),
        (
            "oversized fragmented message",
            true,
            Wrong::Fragments(&[2_000, 2_000, 2_000]),
            ErrorCode::FrameTooLarge,
        ),
        (
            "unsupported encoding",
            false,
            Wrong::Json(json!({"type":"start","encoding":"MP3","sample_rate_hz":16000})),
            ErrorCode::UnsupportedEncoding,
        ),
        (
            "unsupported rate",
            false,
            Wrong::Json(json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":96000})),
            ErrorCode::UnsupportedSampleRate,
        ),
        (
            "too many phrases",
            false,
            Wrong::Json(too_many_phrases),
            ErrorCode::InvalidConfig,
        ),
        (
            "bad language",
            false,
            Wrong::Json(
                json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
                               "language_code":""}),
            ),
            ErrorCode::InvalidConfig,
        ),
    ]
}

/// Every protocol error gets its message and close; audio accepted before it was forwarded;
/// a bystander session is unaffected.
#[actix_rt::test]
async fn every_protocol_error_has_its_code_and_close() {
    let mut server = TestServer::start(test_config()).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    for (name, configured, wrong, code) in cases() {
        let mut client = server.connect("/v1/listen").await;
        let pipeline = if configured {
            client.send_json(&start_json()).await;
            client.expect_type("ready").await;
            let pipeline = server.next_pipeline().await;
            client.send_binary(&[42]).await;
            Some(pipeline)
        } else {
            None
        };
        send(&mut client, &wrong).await;
        let error = client.expect_error(code).await;
        eprintln!("{name}: {error}");
        if let Some(pipeline) = &pipeline {
            let audio = pipeline.audio(1).await;
            assert_eq!(
                audio.first().map(|a| a.data.to_vec()),
                Some(vec![42]),
                "{name}: audio before the error was forwarded"
            );
        }
        if code.close_code().is_none() {
            // The session continues: it still takes a stop.
            client.send_json(&json!({"type":"stop"})).await;
            if let Some(pipeline) = &pipeline {
                assert_eq!(pipeline.ends(1).await, 1, "{name}: continues");
                pipeline.links.finished.do_send(PipelineFinished {
                    summary: Default::default(),
                });
            }
            client.expect_type("closed").await;
            client.expect_close(1000, "closed").await;
        } else if let Some(pipeline) = &pipeline {
            assert_eq!(pipeline.stops(1).await, 1, "{name}: pipeline stopped");
        }
    }
    bystander.send_binary(&[9, 9]).await;
    let audio = bystander_pipeline
        .log
        .wait_count::<AudioIn>(1, common::WAIT)
        .await;
    assert_eq!(audio.len(), 1, "the bystander session still works");
    bystander.quiet_for(Duration::from_millis(50)).await;
    drop(bystander);
    server.stop().await;
}

/// Errors in a query-string configuration are sent right after the upgrade.
#[actix_rt::test]
async fn query_configuration_errors() {
    let mut server = TestServer::start(test_config()).await;
    for (query, code) in [
        ("encoding=LINEAR16", ErrorCode::InvalidMessage),
        (
            "encoding=LINEAR16&sample_rate_hz=x",
            ErrorCode::InvalidMessage,
        ),
        (
            "encoding=MP3&sample_rate_hz=16000",
            ErrorCode::UnsupportedEncoding,
        ),
        (
            "encoding=AMR&sample_rate_hz=16000",
            ErrorCode::UnsupportedSampleRate,
        ),
        ("language_code=en-US", ErrorCode::InvalidConfig),
        (
            "encoding=LINEAR16&sample_rate_hz=16000&phrases=a,b,c,d",
            ErrorCode::InvalidConfig,
        ),
    ] {
        let mut client = server.connect(&format!("/v1/listen?{query}")).await;
        client.expect_error(code).await;
    }
    assert!(server.no_pipeline(Duration::from_millis(100)).await);
    server.stop().await;
}

/// Beyond max_sessions the upgrade completes, then too_many_sessions and 1013; a slot freed by
/// a closed session is available again.
#[actix_rt::test]
async fn too_many_sessions() {
    let mut config = test_config();
    config.session.max_sessions = 2;
    let mut server = TestServer::start(config).await;
    let (first, _, first_pipeline) = server.started_session().await;
    let (second, _, _) = server.started_session().await;
    let mut third = server.connect("/v1/listen").await;
    third.expect_error(ErrorCode::TooManySessions).await;
    let mut first = first;
    first.ws.close(None).await.expect("close the first session");
    assert_eq!(first_pipeline.stops(1).await, 1);
    // The permit is released when the first session's actor stops.
    let mut admitted = false;
    for _ in 0..50 {
        let mut client = server.connect("/v1/listen").await;
        client.send_json(&start_json()).await;
        let reply = client.expect_json().await;
        if reply["type"] == "ready" {
            admitted = true;
            break;
        }
        assert_eq!(reply["code"], "too_many_sessions", "{reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot is given to a new session");
    drop(second);
    server.stop().await;
}
