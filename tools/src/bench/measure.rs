//! Turning what sessions saw into figures: the per-session check of every final against the
//! script ([`FinalChecker`]), latency samples and their percentiles, and the run's totals.
//!
//! Latencies are kept as whole microseconds, every sample (a 5 000-session, 5-minute run has a few
//! million: tens of MB), so percentiles are exact rather than bucketed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use super::script::{Plan, Script};

/// Word times may differ from the script's by this much (the recogniser places edges within
/// ~1 ms of the encoder's, and times are whole milliseconds).
const WORD_TIME_TOLERANCE_MS: i64 = 2;

/// Percentiles of a set of durations, in milliseconds (nearest-rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Of microsecond samples (sorted in place); `None` when there are none.
    pub fn of_micros(samples: &mut [u32]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(samples[rank - 1]) / 1000.0
        };
        Some(Percentiles {
            count: n as u64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }

    /// `self − baseline`, percentile by percentile (the count is `self`'s).
    pub fn minus(&self, baseline: &Percentiles) -> Percentiles {
        Percentiles {
            count: self.count,
            p50: self.p50 - baseline.p50,
            p90: self.p90 - baseline.p90,
            p99: self.p99 - baseline.p99,
            max: self.max - baseline.max,
        }
    }
}

/// Microseconds between two instants given in microseconds since the run's epoch (0 if `to`
/// is earlier), saturated to `u32` (71 minutes).
pub fn micros_between(from_us: u64, to_us: u64) -> u32 {
    u32::try_from(to_us.saturating_sub(from_us)).unwrap_or(u32::MAX)
}

/// How one session ended, and what it measured.
#[derive(Debug, Default)]
pub struct SessionOutcome {
    /// Why the session failed (a short reason that groups well), or `None` if it was held to
    /// the end and closed normally.
    pub failure: Option<String>,
    pub finals_expected: u64,
    /// Finals received, right or wrong.
    pub finals_received: u64,
    pub transcript_errors: u64,
    pub word_time_errors: u64,
    /// Per word: from the send of the frame that let the recogniser decide the word's final to
    /// the final's arrival, µs.
    pub decision_us: Vec<u32>,
    /// Per word: from the send of the frame holding the word's last sample to its final's
    /// arrival, µs.
    pub word_us: Vec<u32>,
    /// Warning codes received.
    pub warnings: Vec<String>,
    /// Audio sent, in seconds.
    pub audio_secs: f64,
    /// Upstream restarts the server reported in `closed`.
    pub restarts: u64,
    /// The session was ready (configured) — reached the streaming phase.
    pub ready: bool,
}

impl SessionOutcome {
    /// Adds what a second track of the same session measured (a call's outbound track).
    pub fn add_track(&mut self, track: SessionOutcome) {
        self.finals_expected += track.finals_expected;
        self.finals_received += track.finals_received;
        self.transcript_errors += track.transcript_errors;
        self.word_time_errors += track.word_time_errors;
        self.decision_us.extend(track.decision_us);
        self.word_us.extend(track.word_us);
    }
}

/// Checks a session's finals, in order, against its plan, and keeps their arrival instants.
pub struct FinalChecker<'a> {
    script: &'a Script,
    plan: &'a Plan,
    /// Arrival (µs since epoch) of each expected final that matched; `None` if not (yet).
    arrivals: Vec<Option<u64>>,
    /// Index of the next expected final.
    next: usize,
    received: u64,
    transcript_errors: u64,
    word_time_errors: u64,
}

