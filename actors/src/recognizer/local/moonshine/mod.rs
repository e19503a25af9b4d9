//! The Moonshine engine: Moonshine tiny (English) on ONNX Runtime, the default offline engine.
//!
//! - [`runtime`]: ONNX Runtime, loaded once per process from the installed shared library.
//! - [`tokenizer`]: the token table, ids to text.
//! - [`model`]: one loaded model and its greedy decoder (a whole segment in, text out).
//!
//! The model is not a streaming one: streams are cut into speech segments
//! (`super::segmenter`), and segments are decoded by the shared workers of
//! `super::scheduler` — see `super::segment_stream` for interim and final results.
//! [`start`] loads a model in every worker (files installed by `scripts/setup-offline-engine.sh`;
//! a missing one is named, with that command).

pub mod model;
pub mod runtime;
pub mod tokenizer;

use std::sync::Arc;

use model::{ModelFiles, MoonshineModel};

use super::decoded::DecodedSegment;
use super::scheduler::{DecoderLoader, SegmentDecoder};
use super::segment_engine::{ModelTraits, SegmentEngine};
use crate::settings::LocalSettings;

impl SegmentDecoder for MoonshineModel {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
        self.transcribe(samples).map(|decoded| {
            if decoded.hit_token_cap {
                tracing::debug!(tokens = decoded.tokens, "Moonshine hit its token cap");
            }
            // The model gives neither word times nor a confidence.
            DecodedSegment::text_only(decoded.text)
        })
    }
}

/// The model files of `settings`.
pub fn model_files(settings: &LocalSettings) -> ModelFiles {
    ModelFiles {
        model_dir: settings.moonshine_model_dir(),
        onnxruntime_library: settings.onnxruntime_path(),
    }
}

/// What Moonshine needs from its streams: plain resampling, and finals decoded during the
/// end-of-speech wait (one takes a small part of it).
pub const MODEL_TRAITS: ModelTraits = ModelTraits {
    fold_narrowband: false,
    speculative_finals: true,
};

/// Starts the Moonshine engine of `settings`: checks the files, loads one model per worker.
pub fn start(settings: &LocalSettings) -> Result<SegmentEngine, String> {
    let files = model_files(settings);
    files.check()?;
    let loader: DecoderLoader = Arc::new(move || {
        MoonshineModel::load(&files).map(|m| Box::new(m) as Box<dyn SegmentDecoder>)
    });
    SegmentEngine::start(settings, loader, MODEL_TRAITS)
}
