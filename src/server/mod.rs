//! The HTTP server: `GET /v1/listen` (WebSocket upgrade → one session actor each), `GET /healthz`,
//! `GET /metrics`, the session limit and graceful shutdown.
//!
//! - [`run`]: what `voxgate serve` does: load the configuration, install the signal handlers
//!   ([`shutdown_signal`]), bind, serve until SIGTERM/SIGINT, shut down gracefully ([`serve_until`]).
//! - [`start`]: the same server on a listener the caller bound (tests use `127.0.0.1:0`), returning
//!   a [`ServerHandle`] whose [`ServerHandle::shutdown`] is the very path a signal takes.
//! - `routes`: the request handlers. `shutdown`: the shared state that admits sessions and drains
//!   them on shutdown.
//!
//! The socket itself is handled by `voxgate_actors::session`; this module never touches it.

mod routes;
mod shutdown;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use voxgate_actors::pipeline::PipelineFactory;

use crate::config::Config;
use shutdown::ServerState;

/// The configuration file read when `--config` is not given (a missing one means all defaults).
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// After the sessions have drained, how long actix may take to close the remaining connections.
const STOP_TIMEOUT_SECS: u64 = 3;

/// `voxgate serve` arguments.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file [default: config.toml, optional; an explicit path must exist].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides `[server] listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `voxgate serve`: serves until SIGTERM or SIGINT, then shuts down gracefully.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let (path, required) = match &args.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let mut config =
        Config::load(Path::new(&path), required, std::env::vars()).map_err(|e| e.to_string())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    actix_rt::System::new().block_on(async move {
        // Registered first, so a signal during start-up is not fatal but a shutdown.
        let signal = shutdown_signal()?;
        let backend = crate::backend::start(&config).await?;
        let listener = TcpListener::bind(config.server.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let pipelines = backend.pipelines.clone();
        let server = start(config, listener, move || pipelines()).await?;
        // On stdout, for whoever started us with port 0 (scripts, tests).
        println!("listening on {}", server.local_addr());
        tracing::info!("voxgate listening on http://{}", server.local_addr());
        let result = serve_until(server, signal).await;
        backend.shutdown().await;
        result
    })
}

/// Serves until `signal` resolves (with the signal's name), then shuts down gracefully.
pub async fn serve_until(
    server: ServerHandle,
    signal: impl Future<Output = &'static str>,
) -> Result<(), String> {
    let name = signal.await;
    tracing::info!("{name} received: shutting down gracefully");
    server.shutdown().await
}

/// Installs the SIGTERM and SIGINT (Ctrl-C) handlers now (within a tokio runtime); the returned
/// future resolves with the name of the first of them to arrive. From then on these signals no
/// longer end the process by themselves.
pub fn shutdown_signal() -> Result<impl Future<Output = &'static str>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut interrupt =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(e) => {
                    tracing::error!("cannot handle Ctrl-C: {e}");
                    std::future::pending().await
                }
            }
        })
    }
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    /// actix's control of the accept loop and workers.
    server: actix_web::dev::ServerHandle,
    /// The server future, spawned on the caller's System; ends once the server has stopped.
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<ServerState>,
}

impl ServerHandle {
    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful shutdown, as on SIGTERM: new sessions are refused (`shutting_down`) and
    /// `/healthz` answers 503; every open session is warned and may go on for
    /// `[server] shutdown_grace_secs`, then flushes its last results and closes with 1001.
    /// Returns once every session has ended (or a bounded time after the grace period) and the
    /// server has stopped.
    pub async fn shutdown(self) -> Result<(), String> {
        let wait = self.state.begin_shutdown();
        let open = self.state.open_sessions();
        tracing::info!(
            open_sessions = open,
            "shutdown: waiting up to {:.1} s for sessions to end",
            wait.as_secs_f64()
        );
        if self.state.drain(wait).await {
            tracing::info!("shutdown: every session has ended");
        } else {
            tracing::warn!(
                open_sessions = self.state.open_sessions(),
                "shutdown: sessions still open after {:.1} s; stopping anyway",
                wait.as_secs_f64()
            );
        }
        self.server.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("server failed: {e}")),
            Err(e) => Err(format!("server task failed: {e}")),
        }
    }
}

/// Starts the server on `listener` inside the current actix System. `pipelines` is called once
/// per worker thread and gives the pipeline factory of that worker's sessions.
pub async fn start<F>(
    config: Config,
    listener: TcpListener,
    pipelines: F,
) -> Result<ServerHandle, String>
where
    F: Fn() -> Rc<dyn PipelineFactory> + Clone + Send + 'static,
{
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("listener has no address: {e}"))?;
    let state = Arc::new(ServerState::new(&config)?);
    let app_state = web::Data::from(state.clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(routes::WorkerPipelines(pipelines()))
            .configure(routes::configure)
    })
    // Signals are ours (see `run`): the grace period needs the sessions told, not cut off.
    .disable_signals()
    // No lingering after a response: a WebSocket's TCP connection should be closed by the server
    // once the closing handshake is done (RFC 6455 §7.1.1), and clients wait for it; actix would
    // otherwise wait up to a second for the client to close first.
    .client_disconnect_timeout(std::time::Duration::ZERO)
    .shutdown_timeout(STOP_TIMEOUT_SECS);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let server = server
        .listen(listener)
        .map_err(|e| format!("cannot serve on {local_addr}: {e}"))?
        .run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    Ok(ServerHandle {
        local_addr,
        server: handle,
        task,
        state,
    })
}
