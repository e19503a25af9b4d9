//! The HTTP server: `GET /v1/listen` (WebSocket upgrade → one session actor each),
//! `POST /v1/tokens`, `GET /healthz`, `GET /readyz`, `GET /metrics`; TLS, authentication, limits
//! and graceful shutdown. `docs/security.md` describes the defences as a whole.
//!
//! - [`run`]: what `voxgate serve` does: load the configuration, install the signal handlers
//!   ([`shutdown_signal`], SIGHUP for TLS reloads), bind, serve until SIGTERM/SIGINT, shut down
//!   gracefully ([`serve_until`]).
//! - [`start`]: the same server on a listener the caller bound (tests use `127.0.0.1:0`), returning
//!   a [`ServerHandle`] whose [`ServerHandle::shutdown`] is the very path a signal takes.
//! - `routes`: the request handlers. `shutdown`: the shared state that admits sessions and drains
//!   them on shutdown.
//! - `gatekeeper`: the checks before anything is served (rate, origin, credential, client shares),
//!   built from [`auth`], [`tokens`], [`origin`], `client_limits`; `refusal`: the HTTP-level
//!   refusals.
//! - [`tls`]: the served certificate, reloadable. `connection`: options on each accepted socket.
//!
//! The socket itself is handled by `voxgate_actors::session`; this module never touches it.

pub mod auth;
mod client_limits;
mod connection;
mod gatekeeper;
mod offer;
pub mod origin;
mod page;
pub mod refusal;
mod resume;
mod routes;
mod shutdown;
mod systemd;
pub mod tls;
pub mod tokens;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use voxgate_actors::pipeline::PipelineFactory;
use voxgate_actors::webhooks::Webhooks;

use crate::config::Config;
use gatekeeper::Gatekeeper;
use shutdown::ServerState;
use tls::ReloadableCert;

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
    // Before anything is bound: an unauthenticated server on a public address never starts.
    auth::Authenticator::new(
        &config.auth,
        config.server.listen,
        &config.server.trusted_proxies,
    )?;
    actix_rt::System::new().block_on(async move {
        // Registered first, so a signal during start-up is not fatal but a shutdown.
        let signal = shutdown_signal()?;
        let hangup = hangup_signal()?;
        let backend = crate::backend::start(&config).await?;
        let listener = TcpListener::bind(config.server.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let pipelines = backend.pipelines.clone();
        let server = start(config, listener, move || pipelines()).await?;
        // On stdout, for whoever started us with port 0 (scripts, tests).
        println!("listening on {}", server.local_addr());
        let scheme = if server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!("voxgate listening on {scheme}://{}", server.local_addr());
        systemd::notify("READY=1");
        let reloads = actix_rt::spawn(reload_on_hangup(hangup, server.tls.clone()));
        let result = serve_until(server, signal).await;
        reloads.abort();
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
    systemd::notify("STOPPING=1");
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

/// The SIGHUP stream (a placeholder where there are no signals).
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// Installs the SIGHUP handler now (within a tokio runtime): from then on SIGHUP no longer ends the
/// process but reloads the TLS certificate.
fn hangup_signal() -> Result<Hangup, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))
    }
    #[cfg(not(unix))]
    Ok(())
}

