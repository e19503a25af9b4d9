//! The local speech engine: what one decoder does with one stream's audio, and the PocketSphinx
//! implementation of it.
//!
//! [`SpeechEngine`] is the interface a pool worker drives (a test substitutes a scripted engine):
//! begin a stream, push 16 kHz samples, finish; each call returns the [`Recognition`]s it decided.
//!
//! [`PocketSphinxEngine`] streams like Google does: interim hypotheses while speech goes on, a
//! final result (words with times and posteriors) when PocketSphinx's voice activity detector
//! hears `end_silence_ms` of silence, and a last final at the end of the audio.
//!
//! Its results do not depend on how the audio is cut into pushes: samples are fed to PocketSphinx
//! in fixed 10 ms pieces (one frame shift), and every decision — end of utterance, interim — is
//! taken after a piece, at a sample position. So streaming a file in 100 ms frames and pushing it
//! whole give the same results; the accuracy test relies on that. Feeding one frame at a time is
//! also what keeps word times right: PocketSphinx drops silence and counts an utterance's frames
//! from where its speech began, which is only one place if an utterance never spans a pause.
//!
//! Each stream starts from the model's initial state (`ps_start_stream` plus a reset of the
//! cepstral mean), so results never depend on what the decoder heard before.

use std::path::Path;

use super::ffi::{self, Decoder, Segment, SAMPLES_PER_FRAME};
use crate::settings::LocalSettings;

/// The sample rate every engine works at; audio is converted to it first (`super::resample`).
pub const ENGINE_RATE_HZ: u32 = 16_000;

/// Samples fed to the decoder at once: one 10 ms frame shift.
const PIECE: usize = SAMPLES_PER_FRAME as usize;

/// The Debian package of the default model, named in errors about missing model files.
const MODEL_PACKAGE: &str = "pocketsphinx-en-us";

/// Speech without a pause this long is cut into utterances anyway (10 ms pieces): a final now and
/// then keeps the search's memory bounded and lets the client see settled text.
const MAX_UTTERANCE_PIECES: u64 = 30 * 100;

/// Stability reported with interim results: PocketSphinx revises its partial hypotheses freely.
pub const INTERIM_STABILITY: f32 = 0.1;

/// One recognised word; times in samples at [`ENGINE_RATE_HZ`] from the start of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedWord {
    /// The word as the dictionary spells it (alternate pronunciations folded).
    pub word: String,
    /// First sample of the word.
    pub start_sample: u64,
    /// One past its last sample.
    pub end_sample: u64,
    /// Posterior probability of the word (0–1).
    pub confidence: f32,
}

/// An interim hypothesis or a final result.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    /// A final result (the utterance is over) or an interim hypothesis (it may change).
    pub is_final: bool,
    /// The words, separated by single spaces.
    pub transcript: String,
    /// The words with times: finals only.
    pub words: Vec<RecognizedWord>,
    /// Samples consumed when this was decided (Google's `result_end_time`).
    pub end_sample: u64,
    /// Mean word posterior for finals; 0 for interims.
    pub confidence: f32,
}

/// Why an engine call failed: the stream fails (and is restarted by its supervisor).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

impl From<ffi::DecodeError> for EngineError {
    fn from(e: ffi::DecodeError) -> Self {
        EngineError(e.to_string())
    }
}

/// What a pool worker drives, one stream at a time.
pub trait SpeechEngine: Send {
    /// Starts a stream from the engine's initial state; `interim_results`: report interims.
    fn begin(&mut self, interim_results: bool) -> Result<(), EngineError>;
    /// Decodes more of the stream's audio (16 kHz mono samples).
    fn push(&mut self, samples: &[i16]) -> Result<Vec<Recognition>, EngineError>;
    /// The audio is over: decode what is left and report the last final.
    fn finish(&mut self) -> Result<Vec<Recognition>, EngineError>;
}

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

