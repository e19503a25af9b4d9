//! The session over a real WebSocket: configuration, audio and control forwarded to the pipeline
//! (a probe), pipeline reports turned into client messages, timers and the heartbeat.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{start_json, test_config, Event, TestServer, WAIT};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use voxgate_actors::audio::Encoding;
use voxgate_actors::messages::{
    AudioAcked, AudioIn, PipelineError, PipelineFinished, PipelineSummary, PipelineWarning,
    SpeechActivity, StopPipeline, Transcript, VoiceActivity, WordTiming,
};
use voxgate_actors::protocol::ErrorCode;

/// `start` gets `ready` with the session id, and the pipeline starts with the requested config.
#[actix_rt::test]
async fn start_gets_ready_and_a_pipeline_with_the_config() {
    let mut server = TestServer::start(test_config()).await;
    let mut client = server.connect("/v1/listen").await;
    client
        .send_json(
            &json!({"type":"start","encoding":"OGG_OPUS","sample_rate_hz":48000,
                           "language_code":"de-DE","interim_results":false,
                           "enable_automatic_punctuation":true,"model":"latest_long",
                           "phrases":["voxgate"],"single_utterance":true}),
        )
        .await;
    let ready = client.expect_type("ready").await;
    let pipeline = server.next_pipeline().await;
    assert_eq!(ready["session_id"], &*pipeline.session_id);
    assert!(uuid_like(ready["session_id"].as_str().unwrap_or_default()));
    let config = &pipeline.config;
    assert_eq!(config.format.encoding, Encoding::OggOpus);
    assert_eq!(config.format.sample_rate_hz, 48_000);
    assert_eq!(config.language_code, "de-DE");
    assert!(!config.interim_results);
    assert!(config.enable_automatic_punctuation);
    assert_eq!(config.model, "latest_long");
    assert_eq!(config.phrases, vec!["voxgate".to_string()]);
    assert!(config.single_utterance);
    drop(client);
    server.stop().await;
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4
}

/// Binary and base64 audio reach the pipeline in arrival order, with the client's audio_id.
#[actix_rt::test]
async fn binary_and_base64_audio_are_forwarded_in_order() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, _, pipeline) = server.started_session().await;
    client.send_binary(&[1, 2]).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode([3u8, 4, 5]);
    client
        .send_json(&json!({"type":"audio","content":b64,"audio_id":"chunk-1"}))
        .await;
    client
        .send_json(&json!({"type":"audio","content":"Bgc"})) // [6, 7], no padding
        .await;
    client.send_binary(&[8]).await;
    let audio = pipeline.audio(4).await;
    let got: Vec<(Vec<u8>, Option<String>)> = audio
        .iter()
        .map(|a| (a.data.to_vec(), a.audio_id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![1, 2], None),
            (vec![3, 4, 5], Some("chunk-1".to_string())),
            (vec![6, 7], None),
            (vec![8], None),
        ]
    );
    drop(client);
    server.stop().await;
}

/// Fragmented text and binary messages are reassembled.
#[actix_rt::test]
async fn fragmented_messages_are_reassembled() {
    let mut server = TestServer::start(test_config()).await;
    let mut client = server.connect("/v1/listen").await;
    let start = start_json().to_string();
    let (a, b) = start.as_bytes().split_at(10);
    client.send_frame(a, Data::Text, false).await;
    client.send_frame(b, Data::Continue, true).await;
    client.expect_type("ready").await;
    let pipeline = server.next_pipeline().await;
    client.send_frame(&[1, 2], Data::Binary, false).await;
    client.send_frame(&[3], Data::Continue, false).await;
    client.send_frame(&[4, 5], Data::Continue, true).await;
    let audio = pipeline.audio(1).await;
    assert_eq!(
        audio.first().map(|a| a.data.to_vec()),
        Some(vec![1, 2, 3, 4, 5])
    );
    drop(client);
    server.stop().await;
}

