//! Telephony media streams as a [`Dialect`]: Twilio Media Streams (`/twilio`) and Telnyx media
//! streaming (`/telnyx`), one dialect with two envelopes ([`frames::Envelope`]) since they share
//! everything but spelling. The provider opens the socket and sends `connected`, `start` (the
//! call, its tracks and codec), `media` (base64 audio per track), `mark`, `dtmf` and `stop`; it
//! reads nothing back, so the transcripts leave by webhook (`crate::webhooks`): this dialect
//! always asks for them, naming the call and its tracks, and writes nothing to the socket but
//! the Close frame.
//!
//! - `start` configures the session: Twilio's μ-law 8 kHz mono; Telnyx's PCMU (μ-law), PCMA
//!   (A-law, transcoded to LINEAR16 here) or L16 (big-endian, swapped to little-endian here) at
//!   8 or 16 kHz. Anything else is refused (`unsupported_encoding`, `unsupported_sample_rate`).
//! - the call may name its own webhook receiver (Twilio custom parameter `webhook_url`, Telnyx
//!   query parameter `webhook_url`), checked against `[webhooks] allow`, and its language
//!   (`language_code`).
//! - each track (`inbound`, `outbound`) is a channel of the session (`crate::multichannel`): its
//!   own pipeline and upstream streams, its results tagged with the track in the webhook events.
//! - `mark`, `dtmf` and `connected` count as activity; a `dtmf` digit is also posted as a
//!   `call.dtmf` webhook event with the time on the session clock. Marks are the provider's
//!   echoes of marks the application placed (voxgate places none and echoes nothing).
//! - `stop` flushes the pipeline and closes; the session outlives the provider's socket
//!   ([`Dialect::outlives_socket`]) so the last finals are posted after it hangs up.
//! - Telnyx frames are put back in `sequence_number` order within a small window ([`reorder`],
//!   `[dialects.telnyx] reorder_frames`); duplicates and late frames are skipped and counted.
//!
//! Frames in [`frames`], Twilio's handshake signature in [`signature`]; unit tests in `tests.rs`,
//! property tests of everything read from the provider in `fuzz.rs`.

pub mod frames;
#[cfg(test)]
mod fuzz;
pub mod reorder;
pub mod signature;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::audio::alaw;
use crate::audio::{AudioFormat, Encoding};
use crate::messages::{AudioAcked, Transcript};
use crate::metrics::METRICS;
use crate::protocol::dialect::{
    quote, CallEvent, Close, Dialect, Inbound, SessionEnd, WebhookRequest,
};
use crate::protocol::native::is_language_tag;
use crate::protocol::{ErrorCode, Rejection, StartConfig, TELEPHONY_FRAME_MS};
pub use frames::Envelope;
use frames::{Frame, Numbered, StreamStart};
use reorder::{Outcome, Reorder};

/// Frames a Telnyx stream may hold back while waiting for a missing one (`reorder_frames`).
pub const DEFAULT_REORDER_FRAMES: usize = 5;
/// The largest `reorder_frames` accepted: 10 s of 20 ms frames.
pub const MAX_REORDER_FRAMES: usize = 500;

/// `[dialects.twilio]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioSettings {
    /// Whether `/twilio` is served.
    pub enabled: bool,
    /// The account's auth token: the handshake's `X-Twilio-Signature` must be valid for it.
    pub auth_token: Option<String>,
    /// Without `auth_token`, accept unsigned streams anyway (anyone who can reach `/twilio` can
    /// then stream). Off: without a token every stream is refused (401).
    pub allow_unsigned: bool,
    /// The URL Twilio connects to, as in the TwiML (`wss://voxgate.example.com`), when a proxy
    /// makes it differ from what voxgate sees; the request's path and query are appended.
    pub public_url: Option<String>,
    /// The language of calls whose stream names none (`language_code` custom parameter).
    pub language_code: String,
    /// The length of the frames a call's audio goes upstream in, ms (`[audio] frame_ms` is for
    /// the other dialects): Twilio's own 20 ms by default, so no audio waits for a longer frame.
    pub frame_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> TwilioSettings {
        TwilioSettings {
            enabled: true,
            auth_token: None,
            allow_unsigned: false,
            public_url: None,
            language_code: "en-US".into(),
            frame_ms: TELEPHONY_FRAME_MS,
        }
    }
}

impl std::fmt::Debug for TwilioSettings {
    /// Never shows the auth token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("enabled", &self.enabled)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_unsigned", &self.allow_unsigned)
            .field("public_url", &self.public_url)
            .field("language_code", &self.language_code)
            .field("frame_ms", &self.frame_ms)
            .finish()
    }
}

