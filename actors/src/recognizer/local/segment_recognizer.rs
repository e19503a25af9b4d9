//! The recognizer actor of the local engines (Moonshine, PocketSphinx): one per stream, like the
//! Google one, with the shared inference workers of a [`SegmentEngine`] in place of the gRPC call.
//!
//! On start it asks the scheduler for admission; refused (the workers cannot keep up), it reports
//! [`RecognizerEventKind::Busy`] and stops (the session gets `busy`). Otherwise it registers with
//! the scheduler and reports `Opened`. Audio frames are converted and segmented here
//! ([`SegmentStream`], cheap); decoding runs on the workers and comes back as job results, which
//! become [`RecognizerEvent`]s on the session clock — the origin is the `start_ms` of the first
//! frame this stream received, as for Google. After [`UpstreamAudio::End`] the open segment is the
//! last final, and `Ended(Ok)` follows once every final is in. A decoding error or a worker crash
//! ends the stream with `INTERNAL` (the supervisor restarts it with a replay); audio the engine
//! cannot convert with `INVALID_ARGUMENT`. [`CancelStream`] stops it silently and withdraws its
//! queued jobs.
//!
//! In `single_utterance` mode the first final ends the stream as Google does:
//! `EndOfSingleUtterance`, the final, then a clean end.

use actix::prelude::*;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::resample::ENGINE_RATE_HZ;
use super::scheduler::{JobResult, StreamTicket};
use super::segment_engine::{OpenError, OpenStream, SegmentEngine};
use super::segment_stream::{SegmentResult, SegmentStream};
use crate::messages::*;
use crate::metrics::METRICS;
use crate::protocol::Honoured;
use crate::recognizer::contract::{stream_handle, StreamContract};
use crate::recognizer::RecognizerFactory;

/// Engine samples per millisecond.
const SAMPLES_PER_MS: u64 = ENGINE_RATE_HZ as u64 / 1_000;

/// Stability reported with interim results: a re-decode of a longer segment may change them.
pub const INTERIM_STABILITY: f32 = 0.1;

/// Starts [`SegmentRecognizer`]s on the calling thread's arbiter, all sharing one engine.
pub struct SegmentRecognizerFactory {
    engine: SegmentEngine,
}

impl SegmentRecognizerFactory {
    pub fn new(engine: SegmentEngine) -> SegmentRecognizerFactory {
        SegmentRecognizerFactory { engine }
    }
}

impl RecognizerFactory for SegmentRecognizerFactory {
    fn honoured(&self) -> Honoured {
        Honoured::NONE
    }

    fn start(&self, request: StreamRequest) -> StreamHandle {
        let addr = SegmentRecognizer {
            contract: StreamContract::new(request, "local"),
            engine: self.engine.clone(),
            stream: None,
            ending: false,
        }
        .start();
        stream_handle(addr)
    }
}

/// The recognizer actor for one stream. See the module doc.
pub struct SegmentRecognizer {
    /// What every recognizer owes the supervisor: events, one end, the session clock.
    contract: StreamContract,
    engine: SegmentEngine,
    /// The stream's segmenter and its registration with the workers; `None` before admission
    /// and after the end.
    stream: Option<(SegmentStream, StreamTicket)>,
    /// `End` came: the stream ends once its finals are in.
    ending: bool,
}

impl SegmentRecognizer {
    /// Reports the end of the stream (once) and stops; dropping the ticket withdraws its jobs.
    fn end(&mut self, result: Result<(), StreamFailure>, ctx: &mut Context<Self>) {
        self.stream = None;
        self.contract.end(result, ctx);
    }

    /// Ends cleanly if `End` came and every final is in.
    fn end_if_done(&mut self, ctx: &mut Context<Self>) {
        let done = self
            .stream
            .as_ref()
            .is_none_or(|(stream, _)| stream.finals_done());
        if self.ending && done {
            self.end(Ok(()), ctx);
        }
    }

