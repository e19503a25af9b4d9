//! Rotation of healthy streams before Google's stream-duration limit.
//!
//! At `rotate_after_secs` the supervisor opens the next stream ahead of time (the *standby*: the
//! call and its configuration, no audio). At the current stream's next final result — the point
//! where everything before the final's end is delivered — it cancels the current stream and
//! attaches the standby with a replay from that end; the old stream's unfinalised tail (at most
//! the pacing burst) is recognised again by the new one, and finals are deduplicated by end time.
//! A standby that waited `standby_max_wait_secs` is replaced by a fresh one (Google ends a call
//! that gets no audio for ~10 s); at `max_stream_secs` the switch happens whatever. A rotation is
//! not a failure: no backoff, no warning, not counted against the intensity.
//!
//! The rotation's part of the actor lives here: its state ([`Rotation`]) and the supervisor's
//! methods that arm, refresh and carry it out.

use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, info};

use super::decision::Ending;
use super::{ActiveStream, StreamSupervisor};
use crate::messages::CancelStream;
use crate::metrics::METRICS;

/// The rotation of the current stream.
pub(super) enum Rotation {
    /// The current stream is younger than `rotate_after`, ending, or there is none.
    NotDue,
    /// The current stream is past `rotate_after`: its next final switches to the standby (the
    /// next stream, opened ahead of time and not attached yet) if one is open.
    Due { standby: Option<ActiveStream> },
}

impl Rotation {
    pub(super) fn standby(&self) -> Option<&ActiveStream> {
        match self {
            Rotation::Due { standby } => standby.as_ref(),
            Rotation::NotDue => None,
        }
    }

    /// Takes the standby out; the rotation stays due.
    pub(super) fn take_standby(&mut self) -> Option<ActiveStream> {
        match self {
            Rotation::Due { standby } => standby.take(),
            Rotation::NotDue => None,
        }
    }
}

impl StreamSupervisor {
    /// Arms the rotation of the stream just attached (`age` old): due at `rotate_after`. Any
    /// earlier rotation (its timer, its standby) is cancelled. A single-utterance stream ends by
    /// itself long before and is never rotated.
    pub(super) fn arm_rotation(&mut self, age: Duration, ctx: &mut Context<Self>) {
        self.cancel_rotation(ctx);
        if !self.config.single_utterance {
            let wait = self.policy.rotation().rotate_after.saturating_sub(age);
            self.rotation_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.rotation_timer = None;
                act.on_rotation_due(ctx);
            }));
        }
    }

    pub(super) fn cancel_rotation(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.rotation_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(standby) =
            std::mem::replace(&mut self.rotation, Rotation::NotDue).take_standby()
        {
            standby.handle.cancel.do_send(CancelStream);
        }
    }

    /// `current` reached `rotate_after`: open the standby; switch at the next final.
    fn on_rotation_due(&mut self, ctx: &mut Context<Self>) {
        if self
            .current()
            .is_none_or(|c| c.ending != Ending::Unrequested)
        {
            return;
        }
        self.rotation = Rotation::Due { standby: None };
        self.refresh_standby(ctx);
    }

    /// Opens a (new) standby — unless the upstream is down — and arms the next check: the
    /// standby's refresh or the current stream's maximum age, whichever comes first.
    fn refresh_standby(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.rotation.take_standby() {
            old.handle.cancel.do_send(CancelStream);
        }
        if !self.breaker.is_open() {
            let standby = self.open_stream(ctx);
            debug!(session = %self.session_id, stream = standby.id, "standby stream opened for a rotation");
            self.rotation = Rotation::Due {
                standby: Some(standby),
            };
        }
        let Some(age) = self.current().map(|c| c.started_at.elapsed()) else {
            return;
        };
        let rotation = self.policy.rotation();
        let wait = rotation
            .standby_max_wait
            .min(rotation.max_age.saturating_sub(age));
        self.rotation_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.rotation_timer = None;
            if act.is_done() || matches!(act.rotation, Rotation::NotDue) {
                return;
            }
            let age = act.current().map(|c| c.started_at.elapsed());
            if age.is_some_and(|age| age >= act.policy.rotation().max_age) {
                act.rotate("maximum age", ctx);
            } else {
                act.refresh_standby(ctx);
            }
        }));
    }

    /// Replaces `current` by the standby (or a new stream), replaying from the last final.
    pub(super) fn rotate(&mut self, why: &'static str, ctx: &mut Context<Self>) {
        let Some(old) = self.current() else {
            return;
        };
        old.handle.cancel.do_send(CancelStream);
        let (old_id, old_age) = (old.id, old.started_at.elapsed());
        let next = match self.rotation.take_standby() {
            Some(standby) => standby,
            None => self.open_stream(ctx),
        };
        METRICS.stream_rotations.inc();
        info!(
            session = %self.session_id,
            from = old_id,
            to = next.id,
            age_ms = old_age.as_millis() as u64,
            replay_from_ms = self.last_final_end_ms.unwrap_or(0),
            why,
            "upstream stream rotated"
        );
        let resume = self.resume_after_last_final();
        self.attach(next, resume, ctx);
    }
}
