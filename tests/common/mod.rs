//! Test scaffolding shared by the server tests: a real server on `127.0.0.1:0` whose sessions get
//! probe pipelines, and a WebSocket client that reads the server's messages as JSON. Real
//! `voxgate` processes (gateway, emulator) are in [`process`].

#![allow(dead_code)]

pub mod asterisk;
pub mod certs;
pub mod dialect;
pub mod haproxy;
pub mod librivox;
pub mod process;
pub mod raw;
#[cfg(feature = "local")]
pub mod segments;
pub mod telephony;

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use voxgate::config::Config;
use voxgate::server::{self, ServerHandle};
use voxgate_actors::messages::{
    AudioIn, EndOfAudio, Finalize, PipelineHandle, SessionLinks, StopPipeline,
};
use voxgate_actors::pipeline::PipelineFactory;
use voxgate_actors::protocol::StartConfig;
use voxgate_actors::testing::{Probe, ProbeLog};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A pipeline the server started for a session: a probe receives what the session sends it, and
/// the test reports to the session through `links`.
pub struct StartedPipeline {
    pub session_id: Arc<str>,
    pub config: Arc<StartConfig>,
    pub links: SessionLinks,
    pub log: ProbeLog,
    /// Keeps the probe alive after the session drops its handle.
    pub probe: Addr<Probe>,
}

impl StartedPipeline {
    pub async fn audio(&self, n: usize) -> Vec<AudioIn> {
        self.log.wait_count::<AudioIn>(n, WAIT).await
    }
    pub async fn finalizes(&self, n: usize) -> usize {
        self.log.wait_count::<Finalize>(n, WAIT).await.len()
    }
    pub async fn ends(&self, n: usize) -> usize {
        self.log.wait_count::<EndOfAudio>(n, WAIT).await.len()
    }
    pub async fn stops(&self, n: usize) -> usize {
        self.log.wait_count::<StopPipeline>(n, WAIT).await.len()
    }
}

/// A [`PipelineFactory`] whose pipelines are probes, reported to the test as they start.
struct ProbePipelines {
    started: mpsc::UnboundedSender<StartedPipeline>,
}

impl PipelineFactory for ProbePipelines {
    /// Probes take anything: what they received is for the test to inspect.
    fn honoured(&self) -> voxgate_actors::protocol::Honoured {
        voxgate_actors::protocol::Honoured::GOOGLE_V2
    }

    fn start(
        &self,
        session_id: Arc<str>,
        config: Arc<StartConfig>,
        links: SessionLinks,
    ) -> PipelineHandle {
        let (probe, log) = Probe::start_new();
        let handle = PipelineHandle {
            audio: probe.clone().recipient(),
            finalize: probe.clone().recipient(),
            end: probe.clone().recipient(),
            stop: probe.clone().recipient(),
        };
        let _ = self.started.send(StartedPipeline {
            session_id,
            config,
            links,
            log,
            probe,
        });
        handle
    }
}

/// What `server::start` takes: a factory of probe pipelines, and where their starts are reported.
pub fn probe_pipelines() -> (
    impl Fn() -> Rc<dyn PipelineFactory> + Clone + Send + 'static,
    mpsc::UnboundedReceiver<StartedPipeline>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let factory = move || {
        Rc::new(ProbePipelines {
            started: tx.clone(),
        }) as Rc<dyn PipelineFactory>
    };
    (factory, rx)
}

/// A configuration for tests: one worker, no timer that fires during an ordinary test.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.workers = 1;
    config.server.shutdown_grace_secs = 0.5;
    config.session.heartbeat_interval_secs = 5.0;
    config.session.client_timeout_secs = 30.0;
    config.session.start_timeout_secs = 30.0;
    config.session.idle_timeout_secs = 30.0;
    config.session.max_frame_bytes = 4_096;
    config.session.max_json_bytes = 2_048;
    config.session.max_phrases = 3;
    // Tests open connections in quick succession; only the rate-limit tests lower this.
    config.server.connection_rate_per_ip = 10_000.0;
    config.server.connection_burst_per_ip = 10_000;
    config
}

/// A running server and the pipelines its sessions started.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: Option<ServerHandle>,
    pub pipelines: mpsc::UnboundedReceiver<StartedPipeline>,
    /// With `[tls]`: the client configuration to connect with (`wss://`).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

