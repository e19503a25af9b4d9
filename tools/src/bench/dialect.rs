//! The client side of each protocol the bench speaks to a gateway (`--dialect`): the native one
//! (`docs/protocol.md`) and the vendor dialects (`docs/dialects.md`). Per dialect: the path and
//! query, the first message, how audio, keep-alives and the end are framed, and what a server
//! message means to a bench session ([`Event`]). Everything is encoded once per run, so a dialect
//! costs the bench no more per frame than the native protocol does. Twilio's calls get their
//! finals by webhook instead (`super::telephony`).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use voxgate_emulator::synth::SynthEncoding;

use super::script::ScriptFormat;
use super::ws;

/// A client protocol of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDialect {
    Native,
    Deepgram,
    OpenAi,
    Jambonz,
    Vosk,
    /// Twilio Media Streams: both tracks, finals by webhook.
    Twilio,
}

/// What a server message means to a bench session.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A final result; `words`: (start, end) ms on the session clock, when the dialect gives them.
    Final {
        transcript: String,
        words: Option<Vec<(u64, u64)>>,
    },
    /// The session is configured: streaming may start.
    Ready,
    /// The normal end is announced (native `closed`, Deepgram `Metadata`, the echo of OpenAI's
    /// end marker): the close that follows is the session's normal end.
    Ending {
        restarts: u64,
    },
    Warning(String),
    /// An error, by its code.
    Error(String),
    /// Anything else (interims, acks, partials, speech events).
    Other,
}

/// The native messages' fields the bench looks at (the rest is skipped unparsed).
#[derive(Deserialize)]
struct NativeMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    is_final: bool,
    #[serde(default, borrow)]
    transcript: Cow<'a, str>,
    #[serde(default)]
    words: Vec<NativeWord>,
    #[serde(default, borrow)]
    code: Cow<'a, str>,
    #[serde(default)]
    restarts: u64,
}

#[derive(Deserialize)]
struct NativeWord {
    start_ms: u64,
    end_ms: u64,
}

/// Seconds (as vendors write times) to whole milliseconds.
fn ms(seconds: &Value) -> u64 {
    (seconds.as_f64().unwrap_or(0.0) * 1000.0).round().max(0.0) as u64
}

/// (start, end) of each word object of `list`, in seconds.
fn word_times(list: &Value) -> Vec<(u64, u64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|w| (ms(&w["start"]), ms(&w["end"])))
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

