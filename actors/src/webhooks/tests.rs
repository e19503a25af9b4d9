//! The webhooks against a real receiver on loopback: order, signatures, retries through failures
//! and stalls, the bounds, and the dialect wrapper's refusals and events.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::test_receiver::{Delivery, Mode, TestReceiver};
use super::*;
use crate::messages::{PipelineSummary, Transcript};
use crate::metrics::METRICS;
use crate::protocol::dialect::{Inbound, SessionEnd};
use crate::protocol::native::NativeDialect;
use crate::protocol::ErrorCode;

const SECRET: &str = "test-secret-0123456789";
const WAIT: Duration = Duration::from_secs(10);

fn settings(urls: Vec<String>) -> WebhookSettings {
    WebhookSettings {
        urls,
        secret: Some(SECRET.into()),
        timeout_secs: 0.5,
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
        ..WebhookSettings::default()
    }
}

fn webhooks(settings: &WebhookSettings) -> Arc<Webhooks> {
    match Webhooks::from_settings(settings) {
        Ok(Some(webhooks)) => webhooks,
        other => panic!("webhooks not built: {other:?}"),
    }
}

fn receiver() -> TestReceiver {
    TestReceiver::start().unwrap_or_else(|e| panic!("no receiver: {e}"))
}

fn final_result(text: &str, start_ms: u64) -> Transcript {
    Transcript {
        is_final: true,
        transcript: text.into(),
        confidence: 0.9,
        stability: 0.0,
        start_ms,
        end_ms: start_ms + 500,
        words: Vec::new(),
        language_code: "en-US".into(),
    }
}

/// Every delivery's signature checks out with the secret; returns the bodies as JSON.
fn verified(deliveries: &[Delivery]) -> Vec<Value> {
    deliveries.iter().map(|d| d.verified(SECRET)).collect()
}

fn texts(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .filter(|b| b["type"] == "transcript.final")
        .filter_map(|b| b["transcript"].as_str().map(String::from))
        .collect()
}

fn request() -> WebhookRequest {
    let mut call = Map::new();
    call.insert("call_sid".into(), json!("CA1"));
    WebhookRequest {
        url: None,
        call,
        tracks: vec!["inbound".into()],
    }
}

#[test]
fn the_allow_list_matches_at_path_boundaries() {
    let settings = WebhookSettings {
        allow: vec![
            "https://a.example/hooks".into(),
            "http://127.0.0.1:9/".into(),
        ],
        ..WebhookSettings::default()
    };
    assert!(settings.allows("https://a.example/hooks"));
    assert!(settings.allows("https://a.example/hooks/call?x=1"));
    assert!(settings.allows("http://127.0.0.1:9/any"));
    assert!(!settings.allows("https://a.example/hooksmith"));
    assert!(!settings.allows("https://a.example.evil/hooks"));
    assert!(!settings.allows("http://127.0.0.1:90/"));
    assert!(!settings.allows("ftp://a.example/hooks"));
}

#[test]
fn settings_checks_name_the_bad_key() {
    let failing = |s: WebhookSettings| -> Vec<&'static str> {
        s.checks()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(k, _)| k)
            .collect()
    };
    assert!(failing(WebhookSettings::default()).is_empty());
    let no_secret = WebhookSettings {
        urls: vec!["https://a.example/".into()],
        ..WebhookSettings::default()
    };
    assert_eq!(
        failing(no_secret),
        vec!["webhooks.secret (required with webhooks.urls or webhooks.allow)"]
    );
    let bad = WebhookSettings {
        urls: vec!["a.example/x".into()],
        secret: Some("short".into()),
        max_attempts: 0,
        ..WebhookSettings::default()
    };
    assert_eq!(
        failing(bad),
        vec!["webhooks.urls", "webhooks.secret", "webhooks.max_attempts"]
    );
    assert!(matches!(
        Webhooks::from_settings(&WebhookSettings::default()),
        Ok(None)
    ));
}

