//! The audio buffer's store: one session's audio as upstream frames, with the bookkeeping that
//! says which frames the current stream has had, which were sent but are not final yet (kept for
//! replay), and which were never sent.
//!
//! ```text
//!   frames: [ retained (sent, not final) ........ | pending (never sent) ] partial
//!                         ▲ cursor: next frame for the current stream
//!                                                 ▲ high_water: furthest byte ever sent
//! ```
//!
//! Pure data, no actor: the [`super::AudioBuffer`] decides when to take a frame (pacing) and
//! where to attach a stream; this decides what the bytes are. Every operation on the hot path
//! (push, take) is O(1) per frame.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::audio::AudioFormat;
use crate::messages::AudioFrame;

/// Where the current stream starts: the frame at the cursor is cut here if it starts earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    byte: u64,
    /// The session time the stream starts at (the requested time when the cut is exact).
    ms: u64,
}

/// How an attach with replay was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStart {
    /// The session time the stream starts at.
    pub start_ms: u64,
    /// Audio wanted for the replay but no longer retained (`max_replay_ms`), in ms; 0 normally.
    pub missing_ms: u64,
}

/// One session's audio, re-chunked into frames. See the module doc.
pub struct FrameStore {
    /// The session's audio format: how bytes map to time and where a frame may be cut.
    format: AudioFormat,
    /// Bytes per sample for uncompressed encodings, whose frames and cuts fall on whole samples;
    /// `None` for compressed encodings, whose chunks are passed through uncut.
    sample_bytes: Option<usize>,
    /// Length of every full frame (uncompressed), or the largest chunk (compressed).
    frame_bytes: usize,
    /// Complete frames, contiguous, from the oldest retained one to the newest.
    frames: VecDeque<AudioFrame>,
    /// Uncompressed audio of the frame being filled (whole frames are never copied into it).
    partial: BytesMut,
    /// Byte offset where `partial` starts: the end of the newest complete frame.
    frames_end: u64,
    /// Every byte accepted from the client.
    accepted_bytes: u64,
    /// End of the furthest frame ever handed to a stream: the line between sent and unsent audio.
    high_water: u64,
    /// Index in `frames` of the next frame for the current stream.
    cursor: usize,
    /// Where the current stream started.
    cut: Cut,
    /// `max_replay_ms` in bytes: sent audio retained beyond this is dropped, oldest first.
    replay_limit_bytes: u64,
}

impl FrameStore {
    /// A store for `format`: frames of `frame_ms` (uncompressed) or chunks of at most
    /// `max_request_bytes` (compressed), never over `max_request_bytes`.
    pub fn new(
        format: AudioFormat,
        frame_ms: u64,
        max_request_bytes: usize,
        max_replay_ms: u64,
    ) -> FrameStore {
        let sample_bytes = format.encoding.sample_bytes();
        let frame_bytes = match sample_bytes {
            Some(sample) => {
                let wanted = usize::try_from(format.ms_to_bytes(frame_ms)).unwrap_or(usize::MAX);
                let limit = max_request_bytes - max_request_bytes % sample;
                (wanted.min(limit) / sample * sample).max(sample)
            }
            None => max_request_bytes.max(1),
        };
        FrameStore {
            format,
            sample_bytes,
            frame_bytes,
            frames: VecDeque::new(),
            partial: BytesMut::new(),
            frames_end: 0,
            accepted_bytes: 0,
            high_water: 0,
            cursor: 0,
            cut: Cut { byte: 0, ms: 0 },
            replay_limit_bytes: format.ms_to_bytes(max_replay_ms),
        }
    }

    /// The length of a full frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Milliseconds of audio accepted so far.
    pub fn accepted_ms(&self) -> u64 {
        self.format.bytes_to_ms(self.accepted_bytes)
    }

    /// The end of the furthest audio ever handed to a stream, in bytes (never goes back).
    pub fn sent_bytes(&self) -> u64 {
        self.high_water
    }

    /// Every byte accepted from the client.
    pub fn accepted_bytes(&self) -> u64 {
        self.accepted_bytes
    }

    /// Milliseconds of audio never sent to any stream if `extra` more bytes were accepted.
    pub fn unsent_ms_with(&self, extra: usize) -> u64 {
        let unsent = self.accepted_bytes + extra as u64 - self.high_water;
        self.format.bytes_to_ms(unsent)
    }

    /// Sent audio still retained for replay, in ms.
    pub fn retained_ms(&self) -> u64 {
        let oldest = self
            .frames
            .front()
            .map_or(self.frames_end, |f| f.start_byte);
        self.format
            .bytes_to_ms(self.high_water.saturating_sub(oldest))
    }

    /// Accepts client audio, in order.
    pub fn push(&mut self, mut data: Bytes) {
        self.accepted_bytes += data.len() as u64;
        if self.sample_bytes.is_none() {
            while !data.is_empty() {
                let n = data.len().min(self.frame_bytes);
                let chunk = data.split_to(n);
                self.push_frame(chunk);
            }
            return;
        }
        if !self.partial.is_empty() {
            let n = (self.frame_bytes - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data.split_to(n));
            if self.partial.len() == self.frame_bytes {
                let frame = self.partial.split().freeze();
                self.push_frame(frame);
            }
        }
        while data.len() >= self.frame_bytes {
            let frame = data.split_to(self.frame_bytes);
            self.push_frame(frame);
        }
        if !data.is_empty() {
            self.partial.extend_from_slice(&data);
        }
    }

