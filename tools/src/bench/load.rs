//! One benchmark session through the gateway: connect, `start`, wait for `ready`, hand the socket's
//! sending half to the [`Pacer`](super::pacer::Pacer), then read everything the server says —
//! checking each final against the plan as it arrives — until `closed` and the closing handshake.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use super::measure::{FinalChecker, SessionOutcome};
use super::pacer::{Entry, EntryHandle, Sink};
use super::script::Plan;
use super::shared::Shared;
use super::ws::{self, ServerFrame, WsUrl, WsWriter};

/// Connecting and the handshake may take this long (a server busy accepting thousands).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence from the server this long fails the session (acks come every 500 ms while streaming,
/// pings every 10 s otherwise).
const READ_TIMEOUT: Duration = Duration::from_secs(40);
/// After the server's Close, how long it may take to end the TCP connection.
const EOF_TIMEOUT: Duration = Duration::from_secs(5);

/// The fields of server messages the bench looks at (the rest is skipped unparsed).
#[derive(Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    is_final: bool,
    #[serde(default, borrow)]
    transcript: Cow<'a, str>,
    #[serde(default)]
    words: Vec<WordTimes>,
    #[serde(default, borrow)]
    code: Cow<'a, str>,
    #[serde(default)]
    restarts: u64,
}

#[derive(Deserialize)]
struct WordTimes {
    start_ms: u64,
    end_ms: u64,
}

/// Runs one session of `plan` against the gateway at `url`. `key` varies the handshake key.
pub async fn gateway_session(
    shared: &Shared,
    url: &WsUrl,
    key: u64,
    plan: Arc<Plan>,
) -> SessionOutcome {
    let mut outcome = SessionOutcome::default();
    let mut checker = FinalChecker::new(&shared.script, &plan);
    let mut session = GatewaySession {
        shared,
        plan: plan.clone(),
        handle: None,
        closed_seen: false,
    };
    let result = session.run(url, key, &mut checker, &mut outcome).await;
    if !outcome.ready {
        shared.settle();
    }
    let log = match session.handle.take() {
        Some(handle) => {
            if result.is_err() {
                handle.abort.store(true, Ordering::Relaxed);
            }
            handle.done.await.unwrap_or_default()
        }
        None => Default::default(),
    };
    outcome.audio_secs = (log.frames_sent * shared.script.format.frame_ms) as f64 / 1000.0;
    let completed = result.is_ok() && log.completed;
    checker.finish(&log.marks_us, completed, &mut outcome);
    outcome.failure = match result {
        Err(reason) => Some(reason),
        Ok(()) => log.error,
    };
    outcome
}

struct GatewaySession<'a> {
    shared: &'a Shared,
    plan: Arc<Plan>,
    /// Set once the session is registered with the pacer.
    handle: Option<EntryHandle>,
    /// `closed` arrived: the server's Close that follows is the normal end.
    closed_seen: bool,
}

impl GatewaySession<'_> {
    async fn run(
        &mut self,
        url: &WsUrl,
        key: u64,
        checker: &mut FinalChecker<'_>,
        outcome: &mut SessionOutcome,
    ) -> Result<(), String> {
        let (socket, mut buf) = tokio::time::timeout(CONNECT_TIMEOUT, ws::connect(url, key))
            .await
            .map_err(|_| "connect: timed out".to_string())??;
        let (mut read, write) = socket.into_split();
        let writer = Arc::new(WsWriter::new(write));
        writer.send(&self.shared.start_frame)?;
        loop {
            while let Some(frame) = ws::parse_server_frame(&mut buf)? {
                if self.on_frame(frame, &writer, checker, outcome).await? {
                    return wait_eof(&mut read, &mut buf).await;
                }
            }
            let n = tokio::time::timeout(READ_TIMEOUT, read.read_buf(&mut buf))
                .await
                .map_err(|_| {
                    format!(
                        "timeout: nothing from the server for {} s",
                        READ_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| format!("read: {}", ws::io_kind(&e)))?;
            if n == 0 {
                return Err("the connection ended without a Close".to_string());
            }
        }
    }

    /// Handles one frame; `Ok(true)` once the session has ended normally.
    async fn on_frame(
        &mut self,
        frame: ServerFrame,
        writer: &Arc<WsWriter>,
        checker: &mut FinalChecker<'_>,
        outcome: &mut SessionOutcome,
    ) -> Result<bool, String> {
        match frame {
            ServerFrame::Text(text) => {
                let at_us = self.shared.pacer.now_us();
                let message: ServerMessage = serde_json::from_slice(&text)
                    .map_err(|e| format!("the server sent invalid JSON: {e}"))?;
                match message.kind.as_ref() {
                    "transcript" if message.is_final => checker.on_final(
                        &message.transcript,
                        message.words.iter().map(|w| (w.start_ms, w.end_ms)),
                        at_us,
                    ),
                    "transcript" | "ack" => {}
                    "ready" => {
                        if self.handle.is_some() {
                            return Err("a second ready".to_string());
                        }
                        outcome.ready = true;
                        self.shared.settle();
                        let (entry, handle) = Entry::new(
                            Sink::Ws(writer.clone()),
                            self.plan.clone(),
                            self.shared.steady,
                        );
                        self.shared.pacer.register(entry);
                        self.handle = Some(handle);
                    }
                    "warning" => outcome.warnings.push(message.code.into_owned()),
                    "error" => return Err(format!("error {}", message.code)),
                    "closed" => {
                        self.closed_seen = true;
                        outcome.restarts = message.restarts;
                    }
                    other => return Err(format!("unexpected message type {other:?}")),
                }
                Ok(false)
            }
            ServerFrame::Ping(payload) => {
                writer.send(&ws::client_frame_bytes(ws::PONG, &payload))?;
                Ok(false)
            }
            ServerFrame::Pong => Ok(false),
            ServerFrame::Binary(_) => Err("the server sent a binary message".to_string()),
            ServerFrame::Close(code, reason) => {
                // The RFC's closing handshake: echo the code, then the server ends the TCP
                // connection (so the bench's ports do not pile up in TIME_WAIT).
                let _ = writer.send(&ws::close_frame(code));
                let _ = writer.flush().await;
                if self.closed_seen && code == 1000 {
                    Ok(true)
                } else {
                    Err(format!("closed {code} {reason}"))
                }
            }
        }
    }
}

/// After the closing handshake: the server ends the connection.
async fn wait_eof(read: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<(), String> {
    let ended = async {
        loop {
            buf.clear();
            match read.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(EOF_TIMEOUT, ended)
        .await
        .map_err(|_| "the server did not end the connection after Close".to_string())
}
