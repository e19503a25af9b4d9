//! The frames of a telephony media stream, in both providers' spellings: Twilio's camelCase
//! envelope (`streamSid`, `sequenceNumber`, `start.mediaFormat.sampleRate`, …) and Telnyx's
//! snake_case one (`stream_id` at the top level, `sequence_number`, `start.media_format`, …),
//! read into one [`Frame`]. Only the fields voxgate uses are required; unknown fields and event
//! types are ignored (both providers add fields over time).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::protocol::dialect::quote;
use crate::protocol::{ErrorCode, Rejection};

/// Which provider's envelope a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Twilio,
    Telnyx,
}

impl Envelope {
    pub fn name(self) -> &'static str {
        match self {
            Envelope::Twilio => "twilio",
            Envelope::Telnyx => "telnyx",
        }
    }
}

/// A frame from the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The socket is up (`connected`).
    Connected,
    /// The stream's metadata; audio follows.
    Start(StreamStart),
    /// Audio of one track, decoded from base64 (still in the stream's codec).
    Media { track: String, payload: Bytes },
    /// A mark the application placed (bidirectional streams) has been played.
    Mark { name: String },
    /// A key pressed on the phone (Twilio names the track it was heard on).
    Dtmf {
        digit: String,
        track: Option<String>,
    },
    /// The provider reports a problem with the stream (Telnyx `error`).
    ProviderError { detail: String },
    /// The stream ended.
    Stop,
    /// An event type voxgate does not use.
    Other { event: String },
}

/// A frame and its place in the stream (Twilio `sequenceNumber`, Telnyx `sequence_number`;
/// `connected` has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Numbered {
    pub sequence: Option<u64>,
    pub frame: Frame,
}

/// What `start` says about the stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    /// Twilio `streamSid`, Telnyx `stream_id`.
    pub stream_id: String,
    /// Twilio `callSid`, Telnyx `call_control_id`.
    pub call_id: String,
    /// Twilio `accountSid`, Telnyx `user_id`.
    pub account_id: String,
    /// Twilio's `tracks` (`inbound`, `outbound`); Telnyx names none in `start`.
    pub tracks: Vec<String>,
    /// As the provider spells it: `audio/x-mulaw`, `PCMU`, `PCMA`, `L16`, …
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// Twilio's `customParameters`; Telnyx's `client_state` as `{"client_state": …}`.
    pub custom: Map<String, Value>,
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::InvalidMessage, message)
}

/// A number the providers send as a decimal string (`"8000"`) or as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Text(String),
}

impl Number {
    fn value(&self) -> Option<u64> {
        match self {
            Number::Int(n) => Some(*n),
            Number::Text(t) => t.trim().parse().ok(),
        }
    }
}

fn number(value: Option<Number>, field: &str) -> Result<u32, Rejection> {
    value
        .as_ref()
        .and_then(Number::value)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| invalid(format!("`{field}` must be a number")))
}

#[derive(Deserialize)]
struct TwilioFormat {
    encoding: String,
    #[serde(rename = "sampleRate")]
    sample_rate: Option<Number>,
    channels: Option<Number>,
}

#[derive(Deserialize)]
struct TwilioStart {
    #[serde(rename = "streamSid", default)]
    stream_sid: String,
    #[serde(rename = "callSid", default)]
    call_sid: String,
    #[serde(rename = "accountSid", default)]
    account_sid: String,
    #[serde(default)]
    tracks: Vec<String>,
    #[serde(rename = "customParameters", default)]
    custom_parameters: Map<String, Value>,
    #[serde(rename = "mediaFormat")]
    media_format: TwilioFormat,
}

#[derive(Deserialize)]
struct TelnyxFormat {
    encoding: String,
    sample_rate: Option<Number>,
    channels: Option<Number>,
}

#[derive(Deserialize)]
struct TelnyxStart {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    call_control_id: String,
    #[serde(default)]
    client_state: Option<String>,
    media_format: TelnyxFormat,
}

#[derive(Deserialize)]
struct MediaFields {
    #[serde(default)]
    track: Option<String>,
    payload: String,
}

