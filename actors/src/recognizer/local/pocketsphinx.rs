//! PocketSphinx as a segment engine: [`PocketSphinxDecoder`] decodes one whole speech segment at a
//! time on the shared inference workers, like Moonshine ([`start`]); no stream holds a decoder.
//!
//! A segment is decoded in PocketSphinx's batch mode (`ps_process_raw(…, full_utt = TRUE)`: the
//! cepstral mean of the segment itself), the way its own tools decode a file, so a result depends
//! on nothing the decoder heard before. The segmenter already cut the silence around the speech,
//! so PocketSphinx's own silence removal is off: its frames are then the segment's 10 ms frames
//! one for one, and word times are exact offsets into the segment. Words come with their
//! posteriors (the final's confidence is their mean). 8 kHz audio is spectrally folded for the
//! wideband model (`super::resample`).

use std::path::Path;
use std::sync::Arc;

use super::decoded::{DecodedSegment, RecognizedWord};
use super::ffi::{self, Decoder, Segment, SAMPLES_PER_FRAME};
use super::resample::ENGINE_RATE_HZ;
use super::scheduler::{DecoderLoader, SegmentDecoder};
use super::segment_engine::{ModelTraits, SegmentEngine};
use crate::settings::LocalSettings;

/// The Debian package of the default model, named in errors about missing model files.
const MODEL_PACKAGE: &str = "pocketsphinx-en-us";

/// Checks that the model files of `settings` exist, naming the package to install if not.
pub fn check_model(settings: &LocalSettings) -> Result<(), String> {
    let missing = |key: &str, path: &Path, what: &str| {
        format!(
            "[local] {key}: {} not found ({what}); install the Debian package {MODEL_PACKAGE} \
             (apt-get install {MODEL_PACKAGE}) or point [local] {key} at a PocketSphinx model",
            path.display()
        )
    };
    if !settings.model_dir.is_dir() {
        return Err(missing(
            "model_dir",
            &settings.model_dir,
            "the acoustic model directory",
        ));
    }
    for file in [
        "mdef",
        "means",
        "variances",
        "transition_matrices",
        "noisedict",
    ] {
        let path = settings.model_dir.join(file);
        if !path.is_file() {
            return Err(missing("model_dir", &path, "a file of the acoustic model"));
        }
    }
    let weights = ["sendump", "mixture_weights"];
    if !weights.iter().any(|f| settings.model_dir.join(f).is_file()) {
        let path = settings.model_dir.join("sendump");
        return Err(missing("model_dir", &path, "the mixture weights"));
    }
    if !settings.dictionary.is_file() {
        return Err(missing(
            "dictionary",
            &settings.dictionary,
            "the pronunciation dictionary",
        ));
    }
    if !settings.language_model.is_file() {
        return Err(missing(
            "language_model",
            &settings.language_model,
            "the language model",
        ));
    }
    Ok(())
}

/// PocketSphinx's configuration for `settings`: the model, 16 kHz, 100 frames a second, and no
/// silence removal (segments arrive cut; see the module doc).
fn decoder_args(settings: &LocalSettings) -> Vec<(&'static str, String)> {
    vec![
        ("-hmm", settings.model_dir.display().to_string()),
        ("-dict", settings.dictionary.display().to_string()),
        ("-lm", settings.language_model.display().to_string()),
        ("-samprate", ENGINE_RATE_HZ.to_string()),
        ("-frate", "100".to_string()),
        ("-remove_silence", "no".to_string()),
    ]
}

/// Loads one PocketSphinx decoder for `settings` (about a second): the library and the model
/// files are checked first, so a missing one is named with the package that provides it.
pub fn load_decoder(settings: &LocalSettings) -> Result<Decoder, String> {
    ffi::check_library()?;
    check_model(settings)?;
    Decoder::new(&decoder_args(settings)).map_err(|e| {
        format!(
            "{e} (model_dir {}, dictionary {}, language_model {})",
            settings.model_dir.display(),
            settings.dictionary.display(),
            settings.language_model.display()
        )
    })
}

/// A dictionary word as a transcript word: fillers (`<s>`, `<sil>`, `[NOISE]`) are dropped and
/// alternate pronunciations (`read(2)`) named by their word.
fn spoken_word(word: &str) -> Option<&str> {
    if word.starts_with('<') || word.starts_with('[') || word.starts_with('+') {
        return None;
    }
    let base = match word.find('(') {
        Some(i) if word.ends_with(')') => &word[..i],
        _ => word,
    };
    (!base.is_empty()).then_some(base)
}