/// `[dialects.telnyx]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelnyxSettings {
    /// Whether `/telnyx` is served.
    pub enabled: bool,
    /// The language of calls whose stream URL names none (`language_code` query parameter).
    pub language_code: String,
    /// Frames held back, at most, to put out-of-order frames back in `sequence_number` order
    /// (0: frames are taken as they come).
    pub reorder_frames: usize,
    /// The length of the frames a call's audio goes upstream in, ms (as Twilio's).
    pub frame_ms: u64,
}

impl Default for TelnyxSettings {
    fn default() -> TelnyxSettings {
        TelnyxSettings {
            enabled: true,
            language_code: "en-US".into(),
            reorder_frames: DEFAULT_REORDER_FRAMES,
            frame_ms: TELEPHONY_FRAME_MS,
        }
    }
}

/// How `media` payloads become the pipeline's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// μ-law as it is (`MULAW`).
    Mulaw,
    /// A-law, transcoded to LINEAR16.
    Alaw,
    /// Big-endian 16-bit PCM, byte-swapped to LINEAR16.
    L16BigEndian,
}

/// A track name as both providers spell it (`inbound`, `inbound_track`) → `inbound`.
fn track_name(track: &str) -> String {
    track.strip_suffix("_track").unwrap_or(track).to_string()
}

/// One media stream's side of the protocol.
pub struct MediaStreamDialect {
    envelope: Envelope,
    /// The language when the call names none.
    language_code: String,
    /// Query parameters of the stream URL (Telnyx passes `webhook_url`, `language_code` there).
    query: Map<String, Value>,
    /// Set by `start`.
    start: Option<StreamStart>,
    codec: Codec,
    /// Each channel's track, in channel order.
    tracks: Vec<String>,
    /// Telnyx: frames put back in order (`None`: taken as they come).
    reorder: Option<Reorder<Frame>>,
    /// Samples received per channel: the session clock of a `dtmf`.
    samples: Vec<u64>,
    /// Events for the webhooks, until the session takes them.
    call_events: Vec<CallEvent>,
    /// The session's upstream frame length (`[dialects.twilio|telnyx] frame_ms`).
    frame_ms: u64,
}

impl MediaStreamDialect {
    /// A stream of `envelope` whose upgrade request had the query string `query`.
    pub fn new(envelope: Envelope, language_code: &str, query: &str) -> MediaStreamDialect {
        let query = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        MediaStreamDialect {
            envelope,
            language_code: language_code.to_string(),
            query,
            start: None,
            codec: Codec::Mulaw,
            tracks: Vec::new(),
            reorder: match envelope {
                Envelope::Twilio => None,
                Envelope::Telnyx => Some(Reorder::new(DEFAULT_REORDER_FRAMES)),
            },
            samples: Vec::new(),
            call_events: Vec::new(),
            frame_ms: TELEPHONY_FRAME_MS,
        }
    }

    /// Sends the call's audio upstream in frames of `frame_ms` (default [`TELEPHONY_FRAME_MS`]).
    pub fn frame_ms(mut self, frame_ms: u64) -> MediaStreamDialect {
        self.frame_ms = frame_ms;
        self
    }

    /// Holds at most `frames` frames to put a Telnyx stream back in order (0: no reordering).
    pub fn reorder_window(mut self, frames: usize) -> MediaStreamDialect {
        if self.envelope == Envelope::Telnyx {
            self.reorder = Some(Reorder::new(frames));
        }
        self
    }

    /// A parameter of the call: Twilio's custom parameters, else the stream URL's query.
    fn parameter(&self, name: &str) -> Option<&str> {
        self.start
            .as_ref()
            .and_then(|s| s.custom.get(name))
            .or_else(|| self.query.get(name))
            .and_then(Value::as_str)
    }

