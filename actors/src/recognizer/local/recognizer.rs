//! The local recognizer: one actor per stream, like the Google one, with a decoder worker of the
//! [`LocalEngine`] in place of the gRPC call.
//!
//! On start it leases a worker; if none is free it reports [`RecognizerEventKind::Busy`] and stops
//! (the supervisor ends the session with `busy`, no retry). Audio frames from the buffer go to the
//! worker over a channel (never decoded here: the actor's event loop only forwards bytes);
//! [`UpstreamAudio::End`] tells the worker to finish. The worker's results come back as a stream
//! and become [`RecognizerEvent`]s on the session clock — the origin is the `start_ms` of the first
//! frame this stream received, exactly as for Google. The actor reports exactly one `Ended`: `Ok`
//! after the last final, `Err` on a decoder error or crash (`INTERNAL`, so the supervisor restarts
//! the stream with a replay) or for audio the engine cannot decode (`INVALID_ARGUMENT`). On
//! [`CancelStream`] it stops without one, which frees the worker.
//!
//! In `single_utterance` mode the first final ends the stream as Google does:
//! `EndOfSingleUtterance`, the final, then a clean end.

use std::sync::mpsc as std_mpsc;

use actix::prelude::*;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::engine::{Recognition, ENGINE_RATE_HZ, INTERIM_STABILITY};
use super::pool::{LocalEngine, StreamInput, StreamOutput};
use crate::messages::*;
use crate::metrics::METRICS;
use crate::recognizer::contract::{stream_handle, StreamContract};
use crate::recognizer::RecognizerFactory;

/// Engine samples per millisecond.
const SAMPLES_PER_MS: u64 = ENGINE_RATE_HZ as u64 / 1_000;

/// Starts [`LocalRecognizer`]s on the calling thread's arbiter, all sharing one [`LocalEngine`].
pub struct LocalRecognizerFactory {
    /// The process-wide decoder pool.
    engine: LocalEngine,
}

impl LocalRecognizerFactory {
    pub fn new(engine: LocalEngine) -> LocalRecognizerFactory {
        LocalRecognizerFactory { engine }
    }
}

impl RecognizerFactory for LocalRecognizerFactory {
    fn start(&self, request: StreamRequest) -> StreamHandle {
        stream_handle(LocalRecognizer::new(request, self.engine.clone()).start())
    }
}

/// The recognizer actor for one local stream. See the module doc.
pub struct LocalRecognizer {
    /// The request, the clock origin, the last final, whether it ended: the part every
    /// recognizer shares.
    contract: StreamContract,
    /// Where the worker is leased from.
    engine: LocalEngine,
    /// Audio to the worker; `None` before the lease, after `End`, and at the end.
    input: Option<std_mpsc::Sender<StreamInput>>,
}

impl LocalRecognizer {
    pub fn new(request: StreamRequest, engine: LocalEngine) -> LocalRecognizer {
        LocalRecognizer {
            contract: StreamContract::new(request, "local"),
            engine,
            input: None,
        }
    }

    /// Reports the end of the stream (once) and stops; dropping the input frees the worker.
    fn end(&mut self, result: Result<(), StreamFailure>, ctx: &mut Context<Self>) {
        self.input = None;
        self.contract.end(result, ctx);
    }

    /// A result of the engine on the session clock.
    fn transcript(&self, recognition: Recognition) -> Transcript {
        let origin = self.contract.origin_ms();
        let at = |sample: u64| origin + sample / SAMPLES_PER_MS;
        let words: Vec<WordTiming> = recognition
            .words
            .iter()
            .map(|w| WordTiming {
                word: w.word.clone(),
                start_ms: at(w.start_sample),
                end_ms: at(w.end_sample),
                confidence: w.confidence,
            })
            .collect();
        let end_ms = at(recognition.end_sample);
        let previous = self.contract.previous_final_end_ms();
        let start_ms = words.first().map_or(previous, |w| w.start_ms).min(end_ms);
        Transcript {
            is_final: recognition.is_final,
            transcript: recognition.transcript,
            confidence: recognition.confidence,
            stability: if recognition.is_final {
                0.0
            } else {
                INTERIM_STABILITY
            },
            start_ms,
            end_ms,
            words,
            language_code: self.contract.request().config.language_code.clone(),
        }
    }