/// The spoken words of segments, with times in samples and posteriors.
fn words_of(segments: &[Segment]) -> Vec<RecognizedWord> {
    segments
        .iter()
        .filter_map(|s| {
            spoken_word(&s.word).map(|w| RecognizedWord {
                word: w.to_string(),
                start_sample: s.start_frame * SAMPLES_PER_FRAME,
                end_sample: (s.end_frame + 1) * SAMPLES_PER_FRAME,
                confidence: s.probability as f32,
            })
        })
        .collect()
}

/// One loaded PocketSphinx decoder, decoding whole segments. See the module doc.
pub struct PocketSphinxDecoder {
    decoder: Decoder,
    /// The segment as 16-bit samples (reused buffer).
    pcm: Vec<i16>,
}

impl PocketSphinxDecoder {
    /// Loads the decoder of `settings`; see [`load_decoder`].
    pub fn load(settings: &LocalSettings) -> Result<PocketSphinxDecoder, String> {
        Ok(PocketSphinxDecoder {
            decoder: load_decoder(settings)?,
            pcm: Vec::new(),
        })
    }

    /// Decodes 16 kHz 16-bit samples as one utterance: its words, times from its first sample.
    pub fn decode_pcm(&mut self, samples: &[i16]) -> Result<DecodedSegment, ffi::DecodeError> {
        self.decoder.start_stream()?;
        self.decoder.process(samples, true)?;
        self.decoder.end_utterance()?;
        let words = words_of(&self.decoder.segments());
        let text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let confidence = if words.is_empty() {
            0.0
        } else {
            words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
        };
        Ok(DecodedSegment {
            text,
            words,
            confidence,
        })
    }

    /// The cepstral mean every stream starts from (exposed for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn initial_cmn(&self) -> &[f32] {
        self.decoder.initial_cmn()
    }
}

impl SegmentDecoder for PocketSphinxDecoder {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
        let mut pcm = std::mem::take(&mut self.pcm);
        pcm.clear();
        pcm.extend(
            samples
                .iter()
                .map(|&s| (s * 32_768.0).clamp(-32_768.0, 32_767.0) as i16),
        );
        let decoded = self.decode_pcm(&pcm).map_err(|e| e.to_string());
        self.pcm = pcm;
        decoded
    }
}

/// What PocketSphinx needs from its streams: 8 kHz audio folded into its wideband model's upper
/// band, and no speculative finals (its decodes cost more than the wait they would save).
pub const MODEL_TRAITS: ModelTraits = ModelTraits {
    fold_narrowband: true,
    speculative_finals: false,
};

/// Starts the PocketSphinx engine of `settings`: checks the library and the model, loads one
/// decoder per worker (about a second each).
pub fn start(settings: &LocalSettings) -> Result<SegmentEngine, String> {
    let model = settings.clone();
    let loader: DecoderLoader = Arc::new(move || {
        PocketSphinxDecoder::load(&model).map(|d| Box::new(d) as Box<dyn SegmentDecoder>)
    });
    SegmentEngine::start(settings, loader, MODEL_TRAITS)
}

#[cfg(test)]
mod tests {
    use super::super::resample::{AudioConverter, Resampler};
    use super::super::test_support::{read_raw, GOFORWARD, GOFORWARD_WORDS};
    use super::*;
    use crate::audio::mulaw;
    use crate::audio::{AudioFormat, Encoding};