/// `finalize` and `stop` reach the pipeline; `PipelineFinished` then gives `closed` and 1000.
#[actix_rt::test]
async fn stop_flushes_then_closed_and_1000() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, session_id, pipeline) = server.started_session().await;
    client.send_binary(&[0; 64]).await;
    client.send_json(&json!({"type":"finalize"})).await;
    assert_eq!(pipeline.finalizes(1).await, 1);
    client.send_json(&json!({"type":"stop"})).await;
    assert_eq!(pipeline.ends(1).await, 1);
    // The last results and the acknowledgement still arrive after stop.
    pipeline.links.acks.do_send(AudioAcked {
        audio_ms: 1_500,
        audio_id: None,
    });
    pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary {
            results: 2,
            restarts: 1,
            billed_ms: 0,
        },
    });
    assert_eq!(
        client.expect_json().await,
        json!({"type":"ack","audio_ms":1500,"final_ms":0})
    );
    assert_eq!(
        client.expect_json().await,
        json!({"type":"closed","session_id":session_id,"audio_ms":1500,"audio_seconds":1.5,
               "results":2,"restarts":1})
    );
    client.expect_close(1000, "closed").await;
    assert_eq!(pipeline.stops(1).await, 1, "the pipeline is stopped");
    drop(client);
    server.stop().await;
}

/// Voice activity from the pipeline becomes `speech_started` / `speech_ended` with the session
/// time; billed audio in the summary becomes `billed_ms` in `closed`.
#[actix_rt::test]
async fn voice_activity_and_billed_audio_reach_the_client() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, session_id, pipeline) = server.started_session().await;
    for (activity, at_ms) in [
        (SpeechActivity::Started, 240),
        (SpeechActivity::Ended, 1_650),
    ] {
        pipeline
            .links
            .voice_activity
            .do_send(VoiceActivity { activity, at_ms });
    }
    assert_eq!(
        client.expect_json().await,
        json!({"type":"speech_started","at_ms":240})
    );
    assert_eq!(
        client.expect_json().await,
        json!({"type":"speech_ended","at_ms":1650})
    );
    client.send_json(&json!({"type":"stop"})).await;
    assert_eq!(pipeline.ends(1).await, 1);
    pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary {
            results: 1,
            restarts: 0,
            billed_ms: 3_000,
        },
    });
    assert_eq!(
        client.expect_json().await,
        json!({"type":"closed","session_id":session_id,"audio_ms":0,"audio_seconds":0.0,
               "results":1,"restarts":0,"billed_ms":3000})
    );
    client.expect_close(1000, "closed").await;
    drop(client);
    server.stop().await;
}

/// Audio after `stop` is dropped with one warning; a second `stop` is ignored.
#[actix_rt::test]
async fn audio_after_stop_is_dropped_with_one_warning() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, _, pipeline) = server.started_session().await;
    client.send_binary(&[1]).await;
    client.send_json(&json!({"type":"stop"})).await;
    client.send_binary(&[2]).await;
    client.send_json(&json!({"type":"finalize"})).await;
    client.send_json(&json!({"type":"stop"})).await;
    client.send_binary(&[3]).await;
    let warning = client.expect_type("warning").await;
    assert_eq!(warning["code"], "audio_after_stop");
    client.send_json(&json!({"type":"keepalive"})).await;
    client.quiet_for(Duration::from_millis(200)).await;
    assert_eq!(pipeline.ends(1).await, 1);
    let audio = pipeline.log.all::<AudioIn>();
    assert_eq!(audio.len(), 1, "only the audio before stop is forwarded");
    assert_eq!(
        pipeline
            .log
            .all::<voxgate_actors::messages::Finalize>()
            .len(),
        0
    );
    pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary::default(),
    });
    client.expect_type("closed").await;
    client.expect_close(1000, "closed").await;
    drop(client);
    server.stop().await;
}

/// `stop` before `start` ends the session at once with an empty `closed`.
#[actix_rt::test]
async fn stop_before_start_closes_at_once() {
    let mut server = TestServer::start(test_config()).await;
    let mut client = server.connect("/v1/listen").await;
    client.send_json(&json!({"type":"stop"})).await;
    let closed = client.expect_type("closed").await;
    assert_eq!(closed["audio_ms"], 0);
    assert_eq!(closed["results"], 0);
    client.expect_close(1000, "closed").await;
    assert!(server.no_pipeline(Duration::from_millis(100)).await);
    drop(client);
    server.stop().await;
}

