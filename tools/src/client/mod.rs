//! The command-line client (`voxgate stream`): reads audio files and streams them to a gateway.

pub mod stream;
pub mod wav;