    fn decoder() -> PocketSphinxDecoder {
        PocketSphinxDecoder::load(&LocalSettings::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decode(decoder: &mut PocketSphinxDecoder, samples: &[i16]) -> DecodedSegment {
        decoder
            .decode_pcm(samples)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// goforward.raw is recognised word for word, with word times inside the audio and in
    /// order, posteriors, and their mean as the confidence; decoding it again after other audio
    /// gives the same words and times (nothing carries over from one segment to the next).
    #[test]
    fn goforward_is_recognised_with_timed_words() {
        let samples = read_raw(GOFORWARD);
        let mut decoder = decoder();
        let decoded = decode(&mut decoder, &samples);
        assert_eq!(decoded.text, GOFORWARD_WORDS, "{decoded:?}");
        let mut previous_end = 0;
        for word in &decoded.words {
            assert!(word.start_sample >= previous_end, "{:?}", decoded.words);
            assert!(word.end_sample > word.start_sample);
            assert!((0.0..=1.0).contains(&word.confidence));
            previous_end = word.end_sample;
        }
        assert!(previous_end <= samples.len() as u64);
        assert!(decoded.confidence > 0.0);
        // Other audio in between changes nothing (posteriors may differ in the fourth decimal:
        // PocketSphinx's lattice computation is not bit-reproducible).
        let reversed: Vec<i16> = samples.iter().rev().copied().collect();
        decode(&mut decoder, &reversed);
        let times = |d: &DecodedSegment| -> Vec<(String, u64, u64)> {
            d.words
                .iter()
                .map(|w| (w.word.clone(), w.start_sample, w.end_sample))
                .collect()
        };
        assert_eq!(times(&decode(&mut decoder, &samples)), times(&decoded));
    }

    /// The same segment with a second of silence before it: the words are the same, and their
    /// times a second (16 000 samples) later — times are offsets into the segment.
    #[test]
    fn word_times_are_offsets_into_the_segment() {
        let samples = read_raw(GOFORWARD);
        let mut decoder = decoder();
        let plain = decode(&mut decoder, &samples);
        let padded: Vec<i16> = std::iter::repeat_n(0i16, 16_000)
            .chain(samples.iter().copied())
            .collect();
        let later = decode(&mut decoder, &padded);
        assert_eq!(later.text, plain.text);
        for (a, b) in plain.words.iter().zip(&later.words) {
            let shift = b.start_sample as i64 - a.start_sample as i64;
            assert!((shift - 16_000).abs() <= 3 * 160, "{plain:?} {later:?}");
        }
    }

    /// Telephony audio: goforward resampled to 8 kHz and µ-law encoded, converted back to 16 kHz
    /// as a MULAW stream is (with the spectral folding), still says "go forward ten meters".
    #[test]
    fn mulaw_8k_telephony_audio_is_recognised() {
        let samples = read_raw(GOFORWARD);
        let mut narrow = Vec::new();
        let mut down = Resampler::new(16_000, 8_000);
        down.push(&samples, &mut narrow);
        down.finish(&mut narrow);
        let mulaw: Vec<u8> = narrow.iter().map(|&s| mulaw::encode_sample(s)).collect();
        let format = AudioFormat {
            encoding: Encoding::Mulaw,
            sample_rate_hz: 8_000,
        };
        let mut converter =
            AudioConverter::new(format).unwrap_or_else(|e| panic!("MULAW is supported: {e}"));
        let mut wide = Vec::new();
        for frame in mulaw.chunks(800) {
            converter.push(frame, &mut wide);
        }
        converter.finish(&mut wide);
        assert_eq!(wide.len(), samples.len() / 2 * 2);
        assert_eq!(decode(&mut decoder(), &wide).text, GOFORWARD_WORDS);
    }

    /// A missing model file is named, with the package that provides it.
    #[test]
    fn missing_model_names_the_package() {
        let settings = LocalSettings {
            model_dir: "/nonexistent/en-us".into(),
            ..LocalSettings::default()
        };
        let error = PocketSphinxDecoder::load(&settings)
            .err()
            .unwrap_or_default();
        assert!(error.contains("/nonexistent/en-us"), "{error}");
        assert!(error.contains("pocketsphinx-en-us"), "{error}");
        let settings = LocalSettings {
            language_model: "/nonexistent/en-us.lm.bin".into(),
            ..LocalSettings::default()
        };
        let error = PocketSphinxDecoder::load(&settings)
            .err()
            .unwrap_or_default();
        assert!(error.contains("[local] language_model"), "{error}");
    }

    /// A model file PocketSphinx cannot read is a load error (not a crash), naming the files.
    #[test]
    fn unreadable_language_model_is_a_load_error() {
        let dir = std::env::temp_dir().join(format!("voxgate-lm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let lm = dir.join("garbage.lm");
        std::fs::write(&lm, b"this is not a language model\n").unwrap_or_else(|e| panic!("{e}"));
        let settings = LocalSettings {
            language_model: lm.clone(),
            ..LocalSettings::default()
        };
        let error = PocketSphinxDecoder::load(&settings)
            .err()
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("could not load"), "{error}");
        assert!(error.contains("garbage.lm"), "{error}");
    }

    /// Every stream starts from the model's cepstral mean (`-cmninit` in feat.params).
    #[test]
    fn initial_cepstral_mean_is_the_models() {
        let decoder = decoder();
        let cmn = decoder.initial_cmn();
        assert_eq!(cmn.len(), 13);
        assert!((cmn[0] - 41.0).abs() < 1e-3, "{cmn:?}");
    }

    #[test]
    fn fillers_and_alternates_become_words() {
        assert_eq!(spoken_word("<sil>"), None);
        assert_eq!(spoken_word("[NOISE]"), None);
        assert_eq!(spoken_word("read(2)"), Some("read"));
        assert_eq!(spoken_word("forward"), Some("forward"));
    }
}
