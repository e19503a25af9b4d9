//! The command-line client, `voxgate stream`: streams a file or stdin to a gateway and prints the
//! transcripts.
//!
//! - [`stream`]: the arguments and the session (connect, send at real time or by acks, read).
//! - [`input`]: the audio, from a file or a pipe, in frames; [`wav`]: WAV headers.
//! - [`display`]: finals, the live terminal line, `--json`; [`subtitles`]: `--srt` / `--vtt`.
//! - [`resume`]: what is kept to resume the session after a dropped connection.
//! - [`exit`]: what failed, as a message and an exit code.

pub mod display;
pub mod exit;
pub mod input;
pub mod resume;
pub mod stream;
pub mod subtitles;
pub mod wav;