impl<'a> FinalChecker<'a> {
    pub fn new(script: &'a Script, plan: &'a Plan) -> FinalChecker<'a> {
        FinalChecker {
            script,
            plan,
            arrivals: vec![None; plan.finals.len()],
            next: 0,
            received: 0,
            transcript_errors: 0,
            word_time_errors: 0,
        }
    }

    /// A final without word times (the dialect has none) arrived at `at_us`: its transcript is
    /// checked, its word times are not.
    pub fn on_final_untimed(&mut self, transcript: &str, at_us: u64) {
        self.received += 1;
        let Some(expected) = self.plan.finals.get(self.next) else {
            self.transcript_errors += 1;
            return;
        };
        let index = self.next;
        self.next += 1;
        if transcript != self.script.utterances[expected.utterance].transcript {
            self.transcript_errors += 1;
            return;
        }
        self.arrivals[index] = Some(at_us);
    }

    /// Every final of the plan has arrived (right or wrong).
    pub fn all_received(&self) -> bool {
        self.next >= self.plan.finals.len()
    }

    /// A final arrived at `at_us` with this transcript and these word times (ms on the session
    /// clock).
    pub fn on_final(
        &mut self,
        transcript: &str,
        words: impl ExactSizeIterator<Item = (u64, u64)>,
        at_us: u64,
    ) {
        self.received += 1;
        let Some(expected) = self.plan.finals.get(self.next) else {
            self.transcript_errors += 1; // a final nobody said
            return;
        };
        let index = self.next;
        self.next += 1;
        let utterance = &self.script.utterances[expected.utterance];
        if transcript != utterance.transcript || words.len() != utterance.words.len() {
            self.transcript_errors += 1;
            return;
        }
        let rate = i64::from(self.script.format.sample_rate_hz);
        let to_ms = |sample: u64| (sample as i64 + expected.sample_shift) * 1000 / rate;
        let mut times_ok = true;
        for ((start_ms, end_ms), word) in words.zip(&utterance.words) {
            let start_off = start_ms as i64 - to_ms(word.start_sample);
            let end_off = end_ms as i64 - to_ms(word.end_sample);
            if start_off.abs() > WORD_TIME_TOLERANCE_MS || end_off.abs() > WORD_TIME_TOLERANCE_MS {
                times_ok = false;
            }
        }
        if !times_ok {
            self.word_time_errors += 1;
        }
        self.arrivals[index] = Some(at_us);
    }

    /// The session is over: `marks_us` are the send instants of the plan's marks (as many as
    /// were sent); `completed` says whether it ran to its normal end (then a missing final is a
    /// transcript error; after a failure it is part of the failure).
    pub fn finish(self, marks_us: &[u64], completed: bool, outcome: &mut SessionOutcome) {
        let plan = self.plan;
        outcome.finals_expected = plan.finals.len() as u64;
        outcome.finals_received = self.received;
        outcome.transcript_errors = self.transcript_errors;
        outcome.word_time_errors = self.word_time_errors;
        if completed {
            outcome.transcript_errors += plan.finals.len().saturating_sub(self.next) as u64;
        }
        let sent_at = |frame: u64| {
            plan.mark_index(frame)
                .and_then(|i| marks_us.get(i))
                .copied()
        };
        for (expected, arrival) in plan.finals.iter().zip(&self.arrivals) {
            let Some(arrival) = *arrival else { continue };
            let decision = sent_at(expected.decision_frame);
            for end_frame in &expected.word_end_frames {
                if let Some(decision) = decision {
                    outcome.decision_us.push(micros_between(decision, arrival));
                }
                if let Some(sent) = sent_at(*end_frame) {
                    outcome.word_us.push(micros_between(sent, arrival));
                }
            }
        }
    }
}

/// Everything the run's sessions measured, merged as each session ends.
#[derive(Debug, Default)]
pub struct Totals {
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Sessions that were ready (configured) at some point.
    pub sessions_ready: u64,
    /// Failure reason → sessions.
    pub failures: BTreeMap<String, u64>,
    pub finals_expected: u64,
    pub finals_received: u64,
    pub transcript_errors: u64,
    pub word_time_errors: u64,
    pub decision_us: Vec<u32>,
    pub word_us: Vec<u32>,
    /// Warning code → count.
    pub warnings: BTreeMap<String, u64>,
    pub audio_secs: f64,
    pub restarts: u64,
}