#[derive(Deserialize)]
struct NameFields {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct DigitFields {
    #[serde(default)]
    digit: String,
    #[serde(default)]
    track: Option<String>,
}

/// The object under `key` of a frame, read as `T`.
fn part<T: serde::de::DeserializeOwned>(
    frame: &mut Map<String, Value>,
    key: &str,
    event: &str,
) -> Result<T, Rejection> {
    let value = frame
        .remove(key)
        .ok_or_else(|| invalid(format!("`{event}` has no `{key}` object")))?;
    serde_json::from_value(value).map_err(|e| invalid(format!("`{event}.{key}`: {e}")))
}

/// Reads one text frame of `envelope`.
pub fn parse(envelope: Envelope, text: &str) -> Result<Numbered, Rejection> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            ErrorCode::InvalidJson,
            format!("the message is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut frame) = value else {
        return Err(Rejection::new(
            ErrorCode::InvalidJson,
            "a message must be a JSON object with a string `event`",
        ));
    };
    let event = match frame.get("event") {
        Some(Value::String(event)) => event.clone(),
        _ => {
            return Err(Rejection::new(
                ErrorCode::InvalidJson,
                "`event` is missing or not a string",
            ))
        }
    };
    let top_stream_id = |frame: &Map<String, Value>| {
        let key = match envelope {
            Envelope::Twilio => "streamSid",
            Envelope::Telnyx => "stream_id",
        };
        frame
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let sequence_key = match envelope {
        Envelope::Twilio => "sequenceNumber",
        Envelope::Telnyx => "sequence_number",
    };
    // A number that does not read as one is as good as none: the frame is taken as it comes.
    let sequence = frame
        .get(sequence_key)
        .and_then(|v| serde_json::from_value::<Number>(v.clone()).ok())
        .and_then(|n| n.value());
    let frame = match event.as_str() {
        "connected" => Frame::Connected,
        "start" => {
            let stream_id = top_stream_id(&frame);
            Frame::Start(match envelope {
                Envelope::Twilio => {
                    let start: TwilioStart = part(&mut frame, "start", &event)?;
                    StreamStart {
                        stream_id: if start.stream_sid.is_empty() {
                            stream_id
                        } else {
                            start.stream_sid
                        },
                        call_id: start.call_sid,
                        account_id: start.account_sid,
                        tracks: start.tracks,
                        encoding: start.media_format.encoding,
                        sample_rate: number(start.media_format.sample_rate, "sampleRate")?,
                        channels: number(start.media_format.channels, "channels")?,
                        custom: start.custom_parameters,
                    }
                }
                Envelope::Telnyx => {
                    let start: TelnyxStart = part(&mut frame, "start", &event)?;
                    let mut custom = Map::new();
                    if let Some(state) = start.client_state {
                        custom.insert("client_state".into(), Value::String(state));
                    }
                    StreamStart {
                        stream_id,
                        call_id: start.call_control_id,
                        account_id: start.user_id,
                        tracks: Vec::new(),
                        encoding: start.media_format.encoding,
                        sample_rate: number(start.media_format.sample_rate, "sample_rate")?,
                        channels: match start.media_format.channels {
                            None => 1,
                            channels => number(channels, "channels")?,
                        },
                        custom,
                    }
                }
            })
        }
        "media" => {
            let media: MediaFields = part(&mut frame, "media", &event)?;
            let payload = BASE64.decode(media.payload.as_bytes()).map_err(|e| {
                Rejection::new(
                    ErrorCode::InvalidBase64,
                    format!("`media.payload` is not standard base64: {e}"),
                )
            })?;
            Frame::Media {
                track: media.track.unwrap_or_else(|| "inbound".to_string()),
                payload: Bytes::from(payload),
            }
        }
        "mark" => Frame::Mark {
            name: part::<NameFields>(&mut frame, "mark", &event)?.name,
        },
        "dtmf" => {
            let dtmf: DigitFields = part(&mut frame, "dtmf", &event)?;
            Frame::Dtmf {
                digit: dtmf.digit,
                track: dtmf.track,
            }
        }
        "error" => Frame::ProviderError {
            detail: quote(
                &frame
                    .get("payload")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ),
        },
        "stop" => Frame::Stop,
        _ => Frame::Other { event },
    };
    Ok(Numbered { sequence, frame })
}