/// A refused WebSocket upgrade: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let (pipelines, rx) = probe_pipelines();
        let handle = server::start(config, listener, pipelines)
            .await
            .expect("server starts");
        TestServer {
            addr: handle.local_addr(),
            handle: Some(handle),
            pipelines: rx,
            tls_client: None,
        }
    }

    /// A server with `[tls]` configured; clients connect with `client` (`wss://`).
    pub async fn start_tls(config: Config, client: Arc<rustls::ClientConfig>) -> TestServer {
        let mut server = TestServer::start(config).await;
        assert!(server.handle().is_tls());
        server.tls_client = Some(client);
        server
    }

    /// The server handle (for reloads).
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server handle present")
    }

    /// `ws://` or `wss://` URL of `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls_client.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}{}", self.addr, path_and_query)
    }

    /// Opens a WebSocket with extra request headers; a refused upgrade gives its status and body.
    pub async fn connect_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Client, http::HeaderMap), Refused> {
        connect_with(&self.url(path_and_query), headers, self.tls_client.clone()).await
    }

    /// The pipeline of the next session that gets configured.
    pub async fn next_pipeline(&mut self) -> StartedPipeline {
        tokio::time::timeout(WAIT, self.pipelines.recv())
            .await
            .ok()
            .flatten()
            .expect("a session started its pipeline")
    }

    /// No further pipeline starts within `within`.
    pub async fn no_pipeline(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.pipelines.recv())
            .await
            .is_err()
    }

    pub async fn connect(&self, path_and_query: &str) -> Client {
        match self.connect_with(path_and_query, &[]).await {
            Ok((client, _)) => client,
            Err(refused) => panic!("WebSocket upgrade refused: {refused:?}"),
        }
    }

    /// Connects, sends a LINEAR16 16 kHz `start`, reads `ready`; returns the client, its session
    /// id and its pipeline.
    pub async fn started_session(&mut self) -> (Client, String, StartedPipeline) {
        let mut client = self.connect("/v1/listen").await;
        client.send_json(&start_json()).await;
        let ready = client.expect_json().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        let session_id = ready["session_id"].as_str().unwrap_or_default().to_string();
        let pipeline = self.next_pipeline().await;
        assert_eq!(&*pipeline.session_id, session_id.as_str());
        (client, session_id, pipeline)
    }

    /// Takes the handle out to shut the server down from the test.
    pub fn take_handle(&mut self) -> ServerHandle {
        self.handle.take().expect("server handle present")
    }

    /// Graceful shutdown. Drop the test's clients first: a session still open is given the grace
    /// period and then up to the flush bound, as in production.
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("server shuts down");
        }
    }

    /// A plain HTTP/1.1 GET; returns the status code and the body.
    pub async fn http_get(&self, path: &str, extra_headers: &str) -> (u16, String) {
        http_get(self.addr, path, extra_headers).await
    }
}

/// Opens `url` with extra headers (TLS with `tls` for `wss://`); a connection that fails (TLS
/// handshake, reset) panics.
pub async fn connect_with(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Client, http::HeaderMap), Refused> {
    match try_connect(url, headers, tls).await {
        Ok(connected) => Ok(connected),
        Err(ConnectError::Refused(refused)) => Err(refused),
        Err(ConnectError::Failed(e)) => panic!("WebSocket connection failed: {e}"),
    }
}

/// Why a connection did not become a WebSocket.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with an HTTP error.
    Refused(Refused),
    /// No HTTP answer (TLS handshake failure, connection reset…).
    Failed(String),
}

/// Opens `url` with extra headers (TLS with `tls` for `wss://`).
pub async fn try_connect(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Client, http::HeaderMap), ConnectError> {
    let mut request = url.into_client_request().expect("a valid URL");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    let connector = tls.map(Connector::Rustls);
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
        Ok((ws, response)) => Ok((Client { ws }, response.headers().clone())),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err(ConnectError::Refused(Refused {
                status: response.status().as_u16(),
                body,
                headers: response.headers().clone(),
            }))
        }
        Err(e) => Err(ConnectError::Failed(e.to_string())),
    }
}

/// This process's resident memory, in bytes (Linux: /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A plain HTTP/1.1 request; returns the status code, the response head and the body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect for HTTP");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let (status, _, body) = http_request(addr, "GET", path, extra_headers, "").await;
    (status, body)
}

/// A raw connection (hand-made frames, see [`raw`]) that sent `start` and got `ready`, and its
/// pipeline.
pub async fn raw_session(server: &mut TestServer) -> (raw::RawClient, StartedPipeline) {
    let mut raw = raw::RawClient::connect(server.addr).await;
    raw.write(&raw::frame(raw::TEXT, start_json().to_string().as_bytes()))
        .await;
    match raw.next_frame().await {
        raw::Read::Frame(f) => assert_eq!(f.json()["type"], "ready", "{f:?}"),
        other => panic!("expected ready, got {other:?}"),
    }
    (raw, server.next_pipeline().await)
}

