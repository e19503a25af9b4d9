//! Debian's HAProxy with the shipped deploy/haproxy/haproxy.cfg in front of real `voxgate serve`
//! processes (tests/deploy_haproxy.rs, tests/deploy_handoff.rs): started on a free loopback port,
//! checked with `haproxy -c` first, asked through its runtime API which instances are up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::{gateway, Process};

pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");

/// How long HAProxy may take to see a change of `/readyz` (its checks run every second).
pub const CHECK_WAIT: Duration = Duration::from_secs(15);

/// A running HAProxy, killed when dropped.
pub struct Haproxy {
    child: Child,
    /// Its runtime API socket.
    stats: PathBuf,
    /// Where its frontend listens.
    pub addr: String,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three `voxgate serve` of `emulator` behind HAProxy as shipped (its socket in `dir`), up in
/// it. Each trusts HAProxy's address for `X-Forwarded-For` and takes anonymous clients (clients
/// behind a proxy are not local: voxgate wants that said, or API keys), then `settings`.
pub async fn three_behind_haproxy(
    dir: &Path,
    emulator: &Process,
    settings: &[(&str, &str)],
) -> (Vec<Process>, Haproxy) {
    let mut all = vec![
        ("VOXGATE_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ("VOXGATE_AUTH__ANONYMOUS", "true"),
    ];
    all.extend_from_slice(settings);
    let gateways: Vec<Process> = (0..3).map(|_| gateway(emulator, &all)).collect();
    let addrs: Vec<&str> = gateways.iter().map(|g| g.addr.as_str()).collect();
    let haproxy = start_haproxy(dir, &addrs);
    haproxy
        .wait_for_up(&["voxgate1", "voxgate2", "voxgate3"])
        .await;
    (gateways, haproxy)
}

/// A free loopback port: HAProxy cannot report the port of a port-0 bind, so one is picked here.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The `${…}` variables of the shipped configuration.
fn haproxy_env(listen: &str, stats: &Path, servers: &[&str]) -> Vec<(String, String)> {
    let mut env = vec![
        ("VOXGATE_LISTEN".to_string(), listen.to_string()),
        // Within a test process's open-file limit.
        ("HAPROXY_MAXCONN".to_string(), "2000".to_string()),
        (
            "HAPROXY_STATS_SOCKET".to_string(),
            stats.display().to_string(),
        ),
    ];
    for (i, server) in servers.iter().enumerate() {
        env.push((format!("VOXGATE_SERVER_{}", i + 1), server.to_string()));
    }
    env
}

fn haproxy_command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new("haproxy");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

pub fn start_haproxy(dir: &Path, servers: &[&str]) -> Haproxy {
    let addr = format!("127.0.0.1:{}", free_port());
    let stats = dir.join("haproxy.sock");
    let env = haproxy_env(&addr, &stats, servers);
    let check = haproxy_command(&env)
        .args(["-c", "-f", CONFIG])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run haproxy (scripts/setup-test-env.sh installs it): {e}")
        });
    assert!(
        check.status.success(),
        "haproxy -c rejects {CONFIG}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // -db: stay in the foreground, so that killing the child stops HAProxy.
    let child = haproxy_command(&env)
        .args(["-db", "-f", CONFIG])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its log of every health-check change would flood the test output.
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start haproxy: {e}"));
    Haproxy { child, stats, addr }
}

impl Haproxy {
    /// `(server name, up)` of each instance, from the runtime API.
    pub async fn servers(&self) -> Option<Vec<(String, bool)>> {
        let mut socket = tokio::net::UnixStream::connect(&self.stats).await.ok()?;
        socket
            .write_all(b"show servers state voxgate\n")
            .await
            .ok()?;
        let mut text = String::new();
        socket.read_to_string(&mut text).await.ok()?;
        // A version line, a "# be_id be_name srv_id srv_name srv_addr srv_op_state …" header,
        // then one line per server; op_state 2 is running.
        let servers: Vec<(String, bool)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(3)?.to_string(), *f.get(5)? == "2"))
            })
            .collect();
        (!servers.is_empty()).then_some(servers)
    }

    /// Waits until HAProxy sees exactly the instances of `up` up (by name).
    pub async fn wait_for_up(&self, up: &[&str]) {
        let deadline = Instant::now() + CHECK_WAIT;
        loop {
            let servers = self.servers().await;
            if let Some(servers) = &servers {
                let now_up: Vec<&str> = servers
                    .iter()
                    .filter(|(_, up)| *up)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if now_up == up {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never saw {up:?} up: {servers:?}"
            );
            // HAProxy has no event to wait on; its checks run every second.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `voxgate_sessions_active` of the gateway at `addr`.
pub async fn active_sessions(addr: &str) -> u64 {
    let (_, body) = super::http_get(
        addr.parse().unwrap_or_else(|e| panic!("{e}")),
        "/metrics",
        "",
    )
    .await;
    body.lines()
        .find_map(|l| l.strip_prefix("voxgate_sessions_active "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
