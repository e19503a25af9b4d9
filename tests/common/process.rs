//! Real `voxgate` processes on loopback for end-to-end tests (port 0, the bound address read from
//! their stdout), and a collector of everything a streaming client receives.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxgate_emulator::synth::Encoded;

/// A running `voxgate` process, killed when dropped.
pub struct Process {
    child: Child,
    pub addr: String,
    /// The lines printed before `listening on` (e.g. the emulator's `token endpoint URL`).
    pub preamble: Vec<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `voxgate ARGS…` with `env`, waits for its `listening on ADDR` line on stdout.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::start_with_stderr(args, env, Stdio::inherit())
    }

    /// [`Process::start`] with its log (stderr) sent to `stderr` (e.g. a file a test reads).
    pub fn start_with_stderr(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxgate"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // Quiet unless a test run asks for more with RUST_LOG.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start voxgate: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let mut preamble = Vec::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        break addr.to_string();
                    }
                    preamble.push(line);
                }
                other => {
                    let _ = child.kill();
                    panic!("voxgate {args:?} exited before listening: {other:?}");
                }
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            addr,
            preamble,
        }
    }

    /// The process id (for `voxgate bench --server-pid`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        std::mem::forget(self);
        status
    }
}

/// Starts an emulator process with extra flags.
pub fn emulator(flags: &[&str]) -> Process {
    let mut args = vec!["emulator", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    Process::start(&args, &[])
}

/// Starts `voxgate serve` on port 0 pointed at `emulator`, with extra `VOXGATE_…` settings.
pub fn gateway(emulator: &Process, env: &[(&str, &str)]) -> Process {
    let endpoint = format!("http://{}", emulator.addr);
    let mut all = vec![
        ("VOXGATE_RECOGNIZER__BACKEND", "google"),
        ("VOXGATE_GOOGLE__AUTH", "none"),
        ("VOXGATE_GOOGLE__ENDPOINT", endpoint.as_str()),
        // Every test client comes from 127.0.0.1, loads of them at once in the bench tests.
        ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9"),
        ("VOXGATE_SERVER__CONNECTION_BURST_PER_IP", "1000000"),
        ("VOXGATE_SESSION__MAX_SESSIONS_PER_IP", "1000000"),
    ];
    all.extend_from_slice(env);
    Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &all,
    )
}

/// The value of metric `name` at the gateway on `addr` (`GET /metrics`), summed over its labels;
/// 0 when absent.
pub async fn metric(addr: &str, name: &str) -> f64 {
    let addr: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    let (status, text) = super::http_get(addr, "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with([' ', '{']))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the `voxgate` command to its end (`voxgate bench …`), expects success, returns stdout.
pub fn voxgate_stdout(args: &[&str]) -> String {
    voxgate_stdout_with_stdin(args, Stdio::null())
}

/// [`voxgate_stdout`] with `stdin` as the command's standard input (a listening socket the
/// command takes over, …).
pub fn voxgate_stdout_with_stdin(args: &[&str], stdin: Stdio) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(stdin)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run voxgate {args:?}: {e}"));
    assert!(
        output.status.success(),
        "voxgate {args:?} failed: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a client saw on its socket.
#[derive(Debug, Default)]
pub struct Received {
    pub messages: Vec<Value>,
    pub close: Option<(u16, String)>,
}

impl Received {
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == t).collect()
    }

    /// The final transcripts, joined by spaces.
    pub fn final_text(&self) -> String {
        final_text(&self.messages)
    }
}

/// The native final transcripts among `messages`, joined by spaces.
pub fn final_text(messages: &[Value]) -> String {
    messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .filter_map(|m| m["transcript"].as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that `words` (the `words` of the finals, in order) lie where `expected`'s words lie in
/// its 16 kHz audio: one for one, start and end within 3 ms, on the session clock.
pub fn assert_words_at_their_offsets(words: &[Value], expected: &Encoded, label: &str) {
    assert_eq!(words.len(), expected.words.len(), "{label}: word timings");
    for (got, want) in words.iter().zip(&expected.words) {
        let start = got["start_ms"].as_u64().unwrap_or(u64::MAX);
        let end = got["end_ms"].as_u64().unwrap_or(u64::MAX);
        let (want_start, want_end) = (want.start_sample / 16, want.end_sample / 16);
        assert!(
            start.abs_diff(want_start) <= 3 && end.abs_diff(want_end) <= 3,
            "{label}: {got} is not at the audio's {want_start}–{want_end} ms"
        );
    }
}

/// Opens `ws://ADDR/v1/listen?QUERY` on a running gateway process.
pub async fn connect(addr: &str, query: &str) -> super::Client {
    let url = if query.is_empty() {
        format!("ws://{addr}/v1/listen")
    } else {
        format!("ws://{addr}/v1/listen?{query}")
    };
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    super::Client { ws }
}

/// The sending half of a live session's socket.
pub type SessionSink = SplitSink<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, Message>;

/// Connects to the gateway process at `addr`, starts a 16 kHz LINEAR16 session with interim
/// results and waits for `ready`. A task collects everything the server sends from then on, until
/// its Close, a socket error, or `read_timeout` of silence. Returns the sending half and that task.
pub async fn start_live_session(
    addr: &str,
    read_timeout: Duration,
) -> (SessionSink, tokio::task::JoinHandle<Received>) {
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
        "language_code":"en-US","interim_results":true});
    start_session_with(addr, &start, read_timeout).await
}

/// [`start_live_session`] with another `start` message.
pub async fn start_session_with(
    addr: &str,
    start: &Value,
    read_timeout: Duration,
) -> (SessionSink, tokio::task::JoinHandle<Received>) {
    let mut client = connect(addr, "").await;
    client.send_json(start).await;
    let ready = client.expect_type("ready").await;
    let (sink, stream) = client.ws.split();
    (sink, collect(stream, vec![ready], read_timeout))
}

/// The receiving half of a live session's socket.
pub type SessionStream = SplitStream<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>>;

/// A task that collects everything `stream` delivers after `first`, until its Close, a socket
/// error, or `read_timeout` of silence.
pub fn collect(
    mut stream: SessionStream,
    first: Vec<Value>,
    read_timeout: Duration,
) -> tokio::task::JoinHandle<Received> {
    tokio::spawn(async move {
        let mut rx = Received {
            messages: first,
            close: None,
        };
        while let Ok(Some(msg)) = tokio::time::timeout(read_timeout, stream.next()).await {
            match msg {
                Ok(Message::Text(t)) => {
                    rx.messages
                        .push(serde_json::from_str(&t).unwrap_or(Value::Null));
                }
                Ok(Message::Close(f)) => {
                    rx.close = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        rx
    })
}
