//! Fault injection: which stream fails, after how much audio, and how.
//!
//! Each stream, when it opens, draws its fault from one seeded generator: the amount of audio after
//! which it fails (exponentially distributed with the configured mean, so failures are memoryless like
//! real ones) and the kind (uniformly from the configured list). With a seed the sequence of draws is
//! reproducible; which stream gets which draw follows the order in which streams open.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{FaultConfig, FaultKind};

/// The fault one stream will suffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedFault {
    /// The stream fails once it has received more than this much audio.
    pub after_audio: Duration,
    pub kind: FaultKind,
}

/// The generator of per-stream faults.
#[derive(Debug)]
pub struct FaultSchedule {
    rng: StdRng,
    /// Mean audio before a fault, in seconds; `None`: faults are off.
    mean_secs: Option<f64>,
    kinds: Vec<FaultKind>,
}

impl FaultSchedule {
    pub fn new(config: &FaultConfig) -> FaultSchedule {
        FaultSchedule {
            rng: match config.seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_os_rng(),
            },
            mean_secs: config.every.map(|d| d.as_secs_f64()),
            kinds: config.kinds.clone(),
        }
    }

    /// The fault of the next stream to open, or `None` when faults are off.
    pub fn next_fault(&mut self) -> Option<PlannedFault> {
        let mean = self.mean_secs?;
        if self.kinds.is_empty() {
            return None;
        }
        // Inverse transform sampling: 1 − U is in (0, 1], so the logarithm is finite.
        let uniform: f64 = self.rng.random();
        let after_secs = -mean * (1.0 - uniform).ln();
        let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
        Some(PlannedFault {
            after_audio: Duration::from_secs_f64(after_secs),
            kind,
        })
    }
}

/// The status an injected failure ends a stream with: the code, with the message Google's front ends
/// give for it.
pub fn fault_status(code: tonic::Code) -> tonic::Status {
    let message = match code {
        tonic::Code::Unavailable => "The service is currently unavailable.",
        tonic::Code::Internal => "Internal error encountered.",
        tonic::Code::ResourceExhausted => "Resource has been exhausted (e.g. check quota).",
        tonic::Code::DeadlineExceeded => "Deadline Exceeded",
        tonic::Code::Aborted => "The operation was aborted.",
        tonic::Code::Unauthenticated => {
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential."
        }
        tonic::Code::PermissionDenied => "The caller does not have permission",
        tonic::Code::Cancelled => "The operation was cancelled.",
        _ => "Injected fault.",
    };
    tonic::Status::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> FaultConfig {
        FaultConfig {
            every: Some(Duration::from_secs(2)),
            kinds: vec![FaultKind::Drop, FaultKind::Status(tonic::Code::Internal)],
            seed: Some(seed),
        }
    }

    #[test]
    fn a_seed_reproduces_the_sequence() {
        let mut a = FaultSchedule::new(&config(42));
        let mut b = FaultSchedule::new(&config(42));
        for _ in 0..10 {
            assert_eq!(a.next_fault(), b.next_fault());
        }
    }

    #[test]
    fn draws_have_the_configured_mean_and_use_every_kind() {
        let mut schedule = FaultSchedule::new(&config(7));
        let draws: Vec<PlannedFault> = (0..20_000).filter_map(|_| schedule.next_fault()).collect();
        let mean = draws
            .iter()
            .map(|f| f.after_audio.as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((mean - 2.0).abs() < 0.1, "mean {mean}");
        let drops = draws.iter().filter(|f| f.kind == FaultKind::Drop).count();
        assert!((9_000..11_000).contains(&drops), "{drops} drops");
    }

    #[test]
    fn no_interval_means_no_faults() {
        let mut schedule = FaultSchedule::new(&FaultConfig::default());
        assert_eq!(schedule.next_fault(), None);
    }
}