    /// The session's configuration from `start`, or why the stream is refused.
    fn configure(&mut self, start: StreamStart) -> Result<StartConfig, Rejection> {
        let unsupported = |what: &str| {
            Rejection::new(
                ErrorCode::UnsupportedEncoding,
                format!(
                    "{} media encoding `{}` is not supported; {what}",
                    self.envelope.name(),
                    quote(&start.encoding)
                ),
            )
        };
        let (codec, encoding) = match (self.envelope, start.encoding.as_str()) {
            (Envelope::Twilio, "audio/x-mulaw") => (Codec::Mulaw, Encoding::Mulaw),
            (Envelope::Twilio, _) => return Err(unsupported("use audio/x-mulaw")),
            (Envelope::Telnyx, "PCMU") => (Codec::Mulaw, Encoding::Mulaw),
            (Envelope::Telnyx, "PCMA") => (Codec::Alaw, Encoding::Linear16),
            (Envelope::Telnyx, "L16") => (Codec::L16BigEndian, Encoding::Linear16),
            (Envelope::Telnyx, _) => return Err(unsupported("use PCMU, PCMA or L16")),
        };
        let rate_ok = match codec {
            Codec::Mulaw | Codec::Alaw => start.sample_rate == 8_000,
            Codec::L16BigEndian => matches!(start.sample_rate, 8_000 | 16_000),
        };
        if !rate_ok {
            return Err(Rejection::new(
                ErrorCode::UnsupportedSampleRate,
                format!(
                    "a sample rate of {} Hz is not supported for {}",
                    start.sample_rate, start.encoding
                ),
            ));
        }
        if start.channels != 1 {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} channels per track; each track must be mono",
                    start.channels
                ),
            ));
        }
        // Telnyx names no tracks in `start`: both get a channel (a silent one costs nothing).
        let mut tracks: Vec<String> = match self.envelope {
            Envelope::Twilio => start.tracks.iter().map(|t| track_name(t)).collect(),
            Envelope::Telnyx => vec!["inbound".into(), "outbound".into()],
        };
        tracks.dedup();
        if tracks.is_empty() {
            tracks.push("inbound".into());
        }
        self.codec = codec;
        self.tracks = tracks;
        self.start = Some(start);
        let language_code = self
            .parameter("language_code")
            .unwrap_or(&self.language_code)
            .to_string();
        if !is_language_tag(&language_code) {
            return Err(Rejection::new(
                ErrorCode::InvalidConfig,
                format!(
                    "language_code `{}` is not a language tag",
                    quote(&language_code)
                ),
            ));
        }
        Ok(StartConfig {
            format: AudioFormat {
                encoding,
                sample_rate_hz: self.start.as_ref().map_or(8_000, |s| s.sample_rate),
            },
            language_code,
            interim_results: true,
            enable_automatic_punctuation: true,
            model: String::new(),
            phrases: Vec::new(),
            single_utterance: false,
            features: Default::default(),
            frame_ms: Some(self.frame_ms),
        })
    }

    /// The session clock, ms: the audio received on the furthest track.
    fn clock_ms(&self) -> u64 {
        let rate = self
            .start
            .as_ref()
            .map_or(8_000, |s| u64::from(s.sample_rate.max(1)));
        self.samples.iter().max().copied().unwrap_or(0) * 1000 / rate
    }

    /// Skipped or given-up frames, counted.
    fn count(&self, outcome: Outcome) {
        let (reason, n) = match outcome {
            Outcome::Taken { missing: 0 } => return,
            Outcome::Taken { missing } => ("missing", missing),
            Outcome::Duplicate => ("duplicate", 1),
            Outcome::Late => ("late", 1),
        };
        tracing::debug!(
            dialect = self.envelope.name(),
            reason,
            n,
            "media stream frames skipped"
        );
        METRICS
            .media_frames_skipped
            .with_label_values(&[self.envelope.name(), reason])
            .inc_by(n);
    }

    /// One frame, in stream order.
    fn take(&mut self, frame: Frame, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        match frame {
            Frame::Start(start) => {
                if self.start.is_some() {
                    return Err(Rejection::new(
                        ErrorCode::AlreadyStarted,
                        "a second `start` on one stream",
                    ));
                }
                actions.push(Inbound::Configure(self.configure(start)?));
                self.samples = vec![0; self.tracks.len()];
            }
            Frame::Media { track, payload } => {
                let track = track_name(&track);
                if self.start.is_none() {
                    // The session answers audio before `start` with its refusal.
                    actions.push(Inbound::Audio {
                        data: payload,
                        audio_id: None,
                    });
                } else if let Some(channel) = self.tracks.iter().position(|t| *t == track) {
                    let sample_bytes = match self.codec {
                        Codec::Mulaw | Codec::Alaw => 1,
                        Codec::L16BigEndian => 2,
                    };
                    if let Some(samples) = self.samples.get_mut(channel) {
                        *samples += (payload.len() / sample_bytes) as u64;
                    }
                    let data = self.decode(payload);
                    actions.push(if self.tracks.len() == 1 {
                        Inbound::Audio {
                            data,
                            audio_id: None,
                        }
                    } else {
                        Inbound::ChannelAudio { channel, data }
                    });
                }
                // Media of a track the stream did not announce is not transcribed.
            }
            Frame::Dtmf { digit, track } => {
                actions.push(Inbound::KeepAlive);
                let mut fields = Map::new();
                fields.insert("digit".into(), json!(digit));
                fields.insert(
                    "track".into(),
                    json!(track_name(track.as_deref().unwrap_or("inbound"))),
                );
                fields.insert("time_ms".into(), json!(self.clock_ms()));
                self.call_events.push(CallEvent {
                    kind: "call.dtmf",
                    fields,
                });
            }
            Frame::Connected | Frame::Mark { .. } => actions.push(Inbound::KeepAlive),
            Frame::ProviderError { detail } => {
                tracing::warn!(
                    dialect = self.envelope.name(),
                    "the provider reports: {detail}"
                );
            }
            Frame::Stop => actions.push(Inbound::Stop),
            Frame::Other { event } => {
                tracing::debug!(dialect = self.envelope.name(), event = %quote(&event),
                    "media stream event ignored");
            }
        }
        Ok(())
    }

    /// A payload in the stream's codec as the pipeline's audio.
    fn decode(&self, payload: Bytes) -> Bytes {
        match self.codec {
            Codec::Mulaw => payload,
            Codec::Alaw => Bytes::from(alaw::to_linear16(&payload)),
            Codec::L16BigEndian => Bytes::from(
                payload
                    .chunks_exact(2)
                    .flat_map(|pair| [pair[1], pair[0]])
                    .collect::<Vec<u8>>(),
            ),
        }
    }
}

