use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::audio::{AudioFormat, Encoding};
use crate::protocol::StartConfig;
use crate::recognizer::local::decoded::DecodedSegment;
use crate::recognizer::local::scheduler::{
    DecoderLoader, Scheduler, SchedulerSettings, SegmentDecoder,
};
use crate::recognizer::local::segment_engine::stream_settings;
use crate::recognizer::local::test_support::{read_raw, speech_like, GOFORWARD, GOFORWARD_WORDS};
use crate::recognizer::local::{moonshine, pocketsphinx};
use crate::settings::LocalSettings;
use crate::testing::{Probe, ProbeLog};

const WAIT: Duration = Duration::from_secs(30);

fn config(single_utterance: bool, punctuation: bool) -> Arc<StartConfig> {
    Arc::new(StartConfig {
        format: AudioFormat {
            encoding: Encoding::Linear16,
            sample_rate_hz: 16_000,
        },
        language_code: "en-US".into(),
        interim_results: true,
        enable_automatic_punctuation: punctuation,
        model: String::new(),
        phrases: Vec::new(),
        single_utterance,
        features: Default::default(),
        frame_ms: None,
    })
}

fn start(engine: &SegmentEngine, config: Arc<StartConfig>) -> (StreamHandle, ProbeLog) {
    let (events, log) = Probe::start_new();
    let handle = SegmentRecognizerFactory::new(engine.clone()).start(StreamRequest {
        stream_id: 4,
        session_id: Arc::from("s1"),
        config,
        events: events.recipient(),
    });
    (handle, log)
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

fn ended(events: &[RecognizerEvent]) -> Vec<Result<(), StreamFailure>> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RecognizerEventKind::Ended(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn transcripts(events: &[RecognizerEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RecognizerEventKind::Result(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// What an [`Echo`] engine does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The first decoder the loader makes panics (the worker reloads a good one).
    FirstDecoderPanics,
    /// The n-th decode of the engine (from 0, any worker) returns an error.
    DecodeFails(usize),
}

/// Answers "seg <ms>" for a segment of that length, or fails as its [`Fault`] says.
struct Echo {
    panics: bool,
    /// Decodes so far, shared by every decoder of the engine.
    decodes: Arc<AtomicUsize>,
    fail_decode: Option<usize>,
}

impl SegmentDecoder for Echo {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
        let n = self.decodes.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            panic!("scripted panic");
        }
        if self.fail_decode == Some(n) {
            return Err("scripted failure".into());
        }
        Ok(DecodedSegment::text_only(format!(
            "seg {}",
            samples.len() / 16
        )))
    }
}

fn echo_engine(fault: Fault, max_load: f64) -> SegmentEngine {
    let loaded = Arc::new(AtomicUsize::new(0));
    let decodes = Arc::new(AtomicUsize::new(0));
    let loader: DecoderLoader = Arc::new(move || {
        let n = loaded.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Echo {
            panics: fault == Fault::FirstDecoderPanics && n == 0,
            decodes: decodes.clone(),
            fail_decode: match fault {
                Fault::DecodeFails(n) => Some(n),
                _ => None,
            },
        }) as Box<dyn SegmentDecoder>)
    });
    let settings = SchedulerSettings {
        workers: 1,
        max_load,
        max_queue_wait: Duration::from_secs(5),
    };
    SegmentEngine {
        scheduler: Scheduler::start(settings, loader).unwrap_or_else(|e| panic!("{e}")),
        stream: stream_settings(&LocalSettings::default(), moonshine::MODEL_TRAITS),
    }
}

/// `ms` of speech-like sound, then `silence_ms` of silence (16 kHz samples).
fn utterance(ms: usize, silence_ms: usize) -> Vec<i16> {
    let mut out: Vec<i16> = speech_like(ms)
        .iter()
        .map(|&s| (s * 32_768.0) as i16)
        .collect();
    out.extend(vec![0i16; silence_ms * 16]);
    out
}