/// Events arrive signed and in order; per-call URLs are checked against the allow-list.
#[actix_rt::test]
async fn a_session_posts_signed_events_in_order() {
    let receiver = receiver();
    let mut settings = settings(vec![receiver.url("/all")]);
    settings.allow = vec![receiver.url("/calls")];
    let webhooks = webhooks(&settings);
    let destinations = webhooks.destinations(Some(&receiver.url("/calls/1")));
    assert_eq!(
        destinations.as_deref().ok(),
        Some(&[receiver.url("/all"), receiver.url("/calls/1")][..])
    );
    assert!(webhooks.destinations(Some("http://127.0.0.1:1/x")).is_err());
    let Ok(destinations) = destinations else {
        return;
    };
    let mut session = webhooks.open("s1", "twilio", &destinations, request());
    for (i, word) in ["one", "two", "three"].iter().enumerate() {
        session.transcript(&final_result(word, i as u64 * 1000), 0);
    }
    let mut interim = final_result("ignored", 0);
    interim.is_final = false;
    session.transcript(&interim, 0);
    drop(session);
    let deliveries = receiver.wait_for(WAIT, |d| d.len() >= 10).await;
    assert_eq!(deliveries.len(), 10, "5 events to each of 2 receivers");
    for path in ["/all", "/calls/1"] {
        let mine: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| d.path == path)
            .cloned()
            .collect();
        let bodies = verified(&mine);
        let kinds: Vec<&str> = bodies.iter().filter_map(|b| b["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "session.started",
                "transcript.final",
                "transcript.final",
                "transcript.final",
                "session.ended"
            ]
        );
        let sequences: Vec<u64> = bodies
            .iter()
            .filter_map(|b| b["sequence"].as_u64())
            .collect();
        assert_eq!(sequences, [0, 1, 2, 3, 4]);
        assert_eq!(texts(&bodies), ["one", "two", "three"]);
        assert_eq!(bodies[0]["call"]["call_sid"], "CA1");
        assert_eq!(
            bodies[0]["channels"],
            json!([{"channel": 0, "track": "inbound"}])
        );
        assert_eq!(bodies[1]["track"], "inbound");
        assert_eq!(bodies[1]["channel"], 0);
        assert_eq!(bodies[4]["reason"], "disconnected");
        assert_eq!(bodies[4]["summary"]["results"], 3);
        assert_eq!(bodies[4]["summary"]["transcripts_posted"], 3);
    }
}

/// A receiver that fails, then stalls, then recovers gets every event once, in order; pushing
/// never waits for it.
#[actix_rt::test]
async fn failures_and_stalls_are_retried_in_order() {
    let receiver = receiver();
    let mut settings = settings(vec![receiver.url("/hook")]);
    settings.max_attempts = 30;
    let webhooks = webhooks(&settings);
    let retries_before = METRICS.webhook_retries.get();
    receiver.set_mode(Mode::Fail(503));
    let started = std::time::Instant::now();
    let mut session = webhooks.open("s2", "native", &settings.urls, request());
    for i in 0..20u64 {
        session.transcript(&final_result(&format!("w{i}"), i * 1000), 0);
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "queueing waited on the receiver: {:?}",
        started.elapsed()
    );
    receiver.wait_attempts(3, WAIT).await;
    receiver.set_mode(Mode::Stall);
    let stalled_at = receiver.attempts();
    receiver.wait_attempts(stalled_at + 2, WAIT).await;
    receiver.set_mode(Mode::Accept);
    session.end(event::Ending {
        reason: "closed".into(),
        audio_ms: 20_000,
        summary: PipelineSummary {
            results: 20,
            restarts: 0,
            billed_ms: 0,
        },
    });
    let deliveries = receiver.wait_for(WAIT, |d| d.len() >= 22).await;
    let bodies = verified(&deliveries);
    let expected: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    assert_eq!(texts(&bodies), expected);
    let sequences: Vec<u64> = bodies
        .iter()
        .filter_map(|b| b["sequence"].as_u64())
        .collect();
    assert_eq!(
        sequences,
        (0..22).collect::<Vec<u64>>(),
        "each once, in order"
    );
    assert_eq!(bodies[21]["reason"], "closed");
    assert!(METRICS.webhook_retries.get() >= retries_before + 4);
}

