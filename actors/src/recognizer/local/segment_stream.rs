//! One stream of a segment engine (Moonshine): client audio in, jobs to the shared
//! [`Scheduler`](super::scheduler::Scheduler) out, job results back as interim and final results.
//!
//! Audio is converted to 16 kHz (8 kHz audio spectrally folded for PocketSphinx's wideband model,
//! plainly resampled for Moonshine) and cut into speech segments ([`Segmenter`]) right here —
//! both cost a few operations per sample — and only decoding goes to the workers. Each closed segment is
//! a final job. While a segment is open and at least `min_interim` long, it is offered for an
//! interim re-decode each time `redecode_interval` more audio has come; the scheduler refuses the
//! offer when its workers are busy, and the next one is made an interval later (skipped, never
//! queued). An interim answered after its segment was closed is stale and dropped.
//!
//! Results carry their segment's times in samples of the stream, and a final its words' times
//! where the engine gives them (PocketSphinx; Moonshine gives none). Text is the model's; without
//! `punctuation` the sentence marks are removed. A final whose text is a lone "you" from a short segment is dropped: it is
//! what the model says for noise.

use std::collections::BTreeMap;

use super::decoded::RecognizedWord;
use super::resample::{AudioConverter, UnsupportedEncoding};
use super::scheduler::{JobKind, JobResult, StreamTicket};
use super::segmenter::{Segment, Segmenter, SegmenterSettings};
use crate::audio::AudioFormat;

/// Samples per second of the engine.
const RATE: u64 = 16_000;
/// Shortest open segment offered for an interim (the model makes words up from less).
const MIN_INTERIM_SAMPLES: u64 = RATE;
/// A segment shorter than this whose whole text is "you" is noise.
const NOISE_YOU_MAX_SAMPLES: usize = RATE as usize;

/// How one stream is cut and reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamSettings {
    pub segmenter: SegmenterSettings,
    /// Audio between interim offers, in samples.
    pub redecode_interval: u64,
    /// Fill the empty upper band of 8 kHz audio by spectral folding (for a wideband model that
    /// expects energy there: PocketSphinx).
    pub fold_narrowband: bool,
}

/// A result of the stream, in samples of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentResult {
    pub is_final: bool,
    pub text: String,
    pub start_sample: u64,
    pub end_sample: u64,
    /// A final's words with times in samples of the stream, where the engine gives them.
    pub words: Vec<RecognizedWord>,
    /// A final's mean word confidence (0 when the engine gives none).
    pub confidence: f32,
}

/// A job on its way.
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: JobKind,
    start_sample: u64,
    end_sample: u64,
}

/// The stream state. See the module doc.
#[derive(Debug)]
pub struct SegmentStream {
    converter: AudioConverter,
    segmenter: Segmenter,
    settings: StreamSettings,
    interim_results: bool,
    punctuation: bool,
    /// Jobs submitted and not answered, by id (ids grow with submission order).
    pending: BTreeMap<u64, Pending>,
    next_job: u64,
    /// The id of the last final submitted: interims submitted before it are stale.
    last_final_job: Option<u64>,
    /// Open-segment length at the last interim offer (0: none for this segment yet).
    offered_at_len: u64,
    /// Start of the open segment the offers were for.
    offered_for: Option<u64>,
    /// An interim was reported since the last final: an empty final must still replace it.
    interim_shown: bool,
    /// Scratch buffers.
    converted: Vec<i16>,
    floats: Vec<f32>,
}

impl SegmentStream {
    pub fn new(
        format: AudioFormat,
        settings: StreamSettings,
        interim_results: bool,
        punctuation: bool,
    ) -> Result<SegmentStream, UnsupportedEncoding> {
        let converter = if settings.fold_narrowband {
            AudioConverter::new(format)?
        } else {
            AudioConverter::without_folding(format)?
        };
        Ok(SegmentStream {
            converter,
            segmenter: Segmenter::new(settings.segmenter),
            settings,
            interim_results,
            punctuation,
            pending: BTreeMap::new(),
            next_job: 0,
            last_final_job: None,
            offered_at_len: 0,
            offered_for: None,
            interim_shown: false,
            converted: Vec::new(),
            floats: Vec::new(),
        })
    }

    /// Whether no final is still being decoded.
    pub fn finals_done(&self) -> bool {
        self.pending.values().all(|p| p.kind != JobKind::Final)
    }

    /// More client audio.
    pub fn push(&mut self, bytes: &[u8], ticket: &StreamTicket) {
        self.converted.clear();
        self.converter.push(bytes, &mut self.converted);
        self.segment_converted(ticket);
        self.offer_interim(ticket);
    }

