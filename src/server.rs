//! The HTTP server (skeleton: filled in by the session/server work).

use std::net::SocketAddr;
use std::path::PathBuf;

/// `voxgate serve` arguments.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Overrides `[server] listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

pub fn run(_args: ServeArgs) -> Result<(), String> {
    Err("not built yet".into())
}
