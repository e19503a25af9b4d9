//! The `voxgate` command: `serve` (the default), `emulator`, `stream`. Thin: parse arguments, call `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Emulator(voxgate::emulator::EmulatorArgs),
    /// Stream an audio file to a running gateway and print the transcripts.
    Stream(voxgate::client::stream::StreamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    voxgate::init_tracing();
    let result = match cli.command {
        Some(Command::Serve(args)) => voxgate::server::run(args),
        None => voxgate::server::run(cli.serve),
        Some(Command::Emulator(args)) => voxgate::emulator::run(args),
        Some(Command::Stream(args)) => voxgate::client::stream::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {e}");
            ExitCode::FAILURE
        }
    }
}
