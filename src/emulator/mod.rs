//! The Google-compatible speech emulator (skeleton: filled in by the emulator work).

pub mod synth;

/// `voxgate emulator` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {}

pub fn run(_args: EmulatorArgs) -> Result<(), String> {
    Err("not built yet".into())
}
