//! # voxgate
//!
//! A live-transcription gateway: clients stream microphone audio over a WebSocket (`/v1/listen`),
//! voxgate forwards it to Google Cloud Speech-to-Text v1 (`StreamingRecognize`, gRPC) and sends
//! interim and final transcripts back on the same socket. The actors that do the work live in the
//! `voxgate-actors` crate (`actors/`); this crate is the service around them.
//!
//! Layout:
//! - [`backend`]: the recogniser behind the sessions (Google, or the embedded emulator).
//! - [`bench`]: `voxgate bench`, the load generator: N real-time sessions against a gateway (or
//!   the emulator directly), exact transcripts, added latency, CPU and RSS per session.
//! - [`client`]: `voxgate stream`, a command-line client that streams an audio file.
//! - [`config`]: `config.toml` + `VOXGATE_<SECTION>__<KEY>` environment overrides, validated.
//! - [`server`]: the HTTP server: `/v1/listen` (WebSocket upgrade), `/healthz`, `/metrics`, and
//!   graceful shutdown.
//! - [`emulator`]: a Google-compatible speech server (real gRPC, Google's types and limits, a
//!   synthetic recogniser, fault injection) for development and tests without a Google account.
//! - [`rlimit`]: raising the open-files limit at start-up (thousands of sockets).
//! - `main.rs`: the `voxgate` command line (`serve`, `emulator`, `stream`, `bench`).

pub mod backend;
pub mod bench;
pub mod client;
pub mod config;
pub mod emulator;
pub mod rlimit;
pub mod server;

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
