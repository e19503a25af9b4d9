//! Drain by hand-off and a killed instance, end to end with real processes: three `voxgate serve`
//! (emulator upstream, one shared `[auth] token_secret`) behind HAProxy with the shipped
//! deploy/haproxy/haproxy.cfg, and six `voxgate stream` clients streaming emulator-encoded speech
//! through it at real time.
//!
//! - SIGTERM to one instance: each of its sessions is told `reconnect` and resumes through HAProxy
//!   on another instance; every client's finals are exactly its text (0 words lost or repeated);
//!   no client is refused (a resume reaching the draining instance would be: `shutting_down`); and
//!   the instance exits while the moved sessions are still streaming — long before its 60 s grace
//!   period, shown by waiting on the process, not by timing it.
//! - SIGKILL to one instance: its clients' connections drop, they reconnect through HAProxy and
//!   resume on the others, again with every word exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::haproxy::*;
use common::process::*;
use serde_json::Value;
use voxgate_emulator::synth;

/// Clients, two per instance.
const CLIENTS: usize = 6;
const SECRET: &str = "deploy-handoff-shared-secret-0123456789";

/// A `voxgate stream` client, killed if the test fails before it ends.
struct StreamClient {
    child: Option<Child>,
    text: String,
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a client printed (`--json`: every server message, one line each) once it ended.
struct Streamed {
    success: bool,
    messages: Vec<Value>,
    stderr: String,
}

impl Streamed {
    fn of_type(&self, kind: &str) -> usize {
        self.messages.iter().filter(|m| m["type"] == kind).count()
    }

    fn finals(&self) -> String {
        final_text(&self.messages)
    }
}

impl StreamClient {
    /// Streams `text`, emulator-encoded, at real time through `url`.
    fn start(dir: &Path, url: &str, i: usize) -> StreamClient {
        let text = format!(
            "client {i} opens the session. it speaks a second sentence now. a third one follows \
             here. the fourth sentence is longer than the others were. then a fifth one comes. \
             and the sixth ends the session of client {i}"
        );
        let audio = synth::encode(&text, 16_000, synth::SynthEncoding::Linear16);
        let file: PathBuf = dir.join(format!("client{i}.raw"));
        std::fs::write(&file, audio).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args(["stream", "--url", url, "--json", "--finals-only"])
            .args(["--encoding", "LINEAR16", "--rate", "16000"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start voxgate stream: {e}"));
        StreamClient {
            child: Some(child),
            text,
        }
    }

    /// Whether the client is still streaming.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the client to end.
    fn finish(&mut self) -> Streamed {
        let child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("finished twice"));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("voxgate stream: {e}"));
        Streamed {
            success: output.status.success(),
            messages: String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Three instances sharing a token secret behind HAProxy, and six clients streaming through it,
/// spread over all three; returns them with the number of sessions on the first instance.
async fn cluster_with_clients(
    name: &str,
) -> (Process, Vec<Process>, Haproxy, Vec<StreamClient>, u64) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("handoff-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let emulator = emulator(&[]);
    let settings = [
        ("VOXGATE_AUTH__TOKEN_SECRET", SECRET),
        // Long: an instance that exits while its sessions still stream did not wait for it.
        ("VOXGATE_SERVER__SHUTDOWN_GRACE_SECS", "60"),
    ];
    let (gateways, haproxy) = three_behind_haproxy(&dir, &emulator, &settings).await;
    let addrs: Vec<&str> = gateways.iter().map(|g| g.addr.as_str()).collect();
    let url = format!("ws://{}/v1/listen", haproxy.addr);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(StreamClient::start(&dir, &url, i));
        // One at a time, so that least connections spreads them: each waits for its session.
        wait_for_sessions(&addrs, i as u64 + 1).await;
    }
    let on_first = active_sessions(addrs[0]).await;
    assert!(on_first >= 1, "no session on the first instance");
    (emulator, gateways, haproxy, clients, on_first)
}

/// Waits until the instances hold `n` sessions together.
async fn wait_for_sessions(addrs: &[&str], n: u64) {
    let deadline = std::time::Instant::now() + CHECK_WAIT;
    loop {
        let mut total = 0;
        for addr in addrs {
            total += active_sessions(addr).await;
        }
        if total >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{total} sessions open, {n} expected"
        );
        // The gauge has no event to wait on.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every client ends successfully with exactly its words; returns what they printed.
fn finish_exactly(clients: &mut [StreamClient]) -> Vec<Streamed> {
    clients
        .iter_mut()
        .map(|client| {
            let streamed = client.finish();
            assert!(
                streamed.success,
                "voxgate stream failed: {}",
                streamed.stderr
            );
            assert_eq!(
                streamed.finals(),
                synth::expected_words(&client.text).join(" "),
                "{}",
                streamed.stderr
            );
            assert_eq!(streamed.of_type("closed"), 1, "{}", streamed.stderr);
            streamed
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_sessions_off_and_the_instance_exits_before_its_grace_period() {
    let (_emulator, mut gateways, _haproxy, mut clients, on_first) =
        cluster_with_clients("term").await;
    let draining = gateways.remove(0);
    let status = tokio::task::spawn_blocking(move || draining.terminate())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    // It exited while every session still streams: it did not hold them to the 60 s grace
    // period, their audio is far shorter.
    let running = clients
        .iter_mut()
        .map(|c| c.running())
        .filter(|r| *r)
        .count();
    assert_eq!(
        running, CLIENTS,
        "a client ended before the instance exited"
    );
    let streamed = finish_exactly(&mut clients);
    let moved: usize = streamed.iter().map(|s| s.of_type("reconnect")).sum();
    assert_eq!(
        moved as u64, on_first,
        "each session of the instance moved once"
    );
    // New connections (the resumes) never reached the draining instance: none was refused.
    for s in &streamed {
        assert_eq!(s.of_type("error"), 0, "{:?}", s.messages);
        assert_eq!(s.of_type("ready"), 1 + s.of_type("reconnect"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_clients_reconnect_through_haproxy_and_resume() {
    let (_emulator, mut gateways, _haproxy, mut clients, on_first) =
        cluster_with_clients("kill").await;
    let killed = gateways.remove(0);
    let status = Command::new("kill")
        .args(["-KILL", &killed.pid().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
    let streamed = finish_exactly(&mut clients);
    // The killed instance's clients resumed (a second `ready`), the others never had to.
    let resumed = streamed.iter().filter(|s| s.of_type("ready") > 1).count();
    assert_eq!(resumed as u64, on_first, "sessions resumed");
    assert!(streamed.iter().all(|s| s.of_type("reconnect") == 0));
}
