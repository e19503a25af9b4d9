//! The seam between the session actor and a client's wire protocol: the [`Dialect`] trait.
//!
//! A session owns the socket, the timers, the limits and the pipeline; a dialect owns the words on
//! the wire. The session hands each client frame to its dialect, which answers with [`Inbound`]
//! actions in voxgate's terms (configure, audio, finalize, stop, …), and hands each pipeline
//! report (transcript, ack, warning, error, end) to the dialect, which writes the vendor's
//! messages. Nothing below the session knows which dialect a client speaks: the pipeline gets the
//! same [`StartConfig`] and audio whatever the wire looked like.
//!
//! The native protocol (`native::NativeDialect`) is one implementation; `deepgram`, `openai`,
//! `jambonz` and `vosk` are the others.

use bytes::Bytes;

use crate::messages::{AudioAcked, PipelineSummary, Transcript, VoiceActivity};
use crate::protocol::{ErrorCode, Rejection, StartConfig};

/// What a client frame asks the session to do, in voxgate's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Start the pipeline with this configuration (once per session).
    Configure(StartConfig),
    /// Instead of `Configure`: continue the session a resume token describes, its clock at
    /// `from_ms` (default: the token's end of the last final). Only dialects whose clients can
    /// resume produce it.
    Resume { token: String, from_ms: Option<u64> },
    /// Audio in the configured format (already decoded from base64 or transcoded if need be).
    Audio {
        data: Bytes,
        audio_id: Option<String>,
    },
    /// Audio of one channel of a multichannel session (a telephony track), in the configured
    /// format.
    ChannelAudio { channel: usize, data: Bytes },
    /// The client is there (resets the idle timer).
    KeepAlive,
    /// Final results for all audio so far, then carry on.
    Finalize,
    /// No more audio: deliver the last results, then end the session.
    Stop,
    /// A message for the client that only the dialect answers (a configuration echo, …).
    Reply(String),
}

/// A Close frame to send: code and reason (at most 123 bytes, see [`close_reason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// The native close of `code` (its code string as the reason), if the code ends a session.
    pub fn of_code(code: ErrorCode) -> Option<Close> {
        code.close_code().map(|close| Close {
            code: close,
            reason: code.as_str().to_string(),
        })
    }

    /// The normal close after the last results: 1000 with `reason`.
    pub fn normal(reason: &str) -> Close {
        Close {
            code: 1000,
            reason: reason.to_string(),
        }
    }
}

/// How the session ended normally, for the dialect's last words.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd<'a> {
    pub session_id: &'a str,
    /// Audio acknowledged by the pipeline, ms.
    pub audio_ms: u64,
    pub summary: PipelineSummary,
}

/// How far the session has got, for dialects that tell their clients (so they can resume): the
/// session hands it over before the message that should carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// End of the last final delivered, on the session clock.
    pub final_ms: u64,
    /// A fresh resume token, when one was minted.
    pub resume_token: Option<String>,
}

/// The session is asked to move to another instance (drain by hand-off): what its client needs to
/// resume it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move<'a> {
    pub session_id: &'a str,
    /// A token minted now, for the session as it stands.
    pub resume_token: &'a str,
    /// Where the client resumes from: the end of the last final delivered (the new instance
    /// recognises everything after it again from the re-sent audio).
    pub from_ms: u64,
    /// For a human.
    pub message: &'a str,
}

/// A session's wish to have its results posted (`crate::webhooks`): what its client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookRequest {
    /// A receiver for this call only (a Twilio custom parameter), checked against
    /// `[webhooks] allow`; the configured `[webhooks] urls` get the events anyway.
    pub url: Option<String>,
    /// What identifies the call to the application (`call_sid`, `stream_sid`, custom
    /// parameters, …): `call` in `session.started`.
    pub call: serde_json::Map<String, serde_json::Value>,
    /// The track of each channel (`inbound`, `outbound`), named in every transcript event.
    pub tracks: Vec<String>,
}

/// Something that happened on a call besides its audio (a key pressed), posted to the webhooks
/// of a session that posts.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    /// The event's `type` (`call.dtmf`).
    pub kind: &'static str,
    /// Its own fields (the common ones are added when it is posted).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// One client protocol, as seen by the session. Every method that produces client messages pushes
/// their JSON text onto `out`, in order; the session writes them (within its backlog limit).
pub trait Dialect {
    /// For logs: `native`, `deepgram`, `openai`.
    fn name(&self) -> &'static str;

