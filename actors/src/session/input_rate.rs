//! How fast a client may send, as the session sees it: frames per second (floods of tiny frames
//! or pings are rejected), input bytes against real time (input faster than
//! `max_audio_speed` × real time is paced), and how far its audio may run ahead of real time
//! (beyond `max_audio_lead_ms` it is rejected).
//!
//! "Real time" is the format's *highest* byte rate ([`AudioFormat::max_bytes_per_second`]): exact
//! for PCM, the codec's top bit rate for compressed audio, so a real-time client of any bit rate
//! is never paced. Before `start`, LINEAR16 at 48 kHz (the largest raw rate) stands in.
//!
//! Pure arithmetic on instants the caller gives, so it is tested without a clock.

use std::time::{Duration, Instant};

use crate::audio::{AudioFormat, Encoding};
use crate::protocol::{ErrorCode, Rejection};
use crate::settings::SessionSettings;
use crate::token_bucket::TokenBucket;

/// The format whose rate bounds input before the session is configured.
const BEFORE_START: AudioFormat = AudioFormat {
    encoding: Encoding::Linear16,
    sample_rate_hz: 48_000,
};

/// The longest a client's reading is paused at once (a debt longer than this, possible only with
/// extreme settings, is waited out in several pauses).
const MAX_PAUSE: Duration = Duration::from_secs(3_600);

/// One session's input limits.
#[derive(Debug, Clone)]
pub(super) struct InputRate {
    /// One token per frame: `max_messages_per_sec`, one second deep.
    frames: TokenBucket,
    /// One token per input byte: `max_audio_speed` × real time, `audio_burst_ms` deep.
    bytes: TokenBucket,
    max_speed: f64,
    burst_ms: f64,
    /// The current format's real-time byte rate.
    real_time_bytes_per_sec: f64,
    /// Audio received, in milliseconds of real time.
    audio_ms: f64,
    /// When the first audio byte arrived (the lead is measured from it).
    first_audio: Option<Instant>,
    max_lead_ms: f64,
    max_messages_per_sec: u32,
}

impl InputRate {
    pub(super) fn new(settings: &SessionSettings, now: Instant) -> InputRate {
        let frames = f64::from(settings.max_messages_per_sec);
        let mut rate = InputRate {
            frames: TokenBucket::full(frames, frames, now),
            bytes: TokenBucket::full(0.0, 0.0, now),
            max_speed: settings.max_audio_speed.max(0.0),
            burst_ms: settings.audio_burst_ms as f64,
            real_time_bytes_per_sec: 0.0,
            audio_ms: 0.0,
            first_audio: None,
            max_lead_ms: settings.max_audio_lead_ms as f64,
            max_messages_per_sec: settings.max_messages_per_sec,
        };
        rate.set_format(BEFORE_START, now);
        rate
    }

    /// The session is configured: input is measured against this format from now on.
    pub(super) fn set_format(&mut self, format: AudioFormat, now: Instant) {
        self.real_time_bytes_per_sec = format.max_bytes_per_second() as f64;
        self.bytes = TokenBucket::full(
            self.real_time_bytes_per_sec * self.burst_ms / 1_000.0,
            self.real_time_bytes_per_sec * self.max_speed,
            now,
        );
    }

    /// A frame arrived (any kind): `too_many_messages` once they come faster than allowed.
    pub(super) fn frame(&mut self, now: Instant) -> Result<(), Rejection> {
        if self.frames.take_with_debt(1.0, now).is_zero() {
            return Ok(());
        }
        Err(Rejection::new(
            ErrorCode::TooManyMessages,
            format!(
                "more than {} WebSocket frames per second",
                self.max_messages_per_sec
            ),
        ))
    }

    /// `bytes` of input (a data frame's payload) arrived: `Some(instant)` when the client is over
    /// its rate and reading should pause until then.
    pub(super) fn input(&mut self, bytes: usize, now: Instant) -> Option<Instant> {
        let wait = self.bytes.take_with_debt(bytes as f64, now).min(MAX_PAUSE);
        // `now + wait` cannot overflow with `wait` ≤ MAX_PAUSE on any real clock; checked anyway.
        (!wait.is_zero()).then(|| now.checked_add(wait).unwrap_or(now))
    }

