//! `[dialects.*]`: which vendor protocols the server also speaks, and their own rules
//! (`docs/dialects.md`). Each dialect's settings type lives with the dialect in
//! `voxgate_actors::protocol`; this section only gathers them.

use serde::Deserialize;
use voxgate_actors::protocol::deepgram::DeepgramSettings;
use voxgate_actors::protocol::jambonz::JambonzSettings;
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
    /// `[dialects.jambonz]`: jambonz's custom speech-to-text vendor API at `/jambonz`.
    pub jambonz: JambonzSettings,
    /// `[dialects.vosk]`: vosk-server's WebSocket protocol at `/vosk`.
    pub vosk: VoskSettings,
}

impl DialectsSettings {
    /// The range checks of `Config::validate`: (key, ok).
    pub fn checks(&self) -> Vec<(&'static str, bool)> {
        let no_audio = self.deepgram.no_audio_timeout_secs;
        let mut checks = vec![(
            "dialects.deepgram.no_audio_timeout_secs",
            no_audio > 0.0 && no_audio <= 3_600.0,
        )];
        checks.extend(self.vosk.checks());
        checks
    }
}
