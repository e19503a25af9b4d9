//! The server around the sessions: `/healthz`, `/readyz`, `/metrics`, non-upgrade requests, and
//! graceful shutdown (the same path SIGTERM takes).

mod common;

use std::time::{Duration, Instant};

use common::{test_config, TestServer, WAIT};
use serde_json::{json, Value};
use voxgate_actors::messages::{PipelineFinished, PipelineSummary, Transcript};
use voxgate_actors::protocol::ErrorCode;

/// `/healthz` is 200 with `{"status":"ok"}` while serving.
#[actix_rt::test]
async fn healthz_is_ok_while_serving() {
    let server = TestServer::start(test_config()).await;
    let (status, body) = server.http_get("/healthz", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).ok(),
        Some(json!({"status":"ok"}))
    );
    server.stop().await;
}

/// `/readyz` is 200 while a new session would be served, 503 `full` while every session slot is
/// taken, and 200 again once one is freed.
#[actix_rt::test]
async fn readyz_follows_free_session_slots() {
    let mut config = test_config();
    config.session.max_sessions = 1;
    let mut server = TestServer::start(config).await;
    let status_of = |body: &str| serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    let (status, body) = server.http_get("/readyz", "").await;
    assert_eq!((status, status_of(&body)), (200, json!({"status":"ready"})));

    let (client, _, _) = server.started_session().await;
    let (status, body) = server.http_get("/readyz", "").await;
    assert_eq!((status, status_of(&body)), (503, json!({"status":"full"})));
    let (status, _) = server.http_get("/healthz", "").await;
    assert_eq!(status, 200, "liveness is not readiness");

    drop(client);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = server.http_get("/readyz", "").await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

/// `/metrics` serves the Prometheus text, and counts sessions.
#[actix_rt::test]
async fn metrics_are_served_and_count_sessions() {
    let mut server = TestServer::start(test_config()).await;
    let (client, _, _) = server.started_session().await;
    let (status, body) = server.http_get("/metrics", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("voxgate_sessions_total"), "{body}");
    assert!(body.contains("voxgate_sessions_active"), "{body}");
    let active = body
        .lines()
        .find(|l| l.starts_with("voxgate_sessions_active "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(active >= 1.0, "this test's session is active: {body}");
    drop(client);
    server.stop().await;
}

/// A plain GET of `/v1/listen` is 400 with a JSON error body.
#[actix_rt::test]
async fn listen_without_upgrade_is_400_json() {
    let mut server = TestServer::start(test_config()).await;
    let (status, body) = server.http_get("/v1/listen", "").await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(body["error"], "websocket_upgrade_required", "{body}");
    assert!(server.no_pipeline(Duration::from_millis(50)).await);
    server.stop().await;
}

/// Shutdown: every session is warned and served during the grace period (a `stop` gets its
/// `closed`), new sessions are refused, /readyz is 503 and /healthz still 200; after the grace period sessions are
/// flushed — finals delivered — and closed with `shutting_down` 1001; then the server stops.
#[actix_rt::test]
async fn graceful_shutdown() {
    let mut config = test_config();
    config.server.shutdown_grace_secs = 1.0;
    config.session.idle_timeout_secs = 2.0; // > grace; also bounds the flush after it
    let mut server = TestServer::start(config).await;
    let addr = server.addr;
    let (mut streaming, _, streaming_pipeline) = server.started_session().await;
    let (mut stopping, _, stopping_pipeline) = server.started_session().await;
    let (mut stuck, _, stuck_pipeline) = server.started_session().await;
    let mut unconfigured = server.connect("/v1/listen").await;

    let shutdown_began = Instant::now();
    let shutdown = actix_rt::spawn(server.take_handle().shutdown());

    for client in [&mut streaming, &mut stopping, &mut stuck, &mut unconfigured] {
        let warning = client.expect_type("warning").await;
        assert_eq!(warning["code"], "shutting_down", "{warning}");
    }
    let (status, body) = common::http_get(addr, "/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (status, body) = common::http_get(addr, "/healthz", "").await;
    assert_eq!(status, 200, "alive while draining: {body}");
    let mut late = server.connect("/v1/listen").await;
    late.expect_error(ErrorCode::ShuttingDown).await;

    // During the grace period sessions work as usual; a stop gets its closed and 1000.
    streaming.send_binary(&[1, 2, 3]).await;
    assert_eq!(streaming_pipeline.audio(1).await.len(), 1);
    stopping.send_json(&json!({"type":"stop"})).await;
    assert_eq!(stopping_pipeline.ends(1).await, 1);
    stopping_pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary::default(),
    });
    stopping.expect_type("closed").await;
    stopping.expect_close(1000, "closed").await;

    // After the grace period: the pipeline is flushed, its finals delivered, then 1001.
    assert_eq!(streaming_pipeline.ends(1).await, 1);
    assert!(
        shutdown_began.elapsed() >= Duration::from_millis(900),
        "the flush waits for the grace period"
    );
    streaming_pipeline.links.transcripts.do_send(Transcript {
        is_final: true,
        transcript: "last words".into(),
        confidence: 0.5,
        stability: 0.0,
        start_ms: 0,
        end_ms: 90,
        words: vec![],
        language_code: "en-us".into(),
    });
    streaming_pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary::default(),
    });
    let last = streaming.expect_type("transcript").await;
    assert_eq!(last["transcript"], "last words");
    streaming.expect_error(ErrorCode::ShuttingDown).await;
    assert_eq!(streaming_pipeline.stops(1).await, 1);

    // An unconfigured session is simply closed; a pipeline that never finishes is bounded.
    unconfigured.expect_error(ErrorCode::ShuttingDown).await;
    assert_eq!(stuck_pipeline.ends(1).await, 1);
    stuck.expect_error(ErrorCode::ShuttingDown).await;
    assert_eq!(stuck_pipeline.stops(1).await, 1);

    let result = tokio::time::timeout(WAIT, shutdown).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "shutdown completes: {result:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the server no longer accepts connections"
    );
}

