//! Starting and stopping an emulator: [`spawn`] serves the `Speech` service on a given listener in the
//! current tokio runtime and returns an [`EmulatorHandle`]; the accept loop wraps every connection so
//! that it can be cut ([`super::connection`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::EmulatorConfig;
use super::connection::KillableStream;
use super::generated::v1::speech_server::SpeechServer;
use super::generated::v2::speech_server::SpeechServer as SpeechServerV2;
use super::oauth::{endpoint, Tokens};
use super::recognizer::Recognizers;
use super::service::SpeechService;
use super::shared::Shared;
use super::stats::{Stats, StatsSnapshot};
use super::v2::SpeechServiceV2;

/// How long a graceful shutdown waits for clients to let their connections go before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running emulator. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct EmulatorHandle {
    local_addr: SocketAddr,
    /// `https` with `--tls-cert`, else `http`.
    scheme: &'static str,
    /// The token endpoint's URL, with `--require-auth`.
    token_url: Option<String>,
    shared: Arc<Shared>,
    /// Parent of every connection's kill token: cancelled to cut all connections at once.
    connections: CancellationToken,
    /// The server task; `None` once awaited.
    task: Option<JoinHandle<Result<(), String>>>,
}

/// Serves the emulator on `listener` in the current tokio runtime (also inside an actix `System`).
pub async fn spawn(
    listener: TcpListener,
    config: EmulatorConfig,
) -> Result<EmulatorHandle, String> {
    config.validate()?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("emulator listener: {e}"))?;
    let shutdown = CancellationToken::new();
    let connections = CancellationToken::new();
    let max_streams = config.max_streams_per_connection;
    let recognizers = Recognizers::start(&config.recognizer).await?;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        server = server
            .tls_config(tls.tonic())
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    }
    let tokens = config.auth.as_ref().map(|_| Arc::new(Tokens::default()));
    let token_url = match (&config.auth, &tokens) {
        (Some(auth), Some(tokens)) => {
            let listener = TcpListener::bind(auth.token_listen)
                .await
                .map_err(|e| format!("--token-listen {}: {e}", auth.token_listen))?;
            let acceptor = config.tls.as_ref().map(|t| t.acceptor()).transpose()?;
            let running = endpoint::spawn(
                listener,
                acceptor,
                auth.clone(),
                Arc::clone(tokens),
                shutdown.clone(),
            )?;
            tracing::info!(url = %running.url, "token endpoint listening");
            Some(running.url)
        }
        _ => None,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut shared = Shared::new(config, shutdown.clone(), recognizers);
    shared.tokens = tokens;
    let shared = Arc::new(shared);
    let apis = shared.config.apis;
    let v1 = apis.v1.then(|| {
        SpeechServer::new(SpeechService {
            shared: Arc::clone(&shared),
        })
    });
    let v2 = apis.v2.then(|| {
        SpeechServerV2::new(SpeechServiceV2 {
            shared: Arc::clone(&shared),
        })
    });
    // An API not served is absent from the router: its calls get UNIMPLEMENTED.
    let router = server
        .max_concurrent_streams(Some(max_streams))
        .add_optional_service(v1)
        .add_optional_service(v2);
    let incoming = accept_loop(listener, connections.clone(), Arc::clone(&shared));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .map_err(|e| format!("emulator server: {e}"))
    });
    tracing::info!(%local_addr, "emulator listening");
    Ok(EmulatorHandle {
        local_addr,
        scheme,
        token_url,
        shared,
        connections,
        task: Some(task),
    })
}

/// Accepted connections, each wrapped to be killable; accept errors (out of descriptors, …) are
/// reported to tonic, which logs them and goes on, after a short pause so as not to spin.
fn accept_loop(
    listener: TcpListener,
    connections: CancellationToken,
    shared: Arc<Shared>,
) -> impl Stream<Item = Result<KillableStream, std::io::Error>> {
    futures_util::stream::unfold((listener, 1u64), move |(listener, next_id)| {
        let connections = connections.clone();
        let shared = Arc::clone(&shared);
        async move {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    Stats::add(&shared.stats.connections_accepted, 1);
                    tracing::debug!(connection = next_id, %peer, "connection accepted");
                    let stream = KillableStream::new(socket, next_id, connections.child_token());
                    Some((Ok(stream), (listener, next_id + 1)))
                }
                Err(error) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Err(error), (listener, next_id)))
                }
            }
        }
    })
}

impl EmulatorHandle {
    /// The address the emulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR` (`https://` with TLS), what a tonic channel connects to.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// The token endpoint's URL (`https://ADDR/token`), with `--require-auth`.
    pub fn token_url(&self) -> Option<&str> {
        self.token_url.as_deref()
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = self.shared.stats.snapshot();
        if let Some(tokens) = &self.shared.tokens {
            tokens.add_to(&mut stats);
        }
        stats
    }

    /// Stops accepting, ends every open stream with `UNAVAILABLE`, lets clients close their
    /// connections (cutting those still open after a few seconds), and waits for the server to stop.
    pub async fn shutdown(mut self) -> Result<(), String> {
        self.shared.shutdown.cancel();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        let result = match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                self.connections.cancel();
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        task.abort();
                        return Err("emulator did not stop in time".to_string());
                    }
                }
            }
        };
        result.map_err(|e| format!("emulator task: {e}"))?
    }

    /// Waits until the server stops by itself (it only does on an error) — for `voxgate emulator`.
    pub(crate) async fn stopped(&mut self) -> Result<(), String> {
        match self.task.as_mut() {
            Some(task) => {
                let result = task.await;
                self.task = None;
                result.map_err(|e| format!("emulator task: {e}"))?
            }
            None => Ok(()),
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
