//! One stream of a local engine driven by plain calls instead of an actor: [`EngineStream`], for
//! code that owns its own task — `voxgate emulator --recognizer pocketsphinx`, whose stream task
//! pushes the client's audio and awaits the results. The recognizer actor
//! (`super::segment_recognizer`) does the same with actor messages.
//!
//! Audio is converted and segmented on the caller's thread (cheap); decoding runs on the
//! engine's shared workers, like every other stream's.

use tokio::sync::mpsc;

use super::scheduler::{JobResult, StreamTicket};
use super::segment_engine::{OpenError, OpenStream, SegmentEngine};
use super::segment_stream::{SegmentResult, SegmentStream};
use crate::audio::AudioFormat;

/// See the module doc. Dropping it withdraws its queued work.
#[derive(Debug)]
pub struct EngineStream {
    stream: SegmentStream,
    ticket: StreamTicket,
    results: mpsc::UnboundedReceiver<JobResult>,
}

/// The workers went away: only when the engine is shut down under a stream.
const WORKERS_GONE: &str = "the local inference workers went away";

impl EngineStream {
    /// Opens a stream of audio in `format` on `engine`, if its workers can take it.
    pub fn open(
        engine: &SegmentEngine,
        format: AudioFormat,
        interim_results: bool,
        punctuation: bool,
    ) -> Result<EngineStream, OpenError> {
        let OpenStream {
            stream,
            ticket,
            results,
        } = engine.open(format, interim_results, punctuation)?;
        Ok(EngineStream {
            stream,
            ticket,
            results,
        })
    }

    /// More of the stream's audio.
    pub fn push(&mut self, audio: &[u8]) {
        self.stream.push(audio, &self.ticket);
    }

    /// The next result to report, or the decoding error that ends the stream. Waits as long as
    /// nothing is decided (forever on silence); cancel-safe.
    pub async fn next(&mut self) -> Result<SegmentResult, String> {
        loop {
            let job = self.results.recv().await.ok_or(WORKERS_GONE)?;
            if let Some(result) = self.stream.on_result(job)? {
                return Ok(result);
            }
        }
    }

    /// The audio is over: the open segment becomes the last final. Returns every result still
    /// to come (interims answered after it are stale and dropped), or the decoding error.
    pub async fn finish(&mut self) -> Result<Vec<SegmentResult>, String> {
        self.stream.finish(&self.ticket);
        let mut out = Vec::new();
        while !self.stream.finals_done() {
            let job = self.results.recv().await.ok_or(WORKERS_GONE)?;
            out.extend(self.stream.on_result(job)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::audio::Encoding;
    use crate::recognizer::local::decoded::DecodedSegment;
    use crate::recognizer::local::scheduler::{
        DecoderLoader, Scheduler, SchedulerSettings, SegmentDecoder,
    };
    use crate::recognizer::local::segment_engine::{stream_settings, ModelTraits};
    use crate::recognizer::local::test_support::speech_like;
    use crate::settings::LocalSettings;

    struct Length;

    impl SegmentDecoder for Length {
        fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
            Ok(DecodedSegment::text_only(format!(
                "ms{}",
                samples.len() / 16
            )))
        }
    }

    fn pcm(samples: &[f32]) -> Vec<u8> {
        samples
            .iter()
            .flat_map(|&s| ((s * 32_768.0) as i16).to_le_bytes())
            .collect()
    }

    /// Two utterances pushed: the first final comes from `next` while the stream is open, the
    /// second (still open at the end) from `finish`.
    #[tokio::test]
    async fn finals_from_next_and_from_finish() {
        let loader: DecoderLoader = Arc::new(|| Ok(Box::new(Length) as Box<dyn SegmentDecoder>));
        let settings = SchedulerSettings {
            workers: 1,
            max_load: 0.9,
            max_queue_wait: Duration::from_secs(1),
        };
        let engine = SegmentEngine {
            scheduler: Scheduler::start(settings, loader).unwrap_or_else(|e| panic!("{e}")),
            stream: stream_settings(
                &LocalSettings::default(),
                ModelTraits {
                    fold_narrowband: false,
                    speculative_finals: false,
                },
            ),
        };
        let format = AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        };
        let mut stream =
            EngineStream::open(&engine, format, false, true).unwrap_or_else(|e| panic!("{e}"));
        stream.push(&pcm(&speech_like(800)));
        stream.push(&pcm(&[0.0; 16_000]));
        stream.push(&pcm(&speech_like(600)));
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let first = first
            .unwrap_or_else(|_| panic!("no result"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.is_final, first.text.as_str()), (true, "ms1000"));
        let rest = stream.finish().await.unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<&str> = rest.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, vec!["ms900"]);
    }
}
