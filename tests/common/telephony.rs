//! What the telephony and webhook tests share: a gateway posting to a real webhook receiver
//! (`voxgate_actors::webhooks::test_receiver`), a media-stream client that plays a call's two
//! tracks as Twilio or Telnyx frames at real time, and checks of what the receiver got (every
//! signature verified, events in order).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use voxgate_actors::protocol::media_stream::Envelope;
use voxgate_actors::webhooks::test_receiver::{Delivery, TestReceiver};
use voxgate_emulator::synth;

use super::dialect::{emulator_env, gateway_with, send_text, Socket};
use super::process::Process;

/// The webhook signing secret of the test gateways.
pub const SECRET: &str = "webhook-secret-0123456789";
/// The Twilio auth token of the test gateways.
pub const AUTH_TOKEN: &str = "twilio-auth-token-0123";
/// How long a test waits for the receiver.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// A real receiver on loopback.
pub fn receiver() -> TestReceiver {
    TestReceiver::start().unwrap_or_else(|e| panic!("no webhook receiver: {e}"))
}

/// A gateway on `emulator` posting to `urls` (fast retries), with `extra_toml` appended.
pub fn telephony_gateway(emulator: &Process, urls: &[String], extra_toml: &str) -> Process {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "[webhooks]\nurls = [{}]\nsecret = \"{SECRET}\"\ntimeout_secs = 1.0\n\
         initial_backoff_ms = 50\nmax_backoff_ms = 200\nmax_attempts = 100\n{extra_toml}\n",
        urls.join(", ")
    );
    let env = emulator_env(emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gateway_with(&toml, &env)
}

/// Every delivery's signature verified against [`SECRET`]; the bodies as JSON, in arrival order.
pub fn verified(deliveries: &[Delivery]) -> Vec<Value> {
    deliveries.iter().map(|d| d.verified(SECRET)).collect()
}

/// The events delivered to `path` (`bodies` are `deliveries`' bodies, in the same order).
pub fn delivered_to<'a>(
    deliveries: &[Delivery],
    bodies: &'a [Value],
    path: &str,
) -> Vec<&'a Value> {
    deliveries
        .iter()
        .zip(bodies)
        .filter(|(d, _)| d.path == path)
        .map(|(_, b)| b)
        .collect()
}

/// The events of one session, in arrival order.
pub fn of_session<'a>(bodies: &'a [Value], session_id: &str) -> Vec<&'a Value> {
    bodies
        .iter()
        .filter(|b| b["session_id"] == session_id)
        .collect()
}

/// The session ids that posted `session.started`.
pub fn sessions(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .filter(|b| b["type"] == "session.started")
        .filter_map(|b| b["session_id"].as_str().map(String::from))
        .collect()
}

/// Checks one session's events arrived in order, each once (sequence 0, 1, 2, …).
pub fn assert_in_order(events: &[&Value]) {
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    let expected: Vec<u64> = (0..events.len() as u64).collect();
    assert_eq!(sequences, expected, "events out of order or repeated");
}

