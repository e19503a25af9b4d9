//! Cuts a stream of 16 kHz audio into speech segments, for engines that decode whole segments
//! (Moonshine is not a streaming model).
//!
//! Frames of 10 ms go through the [`EnergyVad`]. Speech starts when `ONSET_FRAMES` of the last
//! `ONSET_WINDOW` frames are voiced (a click is not speech); the segment then reaches back
//! `pre_pad_ms` before the first voiced frame (never into the previous segment). It ends after
//! `end_silence_ms` without a voiced frame, `post_pad_ms` after the last one. A segment longer than
//! `max_segment_ms` is cut at its last pause of at least `PAUSE_FRAMES` (past the first third), or
//! at the cap when there was none, and speech goes on in a new segment from the cut. Segments with
//! less than `min_speech_ms` of voiced frames are dropped: decoding noise or a cough makes words up.
//!
//! Every decision is taken per frame from the samples alone, so the segments do not depend on how
//! the audio was chunked: a stream cut into 100 ms frames and the same audio pushed whole give
//! the same segments (the accuracy tests compare the two).

use std::collections::VecDeque;

use super::vad::{EnergyVad, VadSettings, FRAME_SAMPLES};

/// Voiced frames among the last `ONSET_WINDOW` that start speech.
const ONSET_FRAMES: usize = 3;
const ONSET_WINDOW: usize = 5;
/// A pause a long segment may be cut at: 100 ms.
const PAUSE_FRAMES: usize = 10;
/// Samples per millisecond at 16 kHz.
const SAMPLES_PER_MS: u64 = 16;

/// The segmenter's thresholds (all in ms of audio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterSettings {
    pub end_silence_ms: u64,
    pub max_segment_ms: u64,
    pub pre_pad_ms: u64,
    pub post_pad_ms: u64,
    pub min_speech_ms: u64,
    pub vad: VadSettings,
}

impl Default for SegmenterSettings {
    fn default() -> Self {
        SegmenterSettings {
            end_silence_ms: 500,
            max_segment_ms: 15_000,
            pre_pad_ms: 300,
            post_pad_ms: 200,
            min_speech_ms: 150,
            vad: VadSettings::default(),
        }
    }
}

/// A closed segment of speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Position of its first sample in the stream.
    pub start_sample: u64,
    /// Its samples, in [−1, 1].
    pub samples: Vec<f32>,
}

impl Segment {
    /// One past its last sample, in the stream.
    pub fn end_sample(&self) -> u64 {
        self.start_sample + self.samples.len() as u64
    }
}

/// The segment being heard.
#[derive(Debug)]
struct OpenSegment {
    start_sample: u64,
    samples: Vec<f32>,
    /// Whether each whole frame of `samples` was voiced (the first may start mid-frame of the
    /// stream's grid: flags are per frame processed, aligned to the segment's end).
    voiced: VecDeque<bool>,
    /// Unvoiced frames since the last voiced one.
    silent_frames: usize,
    /// Where the latest long-enough pause (past the first third) would cut, in the stream.
    pause_cut: Option<u64>,
}

impl OpenSegment {
    fn end_sample(&self) -> u64 {
        self.start_sample + self.samples.len() as u64
    }

    fn voiced_frames(&self) -> usize {
        self.voiced.iter().filter(|v| **v).count()
    }

    /// One past the last voiced frame, in the stream.
    fn last_voiced_end(&self) -> u64 {
        self.end_sample() - (self.silent_frames * FRAME_SAMPLES) as u64
    }
}

/// The segmenter of one stream. See the module doc.
#[derive(Debug)]
pub struct Segmenter {
    settings: SegmenterSettings,
    vad: EnergyVad,
    /// Fewer than a frame of samples, waiting for more.
    pending: Vec<f32>,
    /// Samples judged so far (whole frames).
    position: u64,
    /// While no segment is open: the latest samples (look-behind), ending at `position`.
    history: VecDeque<f32>,
    /// Voiced flags of the latest frames (onset detection).
    recent: VecDeque<bool>,
    open: Option<OpenSegment>,
    /// End of the last segment: the next never starts before it.
    last_end: u64,
}

