//! Which recogniser answers the emulator's streams (`voxgate emulator --recognizer`): the
//! synthetic tone decoder (exact, reproducible words, for tests of the gateway) or the local
//! PocketSphinx engine (real speech; the same engine and shared workers as `[recognizer] backend =
//! "local"`), behind one interface the stream task drives. Either way the stream obeys the same
//! Google rules and answers with the same kind of responses.

use tonic::Status;
use voxgate_actors::settings::LocalSettings;

use super::rules::AcceptedConfig;
use super::synth::{Decoder, Recognition, SynthEncoding};

/// The emulator's recogniser, as configured.
// Made once per emulator: the size of the settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RecognizerKind {
    /// The synthetic tone codec of `docs/emulator.md`.
    #[default]
    Synthetic,
    /// The local PocketSphinx engine with these settings (model paths, decoder threads).
    PocketSphinx(LocalSettings),
}

/// The recogniser of a running emulator: what each stream gets its own recogniser from.
pub(crate) enum Recognizers {
    Synthetic,
    #[cfg(feature = "local")]
    PocketSphinx(voxgate_actors::recognizer::local::SegmentEngine),
}

impl std::fmt::Debug for Recognizers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recognizers::Synthetic => f.write_str("Synthetic"),
            #[cfg(feature = "local")]
            Recognizers::PocketSphinx(engine) => write!(f, "PocketSphinx({engine:?})"),
        }
    }
}

impl Recognizers {
    /// Starts the recogniser `kind` (for PocketSphinx: loads the decoder pool, off the runtime's
    /// threads; the error names what to install).
    pub async fn start(kind: &RecognizerKind) -> Result<Recognizers, String> {
        match kind {
            RecognizerKind::Synthetic => Ok(Recognizers::Synthetic),
            #[cfg(feature = "local")]
            RecognizerKind::PocketSphinx(settings) => {
                use voxgate_actors::recognizer::local::pocketsphinx;
                let settings = settings.clone();
                let engine = tokio::task::spawn_blocking(move || pocketsphinx::start(&settings))
                    .await
                    .map_err(|e| format!("pocketsphinx recogniser: loading failed: {e}"))??;
                Ok(Recognizers::PocketSphinx(engine))
            }
            #[cfg(not(feature = "local"))]
            RecognizerKind::PocketSphinx(_) => Err(
                "--recognizer pocketsphinx: this voxgate was built without the local speech \
                 engine (cargo feature `local`)"
                    .to_string(),
            ),
        }
    }

    /// The recogniser of one stream with an accepted `config`; a status refuses the stream (every
    /// decoder busy: `RESOURCE_EXHAUSTED`, as Google answers when over capacity).
    pub fn open(&self, config: &AcceptedConfig) -> Result<StreamRecognizer, Status> {
        match self {
            Recognizers::Synthetic => Ok(match config.synth {
                Some(encoding) => StreamRecognizer::Synthetic(Box::new(Decoder::new(
                    config.sample_rate_hz,
                    encoding,
                    config.channels,
                    config.interim_results,
                ))),
                None => StreamRecognizer::Deaf,
            }),
            #[cfg(feature = "local")]
            Recognizers::PocketSphinx(engine) => engine_stream::open(engine, config),
        }
    }
}

/// One stream's recogniser.
pub(crate) enum StreamRecognizer {
    Synthetic(Box<Decoder>),
    #[cfg(feature = "local")]
    Engine(Box<engine_stream::EngineStream>),
    /// Audio this recogniser cannot decode (compressed encodings, several channels for the
    /// engine): accepted, no words.
    Deaf,
}

impl StreamRecognizer {
    /// Feeds audio; returns the results decided at once (the synthetic decoder's). The engine's
    /// results come later, from [`StreamRecognizer::next`].
    pub fn push(&mut self, audio: &[u8]) -> Vec<Recognition> {
        match self {
            StreamRecognizer::Synthetic(decoder) => decoder.push(audio),
            #[cfg(feature = "local")]
            StreamRecognizer::Engine(stream) => {
                stream.push(audio);
                Vec::new()
            }
            StreamRecognizer::Deaf => Vec::new(),
        }
    }

    /// The next result that arrives on its own (engine only; never completes otherwise); an
    /// error status if the engine failed.
    pub async fn next(&mut self) -> Result<Recognition, Status> {
        match self {
            #[cfg(feature = "local")]
            StreamRecognizer::Engine(stream) => stream.next().await,
            _ => std::future::pending().await,
        }
    }

