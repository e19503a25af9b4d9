use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::*;
use crate::audio::Encoding;
use crate::recognizer::local::decoded::DecodedSegment;
use crate::recognizer::local::scheduler::{
    DecoderLoader, Scheduler, SchedulerSettings, SegmentDecoder,
};
use crate::recognizer::local::test_support::speech_like;

const WAIT: Duration = Duration::from_secs(10);

/// Answers with a fixed text, or the segment's length in ms when the text is empty.
struct Echo(Arc<Mutex<String>>);

impl SegmentDecoder for Echo {
    fn decode(&mut self, samples: &[f32]) -> Result<DecodedSegment, String> {
        let text = self.0.lock().map(|t| t.clone()).unwrap_or_default();
        match text.as_str() {
            "" => Ok(DecodedSegment::text_only(format!(
                "ms{}",
                samples.len() / 16
            ))),
            "fail" => Err("scripted failure".into()),
            _ => Ok(DecodedSegment::text_only(text)),
        }
    }
}

fn scheduler(text: &str) -> Scheduler {
    let text = Arc::new(Mutex::new(text.to_string()));
    let loader: DecoderLoader =
        Arc::new(move || Ok(Box::new(Echo(text.clone())) as Box<dyn SegmentDecoder>));
    let settings = SchedulerSettings {
        workers: 1,
        max_load: 0.9,
        max_queue_wait: Duration::from_secs(1),
    };
    Scheduler::start(settings, loader).unwrap_or_else(|e| panic!("{e}"))
}

fn stream(interims: bool, punctuation: bool) -> SegmentStream {
    stream_with(interims, punctuation, false)
}

fn stream_with(interims: bool, punctuation: bool, speculative_finals: bool) -> SegmentStream {
    let format = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 16_000,
    };
    let settings = StreamSettings {
        segmenter: SegmenterSettings::default(),
        redecode_interval: 16_000,
        fold_narrowband: false,
        speculative_finals,
    };
    SegmentStream::new(format, settings, interims, punctuation).unwrap_or_else(|e| panic!("{e}"))
}

/// LINEAR16 bytes of `ms` of speech-like sound or of silence.
fn audio(ms: usize, loud: bool) -> Vec<u8> {
    let samples = if loud {
        speech_like(ms)
    } else {
        vec![0.0; ms * 16]
    };
    samples
        .iter()
        .map(|&s| (s * 32_768.0) as i16)
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

/// Pushes `bytes` in 100 ms frames, waiting for the workers after each (real time is slower
/// still), and collects every result until the stream's finals are in.
fn run(
    stream: &mut SegmentStream,
    scheduler: &Scheduler,
    bytes: &[u8],
    finish: bool,
) -> Vec<Result<SegmentResult, String>> {
    let (ticket, mut results) = scheduler.open();
    let mut out = Vec::new();
    let drain = |stream: &mut SegmentStream,
                 results: &mut mpsc::UnboundedReceiver<_>,
                 out: &mut Vec<Result<SegmentResult, String>>| {
        while let Ok(r) = results.try_recv() {
            match stream.on_result(r) {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            }
        }
    };
    for frame in bytes.chunks(3_200) {
        stream.push(frame, &ticket);
        out.extend(stream.take_ready().into_iter().map(Ok));
        assert!(scheduler.wait_idle(WAIT));
        drain(stream, &mut results, &mut out);
    }
    if finish {
        stream.finish(&ticket);
        out.extend(stream.take_ready().into_iter().map(Ok));
    }
    let deadline = Instant::now() + WAIT;
    while !stream.finals_done() && Instant::now() < deadline {
        assert!(scheduler.wait_idle(WAIT));
        drain(stream, &mut results, &mut out);
    }
    drain(stream, &mut results, &mut out);
    out
}

fn finals(results: &[Result<SegmentResult, String>]) -> Vec<(String, u64, u64)> {
    results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.is_final)
        .map(|r| (r.text.clone(), r.start_sample / 16, r.end_sample / 16))
        .collect()
}

/// Two utterances: two finals with their segments' times; no interims when none are wanted.
#[test]
fn each_utterance_is_a_final() {
    let scheduler = scheduler("");
    let mut s = stream(false, true);
    let bytes = [
        audio(500, false),
        audio(800, true),
        audio(1_000, false),
        audio(600, true),
        audio(1_000, false),
    ]
    .concat();
    let got = run(&mut s, &scheduler, &bytes, true);
    assert_eq!(
        finals(&got),
        vec![
            ("ms1300".into(), 200, 1_500),
            ("ms1100".into(), 2_000, 3_100)
        ]
    );
    assert!(
        got.iter().all(|r| r.as_ref().is_ok_and(|r| r.is_final)),
        "{got:?}"
    );
}

/// A long utterance gets interims about once a second of audio (from its first second on), then
/// its final; an utterance still open at the end becomes a final on `finish`.
#[test]
fn interims_while_speaking_then_the_final() {
    let scheduler = scheduler("");
    let mut s = stream(true, true);
    let bytes = [audio(300, false), audio(3_500, true)].concat();
    let got = run(&mut s, &scheduler, &bytes, true);
    let interims: Vec<u64> = got
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| !r.is_final)
        .map(|r| (r.end_sample - r.start_sample) / 16)
        .collect();
    assert_eq!(interims, vec![1_000, 2_000, 3_000], "{got:?}");
    assert_eq!(finals(&got), vec![("ms3800".into(), 0, 3_800)]);
}

