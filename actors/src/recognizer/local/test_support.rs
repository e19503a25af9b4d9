//! Test helpers of the local engines: Debian's PocketSphinx test recordings, speech-like sound,
//! and scripted engines that stand in for PocketSphinx where a test needs a decoder that fails or
//! panics on cue.

use std::path::Path;
use std::sync::Arc;

use super::engine::{EngineError, Recognition, RecognizedWord, SpeechEngine};
use super::pool::EngineLoader;

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

/// What a scripted engine does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Each push of n samples yields an interim `"n"`; finish yields a final `"total"` of all.
    Count,
    /// The first push fails.
    FailOnPush,
    /// The first push panics.
    PanicOnPush,
}

/// A [`SpeechEngine`] that follows a [`Script`].
pub struct ScriptedEngine {
    /// What it does.
    script: Script,
    /// Samples pushed in the current stream.
    total: u64,
}

impl SpeechEngine for ScriptedEngine {
    fn begin(&mut self, _interim_results: bool) -> Result<(), EngineError> {
        self.total = 0;
        Ok(())
    }

    fn push(&mut self, samples: &[i16]) -> Result<Vec<Recognition>, EngineError> {
        match self.script {
            Script::FailOnPush => return Err(EngineError("scripted failure".into())),
            Script::PanicOnPush => panic!("scripted panic"),
            Script::Count => {}
        }
        self.total += samples.len() as u64;
        Ok(vec![Recognition {
            is_final: false,
            transcript: samples.len().to_string(),
            words: Vec::new(),
            end_sample: self.total,
            confidence: 0.0,
        }])
    }

    fn finish(&mut self) -> Result<Vec<Recognition>, EngineError> {
        Ok(vec![Recognition {
            is_final: true,
            transcript: format!("total {}", self.total),
            words: vec![RecognizedWord {
                word: "total".into(),
                start_sample: 0,
                end_sample: self.total,
                confidence: 1.0,
            }],
            end_sample: self.total,
            confidence: 1.0,
        }])
    }
}

/// A loader of scripted engines.
pub fn scripted(script: Script) -> EngineLoader {
    Arc::new(move || Ok(Box::new(ScriptedEngine { script, total: 0 }) as Box<dyn SpeechEngine>))
}

/// A loader whose n-th engine follows `scripts[n]` (the last one repeats): e.g. an engine that
/// crashes, then the fresh ones its worker reloads.
pub fn scripted_sequence(scripts: Vec<Script>) -> EngineLoader {
    let loaded = std::sync::atomic::AtomicUsize::new(0);
    Arc::new(move || {
        let n = loaded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let script = scripts
            .get(n)
            .or(scripts.last())
            .copied()
            .unwrap_or(Script::Count);
        Ok(Box::new(ScriptedEngine { script, total: 0 }) as Box<dyn SpeechEngine>)
    })
}
