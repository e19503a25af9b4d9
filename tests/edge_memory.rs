//! Memory stays bounded under abuse: each scenario pushes far more data at the server (64 MB)
//! than any bound allows it to hold, and the process's resident memory may grow by a fraction of
//! that only. One test running the scenarios one after the other, so that nothing else in this
//! process allocates meanwhile; each scenario also asserts its error code, and a bystander
//! session keeps working throughout.

mod common;

use std::time::{Duration, Instant};

use common::raw::{
    frame, frame_with, header_declaring, RawClient, Read, BINARY, CONTINUATION, PING, TEXT,
};
use common::{rss_bytes, start_json, test_config, Client, StartedPipeline, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use voxgate_actors::messages::{StopPipeline, Transcript};
use voxgate_actors::protocol::ErrorCode;

/// What each scenario pushes.
const PUSHED: usize = 64 << 20;
/// What resident memory may grow by during a scenario.
const MAX_GROWTH: u64 = 24 << 20;

async fn raw_session(server: &mut TestServer) -> (RawClient, StartedPipeline) {
    let mut raw = RawClient::connect(server.addr).await;
    raw.write(&frame(TEXT, start_json().to_string().as_bytes()))
        .await;
    match raw.next_frame().await {
        Read::Frame(f) => assert_eq!(f.json()["type"], "ready", "{f:?}"),
        other => panic!("expected ready, got {other:?}"),
    }
    (raw, server.next_pipeline().await)
}

/// Writes `unit` repeatedly until `PUSHED` bytes are out or the server stops taking them; tracks
/// the peak resident memory meanwhile. Returns (bytes written, peak RSS).
async fn flood(mut writer: OwnedWriteHalf, unit: Vec<u8>) -> (usize, u64) {
    let batch: Vec<u8> = unit.repeat((1 << 20) / unit.len().max(1) + 1);
    let mut written = 0;
    let mut peak = rss_bytes();
    let deadline = Instant::now() + Duration::from_secs(20);
    while written < PUSHED && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), writer.write_all(&batch)).await {
            Ok(Ok(())) => written += batch.len(),
            _ => break,
        }
        peak = peak.max(rss_bytes());
    }
    (written, peak)
}

fn check_growth(name: &str, baseline: u64, peak: u64, written: usize) {
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{name}: {} MB written, resident memory grew by {} MB",
        written >> 20,
        growth >> 20,
    );
    assert!(
        growth < MAX_GROWTH,
        "{name}: resident memory grew by {} MB",
        growth >> 20
    );
}

async fn still_works(client: &mut Client, pipeline: &StartedPipeline, n: usize) {
    client.send_binary(&[n as u8]).await;
    assert_eq!(
        pipeline.audio(n).await.len(),
        n,
        "the bystander still streams"
    );
}

#[actix_rt::test]
async fn memory_stays_bounded_under_abuse() {
    let mut config = test_config();
    config.server.send_timeout_secs = 1.0;
    config.session.max_outgoing_bytes = 64 * 1024;
    config.session.audio_burst_ms = 200;
    config.session.max_audio_lead_ms = 1_000;
    let mut server = TestServer::start(config).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let mut n = 0;

    // 1. A frame declaring 1 GB, and 64 MB of its payload: discarded as it arrives.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    raw.write(&header_declaring(BINARY, 1 << 30)).await;
    let baseline = rss_bytes();
    let writer = raw.take_writer();
    let pushing = actix_rt::spawn(flood(writer, vec![0xaa; 64 * 1024]));
    raw.expect_error(ErrorCode::FrameTooLarge).await;
    let (written, peak) = pushing.await.unwrap_or_default();
    check_growth("huge frame", baseline, peak, written);
    assert_eq!(pipeline.stops(1).await, 1);
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;

    // 2. Pings as fast as the socket takes them, pongs never read: the read-ahead is bounded,
    //    and the connection goes when nothing more can be sent to it.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let baseline = rss_bytes();
    let writer = raw.take_writer();
    let (written, peak) = flood(writer, frame(PING, b"ping")).await;
    check_growth("ping flood", baseline, peak, written);
    assert_eq!(pipeline.stops(1).await, 1, "the flooding session ended");
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;
    drop(raw);

    // 3. Audio as fast as the socket takes it: paced, then rejected.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let baseline = rss_bytes();
    let writer = raw.take_writer();
    let pushing = actix_rt::spawn(flood(writer, frame(BINARY, &[0; 4_000])));
    raw.expect_error(ErrorCode::AudioTooFast).await;
    let (written, peak) = pushing.await.unwrap_or_default();
    check_growth("audio flood", baseline, peak.max(rss_bytes()), written);
    assert_eq!(pipeline.stops(1).await, 1);
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;

    // 4. An endless fragmented message.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    raw.write(&frame_with(BINARY, false, true, &[1; 1_000]))
        .await;
    let baseline = rss_bytes();
    let writer = raw.take_writer();
    let pushing = actix_rt::spawn(flood(
        writer,
        frame_with(CONTINUATION, false, true, &[2; 4_000]),
    ));
    raw.expect_error(ErrorCode::FrameTooLarge).await;
    let (written, peak) = pushing.await.unwrap_or_default();
    check_growth("endless fragments", baseline, peak, written);
    assert_eq!(pipeline.stops(1).await, 1);
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;

    // 5. Results for a client that reads nothing, pushed until the session is gone (the backlog
    //    limit ends it after its first 64 KiB).
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let baseline = rss_bytes();
    let mut peak = baseline;
    let mut pushed = 0;
    while pushed < PUSHED && pipeline.log.all::<StopPipeline>().is_empty() {
        for _ in 0..64 {
            pipeline.links.transcripts.do_send(Transcript {
                is_final: true,
                transcript: "w".repeat(16 * 1_024),
                confidence: 0.9,
                stability: 0.0,
                start_ms: 0,
                end_ms: 100,
                words: vec![],
                language_code: "en-us".into(),
            });
            pushed += 16 * 1_024;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        peak = peak.max(rss_bytes());
    }
    check_growth("unread results", baseline, peak, pushed);
    assert_eq!(pipeline.stops(1).await, 1, "the session ended");
    loop {
        match raw.read(Duration::from_secs(5)).await {
            Read::Frame(f) if f.opcode == TEXT && f.json()["type"] == "transcript" => continue,
            Read::Frame(f) if f.opcode == TEXT => {
                assert_eq!(f.json()["code"], "slow_consumer");
                continue;
            }
            Read::Frame(_) => continue,
            Read::End => break,
            Read::Nothing => panic!("the unread connection was not ended"),
        }
    }
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;

    drop(bystander);
    server.stop().await;
}
