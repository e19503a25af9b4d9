//! HAProxy in front of the bench's gateways (`voxgate bench rolling`): Debian's `haproxy` with the
//! shipped `deploy/haproxy/haproxy.cfg`, checked with `haproxy -c` and run in the foreground, and
//! its runtime API asked which instances it sends sessions to. With three instances the file is
//! used exactly as shipped (its `${VOXGATE_SERVER_n}` variables name them); with another number
//! only its `server` lines are replaced, one per instance, like the file's comment says to.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server lines of the shipped file.
const SHIPPED_SERVERS: usize = 3;

/// A running HAProxy, stopped when dropped.
pub(super) struct Balancer {
    child: Child,
    /// Its runtime API socket.
    stats: PathBuf,
    /// Where its frontend listens.
    pub(super) addr: String,
    /// The `server` names, in the order of the instances.
    pub(super) names: Vec<String>,
}

impl Balancer {
    /// Starts HAProxy with `config` (the shipped file) in front of `servers`, for `sessions`
    /// sessions, listening on a free loopback port; its files (and log) go in `dir`.
    pub(super) fn start(
        config: &Path,
        servers: &[String],
        sessions: u64,
        dir: &Path,
    ) -> Result<Balancer, String> {
        let shipped = std::fs::read_to_string(config)
            .map_err(|e| format!("--haproxy-config {}: {e}", config.display()))?;
        let config = if servers.len() == SHIPPED_SERVERS {
            config.to_path_buf()
        } else {
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, with_servers(&shipped, servers))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            path
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for HAProxy: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        // Absolute: HAProxy reads a bare relative path as host:port.
        let stats = std::path::absolute(dir.join("haproxy.sock"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut env = vec![
            ("VOXGATE_LISTEN".to_string(), addr.clone()),
            // The sessions and their resumes, with room to spare; HAProxy needs two descriptors
            // per connection within its open-file limit.
            (
                "HAPROXY_MAXCONN".to_string(),
                (sessions * 2 + 100).to_string(),
            ),
            (
                "HAPROXY_STATS_SOCKET".to_string(),
                stats.display().to_string(),
            ),
        ];
        for (i, server) in servers.iter().enumerate() {
            env.push((format!("VOXGATE_SERVER_{}", i + 1), server.clone()));
        }
        let command = |args: &[&str]| {
            let mut command = Command::new("haproxy");
            command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
            command
        };
        let config_arg = config.display().to_string();
        let check = command(&["-c", "-f", &config_arg])
            .output()
            .map_err(|e| format!("cannot run haproxy (Debian's `haproxy` package): {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy -c rejects {config_arg}: {}",
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        let log = dir.join("haproxy.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        // -db: in the foreground, so that stopping the child stops HAProxy.
        let child = command(&["-db", "-f", &config_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot start haproxy: {e}"))?;
        Ok(Balancer {
            child,
            stats,
            addr,
            names: (1..=servers.len()).map(|i| format!("voxgate{i}")).collect(),
        })
    }

    /// The names of the instances HAProxy sends new sessions to now.
    pub(super) fn up(&self) -> Result<Vec<String>, String> {
        let mut socket = std::os::unix::net::UnixStream::connect(&self.stats)
            .map_err(|e| format!("HAProxy runtime API {}: {e}", self.stats.display()))?;
        socket
            .write_all(b"show servers state voxgate\n")
            .map_err(|e| format!("HAProxy runtime API: {e}"))?;
        let mut text = String::new();
        socket
            .read_to_string(&mut text)
            .map_err(|e| format!("HAProxy runtime API: {e}"))?;
        Ok(parse_up(&text))
    }

    /// Waits until HAProxy sends sessions to every instance (at most `wait`).
    pub(super) fn wait_all_up(&self, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        loop {
            // Not up yet, or the socket not there yet: HAProxy has no event to wait on; its
            // checks run every second.
            if self.up().is_ok_and(|up| up == self.names) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "HAProxy did not see every instance up within {} s: {:?}",
                    wait.as_secs(),
                    self.up()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped configuration with one `server` line per instance instead of its own.
fn with_servers(shipped: &str, servers: &[String]) -> String {
    let mut out = String::new();
    let mut placed = false;
    for line in shipped.lines() {
        if line.trim_start().starts_with("server voxgate") {
            if !placed {
                for (i, server) in servers.iter().enumerate() {
                    out.push_str(&format!("    server voxgate{} {server} check\n", i + 1));
                }
                placed = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The running servers of a `show servers state` answer: after a version line and a `#` header,
/// one line per server whose 4th field is its name and 6th its state (2: running).
fn parse_up(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(5) == Some(&"2")).then(|| fields.get(3).map(|n| n.to_string()))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_lines_are_replaced_in_place() {
        let shipped = "backend voxgate\n    balance leastconn\n    server voxgate1 a check\n    \
                       server voxgate2 b check\n    server voxgate3 c check\n# end\n";
        let servers = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        assert_eq!(
            with_servers(shipped, &servers),
            "backend voxgate\n    balance leastconn\n    server voxgate1 127.0.0.1:1 check\n    \
             server voxgate2 127.0.0.1:2 check\n# end\n"
        );
    }

    #[test]
    fn running_servers_are_read_from_the_state() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state\n\
                    3 voxgate 1 voxgate1 127.0.0.1 2 0\n3 voxgate 2 voxgate2 127.0.0.1 0 0\n\
                    3 voxgate 3 voxgate3 127.0.0.1 2 0\n";
        assert_eq!(parse_up(text), ["voxgate1", "voxgate3"]);
    }
}
