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

/// Stability reported with interim results: PocketSphinx revises its partial hypotheses freely.
pub const INTERIM_STABILITY: f32 = 0.1;

/// One recognised word; times in samples at [`ENGINE_RATE_HZ`] from the start of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedWord {
    pub word: String,
    pub start_sample: u64,
    pub end_sample: u64,
    /// Posterior probability of the word (0–1).
    pub confidence: f32,
}

/// An interim hypothesis or a final result.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    pub is_final: bool,
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
    interim_results: bool,
    /// The last interim sent in this utterance (empty: none).
    last_interim: String,
    /// Pieces fed since the last interim check.
    pieces_since_interim: u64,
}

/// The PocketSphinx engine: one loaded decoder, streaming. See the module doc.
pub struct PocketSphinxEngine {
    decoder: Decoder,
    /// Interim results are checked once per this many pieces.
    interim_pieces: u64,
    stream: StreamState,
}

impl PocketSphinxEngine {
    /// Loads the decoder of `settings`; see [`load_decoder`].
    pub fn load(settings: &LocalSettings) -> Result<PocketSphinxEngine, String> {
        Ok(PocketSphinxEngine {
            decoder: load_decoder(settings)?,
            interim_pieces: (settings.interim_interval_ms / 10).max(1),
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
        let in_speech = self.decoder.in_speech();
        if in_speech {
            self.stream.speaking = true;
        } else if self.stream.speaking {
            // The silence after speech was long enough: the utterance is over.
            self.stream.speaking = false;
            self.decoder.end_utterance()?;
            out.extend(self.final_result());
            self.decoder.start_utterance()?;
            self.stream.pieces_since_interim = 0;
            return Ok(());
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
