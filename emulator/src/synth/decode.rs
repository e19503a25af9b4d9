//! Synthetic audio → recognition events: the streaming decoder behind the emulator's recogniser.
//!
//! Every decision is taken at a sample position and depends only on the samples, never on how they
//! were cut into requests, so results are identical for any chunking, and a stream that starts inside a
//! pause gives the same results shifted by whole samples. The per-sample work is a comparison; the
//! frequency analysis (a zero-crossing count, then five Goertzel filters) runs once per completed
//! tone.
//!
//! How it hears:
//! - A sample is *loud* when `|x| ≥ 2000` (a quarter of the tone amplitude). A *run* starts at a loud
//!   sample and ends once 2 ms pass without one; it spans first to last loud sample.
//! - A run of 20–45 ms is a character. Over its interior (2 ms trimmed at each end), the zero-crossing
//!   rate estimates the frequency, and Goertzel at the five nearest symbol frequencies picks the
//!   strongest; it is accepted when that frequency carries at least half of the interior's energy.
//!   Other runs (clicks, noise, chords, speech) are ignored but still count as sound.
//! - 40 ms without sound after a character ends the word; 300 ms ends the utterance: a final result
//!   is emitted at that moment (its `end_sample`).
//! - Interim hypotheses (words so far plus the word in progress) are emitted when they change, at most
//!   once per 100 ms of audio: a change closer than that to the previous interim is emitted when the
//!   100 ms have passed (with the hypothesis as it is then), unless a final comes first.

use super::{ms_to_samples, tone_hz, SynthEncoding, ALPHABET, AMPLITUDE, BASE_HZ, STEP_HZ};

/// `|sample|` at or above this is part of a tone.
const LOUD_LEVEL: u16 = (AMPLITUDE / 4.0) as u16;
/// A run ends after this long without a loud sample (longer than the quiet part of any tone cycle).
const HOLD_MS: u64 = 2;
/// Shortest and longest run that can be a character (a character is 30 ms).
const MIN_TONE_MS: u64 = 20;
const MAX_TONE_MS: u64 = 45;
/// Trimmed from each end of a run before the frequency analysis.
const EDGE_MS: u64 = 2;
/// Quiet this long after a character ends the word (between characters there are 10 ms, between
/// words 100 ms).
const WORD_END_MS: u64 = 40;
/// Quiet this long after the last word ends the utterance with a final result (pauses are 600 ms).
const FINAL_MS: u64 = 300;
/// Interim results are at least this much audio apart.
const INTERIM_INTERVAL_MS: u64 = 100;
/// The winning frequency must carry at least this share of the run's energy.
const MIN_SHARE: f64 = 0.5;
/// Goertzel runs on the symbol nearest to the zero-crossing estimate and this many either side (the
/// estimate is within ±20 Hz; symbols are 80 Hz apart).
const CANDIDATE_SPREAD: usize = 2;

/// A recognised word; positions are in samples from the start of the stream's audio.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedWord {
    pub word: String,
    /// First loud sample of the word's first tone.
    pub start_sample: u64,
    /// One past the last loud sample of the word's last tone.
    pub end_sample: u64,
    /// The least certain character's `best / (best + runner-up)` Goertzel power ratio.
    pub confidence: f32,
}

/// One recognition event: an interim hypothesis or a final result.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    pub is_final: bool,
    /// The words, the last of which may still be in progress for an interim.
    pub words: Vec<DecodedWord>,
    /// Samples consumed when the event was decided (Google's `result_end_time`).
    pub end_sample: u64,
}

impl Recognition {
    /// The words joined by single spaces.
    pub fn transcript(&self) -> String {
        let words: Vec<&str> = self.words.iter().map(|w| w.word.as_str()).collect();
        words.join(" ")
    }

    /// Mean word confidence (0 when there are no words).
    pub fn confidence(&self) -> f32 {
        if self.words.is_empty() {
            return 0.0;
        }
        self.words.iter().map(|w| w.confidence).sum::<f32>() / self.words.len() as f32
    }
}

/// The decoder's thresholds in samples at the stream's rate.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    hold: u64,
    min_tone: u64,
    max_tone: u64,
    edge: u64,
    word_end: u64,
    final_pause: u64,
    interim_interval: u64,
}

/// The tone being heard.
#[derive(Debug)]
struct Run {
    /// First loud sample.
    start: u64,
    /// Latest loud sample.
    last_loud: u64,
    /// Samples from `start` on, kept for the frequency analysis while the run can still be a tone.
    samples: Vec<i16>,
    /// Longer than any tone: not a character, samples no longer kept.
    too_long: bool,
}

/// The word being heard.
#[derive(Debug)]
struct WordInProgress {
    text: String,
    start: u64,
    end: u64,
    confidence: f32,
}

