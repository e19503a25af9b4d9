//! Text → synthetic audio: the encoder `voxgate emulator encode`, the tests and the benchmark use.

use super::{
    ms_to_samples, symbol_of, tone_hz, utterances, SynthEncoding, AMPLITUDE, LETTER_GAP_MS,
    PAUSE_MS, TONE_MS, WORD_GAP_MS,
};

/// Where one word sits in encoded audio, in samples from the start of the audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordSpan {
    pub word: String,
    /// First sample of the word's first tone.
    pub start_sample: u64,
    /// One past the last sample of the word's last tone.
    pub end_sample: u64,
}

/// Encoded audio with its timeline, so tests can check word times and cut audio at pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The audio bytes (LINEAR16 little-endian or MULAW).
    pub audio: Vec<u8>,
    /// Every word in order.
    pub words: Vec<WordSpan>,
    /// For each utterance, the sample where its trailing pause begins (its last word's end).
    pub utterance_ends: Vec<u64>,
    /// Length of the audio in samples.
    pub total_samples: u64,
}

/// Encodes `text` (normalised as [`super::utterances`] says) at `sample_rate_hz`, mono.
pub fn encode(text: &str, sample_rate_hz: u32, encoding: SynthEncoding) -> Vec<u8> {
    encode_with_timeline(text, sample_rate_hz, encoding).audio
}

/// Encodes `text` and reports where every word and utterance lies.
pub fn encode_with_timeline(text: &str, sample_rate_hz: u32, encoding: SynthEncoding) -> Encoded {
    let mut samples: Vec<i16> = Vec::new();
    let mut words = Vec::new();
    let mut utterance_ends = Vec::new();
    let silence = |samples: &mut Vec<i16>, ms: u64| {
        let n = ms_to_samples(sample_rate_hz, ms) as usize;
        samples.resize(samples.len() + n, 0);
    };
    for utterance in utterances(text) {
        for (w, word) in utterance.iter().enumerate() {
            if w > 0 {
                silence(&mut samples, WORD_GAP_MS);
            }
            let start_sample = samples.len() as u64;
            for (c, ch) in word.bytes().enumerate() {
                if c > 0 {
                    silence(&mut samples, LETTER_GAP_MS);
                }
                // `utterances` keeps alphabet characters only.
                if let Some(symbol) = symbol_of(ch) {
                    push_tone(&mut samples, sample_rate_hz, tone_hz(symbol));
                }
            }
            words.push(WordSpan {
                word: word.clone(),
                start_sample,
                end_sample: samples.len() as u64,
            });
        }
        utterance_ends.push(samples.len() as u64);
        silence(&mut samples, PAUSE_MS);
    }
    let total_samples = samples.len() as u64;
    let audio = match encoding {
        SynthEncoding::Linear16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        SynthEncoding::Mulaw => samples
            .iter()
            .map(|&s| voxgate_actors::audio::mulaw::encode_sample(s))
            .collect(),
        SynthEncoding::Alaw => samples
            .iter()
            .map(|&s| voxgate_actors::audio::alaw::encode_sample(s))
            .collect(),
    };
    Encoded {
        audio,
        words,
        utterance_ends,
        total_samples,
    }
}

/// Appends one character's tone: `round(A·sin(2π·f·n/rate))` for `n` in `0..TONE_MS` of samples.
fn push_tone(samples: &mut Vec<i16>, rate: u32, hz: f64) {
    let n_samples = ms_to_samples(rate, TONE_MS);
    let step = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    samples.extend((0..n_samples).map(|n| (AMPLITUDE * (step * n as f64).sin()).round() as i16));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_documented_durations() {
        let encoded = encode_with_timeline("ab c. d", 16_000, SynthEncoding::Linear16);
        // "ab": 30 + 10 + 30 ms; gap 100; "c": 30; pause 600; "d": 30; pause 600.
        let ms = |m: u64| m * 16;
        assert_eq!(encoded.words[0].start_sample, 0);
        assert_eq!(encoded.words[0].end_sample, ms(70));
        assert_eq!(encoded.words[1].start_sample, ms(170));
        assert_eq!(encoded.words[1].end_sample, ms(200));
        assert_eq!(encoded.utterance_ends, vec![ms(200), ms(830)]);
        assert_eq!(encoded.words[2].start_sample, ms(800));
        assert_eq!(encoded.total_samples, ms(1430));
        assert_eq!(encoded.audio.len() as u64, 2 * encoded.total_samples);
    }

    #[test]
    fn mulaw_has_one_byte_per_sample_and_silence_is_0xff() {
        let audio = encode("a", 8_000, SynthEncoding::Mulaw);
        assert_eq!(audio.len(), 240 + 4_800);
        assert!(audio[240..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn empty_text_is_empty_audio() {
        assert!(encode(" ... ", 16_000, SynthEncoding::Linear16).is_empty());
    }
}
