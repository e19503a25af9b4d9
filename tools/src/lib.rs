//! # voxgate-tools
//!
//! The programs that talk to a voxgate gateway from the client side. Both are subcommands of the
//! `voxgate` binary; they live apart from the service so that the service's crate holds the service
//! only.
//!
//! Layout:
//! - [`client`]: `voxgate stream`, a command-line client that streams an audio file or stdin and
//!   prints the transcripts (live in a terminal, JSON lines, subtitles).
//! - [`bench`]: `voxgate bench`, the load generator: N real-time sessions against a gateway (or the
//!   emulator directly), exact transcripts, added latency, CPU and RSS per session.

pub mod bench;
pub mod client;
