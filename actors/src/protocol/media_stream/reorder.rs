//! Telnyx does not promise that a stream's frames arrive in order ("reorder by
//! `sequence_number`"): a [`Reorder`] puts them back in order with a small bounded window.
//!
//! - A frame with the next number passes at once, with any held frames that follow it: in order,
//!   nothing waits.
//! - A frame ahead of a gap is held until the gap fills; when more than `window` frames are held,
//!   the gap is given up (its numbers counted as `missing`) and the held frames go on. So a lost
//!   frame delays the stream by at most `window` frames (20 ms each at Telnyx's usual size).
//! - A frame whose number has already passed (a duplicate, or one that came after its gap was
//!   given up) is skipped (`late`), as is a second copy of a held one (`duplicate`): audio is
//!   never sent twice or out of place.
//! - [`Reorder::flush`] lets everything held go, in order (at `stop`: nothing follows it).
//!
//! A window of 0 turns reordering off: frames pass as they come.

use std::collections::BTreeMap;

/// What became of one numbered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed or held; `missing` numbers were given up to make room.
    Taken { missing: u64 },
    /// A copy of a frame already held: skipped.
    Duplicate,
    /// Its place had passed: skipped.
    Late,
}

/// Frames put back in sequence order (see the module doc).
#[derive(Debug)]
pub struct Reorder<T> {
    window: usize,
    /// The number expected next; `None` until the first numbered frame.
    next: Option<u64>,
    /// Frames ahead of a gap, by number.
    held: BTreeMap<u64, T>,
}

impl<T> Reorder<T> {
    /// Holds at most `window` frames ahead of a gap (0: no reordering).
    pub fn new(window: usize) -> Reorder<T> {
        Reorder {
            window,
            next: None,
            held: BTreeMap::new(),
        }
    }

    /// Takes frame `sequence`; the frames now in order are pushed onto `ready`.
    pub fn push(&mut self, sequence: u64, frame: T, ready: &mut Vec<T>) -> Outcome {
        if self.window == 0 {
            ready.push(frame);
            return Outcome::Taken { missing: 0 };
        }
        let next = *self.next.get_or_insert(sequence);
        if sequence < next {
            return Outcome::Late;
        }
        if self.held.contains_key(&sequence) {
            return Outcome::Duplicate;
        }
        self.held.insert(sequence, frame);
        let mut missing = 0;
        if self.held.len() > self.window {
            // Give up on the gap: resume at the oldest held frame.
            if let Some(&oldest) = self.held.keys().next() {
                missing = oldest - next;
                self.next = Some(oldest);
            }
        }
        self.release(ready);
        Outcome::Taken { missing }
    }

    /// Lets every held frame go, in order.
    pub fn flush(&mut self, ready: &mut Vec<T>) {
        if let Some((&last, _)) = self.held.iter().next_back() {
            self.next = Some(last + 1);
        }
        ready.extend(std::mem::take(&mut self.held).into_values());
    }

    /// The held frames that follow on from `next`.
    fn release(&mut self, ready: &mut Vec<T>) {
        let Some(mut next) = self.next else {
            return;
        };
        while let Some(frame) = self.held.remove(&next) {
            ready.push(frame);
            next += 1;
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(window: usize, numbers: &[u64]) -> (Vec<u64>, Vec<Outcome>) {
        let mut reorder = Reorder::new(window);
        let mut ready = Vec::new();
        let outcomes = numbers
            .iter()
            .map(|&n| reorder.push(n, n, &mut ready))
            .collect();
        reorder.flush(&mut ready);
        (ready, outcomes)
    }

    const TAKEN: Outcome = Outcome::Taken { missing: 0 };

    #[test]
    fn frames_in_order_pass_at_once() {
        let mut reorder = Reorder::new(3);
        let mut ready = Vec::new();
        for n in 1..=4 {
            assert_eq!(reorder.push(n, n, &mut ready), TAKEN);
            assert_eq!(ready.last(), Some(&n), "frame {n} waited");
        }
    }

    #[test]
    fn swapped_frames_are_put_back_in_order() {
        let (ready, outcomes) = run(3, &[1, 3, 2, 5, 4, 6]);
        assert_eq!(ready, [1, 2, 3, 4, 5, 6]);
        assert!(outcomes.iter().all(|o| *o == TAKEN));
    }

    #[test]
    fn duplicates_and_late_frames_are_skipped() {
        let (ready, outcomes) = run(3, &[1, 2, 2, 4, 4, 3, 1]);
        assert_eq!(ready, [1, 2, 3, 4]);
        assert_eq!(
            outcomes,
            [
                TAKEN,
                TAKEN,
                Outcome::Late,
                TAKEN,
                Outcome::Duplicate,
                TAKEN,
                Outcome::Late
            ]
        );
    }

    #[test]
    fn a_gap_is_given_up_once_the_window_is_full() {
        let mut reorder = Reorder::new(2);
        let mut ready = Vec::new();
        assert_eq!(reorder.push(1, 1, &mut ready), TAKEN);
        assert_eq!(reorder.push(3, 3, &mut ready), TAKEN);
        assert_eq!(reorder.push(4, 4, &mut ready), TAKEN);
        assert_eq!(ready, [1], "two held, within the window");
        assert_eq!(
            reorder.push(5, 5, &mut ready),
            Outcome::Taken { missing: 1 }
        );
        assert_eq!(ready, [1, 3, 4, 5]);
        assert_eq!(reorder.push(2, 2, &mut ready), Outcome::Late);
        assert_eq!(ready, [1, 3, 4, 5]);
    }

    #[test]
    fn flush_lets_held_frames_go_in_order() {
        let (ready, _) = run(5, &[1, 4, 3]);
        assert_eq!(ready, [1, 3, 4]);
    }

    #[test]
    fn window_zero_passes_frames_as_they_come() {
        let (ready, outcomes) = run(0, &[2, 1, 1]);
        assert_eq!(ready, [2, 1, 1]);
        assert!(outcomes.iter().all(|o| *o == TAKEN));
    }
}
