//! The JSON events a session posts, built once and shared by every receiver of the session.
//! Every event has `id` (`<session_id>:<sequence>`, unique: a receiver drops one it has seen, since
//! a retry after a lost reply delivers an event twice), `type`, `session_id`, `sequence` (0, 1, …
//! in the order they happened, which is also the order of delivery) and `created_ms` (Unix ms).
//! The types and their other fields are in `docs/dialects.md`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::messages::{PipelineSummary, Transcript};

/// One event, serialised.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    /// `session.started`, `transcript.final`, …
    pub kind: &'static str,
    pub body: Bytes,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `fields` with the common ones added, as an [`Event`].
pub fn build(
    session_id: &str,
    sequence: u64,
    kind: &'static str,
    mut fields: Map<String, Value>,
) -> Event {
    let id = format!("{session_id}:{sequence}");
    fields.insert("id".into(), json!(id));
    fields.insert("type".into(), json!(kind));
    fields.insert("session_id".into(), json!(session_id));
    fields.insert("sequence".into(), json!(sequence));
    fields.insert("created_ms".into(), json!(unix_ms()));
    Event {
        id,
        kind,
        body: Bytes::from(Value::Object(fields).to_string()),
    }
}

/// The fields of `session.started`.
pub fn started(dialect: &str, call: &Map<String, Value>, tracks: &[String]) -> Map<String, Value> {
    let channels: Vec<Value> = tracks
        .iter()
        .enumerate()
        .map(|(channel, track)| json!({"channel": channel, "track": track}))
        .collect();
    let mut fields = Map::new();
    fields.insert("dialect".into(), json!(dialect));
    fields.insert("call".into(), Value::Object(call.clone()));
    fields.insert("channels".into(), Value::Array(channels));
    fields
}

/// The fields of `transcript.final` / `transcript.interim`.
pub fn transcript(t: &Transcript, channel: usize, track: &str) -> Map<String, Value> {
    let words: Vec<Value> = t
        .words
        .iter()
        .map(|w| {
            json!({"word": w.word, "start_ms": w.start_ms, "end_ms": w.end_ms,
                   "confidence": w.confidence})
        })
        .collect();
    let value = json!({
        "channel": channel,
        "track": track,
        "is_final": t.is_final,
        "transcript": t.transcript,
        "confidence": t.confidence,
        "start_ms": t.start_ms,
        "end_ms": t.end_ms,
        "words": words,
        "language_code": t.language_code,
    });
    match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// How a session ended, for `session.ended`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// `closed` (the client's stop, every result delivered), an error code (`idle_timeout`, …),
    /// or `disconnected` (the socket went away first).
    pub reason: String,
    pub audio_ms: u64,
    pub summary: PipelineSummary,
}

/// The fields of `session.ended`; `posted` and `dropped` count this session's transcript events.
pub fn ended(ending: &Ending, posted: u64, dropped: u64) -> Map<String, Value> {
    let value = json!({
        "reason": ending.reason,
        "summary": {
            "audio_ms": ending.audio_ms,
            "results": ending.summary.results,
            "restarts": ending.summary.restarts,
            "transcripts_posted": posted,
            "events_dropped": dropped,
        },
    });
    match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}
