//! The forced final: speech without a pause gives no final result, so a replacement stream (after
//! a rotation at the maximum age, a failure or the upstream's duration limit) would replay it from
//! the same point again and again, each stream dying before the speech ends. A stream that gave no
//! final for `force_final_after_secs` is therefore half-closed ([`ForceFinal`] to the buffer, after
//! the audio already sent); its final comes, and the next stream continues from that final's end.
//!
//! The half-close falls anywhere, possibly inside a word: the last word of the forced final may be
//! cut in two. So that final is delivered without its last word, ending halfway between the words
//! before and the cut one, and the stream's later results are left out: the next stream starts
//! there and recognises the cut word whole. A final without word times is delivered as it is.
//!
//! The timer of the current stream is re-armed at its attach and at each of its finals, and
//! cancelled when the stream ends or is half-closed by the buffer (`finalize`, gap, `stop`). The
//! time without a final is counted only while the gateway was awake ([`QuietWatch`]): a gateway
//! stopped or starved of CPU fires its late timers before it reads the results that came
//! meanwhile, and forcing then would cut a word off an utterance whose final was merely unread.

use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::info;

use super::decision::Ending;
use super::StreamSupervisor;
use crate::messages::{ForceFinal, Transcript};
use crate::quiet_watch::{note_stall, Look, QuietWatch};

/// A stream's part in a forced final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CutWord {
    /// Not half-closed for a forced final.
    NotForced,
    /// Half-closed for a forced final: its next final loses its last word.
    Pending,
    /// That final came: this stream's later results are left to the next stream.
    LeftToNextStream,
}

/// The forced final without the word the half-close may have cut: ends halfway between the word
/// before it and the cut word. `None` if no word is left; the final as it is if it has no word
/// times.
pub(super) fn without_cut_word(mut final_result: Transcript) -> Option<Transcript> {
    let Some(cut) = final_result.words.pop() else {
        return Some(final_result);
    };
    let last = final_result.words.last()?;
    final_result.end_ms = last.end_ms + cut.start_ms.saturating_sub(last.end_ms) / 2;
    let text = final_result.transcript.trim_end();
    final_result.transcript = match text.rsplit_once(char::is_whitespace) {
        Some((head, _)) => head.trim_end().to_string(),
        None => final_result
            .words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    };
    Some(final_result)
}

impl StreamSupervisor {
    /// (Re-)arms the forced final of the current stream: `force_final_after` from now, counted
    /// while the gateway was awake (a [`QuietWatch`]: a stalled gateway has not read the finals
    /// that came meanwhile).
    pub(super) fn arm_force_final(&mut self, ctx: &mut Context<Self>) {
        self.cancel_force_final(ctx);
        let Some(after) = self.policy.rotation().force_final_after else {
            return;
        };
        let Some(stream_id) = self.current().map(|c| c.id) else {
            return;
        };
        if self.config.single_utterance {
            return; // it ends with its utterance
        }
        let watch = QuietWatch::new(after, self.policy.stall_tolerance(), Instant::now());
        self.look_for_a_final(stream_id, watch, after, ctx);
    }

    /// After `after`, looks whether `stream_id` went `watch`'s span without a final: forces one,
    /// or looks again.
    fn look_for_a_final(
        &mut self,
        stream_id: u64,
        mut watch: QuietWatch,
        after: Duration,
        ctx: &mut Context<Self>,
    ) {
        let due = Instant::now() + after;
        self.force_final_timer = Some(ctx.run_later(after, move |act, ctx| {
            act.force_final_timer = None;
            match watch.look(due, Instant::now()) {
                Look::Elapsed => act.force_final(stream_id, ctx),
                Look::Again(after) => act.look_for_a_final(stream_id, watch, after, ctx),
                Look::Stalled { late_by, again } => {
                    note_stall("forced_final", late_by, &act.session_id);
                    act.look_for_a_final(stream_id, watch, again, ctx);
                }
            }
        }));
    }

    pub(super) fn cancel_force_final(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.force_final_timer.take() {
            ctx.cancel_future(timer);
        }
    }

    /// `stream_id` gave no final for `force_final_after`: half-close it, unless it is no longer
    /// the current stream or is ending anyway.
    fn force_final(&mut self, stream_id: u64, ctx: &mut Context<Self>) {
        let Some(current) = self
            .current()
            .filter(|c| c.id == stream_id && c.ending == Ending::Unrequested)
        else {
            return;
        };
        info!(
            session = %self.session_id,
            stream = stream_id,
            age_ms = current.started_at.elapsed().as_millis() as u64,
            last_final_ms = self.last_final_end_ms.unwrap_or(0),
            "no final for long: half-closing the stream to force one"
        );
        // The next stream starts after this one's final, not by a switch.
        self.cancel_rotation(ctx);
        self.buffer.force_final.do_send(ForceFinal { stream_id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WordTiming;

    fn word(word: &str, start_ms: u64, end_ms: u64) -> WordTiming {
        WordTiming {
            word: word.into(),
            start_ms,
            end_ms,
            confidence: 0.9,
        }
    }

    fn final_of(words: Vec<WordTiming>, text: &str, end_ms: u64) -> Transcript {
        Transcript {
            is_final: true,
            transcript: text.into(),
            confidence: 0.9,
            stability: 0.0,
            start_ms: words.first().map_or(0, |w| w.start_ms),
            end_ms,
            words,
            language_code: "en-US".into(),
        }
    }

    /// The last word goes; the final ends halfway between the word before and the cut one.
    #[test]
    fn the_cut_word_is_left_out() {
        let forced = final_of(
            vec![
                word("alpha", 1_000, 1_200),
                word("bravo", 1_300, 1_500),
                word("cha", 1_600, 1_700),
            ],
            "alpha bravo cha",
            1_700,
        );
        let kept = without_cut_word(forced).expect("two words are left");
        assert_eq!(kept.transcript, "alpha bravo");
        assert_eq!(kept.words.len(), 2);
        assert_eq!((kept.start_ms, kept.end_ms), (1_000, 1_550));
    }

    /// One word only: nothing is left to deliver. No word times: the final is kept whole.
    #[test]
    fn a_single_word_leaves_nothing_and_no_times_keep_all() {
        let single = final_of(vec![word("alp", 1_000, 1_100)], "alp", 1_100);
        assert_eq!(without_cut_word(single), None);
        let untimed = final_of(Vec::new(), "alpha bravo", 2_000);
        assert_eq!(without_cut_word(untimed.clone()), Some(untimed));
    }
}