    /// The client half-closed: the remaining results (the last one final), or the engine's
    /// failure.
    pub async fn finish(&mut self) -> Result<Vec<Recognition>, Status> {
        match self {
            StreamRecognizer::Synthetic(decoder) => Ok(decoder.finish()),
            #[cfg(feature = "local")]
            StreamRecognizer::Engine(stream) => stream.finish().await,
            StreamRecognizer::Deaf => Ok(Vec::new()),
        }
    }
}

/// The encoding the local engine decodes for a stream's headerless PCM encoding, if any (the same
/// ones as the synthetic codec).
#[cfg_attr(not(feature = "local"), allow(dead_code))]
fn engine_encoding(encoding: Option<SynthEncoding>) -> Option<voxgate_actors::audio::Encoding> {
    use voxgate_actors::audio::Encoding;
    match encoding? {
        SynthEncoding::Linear16 => Some(Encoding::Linear16),
        SynthEncoding::Mulaw => Some(Encoding::Mulaw),
        SynthEncoding::Alaw => Some(Encoding::Alaw),
    }
}

#[cfg(feature = "local")]
mod engine_stream {
    //! A stream on the local engine's shared workers, its results converted to the emulator's
    //! recognition events at the stream's sample rate.

    use tonic::Status;
    use voxgate_actors::audio::AudioFormat;
    use voxgate_actors::recognizer::local::resample::ENGINE_RATE_HZ;
    use voxgate_actors::recognizer::local::segment_engine::OpenError;
    use voxgate_actors::recognizer::local::segment_stream::SegmentResult;
    use voxgate_actors::recognizer::local::{EngineStream as Segments, SegmentEngine};

    use super::super::rules::AcceptedConfig;
    use super::super::synth::{DecodedWord, Recognition};
    use super::{engine_encoding, StreamRecognizer};

    pub(crate) struct EngineStream {
        segments: Segments,
        /// The stream's sample rate: engine times (16 kHz samples) are converted to it.
        rate: u32,
    }

    pub(super) fn open(
        engine: &SegmentEngine,
        config: &AcceptedConfig,
    ) -> Result<StreamRecognizer, Status> {
        let Some(encoding) = engine_encoding(config.synth).filter(|_| config.channels == 1) else {
            return Ok(StreamRecognizer::Deaf);
        };
        let format = AudioFormat {
            encoding,
            sample_rate_hz: config.sample_rate_hz,
        };
        let segments =
            Segments::open(engine, format, config.interim_results, false).map_err(|e| match e {
                // Google's answer when over capacity.
                OpenError::Overloaded(busy) => Status::resource_exhausted(busy.to_string()),
                OpenError::Unsupported(e) => Status::invalid_argument(e.to_string()),
            })?;
        Ok(StreamRecognizer::Engine(Box::new(EngineStream {
            segments,
            rate: config.sample_rate_hz,
        })))
    }

    fn failed(message: &str) -> Status {
        Status::internal(format!("recognizer failed: {message}"))
    }

    impl EngineStream {
        pub fn push(&mut self, audio: &[u8]) {
            self.segments.push(audio);
        }

        /// A 16 kHz sample position at the stream's rate.
        fn at_rate(&self, sample: u64) -> u64 {
            sample * u64::from(self.rate) / u64::from(ENGINE_RATE_HZ)
        }

        fn convert(&self, r: SegmentResult) -> Recognition {
            let words = if r.is_final {
                r.words
                    .into_iter()
                    .map(|w| DecodedWord {
                        word: w.word,
                        start_sample: self.at_rate(w.start_sample),
                        end_sample: self.at_rate(w.end_sample),
                        confidence: w.confidence,
                    })
                    .collect()
            } else {
                // An interim is its text: words without times.
                let end = self.at_rate(r.end_sample);
                r.text
                    .split_whitespace()
                    .map(|w| DecodedWord {
                        word: w.to_string(),
                        start_sample: end,
                        end_sample: end,
                        confidence: 0.0,
                    })
                    .collect()
            };
            Recognition {
                is_final: r.is_final,
                words,
                end_sample: self.at_rate(r.end_sample),
            }
        }

        pub async fn next(&mut self) -> Result<Recognition, Status> {
            match self.segments.next().await {
                Ok(r) => Ok(self.convert(r)),
                Err(message) => Err(failed(&message)),
            }
        }

        pub async fn finish(&mut self) -> Result<Vec<Recognition>, Status> {
            match self.segments.finish().await {
                Ok(results) => Ok(results.into_iter().map(|r| self.convert(r)).collect()),
                Err(message) => Err(failed(&message)),
            }
        }
    }
}
