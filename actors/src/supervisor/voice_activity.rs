//! Which voice-activity events of the session's streams reach the client. Each stream reports
//! speech beginning and ending on the session clock, but a restarted or rotated stream replays
//! audio from the end of the last final, so it may report again a beginning the client already
//! heard (the replay starts inside the same speech). The client is promised alternation —
//! `speech_started`, `speech_ended`, `speech_started`, … — at times that never go back: this
//! filter keeps exactly those events, as a pure function of the last one delivered.

use crate::messages::{SpeechActivity, VoiceActivity};

/// The last voice-activity event delivered to the client. See the module doc.
#[derive(Debug, Default)]
pub struct VoiceActivityFilter {
    last: Option<VoiceActivity>,
}

impl VoiceActivityFilter {
    /// Whether `event` goes to the client: it must be the other kind than the last delivered (a
    /// beginning first) and not earlier than it. A delivered event becomes the last.
    pub fn admit(&mut self, event: VoiceActivity) -> bool {
        let expected = match self.last {
            None => SpeechActivity::Started,
            Some(last) if event.at_ms < last.at_ms => return false,
            Some(VoiceActivity {
                activity: SpeechActivity::Started,
                ..
            }) => SpeechActivity::Ended,
            Some(VoiceActivity {
                activity: SpeechActivity::Ended,
                ..
            }) => SpeechActivity::Started,
        };
        let admitted = event.activity == expected;
        if admitted {
            self.last = Some(event);
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(at_ms: u64) -> VoiceActivity {
        VoiceActivity {
            activity: SpeechActivity::Started,
            at_ms,
        }
    }

    fn ended(at_ms: u64) -> VoiceActivity {
        VoiceActivity {
            activity: SpeechActivity::Ended,
            at_ms,
        }
    }

    /// What a client hears of a sequence of stream reports (the table of cases).
    fn delivered(reports: &[VoiceActivity]) -> Vec<VoiceActivity> {
        let mut filter = VoiceActivityFilter::default();
        reports
            .iter()
            .copied()
            .filter(|e| filter.admit(*e))
            .collect()
    }

    #[test]
    fn alternating_events_pass_in_order() {
        let all = [started(500), ended(1_700), started(2_400), ended(3_100)];
        assert_eq!(delivered(&all), all);
    }

    #[test]
    fn a_replayed_beginning_is_not_repeated() {
        // Stream 1 hears speech begin at 2 400 and fails; stream 2 replays from the last final
        // (1 700) and hears the same beginning, then its end.
        let reports = [
            started(500),
            ended(1_700),
            started(2_400),
            started(2_400),
            ended(3_100),
        ];
        assert_eq!(
            delivered(&reports),
            [started(500), ended(1_700), started(2_400), ended(3_100)]
        );
    }

    #[test]
    fn an_end_first_or_an_event_back_in_time_is_dropped() {
        assert_eq!(delivered(&[ended(300), started(500)]), [started(500)]);
        assert_eq!(
            delivered(&[started(500), ended(1_700), started(1_200), started(2_000)]),
            [started(500), ended(1_700), started(2_000)]
        );
    }
}
