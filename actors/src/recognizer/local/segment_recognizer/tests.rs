use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::audio::{AudioFormat, Encoding};
use crate::protocol::StartConfig;
use crate::recognizer::local::moonshine;
use crate::recognizer::local::scheduler::{DecoderLoader, SchedulerSettings, SegmentDecoder};
use crate::recognizer::local::test_support::{read_raw, speech_like, GOFORWARD};
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

/// Answers "seg <ms>" for a segment of that length; the first decoder a loader makes can be
/// told to panic instead.
struct Echo {
    panics: bool,
}

impl SegmentDecoder for Echo {
    fn decode(&mut self, samples: &[f32]) -> Result<String, String> {
        if self.panics {
            panic!("scripted panic");
        }
        Ok(format!("seg {}", samples.len() / 16))
    }
}

fn echo_engine(first_panics: bool, max_load: f64) -> SegmentEngine {
    let loaded = Arc::new(AtomicUsize::new(0));
    let loader: DecoderLoader = Arc::new(move || {
        let n = loaded.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Echo {
            panics: first_panics && n == 0,
        }) as Box<dyn SegmentDecoder>)
    });
    let settings = SchedulerSettings {
        workers: 1,
        max_load,
        max_queue_wait: Duration::from_secs(5),
    };
    SegmentEngine {
        scheduler: Scheduler::start(settings, loader).unwrap_or_else(|e| panic!("{e}")),
        stream: moonshine::stream_settings(&LocalSettings::default()),
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

/// goforward.raw on the real Moonshine engine, from 5 s into the session: the final "Go forward
/// ten meters" (punctuation off) with its segment's times on the session clock, then one clean
/// end after `End`.
#[actix_rt::test]
async fn transcribes_real_speech_on_the_session_clock() {
    let settings = LocalSettings {
        workers: 1,
        ..LocalSettings::default()
    };
    let engine = moonshine::start(&settings).unwrap_or_else(|e| panic!("{e}"));
    let samples = read_raw(GOFORWARD);
    let (handle, log) = start(&engine, config(false, false));
    send_frames(&handle, &samples, 5_000);
    handle.audio.do_send(UpstreamAudio::End);
    let events = log
        .wait_for::<RecognizerEvent>(WAIT, |e| !ended(e).is_empty())
        .await;
    assert_eq!(ended(&events), vec![Ok(())], "{events:?}");
    let finals: Vec<Transcript> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(finals.len(), 1, "{events:?}");
    assert_eq!(finals[0].transcript.to_lowercase(), "go forward ten meters");
    let audio_end_ms = 5_000 + samples.len() as u64 / 16;
    assert!(
        finals[0].start_ms >= 5_000 && finals[0].end_ms <= audio_end_ms,
        "{finals:?}"
    );
    assert!(finals[0].end_ms > finals[0].start_ms + 1_000);
    assert!(engine.scheduler.wait_idle(WAIT));
}

/// Single-utterance mode: the first final ends the stream, without waiting for `End`.
#[actix_rt::test]
async fn single_utterance_ends_at_the_first_final() {
    let engine = echo_engine(false, 0.9);
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
    let engine = echo_engine(false, 1e-9);
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

/// A worker crash is a restart with replay: the supervisor starts a new stream, the buffer
/// replays the audio, and the session gets the final once, with one restart counted.
#[actix_rt::test]
async fn a_crash_is_a_restart_with_replay() {
    use crate::pipeline::{Pipeline, PipelineFactory};
    use crate::settings::{AudioSettings, SupervisionSettings};
    use std::rc::Rc;

    let engine = echo_engine(true, 0.9);
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
    let bytes: Vec<u8> = utterance(800, 1_000)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    handle.audio.do_send(AudioIn {
        data: Bytes::from(bytes),
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
    let finals: Vec<Transcript> = log
        .all::<Transcript>()
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0].transcript, "seg 1000");
    assert_eq!((finals[0].start_ms, finals[0].end_ms), (0, 1_000));
}

/// Cancelling a stream reports nothing and withdraws its work.
#[actix_rt::test]
async fn cancel_is_silent() {
    let engine = echo_engine(false, 0.9);
    let (handle, log) = start(&engine, config(false, true));
    send_frames(&handle, &utterance(800, 0), 0);
    let _ = handle.cancel.send(CancelStream).await;
    assert!(engine.scheduler.wait_idle(WAIT));
    assert!(ended(&log.all::<RecognizerEvent>()).is_empty());
}

/// Audio the engine cannot convert ends the stream with INVALID_ARGUMENT.
#[actix_rt::test]
async fn unsupported_audio_is_invalid_argument() {
    let engine = echo_engine(false, 0.9);
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