    /// The audio is over: the open segment becomes the last final.
    pub fn finish(&mut self, ticket: &StreamTicket) {
        self.converted.clear();
        self.converter.finish(&mut self.converted);
        self.segment_converted(ticket);
        if let Some(segment) = self.segmenter.finish() {
            self.submit_final(segment, ticket);
        }
    }

    fn segment_converted(&mut self, ticket: &StreamTicket) {
        self.floats.clear();
        self.floats
            .extend(self.converted.iter().map(|&s| f32::from(s) / 32_768.0));
        let floats = std::mem::take(&mut self.floats);
        for segment in self.segmenter.push(&floats) {
            self.submit_final(segment, ticket);
        }
        self.floats = floats;
    }

    fn submit_final(&mut self, segment: Segment, ticket: &StreamTicket) {
        let job = self.next_job;
        self.next_job += 1;
        self.pending.insert(
            job,
            Pending {
                kind: JobKind::Final,
                start_sample: segment.start_sample,
                end_sample: segment.end_sample(),
            },
        );
        self.last_final_job = Some(job);
        self.offered_at_len = 0;
        self.offered_for = None;
        ticket.submit_final(job, segment.samples);
    }

    fn offer_interim(&mut self, ticket: &StreamTicket) {
        if !self.interim_results {
            return;
        }
        let Some((start, samples)) = self.segmenter.open_segment() else {
            return;
        };
        let len = samples.len() as u64;
        if self.offered_for != Some(start) {
            self.offered_for = Some(start);
            self.offered_at_len = 0;
        }
        if len < MIN_INTERIM_SAMPLES || len < self.offered_at_len + self.settings.redecode_interval
        {
            return;
        }
        // Offered now whether accepted or not: a refused offer waits an interval.
        self.offered_at_len = len;
        let job = self.next_job;
        if ticket.try_submit_interim(job, samples.to_vec()) {
            self.next_job += 1;
            self.pending.insert(
                job,
                Pending {
                    kind: JobKind::Interim,
                    start_sample: start,
                    end_sample: start + len,
                },
            );
        }
    }

    /// A job's result: what to report, if anything, or the decoding error.
    pub fn on_result(&mut self, result: JobResult) -> Result<Option<SegmentResult>, String> {
        let Some(pending) = self.pending.remove(&result.job) else {
            return Ok(None);
        };
        let decoded = result.decoded?;
        let text = shape_text(decoded.text, self.punctuation);
        match pending.kind {
            JobKind::Interim => {
                let stale = self.last_final_job.is_some_and(|f| f > result.job);
                if stale || text.is_empty() {
                    return Ok(None);
                }
                self.interim_shown = true;
                Ok(Some(SegmentResult {
                    is_final: false,
                    text,
                    start_sample: pending.start_sample,
                    end_sample: pending.end_sample,
                    words: Vec::new(),
                    confidence: 0.0,
                }))
            }
            JobKind::Final => {
                let samples = (pending.end_sample - pending.start_sample) as usize;
                let text = final_text(text, samples);
                let replaces_interim = std::mem::take(&mut self.interim_shown);
                if text.is_empty() && !replaces_interim {
                    return Ok(None);
                }
                // Words were dropped with a noise "you".
                let words = if text.is_empty() {
                    Vec::new()
                } else {
                    on_stream(decoded.words, pending.start_sample)
                };
                Ok(Some(SegmentResult {
                    is_final: true,
                    text,
                    start_sample: pending.start_sample,
                    end_sample: pending.end_sample,
                    words,
                    confidence: decoded.confidence,
                }))
            }
        }
    }
}

/// `words` timed from their segment's start, timed from the stream's (the segment starts at
/// `start_sample`).
fn on_stream(mut words: Vec<RecognizedWord>, start_sample: u64) -> Vec<RecognizedWord> {
    for word in &mut words {
        word.start_sample += start_sample;
        word.end_sample += start_sample;
    }
    words
}

/// The model's text as the client asked for it: with its punctuation or without.
pub fn shape_text(text: String, punctuation: bool) -> String {
    if punctuation {
        text
    } else {
        strip_punctuation(&text)
    }
}

/// The text of a final for a segment of `samples` samples: a lone "you" from a short segment is
/// the model's word for noise, and no text.
pub fn final_text(text: String, samples: usize) -> String {
    if samples < NOISE_YOU_MAX_SAMPLES && is_lone_you(&text) {
        String::new()
    } else {
        text
    }
}

/// `text` without sentence punctuation (apostrophes and hyphens inside words stay).
pub fn strip_punctuation(text: &str) -> String {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation() && c != '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the whole text is the word "you" (the model's word for noise).
fn is_lone_you(text: &str) -> bool {
    strip_punctuation(text).eq_ignore_ascii_case("you")
}

#[cfg(test)]
mod tests;