/// goforward.raw streamed on one worker of `engine` from 5 s into the session, then `End`: the
/// one final, after checking the stream ended cleanly and its segment lies on the session clock
/// inside the audio.
async fn goforward_final(engine: SegmentEngine) -> Transcript {
    let samples = read_raw(GOFORWARD);
    let (handle, log) = start(&engine, config(false, false));
    send_frames(&handle, &samples, 5_000);
    handle.audio.do_send(UpstreamAudio::End);
    let events = log
        .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
        .await;
    assert_eq!(ended(&events), vec![Ok(())], "{events:?}");
    let mut finals: Vec<Transcript> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(finals.len(), 1, "{events:?}");
    let audio_end_ms = 5_000 + samples.len() as u64 / 16;
    assert!(
        finals[0].start_ms >= 5_000 && finals[0].end_ms <= audio_end_ms,
        "{finals:?}"
    );
    assert!(finals[0].end_ms > finals[0].start_ms + 1_000);
    assert!(engine.scheduler.wait_idle(WAIT));
    finals.remove(0)
}

fn one_worker() -> LocalSettings {
    LocalSettings {
        workers: 1,
        ..LocalSettings::default()
    }
}

/// goforward.raw on the real Moonshine engine: the final "Go forward ten meters" (punctuation
/// off) with its segment's times on the session clock, and no word times.
#[actix_rt::test]
async fn transcribes_real_speech_on_the_session_clock() {
    let engine = moonshine::start(&one_worker()).unwrap_or_else(|e| panic!("{e}"));
    let last = goforward_final(engine).await;
    assert_eq!(last.transcript.to_lowercase(), "go forward ten meters");
    assert!(last.words.is_empty(), "{last:?}");
}

/// goforward.raw on PocketSphinx, on the same workers and scheduling as Moonshine: the final
/// "go forward ten meters" with its words' times and posteriors on the session clock, inside the
/// segment.
#[actix_rt::test]
async fn pocketsphinx_gives_timed_words_on_the_session_clock() {
    let engine = pocketsphinx::start(&one_worker()).unwrap_or_else(|e| panic!("{e}"));
    let last = &goforward_final(engine).await;
    assert_eq!(last.transcript, GOFORWARD_WORDS);
    let words: Vec<&str> = last.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(words.join(" "), GOFORWARD_WORDS);
    let first_word = &last.words[0];
    let last_word = &last.words[last.words.len() - 1];
    assert!(last.start_ms >= 5_000 && first_word.start_ms >= last.start_ms);
    assert!(last_word.end_ms <= last.end_ms, "{last:?}");
    assert!(last.words.windows(2).all(|w| w[0].end_ms <= w[1].start_ms));
    assert!(last.confidence > 0.0 && last.confidence <= 1.0, "{last:?}");
}

/// Single-utterance mode: the first final ends the stream, without waiting for `End`.
#[actix_rt::test]
async fn single_utterance_ends_at_the_first_final() {
    let engine = echo_engine(Fault::None, 0.9);
    let (handle, log) = start(&engine, config(true, true));
    send_frames(&handle, &utterance(800, 1_000), 0);
    let events = log
        .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
        .await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match &e.kind {
            RecognizerEventKind::Result(t) => format!("final:{}", t.transcript),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "Opened",
            "EndOfSingleUtterance",
            "final:seg 1000",
            "Ended(Ok(()))"
        ]
    );
}

/// When the measured load is over the limit, a new stream's only event is `Busy`, saying why.
#[actix_rt::test]
async fn overload_reports_busy() {
    let engine = echo_engine(Fault::None, 1e-9);
    let (first, log) = start(&engine, config(false, true));
    send_frames(&first, &utterance(800, 1_000), 0);
    first.audio.do_send(UpstreamAudio::End);
    log.wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
        .await;
    let (second, log) = start(&engine, config(false, true));
    let events = log.wait_count::<RecognizerEvent>(1, WAIT).await;
    let RecognizerEventKind::Busy(message) = &events[0].kind else {
        panic!("{events:?}");
    };
    assert!(
        message.contains("busy") && message.contains("%"),
        "{message}"
    );
    assert!(second.cancel.send(CancelStream).await.is_err(), "stopped");
}

