//! The `voxgate` command: `serve` (the default), `emulator`. Thin: parse arguments, call `run`.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    voxgate::init_tracing();
    let result = match cli.command {
        Some(Command::Serve(args)) => voxgate::server::run(args),
        None => voxgate::server::run(cli.serve),
        Some(Command::Emulator(args)) => voxgate::emulator::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxgate: {e}");
            ExitCode::FAILURE
        }
    }
}
