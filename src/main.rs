//! The `voxgate` command: `serve` (the default), `emulator`, `stream`, `bench`. Thin: parse arguments,
//! raise the open-files limit, call `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a gateway moving tens of thousands of small messages
/// a second spends a tenth of its CPU in glibc's malloc/free otherwise (measured with perf, see
/// docs/benchmarks.md), and fragments less with thousands of sessions coming and going.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "voxgate", version, about = "Live-transcription gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: voxgate::server::ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no subcommand is given).
    Serve(voxgate::server::ServeArgs),
    /// Run the Google-compatible speech emulator, or encode words into audio it recognises.
    Emulator(voxgate_emulator::EmulatorArgs),
    /// Stream an audio file or stdin to a running gateway and print the transcripts.
    Stream(voxgate_tools::client::stream::StreamArgs),
    /// Load-test a running gateway (or, with --direct, the emulator): N concurrent real-time
    /// sessions, exact transcripts, added latency, CPU and memory per session.
    Bench(voxgate_tools::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    voxgate::init_tracing();
    // Thousands of sessions need thousands of descriptors; if this fails, the first
    // `accept`/`connect` beyond the limit reports it.
    if let Err(e) = voxgate::rlimit::raise_open_files_limit() {
        tracing::warn!("cannot raise the open-files limit: {e}");
    }
    let result = match cli.command {
        Some(Command::Serve(args)) => voxgate::server::run(args),
        None => voxgate::server::run(cli.serve),
        Some(Command::Emulator(args)) => voxgate_emulator::run(args),
        // Its exit code says what failed (see `voxgate stream --help`).
        Some(Command::Stream(args)) => return voxgate_tools::client::stream::main(args),
        Some(Command::Bench(args)) => voxgate_tools::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {e}");
            ExitCode::FAILURE
        }
    }
}