/// Streams `audio` through a whole pipeline on `engine` (a probe as the session) to its end;
/// the finals (text, start, end), the restarts, and the warnings' codes.
async fn through_a_pipeline(
    engine: SegmentEngine,
    audio: Vec<i16>,
) -> (Vec<(String, u64, u64)>, u64, Vec<String>) {
    use crate::pipeline::{Pipeline, PipelineFactory};
    use crate::settings::{AudioSettings, SupervisionSettings};
    use std::rc::Rc;

    let pipeline = Pipeline {
        recognizers: Rc::new(SegmentRecognizerFactory::new(engine)),
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
        config(false, true),
        Probe::session_links(&session),
    );
    let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
    handle.audio.do_send(AudioIn {
        data: Bytes::from(bytes),
        audio_id: None,
    });
    handle.end.do_send(EndOfAudio);
    let finished = log.wait_count::<PipelineFinished>(1, WAIT).await;
    let summary = finished.first().map(|f| f.summary);
    assert!(
        summary.is_some(),
        "errors: {:?}",
        log.all::<PipelineError>()
    );
    let finals = log
        .all::<Transcript>()
        .into_iter()
        .filter(|t| t.is_final)
        .map(|t| (t.transcript, t.start_ms, t.end_ms))
        .collect();
    let warnings = log
        .all::<PipelineWarning>()
        .into_iter()
        .map(|w| w.code.to_string())
        .collect();
    (finals, summary.map_or(0, |s| s.restarts), warnings)
}

/// A worker crash is a restart with replay: the supervisor starts a new stream, the buffer
/// replays the audio, and the session gets the final once, with one restart counted.
#[actix_rt::test]
async fn a_crash_is_a_restart_with_replay() {
    let engine = echo_engine(Fault::FirstDecoderPanics, 0.9);
    let (finals, restarts, warnings) = through_a_pipeline(engine, utterance(800, 1_000)).await;
    assert_eq!(finals, vec![("seg 1000".to_string(), 0, 1_000)]);
    assert_eq!(restarts, 1);
    assert_eq!(warnings, vec!["upstream_reconnecting"]);
}

/// A failing inference in the middle of a stream — the second of three segments — is a restart
/// with a replay from the end of the first final: nothing is lost and nothing repeated, every
/// final comes once, in order, with its segment's times on the session clock.
#[actix_rt::test]
async fn a_failing_inference_is_a_restart_with_replay_and_nothing_lost() {
    let engine = echo_engine(Fault::DecodeFails(1), 0.9);
    let audio = [
        utterance(800, 1_000),
        utterance(800, 1_000),
        utterance(800, 1_000),
    ]
    .concat();
    let (finals, restarts, warnings) = through_a_pipeline(engine, audio).await;
    // Each segment reaches 300 ms before its speech and 200 ms past it (the first cannot reach
    // before the start).
    assert_eq!(
        finals,
        vec![
            ("seg 1000".to_string(), 0, 1_000),
            ("seg 1300".to_string(), 1_500, 2_800),
            ("seg 1300".to_string(), 3_300, 4_600),
        ]
    );
    assert_eq!(restarts, 1);
    assert_eq!(warnings, vec!["upstream_reconnecting"]);
}

/// Cancelling a stream reports nothing and withdraws its work.
#[actix_rt::test]
async fn cancel_is_silent() {
    let engine = echo_engine(Fault::None, 0.9);
    let (handle, log) = start(&engine, config(false, true));
    send_frames(&handle, &utterance(800, 0), 0);
    let _ = handle.cancel.send(CancelStream).await;
    assert!(engine.scheduler.wait_idle(WAIT));
    assert!(ended(&log.all::<RecognizerEvent>()).is_empty());
}

/// Audio the engine cannot convert ends the stream with INVALID_ARGUMENT.
#[actix_rt::test]
async fn unsupported_audio_is_invalid_argument() {
    let engine = echo_engine(Fault::None, 0.9);
    let mut bad = (*config(false, true)).clone();
    bad.format.encoding = Encoding::Flac;
    let (_handle, log) = start(&engine, Arc::new(bad));
    let events = log
        .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
        .await;
    assert_eq!(
        ended(&events)[0].as_ref().err().map(|f| f.code),
        Some(tonic::Code::InvalidArgument),
        "{events:?}"
    );
}
