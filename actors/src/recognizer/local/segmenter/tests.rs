use super::*;
use crate::recognizer::local::test_support::speech_like;

fn speech(ms: usize) -> Vec<f32> {
    speech_like(ms)
}

/// `ms` of digital silence.
fn silence(ms: usize) -> Vec<f32> {
    vec![0.0; ms * 16]
}

fn concat(parts: &[Vec<f32>]) -> Vec<f32> {
    parts.concat()
}

/// (start, end) of each segment in ms, pushing `audio` in pieces of `chunk` samples.
fn segments(audio: &[f32], chunk: usize, settings: SegmenterSettings) -> Vec<Segment> {
    let mut segmenter = Segmenter::new(settings);
    let mut out = Vec::new();
    for piece in audio.chunks(chunk.max(1)) {
        out.extend(segmenter.push(piece));
    }
    out.extend(segmenter.finish());
    out
}

fn bounds(segments: &[Segment]) -> Vec<(u64, u64)> {
    segments
        .iter()
        .map(|s| (s.start_sample / 16, s.end_sample() / 16))
        .collect()
}

/// Two utterances separated by a second of silence: two segments, each padded 300 ms before
/// and 200 ms after its speech, with the samples of the stream at those places.
#[test]
fn utterances_become_padded_segments() {
    let audio = concat(&[
        silence(1_000),
        speech(1_000),
        silence(1_000),
        speech(500),
        silence(1_000),
    ]);
    let got = segments(&audio, 1_600, SegmenterSettings::default());
    assert_eq!(bounds(&got), vec![(700, 2_200), (2_700, 3_700)]);
    for s in &got {
        let start = s.start_sample as usize;
        assert_eq!(s.samples, audio[start..start + s.samples.len()]);
    }
}

/// The segments do not depend on how the audio was chunked.
#[test]
fn chunking_does_not_change_segments() {
    let audio = concat(&[
        silence(300),
        speech(700),
        silence(600),
        speech(2_000),
        silence(200),
        speech(300),
    ]);
    let reference = segments(&audio, audio.len(), SegmenterSettings::default());
    assert_eq!(reference.len(), 2, "{:?}", bounds(&reference));
    for chunk in [1, 77, 160, 333, 1_600, 8_000] {
        assert_eq!(
            segments(&audio, chunk, SegmenterSettings::default()),
            reference,
            "chunk {chunk}"
        );
    }
}

/// Silence, a lone click and a too-short blip give no segment at all.
#[test]
fn no_segment_without_speech() {
    let mut click = silence(1_000);
    click.extend(speech(20));
    click.extend(silence(1_000));
    assert_eq!(
        segments(&click, 1_600, SegmenterSettings::default()),
        vec![]
    );
    let blip = concat(&[silence(500), speech(100), silence(1_000)]);
    assert_eq!(segments(&blip, 1_600, SegmenterSettings::default()), vec![]);
    assert_eq!(
        segments(&silence(5_000), 1_600, SegmenterSettings::default()),
        vec![]
    );
}

/// Speech still going on at the end of the audio is closed by `finish`, and the open segment
/// is visible before that.
#[test]
fn finish_closes_the_open_segment() {
    let audio = concat(&[silence(500), speech(1_500)]);
    let mut segmenter = Segmenter::new(SegmenterSettings::default());
    assert_eq!(segmenter.push(&audio), vec![]);
    let (start, open) = segmenter.open_segment().unwrap_or((0, &[]));
    assert_eq!((start / 16, open.len() / 16), (200, 1_800));
    let last = segmenter.finish();
    assert_eq!(
        last.map(|s| (s.start_sample / 16, s.end_sample() / 16)),
        Some((200, 2_000))
    );
    assert!(segmenter.open_segment().is_none());
}

/// Speech longer than the cap is cut at its last pause past the first third, or at the cap
/// when it has none; nothing is lost between the pieces.
#[test]
fn long_speech_is_cut_at_a_pause() {
    let settings = SegmenterSettings {
        max_segment_ms: 3_000,
        ..SegmenterSettings::default()
    };
    // Speech, a 200 ms pause 1.8 s in, speech on for 4 s more.
    let audio = concat(&[speech(1_800), silence(200), speech(4_000), silence(1_000)]);
    let got = segments(&audio, 1_600, settings);
    let b = bounds(&got);
    assert_eq!(b[0], (0, 1_900), "cut in the middle of the pause: {b:?}");
    assert_eq!(b[1].0, 1_900);
    for pair in b.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "contiguous: {b:?}");
    }
    assert_eq!(b.last().map(|s| s.1), Some(6_200));
    // No pause at all: cut at the cap.
    let audio = concat(&[speech(7_000), silence(1_000)]);
    let b = bounds(&segments(&audio, 1_600, settings));
    assert_eq!(b, vec![(0, 3_000), (3_000, 6_000), (6_000, 7_200)]);
}

/// A segment never reaches back into the previous one, even when the pause is shorter than
/// the padding.
#[test]
fn segments_do_not_overlap() {
    let settings = SegmenterSettings {
        end_silence_ms: 300,
        ..SegmenterSettings::default()
    };
    let audio = concat(&[speech(1_000), silence(350), speech(1_000), silence(1_000)]);
    let b = bounds(&segments(&audio, 1_600, settings));
    assert_eq!(b.len(), 2, "{b:?}");
    assert!(b[0].1 <= b[1].0, "{b:?}");
}

/// The settled segment is known from `post_pad_ms` of silence on, holds exactly the samples the
/// segment closes with at `end_silence_ms`, and is gone again when speech comes back.
#[test]
fn the_settled_segment_is_the_segment_to_come() {
    let settings = SegmenterSettings::default();
    let mut segmenter = Segmenter::new(settings);
    let audio = concat(&[silence(500), speech(800)]);
    assert!(segmenter.push(&audio).is_empty());
    assert!(segmenter.settled_segment().is_none(), "still speaking");
    assert!(segmenter.push(&silence(190)).is_empty());
    assert!(
        segmenter.settled_segment().is_none(),
        "the pad is not all here"
    );
    assert!(segmenter.push(&silence(10)).is_empty());
    let (start, settled) = segmenter
        .settled_segment()
        .map(|(start, samples)| (start, samples.to_vec()))
        .unwrap_or_else(|| panic!("settled after 200 ms of silence"));
    // A pause shorter than end_silence_ms, then speech: nothing settled any more.
    let mut resumed = Segmenter::new(settings);
    resumed.push(&concat(&[audio.clone(), silence(300)]));
    assert!(resumed.settled_segment().is_some());
    resumed.push(&speech(100));
    assert!(resumed.settled_segment().is_none(), "speech came back");
    // Silence up to end_silence_ms closes the segment the settled one announced.
    let closed = segmenter.push(&silence(300));
    assert_eq!(
        closed,
        vec![Segment {
            start_sample: start,
            samples: settled
        }]
    );
    assert_eq!(bounds(&closed), vec![(200, 1_500)]);
    assert!(segmenter.settled_segment().is_none());
    // Too little speech to be kept: never settled.
    let mut cough = Segmenter::new(settings);
    cough.push(&concat(&[silence(500), speech(100), silence(400)]));
    assert!(cough.settled_segment().is_none());
}