impl Totals {
    pub fn add(&mut self, mut outcome: SessionOutcome) {
        match outcome.failure.take() {
            None => self.sessions_ok += 1,
            Some(reason) => {
                self.sessions_failed += 1;
                *self.failures.entry(reason).or_default() += 1;
            }
        }
        if outcome.ready {
            self.sessions_ready += 1;
        }
        self.finals_expected += outcome.finals_expected;
        self.finals_received += outcome.finals_received;
        self.transcript_errors += outcome.transcript_errors;
        self.word_time_errors += outcome.word_time_errors;
        self.decision_us.append(&mut outcome.decision_us);
        self.word_us.append(&mut outcome.word_us);
        for code in outcome.warnings {
            *self.warnings.entry(code).or_default() += 1;
        }
        self.audio_secs += outcome.audio_secs;
        self.restarts += outcome.restarts;
    }
}

/// The shared collector sessions report to.
#[derive(Debug, Default)]
pub struct Collector {
    totals: Mutex<Totals>,
}

impl Collector {
    pub fn add(&self, outcome: SessionOutcome) {
        match self.totals.lock() {
            Ok(mut totals) => totals.add(outcome),
            Err(poisoned) => poisoned.into_inner().add(outcome),
        }
    }

    /// Sessions ended so far.
    pub fn ended(&self) -> u64 {
        let read = |t: &Totals| t.sessions_ok + t.sessions_failed;
        match self.totals.lock() {
            Ok(totals) => read(&totals),
            Err(poisoned) => read(&poisoned.into_inner()),
        }
    }

    /// The totals, taken out at the end of the run.
    pub fn take(&self) -> Totals {
        match self.totals.lock() {
            Ok(mut totals) => std::mem::take(&mut *totals),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::script::ScriptFormat;
    use voxgate_emulator::synth::SynthEncoding;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let p = Percentiles::of_micros(&mut samples);
        assert_eq!(
            p,
            Some(Percentiles {
                count: 100,
                p50: 50.0,
                p90: 90.0,
                p99: 99.0,
                max: 100.0
            })
        );
        assert_eq!(Percentiles::of_micros(&mut []), None);
    }

    /// Right finals give latencies from the marks; a wrong transcript, shifted word times, an
    /// extra final and a missing one are each counted.
    #[test]
    fn checker_counts_errors_and_measures_latency() {
        let format = ScriptFormat {
            sample_rate_hz: 16_000,
            encoding: SynthEncoding::Linear16,
            frame_ms: 100,
        };
        let script = match Script::build(format, 10.0) {
            Ok(s) => s,
            Err(e) => panic!("script: {e}"),
        };
        let plan = script.plan(0, 8.0);
        assert!(plan.finals.len() >= 3);
        let marks_us: Vec<u64> = plan.marks.iter().map(|f| f * 100_000).collect();
        let words_of = |k: usize, skew: i64| -> Vec<(u64, u64)> {
            let expected = &plan.finals[k];
            script.utterances[expected.utterance]
                .words
                .iter()
                .map(|w| {
                    let ms =
                        |s: u64| ((s as i64 + expected.sample_shift) * 1000 / 16_000 + skew) as u64;
                    (ms(w.start_sample), ms(w.end_sample))
                })
                .collect()
        };
        let mut checker = FinalChecker::new(&script, &plan);
        // Final 0: right, arriving 5 ms after its decision frame was sent.
        let first = &plan.finals[0];
        let at = first.decision_frame * 100_000 + 5_000;
        let text = script.utterances[first.utterance].transcript.clone();
        checker.on_final(&text, words_of(0, 0).into_iter(), at);
        // Final 1: word times off by 10 ms.
        let second = &script.utterances[plan.finals[1].utterance]
            .transcript
            .clone();
        checker.on_final(second, words_of(1, 10).into_iter(), at + 1_000_000);
        // Final 2: wrong words.
        checker.on_final("not this", words_of(2, 0).into_iter(), at + 2_000_000);
        let mut outcome = SessionOutcome::default();
        checker.finish(&marks_us, true, &mut outcome);
        let missing = plan.finals.len() as u64 - 3;
        assert_eq!(outcome.transcript_errors, 1 + missing);
        assert_eq!(outcome.word_time_errors, 1);
        let words0 = script.utterances[first.utterance].words.len();
        assert_eq!(&outcome.decision_us[..words0], &vec![5_000; words0][..]);
        assert!(outcome.word_us[..words0].iter().all(|&us| us >= 5_000));
    }
}
