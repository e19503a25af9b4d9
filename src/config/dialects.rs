//! `[dialects.*]`: which vendor protocols the server also speaks, and their own rules
//! (`docs/dialects.md`). Each dialect's settings type lives with the dialect in
//! `voxgate_actors::protocol`; this section only gathers them.

use serde::Deserialize;
use voxgate_actors::protocol::deepgram::DeepgramSettings;
use voxgate_actors::protocol::jambonz::JambonzSettings;
use voxgate_actors::protocol::media_stream::{TelnyxSettings, TwilioSettings, MAX_REORDER_FRAMES};
use voxgate_actors::protocol::openai::OpenAiSettings;
use voxgate_actors::protocol::vosk::VoskSettings;

/// `[dialects]`: one sub-table per dialect.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DialectsSettings {
    /// `[dialects.deepgram]`: Deepgram's live API at `/deepgram/v1/listen`.
    pub deepgram: DeepgramSettings,
    /// `[dialects.openai]`: OpenAI's Realtime transcription at `/openai/v1/realtime`.
    pub openai: OpenAiSettings,
    /// `[dialects.twilio]`: Twilio Media Streams at `/twilio`.
    pub twilio: TwilioSettings,
    /// `[dialects.telnyx]`: Telnyx media streaming at `/telnyx`.
    pub telnyx: TelnyxSettings,
    /// `[dialects.jambonz]`: jambonz's custom speech-to-text vendor API at `/jambonz`.
    pub jambonz: JambonzSettings,
    /// `[dialects.vosk]`: vosk-server's WebSocket protocol at `/vosk`.
    pub vosk: VoskSettings,
}

impl DialectsSettings {
    /// The range checks of `Config::validate`: (key, ok). A call's frame length is checked as
    /// `[audio] frame_ms` is: 10–1 000 ms, within `[audio] max_buffer_ms`.
    pub fn checks(&self, max_buffer_ms: u64) -> Vec<(&'static str, bool)> {
        let frame = |ms: u64| (10..=1_000).contains(&ms) && ms <= max_buffer_ms;
        let no_audio = self.deepgram.no_audio_timeout_secs;
        let language = |tag: &str| {
            !tag.is_empty()
                && tag.len() <= 35
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let mut checks = vec![
            (
                "dialects.deepgram.no_audio_timeout_secs",
                no_audio > 0.0 && no_audio <= 3_600.0,
            ),
            (
                "dialects.twilio.auth_token",
                self.twilio
                    .auth_token
                    .as_ref()
                    .is_none_or(|t| !t.is_empty()),
            ),
            (
                "dialects.twilio.public_url",
                self.twilio.public_url.as_ref().is_none_or(|u| {
                    ["wss://", "ws://", "https://", "http://"]
                        .iter()
                        .any(|s| u.starts_with(s))
                }),
            ),
            (
                "dialects.twilio.language_code",
                language(&self.twilio.language_code),
            ),
            (
                "dialects.telnyx.language_code",
                language(&self.telnyx.language_code),
            ),
            (
                "dialects.telnyx.reorder_frames",
                self.telnyx.reorder_frames <= MAX_REORDER_FRAMES,
            ),
            ("dialects.twilio.frame_ms", frame(self.twilio.frame_ms)),
            ("dialects.telnyx.frame_ms", frame(self.telnyx.frame_ms)),
            ("dialects.jambonz.frame_ms", frame(self.jambonz.frame_ms)),
        ];
        checks.extend(self.vosk.checks());
        checks
    }
}