impl BenchDialect {
    pub fn parse(name: &str) -> Result<BenchDialect, String> {
        Ok(match name {
            "native" => BenchDialect::Native,
            "deepgram" => BenchDialect::Deepgram,
            "openai" => BenchDialect::OpenAi,
            "jambonz" => BenchDialect::Jambonz,
            "vosk" => BenchDialect::Vosk,
            "twilio" => BenchDialect::Twilio,
            other => {
                return Err(format!(
                    "{other:?}: expected native, deepgram, openai, jambonz, vosk or twilio"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BenchDialect::Native => "native",
            BenchDialect::Deepgram => "deepgram",
            BenchDialect::OpenAi => "openai",
            BenchDialect::Jambonz => "jambonz",
            BenchDialect::Vosk => "vosk",
            BenchDialect::Twilio => "twilio",
        }
    }

    /// Whether the dialect carries audio of `format`.
    pub fn check_format(self, format: &ScriptFormat) -> Result<(), String> {
        let (rate, linear16) = (
            format.sample_rate_hz,
            format.encoding == SynthEncoding::Linear16,
        );
        let ok = match self {
            BenchDialect::Native | BenchDialect::Deepgram => true,
            BenchDialect::OpenAi => {
                (linear16 && rate == 24_000)
                    || (format.encoding == SynthEncoding::Mulaw && rate == 8_000)
            }
            BenchDialect::Jambonz | BenchDialect::Vosk => linear16,
            BenchDialect::Twilio => !linear16 && rate == 8_000,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            BenchDialect::OpenAi => {
                "--dialect openai carries LINEAR16 at 24000 Hz (--rate 24000) or MULAW at 8000 Hz \
                 (--encoding mulaw --rate 8000)"
                    .to_string()
            }
            BenchDialect::Twilio => {
                "--dialect twilio carries MULAW at 8000 Hz (--encoding mulaw --rate 8000)"
                    .to_string()
            }
            other => format!("--dialect {} carries LINEAR16 only", other.name()),
        })
    }

    /// The request's path and query (the native one is the URL's own).
    pub fn path(self, native_path: &str, format: &ScriptFormat, interim: bool) -> String {
        match self {
            BenchDialect::Native => native_path.to_string(),
            BenchDialect::Deepgram => format!(
                "/deepgram/v1/listen?model=nova-3&encoding={}&sample_rate={}&interim_results={interim}",
                match format.encoding {
                    SynthEncoding::Linear16 => "linear16",
                    SynthEncoding::Mulaw => "mulaw",
                    SynthEncoding::Alaw => "alaw",
                },
                format.sample_rate_hz
            ),
            BenchDialect::OpenAi => "/openai/v1/realtime?intent=transcription".to_string(),
            BenchDialect::Jambonz => "/jambonz".to_string(),
            BenchDialect::Vosk => "/vosk".to_string(),
            BenchDialect::Twilio => "/twilio".to_string(),
        }
    }

    /// The first message after the upgrade (Deepgram's query configures the session).
    pub fn start(self, format: &ScriptFormat, interim: bool) -> Option<Bytes> {
        let start = match self {
            BenchDialect::Native => json!({
                "type": "start",
                "encoding": format.encoding_name(),
                "sample_rate_hz": format.sample_rate_hz,
                "interim_results": interim,
            }),
            // Each call's `start` names its session (`telephony::start_frame`).
            BenchDialect::Deepgram | BenchDialect::Twilio => return None,
            BenchDialect::OpenAi => {
                let format = match format.encoding {
                    SynthEncoding::Linear16 => json!({"type": "audio/pcm", "rate": 24_000}),
                    // `check_format` admits no other encoding for OpenAI.
                    SynthEncoding::Mulaw | SynthEncoding::Alaw => json!({"type": "audio/pcmu"}),
                };
                json!({"type": "session.update", "session": {"type": "transcription",
                    "audio": {"input": {"format": format}}}})
            }
            BenchDialect::Jambonz => json!({
                "type": "start", "language": "en-US", "format": "raw", "encoding": "LINEAR16",
                "sampleRateHz": format.sample_rate_hz, "interimResults": interim,
            }),
            BenchDialect::Vosk => json!({"config": {"sample_rate": format.sample_rate_hz}}),
        };
        Some(ws::client_frame_bytes(
            ws::TEXT,
            start.to_string().as_bytes(),
        ))
    }

    /// Streaming may start as soon as the first message is sent (no answer to wait for).
    pub fn ready_at_open(self) -> bool {
        matches!(
            self,
            BenchDialect::Deepgram
                | BenchDialect::Jambonz
                | BenchDialect::Vosk
                | BenchDialect::Twilio
        )
    }

    /// One piece of audio as a client frame: binary, or base64 in the dialect's JSON (`base64`:
    /// the native `audio` message; OpenAI's `input_audio_buffer.append` always).
    pub fn audio_frame(self, audio: &[u8], base64: bool) -> Bytes {
        let encode = || base64::Engine::encode(&base64::engine::general_purpose::STANDARD, audio);
        let text = match self {
            BenchDialect::OpenAi => {
                json!({"type": "input_audio_buffer.append", "audio": encode()})
            }
            BenchDialect::Native if base64 => json!({"type": "audio", "content": encode()}),
            BenchDialect::Twilio => return super::telephony::media_frames(audio),
            _ => return ws::client_frame_bytes(ws::BINARY, audio),
        };
        ws::client_frame_bytes(ws::TEXT, text.to_string().as_bytes())
    }

    /// What a waiting session sends to stay alive: the dialect's keep-alive, else a ping.
    pub fn keepalive(self) -> Bytes {
        match self {
            BenchDialect::Native => ws::client_frame_bytes(ws::TEXT, br#"{"type":"keepalive"}"#),
            BenchDialect::Deepgram => ws::client_frame_bytes(ws::TEXT, br#"{"type":"KeepAlive"}"#),
            _ => ws::client_frame_bytes(ws::PING, b""),
        }
    }

    /// What follows the last frame. OpenAI has no end message: a beta session update, whose
    /// echo (`transcription_session.updated`) comes after every message before it.
    pub fn stop(self) -> Bytes {
        let stop: &[u8] = match self {
            BenchDialect::Native => br#"{"type":"stop"}"#,
            BenchDialect::Deepgram => br#"{"type":"CloseStream"}"#,
            BenchDialect::OpenAi => br#"{"type":"transcription_session.update","session":{}}"#,
            BenchDialect::Jambonz => br#"{"type":"stop"}"#,
            BenchDialect::Vosk => br#"{"eof" : 1}"#,
            BenchDialect::Twilio => br#"{"event":"stop","streamSid":"MZ-bench","stop":{}}"#,
        };
        ws::client_frame_bytes(ws::TEXT, stop)
    }

    /// The server's Close 1000 ends the session normally without an [`Event::Ending`] before it
    /// (jambonz and vosk close right after their last results).
    pub fn closes_without_ending(self) -> bool {
        matches!(
            self,
            BenchDialect::Jambonz | BenchDialect::Vosk | BenchDialect::Twilio
        )
    }

    /// The client closes once its last final has come (the server never ends an OpenAI session).
    pub fn client_closes(self) -> bool {
        self == BenchDialect::OpenAi
    }

    /// What one server text message means.
    pub fn event(self, text_bytes: &[u8]) -> Result<Event, String> {
        let invalid = |e: serde_json::Error| format!("the server sent invalid JSON: {e}");
        if self == BenchDialect::Native {
            let m: NativeMessage = serde_json::from_slice(text_bytes).map_err(invalid)?;
            return Ok(match m.kind.as_ref() {
                "transcript" if m.is_final => Event::Final {
                    transcript: m.transcript.into_owned(),
                    words: Some(m.words.iter().map(|w| (w.start_ms, w.end_ms)).collect()),
                },
                "transcript" | "ack" => Event::Other,
                "ready" => Event::Ready,
                "warning" => Event::Warning(m.code.into_owned()),
                "error" => Event::Error(m.code.into_owned()),
                "closed" => Event::Ending {
                    restarts: m.restarts,
                },
                other => return Err(format!("unexpected message type {other:?}")),
            });
        }
        if self == BenchDialect::Twilio {
            return Err("the server wrote to a Twilio stream, which reads nothing".to_string());
        }
        let m: Value = serde_json::from_slice(text_bytes).map_err(invalid)?;
        let kind = m["type"].as_str().unwrap_or_default();
        Ok(match self {
            BenchDialect::Native | BenchDialect::Twilio => Event::Other,
            BenchDialect::Deepgram => match kind {
                "Results" if m["is_final"] == true => {
                    let alternative = &m["channel"]["alternatives"][0];
                    Event::Final {
                        transcript: text(&alternative["transcript"]),
                        words: Some(word_times(&alternative["words"])),
                    }
                }
                "Metadata" => Event::Ending { restarts: 0 },
                "Error" => Event::Error(text(&m["variant"])),
                _ => Event::Other,
            },
            BenchDialect::OpenAi => match kind {
                "conversation.item.input_audio_transcription.completed" => Event::Final {
                    transcript: text(&m["transcript"]),
                    words: None,
                },
                "session.updated" => Event::Ready,
                "transcription_session.updated" => Event::Ending { restarts: 0 },
                "error" => Event::Error(text(&m["error"]["code"])),
                _ => Event::Other,
            },
            BenchDialect::Jambonz => match kind {
                "transcription" if m["is_final"] == true => Event::Final {
                    transcript: text(&m["alternatives"][0]["transcript"]),
                    words: None,
                },
                "error" => {
                    let error = text(&m["error"]);
                    let code = error.split(':').next().unwrap_or_default();
                    Event::Error(code.to_string())
                }
                _ => Event::Other,
            },
            BenchDialect::Vosk => match m["text"].as_str() {
                Some(said) if !said.is_empty() => Event::Final {
                    transcript: said.to_string(),
                    words: Some(word_times(&m["result"])),
                },
                _ if m["error"].is_string() => Event::Error(text(&m["code"])),
                _ => Event::Other,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: ScriptFormat = ScriptFormat {
        sample_rate_hz: 16_000,
        encoding: SynthEncoding::Linear16,
        frame_ms: 100,
    };

    #[test]
    fn every_dialects_finals_and_ends_are_read() {
        let cases: [(BenchDialect, &str, Event); 9] = [
            (
                BenchDialect::Native,
                r#"{"type":"transcript","is_final":true,"transcript":"a b","words":[{"start_ms":1,"end_ms":2}]}"#,
                Event::Final {
                    transcript: "a b".into(),
                    words: Some(vec![(1, 2)]),
                },
            ),
            (
                BenchDialect::Deepgram,
                r#"{"type":"Results","is_final":true,"channel":{"alternatives":[{"transcript":"a","words":[{"start":0.001,"end":1.234}]}]}}"#,
                Event::Final {
                    transcript: "a".into(),
                    words: Some(vec![(1, 1_234)]),
                },
            ),
            (
                BenchDialect::Deepgram,
                r#"{"type":"Metadata"}"#,
                Event::Ending { restarts: 0 },
            ),
            (
                BenchDialect::OpenAi,
                r#"{"type":"conversation.item.input_audio_transcription.completed","transcript":"a"}"#,
                Event::Final {
                    transcript: "a".into(),
                    words: None,
                },
            ),
            (
                BenchDialect::OpenAi,
                r#"{"type":"session.updated"}"#,
                Event::Ready,
            ),
            (
                BenchDialect::Jambonz,
                r#"{"type":"error","error":"busy: no decoder"}"#,
                Event::Error("busy".into()),
            ),
            (
                BenchDialect::Vosk,
                r#"{"result":[{"conf":1,"start":0.5,"end":0.75,"word":"a"}],"text":"a"}"#,
                Event::Final {
                    transcript: "a".into(),
                    words: Some(vec![(500, 750)]),
                },
            ),
            (BenchDialect::Vosk, r#"{"text":""}"#, Event::Other),
            (BenchDialect::Vosk, r#"{"partial":"a"}"#, Event::Other),
        ];
        for (dialect, text, event) in cases {
            assert_eq!(dialect.event(text.as_bytes()), Ok(event), "{text}");
        }
        assert!(BenchDialect::Native.event(b"not json").is_err());
    }

    #[test]
    fn formats_are_checked_per_dialect() {
        assert!(BenchDialect::Deepgram.check_format(&FORMAT).is_ok());
        assert!(BenchDialect::OpenAi.check_format(&FORMAT).is_err());
        let mulaw = ScriptFormat {
            sample_rate_hz: 8_000,
            encoding: SynthEncoding::Mulaw,
            frame_ms: 100,
        };
        assert!(BenchDialect::OpenAi.check_format(&mulaw).is_ok());
        assert!(BenchDialect::Vosk.check_format(&mulaw).is_err());
        assert!(BenchDialect::Twilio.check_format(&mulaw).is_ok());
        assert!(BenchDialect::Twilio.check_format(&FORMAT).is_err());
        assert_eq!(
            BenchDialect::Deepgram.path("/v1/listen", &FORMAT, true),
            "/deepgram/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true"
        );
        assert!(BenchDialect::parse("klingon").is_err());
    }
}