/// Pipeline reports become `transcript`, `ack` and `warning` messages with exact fields.
#[actix_rt::test]
async fn pipeline_reports_become_client_messages() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, _, pipeline) = server.started_session().await;
    pipeline.links.transcripts.do_send(Transcript {
        is_final: false,
        transcript: "hel".into(),
        confidence: 0.0,
        stability: 0.5,
        start_ms: 0,
        end_ms: 300,
        words: vec![],
        language_code: "en-us".into(),
    });
    pipeline.links.transcripts.do_send(Transcript {
        is_final: true,
        transcript: "hello".into(),
        confidence: 0.75,
        stability: 0.0,
        start_ms: 100,
        end_ms: 600,
        words: vec![WordTiming {
            word: "hello".into(),
            start_ms: 100,
            end_ms: 600,
            confidence: 0.75,
        }],
        language_code: "en-us".into(),
    });
    pipeline.links.acks.do_send(AudioAcked {
        audio_ms: 500,
        audio_id: Some("c-9".into()),
    });
    pipeline.links.warnings.do_send(PipelineWarning {
        code: "upstream_restarting",
        message: "reconnecting".into(),
    });
    assert_eq!(
        client.expect_json().await,
        json!({"type":"transcript","is_final":false,"transcript":"hel","confidence":0.0,
               "stability":0.5,"start_ms":0,"end_ms":300,"words":[],"language_code":"en-us"})
    );
    // A final carries a fresh resume token (docs/protocol.md, "Resume"); the rest is exact.
    let mut last_final = client.expect_json().await;
    let token = last_final
        .as_object_mut()
        .and_then(|m| m.remove("resume_token"));
    assert!(
        token
            .as_ref()
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.starts_with("vg1.")),
        "{token:?}"
    );
    assert_eq!(
        last_final,
        json!({"type":"transcript","is_final":true,"transcript":"hello","confidence":0.75,
               "stability":0.0,"start_ms":100,"end_ms":600,
               "words":[{"word":"hello","start_ms":100,"end_ms":600,"confidence":0.75}],
               "language_code":"en-us"})
    );
    assert_eq!(
        client.expect_json().await,
        json!({"type":"ack","audio_ms":500,"audio_id":"c-9","final_ms":600})
    );
    assert_eq!(
        client.expect_json().await,
        json!({"type":"warning","code":"upstream_restarting","message":"reconnecting"})
    );
    drop(client);
    server.stop().await;
}

/// An ack waits (at most `ACK_HOLD`) for the session's next message and leaves just before it;
/// with nothing after it, it leaves on its own.
#[actix_rt::test]
async fn an_ack_leaves_with_the_next_message_or_alone() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, _, pipeline) = server.started_session().await;
    pipeline.links.acks.do_send(AudioAcked {
        audio_ms: 500,
        audio_id: None,
    });
    assert_eq!(
        client.expect_json().await,
        json!({"type":"ack","audio_ms":500,"final_ms":0})
    );
    pipeline.links.acks.do_send(AudioAcked {
        audio_ms: 1_000,
        audio_id: None,
    });
    pipeline.links.warnings.do_send(PipelineWarning {
        code: "upstream_restarting",
        message: "reconnecting".into(),
    });
    assert_eq!(
        client.expect_json().await,
        json!({"type":"ack","audio_ms":1000,"final_ms":0})
    );
    assert_eq!(
        client.expect_json().await,
        json!({"type":"warning","code":"upstream_restarting","message":"reconnecting"})
    );
    drop(client);
    server.stop().await;
}

/// A pipeline error is sent with its code and closes with the code's close code.
#[actix_rt::test]
async fn pipeline_errors_close_with_their_code() {
    let mut server = TestServer::start(test_config()).await;
    for code in [
        ErrorCode::UpstreamRejected,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::BufferFull,
    ] {
        let (mut client, _, pipeline) = server.started_session().await;
        pipeline.links.errors.do_send(PipelineError {
            code,
            message: "it broke".into(),
        });
        let error = client.expect_error(code).await;
        assert_eq!(error["message"], "it broke");
        assert_eq!(
            pipeline.stops(1).await,
            1,
            "{code:?}: the pipeline is stopped"
        );
    }
    server.stop().await;
}

/// The client closing the socket stops the pipeline.
#[actix_rt::test]
async fn client_close_stops_the_pipeline() {
    let mut server = TestServer::start(test_config()).await;
    let (mut client, _, pipeline) = server.started_session().await;
    client.ws.close(None).await.expect("client close");
    assert_eq!(pipeline.stops(1).await, 1);
    assert_eq!(pipeline.log.all::<StopPipeline>().len(), 1);
    drop(client);
    server.stop().await;
}

