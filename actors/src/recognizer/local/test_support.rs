//! Test helpers of the local engines: Debian's PocketSphinx test recordings and speech-like
//! sound.

use std::path::Path;

/// "go forward ten meters": 16 kHz 16-bit little-endian raw, from `pocketsphinx-testdata`.
pub const GOFORWARD: &str = "/usr/share/pocketsphinx/test/data/goforward.raw";

/// The words of [`GOFORWARD`].
pub const GOFORWARD_WORDS: &str = "go forward ten meters";

/// `ms` of speech-like sound at 16 kHz in [−1, 1]: a loud tone with a 20 ms silent dip every
/// half second — real speech always has quiet moments between words, which keep the energy
/// detector's noise floor down. The dips are too short to be pauses, and never at the start or
/// in the last 100 ms.
pub fn speech_like(ms: usize) -> Vec<f32> {
    (0..ms * 16)
        .map(|i| {
            let t = i / 16;
            let dip = t > 0 && t % 500 < 20 && t + 100 < ms;
            if dip {
                0.0
            } else {
                0.2 * (i as f32 * 0.2).sin()
            }
        })
        .collect()
}

/// The samples of a raw 16-bit little-endian file.
pub fn read_raw(path: &str) -> Vec<i16> {
    let bytes = std::fs::read(Path::new(path)).unwrap_or_else(|e| {
        panic!("{path}: {e} (install the Debian package pocketsphinx-testdata)")
    });
    bytes
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect()
}
