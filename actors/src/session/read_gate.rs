//! Flow control on the read side of one connection: how far the frame guard
//! ([`super::frame_limit`]) may read ahead of the session, and whether reading is paused.
//!
//! Why: actix's WebSocket stream reads *everything* the connection has before decoding one frame,
//! and the session handles at most 16 frames per turn, so a client flooding tiny frames (pings,
//! say) would make that read buffer grow without bound. The frame guard therefore admits a frame
//! to the codec only while the bytes of frames admitted but not yet received by the session stay
//! within a budget (one frame of the largest size always fits). When the guard waits, the
//! connection's own buffers fill and the kernel stops the client (TCP flow control).
//!
//! The same gate paces a client that sends faster than the session allows: the session pauses
//! reading until a given instant, and the guard admits no frame before it.
//!
//! The gate is shared by the guard (polled inside the session's context) and the session, on one
//! thread: `Rc<RefCell<…>>`, never held across a poll.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The shared handle; clones refer to the same gate.
#[derive(Clone)]
pub(super) struct ReadGate(Rc<RefCell<GateState>>);

struct GateState {
    /// Bytes of frames admitted to the codec and not yet received by the session.
    in_flight: u64,
    /// The size of each of those frames, oldest first.
    frames: VecDeque<u64>,
    /// `in_flight` stays within this, except that one frame is always admitted.
    budget: u64,
    /// No frame is admitted before this instant (pacing).
    paused_until: Option<Instant>,
    /// The timer of a pause, polled by the guard.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The guard, waiting for the session to receive frames.
    waker: Option<Waker>,
}

impl ReadGate {
    /// A gate that lets the guard read `budget` bytes of frames ahead of the session.
    pub(super) fn new(budget: u64) -> ReadGate {
        ReadGate(Rc::new(RefCell::new(GateState {
            in_flight: 0,
            frames: VecDeque::new(),
            budget,
            paused_until: None,
            sleep: None,
            waker: None,
        })))
    }

    /// The guard asks to hand a frame of `size` bytes to the codec: ready when it may (then the
    /// frame counts as in flight), pending while reading is paused or the budget is used up.
    pub(super) fn admit(&self, size: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.borrow_mut();
        if let Some(until) = state.paused_until {
            if Instant::now() < until {
                let deadline = tokio::time::Instant::from_std(until);
                let sleep = state
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            state.paused_until = None;
            state.sleep = None;
        }
        if state.in_flight > 0 && state.in_flight.saturating_add(size) > state.budget {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        state.in_flight += size;
        state.frames.push_back(size);
        Poll::Ready(())
    }

    /// The session received the oldest frame in flight.
    pub(super) fn frame_received(&self) {
        let waker = {
            let mut state = self.0.borrow_mut();
            if let Some(size) = state.frames.pop_front() {
                state.in_flight -= size;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// No frame is admitted before `until` (a later pause already set is kept).
    pub(super) fn pause_until(&self, until: Instant) {
        let mut state = self.0.borrow_mut();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }

    /// Bytes of frames admitted and not yet received.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> u64 {
        self.0.borrow().in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn poll_admit(gate: &ReadGate, size: u64) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        gate.admit(size, &mut cx)
    }

    #[actix_rt::test]
    async fn frames_are_admitted_within_the_budget_and_one_always_fits() {
        let gate = ReadGate::new(100);
        assert!(poll_admit(&gate, 60).is_ready());
        assert!(poll_admit(&gate, 40).is_ready(), "exactly the budget");
        assert!(poll_admit(&gate, 1).is_pending(), "over the budget");
        gate.frame_received();
        assert_eq!(gate.in_flight(), 40);
        assert!(poll_admit(&gate, 60).is_ready());
        gate.frame_received();
        gate.frame_received();
        assert_eq!(gate.in_flight(), 0);
        assert!(
            poll_admit(&gate, 500).is_ready(),
            "a lone frame always fits"
        );
        gate.frame_received();
        gate.frame_received(); // more receipts than frames: ignored
        assert_eq!(gate.in_flight(), 0);
    }

    #[actix_rt::test]
    async fn a_pause_holds_frames_until_its_instant() {
        let gate = ReadGate::new(100);
        gate.pause_until(Instant::now() + Duration::from_millis(50));
        gate.pause_until(Instant::now() + Duration::from_millis(10)); // earlier: ignored
        assert!(poll_admit(&gate, 1).is_pending());
        let began = Instant::now();
        std::future::poll_fn(|cx| gate.admit(1, cx)).await;
        assert!(began.elapsed() >= Duration::from_millis(30));
        assert!(poll_admit(&gate, 1).is_ready(), "the pause is over");
    }
}
