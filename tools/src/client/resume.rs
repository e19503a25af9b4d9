//! What `voxgate stream` keeps so that it can resume its session when the connection drops
//! (`docs/protocol.md`, "Resume"): the newest resume token, the end of the last final received,
//! and the audio sent since — bounded, since the server never needs audio before its last final
//! again. On a new connection the client sends [`ResumeBook::resume_start`] and then
//! [`ResumeBook::backlog`], and carries on.

use std::collections::VecDeque;

use serde_json::{json, Value};
use voxgate_actors::audio::AudioFormat;

/// Resume state of one session, across its connections.
#[derive(Debug)]
pub struct ResumeBook {
    format: AudioFormat,
    /// The newest resume token received (`ready`, finals, acks).
    token: Option<String>,
    /// End of the last final received, on the session clock.
    final_ms: u64,
    /// The audio sent and not yet covered by a final.
    kept: VecDeque<u8>,
    /// Where `kept` starts in the session's audio, in bytes.
    kept_from: u64,
    /// At most this much audio is kept; past it the oldest is dropped and, until the next final,
    /// the session cannot be resumed (its missing finals could not be recognised again).
    max_keep_ms: u64,
}

impl ResumeBook {
    pub fn new(format: AudioFormat, max_keep_ms: u64) -> ResumeBook {
        ResumeBook {
            format,
            token: None,
            final_ms: 0,
            kept: VecDeque::new(),
            kept_from: 0,
            max_keep_ms,
        }
    }

    /// `chunk` was sent: it is kept until a final covers it.
    pub fn sent(&mut self, chunk: &[u8]) {
        self.kept.extend(chunk);
        let max = self.format.ms_to_bytes(self.max_keep_ms) as usize;
        if self.kept.len() > max {
            let excess = self.kept.len() - max;
            self.kept.drain(..excess);
            self.kept_from += excess as u64;
        }
    }

    /// A server message: tokens are kept, a final frees the audio before its end.
    pub fn received(&mut self, message: &Value) {
        if let Some(token) = message["resume_token"].as_str() {
            self.token = Some(token.to_string());
        }
        let end_ms = match message["type"].as_str() {
            Some("transcript") if message["is_final"] == true => message["end_ms"].as_u64(),
            _ => None,
        };
        if let Some(end_ms) = end_ms.filter(|&end| end > self.final_ms) {
            self.final_ms = end_ms;
            let end = self.format.ms_to_bytes(end_ms);
            let freed = end
                .saturating_sub(self.kept_from)
                .min(self.kept.len() as u64);
            self.kept.drain(..freed as usize);
            self.kept_from += freed;
        }
    }

    /// The `start` that resumes the session, if it can be resumed (a token came, and all the
    /// audio since the last final is kept).
    pub fn resume_start(&self) -> Option<Value> {
        let complete = self.kept_from <= self.format.ms_to_bytes(self.final_ms);
        let token = self.token.as_ref().filter(|_| complete)?;
        Some(json!({"type":"start","resume":{"token":token,"from_ms":self.final_ms}}))
    }

    /// The audio to send again after resuming: everything after the last final received.
    pub fn backlog(&self) -> Vec<u8> {
        self.kept.iter().copied().collect()
    }

    /// End of the last final received.
    pub fn final_ms(&self) -> u64 {
        self.final_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxgate_actors::audio::Encoding;

    const FORMAT: AudioFormat = AudioFormat {
        encoding: Encoding::Linear16,
        sample_rate_hz: 16_000,
    };

    fn final_at(end_ms: u64, token: &str) -> Value {
        json!({"type":"transcript","is_final":true,"end_ms":end_ms,"resume_token":token})
    }

    #[test]
    fn keeps_the_audio_after_the_last_final_and_the_newest_token() {
        let mut book = ResumeBook::new(FORMAT, 10_000);
        assert_eq!(book.resume_start(), None, "no token yet");
        book.received(&json!({"type":"ready","session_id":"s","resume_token":"t0"}));
        let audio: Vec<u8> = (0..32_000u32).map(|i| (i % 251) as u8).collect(); // 1 s
        book.sent(&audio[..16_000]);
        book.sent(&audio[16_000..]);
        book.received(&json!({"type":"transcript","is_final":false,"end_ms":700}));
        assert_eq!(book.backlog().len(), 32_000, "an interim frees nothing");
        book.received(&final_at(600, "t1"));
        assert_eq!(book.backlog(), audio[600 * 32..].to_vec());
        assert_eq!(
            book.resume_start(),
            Some(json!({"type":"start","resume":{"token":"t1","from_ms":600}}))
        );
        // An ack's refreshed token replaces it; the clock stays at the last final.
        book.received(&json!({"type":"ack","audio_ms":1000,"final_ms":600,"resume_token":"t2"}));
        assert_eq!(
            book.resume_start().map(|s| s["resume"]["token"].clone()),
            Some(json!("t2"))
        );
        assert_eq!(book.final_ms(), 600);
        book.received(&final_at(1_000, "t3"));
        assert!(book.backlog().is_empty());
    }

    #[test]
    fn too_much_audio_without_a_final_cannot_be_resumed() {
        let mut book = ResumeBook::new(FORMAT, 1_000);
        book.received(&final_at(0, "t0"));
        book.sent(&[0u8; 48_000]); // 1.5 s
        assert_eq!(book.backlog().len(), 32_000);
        assert_eq!(book.resume_start(), None);
    }
}
