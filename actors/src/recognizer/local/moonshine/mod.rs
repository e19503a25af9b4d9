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
use std::time::Duration;

use model::{ModelFiles, MoonshineModel};

use super::scheduler::{DecoderLoader, Scheduler, SchedulerSettings, SegmentDecoder};
use super::segment_recognizer::SegmentEngine;
use super::segment_stream::StreamSettings;
use super::segmenter::SegmenterSettings;
use crate::settings::LocalSettings;

impl SegmentDecoder for MoonshineModel {
    fn decode(&mut self, samples: &[f32]) -> Result<String, String> {
        self.transcribe(samples).map(|decoded| {
            if decoded.hit_token_cap {
                tracing::debug!(tokens = decoded.tokens, "Moonshine hit its token cap");
            }
            decoded.text
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

/// How streams are cut, from `settings`.
pub fn stream_settings(settings: &LocalSettings) -> StreamSettings {
    StreamSettings {
        segmenter: SegmenterSettings {
            end_silence_ms: settings.end_silence_ms,
            max_segment_ms: settings.max_segment_ms,
            ..SegmenterSettings::default()
        },
        redecode_interval: settings.redecode_interval_ms * 16,
    }
}

/// The scheduler's limits from `settings` (`workers` 0 = one per core).
pub fn scheduler_settings(settings: &LocalSettings) -> SchedulerSettings {
    let workers = if settings.workers == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        settings.workers
    };
    SchedulerSettings {
        workers,
        max_load: settings.max_load,
        max_queue_wait: Duration::from_millis(settings.max_queue_wait_ms),
    }
}

/// Starts the Moonshine engine of `settings`: checks the files, loads one model per worker.
pub fn start(settings: &LocalSettings) -> Result<SegmentEngine, String> {
    let files = model_files(settings);
    files.check()?;
    let loader: DecoderLoader = Arc::new(move || {
        MoonshineModel::load(&files).map(|m| Box::new(m) as Box<dyn SegmentDecoder>)
    });
    let scheduler = Scheduler::start(scheduler_settings(settings), loader)?;
    Ok(SegmentEngine {
        scheduler,
        stream: stream_settings(settings),
    })
}
