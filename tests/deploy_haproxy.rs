//! deploy/haproxy/haproxy.cfg, exactly as shipped, in front of three real `voxgate serve`
//! processes on loopback (Debian's `haproxy`, installed by scripts/setup-test-env.sh): HAProxy
//! accepts it; sessions through it are spread by least connections and come back exact; each
//! instance sees the client's own address (X-Forwarded-For, `trusted_proxies`); an instance that
//! starts draining fails `/readyz` and gets no new session while its open one goes on (without a
//! shared token secret: held to the grace period; the hand-off is tests/deploy_handoff.rs).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::haproxy::*;
use common::process::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth;

/// A session opened from the loopback address `source` (127.0.0.x) through HAProxy.
async fn session_from(
    haproxy: &str,
    source: [u8; 4],
) -> (SessionSink, tokio::task::JoinHandle<Received>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap_or_else(|e| panic!("bind {source:?}: {e}"));
    let target = haproxy
        .parse()
        .unwrap_or_else(|e| panic!("address {haproxy}: {e}"));
    let stream = socket
        .connect(target)
        .await
        .unwrap_or_else(|e| panic!("connect {haproxy}: {e}"));
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{haproxy}/v1/listen"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap_or_else(|e| panic!("upgrade through {haproxy}: {e}"));
    let (mut sink, stream) = ws.split();
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
        "language_code":"en-US"});
    sink.send(Message::text(start.to_string()))
        .await
        .unwrap_or_else(|e| panic!("send start: {e}"));
    let reader = collect(stream, Vec::new(), Duration::from_secs(20));
    (sink, reader)
}

/// Streams `text` (emulator-encoded) on `sink` at real time, sends `stop`, and returns what came
/// back.
async fn talk(
    mut sink: SessionSink,
    reader: tokio::task::JoinHandle<Received>,
    text: &str,
) -> Received {
    let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for chunk in audio.chunks(3_200) {
        ticker.tick().await;
        sink.send(Message::binary(chunk.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("send audio: {e}"));
    }
    sink.send(Message::text(json!({"type":"stop"}).to_string()))
        .await
        .unwrap_or_else(|e| panic!("send stop: {e}"));
    reader.await.unwrap_or_else(|e| panic!("reader: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_spreads_sessions_passes_client_addresses_and_skips_a_draining_instance() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let emulator = emulator(&[]);
    // One session per client address: HAProxy's own address would exceed it at once, so every
    // session below succeeding shows each instance saw the client's address.
    let settings = [
        ("VOXGATE_SESSION__MAX_SESSIONS_PER_IP", "1"),
        ("VOXGATE_SERVER__SHUTDOWN_GRACE_SECS", "60"),
    ];
    let (gateways, haproxy) = three_behind_haproxy(&dir, &emulator, &settings).await;
    let addrs: Vec<&str> = gateways.iter().map(|g| g.addr.as_str()).collect();

    // Six clients, six addresses: least connections gives each instance two.
    let mut sessions = Vec::new();
    for i in 0..6u8 {
        sessions.push(session_from(&haproxy.addr, [127, 0, 0, 10 + i]).await);
    }
    let mut per_instance = Vec::new();
    for addr in &addrs {
        per_instance.push(active_sessions(addr).await);
    }
    assert_eq!(per_instance, vec![2, 2, 2], "sessions per instance");

    // The first instance starts draining (its sessions are held through the grace period).
    let status = Command::new("kill")
        .args(["-TERM", &gateways[0].pid().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
    haproxy.wait_for_up(&["voxgate2", "voxgate3"]).await;
    let mut late = Vec::new();
    for i in 0..2u8 {
        late.push(session_from(&haproxy.addr, [127, 0, 0, 30 + i]).await);
    }
    let per_instance = [
        active_sessions(addrs[1]).await,
        active_sessions(addrs[2]).await,
    ];
    assert_eq!(
        per_instance,
        [3, 3],
        "new sessions avoid the draining instance"
    );

    // Every session, on the draining instance too, comes back exact.
    let talks: Vec<_> = sessions
        .into_iter()
        .chain(late)
        .enumerate()
        .map(|(i, (sink, reader))| {
            let text = format!("session number {i} through the balancer");
            tokio::spawn(async move { (talk(sink, reader, &text).await, text) })
        })
        .collect();
    for talk in talks {
        let (rx, text) = talk.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rx.final_text(),
            synth::expected_words(&text).join(" "),
            "{rx:?}"
        );
        assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{rx:?}");
    }
}
