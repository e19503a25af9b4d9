//! # voxgate
//!
//! A live-transcription gateway: clients stream audio over a WebSocket (`/v1/listen`), voxgate
//! recognises it (Google Cloud Speech-to-Text, its embedded emulator, or an offline engine) and
//! sends interim and final transcripts back on the same socket. This crate is the service: its
//! configuration, its HTTP server and the wiring of the recogniser behind the sessions.
//!
//! The workspace (see `docs/architecture.md`):
//! - `actors/` (`voxgate-actors`): the session, audio buffer, recognizer and supervisor actors,
//!   the client protocols, the upstream engines.
//! - `emulator/` (`voxgate-emulator`): a Google-compatible speech server for development and
//!   tests (`voxgate emulator`).
//! - `tools/` (`voxgate-tools`): the command-line client (`voxgate stream`) and the load generator
//!   (`voxgate bench`).
//! - this crate (`src/`): the service and the `voxgate` binary that carries every subcommand.
//!
//! Layout:
//! - [`config`]: `config.toml` + `VOXGATE_<SECTION>__<KEY>` environment overrides, validated.
//! - [`server`]: the HTTP server: `/v1/listen` (WebSocket upgrade), `/healthz`, `/readyz`,
//!   `/metrics`, the edge defences (TLS, authentication, origins, per-client limits) and graceful
//!   shutdown.
//! - [`backend`]: the recogniser behind the sessions (Google, the embedded emulator, or the local
//!   engine).
//! - [`rlimit`]: raising the open-files limit at start-up (thousands of sockets).
//! - `main.rs`: the `voxgate` command line (`serve`, `emulator`, `stream`, `bench`).

pub mod backend;
pub mod config;
pub mod rlimit;
pub mod server;

/// Crates whose logs are never shown, whatever `RUST_LOG` says: tungstenite traces the raw bytes
/// of the requests it sends — `voxgate stream`'s and `voxgate bench`'s `Authorization` header,
/// the API key, included.
const SILENCED_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// The log filter for `rust_log` (the `RUST_LOG` variable; default `info`): its directives, minus
/// any naming a [`SILENCED_TARGETS`] crate or module, plus `<crate>=off` for each, so that no
/// directive can turn them back on.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let silenced = |directive: &str| {
        let target = directive
            .split(['=', '['])
            .next()
            .unwrap_or_default()
            .trim();
        SILENCED_TARGETS
            .iter()
            .any(|t| target == *t || target.starts_with(&format!("{t}::")))
    };
    let kept: Vec<&str> = rust_log
        .unwrap_or("info")
        .split(',')
        .filter(|d| !d.trim().is_empty() && !silenced(d))
        .collect();
    let mut filter = tracing_subscriber::EnvFilter::try_new(kept.join(","))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in SILENCED_TARGETS {
        if let Ok(off) = format!("{target}=off").parse() {
            filter = filter.add_directive(off);
        }
    }
    filter
}

/// Logs to stderr; `RUST_LOG` filters (default `info`), except that [`SILENCED_TARGETS`] never log.
pub fn init_tracing() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(rust_log.as_deref()))
        .with_writer(std::io::stderr)
        .try_init();
}