/// Drain by hand-off (a shared token secret): after `hand_off_delay_secs` a streaming native
/// session gets `reconnect` — a resume token, the end of its last final — and Close 1012; a
/// session that cannot be resumed (FLAC audio) is held, warned and still served; once it ends the
/// shutdown completes, long before the 30 s grace period.
#[actix_rt::test]
async fn shutdown_hands_resumable_sessions_off_and_holds_the_others() {
    let mut config = test_config();
    config.server.shutdown_grace_secs = 30.0;
    config.server.hand_off_delay_secs = 0.2;
    config.auth.token_secret = Some(voxgate::config::Secret::new("h".repeat(32)));
    let mut server = TestServer::start(config).await;
    let mut moving = server.connect("/v1/listen").await;
    moving.send_json(&common::start_json()).await;
    let ready = moving.expect_type("ready").await;
    assert!(ready["resume_token"].is_string(), "{ready}");
    let session_id = ready["session_id"].as_str().unwrap_or_default().to_string();
    let moving_pipeline = server.next_pipeline().await;
    moving_pipeline.links.transcripts.do_send(Transcript {
        is_final: true,
        transcript: "first words".into(),
        confidence: 0.5,
        stability: 0.0,
        start_ms: 0,
        end_ms: 1_200,
        words: vec![],
        language_code: "en-us".into(),
    });
    assert_eq!(moving.expect_type("transcript").await["end_ms"], 1_200);
    let mut held = server.connect("/v1/listen").await;
    held.send_json(&json!({"type":"start","encoding":"FLAC","sample_rate_hz":16000}))
        .await;
    assert_eq!(held.expect_type("ready").await.get("resume_token"), None);
    let held_pipeline = server.next_pipeline().await;

    let shutdown = actix_rt::spawn(server.take_handle().shutdown());
    for client in [&mut moving, &mut held] {
        let warning = client.expect_type("warning").await;
        assert_eq!(warning["code"], "shutting_down", "{warning}");
    }
    let moved = moving.expect_type("reconnect").await;
    assert_eq!(moved["session_id"], session_id.as_str(), "{moved}");
    assert_eq!(moved["from_ms"], 1_200, "{moved}");
    assert!(
        moved["resume_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("vg1.")),
        "{moved}"
    );
    moving.expect_close(1012, "reconnect").await;
    assert_eq!(moving_pipeline.stops(1).await, 1);

    // The held session goes on as usual, and its stop ends it normally.
    held.send_binary(b"fLaC\0\0\0\x22").await;
    assert_eq!(held_pipeline.audio(1).await.len(), 1);
    held.send_json(&json!({"type":"stop"})).await;
    assert_eq!(held_pipeline.ends(1).await, 1);
    held_pipeline.links.finished.do_send(PipelineFinished {
        summary: PipelineSummary::default(),
    });
    held.expect_type("closed").await;
    held.expect_close(1000, "closed").await;

    let result = tokio::time::timeout(WAIT, shutdown).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "shutdown completes once the last session has moved or ended: {result:?}"
    );
}

/// A shutdown with no session open completes promptly, without waiting for the grace period.
#[actix_rt::test]
async fn shutdown_without_sessions_is_prompt() {
    let mut config = test_config();
    config.server.shutdown_grace_secs = 30.0;
    let mut server = TestServer::start(config).await;
    let began = Instant::now();
    tokio::time::timeout(WAIT, server.take_handle().shutdown())
        .await
        .map_err(|_| "timed out")
        .and_then(|r| r.map_err(|_| "failed"))
        .expect("shutdown completes");
    assert!(began.elapsed() < Duration::from_secs(5));
}