    fn transcript(&self, result: SegmentResult) -> Transcript {
        let origin = self.contract.origin_ms();
        let at = |sample: u64| origin + sample / SAMPLES_PER_MS;
        let words = result
            .words
            .into_iter()
            .map(|w| WordTiming {
                start_ms: at(w.start_sample),
                end_ms: at(w.end_sample),
                confidence: w.confidence,
                word: w.word,
            })
            .collect();
        Transcript {
            is_final: result.is_final,
            transcript: result.text,
            confidence: result.confidence,
            stability: if result.is_final {
                0.0
            } else {
                INTERIM_STABILITY
            },
            start_ms: at(result.start_sample),
            end_ms: at(result.end_sample),
            words,
            language_code: self.contract.request().config.language_code.clone(),
        }
    }

    fn on_result(&mut self, result: SegmentResult, ctx: &mut Context<Self>) {
        let transcript = self.transcript(result);
        if transcript.is_final {
            self.contract.final_ended_at(transcript.end_ms);
        }
        if transcript.is_final && self.contract.request().config.single_utterance {
            // Google stops listening at the end of the first utterance: so does this stream.
            self.contract
                .report(RecognizerEventKind::EndOfSingleUtterance);
            self.contract
                .report(RecognizerEventKind::Result(transcript));
            self.end(Ok(()), ctx);
            return;
        }
        self.contract
            .report(RecognizerEventKind::Result(transcript));
    }
}

impl Actor for SegmentRecognizer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        METRICS.streams_total.inc();
        METRICS.streams_active.inc();
        let config = &self.contract.request().config;
        let opened = self.engine.open(
            config.format,
            config.interim_results,
            config.enable_automatic_punctuation,
        );
        match opened {
            Ok(OpenStream {
                stream,
                ticket,
                results,
            }) => {
                self.stream = Some((stream, ticket));
                ctx.add_stream(UnboundedReceiverStream::new(results));
                self.contract.report(RecognizerEventKind::Opened);
            }
            Err(OpenError::Overloaded(overloaded)) => {
                self.contract.busy(overloaded.to_string(), ctx)
            }
            Err(OpenError::Unsupported(e)) => self.end(
                Err(StreamFailure {
                    code: tonic::Code::InvalidArgument,
                    message: e.to_string(),
                }),
                ctx,
            ),
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        METRICS.streams_active.dec();
        self.stream = None;
    }
}

impl Handler<UpstreamAudio> for SegmentRecognizer {
    type Result = ();

    fn handle(&mut self, msg: UpstreamAudio, ctx: &mut Context<Self>) {
        if self.contract.is_ended() || self.ending {
            return;
        }
        let Some((stream, ticket)) = self.stream.as_mut() else {
            return;
        };
        let ending = match msg {
            UpstreamAudio::Frame(frame) => {
                self.contract.origin_at(frame.start_ms);
                stream.push(&frame.data, ticket);
                false
            }
            UpstreamAudio::End => {
                stream.finish(ticket);
                true
            }
        };
        for result in stream.take_ready() {
            self.on_result(result, ctx);
            if self.contract.is_ended() {
                return;
            }
        }
        if ending {
            self.ending = true;
            self.end_if_done(ctx);
        }
    }
}

impl Handler<CancelStream> for SegmentRecognizer {
    type Result = ();

    fn handle(&mut self, _: CancelStream, ctx: &mut Context<Self>) {
        self.stream = None;
        self.contract.cancel(ctx);
    }
}

impl StreamHandler<JobResult> for SegmentRecognizer {
    fn handle(&mut self, item: JobResult, ctx: &mut Context<Self>) {
        if self.contract.is_ended() {
            return;
        }
        let Some((stream, _)) = self.stream.as_mut() else {
            return;
        };
        match stream.on_result(item) {
            Ok(Some(result)) => self.on_result(result, ctx),
            Ok(None) => {}
            Err(message) => {
                return self.end(
                    Err(StreamFailure {
                        code: tonic::Code::Internal,
                        message: format!("local decoder: {message}"),
                    }),
                    ctx,
                )
            }
        }
        self.end_if_done(ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The scheduler holds the sender while the ticket lives: it cannot close first.
        self.end(
            Err(StreamFailure {
                code: tonic::Code::Internal,
                message: "the local inference workers went away".to_string(),
            }),
            ctx,
        );
    }
}

#[cfg(test)]
mod tests;