impl Segmenter {
    pub fn new(settings: SegmenterSettings) -> Segmenter {
        Segmenter {
            settings,
            vad: EnergyVad::new(settings.vad),
            pending: Vec::with_capacity(FRAME_SAMPLES),
            position: 0,
            history: VecDeque::new(),
            recent: VecDeque::with_capacity(ONSET_WINDOW),
            open: None,
            last_end: 0,
        }
    }

    fn samples(&self, ms: u64) -> u64 {
        ms * SAMPLES_PER_MS
    }

    /// The look-behind kept while idle: the pre-pad plus the onset window.
    fn history_len(&self) -> usize {
        self.samples(self.settings.pre_pad_ms) as usize + ONSET_WINDOW * FRAME_SAMPLES
    }

    /// The open segment so far (for interim results), from its start sample.
    pub fn open_segment(&self) -> Option<(u64, &[f32])> {
        self.open
            .as_ref()
            .map(|o| (o.start_sample, o.samples.as_slice()))
    }

    /// The segment the open one becomes if no speech comes back before `end_silence_ms`: its
    /// start and samples, exactly those [`Segmenter::push`] will close it with. Known once
    /// `post_pad_ms` of silence followed the last voiced frame (the pad is then all here), and
    /// only for a segment with enough speech to be kept; `None` while speech goes on.
    pub fn settled_segment(&self) -> Option<(u64, &[f32])> {
        let open = self.open.as_ref()?;
        let post_pad = self.samples(self.settings.post_pad_ms);
        if ((open.silent_frames * FRAME_SAMPLES) as u64) < post_pad
            || (open.voiced_frames() as u64) * 10 < self.settings.min_speech_ms
        {
            return None;
        }
        let len = (open.last_voiced_end() + post_pad - open.start_sample) as usize;
        Some((open.start_sample, open.samples.get(..len)?))
    }

    /// Samples pushed so far (including a partial frame).
    pub fn samples_seen(&self) -> u64 {
        self.position + self.pending.len() as u64
    }

    /// Judges more samples; returns the segments they closed, in order.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Segment> {
        let mut closed = Vec::new();
        let mut rest = samples;
        if !self.pending.is_empty() {
            let take = (FRAME_SAMPLES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < FRAME_SAMPLES {
                return closed;
            }
            let frame = std::mem::take(&mut self.pending);
            self.frame(&frame, &mut closed);
        }
        let mut frames = rest.chunks_exact(FRAME_SAMPLES);
        for frame in &mut frames {
            self.frame(frame, &mut closed);
        }
        self.pending.extend_from_slice(frames.remainder());
        closed
    }

    /// The audio is over: closes the open segment (with the last partial frame).
    pub fn finish(&mut self) -> Option<Segment> {
        let pending = std::mem::take(&mut self.pending);
        self.position += pending.len() as u64;
        let mut open = self.open.take()?;
        open.samples.extend_from_slice(&pending);
        let end = (open.last_voiced_end() + self.samples(self.settings.post_pad_ms))
            .min(open.end_sample());
        self.close(open, end)
    }