/// When the last interim was sent and what it said.
#[derive(Debug, Default)]
struct InterimState {
    enabled: bool,
    last_at: Option<u64>,
    last_text: String,
    /// The hypothesis changed too soon after the last interim; send it when the interval is over.
    pending: bool,
}

/// Streaming decoder for one stream's audio (mono, or the first channel of interleaved audio).
#[derive(Debug)]
pub struct Decoder {
    encoding: SynthEncoding,
    /// Sample rate in Hz (for the zero-crossing frequency estimate).
    rate: u32,
    /// Bytes per frame (all channels of one sample instant).
    frame_bytes: usize,
    /// An incomplete frame left over from the previous `push`.
    carry: Vec<u8>,
    /// Frames consumed so far: the current position in samples.
    position: u64,
    limits: Thresholds,
    /// Goertzel coefficients `2·cos(2πf/rate)`, one per symbol.
    coefficients: Vec<f64>,
    run: Option<Run>,
    /// One past the last loud sample heard (`None` before any sound).
    quiet_since: Option<u64>,
    word: Option<WordInProgress>,
    /// Completed words of the current utterance.
    utterance: Vec<DecodedWord>,
    interim: InterimState,
}

impl Decoder {
    /// A decoder for audio at `sample_rate_hz` with `channels` interleaved channels (only the first is
    /// heard, as Google does without `enable_separate_recognition_per_channel`); `interim_results`
    /// enables interim events.
    pub fn new(
        sample_rate_hz: u32,
        encoding: SynthEncoding,
        channels: u16,
        interim_results: bool,
    ) -> Decoder {
        let rate = sample_rate_hz.max(1);
        let samples = |ms| ms_to_samples(rate, ms).max(1);
        Decoder {
            encoding,
            rate,
            frame_bytes: encoding.bytes_per_sample() * usize::from(channels.max(1)),
            carry: Vec::new(),
            position: 0,
            limits: Thresholds {
                hold: samples(HOLD_MS),
                min_tone: samples(MIN_TONE_MS),
                max_tone: samples(MAX_TONE_MS),
                edge: samples(EDGE_MS),
                word_end: samples(WORD_END_MS),
                final_pause: samples(FINAL_MS),
                interim_interval: samples(INTERIM_INTERVAL_MS),
            },
            coefficients: (0..ALPHABET.len())
                .map(|i| 2.0 * (2.0 * std::f64::consts::PI * tone_hz(i) / f64::from(rate)).cos())
                .collect(),
            run: None,
            quiet_since: None,
            word: None,
            utterance: Vec::new(),
            interim: InterimState {
                enabled: interim_results,
                ..InterimState::default()
            },
        }
    }

    /// Samples (frames) consumed so far.
    pub fn samples_consumed(&self) -> u64 {
        self.position
    }

