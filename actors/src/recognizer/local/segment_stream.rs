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
//! **Speculative finals** (engines that decode fast, Moonshine): a segment's final holds its
//! speech plus `post_pad_ms`, and closes only after `end_silence_ms` of silence. Once the pad is
//! all here ([`Segmenter::settled_segment`]) the final's samples are known, so they are queued
//! for decoding at once, during the rest of the wait; when the segment then closes with exactly
//! those samples, that job is its final (already decoded, or about to be), and the user waits
//! the pause and little more. If speech comes back first, the job is withdrawn (or its result
//! dropped); the final is decoded from the same samples either way, so the text is the same.
//! While the segment is still open, the speculative result is shown as an interim.
//!
//! Results carry their segment's times in samples of the stream, and a final its words' times
//! where the engine gives them (PocketSphinx; Moonshine gives none). Text is the model's; without
//! `punctuation` the sentence marks are removed. A final whose text is a lone "you" from a short segment is dropped: it is
//! what the model says for noise.

use std::collections::BTreeMap;

use super::decoded::{DecodedSegment, RecognizedWord};
use super::resample::{AudioConverter, UnsupportedEncoding};
use super::scheduler::{JobResult, StreamTicket};
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
    /// Decode a segment's final while waiting for its end of speech (see the module doc): for
    /// engines whose decode is cheap next to a pause (Moonshine), not for PocketSphinx, whose
    /// wasted decodes at pauses inside utterances would cost more than it has.
    pub speculative_finals: bool,
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

/// What a job on its way will decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingKind {
    Interim,
    Final,
    /// The final of the open segment if it closes where it is settled.
    Speculative,
}

/// A job on its way.
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: PendingKind,
    start_sample: u64,
    end_sample: u64,
}