    fn frame(&mut self, frame: &[f32], closed: &mut Vec<Segment>) {
        let max_samples = self.samples(self.settings.max_segment_ms);
        let post_pad = self.samples(self.settings.post_pad_ms);
        let voiced = self.vad.is_voiced(frame);
        let frame_start = self.position;
        self.position += FRAME_SAMPLES as u64;
        if self.recent.len() == ONSET_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(voiced);
        match self.open.as_mut() {
            None => {
                self.history.extend(frame.iter().copied());
                let excess = self.history.len().saturating_sub(self.history_len());
                self.history.drain(..excess);
                if self.recent.iter().filter(|v| **v).count() >= ONSET_FRAMES {
                    self.open_segment_at_onset();
                }
            }
            Some(open) => {
                open.samples.extend_from_slice(frame);
                open.voiced.push_back(voiced);
                if voiced {
                    if open.silent_frames >= PAUSE_FRAMES {
                        let pause_middle =
                            frame_start - (open.silent_frames * FRAME_SAMPLES / 2) as u64;
                        let third = open.start_sample + max_samples / 3;
                        if pause_middle >= third {
                            open.pause_cut = Some(pause_middle);
                        }
                    }
                    open.silent_frames = 0;
                } else {
                    open.silent_frames += 1;
                }
                if (open.silent_frames as u64) * 10 >= self.settings.end_silence_ms {
                    if let Some(open) = self.open.take() {
                        let end = (open.last_voiced_end() + post_pad).min(open.end_sample());
                        closed.extend(self.close(open, end));
                    }
                } else if open.samples.len() as u64 >= max_samples {
                    closed.extend(self.cut_long_segment());
                }
            }
        }
    }

    /// Speech started: open a segment from the look-behind.
    fn open_segment_at_onset(&mut self) {
        let first_voiced = self.recent.iter().position(|v| *v).unwrap_or(0);
        let onset = self.position
            - ((ONSET_WINDOW.min(self.recent.len()) - first_voiced) * FRAME_SAMPLES) as u64;
        let history_start = self.position - self.history.len() as u64;
        let start = onset
            .saturating_sub(self.samples(self.settings.pre_pad_ms))
            .max(self.last_end)
            .max(history_start);
        let skip = (start - history_start) as usize;
        let samples: Vec<f32> = self.history.iter().skip(skip).copied().collect();
        let frames_in = samples.len() / FRAME_SAMPLES;
        let voiced: VecDeque<bool> = self
            .recent
            .iter()
            .rev()
            .take(frames_in)
            .rev()
            .copied()
            .collect();
        let mut flags = VecDeque::from(vec![false; frames_in - voiced.len()]);
        flags.extend(voiced);
        let silent_frames = flags.iter().rev().take_while(|v| !**v).count();
        self.history.clear();
        self.open = Some(OpenSegment {
            start_sample: start,
            samples,
            voiced: flags,
            silent_frames,
            pause_cut: None,
        });
    }

    /// The open segment reached the cap: emit it up to its last pause (or whole) and go on with
    /// the rest as a new open segment.
    fn cut_long_segment(&mut self) -> Option<Segment> {
        let mut open = self.open.take()?;
        let cut = open.pause_cut.unwrap_or(open.end_sample());
        let keep = (cut - open.start_sample) as usize;
        let rest = open.samples.split_off(keep);
        let rest_frames = rest.len() / FRAME_SAMPLES;
        let rest_flags: VecDeque<bool> = open
            .voiced
            .iter()
            .skip(open.voiced.len().saturating_sub(rest_frames))
            .copied()
            .collect();
        let silent_frames = rest_flags.iter().rev().take_while(|v| !**v).count();
        let next = OpenSegment {
            start_sample: cut,
            samples: rest,
            voiced: rest_flags,
            silent_frames,
            pause_cut: None,
        };
        let kept_frames = open.voiced.len().saturating_sub(rest_frames);
        open.voiced.truncate(kept_frames);
        open.silent_frames = 0;
        let end = open.end_sample();
        let segment = self.close(open, end);
        self.open = Some(next);
        segment
    }

    /// Ends `open` at `end` (a stream position within it): the segment, if it has enough speech.
    fn close(&mut self, mut open: OpenSegment, end: u64) -> Option<Segment> {
        let tail: Vec<f32> = open.samples.split_off((end - open.start_sample) as usize);
        self.last_end = end;
        // What followed the segment is the look-behind of the next one.
        self.history = tail.into_iter().collect();
        let excess = self.history.len().saturating_sub(self.history_len());
        self.history.drain(..excess);
        let speech_frames = open.voiced_frames() as u64;
        if speech_frames * 10 < self.settings.min_speech_ms {
            return None;
        }
        Some(Segment {
            start_sample: open.start_sample,
            samples: open.samples,
        })
    }
}

#[cfg(test)]
mod tests;
