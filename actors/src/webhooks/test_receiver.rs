//! A real HTTP webhook receiver on 127.0.0.1:0 for tests (this crate's and the end-to-end ones)
//! and for the telephony bench: it records every request with the instant it arrived, answers
//! 200 — or, on command, fails with a status or stalls (reads the request and never answers) —
//! and lets an async caller wait for the deliveries it expects. Plain threads and blocking
//! sockets: it runs beside any runtime and holds none of its workers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How the receiver answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, and the request counts as delivered.
    Accept,
    /// This status (a 5xx), not delivered.
    Fail(u16),
    /// No answer at all: the connection stays open until the sender gives up.
    Stall,
}

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the whole request had been read.
    pub received_at: Instant,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as JSON, after checking what a receiver should: the signature (with `secret`),
    /// the content type, and the event headers against the body. Panics (a test's failure)
    /// otherwise.
    pub fn verified(&self, secret: &str) -> serde_json::Value {
        let header = self.header(super::signature::HEADER).unwrap_or_default();
        let body = self.json();
        assert!(
            super::signature::verify(secret.as_bytes(), header, &self.body).is_some(),
            "bad signature {header:?} on {body}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("voxgate-event-id"), body["id"].as_str());
        assert_eq!(self.header("voxgate-event"), body["type"].as_str());
        body
    }
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    attempts: usize,
    deliveries: Vec<Delivery>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every request, for async waiters.
    changed: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The receiver; its threads live as long as the test process.
pub struct TestReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestReceiver {
    /// A receiver on 127.0.0.1, on a port of the system's choosing.
    pub fn start() -> std::io::Result<TestReceiver> {
        TestReceiver::start_on("127.0.0.1:0")
    }

    /// A receiver on `addr` (a gateway's `[webhooks] allow` names it when the port is fixed).
    pub fn start_on(addr: &str) -> std::io::Result<TestReceiver> {
        TestReceiver::start_with(TcpListener::bind(addr)?)
    }

    /// A receiver on a socket already listening (bound by whoever named its port to a gateway).
    pub fn start_with(listener: TcpListener) -> std::io::Result<TestReceiver> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accepting.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Ok(TestReceiver { addr, shared })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = Some(mode);
    }

    /// Requests received, answered or not.
    pub fn attempts(&self) -> usize {
        self.shared.lock().attempts
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The deliveries from the `from`-th on (those that arrived since a caller last looked).
    pub fn deliveries_from(&self, from: usize) -> Vec<Delivery> {
        self.shared
            .lock()
            .deliveries
            .get(from..)
            .map(<[Delivery]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until a request arrives after the `seen`-th change (or `within` passes); returns
    /// the number of changes so far.
    pub async fn changed_after(&self, seen: usize, within: Duration) -> usize {
        let mut rx = self.shared.changed.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|n| *n > seen)).await;
        let changes = *rx.borrow();
        changes
    }

    /// Waits until `done` holds of the deliveries (or `within` passes); returns them.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let mut rx = self.shared.changed.subscribe();
        let _ = tokio::time::timeout(within, async {
            loop {
                if done(&self.shared.lock().deliveries) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.deliveries()
    }

    /// Waits until at least `n` requests arrived (or `within` passes); returns the count.
    pub async fn wait_attempts(&self, n: usize, within: Duration) -> usize {
        let mut rx = self.shared.changed.subscribe();
        let _ = tokio::time::timeout(within, async {
            while self.attempts() < n {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.attempts()
    }
}

/// One connection: requests until the sender closes it.
fn serve(mut stream: TcpStream, shared: &Shared) {
    while let Some(delivery) = read_request(&mut stream) {
        let mode = {
            let mut state = shared.lock();
            state.attempts += 1;
            let mode = state.mode.unwrap_or(Mode::Accept);
            if mode == Mode::Accept {
                state.deliveries.push(delivery);
            }
            mode
        };
        shared.changed.send_modify(|n| *n += 1);
        let status = match mode {
            Mode::Accept => 200,
            Mode::Fail(status) => status,
            Mode::Stall => {
                // Hold the connection until the sender gives up on it.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
        };
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 request with a `content-length` body; `None` at the end of the connection.
fn read_request(stream: &mut TcpStream) -> Option<Delivery> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer.split_off(head_end + 4);
    while body.len() < length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Delivery {
        path,
        headers,
        body,
        received_at: Instant::now(),
    })
}