/// The final transcripts of `track`, joined by spaces.
pub fn track_text(events: &[&Value], track: &str) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "transcript.final" && e["track"] == track)
        .filter_map(|e| e["transcript"].as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks each `(track, spoken text)`'s finals equal the words of the text, exactly.
pub fn assert_tracks(events: &[&Value], tracks: &[(&str, &str)], ctx: &str) {
    for (track, text) in tracks {
        let words = synth::expected_words(text).join(" ");
        assert_eq!(track_text(events, track), words, "track {track}: {ctx}");
    }
}

/// Waits for `n` `session.ended` events.
pub async fn wait_ended(receiver: &TestReceiver, n: usize) -> Vec<Value> {
    let deliveries = receiver
        .wait_for(DELIVERY_WAIT, |d| {
            d.iter()
                .filter(|d| d.json()["type"] == "session.ended")
                .count()
                >= n
        })
        .await;
    verified(&deliveries)
}

/// Builds a provider's frames for one stream.
pub struct Call {
    pub envelope: Envelope,
    sequence: u64,
    /// [`Call::play`] sends neighbouring frames swapped and some twice, as a provider that does
    /// not keep order might.
    pub disorder: bool,
}

impl Call {
    pub fn new(envelope: Envelope) -> Call {
        Call {
            envelope,
            sequence: 0,
            disorder: false,
        }
    }

    fn next(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    /// `event` with the envelope's stream id and sequence number and `fields`.
    pub fn frame(&mut self, event: &str, fields: Value) -> String {
        let sequence = self.next();
        let mut frame = match self.envelope {
            Envelope::Twilio => {
                json!({"event": event, "sequenceNumber": sequence, "streamSid": "MZ-test"})
            }
            Envelope::Telnyx => {
                json!({"event": event, "sequence_number": sequence, "stream_id": "ST-test"})
            }
        };
        if let (Value::Object(frame), Value::Object(fields)) = (&mut frame, fields) {
            frame.extend(fields);
        }
        frame.to_string()
    }

    /// `start` for `encoding` at `rate` with Twilio's `tracks` and `custom` parameters.
    pub fn start(&mut self, encoding: &str, rate: u32, tracks: &[&str], custom: Value) -> String {
        let start = match self.envelope {
            Envelope::Twilio => json!({"start": {"streamSid": "MZ-test", "callSid": "CA-test",
                "accountSid": "AC-test", "tracks": tracks, "customParameters": custom,
                "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1}}}),
            Envelope::Telnyx => json!({"start": {"call_control_id": "v3:CC-test",
                "user_id": "U-test", "client_state": "c3RhdGU=",
                "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1}}}),
        };
        self.frame("start", start)
    }

    pub fn media(&mut self, track: &str, chunk: u64, payload: &[u8]) -> String {
        let media = json!({"media": {"track": track, "chunk": chunk.to_string(),
            "timestamp": (chunk * 20).to_string(), "payload": BASE64.encode(payload)}});
        self.frame("media", media)
    }

    /// Plays `tracks` (name, audio) at real time in 20 ms chunks of `chunk_bytes`, a mark and a
    /// DTMF digit now and then.
    pub async fn play(&mut self, ws: &mut Socket, tracks: &[(&str, &[u8])], chunk_bytes: usize) {
        let longest = tracks.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
        let chunks = longest.div_ceil(chunk_bytes) as u64;
        // Five chunks (100 ms) per tick: real time without a timer per 20 ms.
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        let mut frames = Vec::new();
        for chunk in 0..chunks {
            let at = chunk as usize * chunk_bytes;
            for (track, audio) in tracks {
                if let Some(part) = audio.get(at..(at + chunk_bytes).min(audio.len())) {
                    if !part.is_empty() {
                        frames.push(self.media(track, chunk, part));
                    }
                }
            }
            if chunk % 50 == 25 {
                frames.push(self.frame("mark", json!({"mark": {"name": format!("m{chunk}")}})));
                let dtmf = json!({"dtmf": {"track": "inbound_track", "digit": "5"}});
                frames.push(self.frame("dtmf", dtmf));
            }
            if chunk % 5 == 4 || chunk + 1 == chunks {
                ticker.tick().await;
                if self.disorder {
                    for pair in frames.chunks_mut(2) {
                        pair.reverse();
                    }
                    if let Some(again) = frames.first().cloned() {
                        frames.push(again);
                    }
                }
                for frame in frames.drain(..) {
                    send_text(ws, &frame).await;
                }
            }
        }
    }

    pub fn stop(&mut self) -> String {
        self.frame(
            "stop",
            json!({"stop": {"accountSid": "AC-test", "callSid": "CA-test"}}),
        )
    }

    pub fn connected(&mut self) -> String {
        match self.envelope {
            Envelope::Twilio => {
                json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
            }
            Envelope::Telnyx => json!({"event": "connected", "version": "1.0.0"}).to_string(),
        }
    }
}

/// `text` as 8 kHz μ-law, cut at the end of its last word: no pause follows, so the last
/// utterance is still being recognised when the audio ends (its final needs the half-close).
pub fn mulaw_ending_mid_utterance(text: &str) -> Vec<u8> {
    let encoded =
        voxgate_emulator::synth::encode_with_timeline(text, 8_000, synth::SynthEncoding::Mulaw);
    let end = encoded.utterance_ends.last().copied().unwrap_or(0) as usize;
    let mut audio = encoded.audio;
    audio.truncate(end);
    audio
}

/// How a provider leaves right after `stop`.
pub enum HangUp {
    /// A Close frame, then the TCP connection goes, without waiting for voxgate's Close.
    CloseFrame,
    /// The TCP connection goes, with no Close frame at all.
    Drop,
}

/// Sends `stop` and hangs up at once, as Twilio and Telnyx do.
pub async fn stop_and_hang_up(mut ws: Socket, call: &mut Call, how: HangUp) {
    send_text(&mut ws, &call.stop()).await;
    if let HangUp::CloseFrame = how {
        let _ = ws.close(None).await;
    }
    drop(ws);
}

/// One call's events: in order, each track's finals exact, and `session.ended` last with reason
/// `closed` and a summary counting every final.
pub fn assert_call_complete(events: &[&Value], tracks: &[(&str, &str)], ctx: &str) {
    assert_in_order(events);
    assert_tracks(events, tracks, ctx);
    let finals = events
        .iter()
        .filter(|e| e["type"] == "transcript.final")
        .count() as u64;
    let last = events.last().copied().cloned().unwrap_or_default();
    assert_eq!(last["type"], "session.ended", "{ctx}");
    assert_eq!(last["reason"], "closed", "{ctx}");
    assert_eq!(last["summary"]["results"].as_u64(), Some(finals), "{ctx}");
    assert_eq!(last["summary"]["events_dropped"], 0, "{ctx}");
}