    fn on_recognition(&mut self, recognition: Recognition, ctx: &mut Context<Self>) {
        let transcript = self.transcript(recognition);
        let config = &self.contract.request().config;
        if !transcript.is_final {
            if config.interim_results {
                self.contract
                    .report(RecognizerEventKind::Result(transcript));
            }
            return;
        }
        let single_utterance = config.single_utterance;
        self.contract.final_ended_at(transcript.end_ms);
        if single_utterance {
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

impl Actor for LocalRecognizer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        METRICS.streams_total.inc();
        METRICS.streams_active.inc();
        let config = &self.contract.request().config;
        match self.engine.lease(config.format, config.interim_results) {
            Ok(lease) => {
                self.input = Some(lease.input);
                ctx.add_stream(UnboundedReceiverStream::new(lease.output));
                // A decoder is ours: the stream is open (the supervisor's breaker counts it).
                self.contract.report(RecognizerEventKind::Opened);
            }
            Err(busy) => self.contract.busy(busy.to_string(), ctx),
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        METRICS.streams_active.dec();
        self.input = None;
    }
}

impl Handler<UpstreamAudio> for LocalRecognizer {
    type Result = ();

    fn handle(&mut self, msg: UpstreamAudio, _: &mut Context<Self>) {
        if self.contract.is_ended() {
            return;
        }
        match msg {
            UpstreamAudio::Frame(frame) => {
                let Some(input) = &self.input else {
                    return; // half-closed: no more audio for this stream
                };
                self.contract.origin_at(frame.start_ms);
                // A closed channel means the worker already ended the stream; its `Ended` is on
                // the way.
                let _ = input.send(StreamInput::Audio(frame.data));
            }
            UpstreamAudio::End => {
                if let Some(input) = self.input.take() {
                    let _ = input.send(StreamInput::End);
                }
            }
        }
    }
}

impl Handler<CancelStream> for LocalRecognizer {
    type Result = ();

    fn handle(&mut self, _: CancelStream, ctx: &mut Context<Self>) {
        self.input = None;
        self.contract.cancel(ctx);
    }
}

impl StreamHandler<StreamOutput> for LocalRecognizer {
    fn handle(&mut self, item: StreamOutput, ctx: &mut Context<Self>) {
        if self.contract.is_ended() {
            return;
        }
        match item {
            StreamOutput::Recognition(recognition) => self.on_recognition(recognition, ctx),
            StreamOutput::Ended(result) => self.end(result, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The worker went away without a word (it cannot: it always reports `Ended`, or is
        // dropped after a cancel) — still a failure to restart from, never a silent stop.
        self.end(
            Err(StreamFailure {
                code: tonic::Code::Internal,
                message: "the local decoder stopped without ending the stream".to_string(),
            }),
            ctx,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::test_support::{read_raw, scripted, Script, GOFORWARD, GOFORWARD_WORDS};
    use super::*;
    use crate::protocol::StartConfig;
    use crate::recognizer::contract::test_support::{
        ended, start_stream, transcripts, until_ended,
    };
    use crate::settings::LocalSettings;
    use crate::testing::{start_config, Probe, ProbeLog};

    const WAIT: Duration = Duration::from_secs(20);

    fn config(single_utterance: bool) -> Arc<StartConfig> {
        Arc::new(StartConfig {
            single_utterance,
            ..start_config()
        })
    }

    fn start(engine: &LocalEngine, single_utterance: bool) -> (StreamHandle, ProbeLog) {
        let factory = LocalRecognizerFactory::new(engine.clone());
        start_stream(&factory, 3, config(single_utterance))
    }

    /// Sends `samples` as 100 ms frames starting at `start_ms` on the session clock.
    fn send_frames(handle: &StreamHandle, samples: &[i16], start_ms: u64) {
        for (i, piece) in samples.chunks(1_600).enumerate() {
            let ms = start_ms + i as u64 * 100;
            let data: Vec<u8> = piece.iter().flat_map(|s| s.to_le_bytes()).collect();
            handle.audio.do_send(UpstreamAudio::Frame(AudioFrame {
                start_ms: ms,
                start_byte: ms * 32,
                data: Bytes::from(data),
            }));
        }
    }

    fn real_engine(workers: usize) -> LocalEngine {
        let settings = LocalSettings {
            workers,
            ..LocalSettings::default()
        };
        LocalEngine::start(&settings).unwrap_or_else(|e| panic!("{e}"))
    }

    /// goforward.raw streamed from 5 s into the session: interims, then the final "go forward
    /// ten meters" with word times on the session clock, then one clean end; the worker is free
    /// again afterwards.
    #[actix_rt::test]
    async fn transcribes_real_speech_on_the_session_clock() {
        let engine = real_engine(1);
        let samples = read_raw(GOFORWARD);
        let (handle, log) = start(&engine, false);
        send_frames(&handle, &samples, 5_000);
        handle.audio.do_send(UpstreamAudio::End);
        let events = until_ended(&log, WAIT).await;
        assert_eq!(ended(&events), vec![Ok(())], "{events:?}");
        assert!(events.iter().all(|e| e.stream_id == 3));
        let got = transcripts(&events);
        let finals: Vec<&Transcript> = got.iter().filter(|t| t.is_final).collect();
        let text: Vec<&str> = finals.iter().map(|t| t.transcript.as_str()).collect();
        assert_eq!(text.join(" "), GOFORWARD_WORDS, "{got:?}");
        assert!(got.iter().any(|t| !t.is_final), "interims while speaking");
        let audio_end_ms = 5_000 + samples.len() as u64 / 16;
        for t in &got {
            assert!(t.start_ms >= 5_000 && t.end_ms <= audio_end_ms, "{t:?}");
            assert_eq!(t.language_code, "en-US");
        }
        let words = &finals[0].words;
        assert_eq!(words.len(), 4);
        assert!(words[0].start_ms >= 5_000 && words[3].end_ms <= audio_end_ms);
        assert_eq!(finals[0].start_ms, words[0].start_ms);
        assert!(
            handle.cancel.send(CancelStream).await.is_err(),
            "stopped after Ended"
        );
        assert!(engine.wait_idle(1, WAIT), "the worker is free again");
    }

    /// In single-utterance mode the first final ends the stream: the event, the final, a clean
    /// end — without waiting for the buffer's `End`.
    #[actix_rt::test]
    async fn single_utterance_ends_at_the_first_final() {
        let engine = real_engine(1);
        let samples = read_raw(GOFORWARD);
        let (handle, log) = start(&engine, true);
        send_frames(&handle, &samples, 0);
        // Two seconds of silence: the utterance ends without a half-close.
        send_frames(&handle, &vec![0i16; 32_000], samples.len() as u64 / 16);
        let events = until_ended(&log, WAIT).await;
        let kinds: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.kind {
                RecognizerEventKind::Opened => None,
                RecognizerEventKind::Result(t) if !t.is_final => None,
                RecognizerEventKind::Result(_) => Some("final"),
                RecognizerEventKind::EndOfSingleUtterance => Some("end_of_utterance"),
                RecognizerEventKind::Ended(Ok(())) => Some("ended_ok"),
                RecognizerEventKind::Ended(Err(_)) => Some("ended_err"),
                RecognizerEventKind::Busy(_) => Some("busy"),
            })
            .collect();
        assert_eq!(kinds, vec!["end_of_utterance", "final", "ended_ok"]);
    }

    /// No free decoder: the stream's only event is `Busy`, and it stops.
    #[actix_rt::test]
    async fn busy_engine_reports_busy() {
        let engine =
            LocalEngine::with_loader(1, scripted(Script::Count)).unwrap_or_else(|e| panic!("{e}"));
        let (_first, first_log) = start(&engine, false);
        let (second, log) = start(&engine, false);
        let events = log.wait_count::<RecognizerEvent>(1, WAIT).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let RecognizerEventKind::Busy(message) = &events[0].kind else {
            panic!("{events:?}");
        };
        assert!(message.contains("busy"), "{message}");
        assert!(second.cancel.send(CancelStream).await.is_err(), "stopped");
        let first_events = first_log.wait_count::<RecognizerEvent>(1, WAIT).await;
        let kinds: Vec<_> = first_events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![RecognizerEventKind::Opened],
            "the first holds its decoder"
        );
    }

    /// A decoder error ends the stream with INTERNAL, once; later events are not reported.
    #[actix_rt::test]
    async fn decoder_error_ends_the_stream_internal() {
        let engine = LocalEngine::with_loader(1, scripted(Script::FailOnPush))
            .unwrap_or_else(|e| panic!("{e}"));
        let (handle, log) = start(&engine, false);
        send_frames(&handle, &[0i16; 3_200], 0);
        let events = until_ended(&log, WAIT).await;
        let ends = ended(&events);
        assert_eq!(ends.len(), 1, "{events:?}");
        assert_eq!(
            ends[0].as_ref().err().map(|f| f.code),
            Some(tonic::Code::Internal)
        );
        assert!(handle.cancel.send(CancelStream).await.is_err(), "stopped");
        assert_eq!(
            log.all::<RecognizerEvent>().len(),
            2,
            "Opened, then the one Ended"
        );
    }

    /// Cancelling a stream frees its worker and reports nothing.
    #[actix_rt::test]
    async fn cancel_frees_the_worker_silently() {
        let engine =
            LocalEngine::with_loader(1, scripted(Script::Count)).unwrap_or_else(|e| panic!("{e}"));
        let (handle, log) = start(&engine, false);
        send_frames(&handle, &[0i16; 1_600], 0);
        let _ = handle.cancel.send(CancelStream).await;
        assert!(engine.wait_idle(1, WAIT), "the worker is free again");
        assert!(ended(&log.all::<RecognizerEvent>()).is_empty());
    }

    /// The same supervision as Google: a worker crash fails the stream, the supervisor restarts
    /// it (the worker reloaded its decoder) with a replay of the audio, and the session gets its
    /// results and a clean finish counting one restart.
    #[actix_rt::test]
    async fn a_crashed_worker_is_a_restart_with_replay() {
        use crate::pipeline::{Pipeline, PipelineFactory};
        use crate::settings::{AudioSettings, SupervisionSettings};
        use std::rc::Rc;

        let loader =
            super::super::test_support::scripted_sequence(vec![Script::PanicOnPush, Script::Count]);
        let engine = LocalEngine::with_loader(1, loader).unwrap_or_else(|e| panic!("{e}"));
        let pipeline = Pipeline {
            recognizers: Rc::new(LocalRecognizerFactory::new(engine)),
            audio: AudioSettings::default(),
            supervision: SupervisionSettings::default(),
            breaker: Arc::new(crate::circuit_breaker::CircuitBreaker::from_settings(
                &SupervisionSettings::default(),
            )),
            ack_interval_ms: 500,
        };
        let (session, log) = Probe::start_new();
        let handle = pipeline.start(
            Arc::from("s1"),
            config(false),
            Probe::session_links(&session),
        );
        handle.audio.do_send(AudioIn {
            data: Bytes::from(vec![0u8; 6_400]),
            audio_id: None,
        });
        handle.end.do_send(EndOfAudio);
        let finished = log.wait_count::<PipelineFinished>(1, WAIT).await;
        assert_eq!(
            finished.first().map(|f| f.summary),
            Some(PipelineSummary {
                results: 1,
                restarts: 1
            }),
            "errors: {:?}",
            log.all::<PipelineError>()
        );
        let warnings = log.all::<PipelineWarning>();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].code, "upstream_reconnecting");
        let finals: Vec<Transcript> = log
            .all::<Transcript>()
            .into_iter()
            .filter(|t| t.is_final)
            .collect();
        // The restarted stream got all 200 ms of audio again (3 200 samples).
        assert_eq!(finals.len(), 1, "{finals:?}");
        assert_eq!(finals[0].transcript, "total 3200");
        assert_eq!((finals[0].start_ms, finals[0].end_ms), (0, 200));
    }
}