/// The speculative final of the open segment.
#[derive(Debug)]
struct Speculation {
    job: u64,
    start_sample: u64,
    end_sample: u64,
    /// Its decoding, once back while the segment was still open.
    decoded: Option<DecodedSegment>,
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
    /// Interims submitted before this job id are stale: their segment was closed.
    interims_stale_below: u64,
    speculation: Option<Speculation>,
    /// Results decided without a decode (a final whose speculation was back already), for
    /// [`SegmentStream::take_ready`].
    ready: Vec<SegmentResult>,
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
            interims_stale_below: 0,
            speculation: None,
            ready: Vec::new(),
            offered_at_len: 0,
            offered_for: None,
            interim_shown: false,
            converted: Vec::new(),
            floats: Vec::new(),
        })
    }

    /// Whether no final is still being decoded.
    pub fn finals_done(&self) -> bool {
        self.pending.values().all(|p| p.kind != PendingKind::Final)
    }

    /// More client audio. Results it decided at once are in [`SegmentStream::take_ready`].
    pub fn push(&mut self, bytes: &[u8], ticket: &StreamTicket) {
        self.converted.clear();
        self.converter.push(bytes, &mut self.converted);
        self.segment_converted(ticket);
        self.speculate(ticket);
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
        self.abandon_speculation(ticket);
    }

    /// Results decided by the last `push` or `finish` without waiting for a decode, in order.
    pub fn take_ready(&mut self) -> Vec<SegmentResult> {
        std::mem::take(&mut self.ready)
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
        self.offered_at_len = 0;
        self.offered_for = None;
        let (start_sample, end_sample) = (segment.start_sample, segment.end_sample());
        let speculated = self
            .speculation
            .take_if(|s| s.start_sample == start_sample && s.end_sample == end_sample);
        self.abandon_speculation(ticket);
        if let Some(speculation) = speculated {
            self.interims_stale_below = self.next_job;
            match speculation.decoded {
                Some(decoded) => {
                    let pending = Pending {
                        kind: PendingKind::Final,
                        start_sample,
                        end_sample,
                    };
                    let result = self.final_result(pending, decoded);
                    self.ready.extend(result);
                }
                None => {
                    if let Some(pending) = self.pending.get_mut(&speculation.job) {
                        pending.kind = PendingKind::Final;
                    }
                }
            }
            return;
        }
        let job = self.next_job;
        self.next_job += 1;
        self.interims_stale_below = self.next_job;
        self.pending.insert(
            job,
            Pending {
                kind: PendingKind::Final,
                start_sample,
                end_sample,
            },
        );
        ticket.submit_final(job, segment.samples);
    }

    /// Queues the final of the open segment as soon as it is settled (see the module doc), and
    /// drops a speculation that no longer holds.
    fn speculate(&mut self, ticket: &StreamTicket) {
        if !self.settings.speculative_finals {
            return;
        }
        let settled = self
            .segmenter
            .settled_segment()
            .map(|(start, samples)| (start, start + samples.len() as u64));
        let current = self
            .speculation
            .as_ref()
            .map(|s| (s.start_sample, s.end_sample));
        if settled == current {
            return;
        }
        self.abandon_speculation(ticket);
        let Some((start, samples)) = self.segmenter.settled_segment() else {
            return;
        };
        let job = self.next_job;
        self.next_job += 1;
        let end = start + samples.len() as u64;
        self.pending.insert(
            job,
            Pending {
                kind: PendingKind::Speculative,
                start_sample: start,
                end_sample: end,
            },
        );
        self.speculation = Some(Speculation {
            job,
            start_sample: start,
            end_sample: end,
            decoded: None,
        });
        ticket.submit_final(job, samples.to_vec());
    }

    /// Withdraws the speculative final, if any: speech came back, or its segment was closed
    /// elsewhere. A result already on its way is dropped when it comes.
    fn abandon_speculation(&mut self, ticket: &StreamTicket) {
        if let Some(speculation) = self.speculation.take() {
            self.pending.remove(&speculation.job);
            ticket.withdraw(speculation.job);
        }
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
                    kind: PendingKind::Interim,
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
        match pending.kind {
            PendingKind::Interim => {
                let stale = result.job < self.interims_stale_below;
                Ok(self
                    .interim_result(pending, decoded.text)
                    .filter(|_| !stale))
            }
            PendingKind::Speculative => {
                let text = decoded.text.clone();
                if let Some(speculation) = self.speculation.as_mut() {
                    speculation.decoded = Some(decoded);
                }
                Ok(self.interim_result(pending, text))
            }
            PendingKind::Final => Ok(self.final_result(pending, decoded)),
        }
    }

    /// The interim of `pending` with the model's `text`, if interims are wanted and it says
    /// anything.
    fn interim_result(&mut self, pending: Pending, text: String) -> Option<SegmentResult> {
        let text = shape_text(text, self.punctuation);
        if !self.interim_results || text.is_empty() {
            return None;
        }
        self.interim_shown = true;
        Some(SegmentResult {
            is_final: false,
            text,
            start_sample: pending.start_sample,
            end_sample: pending.end_sample,
            words: Vec::new(),
            confidence: 0.0,
        })
    }

    /// The final of `pending`, decoded; nothing for a segment that said nothing (unless an
    /// interim must be replaced).
    fn final_result(&mut self, pending: Pending, decoded: DecodedSegment) -> Option<SegmentResult> {
        let samples = (pending.end_sample - pending.start_sample) as usize;
        let text = final_text(shape_text(decoded.text, self.punctuation), samples);
        let replaces_interim = std::mem::take(&mut self.interim_shown);
        if text.is_empty() && !replaces_interim {
            return None;
        }
        // Words were dropped with a noise "you".
        let words = if text.is_empty() {
            Vec::new()
        } else {
            on_stream(decoded.words, pending.start_sample)
        };
        Some(SegmentResult {
            is_final: true,
            text,
            start_sample: pending.start_sample,
            end_sample: pending.end_sample,
            words,
            confidence: decoded.confidence,
        })
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