    /// `bytes` of audio arrived: `audio_too_fast` once the audio runs more than `max_audio_lead_ms`
    /// ahead of real time.
    pub(super) fn audio(&mut self, bytes: usize, now: Instant) -> Result<(), Rejection> {
        if self.real_time_bytes_per_sec <= 0.0 {
            return Ok(());
        }
        let first = *self.first_audio.get_or_insert(now);
        self.audio_ms += bytes as f64 * 1_000.0 / self.real_time_bytes_per_sec;
        let elapsed_ms = now.saturating_duration_since(first).as_secs_f64() * 1_000.0;
        let lead_ms = self.audio_ms - elapsed_ms;
        if lead_ms <= self.max_lead_ms {
            return Ok(());
        }
        Err(Rejection::new(
            ErrorCode::AudioTooFast,
            format!(
                "the audio runs {:.0} ms ahead of real time; at most {:.0} ms are allowed",
                lead_ms, self.max_lead_ms
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SessionSettings {
        SessionSettings {
            max_messages_per_sec: 10,
            max_audio_speed: 2.0,
            audio_burst_ms: 1_000,
            max_audio_lead_ms: 3_000,
            ..SessionSettings::default()
        }
    }

    const PCM16K: AudioFormat = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 16_000,
    };

    #[test]
    fn frames_beyond_the_rate_are_rejected_and_the_rate_recovers() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        for _ in 0..10 {
            assert!(rate.frame(t0).is_ok());
        }
        let over = rate.frame(t0).err().map(|r| r.code);
        assert_eq!(over, Some(ErrorCode::TooManyMessages));
        let mut rate = InputRate::new(&settings(), t0);
        // Ten per second, for a minute: always fine.
        for i in 0..600u64 {
            assert!(rate.frame(t0 + Duration::from_millis(i * 100)).is_ok());
        }
    }

    #[test]
    fn input_within_burst_and_speed_is_never_paced() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        rate.set_format(PCM16K, t0);
        // 1 s at once (the burst), then real time (32 000 B/s) in 100 ms chunks for a minute.
        assert_eq!(rate.input(32_000, t0), None);
        for i in 1..=600u64 {
            assert_eq!(rate.input(3_200, t0 + Duration::from_millis(i * 100)), None);
        }
    }

    /// Kept from the properties: one chunk longer than the burst is paced even at real time.
    #[test]
    fn a_chunk_longer_than_the_burst_is_paced() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        rate.set_format(PCM16K, t0);
        let at = t0 + Duration::from_millis(1_001);
        assert!(rate.input(1_001 * 32, at).is_some());
    }

    #[test]
    fn input_beyond_the_burst_is_paced_to_the_speed() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        rate.set_format(PCM16K, t0);
        assert_eq!(rate.input(32_000, t0), None, "the burst");
        // 1 s more at once: at 2× real time (64 000 B/s) that is a 0.5 s debt.
        let pause = rate.input(32_000, t0);
        assert_eq!(pause, Some(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn input_before_start_is_measured_at_the_largest_raw_rate() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        // 1 s of LINEAR16 at 48 kHz is the burst.
        assert_eq!(rate.input(96_000, t0), None);
        assert!(rate.input(96_000, t0).is_some());
    }

    #[test]
    fn audio_ahead_of_real_time_by_more_than_the_lead_is_rejected() {
        let t0 = Instant::now();
        let mut rate = InputRate::new(&settings(), t0);
        rate.set_format(PCM16K, t0);
        // 2× real time: the lead grows by 100 ms per 100 ms; 3 s are allowed.
        let mut rejected_at = None;
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 100);
            if let Err(rejection) = rate.audio(6_400, now) {
                assert_eq!(rejection.code, ErrorCode::AudioTooFast);
                rejected_at = Some(i);
                break;
            }
        }
        assert_eq!(rejected_at, Some(29), "the lead passes 3 s after 2.9 s");
        // Real time forever is fine.
        let mut rate = InputRate::new(&settings(), t0);
        rate.set_format(PCM16K, t0);
        for i in 0..6_000u64 {
            assert!(rate
                .audio(3_200, t0 + Duration::from_millis(i * 100))
                .is_ok());
        }
    }

    /// A paced speed so small that the debt is beyond any `Duration`: a bounded pause, no
    /// overflow.
    #[test]
    fn an_extreme_debt_is_a_bounded_pause() {
        let t0 = Instant::now();
        let mut tiny = settings();
        tiny.max_audio_speed = 1e-300;
        let mut rate = InputRate::new(&tiny, t0);
        rate.set_format(PCM16K, t0);
        let _ = rate.input(1_000_000, t0);
        let pause = rate.input(1_000_000, t0);
        assert_eq!(pause, Some(t0 + MAX_PAUSE));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Audio at real time — each chunk sent once recorded — in chunks up to the burst, is
            /// never paced nor rejected. (A chunk larger than the burst is paced however slowly it
            /// comes: the burst must cover the largest chunk a client sends.)
            #[test]
            fn real_time_audio_is_never_held_back(chunks in prop::collection::vec(1u64..=1_000, 1..200)) {
                let t0 = Instant::now();
                let mut rate = InputRate::new(&settings(), t0);
                rate.set_format(PCM16K, t0);
                let mut at_ms = 0;
                for chunk_ms in chunks {
                    at_ms += chunk_ms;
                    let now = t0 + Duration::from_millis(at_ms);
                    let bytes = (chunk_ms * 32) as usize;
                    prop_assert_eq!(rate.input(bytes, now), None);
                    prop_assert!(rate.audio(bytes, now).is_ok());
                }
            }

            /// Whatever arrives, a pause lies ahead of its arrival and no further than the debt
            /// at the paced speed.
            #[test]
            fn pauses_are_bounded_by_the_debt(
                inputs in prop::collection::vec((0usize..200_000, 0u64..500), 1..100)
            ) {
                let t0 = Instant::now();
                let mut rate = InputRate::new(&settings(), t0);
                rate.set_format(PCM16K, t0);
                let mut now = t0;
                let mut total = 0u64;
                for (bytes, gap_ms) in inputs {
                    now += Duration::from_millis(gap_ms);
                    total += bytes as u64;
                    if let Some(until) = rate.input(bytes, now) {
                        prop_assert!(until > now);
                        // 64 000 B/s at 2× real time: never longer than all input so far takes.
                        let longest = Duration::from_secs_f64(total as f64 / 64_000.0);
                        prop_assert!(until - now <= longest + Duration::from_millis(1));
                    }
                }
            }
        }
    }
}
