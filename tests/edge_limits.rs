//! The per-session limits under abuse, over real connections: floods of frames and pings, audio
//! faster than real time (paced, then rejected), clients that do not read (slow consumers), slow
//! request heads, clients that never configure. Each gets its error and close code (or its
//! connection dropped, where nothing can be delivered), and a session beside them keeps working.

mod common;

use std::time::{Duration, Instant};

use common::raw::{frame, RawClient, Read, BINARY, PING, PONG, TEXT};
use common::{raw_session, start_json, still_works, test_config, TestServer, WAIT};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxgate_actors::messages::{AudioIn, StopPipeline, Transcript};
use voxgate_actors::protocol::ErrorCode;

fn transcript(text: String) -> Transcript {
    Transcript {
        is_final: true,
        transcript: text,
        confidence: 0.9,
        stability: 0.0,
        start_ms: 0,
        end_ms: 100,
        words: vec![],
        language_code: "en-us".into(),
    }
}

/// A flood of pings, or of tiny messages, is `too_many_messages` (1008), configured or not.
#[actix_rt::test]
async fn floods_of_frames_are_too_many_messages() {
    let mut config = test_config();
    config.session.max_messages_per_sec = 50;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;

    // Pings, on a configured session: answered (up to the limit), then refused.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let pings: Vec<u8> = (0..200u8).flat_map(|i| frame(PING, &[i])).collect();
    raw.write(&pings).await;
    let mut pongs = 0;
    let error = loop {
        match raw.read(WAIT).await {
            Read::Frame(f) if f.opcode == PONG => pongs += 1,
            Read::Frame(f) if f.opcode == TEXT => break f.json(),
            other => panic!("expected pongs then an error, got {other:?}"),
        }
    };
    assert_eq!(error["code"], "too_many_messages", "{error}");
    assert!(
        (40..=55).contains(&pongs),
        "pongs within the limit: {pongs}"
    );
    raw.expect_close(1008, "too_many_messages").await;
    assert_eq!(pipeline.stops(1).await, 1);

    // Tiny text messages before start.
    let mut raw = RawClient::connect(server.addr).await;
    let keepalives: Vec<u8> = (0..200)
        .flat_map(|_| frame(TEXT, br#"{"type":"keepalive"}"#))
        .collect();
    raw.write(&keepalives).await;
    raw.expect_error(ErrorCode::TooManyMessages).await;

    // A client at the rate is fine for as long as it likes.
    let (mut steady, _, steady_pipeline) = server.started_session().await;
    for i in 0..30 {
        steady.send_binary(&[i]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(steady_pipeline.audio(30).await.len(), 30);
    steady.quiet_for(Duration::from_millis(50)).await;

    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop((bystander, steady));
    server.stop().await;
}

/// Audio at real time is never held back; audio pushed as fast as the socket goes is paced to
/// `max_audio_speed` after the burst, and rejected (`audio_too_fast`, 1008) once it is
/// `max_audio_lead_ms` ahead of real time.
#[actix_rt::test]
async fn audio_faster_than_real_time_is_paced_then_rejected() {
    let mut config = test_config();
    config.session.max_audio_speed = 2.0;
    config.session.audio_burst_ms = 200;
    config.session.max_audio_lead_ms = 1_000;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    // 100 ms of LINEAR16 at 16 kHz.
    let chunk = frame(BINARY, &[0u8; 3_200]);

    // Real time, 1.5 s: all forwarded, nothing said.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    for _ in 0..15 {
        raw.write(&chunk).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pipeline.audio(15).await.len(), 15);
    assert_eq!(raw.read(Duration::from_millis(100)).await, Read::Nothing);
    drop(raw);

    // As fast as it goes, from a writer of its own.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let mut writer = raw.take_writer();
    let began = Instant::now();
    let flood = actix_rt::spawn(async move {
        for _ in 0..2_000 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    raw.expect_error(ErrorCode::AudioTooFast).await;
    let elapsed = began.elapsed();
    let forwarded_ms = pipeline.log.all::<AudioIn>().len() as u128 * 100;
    // Unpaced, 1.2 s of audio would be there at once; paced at 2×, the lead of 1 s takes ~0.8 s.
    assert!(
        elapsed >= Duration::from_millis(600),
        "paced before rejected: {elapsed:?}"
    );
    assert!(
        forwarded_ms <= 2 * elapsed.as_millis() + 300,
        "at most twice real time (plus the burst): {forwarded_ms} ms in {elapsed:?}"
    );
    assert_eq!(pipeline.stops(1).await, 1);
    flood.abort();
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop(bystander);
    server.stop().await;
}

/// A client that does not read its messages: once more than `max_outgoing_bytes` wait for it, the
/// session ends with `slow_consumer` (1008) — what it then reads is bounded by the limit.
#[actix_rt::test]
async fn a_backlog_beyond_the_limit_is_slow_consumer() {
    let mut config = test_config();
    config.session.max_outgoing_bytes = 64 * 1024;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let (mut raw, pipeline) = raw_session(&mut server).await;
    // 2 MB of results at once, while the client reads nothing.
    for i in 0..2_000 {
        pipeline
            .links
            .transcripts
            .do_send(transcript(format!("{i:04} {}", "w".repeat(1_000))));
    }
    let mut transcripts = 0;
    let error = loop {
        match raw.next_frame().await {
            Read::Frame(f) if f.json()["type"] == "transcript" => transcripts += 1,
            Read::Frame(f) => break f.json(),
            other => panic!("expected transcripts then an error, got {other:?}"),
        }
    };
    assert_eq!(error["code"], "slow_consumer", "{error}");
    assert_eq!(error["retryable"], true);
    assert!(
        transcripts * 1_000 <= 64 * 1_024,
        "no more than the limit was queued: {transcripts} transcripts"
    );
    raw.expect_close(1008, "slow_consumer").await;
    assert_eq!(pipeline.stops(1).await, 1);
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop(bystander);
    server.stop().await;
}

/// A client that reads nothing at all stops the connection from taking anything more, and with
/// it the session: the kernel's send timeout (`send_timeout_secs`) then drops the connection,
/// the pipeline is stopped and the session's place is freed.
#[actix_rt::test]
async fn a_client_that_reads_nothing_is_dropped() {
    let mut config = test_config();
    config.server.send_timeout_secs = 1.0;
    config.session.max_sessions = 2;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let mut raw = RawClient::upgrade_small_buffer(server.addr, 4_096).await;
    raw.write(&frame(TEXT, start_json().to_string().as_bytes()))
        .await;
    let pipeline = server.next_pipeline().await;
    let began = Instant::now();
    let mut pushed = 0u64;
    // Results keep coming, as from a live recognition, until the session is gone.
    while pipeline.log.all::<StopPipeline>().is_empty() {
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "the session outlived the send timeout by far ({pushed} bytes pushed)"
        );
        for _ in 0..10 {
            pipeline
                .links
                .transcripts
                .do_send(transcript("w".repeat(4_000)));
            pushed += 4_000;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "dropped after {:?}, {pushed} bytes of results pushed",
        began.elapsed()
    );
    // Its place is free again (the bystander holds the other).
    let (again, _, _) = server.started_session().await;
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    // Whatever the client now reads ends with the end of the connection.
    loop {
        match raw.read(WAIT).await {
            Read::End => break,
            Read::Frame(_) => continue,
            Read::Nothing => panic!("the connection was not dropped"),
        }
    }
    drop((bystander, again));
    server.stop().await;
}

/// A request head sent too slowly (slow-loris) is cut off after `request_timeout_secs`.
#[actix_rt::test]
async fn slow_request_heads_time_out() {
    let mut config = test_config();
    config.server.request_timeout_secs = 0.3;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /v1/listen HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let began = Instant::now();
    let mut response = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(began.elapsed() >= Duration::from_millis(200));
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop(bystander);
    server.stop().await;
}

/// A `POST /v1/tokens` body trickled a byte at a time is cut off `request_timeout_secs` after the
/// head: 408 `request_timeout`, and the connection is closed.
#[actix_rt::test]
async fn slow_request_bodies_time_out() {
    let mut config = test_config();
    config.server.request_timeout_secs = 0.5;
    config.auth.api_keys = vec![common::key_hash_entry("body-key-0123456789")];
    let server = TestServer::start(config).await;
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer body-key-0123456789\r\n\
              Content-Length: 1000\r\n\r\n",
        )
        .await
        .expect("write head");
    let began = Instant::now();
    // One byte every 100 ms: the whole body would take 100 s.
    let trickle = actix_rt::spawn(async move {
        for _ in 0..1_000 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(WAIT, reader.read_to_end(&mut response)).await;
    trickle.abort();
    assert!(
        read.is_ok(),
        "the server answered and closed within {WAIT:?}"
    );
    assert!(began.elapsed() >= Duration::from_millis(400));
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
    server.stop().await;
}

/// A client that only keeps its connection alive and never configures it is ended at
/// `start_timeout_secs` (pings do not count as a configuration).
#[actix_rt::test]
async fn clients_that_never_start_time_out() {
    let mut config = test_config();
    config.session.start_timeout_secs = 0.3;
    let server = TestServer::start(config).await;
    let mut raw = RawClient::connect(server.addr).await;
    let began = Instant::now();
    for _ in 0..3 {
        raw.write(&frame(PING, b"alive")).await;
        raw.write(&frame(
            TEXT,
            json!({"type":"keepalive"}).to_string().as_bytes(),
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    raw.expect_error(ErrorCode::StartTimeout).await;
    assert!(began.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}
