//! The synthetic "speech" codec the emulator recognises: text is encoded as a sequence of pure tones
//! (one tone per character, silence between characters, words and utterances), and a streaming decoder
//! turns such audio back into words with exact, reproducible results.
//!
//! Why a synthetic codec and not speech: tests of the gateway must assert exact transcripts and detect
//! audio that was lost, duplicated or reordered across stream restarts. The decoder therefore depends
//! only on sample positions: the same audio gives the same results however it is cut into requests,
//! and a stream that starts later inside a pause gives the same results shifted by whole samples.
//!
//! The format, precisely (see `docs/emulator.md` for the same in prose):
//! - Alphabet: `a`–`z`, `0`–`9`, `'` — symbol `i` (0-based, in that order) is a sine tone of
//!   `400 + 80·i` Hz (400 Hz … 3 280 Hz, inside the 4 kHz band of 8 kHz MULAW).
//! - A character is a tone of 30 ms: sample `n` (from 0) is `round(8000 · sin(2π·f·n / rate))`.
//! - Characters of a word are separated by 10 ms of silence (samples equal to 0), words by 100 ms,
//!   and every utterance (text up to `.`, `,`, `!`, `?` or the end of the text) is followed by 600 ms.
//! - A duration of `ms` milliseconds is `floor(rate · ms / 1000)` samples.
//! - Text is normalised first: ASCII letters lowercased; `[a-z0-9']` runs are words; `.,!?` end an
//!   utterance; any other character only separates words.
//!
//! Layout: [`encode`](mod@encode) (text → audio), [`decode`] (audio → recognition events) — µ-law
//! with `voxgate_actors::audio::mulaw` / `alaw` — and here the alphabet, the timing constants and the text normalisation.

pub mod decode;
pub mod encode;
#[cfg(test)]
mod roundtrip_tests;

pub use decode::{DecodedWord, Decoder, Recognition};
pub use encode::{encode, encode_with_timeline, Encoded, WordSpan};

/// The characters the codec can say, in symbol order (symbol `i` is `ALPHABET[i]`).
pub const ALPHABET: &[u8; 37] = b"abcdefghijklmnopqrstuvwxyz0123456789'";
/// Frequency of symbol 0.
pub const BASE_HZ: f64 = 400.0;
/// Frequency step between consecutive symbols.
pub const STEP_HZ: f64 = 80.0;
/// Peak amplitude of a tone in 16-bit sample units (about −12 dBFS: far from clipping, far above noise).
pub const AMPLITUDE: f64 = 8000.0;
/// Length of one character's tone.
pub const TONE_MS: u64 = 30;
/// Silence between two characters of a word.
pub const LETTER_GAP_MS: u64 = 10;
/// Silence between two words of an utterance.
pub const WORD_GAP_MS: u64 = 100;
/// Silence after every utterance; the decoder emits the final result 300 ms into it.
pub const PAUSE_MS: u64 = 600;

/// The two encodings the synthetic codec produces and recognises (Google's uncompressed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthEncoding {
    /// 16-bit signed little-endian PCM.
    Linear16,
    /// G.711 µ-law, one byte per sample.
    Mulaw,
    /// G.711 A-law, one byte per sample.
    Alaw,
}

impl SynthEncoding {
    /// Bytes per sample of one channel.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SynthEncoding::Linear16 => 2,
            SynthEncoding::Mulaw | SynthEncoding::Alaw => 1,
        }
    }

    /// Parses `linear16` / `mulaw` / `alaw` (case-insensitive).
    pub fn parse(name: &str) -> Option<SynthEncoding> {
        if name.eq_ignore_ascii_case("linear16") {
            Some(SynthEncoding::Linear16)
        } else if name.eq_ignore_ascii_case("mulaw") {
            Some(SynthEncoding::Mulaw)
        } else if name.eq_ignore_ascii_case("alaw") {
            Some(SynthEncoding::Alaw)
        } else {
            None
        }
    }
}

/// Symbol index of a character of the alphabet.
pub fn symbol_of(ch: u8) -> Option<usize> {
    ALPHABET.iter().position(|&c| c == ch)
}

/// Tone frequency of symbol `index`.
pub fn tone_hz(index: usize) -> f64 {
    BASE_HZ + STEP_HZ * index as f64
}

/// `ms` milliseconds in samples at `rate` Hz, rounded down.
pub fn ms_to_samples(rate: u32, ms: u64) -> u64 {
    u64::from(rate) * ms / 1000
}

/// The text as the recogniser will hear it: utterances (each a final result), each a list of words.
/// Empty utterances (`"hello,, world"`) are dropped.
pub fn utterances(text: &str) -> Vec<Vec<String>> {
    let mut utterances = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for ch in text.chars() {
        let ch = ch.to_ascii_lowercase();
        if ch.is_ascii() && symbol_of(ch as u8).is_some() {
            word.push(ch);
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if matches!(ch, '.' | ',' | '!' | '?') && !words.is_empty() {
            utterances.push(std::mem::take(&mut words));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    if !words.is_empty() {
        utterances.push(words);
    }
    utterances
}

/// The transcripts of the final results the emulator returns for `text`, in order.
pub fn expected_transcripts(text: &str) -> Vec<String> {
    utterances(text).into_iter().map(|u| u.join(" ")).collect()
}

/// Every word the emulator recognises in `text`, in order.
pub fn expected_words(text: &str) -> Vec<String> {
    utterances(text).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lowercases_splits_and_groups_utterances() {
        assert_eq!(
            utterances("Hello, World! It's 4 o-clock... ÉTÉ?"),
            vec![
                vec!["hello".to_string()],
                vec!["world".to_string()],
                vec![
                    "it's".to_string(),
                    "4".to_string(),
                    "o".to_string(),
                    "clock".to_string()
                ],
                vec!["t".to_string()],
            ]
        );
        assert_eq!(
            expected_transcripts("one two. three"),
            vec!["one two", "three"]
        );
        assert!(utterances(" ,.!? ").is_empty());
    }

    #[test]
    fn every_tone_is_below_the_8khz_nyquist_band() {
        for i in 0..ALPHABET.len() {
            assert!(tone_hz(i) < 3_500.0, "symbol {i}");
        }
    }
}
