//! What decoding one speech segment gives, whatever the engine: [`DecodedSegment`].
//!
//! Engines differ in what they know: PocketSphinx times every word and gives it a posterior;
//! Moonshine gives text only. The segment stream ([`super::segment_stream`]) moves the word times
//! from the segment onto the stream, and the recognizer onto the session clock.

/// One recognised word; times in 16 kHz samples from the start of the segment decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedWord {
    /// The word as the engine spells it.
    pub word: String,
    /// First sample of the word.
    pub start_sample: u64,
    /// One past its last sample.
    pub end_sample: u64,
    /// Posterior probability of the word (0–1).
    pub confidence: f32,
}

/// The decoding of one segment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedSegment {
    /// The text as the engine writes it (cased and punctuated by Moonshine, lower case without
    /// punctuation by PocketSphinx).
    pub text: String,
    /// The words with times, for engines that give them (empty otherwise).
    pub words: Vec<RecognizedWord>,
    /// Mean word confidence (0 when the engine gives none).
    pub confidence: f32,
}

impl DecodedSegment {
    /// A decoding that is text only (no word times, no confidence).
    pub fn text_only(text: impl Into<String>) -> DecodedSegment {
        DecodedSegment {
            text: text.into(),
            ..DecodedSegment::default()
        }
    }
}