    /// Feeds audio bytes (any length; an incomplete frame is kept for the next call) and returns the
    /// events decided within them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Recognition> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if !self.carry.is_empty() {
            let needed = self.frame_bytes - self.carry.len();
            let take = needed.min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() < self.frame_bytes {
                return events;
            }
            let frame = std::mem::take(&mut self.carry);
            let sample = self.first_channel(&frame);
            self.step(sample, &mut events);
        }
        let mut frames = rest.chunks_exact(self.frame_bytes);
        for frame in &mut frames {
            let sample = self.first_channel(frame);
            self.step(sample, &mut events);
        }
        self.carry.extend_from_slice(frames.remainder());
        events
    }

    /// The end of the audio (the client half-closed): the tone and word in progress complete, and the
    /// utterance, if any, becomes a final result at the end of the audio.
    pub fn finish(&mut self) -> Vec<Recognition> {
        let mut events = Vec::new();
        self.close_run();
        self.close_word();
        self.emit_final(&mut events);
        events
    }

    fn first_channel(&self, frame: &[u8]) -> i16 {
        match self.encoding {
            SynthEncoding::Linear16 => i16::from_le_bytes([frame[0], frame[1]]),
            SynthEncoding::Mulaw => voxgate_actors::audio::mulaw::decode_sample(frame[0]),
            SynthEncoding::Alaw => voxgate_actors::audio::alaw::decode_sample(frame[0]),
        }
    }

    /// Hears one sample.
    fn step(&mut self, sample: i16, events: &mut Vec<Recognition>) {
        let at = self.position;
        self.position += 1;
        let loud = sample.unsigned_abs() >= LOUD_LEVEL;
        let limits = self.limits;
        let mut run_over = false;
        if let Some(run) = &mut self.run {
            if loud {
                run.last_loud = at;
            }
            if at - run.last_loud >= limits.hold {
                run_over = true;
            } else if !run.too_long {
                if (run.samples.len() as u64) < limits.max_tone + limits.hold {
                    run.samples.push(sample);
                } else {
                    run.too_long = true;
                    run.samples = Vec::new();
                }
            }
        } else if loud {
            self.run = Some(Run {
                start: at,
                last_loud: at,
                samples: vec![sample],
                too_long: false,
            });
        }
        if run_over {
            self.close_run();
        }
        if self.run.is_none() {
            if let Some(quiet_since) = self.quiet_since {
                let quiet = self.position - quiet_since;
                if quiet >= limits.word_end {
                    self.close_word();
                }
                if quiet >= limits.final_pause {
                    self.emit_final(events);
                }
            }
        }
        if self.interim.pending
            && self
                .interim
                .last_at
                .is_none_or(|last| self.position >= last + limits.interim_interval)
        {
            self.emit_interim(events);
        }
    }

    /// The current run is over: classify it, and add its character to the word in progress.
    fn close_run(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.quiet_since = Some(run.last_loud + 1);
        let length = run.last_loud - run.start + 1;
        if run.too_long || length < self.limits.min_tone || length > self.limits.max_tone {
            return;
        }
        let interior_end = (length - self.limits.edge) as usize;
        let interior = &run.samples[self.limits.edge as usize..interior_end];
        let Some((symbol, confidence)) = self.identify(interior) else {
            return;
        };
        let ch = char::from(ALPHABET[symbol]);
        let end = run.last_loud + 1;
        match &mut self.word {
            Some(word) => {
                word.text.push(ch);
                word.end = end;
                word.confidence = word.confidence.min(confidence);
            }
            None => {
                self.word = Some(WordInProgress {
                    text: ch.to_string(),
                    start: run.start,
                    end,
                    confidence,
                });
            }
        }
        self.hypothesis_changed();
    }

    /// The symbol a run carries: its zero-crossing rate names the neighbourhood, Goertzel over the
    /// nearest symbol frequencies picks the strongest. Accepted when that frequency carries at least
    /// half of the run's energy (a pure tone carries nearly all of it; noise or a chord much less).
    /// Returns the symbol and its confidence, `best / (best + runner-up)` Goertzel power.
    fn identify(&self, samples: &[i16]) -> Option<(usize, f32)> {
        let n = samples.len();
        let energy: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if n < 2 || energy <= 0.0 {
            return None;
        }
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let hz = crossings as f64 * f64::from(self.rate) / (2.0 * n as f64);
        let last = ALPHABET.len() - 1;
        let nearest = ((hz - BASE_HZ) / STEP_HZ).round().clamp(0.0, last as f64) as usize;
        let candidates =
            nearest.saturating_sub(CANDIDATE_SPREAD)..=(nearest + CANDIDATE_SPREAD).min(last);
        let mut best = (0usize, 0.0f64);
        let mut runner_up = 0.0f64;
        for symbol in candidates {
            let coefficient = self.coefficients[symbol];
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &x in samples {
                let s0 = f64::from(x) + coefficient * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
            if power > best.1 {
                runner_up = best.1;
                best = (symbol, power);
            } else if power > runner_up {
                runner_up = power;
            }
        }
        // A tone of amplitude A over n samples has Goertzel power (A·n/2)² and energy A²·n/2.
        let share = best.1 / (energy * n as f64 / 2.0);
        if share < MIN_SHARE {
            return None;
        }
        Some((best.0, (best.1 / (best.1 + runner_up)) as f32))
    }

    fn close_word(&mut self) {
        if let Some(word) = self.word.take() {
            self.utterance.push(DecodedWord {
                word: word.text,
                start_sample: word.start,
                end_sample: word.end,
                confidence: word.confidence,
            });
        }
    }

    fn hypothesis_words(&self) -> Vec<DecodedWord> {
        let mut words = self.utterance.clone();
        if let Some(word) = &self.word {
            words.push(DecodedWord {
                word: word.text.clone(),
                start_sample: word.start,
                end_sample: word.end,
                confidence: word.confidence,
            });
        }
        words
    }

    fn hypothesis_changed(&mut self) {
        if self.interim.enabled {
            self.interim.pending = true;
        }
    }

    fn emit_interim(&mut self, events: &mut Vec<Recognition>) {
        self.interim.pending = false;
        let words = self.hypothesis_words();
        let recognition = Recognition {
            is_final: false,
            words,
            end_sample: self.position,
        };
        let text = recognition.transcript();
        if text.is_empty() || text == self.interim.last_text {
            return;
        }
        self.interim.last_text = text;
        self.interim.last_at = Some(self.position);
        events.push(recognition);
    }

    fn emit_final(&mut self, events: &mut Vec<Recognition>) {
        if self.utterance.is_empty() {
            return;
        }
        events.push(Recognition {
            is_final: true,
            words: std::mem::take(&mut self.utterance),
            end_sample: self.position,
        });
        // A final closes the utterance: the next one starts afresh, as on a new stream.
        self.interim = InterimState {
            enabled: self.interim.enabled,
            ..InterimState::default()
        };
    }
}
