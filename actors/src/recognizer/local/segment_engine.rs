//! A started segment engine — Moonshine or PocketSphinx: the shared inference workers and how
//! its streams are cut ([`SegmentEngine`]), made from `[local]`; and the opening of one stream:
//! admission by measured load, then its segmenter and its registration with the workers.
//!
//! Both engines go through here, so they share the scheduling, the admission rule and the
//! stream logic; they differ only in the model a worker loads and in its [`ModelTraits`]
//! (whether 8 kHz audio is spectrally folded, whether finals are decoded speculatively).

use std::time::Duration;

use tokio::sync::mpsc;

use super::resample::UnsupportedEncoding;
use super::scheduler::{
    DecoderLoader, JobResult, Overloaded, Scheduler, SchedulerSettings, StreamTicket,
};
use super::segment_stream::{SegmentStream, StreamSettings};
use super::segmenter::SegmenterSettings;
use crate::audio::AudioFormat;
use crate::settings::LocalSettings;

/// A started segment engine: the shared workers and how streams are cut. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SegmentEngine {
    pub scheduler: Scheduler,
    pub stream: StreamSettings,
}

/// One opened stream: its segmenter, its registration with the workers (dropping it withdraws
/// the stream's queued jobs) and where its job results come.
#[derive(Debug)]
pub struct OpenStream {
    pub stream: SegmentStream,
    pub ticket: StreamTicket,
    pub results: mpsc::UnboundedReceiver<JobResult>,
}

/// Why a stream was not opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenError {
    /// The workers cannot take more (the session gets `busy`).
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// Audio the engines cannot convert.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedEncoding),
}

/// What a segment engine's model needs from its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelTraits {
    /// See [`StreamSettings::fold_narrowband`].
    pub fold_narrowband: bool,
    /// See [`StreamSettings::speculative_finals`].
    pub speculative_finals: bool,
}

/// How streams are cut, from `settings`, for a model with `traits`.
pub fn stream_settings(settings: &LocalSettings, traits: ModelTraits) -> StreamSettings {
    StreamSettings {
        segmenter: SegmenterSettings {
            end_silence_ms: settings.end_silence_ms,
            max_segment_ms: settings.max_segment_ms,
            ..SegmenterSettings::default()
        },
        redecode_interval: settings.redecode_interval_ms * 16,
        fold_narrowband: traits.fold_narrowband,
        speculative_finals: traits.speculative_finals,
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

impl SegmentEngine {
    /// Starts the workers of `settings`, each loading a model with `loader`; returns when all
    /// are loaded, or the first loading error.
    pub fn start(
        settings: &LocalSettings,
        loader: DecoderLoader,
        traits: ModelTraits,
    ) -> Result<SegmentEngine, String> {
        Ok(SegmentEngine {
            scheduler: Scheduler::start(scheduler_settings(settings), loader)?,
            stream: stream_settings(settings, traits),
        })
    }

    /// Opens a stream of audio in `format`, if the workers can take it.
    pub fn open(
        &self,
        format: AudioFormat,
        interim_results: bool,
        punctuation: bool,
    ) -> Result<OpenStream, OpenError> {
        self.scheduler.admit()?;
        let stream = SegmentStream::new(format, self.stream, interim_results, punctuation)?;
        let (ticket, results) = self.scheduler.open();
        Ok(OpenStream {
            stream,
            ticket,
            results,
        })
    }
}
