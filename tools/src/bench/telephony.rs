//! The telephony side of `voxgate bench --dialect twilio`: each session is a Twilio Media Streams
//! call (μ-law 8 kHz, the script's audio on both tracks, paced at real time like any dialect's
//! audio) whose finals come back by webhook, not over its socket. The bench starts a webhook
//! receiver on 127.0.0.1:0 (`TestReceiver`, the one the tests use) and names it in every call's
//! `customParameters` (`webhook_url`, and `bench_session` = the session's number); the
//! [`WebhookRouter`] reads what arrives and hands each session its events with the instant they
//! reached the receiver — the instant a final's latency is measured to, as a native final's is
//! measured to its arrival on the socket.
//!
//! The gateway must accept unsigned streams (`[dialects.twilio] allow_unsigned = true`) and
//! post to the receiver (`[webhooks] secret`, `allow = ["http://127.0.0.1:PORT/"]` with the port
//! of `--webhook-listen`); see `docs/benchmarks.md`. `--webhook-listen stdin` takes a socket
//! already listening as standard input (inetd's way): whoever started the bench bound it and
//! named its port to the gateway, so no other process can take the port in between.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxgate_actors::webhooks::test_receiver::TestReceiver;

use super::measure::FinalChecker;
use super::ws;

/// `--webhook-listen`'s value for a listening socket given as standard input.
pub const LISTENER_ON_STDIN: &str = "stdin";

/// How long a session waits for its next webhook event once its socket has closed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(40);

/// One webhook event, with its arrival at the receiver.
#[derive(Debug)]
pub struct Arrived {
    pub at: Instant,
    pub event: Value,
}

/// Hands each bench session the webhook events of its call.
pub struct WebhookRouter {
    receiver: TestReceiver,
    /// By bench session number: where its events go.
    sessions: Mutex<HashMap<u64, mpsc::UnboundedSender<Arrived>>>,
}

impl WebhookRouter {
    /// A receiver on `listen` ([`LISTENER_ON_STDIN`]: the socket on standard input) and the
    /// task that routes what it gets (until the runtime ends).
    pub fn start(listen: &str) -> Result<Arc<WebhookRouter>, String> {
        let receiver = if listen == LISTENER_ON_STDIN {
            stdin_listener().and_then(TestReceiver::start_with)
        } else {
            TestReceiver::start_on(listen)
        }
        .map_err(|e| format!("webhook receiver on {listen}: {e}"))?;
        eprintln!("bench: webhook receiver on {}", receiver.url("/"));
        let router = Arc::new(WebhookRouter {
            receiver,
            sessions: Mutex::new(HashMap::new()),
        });
        tokio::spawn(router.clone().route());
        Ok(router)
    }

    /// Where the calls' events are to be posted.
    pub fn url(&self) -> String {
        self.receiver.url("/bench")
    }

    /// The events of session `key`'s call, from now on.
    pub fn register(&self, key: u64) -> mpsc::UnboundedReceiver<Arrived> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, tx);
        rx
    }

    fn forget(&self, key: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Reads every delivery once, in arrival order: `session.started` names the bench session
    /// of a gateway session id; its later events go to that bench session.
    async fn route(self: Arc<Self>) {
        let (mut seen, mut read) = (0, 0);
        let mut keys: HashMap<String, u64> = HashMap::new();
        loop {
            seen = self
                .receiver
                .changed_after(seen, Duration::from_secs(1))
                .await;
            for delivery in self.receiver.deliveries_from(read) {
                read += 1;
                let event = delivery.json();
                let Some(session_id) = event["session_id"].as_str().map(String::from) else {
                    continue;
                };
                if event["type"] == "session.started" {
                    let key = event["call"]["custom_parameters"]["bench_session"]
                        .as_str()
                        .and_then(|k| k.parse().ok());
                    if let Some(key) = key {
                        keys.insert(session_id.clone(), key);
                    }
                }
                let Some(&key) = keys.get(&session_id) else {
                    continue;
                };
                let ended = event["type"] == "session.ended";
                if let Some(tx) = self
                    .sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                {
                    let _ = tx.send(Arrived {
                        at: delivery.received_at,
                        event,
                    });
                }
                if ended {
                    keys.remove(&session_id);
                }
            }
        }
    }
}

/// The listening socket on standard input; an error when standard input is anything else.
fn stdin_listener() -> std::io::Result<TcpListener> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; SO_ACCEPTCONN writes one int into `accepting`.
    let asked = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if asked != 0 || accepting == 0 {
        return Err(std::io::Error::other(
            "standard input is not a listening TCP socket",
        ));
    }
    Ok(TcpListener::from(fd.try_clone_to_owned()?))
}

/// Twilio's `start` for bench session `key`: both tracks, μ-law 8 kHz, posting to `webhook_url`.
pub fn start_frame(key: u64, webhook_url: &str) -> Bytes {
    let start = json!({"event": "start", "sequenceNumber": "1", "streamSid": format!("MZ{key}"),
        "start": {"streamSid": format!("MZ{key}"), "callSid": format!("CA{key}"),
            "accountSid": "AC-bench", "tracks": ["inbound", "outbound"],
            "customParameters": {"webhook_url": webhook_url, "bench_session": key.to_string()},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    ws::client_frame_bytes(ws::TEXT, start.to_string().as_bytes())
}

/// One frame of audio as Twilio sends it: a `media` message per track, the same audio on both.
pub fn media_frames(audio: &[u8]) -> Bytes {
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, audio);
    let mut frames = Vec::new();
    for track in ["inbound", "outbound"] {
        let media = json!({"event": "media", "streamSid": "MZ-bench",
            "media": {"track": track, "payload": payload}});
        frames.extend_from_slice(&ws::client_frame_bytes(
            ws::TEXT,
            media.to_string().as_bytes(),
        ));
    }
    Bytes::from(frames)
}

/// The finals of one call, per track, until its `session.ended`: each checked against the plan
/// and timed at its arrival at the receiver (`to_us`: an instant as µs of the run's clock).
pub async fn collect(
    router: &WebhookRouter,
    key: u64,
    events: &mut mpsc::UnboundedReceiver<Arrived>,
    to_us: impl Fn(Instant) -> u64,
    tracks: [&mut FinalChecker<'_>; 2],
) -> Result<(), String> {
    let [inbound, outbound] = tracks;
    let result = loop {
        let Ok(Some(Arrived { at, event })) =
            tokio::time::timeout(EVENT_TIMEOUT, events.recv()).await
        else {
            break Err("webhook: no session.ended".to_string());
        };
        match event["type"].as_str() {
            Some("transcript.final") => {
                let checker = match event["track"].as_str() {
                    Some("inbound") => &mut *inbound,
                    Some("outbound") => &mut *outbound,
                    _ => break Err("webhook: a final of no known track".to_string()),
                };
                let transcript = event["transcript"].as_str().unwrap_or_default();
                let words: Vec<(u64, u64)> = event["words"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        let ms = |v: &Value| v.as_u64().unwrap_or(0);
                        (ms(&w["start_ms"]), ms(&w["end_ms"]))
                    })
                    .collect();
                checker.on_final(transcript, words.into_iter(), to_us(at));
            }
            Some("session.ended") => {
                break match event["reason"].as_str() {
                    Some("closed") => Ok(()),
                    other => Err(format!("webhook: session ended {other:?}")),
                };
            }
            _ => {}
        }
    };
    router.forget(key);
    result
}