/// Past the session's bound events are dropped (counted); past the attempts, given up (counted).
#[actix_rt::test]
async fn bounds_and_give_ups_are_counted() {
    let receiver = receiver();
    let mut settings = settings(vec![receiver.url("/hook")]);
    settings.max_queue_per_session = 3;
    settings.max_attempts = 2;
    let webhooks = webhooks(&settings);
    let full = || {
        METRICS
            .webhook_dropped
            .with_label_values(&["session_queue_full"])
            .get()
    };
    let gave_up = || {
        METRICS
            .webhook_dropped
            .with_label_values(&["gave_up"])
            .get()
    };
    let (full_before, gave_up_before) = (full(), gave_up());
    receiver.set_mode(Mode::Fail(500));
    let mut session = webhooks.open("s3", "native", &settings.urls, request());
    for i in 0..5u64 {
        session.transcript(&final_result("x", i * 1000), 0);
    }
    assert!(
        full() >= full_before + 3,
        "started + 5 finals into a queue of 3"
    );
    receiver.wait_attempts(6, WAIT).await;
    drop(session);
    // Each of the 3 queued events is tried twice, then given up.
    let waited = tokio::time::timeout(WAIT, async {
        while gave_up() < gave_up_before + 3 {
            // (No signal for a metric: polled.)
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "events not given up");
    assert!(receiver.deliveries().is_empty());
}

fn native_start(webhook: bool) -> String {
    json!({"type": "start", "encoding": "LINEAR16", "sample_rate_hz": 16000, "webhook": webhook})
        .to_string()
}

/// A native client asking for webhooks on a server without them is refused; with them, its
/// session posts; without asking, it posts nothing.
#[actix_rt::test]
async fn the_wrapper_refuses_or_posts_as_asked() {
    let mut plain = WebhookDialect::wrap(Box::new(NativeDialect::new("", 10)), None);
    let mut actions = Vec::new();
    let refused = plain.text(&native_start(true), &mut actions);
    assert_eq!(refused.map_err(|r| r.code), Err(ErrorCode::InvalidConfig));
    assert!(actions.is_empty(), "the session must not start");
    assert!(plain.text(&native_start(false), &mut actions).is_ok());
    assert!(matches!(actions.as_slice(), [Inbound::Configure(_)]));

    let receiver = receiver();
    let settings = settings(vec![receiver.url("/native")]);
    let mut native = WebhookDialect::wrap(
        Box::new(NativeDialect::new("", 10)),
        Some(webhooks(&settings)),
    );
    let mut actions = Vec::new();
    assert!(native.text(&native_start(true), &mut actions).is_ok());
    let mut out = Vec::new();
    native.ready("s4", &mut out);
    native.transcript(&final_result("hello", 0), &mut out);
    let close = native.closed(
        SessionEnd {
            session_id: "s4",
            audio_ms: 1_000,
            summary: PipelineSummary {
                results: 1,
                restarts: 0,
                billed_ms: 0,
            },
        },
        &mut out,
    );
    assert_eq!(close.code, 1000);
    assert_eq!(
        out.len(),
        3,
        "the client's own messages are unchanged: {out:?}"
    );
    let deliveries = receiver.wait_for(WAIT, |d| d.len() >= 3).await;
    let bodies = verified(&deliveries);
    let kinds: Vec<&str> = bodies.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["session.started", "transcript.final", "session.ended"]
    );
    assert_eq!(bodies[0]["dialect"], "native");
    assert_eq!(bodies[2]["summary"]["audio_ms"], 1_000);
    drop(native);
    assert_eq!(
        receiver.wait_attempts(4, Duration::from_millis(300)).await,
        3,
        "ended once"
    );
}