/// A bystander session still carries audio: it sends its `n`th chunk, which reaches its pipeline.
pub async fn still_works(client: &mut Client, pipeline: &StartedPipeline, n: usize) {
    client.send_binary(&[n as u8]).await;
    assert_eq!(
        pipeline.audio(n).await.len(),
        n,
        "the bystander session still carries audio"
    );
}

pub fn start_json() -> Value {
    serde_json::json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000})
}

/// What the client read next.
#[derive(Debug, PartialEq)]
pub enum Event {
    Json(Value),
    Binary(Vec<u8>),
    Ping,
    Close(Option<(u16, String)>),
    /// The connection ended (after a Close, or without one).
    End,
    /// Nothing within the time given.
    Nothing,
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send to server");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send(Message::text(value.to_string())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text.to_string())).await;
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.send(Message::binary(data.to_vec())).await;
    }

    /// A raw data frame (for fragments and invalid UTF-8).
    pub async fn send_frame(&mut self, data: &[u8], opcode: Data, is_final: bool) {
        let frame = Frame::message(data.to_vec(), OpCode::Data(opcode), is_final);
        self.send(Message::Frame(frame)).await;
    }

    /// The next event within `within`, pongs skipped.
    pub async fn next_event(&mut self, within: Duration) -> Event {
        loop {
            let next = match tokio::time::timeout(within, self.ws.next()).await {
                Err(_) => return Event::Nothing,
                Ok(next) => next,
            };
            return match next {
                None | Some(Err(_)) => Event::End,
                Some(Ok(Message::Text(text))) => {
                    Event::Json(serde_json::from_str(text.as_str()).unwrap_or(Value::Null))
                }
                Some(Ok(Message::Binary(data))) => Event::Binary(data.to_vec()),
                Some(Ok(Message::Ping(_))) => Event::Ping,
                Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    Event::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
            };
        }
    }

    /// The next JSON message (pings skipped); panics with what came instead.
    pub async fn expect_json(&mut self) -> Value {
        loop {
            match self.next_event(WAIT).await {
                Event::Json(value) => return value,
                Event::Ping => continue,
                other => panic!("expected a JSON message, got {other:?}"),
            }
        }
    }

    /// The next JSON message must be of `kind`.
    pub async fn expect_type(&mut self, kind: &str) -> Value {
        let value = self.expect_json().await;
        assert_eq!(
            value["type"], kind,
            "expected a {kind} message, got {value}"
        );
        value
    }

    /// The next event (pings skipped) must be a Close with `code` and `reason`; then the
    /// connection must end.
    pub async fn expect_close(&mut self, code: u16, reason: &str) {
        loop {
            match self.next_event(WAIT).await {
                Event::Ping => continue,
                Event::Close(got) => {
                    assert_eq!(got, Some((code, reason.to_string())));
                    break;
                }
                other => panic!("expected Close {code} {reason}, got {other:?}"),
            }
        }
        loop {
            match self.next_event(WAIT).await {
                Event::Ping => continue,
                Event::End => return,
                other => panic!("expected the connection to end, got {other:?}"),
            }
        }
    }

    /// The next message must be `error` with `code` and the right `retryable`; then, if the code
    /// closes, a Close with its close code and the code as reason.
    pub async fn expect_error(&mut self, code: voxgate_actors::protocol::ErrorCode) -> Value {
        let error = self.expect_type("error").await;
        assert_eq!(error["code"], code.as_str(), "{error}");
        assert_eq!(error["retryable"], code.retryable(), "{error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
        if let Some(close) = code.close_code() {
            self.expect_close(close, code.as_str()).await;
        }
        error
    }

    /// Nothing but pings arrives within `within`.
    pub async fn quiet_for(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left).await {
                Event::Nothing => return,
                Event::Ping => continue,
                other => panic!("expected nothing, got {other:?}"),
            }
        }
    }
}

/// `VOXGATE_AUTH__API_KEYS` for `keys`: a TOML list of their `sha256:` hashes.
pub fn api_keys_env(keys: &[&str]) -> String {
    let hashes: Vec<String> = keys
        .iter()
        .map(|key| {
            let hash: String = key_hash_entry(key)
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("\"sha256:{hash}\"")
        })
        .collect();
    format!("[{}]", hashes.join(","))
}

/// The `[auth] api_keys` entry of `key`: its SHA-256.
pub fn key_hash_entry(key: &str) -> voxgate::config::KeyHash {
    use sha2::{Digest, Sha256};
    voxgate::config::KeyHash(Sha256::digest(key.as_bytes()).into())
}