/// PocketSphinx's configuration for `settings`.
fn decoder_args(settings: &LocalSettings) -> Vec<(&'static str, String)> {
    let frames = |ms: u64| (ms / 10).max(1).to_string();
    vec![
        ("-hmm", settings.model_dir.display().to_string()),
        ("-dict", settings.dictionary.display().to_string()),
        ("-lm", settings.language_model.display().to_string()),
        ("-samprate", ENGINE_RATE_HZ.to_string()),
        ("-frate", "100".to_string()),
        ("-remove_silence", "yes".to_string()),
        ("-vad_postspeech", frames(settings.end_silence_ms)),
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

/// The per-stream state of [`PocketSphinxEngine`].
#[derive(Debug, Default)]
struct StreamState {
    /// Fewer than a piece of samples, waiting for more.
    pending: Vec<i16>,
    /// Samples fed to the decoder in this stream.
    fed: u64,
    /// The detector heard speech and the utterance has not ended yet.
    speaking: bool,
    /// The client wants interim results.
    interim_results: bool,
    /// The last interim sent in this utterance (empty: none).
    last_interim: String,
    /// Pieces fed since the last interim check.
    pieces_since_interim: u64,
    /// Pieces fed since the utterance started.
    utterance_pieces: u64,
}

/// The PocketSphinx engine: one loaded decoder, streaming. See the module doc.
pub struct PocketSphinxEngine {
    /// The loaded model, reused stream after stream.
    decoder: Decoder,
    /// Interim results are checked once per this many pieces.
    interim_pieces: u64,
    /// An utterance is cut after this many pieces of speech ([`MAX_UTTERANCE_PIECES`]).
    max_utterance_pieces: u64,
    /// The current stream's progress.
    stream: StreamState,
}

impl PocketSphinxEngine {
    /// Loads the decoder of `settings`; see [`load_decoder`].
    pub fn load(settings: &LocalSettings) -> Result<PocketSphinxEngine, String> {
        Ok(PocketSphinxEngine {
            decoder: load_decoder(settings)?,
            interim_pieces: (settings.interim_interval_ms / 10).max(1),
            max_utterance_pieces: MAX_UTTERANCE_PIECES,
            stream: StreamState::default(),
        })
    }

    /// The final result of the utterance that just ended (`None` if it has no words and no
    /// interim needs replacing).
    fn final_result(&mut self) -> Option<Recognition> {
        let words = words_of(&self.decoder.segments());
        let had_interim = !self.stream.last_interim.is_empty();
        self.stream.last_interim.clear();
        if words.is_empty() && !had_interim {
            return None;
        }
        let transcript = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let confidence = if words.is_empty() {
            0.0
        } else {
            words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
        };
        Some(Recognition {
            is_final: true,
            transcript,
            words,
            end_sample: self.stream.fed,
            confidence,
        })
    }

    /// Feeds one piece and reports what it decided.
    fn feed_piece(&mut self, piece: &[i16], out: &mut Vec<Recognition>) -> Result<(), EngineError> {
        self.decoder.process(piece, false)?;
        self.stream.fed += piece.len() as u64;
        self.stream.utterance_pieces += 1;
        let in_speech = self.decoder.in_speech();
        let too_long = self.stream.utterance_pieces >= self.max_utterance_pieces;
        if in_speech && !too_long {
            self.stream.speaking = true;
        } else if self.stream.speaking {
            // The silence after speech was long enough (or the speech too long): the utterance
            // is over.
            self.stream.speaking = false;
            self.decoder.end_utterance()?;
            out.extend(self.final_result());
            self.decoder.start_utterance()?;
            self.stream.pieces_since_interim = 0;
            self.stream.utterance_pieces = 0;
            return Ok(());
        } else if !in_speech {
            // No speech yet: silence before it does not count towards an utterance's length.
            self.stream.utterance_pieces = 0;
        }
        if self.stream.speaking && self.stream.interim_results {
            self.stream.pieces_since_interim += 1;
            if self.stream.pieces_since_interim >= self.interim_pieces {
                self.stream.pieces_since_interim = 0;
                let hypothesis = self.decoder.hypothesis();
                if !hypothesis.is_empty() && hypothesis != self.stream.last_interim {
                    self.stream.last_interim.clone_from(&hypothesis);
                    out.push(Recognition {
                        is_final: false,
                        transcript: hypothesis,
                        words: Vec::new(),
                        end_sample: self.stream.fed,
                        confidence: 0.0,
                    });
                }
            }
        }
        Ok(())
    }

    /// Decodes `samples` as one utterance in PocketSphinx's batch mode (cepstral mean over the
    /// whole utterance), the way its own tools decode a file: the reference the streaming results
    /// are compared with in `docs/accuracy.md`. Returns the hypothesis.
    pub fn decode_batch(&mut self, samples: &[i16]) -> Result<String, EngineError> {
        self.decoder.start_stream()?;
        self.decoder.process(samples, true)?;
        self.decoder.end_utterance()?;
        let words = words_of(&self.decoder.segments());
        Ok(words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// The cepstral mean every stream starts from (exposed for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn initial_cmn(&self) -> &[f32] {
        self.decoder.initial_cmn()
    }
}

impl SpeechEngine for PocketSphinxEngine {
    fn begin(&mut self, interim_results: bool) -> Result<(), EngineError> {
        self.stream = StreamState {
            interim_results,
            ..StreamState::default()
        };
        self.decoder.start_stream()?;
        Ok(())
    }

    fn push(&mut self, samples: &[i16]) -> Result<Vec<Recognition>, EngineError> {
        let mut out = Vec::new();
        let mut rest = samples;
        if !self.stream.pending.is_empty() {
            let take = (PIECE - self.stream.pending.len()).min(rest.len());
            self.stream.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.stream.pending.len() < PIECE {
                return Ok(out);
            }
            let piece = std::mem::take(&mut self.stream.pending);
            self.feed_piece(&piece, &mut out)?;
        }
        let mut pieces = rest.chunks_exact(PIECE);
        for piece in &mut pieces {
            self.feed_piece(piece, &mut out)?;
        }
        self.stream.pending.extend_from_slice(pieces.remainder());
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<Recognition>, EngineError> {
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.stream.pending);
        if !pending.is_empty() {
            self.decoder.process(&pending, false)?;
            self.stream.fed += pending.len() as u64;
        }
        self.decoder.end_utterance()?;
        out.extend(self.final_result());
        self.stream.speaking = false;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::resample::{AudioConverter, Resampler};
    use super::super::test_support::{read_raw, GOFORWARD, GOFORWARD_WORDS};
    use super::*;
    use crate::audio::mulaw;
    use crate::audio::{AudioFormat, Encoding};

    fn engine() -> PocketSphinxEngine {
        PocketSphinxEngine::load(&LocalSettings::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Streams `samples` in pushes of `chunk` samples; returns every result.
    fn stream(engine: &mut PocketSphinxEngine, samples: &[i16], chunk: usize) -> Vec<Recognition> {
        engine.begin(true).unwrap_or_else(|e| panic!("{e}"));
        let mut results = Vec::new();
        for piece in samples.chunks(chunk) {
            results.extend(engine.push(piece).unwrap_or_else(|e| panic!("{e}")));
        }
        results.extend(engine.finish().unwrap_or_else(|e| panic!("{e}")));
        results
    }

    fn final_text(results: &[Recognition]) -> String {
        results
            .iter()
            .filter(|r| r.is_final && !r.transcript.is_empty())
            .map(|r| r.transcript.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// goforward.raw, streamed in 100 ms pieces, is recognised word for word, with results that
    /// come while the audio is still arriving and word times inside the audio, in order.
    #[test]
    fn goforward_streams_to_the_right_words() {
        let samples = read_raw(GOFORWARD);
        let mut engine = engine();
        engine.begin(true).unwrap_or_else(|e| panic!("{e}"));
        let mut before_end = Vec::new();
        for piece in samples.chunks(1_600) {
            before_end.extend(engine.push(piece).unwrap_or_else(|e| panic!("{e}")));
        }
        let at_end = engine.finish().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !before_end.is_empty(),
            "no interim or final while the audio arrived"
        );
        let all: Vec<Recognition> = before_end.into_iter().chain(at_end).collect();
        assert_eq!(final_text(&all), GOFORWARD_WORDS, "{all:?}");
        let last = all.iter().rfind(|r| r.is_final);
        let Some(last) = last else {
            panic!("no final: {all:?}")
        };
        let mut previous_end = 0;
        for word in &last.words {
            assert!(word.start_sample >= previous_end, "{:?}", last.words);
            assert!(word.end_sample > word.start_sample);
            assert!((0.0..=1.0).contains(&word.confidence));
            previous_end = word.end_sample;
        }
        assert!(previous_end <= samples.len() as u64);
        assert!(last.end_sample <= samples.len() as u64);
        assert!(last.confidence > 0.0);
    }

    /// The same audio gives the same words and times whether it is pushed in 100 ms pieces, in
    /// odd-sized pieces, or whole; and decoding it twice gives the same (each stream starts from
    /// the model's initial state).
    #[test]
    fn results_do_not_depend_on_chunking_or_history() {
        let samples = read_raw(GOFORWARD);
        let mut engine = engine();
        type Timed = (bool, String, u64, Vec<(String, u64, u64)>);
        let words = |results: &[Recognition]| -> Vec<Timed> {
            results
                .iter()
                .map(|r| {
                    (
                        r.is_final,
                        r.transcript.clone(),
                        r.end_sample,
                        r.words
                            .iter()
                            .map(|w| (w.word.clone(), w.start_sample, w.end_sample))
                            .collect(),
                    )
                })
                .collect()
        };
        let reference = words(&stream(&mut engine, &samples, 1_600));
        assert_eq!(
            words(&stream(&mut engine, &samples, samples.len())),
            reference
        );
        assert_eq!(words(&stream(&mut engine, &samples, 333)), reference);
        assert_eq!(words(&stream(&mut engine, &samples, 1_600)), reference);
    }

    /// Telephony audio: goforward resampled to 8 kHz and µ-law encoded, converted back to 16 kHz
    /// as a MULAW stream is, still says "go forward ten meters".
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
        let mut engine = engine();
        let results = stream(&mut engine, &wide, 1_600);
        assert_eq!(final_text(&results), GOFORWARD_WORDS, "{results:?}");
    }

    /// Speech longer than the utterance limit is cut into several finals, in order, with the
    /// words still recognised.
    #[test]
    fn long_speech_is_cut_into_utterances() {
        let samples = read_raw(GOFORWARD);
        let mut engine = engine();
        engine.max_utterance_pieces = 100;
        let results = stream(&mut engine, &samples, 1_600);
        let finals: Vec<&Recognition> = results.iter().filter(|r| r.is_final).collect();
        assert!(finals.len() >= 2, "{results:?}");
        let mut previous_end = 0;
        for f in &finals {
            assert!(f.end_sample > previous_end, "{finals:?}");
            for w in &f.words {
                assert!(w.start_sample >= previous_end && w.end_sample <= f.end_sample);
            }
            previous_end = f.end_sample;
        }
        // A cut inside a word costs that word ("go for ten meters"), not the rest.
        let text = final_text(&results);
        assert!(
            text.starts_with("go ") && text.ends_with(" ten meters"),
            "{text}"
        );
    }

    /// Silence gives no result at all.
    #[test]
    fn silence_gives_nothing() {
        let mut engine = engine();
        let results = stream(&mut engine, &vec![0i16; 32_000], 1_600);
        assert_eq!(results, Vec::new());
    }

    /// A missing model file is named, with the package that provides it.
    #[test]
    fn missing_model_names_the_package() {
        let settings = LocalSettings {
            model_dir: "/nonexistent/en-us".into(),
            ..LocalSettings::default()
        };
        let error = PocketSphinxEngine::load(&settings)
            .err()
            .unwrap_or_default();
        assert!(error.contains("/nonexistent/en-us"), "{error}");
        assert!(error.contains("pocketsphinx-en-us"), "{error}");
        let settings = LocalSettings {
            language_model: "/nonexistent/en-us.lm.bin".into(),
            ..LocalSettings::default()
        };
        let error = PocketSphinxEngine::load(&settings)
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
        let error = PocketSphinxEngine::load(&settings)
            .err()
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(error.contains("could not load"), "{error}");
        assert!(error.contains("garbage.lm"), "{error}");
    }

    /// Every stream starts from the model's cepstral mean (`-cmninit` in feat.params).
    #[test]
    fn initial_cepstral_mean_is_the_models() {
        let engine = engine();
        let cmn = engine.initial_cmn();
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