/// Without punctuation the model's sentence marks go; a lone "you" from a short segment is
/// noise and gives nothing.
#[test]
fn text_shaping() {
    assert_eq!(
        strip_punctuation("Hello, world. It's 5-ish!"),
        "Hello world It's 5-ish"
    );
    assert_eq!(strip_punctuation(" ... "), "");
    let scheduler = scheduler("You.");
    let mut s = stream(false, false);
    let short = [audio(600, true), audio(1_000, false)].concat();
    assert_eq!(run(&mut s, &scheduler, &short, true), vec![]);
    let mut s = stream(false, false);
    let long = [audio(1_500, true), audio(1_000, false)].concat();
    assert_eq!(
        finals(&run(&mut s, &scheduler, &long, true)),
        vec![("You".into(), 0, 1_700)]
    );
}

/// A decoding error comes back as the stream's error.
#[test]
fn decoding_errors_are_reported() {
    let scheduler = scheduler("fail");
    let mut s = stream(false, true);
    let bytes = [audio(800, true), audio(1_000, false)].concat();
    let got = run(&mut s, &scheduler, &bytes, true);
    assert_eq!(got, vec![Err("scripted failure".to_string())]);
}

/// Silence alone gives no job and no result.
#[test]
fn silence_gives_nothing() {
    let scheduler = scheduler("");
    let mut s = stream(true, true);
    assert_eq!(run(&mut s, &scheduler, &audio(5_000, false), true), vec![]);
}

/// With speculative finals, each final is decoded once its pad is in and is ready the moment
/// its segment closes: at the frame that closes it, before any decoding of that frame. The
/// finals are those of the plain stream; the speculation also shows as an interim.
#[test]
fn speculative_finals_are_ready_when_the_segment_closes() {
    let bytes = [
        audio(500, false),
        audio(800, true),
        audio(1_000, false),
        audio(600, true),
        audio(1_000, false),
    ]
    .concat();
    let scheduler = scheduler("");
    let plain = run(&mut stream(false, true), &scheduler, &bytes, true);
    let mut s = stream_with(true, true, true);
    let (ticket, mut results) = scheduler.open();
    let mut finals_at_close = Vec::new();
    let mut interims = Vec::new();
    for frame in bytes.chunks(3_200) {
        s.push(frame, &ticket);
        finals_at_close.extend(s.take_ready());
        assert!(scheduler.wait_idle(WAIT));
        while let Ok(r) = results.try_recv() {
            match s.on_result(r) {
                Ok(Some(r)) if !r.is_final => interims.push(r),
                other => panic!("only interims come from decodes here: {other:?}"),
            }
        }
    }
    s.finish(&ticket);
    assert!(s.take_ready().is_empty() && s.finals_done());
    let speculated = finals(&finals_at_close.into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!(speculated, finals(&plain));
    // Regular interims (each second of a segment) come too; the speculations are those with a
    // final's bounds.
    let shown: Vec<(String, u64, u64)> = interims
        .iter()
        .map(|r| (r.text.clone(), r.start_sample / 16, r.end_sample / 16))
        .filter(|(_, start, end)| speculated.iter().any(|f| (f.1, f.2) == (*start, *end)))
        .collect();
    assert_eq!(
        shown, speculated,
        "each speculation shown as an interim first"
    );
}

/// A pause shorter than the end of speech inside an utterance: the speculation made in it is
/// dropped when speech comes back (its result never shown as a final), and the final covers
/// the whole utterance.
#[test]
fn a_speculation_is_dropped_when_speech_comes_back() {
    let scheduler = scheduler("");
    let mut s = stream_with(false, true, true);
    let bytes = [
        audio(500, false),
        audio(800, true),
        audio(400, false),
        audio(800, true),
        audio(1_000, false),
    ]
    .concat();
    let got = run(&mut s, &scheduler, &bytes, true);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(finals(&got), vec![("ms2500".into(), 200, 2_700)]);
}

/// When the workers are slow, the speculation is still decoding as the segment closes: it
/// becomes the final job itself (no second decode), and the final comes from it.
#[test]
fn a_speculation_still_decoding_becomes_the_final_job() {
    let scheduler = scheduler("");
    let mut s = stream_with(false, true, true);
    let (ticket, mut results) = scheduler.open();
    let head = [audio(500, false), audio(800, true), audio(200, false)].concat();
    s.push(&head, &ticket);
    assert!(s.take_ready().is_empty());
    // Not waiting for the worker: the segment closes while its speculation may be in flight.
    s.push(&audio(300, false), &ticket);
    let mut got = s.take_ready();
    s.finish(&ticket);
    let deadline = Instant::now() + WAIT;
    while !s.finals_done() && Instant::now() < deadline {
        assert!(scheduler.wait_idle(WAIT));
        while let Ok(r) = results.try_recv() {
            got.extend(s.on_result(r).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    let texts: Vec<(bool, String)> = got.iter().map(|r| (r.is_final, r.text.clone())).collect();
    assert_eq!(texts, vec![(true, "ms1300".to_string())]);
}
