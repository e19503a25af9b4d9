//! One benchmark session through the gateway: connect, `start` (or the dialect's first message),
//! wait for `ready` (or what the dialect has for it), hand the socket's sending half to the
//! [`Pacer`](super::pacer::Pacer), then read everything the server says — checking each final
//! against the plan as it arrives — until `closed` (or the dialect's end) and the closing
//! handshake. What each dialect's messages mean is in [`super::dialect`]. A Twilio call's finals
//! come by webhook instead: after its socket's close the session reads them from the bench's
//! receiver ([`super::telephony`]), one checker per track.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use super::dialect::Event;
use super::measure::{FinalChecker, SessionOutcome};
use super::pacer::{Entry, EntryHandle, Sink};
use super::script::Plan;
use super::shared::Shared;
use super::telephony;
use super::ws::{self, ServerFrame, WsUrl, WsWriter};

/// Connecting and the handshake may take this long (a server busy accepting thousands).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence from the server this long fails the session (acks come every 500 ms while streaming,
/// pings every 10 s otherwise).
const READ_TIMEOUT: Duration = Duration::from_secs(40);
/// After the server's Close, how long it may take to end the TCP connection.
const EOF_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one session of `plan` against the gateway at `url`. `key` varies the handshake key.
pub async fn gateway_session(
    shared: &Shared,
    url: &WsUrl,
    key: u64,
    plan: Arc<Plan>,
) -> SessionOutcome {
    let mut outcome = SessionOutcome::default();
    let mut checker = FinalChecker::new(&shared.script, &plan);
    // A call's second track says the same words.
    let mut outbound = FinalChecker::new(&shared.script, &plan);
    let mut webhook_events = shared.webhooks.as_ref().map(|w| w.register(key));
    let mut session = GatewaySession {
        shared,
        plan: plan.clone(),
        handle: None,
        closed_seen: false,
        client_closed: false,
    };
    let mut result = session.run(url, key, &mut checker, &mut outcome).await;
    if let (Some(router), Some(events), Ok(())) =
        (&shared.webhooks, webhook_events.as_mut(), &result)
    {
        let to_us = |at| shared.pacer.us_at(at);
        let tracks = [&mut checker, &mut outbound];
        result = telephony::collect(router, key, events, to_us, tracks).await;
    }
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
    if webhook_events.is_some() {
        let mut second = SessionOutcome::default();
        outbound.finish(&log.marks_us, completed, &mut second);
        outcome.add_track(second);
    }
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
    /// `closed` (or the dialect's end) arrived: the Close that follows is the normal end.
    closed_seen: bool,
    /// The bench sent its Close (dialects whose server never ends the session).
    client_closed: bool,
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
        if let Some(webhooks) = &self.shared.webhooks {
            writer.send(&telephony::start_frame(key, &webhooks.url()))?;
        } else if let Some(start) = &self.shared.start_frame {
            writer.send(start)?;
        }
        if self.shared.dialect.ready_at_open() {
            self.on_ready(&writer, outcome)?;
        }
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
                match self.shared.dialect.event(&text)? {
                    Event::Final { transcript, words } => {
                        match words {
                            Some(words) => checker.on_final(&transcript, words.into_iter(), at_us),
                            None => checker.on_final_untimed(&transcript, at_us),
                        }
                        self.close_when_done(writer, checker)?;
                    }
                    Event::Ready => self.on_ready(writer, outcome)?,
                    Event::Ending { restarts } => {
                        self.closed_seen = true;
                        outcome.restarts = restarts;
                        self.close_when_done(writer, checker)?;
                    }
                    Event::Warning(code) => outcome.warnings.push(code),
                    Event::Error(code) => return Err(format!("error {code}")),
                    Event::Other => {}
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
                // The RFC's closing handshake: echo the code (unless the bench closed first),
                // then the server ends the TCP connection (so the bench's ports do not pile up in
                // TIME_WAIT).
                if !self.client_closed {
                    let _ = writer.send(&ws::close_frame(code));
                }
                let _ = writer.flush().await;
                let normal_end = self.closed_seen || self.shared.dialect.closes_without_ending();
                if normal_end && code == 1000 {
                    Ok(true)
                } else {
                    Err(format!("closed {code} {reason}"))
                }
            }
        }
    }
}

impl GatewaySession<'_> {
    /// The session is configured: it joins the pacer (waiting for go in a steady run).
    fn on_ready(
        &mut self,
        writer: &Arc<WsWriter>,
        outcome: &mut SessionOutcome,
    ) -> Result<(), String> {
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
        Ok(())
    }

    /// For a dialect whose server never ends the session (OpenAI): once the end marker was
    /// echoed and every final has come, the bench closes.
    fn close_when_done(
        &mut self,
        writer: &WsWriter,
        checker: &FinalChecker<'_>,
    ) -> Result<(), String> {
        if self.shared.dialect.client_closes()
            && self.closed_seen
            && !self.client_closed
            && checker.all_received()
        {
            self.client_closed = true;
            writer.send(&ws::close_frame(1000))?;
        }
        Ok(())
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
