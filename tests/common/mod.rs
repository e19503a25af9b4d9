//! Shared helpers of the end-to-end tests: start real `voxgate` processes on loopback (port 0, the
//! bound address read from their stdout), and a small WebSocket client for the v1 protocol.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A running `voxgate` process, killed when dropped.
pub struct Process {
    child: Child,
    pub addr: String,
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxgate"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start voxgate: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        break addr.to_string();
                    }
                }
                other => {
                    let _ = child.kill();
                    panic!("voxgate {args:?} exited before listening: {other:?}");
                }
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process { child, addr }
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
    ];
    all.extend_from_slice(env);
    Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &all,
    )
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://ADDR/v1/listen?QUERY`.
pub async fn connect(addr: &str, query: &str) -> Ws {
    let url = if query.is_empty() {
        format!("ws://{addr}/v1/listen")
    } else {
        format!("ws://{addr}/v1/listen?{query}")
    };
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    ws
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
        self.of_type("transcript")
            .iter()
            .filter(|m| m["is_final"] == true)
            .filter_map(|m| m["transcript"].as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

pub async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::Binary(data.to_vec().into()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// Reads the next JSON text message (skipping pings), or `None` at close/timeout; a close frame is
/// recorded in `rx`.
pub async fn next_json(ws: &mut Ws, rx: &mut Received, timeout: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(timeout, ws.next()).await.ok()??;
        match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("server sent invalid JSON {t}: {e}"));
                rx.messages.push(v.clone());
                return Some(v);
            }
            Ok(Message::Close(frame)) => {
                rx.close = Some(match frame {
                    Some(f) => (u16::from(f.code), f.reason.to_string()),
                    None => (u16::from(CloseCode::Status), String::new()),
                });
                return None;
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads everything until the server closes (or `timeout` of silence).
pub async fn drain(ws: &mut Ws, rx: &mut Received, timeout: Duration) {
    while next_json(ws, rx, timeout).await.is_some() {}
}
