//! Voice activity detection by energy: is a 10 ms frame of 16 kHz audio speech?
//!
//! A frame is voiced when its level is well above the background: `margin_db` over the noise
//! floor, and above an absolute minimum (digital silence and very quiet rooms are never speech).
//! The floor is the quietest frame of the last few seconds (a minimum over 100 ms blocks), so it
//! follows a changing background within `FLOOR_WINDOW_BLOCKS` × 100 ms while speech — which always
//! has quiet frames between words — never lifts it to the speech level. At the start of a stream
//! the floor assumes a quiet background until real blocks fill the window.
//!
//! Why energy and not a neural VAD: it costs nothing per stream (a few operations per sample, no
//! model session shared under a lock), it is deterministic, and on the speech voxgate's tests use
//! (read speech, studio telephone prompts) it finds the same pauses; under loud noise or music it
//! is weaker (docs/offline-engine.md). Decisions depend only on the samples, never on how they
//! were chunked: the segmenter relies on that.

/// Samples per frame: 10 ms at 16 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Frames per floor block (100 ms).
const BLOCK_FRAMES: usize = 10;
/// Blocks the floor is the minimum of (3 s).
const FLOOR_WINDOW_BLOCKS: usize = 30;
/// The floor assumed before the window has filled, in dBFS.
const INITIAL_FLOOR_DB: f32 = -65.0;
/// The level of digital silence, in dBFS (log of zero avoided).
const SILENCE_DB: f32 = -100.0;

/// Thresholds of [`EnergyVad`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadSettings {
    /// A voiced frame is this much louder than the floor, in dB.
    pub margin_db: f32,
    /// …and at least this loud, in dBFS.
    pub min_level_db: f32,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            margin_db: 12.0,
            min_level_db: -55.0,
        }
    }
}

/// The level of a frame in dBFS (full scale = 0).
pub fn level_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return SILENCE_DB;
    }
    let power = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    if power <= 1e-10 {
        SILENCE_DB
    } else {
        (10.0 * power.log10()).max(SILENCE_DB)
    }
}

/// The energy detector of one stream. See the module doc.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    settings: VadSettings,
    /// Minimum level of each of the last blocks, oldest first.
    block_minimums: std::collections::VecDeque<f32>,
    /// Minimum level of the block being filled, and its frames so far.
    current_minimum: f32,
    current_frames: usize,
}

impl EnergyVad {
    pub fn new(settings: VadSettings) -> EnergyVad {
        EnergyVad {
            settings,
            block_minimums: std::collections::VecDeque::with_capacity(FLOOR_WINDOW_BLOCKS),
            current_minimum: f32::INFINITY,
            current_frames: 0,
        }
    }

    /// The background level now, in dBFS.
    pub fn floor_db(&self) -> f32 {
        let seen = self
            .block_minimums
            .iter()
            .copied()
            .fold(self.current_minimum, f32::min);
        if self.block_minimums.len() < FLOOR_WINDOW_BLOCKS {
            seen.min(INITIAL_FLOOR_DB)
        } else {
            seen
        }
    }

    /// Whether one frame ([`FRAME_SAMPLES`] samples in [−1, 1]) is voiced; updates the floor.
    pub fn is_voiced(&mut self, frame: &[f32]) -> bool {
        let level = level_db(frame);
        // Judged against the floor before this frame joins it.
        let voiced = level >= self.settings.min_level_db
            && level >= self.floor_db() + self.settings.margin_db;
        self.current_minimum = self.current_minimum.min(level);
        self.current_frames += 1;
        if self.current_frames == BLOCK_FRAMES {
            if self.block_minimums.len() == FLOOR_WINDOW_BLOCKS {
                self.block_minimums.pop_front();
            }
            self.block_minimums.push_back(self.current_minimum);
            self.current_minimum = f32::INFINITY;
            self.current_frames = 0;
        }
        voiced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| amplitude * (i as f32 * 0.3).sin())
            .collect()
    }

    #[test]
    fn levels() {
        assert_eq!(level_db(&[0.0; 160]), SILENCE_DB);
        assert!((level_db(&[1.0; 160])).abs() < 1e-4);
        assert!((level_db(&[0.1; 160]) + 20.0).abs() < 1e-3);
        assert_eq!(level_db(&[]), SILENCE_DB);
    }

    /// Loud frames over silence are voiced; silence and quiet hiss are not.
    #[test]
    fn speech_over_silence() {
        let mut vad = EnergyVad::new(VadSettings::default());
        assert!(!vad.is_voiced(&[0.0; FRAME_SAMPLES]));
        assert!(vad.is_voiced(&tone(0.1)));
        assert!(!vad.is_voiced(&tone(0.0005)), "below the absolute minimum");
    }

    /// A steady background becomes the floor once the window has seen it: the same hum that
    /// counted as voiced at first is background three seconds later, and speech above it is
    /// still voiced.
    #[test]
    fn the_floor_follows_the_background() {
        let mut vad = EnergyVad::new(VadSettings::default());
        let hum = tone(0.01); // about −43 dBFS
        assert!(vad.is_voiced(&hum));
        for _ in 0..(FLOOR_WINDOW_BLOCKS * BLOCK_FRAMES) {
            vad.is_voiced(&hum);
        }
        assert!(
            (vad.floor_db() - level_db(&hum)).abs() < 0.5,
            "{}",
            vad.floor_db()
        );
        assert!(!vad.is_voiced(&hum));
        assert!(vad.is_voiced(&tone(0.2)));
    }

    /// Speech with quiet gaps between words never lifts the floor to the speech level.
    #[test]
    fn speech_does_not_raise_the_floor() {
        let mut vad = EnergyVad::new(VadSettings::default());
        let loud = tone(0.2);
        let gap = tone(0.001);
        for i in 0..1_000 {
            let voiced = vad.is_voiced(if i % 40 < 35 { &loud } else { &gap });
            if i % 40 < 35 {
                assert!(voiced, "frame {i}");
            }
        }
        assert!(vad.floor_db() < -50.0);
    }
}