    /// The WebSocket subprotocols this dialect selects when a client offers one of them.
    fn subprotocols(&self) -> &'static [&'static str];

    /// The configuration the client gave before the session opened (a query string), if any:
    /// then the session starts at once; `Ok(None)`: it waits for the client to configure it.
    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection>;

    /// The idle timeout of this dialect in seconds (no audio and no keep-alive), when it differs
    /// from `[session] idle_timeout_secs`.
    fn idle_timeout_secs(&self) -> Option<f64> {
        None
    }

    /// Whether this dialect's clients can resume a dropped session (then the session hands it
    /// resume tokens through [`Dialect::progress`]).
    fn resumable(&self) -> bool {
        false
    }

    /// The session's progress (end of the last final, a fresh resume token), for the next message
    /// that carries it.
    fn progress(&mut self, _progress: Progress) {}

    /// Drain by hand-off: tells the client to resume the session elsewhere and gives the Close
    /// that follows; `None` when this dialect's clients cannot follow such a message (the session
    /// is then held to the grace period).
    fn reconnect(&mut self, _move: &Move<'_>, _out: &mut Vec<String>) -> Option<Close> {
        None
    }

    /// Messages the client gets as soon as the session is admitted, before any configuration.
    fn opened(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    /// One text message from the client (its size already checked); the actions in order.
    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection>;

    /// One binary message from the client: audio, unless the dialect says otherwise.
    fn binary(&mut self, data: Bytes) -> Result<Inbound, Rejection> {
        Ok(Inbound::Audio {
            data,
            audio_id: None,
        })
    }

    /// One binary message from the client, as the actions in order: by default the one action
    /// of [`binary`](Dialect::binary). A dialect that answers every audio frame (vosk) adds its
    /// reply after the audio.
    fn binary_actions(&mut self, data: Bytes, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        actions.push(self.binary(data)?);
        Ok(())
    }

    /// The pipeline started: the client may send audio.
    fn ready(&mut self, session_id: &str, out: &mut Vec<String>);

    /// An interim or final result on the session clock.
    fn transcript(&mut self, transcript: &Transcript, out: &mut Vec<String>);

    /// How many channels the configured session has (each its own pipeline, see
    /// `crate::multichannel`); asked once, when the session is configured.
    fn channels(&self) -> usize {
        1
    }

    /// A result of `channel` of a multichannel session (the default ignores the channel).
    fn channel_transcript(
        &mut self,
        channel: usize,
        transcript: &Transcript,
        out: &mut Vec<String>,
    ) {
        let _ = channel;
        self.transcript(transcript, out);
    }

    /// Speech began or ended (session clock). Only sessions that asked for voice-activity events
    /// get them; a dialect with no way to ask (every one but the native protocol) never does, so
    /// the default writes nothing.
    fn voice_activity(&mut self, activity: &VoiceActivity, out: &mut Vec<String>) {
        let _ = (activity, out);
    }

    /// Audio forwarded upstream so far.
    fn ack(&mut self, ack: &AudioAcked, out: &mut Vec<String>);

    /// Something the client should know that does not end the session.
    fn warning(&mut self, code: &str, message: &str, out: &mut Vec<String>);

    /// An error: the messages that say so and, when the code ends the session, the Close frame.
    fn error(&mut self, code: ErrorCode, message: &str, out: &mut Vec<String>) -> Option<Close>;

    /// After the client's stop every result was delivered: the last messages and the Close frame.
    fn closed(&mut self, end: SessionEnd<'_>, out: &mut Vec<String>) -> Close;

    /// Whether the session's results leave by another way than its socket (a telephony media
    /// stream's webhooks): then the session finishes after the socket goes — the upstream streams
    /// are half-closed, the last results delivered and the end posted (`session::tail`).
    fn outlives_socket(&self) -> bool {
        false
    }

    /// Call events read from the client's frames since last asked (for the webhooks).
    fn take_call_events(&mut self, _events: &mut Vec<CallEvent>) {}

    /// Whether (and where) the session's results are to be posted to webhooks, as known once the
    /// client configured the session; `None` (the default): not posted.
    fn webhook_request(&self) -> Option<WebhookRequest> {
        None
    }
}

/// The longest reason a Close frame can carry (125 bytes of payload less the 2-byte code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// `reason` cut to fit a Close frame, on a character boundary.
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// The credential of `Authorization: Bearer <key>` (scheme in any case), for dialects whose
/// clients send only that. `Ok(None)`: no `Authorization` header; `Err`: another scheme.
pub fn bearer_credential(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(key.trim().to_string()))
        }
        _ => Err("Authorization must be `Bearer <key>`"),
    }
}

/// The start of a client-supplied string, for quoting it in a message without echoing a megabyte.
pub fn quote(text: &str) -> String {
    const QUOTE_CHARS: usize = 64;
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame_on_a_character_boundary() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_BYTES && cut.len() >= MAX_CLOSE_REASON_BYTES - 1);
        assert!(long.starts_with(&cut));
    }

    #[test]
    fn quotes_are_bounded() {
        assert_eq!(quote("abc"), "abc");
        let long = "x".repeat(200);
        assert_eq!(quote(&long).chars().count(), 65);
    }
}
