//! Memory stays bounded under abuse: each flood scenario pushes up to 64 MB at the server, and
//! must have pushed at least 32 MB — more than the 24 MB the process's resident memory may grow
//! by, so a buffer that held what arrives would show. (The unread-results scenario ends at its
//! backlog limit, 64 KiB, and must have pushed at least twice that.) One test running the scenarios one after the other, so that nothing else in this
//! process allocates meanwhile; each scenario also asserts its error code, and a bystander
//! session keeps working throughout.

mod common;

use std::time::{Duration, Instant};

use common::raw::{frame, frame_with, header_declaring, Read, BINARY, CONTINUATION, PING, TEXT};
use common::{raw_session, rss_bytes, still_works, test_config, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use voxgate_actors::messages::{StopPipeline, Transcript};
use voxgate_actors::protocol::ErrorCode;

/// What each flood scenario tries to push.
const PUSHED: usize = 64 << 20;
/// What each flood scenario must have pushed at least: more than `MAX_GROWTH`, so that a
/// buffer holding what arrives would show.
const MIN_PUSHED: usize = 32 << 20;
/// What resident memory may grow by during a scenario.
const MAX_GROWTH: u64 = 24 << 20;

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

/// Resident memory grew by less than `MAX_GROWTH` while at least `min_written` bytes were pushed.
fn check_growth(name: &str, baseline: u64, peak: u64, written: usize, min_written: usize) {
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
    assert!(
        written >= min_written,
        "{name}: only {written} bytes were pushed, fewer than the {min_written} the bound is \
         measured against"
    );
}

#[actix_rt::test]
async fn memory_stays_bounded_under_abuse() {
    let mut config = test_config();
    config.server.send_timeout_secs = 1.0;
    config.session.max_outgoing_bytes = 64 * 1024;
    config.session.audio_burst_ms = 200;
    config.session.max_audio_lead_ms = 1_000;
    // Far beyond any flood this test can send: the ping flood must be held back by the read-ahead
    // bound, not cut short by `too_many_messages` after its first thousand pings.
    config.session.max_messages_per_sec = 1_000_000_000;
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
    check_growth("huge frame", baseline, peak, written, MIN_PUSHED);
    assert_eq!(pipeline.stops(1).await, 1);
    n += 1;
    still_works(&mut bystander, &bystander_pipeline, n).await;

    // 2. Pings as fast as the socket takes them, the pongs read and thrown away, so the
    //    connection stays up for the whole flood: the read-ahead is bounded (before the read
    //    gate, this grew the server by more than the flood). The flood's end closes the
    //    connection.
    let (mut raw, pipeline) = raw_session(&mut server).await;
    let baseline = rss_bytes();
    let writer = raw.take_writer();
    let (written, peak) = raw.discard_while(flood(writer, frame(PING, b"ping"))).await;
    check_growth("ping flood", baseline, peak, written, MIN_PUSHED);
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
    check_growth(
        "audio flood",
        baseline,
        peak.max(rss_bytes()),
        written,
        MIN_PUSHED,
    );
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
    check_growth("endless fragments", baseline, peak, written, MIN_PUSHED);
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
    // What ends this one is the backlog limit, after its first 64 KiB: at least that much more
    // was pushed than the limit holds.
    check_growth("unread results", baseline, peak, pushed, 2 * 64 * 1024);
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