/// On each SIGHUP: reload the TLS certificate (without TLS there is nothing to reload).
async fn reload_on_hangup(mut hangup: Hangup, tls: Option<Arc<ReloadableCert>>) {
    #[cfg(unix)]
    while hangup.recv().await.is_some() {
        match &tls {
            Some(cert) => {
                if let Err(e) = cert.reload() {
                    tracing::error!(
                        "SIGHUP: TLS certificate not reloaded, the current one stays: {e}"
                    );
                }
            }
            None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
        }
    }
    #[cfg(not(unix))]
    let _ = (&mut hangup, tls);
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    /// actix's control of the accept loop and workers.
    server: actix_web::dev::ServerHandle,
    /// The server future, spawned on the caller's System; ends once the server has stopped.
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<ServerState>,
    /// The served certificate, with `[tls]`.
    tls: Option<Arc<ReloadableCert>>,
    /// Checks the certificate files for changes (`[tls] reload_interval_secs`).
    tls_watch: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the server speaks TLS (`wss://`, `https://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// With `[tls]`: the count of certificate-file changes the watcher has acted on (see
    /// [`ReloadableCert::changes_seen`]).
    pub fn tls_changes_seen(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.tls.as_ref().map(|cert| cert.changes_seen())
    }

    /// Reloads the TLS certificate from its files now (what SIGHUP does). Open connections keep
    /// theirs; new ones get the new one. Without TLS: an error.
    pub fn reload_tls(&self) -> Result<(), String> {
        match &self.tls {
            Some(cert) => cert.reload(),
            None => Err("no TLS configured".to_string()),
        }
    }

    /// Graceful shutdown, as on SIGTERM: new sessions are refused (`shutting_down`) and
    /// `/readyz` answers 503; every open session is warned; with hand-off (docs/deploy.md) native
    /// sessions are told to move after `[server] hand_off_delay_secs`; the others may go on for
    /// `[server] shutdown_grace_secs`, then flush their last results and close with 1001.
    /// Returns once every session has ended or moved (or a bounded time after the grace period)
    /// and the server has stopped.
    pub async fn shutdown(self) -> Result<(), String> {
        let wait = self.state.begin_shutdown();
        let open = self.state.open_sessions();
        tracing::info!(
            open_sessions = open,
            hand_off = self.state.hands_off(),
            "shutdown: waiting up to {:.1} s for sessions to end or move",
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
        if let Some(watch) = &self.tls_watch {
            watch.abort();
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
    let gatekeeper = web::Data::new(Gatekeeper::new(&config, local_addr)?);
    let tls = ReloadableCert::from_settings(&config.tls)?;
    let state = Arc::new(ServerState::new(&config)?);
    let app_state = web::Data::from(state.clone());
    let offer = web::Data::new(offer::Offer::from_config(&config));
    let dialects = web::Data::new(config.dialects.clone());
    let webhooks = web::Data::new(routes::ServerWebhooks(Webhooks::from_settings(
        &config.webhooks,
    )?));
    let send_timeout = Duration::try_from_secs_f64(config.server.send_timeout_secs)
        .map_err(|e| format!("server.send_timeout_secs: {e}"))?;
    let request_timeout = Duration::try_from_secs_f64(config.server.request_timeout_secs)
        .map_err(|e| format!("server.request_timeout_secs: {e}"))?;
    // Checked before anything is served. A zero period would panic the interval (e.g. 1e-12 s in
    // a configuration `start` was given without `Config::validate`).
    let secs = config.tls.reload_interval_secs;
    let reload_period = if secs == 0.0 {
        None
    } else {
        match Duration::try_from_secs_f64(secs) {
            Ok(period) if !period.is_zero() => Some(period),
            _ => {
                return Err(format!(
                    "tls.reload_interval_secs: {secs} is not 0 nor a usable period"
                ))
            }
        }
    };
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(gatekeeper.clone())
            .app_data(offer.clone())
            .app_data(dialects.clone())
            .app_data(webhooks.clone())
            .app_data(routes::WorkerPipelines(pipelines()))
            .configure(routes::configure)
    })
    // Signals are ours (see `run`): the grace period needs the sessions told, not cut off.
    .disable_signals()
    // No lingering after a response: a WebSocket's TCP connection should be closed by the server
    // once the closing handshake is done (RFC 6455 §7.1.1), and clients wait for it; actix would
    // otherwise wait up to a second for the client to close first.
    .client_disconnect_timeout(Duration::ZERO)
    // A client that connects and then sends its request head slowly (slow-loris) gets 408.
    .client_request_timeout(request_timeout)
    .on_connect(move |io, _| connection::configure(io, send_timeout))
    .shutdown_timeout(STOP_TIMEOUT_SECS);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let server = match &tls {
        Some(cert) => server.listen_rustls_0_23(listener, cert.server_config()?),
        None => server.listen(listener),
    }
    .map_err(|e| format!("cannot serve on {local_addr}: {e}"))?
    .run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    let tls_watch = match (&tls, reload_period) {
        (Some(cert), Some(period)) => {
            let cert = cert.clone();
            Some(actix_rt::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    cert.reload_if_changed();
                }
            }))
        }
        _ => None,
    };
    Ok(ServerHandle {
        local_addr,
        server: handle,
        task,
        state,
        tls,
        tls_watch,
    })
}