    /// Turns the partial frame into a (short) frame, keeping back a trailing fraction of a sample
    /// so every frame holds whole samples. Returns the byte where the complete frames end.
    pub fn flush_partial(&mut self) -> u64 {
        if let Some(sample) = self.sample_bytes {
            let whole = self.partial.len() - self.partial.len() % sample;
            if whole > 0 {
                let frame = self.partial.split_to(whole).freeze();
                self.push_frame(frame);
            }
        }
        self.frames_end
    }

    fn push_frame(&mut self, data: Bytes) {
        let start_byte = self.frames_end;
        self.frames_end += data.len() as u64;
        self.frames.push_back(AudioFrame {
            start_ms: self.format.bytes_to_ms(start_byte),
            start_byte,
            data,
        });
    }

    /// Where the current stream's next frame starts (bytes); at the end of the complete frames
    /// when it has had them all.
    pub fn stream_position(&self) -> u64 {
        match self.frames.get(self.cursor) {
            Some(f) => f.start_byte.max(self.cut.byte),
            None => self.frames_end.max(self.cut.byte),
        }
    }

    /// The session time the current stream started at.
    pub fn stream_start_ms(&self) -> u64 {
        self.cut.ms
    }

    /// Byte offset → session time.
    pub fn byte_to_ms(&self, byte: u64) -> u64 {
        self.format.bytes_to_ms(byte)
    }

    /// The end (session time) of the next frame for the current stream, if one is complete.
    pub fn next_end_ms(&self) -> Option<u64> {
        self.frames
            .get(self.cursor)
            .map(|f| self.format.bytes_to_ms(f.start_byte + f.data.len() as u64))
    }

    /// Hands the next frame to the current stream (cut at the stream's start if need be).
    pub fn take_next(&mut self) -> Option<AudioFrame> {
        let f = self.frames.get(self.cursor)?;
        let end = f.start_byte + f.data.len() as u64;
        let frame = if f.start_byte < self.cut.byte {
            let offset = usize::try_from(self.cut.byte - f.start_byte).unwrap_or(usize::MAX);
            AudioFrame {
                start_ms: self.cut.ms,
                start_byte: self.cut.byte,
                data: f.data.slice(offset.min(f.data.len())..),
            }
        } else {
            f.clone()
        };
        self.cursor += 1;
        self.high_water = self.high_water.max(end);
        Some(frame)
    }

    /// Places a new stream at session time `t_ms` in the retained audio: exactly at the sample
    /// for uncompressed audio, at the chunk boundary at or before it otherwise. Audio before the
    /// start is final and dropped. A start beyond what was ever sent is moved back to the first
    /// unsent byte; one before the oldest retained frame starts there (`missing_ms` says how much
    /// was lost).
    pub fn resume_from(&mut self, t_ms: u64) -> ReplayStart {
        let oldest = self
            .frames
            .front()
            .map_or(self.frames_end, |f| f.start_byte);
        let (byte, ms) = match self.sample_bytes {
            Some(_) => {
                let wanted = self.format.ms_to_bytes(t_ms);
                if wanted > self.high_water {
                    (self.high_water, self.format.bytes_to_ms(self.high_water))
                } else if wanted < oldest {
                    (oldest, self.format.bytes_to_ms(oldest))
                } else {
                    (wanted, t_ms)
                }
            }
            None => {
                let at_or_before = self.frames.partition_point(|f| f.start_ms <= t_ms);
                match at_or_before.checked_sub(1).and_then(|i| self.frames.get(i)) {
                    Some(f) if f.start_byte < self.high_water => (f.start_byte, f.start_ms),
                    Some(_) => (self.high_water, self.format.bytes_to_ms(self.high_water)),
                    None => (oldest, self.format.bytes_to_ms(oldest)),
                }
            }
        };
        while let Some(f) = self.frames.front() {
            if f.start_byte + f.data.len() as u64 <= byte {
                self.frames.pop_front();
            } else {
                break;
            }
        }
        self.cursor = 0;
        self.cut = Cut { byte, ms };
        ReplayStart {
            start_ms: ms,
            missing_ms: ms.saturating_sub(t_ms),
        }
    }

    /// Places a new stream after everything ever sent (all of it is final): drops what is retained.
    pub fn resume_after_sent(&mut self) {
        while let Some(f) = self.frames.front() {
            if f.start_byte + f.data.len() as u64 <= self.high_water {
                self.frames.pop_front();
            } else {
                break;
            }
        }
        self.cursor = 0;
        self.cut = Cut {
            byte: self.high_water,
            ms: self.format.bytes_to_ms(self.high_water),
        };
    }

    /// Audio before `upto_ms` is final: drops the retained frames that end by then (never a frame
    /// the current stream has not had yet). Returns how many were dropped.
    pub fn finalized(&mut self, upto_ms: u64) -> usize {
        let upto = self.format.ms_to_bytes(upto_ms);
        let mut dropped = 0;
        while self.cursor > 0 {
            match self.frames.front() {
                Some(f) if f.start_byte + f.data.len() as u64 <= upto => {
                    self.frames.pop_front();
                    self.cursor -= 1;
                    dropped += 1;
                }
                _ => break,
            }
        }
        dropped
    }

    /// Enforces `max_replay_ms`: drops the oldest retained frames (already had by the current
    /// stream) beyond it. Returns the milliseconds dropped.
    pub fn prune_replay(&mut self) -> u64 {
        let mut dropped = 0u64;
        while self.cursor > 0 {
            match self.frames.front() {
                Some(f) if self.high_water - f.start_byte > self.replay_limit_bytes => {
                    dropped += f.data.len() as u64;
                    self.frames.pop_front();
                    self.cursor -= 1;
                }
                _ => break,
            }
        }
        self.format.bytes_to_ms(dropped)
    }
}

#[cfg(test)]
mod tests;