/// A query string with `encoding` configures the session at connect; a later start is refused
/// but the session continues.
#[actix_rt::test]
async fn query_string_configures_the_session() {
    let mut server = TestServer::start(test_config()).await;
    let mut client = server
        .connect("/v1/listen?encoding=MULAW&sample_rate_hz=8000&phrases=a,b&phrases=c%20d&token=x")
        .await;
    client.expect_type("ready").await;
    let pipeline = server.next_pipeline().await;
    assert_eq!(pipeline.config.format.encoding, Encoding::Mulaw);
    assert_eq!(pipeline.config.phrases, vec!["a", "b", "c d"]);
    client.send_json(&start_json()).await;
    client.expect_error(ErrorCode::AlreadyStarted).await;
    client.send_binary(&[7]).await;
    assert_eq!(pipeline.audio(1).await.len(), 1, "the session goes on");
    assert!(server.no_pipeline(Duration::from_millis(100)).await);
    drop(client);
    server.stop().await;
}

/// The server pings; a client that answers nothing at all is dropped after client_timeout_secs.
#[actix_rt::test]
async fn heartbeat_pings_and_drops_a_silent_client() {
    let mut config = test_config();
    config.session.heartbeat_interval_secs = 0.1;
    config.session.client_timeout_secs = 0.5;
    let mut server = TestServer::start(config).await;
    let (mut client, _, pipeline) = server.started_session().await;
    // Reading answers pings (tungstenite replies on read), so the session stays.
    for _ in 0..8 {
        assert_eq!(client.next_event(WAIT).await, Event::Ping);
    }
    assert_eq!(
        pipeline.log.all::<StopPipeline>().len(),
        0,
        "an answering client stays"
    );
    // Not reading: no pongs go out, so nothing arrives from this client.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        pipeline.stops(1).await,
        1,
        "the silent client's session ended"
    );
    // The server dropped the connection without a closing handshake (the client is presumed
    // dead): the Close frame is readable unless the pongs tungstenite now flushes to the closed
    // socket get a reset that discards it first.
    loop {
        match client.next_event(WAIT).await {
            Event::Ping => continue,
            Event::Close(reason) => {
                assert_eq!(reason, Some((1008, "client_timeout".to_string())));
                break;
            }
            Event::End => break,
            other => panic!("expected the client_timeout close, got {other:?}"),
        }
    }
    drop(client);
    server.stop().await;
}

/// No start within start_timeout_secs: start_timeout.
#[actix_rt::test]
async fn start_timeout() {
    let mut config = test_config();
    config.session.start_timeout_secs = 0.2;
    let server = TestServer::start(config).await;
    let mut client = server.connect("/v1/listen").await;
    client.send_json(&json!({"type":"keepalive"})).await;
    client.expect_error(ErrorCode::StartTimeout).await;
    drop(client);
    server.stop().await;
}

/// No audio or keepalive within idle_timeout_secs after start: idle_timeout; activity defers it.
#[actix_rt::test]
async fn idle_timeout_counts_from_the_last_activity() {
    let mut config = test_config();
    config.session.idle_timeout_secs = 0.4;
    let mut server = TestServer::start(config).await;
    let (mut client, _, pipeline) = server.started_session().await;
    let begun = std::time::Instant::now();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.send_json(&json!({"type":"keepalive"})).await;
    }
    client.send_binary(&[1]).await;
    client.expect_error(ErrorCode::IdleTimeout).await;
    assert!(
        begun.elapsed() >= Duration::from_millis(600 + 400),
        "keepalive and audio deferred the timeout"
    );
    assert_eq!(pipeline.stops(1).await, 1);
    drop(client);
    server.stop().await;
}

/// The session ends at max_session_secs.
#[actix_rt::test]
async fn session_too_long() {
    let mut config = test_config();
    config.session.max_session_secs = 0.3;
    let mut server = TestServer::start(config).await;
    let (mut client, _, pipeline) = server.started_session().await;
    client.expect_error(ErrorCode::SessionTooLong).await;
    assert_eq!(pipeline.stops(1).await, 1);
    drop(client);
    server.stop().await;
}

/// Waiting for the last results after stop is bounded (idle_timeout_secs): internal.
#[actix_rt::test]
async fn stop_without_pipeline_finished_ends_with_internal() {
    let mut config = test_config();
    config.session.idle_timeout_secs = 0.3;
    let mut server = TestServer::start(config).await;
    let (mut client, _, pipeline) = server.started_session().await;
    client.send_json(&json!({"type":"stop"})).await;
    client.expect_error(ErrorCode::Internal).await;
    assert_eq!(pipeline.stops(1).await, 1);
    drop(client);
    server.stop().await;
}
