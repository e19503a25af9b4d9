//! Tests of the frame store: re-chunking, the cursor, retention and replay.

use super::*;
use crate::audio::Encoding;

const L16: AudioFormat = AudioFormat {
    encoding: Encoding::Linear16,
    sample_rate_hz: 16_000,
};

/// Audio whose byte i is i mod 251, so any reordering or loss shows.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

fn take_all(store: &mut FrameStore) -> Vec<AudioFrame> {
    std::iter::from_fn(|| store.take_next()).collect()
}

fn concat(frames: &[AudioFrame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.data.iter().copied()).collect()
}

/// Odd-sized chunks come out as exact 100 ms frames, in order, contiguous, nothing lost.
#[test]
fn rechunks_odd_chunks_into_exact_frames() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    let sizes = [1usize, 7, 3_199, 2, 5_000, 13, 1, 6_377];
    let total: usize = sizes.iter().sum();
    let mut at = 0;
    for n in sizes {
        s.push(Bytes::from(pattern(at, n)));
        at += n;
    }
    let frames = take_all(&mut s);
    assert_eq!(frames.len(), total / 3_200);
    assert!(frames.iter().all(|f| f.data.len() == 3_200));
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.start_byte, i as u64 * 3_200);
        assert_eq!(f.start_ms, i as u64 * 100);
    }
    s.flush_partial();
    let rest = take_all(&mut s);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].data.len(), total % 3_200);
    assert_eq!(concat(&[frames, rest].concat()), pattern(0, total));
}

/// Frames never exceed `max_request_bytes`, and stay whole samples when capped.
#[test]
fn frames_are_capped_at_the_request_limit() {
    let big = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 48_000,
    };
    let s = FrameStore::new(big, 1_000, 25_601, 120_000);
    assert_eq!(s.frame_bytes(), 25_600);
    let opus = AudioFormat {
        encoding: Encoding::OggOpus,
        sample_rate_hz: 48_000,
    };
    let mut s = FrameStore::new(opus, 100, 1_000, 120_000);
    s.push(Bytes::from(pattern(0, 2_500)));
    s.push(Bytes::from(pattern(2_500, 10)));
    let frames = take_all(&mut s);
    let sizes: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
    assert_eq!(sizes, vec![1_000, 1_000, 500, 10]);
    assert_eq!(concat(&frames), pattern(0, 2_510));
}

/// A flush never splits a sample: an odd trailing byte of LINEAR16 waits for its partner.
#[test]
fn flush_keeps_whole_samples() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 101)));
    assert_eq!(s.flush_partial(), 100);
    s.push(Bytes::from(pattern(101, 3_199)));
    let frames = take_all(&mut s);
    let sizes: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
    assert_eq!(sizes, vec![100, 3_200]);
    assert_eq!(frames[1].start_byte, 100);
    assert_eq!(concat(&frames), pattern(0, 3_300));
}

/// Replay from t cuts the frame that contains t at the exact byte, and the new stream's first
/// frame carries t as its start.
#[test]
fn replay_cuts_at_the_exact_byte() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 32_000)));
    let sent = take_all(&mut s);
    assert_eq!(sent.len(), 10);
    let start = s.resume_from(437);
    assert_eq!(
        start,
        ReplayStart {
            start_ms: 437,
            missing_ms: 0
        }
    );
    let replay = take_all(&mut s);
    assert_eq!(replay[0].start_ms, 437);
    assert_eq!(replay[0].start_byte, 437 * 32);
    assert_eq!(replay[0].data.len(), 500 * 32 - 437 * 32);
    assert_eq!(concat(&replay), pattern(437 * 32, 32_000 - 437 * 32));
    assert_eq!(s.stream_start_ms(), 437);
}

/// Compressed audio replays from the chunk boundary at or before t.
#[test]
fn compressed_replay_starts_at_a_chunk_boundary() {
    let flac = AudioFormat {
        encoding: Encoding::Flac,
        sample_rate_hz: 16_000,
    };
    // FLAC's nominal rate here: 19 200 B/s = 19.2 B/ms; chunks of 1 920 B = 100 ms.
    let mut s = FrameStore::new(flac, 100, 1_920, 120_000);
    s.push(Bytes::from(pattern(0, 1_920 * 5)));
    take_all(&mut s);
    let start = s.resume_from(250);
    assert_eq!(start.start_ms, 200);
    let replay = take_all(&mut s);
    assert_eq!(replay[0].start_byte, 3_840);
    assert_eq!(concat(&replay), pattern(3_840, 1_920 * 3));
}

/// Replay never starts beyond the audio ever sent, nor skips unsent audio.
#[test]
fn replay_start_is_clamped_to_sent_audio() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 6_400)));
    s.take_next();
    s.push(Bytes::from(pattern(6_400, 3_200)));
    let start = s.resume_from(10_000);
    assert_eq!(start.start_ms, 100);
    let frames = take_all(&mut s);
    assert_eq!(concat(&frames), pattern(3_200, 6_400));
}

/// AfterSent drops what was sent and continues with unsent audio only.
#[test]
fn after_sent_continues_with_unsent_audio() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 6_400)));
    s.take_next();
    s.push(Bytes::from(pattern(6_400, 3_200)));
    s.resume_after_sent();
    assert_eq!(s.stream_start_ms(), 100);
    assert_eq!(s.retained_ms(), 0);
    assert_eq!(concat(&take_all(&mut s)), pattern(3_200, 6_400));
}

/// Finalized drops retained frames that end by then, never one not yet sent.
#[test]
fn finalized_drops_only_sent_final_audio() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 16_000)));
    s.take_next();
    s.take_next();
    s.take_next();
    assert_eq!(s.finalized(250), 2);
    assert_eq!(s.retained_ms(), 100);
    assert_eq!(s.finalized(10_000), 1);
    assert_eq!(s.retained_ms(), 0);
    assert_eq!(concat(&take_all(&mut s)), pattern(9_600, 6_400));
}

/// Beyond `max_replay_ms` the oldest retained audio is dropped; a replay from before it starts
/// at the oldest retained frame and reports what is missing.
#[test]
fn replay_limit_drops_oldest() {
    let mut s = FrameStore::new(L16, 100, 25_600, 300);
    s.push(Bytes::from(pattern(0, 32_000)));
    let mut dropped = 0;
    while s.take_next().is_some() {
        dropped += s.prune_replay();
    }
    assert_eq!(dropped, 700);
    assert_eq!(s.retained_ms(), 300);
    let start = s.resume_from(100);
    assert_eq!(
        start,
        ReplayStart {
            start_ms: 700,
            missing_ms: 600
        }
    );
    assert_eq!(concat(&take_all(&mut s)), pattern(700 * 32, 300 * 32));
}

/// The unsent count is what was accepted but never handed to any stream, replays aside.
#[test]
fn unsent_counts_audio_never_sent() {
    let mut s = FrameStore::new(L16, 100, 25_600, 120_000);
    s.push(Bytes::from(pattern(0, 9_600)));
    assert_eq!(s.unsent_ms_with(0), 300);
    s.take_next();
    assert_eq!(s.unsent_ms_with(3_200), 300);
    s.resume_from(0);
    assert_eq!(s.unsent_ms_with(0), 200);
}