impl Dialect for MediaStreamDialect {
    fn name(&self) -> &'static str {
        self.envelope.name()
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }

    fn initial_config(&mut self) -> Result<Option<StartConfig>, Rejection> {
        Ok(None)
    }

    fn text(&mut self, text: &str, actions: &mut Vec<Inbound>) -> Result<(), Rejection> {
        let Numbered { sequence, frame } = frames::parse(self.envelope, text)?;
        let mut ready = Vec::new();
        match (&mut self.reorder, sequence) {
            // Nothing follows `stop`: whatever is held goes first.
            (Some(reorder), _) if matches!(frame, Frame::Stop) => {
                reorder.flush(&mut ready);
                ready.push(frame);
            }
            (Some(reorder), Some(sequence)) => {
                let outcome = reorder.push(sequence, frame, &mut ready);
                self.count(outcome);
            }
            _ => ready.push(frame),
        }
        for frame in ready {
            self.take(frame, actions)?;
        }
        Ok(())
    }

    fn take_call_events(&mut self, events: &mut Vec<CallEvent>) {
        events.append(&mut self.call_events);
    }

    fn binary(&mut self, _data: Bytes) -> Result<Inbound, Rejection> {
        Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "a media stream sends JSON text frames only",
        ))
    }

    fn channels(&self) -> usize {
        self.tracks.len().max(1)
    }

    fn ready(&mut self, _session_id: &str, _out: &mut Vec<String>) {}

    fn transcript(&mut self, _transcript: &Transcript, _out: &mut Vec<String>) {}

    fn ack(&mut self, _ack: &AudioAcked, _out: &mut Vec<String>) {}

    fn warning(&mut self, _code: &str, _message: &str, _out: &mut Vec<String>) {}

    fn error(&mut self, code: ErrorCode, _message: &str, _out: &mut Vec<String>) -> Option<Close> {
        Close::of_code(code)
    }

    fn closed(&mut self, _end: SessionEnd<'_>, _out: &mut Vec<String>) -> Close {
        Close::normal("closed")
    }

    /// The provider reads nothing back and hangs up right after `stop`: the last finals are
    /// delivered by webhook after the socket closed.
    fn outlives_socket(&self) -> bool {
        true
    }

    fn webhook_request(&self) -> Option<WebhookRequest> {
        let start = self.start.as_ref()?;
        let call = json!({
            "provider": self.envelope.name(),
            "call_id": start.call_id,
            "stream_id": start.stream_id,
            "account_id": start.account_id,
            "custom_parameters": start.custom,
        });
        Some(WebhookRequest {
            url: self
                .parameter("webhook_url")
                .filter(|url| !url.is_empty())
                .map(String::from),
            call: match call {
                Value::Object(call) => call,
                _ => Map::new(),
            },
            tracks: self.tracks.clone(),
        })
    }
}
