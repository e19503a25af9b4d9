//! Twilio Media Streams on `/twilio`, end to end on loopback: a real `voxgate serve` on the
//! emulator, a client sending Twilio's frames (both tracks of emulator-encoded speech in μ-law
//! 8 kHz, marks, DTMF) with Twilio's handshake signature, and a real webhook receiver started
//! by the test that must get every final of each track exactly, signed and in order. Then the
//! refusals (bad or missing signature, no auth token configured, bad JSON, wrong codec) with a
//! good call beside them unaffected.

mod common;

use std::time::{Duration, Instant};

use common::dialect::*;
use common::process::{emulator, metric, Process};
use common::telephony::*;
use futures_util::StreamExt;
use serde_json::json;
use voxgate_actors::protocol::media_stream::{signature, Envelope};
use voxgate_actors::webhooks::test_receiver::Mode;
use voxgate_emulator::synth;

const CALLER: &str = "hello i would like to check my order. it has not arrived yet";
const AGENT: &str = "thank you for calling. let me look that up for you";

fn mulaw(text: &str) -> Vec<u8> {
    synth::encode(text, 8_000, synth::SynthEncoding::Mulaw)
}

/// Opens `/twilio` as Twilio does: the URL it was told, signed with the auth token.
async fn open_twilio(gateway: &Process, token: &str) -> Result<Socket, (u16, String)> {
    let url = format!("ws://{}/twilio?tenant=acme", gateway.addr);
    let signed = signature::sign(token, &url);
    open(&url, &[("X-Twilio-Signature", &signed)]).await
}

/// A whole call: connected, start (both tracks, a per-call webhook URL), the tracks at real
/// time with marks and DTMF, stop; the socket's close.
async fn call(gateway: &Process, webhook_url: Option<&str>) -> Option<(u16, String)> {
    let mut ws = opened(gateway).await;
    let mut call = Call::new(Envelope::Twilio);
    send_text(&mut ws, &call.connected()).await;
    let mut custom = json!({"crm_id": "42"});
    if let Some(url) = webhook_url {
        custom["webhook_url"] = json!(url);
    }
    let start = call.start("audio/x-mulaw", 8_000, &["inbound", "outbound"], custom);
    send_text(&mut ws, &start).await;
    let (caller, agent) = (mulaw(CALLER), mulaw(AGENT));
    call.play(&mut ws, &[("inbound", &caller), ("outbound", &agent)], 160)
        .await;
    send_text(&mut ws, &call.stop()).await;
    let (messages, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
    assert!(messages.is_empty(), "Twilio is sent nothing: {messages:?}");
    close
}

/// Both tracks of a call become two channels; each track's finals arrive exact at both the
/// configured receiver and the call's own (allow-listed), signed, in order, with the call named.
/// With the default configuration the call's audio went upstream in Twilio's own 20 ms frames
/// (`[dialects.twilio] frame_ms`), not `[audio] frame_ms`'s 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_tracks_are_transcribed_and_posted() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let allow = format!(
        "allow = [\"{}\"]\n[dialects.twilio]\nauth_token = \"{AUTH_TOKEN}\"",
        receiver.url("/calls")
    );
    let gateway = telephony_gateway(&emulator, &[receiver.url("/all")], &allow);
    let close = call(&gateway, Some(&receiver.url("/calls/acme"))).await;
    assert_eq!(close.map(|c| c.0), Some(1000));
    let bodies = wait_ended(&receiver, 2).await;
    let deliveries = receiver.deliveries();
    for path in ["/all", "/calls/acme"] {
        let events = delivered_to(&deliveries, &bodies, path);
        let ctx = format!("{path}: {events:#?}");
        assert_in_order(&events);
        assert_eq!(events[0]["type"], "session.started", "{ctx}");
        assert_eq!(events[0]["dialect"], "twilio");
        assert_eq!(events[0]["call"]["call_id"], "CA-test");
        assert_eq!(events[0]["call"]["stream_id"], "MZ-test");
        assert_eq!(events[0]["call"]["custom_parameters"]["crm_id"], "42");
        assert_eq!(
            events[0]["channels"],
            json!([{"channel": 0, "track": "inbound"}, {"channel": 1, "track": "outbound"}])
        );
        assert_tracks(&events, &[("inbound", CALLER), ("outbound", AGENT)], &ctx);
        let channels_ok = events
            .iter()
            .filter(|e| e["type"] == "transcript.final")
            .all(|e| (e["track"] == "inbound") == (e["channel"] == 0));
        assert!(channels_ok, "{ctx}");
        let last = events.last().copied().cloned().unwrap_or_default();
        assert_eq!(last["type"], "session.ended", "{ctx}");
        assert_eq!(last["reason"], "closed");
        assert_eq!(last["summary"]["events_dropped"], 0);
    }
    // At least one upstream frame per 20 ms of each track (replays after a stream's turnover
    // would only add to it); 100 ms frames would be a fifth of this.
    let twenty_ms_frames = mulaw(CALLER).len() / 160 + mulaw(AGENT).len() / 160;
    let frames = metric(&gateway.addr, "voxgate_upstream_frames_total").await;
    assert!(
        frames >= twenty_ms_frames as f64,
        "{frames} upstream frames for {twenty_ms_frames} × 20 ms of audio"
    );
}

/// A receiver that fails, then stalls, then recovers: the call itself is never held up (it
/// closes while the receiver is still stalled), and afterwards every final arrives once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_stalling_receiver_never_slows_the_call() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let token = format!("[dialects.twilio]\nauth_token = \"{AUTH_TOKEN}\"");
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], &token);
    receiver.set_mode(Mode::Fail(503));
    let mut ws = opened(&gateway).await;
    let mut call = Call::new(Envelope::Twilio);
    let start = call.start("audio/x-mulaw", 8_000, &["inbound", "outbound"], json!({}));
    send_text(&mut ws, &start).await;
    let (caller, agent) = (mulaw(CALLER), mulaw(AGENT));
    let half = caller.len() / 2;
    let began = Instant::now();
    call.play(
        &mut ws,
        &[("inbound", &caller[..half]), ("outbound", &agent[..half])],
        160,
    )
    .await;
    receiver.set_mode(Mode::Stall);
    let stalled_from = receiver.attempts();
    call.play(
        &mut ws,
        &[("inbound", &caller[half..]), ("outbound", &agent[half..])],
        160,
    )
    .await;
    let played = began.elapsed();
    send_text(&mut ws, &call.stop()).await;
    let (_, close) = read_until_close(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(close.map(|c| c.0), Some(1000), "the call ended normally");
    let audio_secs = caller.len().max(agent.len()) as f64 / 8_000.0;
    assert!(
        played.as_secs_f64() < audio_secs + 1.0,
        "playing {audio_secs:.1} s of audio took {played:?}"
    );
    assert!(receiver.deliveries().is_empty(), "nothing was accepted yet");
    receiver
        .wait_attempts(stalled_from + 1, DELIVERY_WAIT)
        .await;
    receiver.set_mode(Mode::Accept);
    let bodies = wait_ended(&receiver, 1).await;
    let events: Vec<&serde_json::Value> = bodies.iter().collect();
    assert_in_order(&events);
    assert_tracks(&events, &[("inbound", CALLER), ("outbound", AGENT)], "");
}

/// Twilio sends `stop` and closes its socket at once, while the last utterance of each track is
/// still being recognised: those finals are posted anyway, exact, before `session.ended`
/// (reason `closed`, the summary counting them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_finals_outlive_the_socket() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let token = format!("[dialects.twilio]\nauth_token = \"{AUTH_TOKEN}\"");
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], &token);
    let mut ws = opened(&gateway).await;
    let mut call = Call::new(Envelope::Twilio);
    let start = call.start("audio/x-mulaw", 8_000, &["inbound", "outbound"], json!({}));
    send_text(&mut ws, &start).await;
    let caller = mulaw_ending_mid_utterance(CALLER);
    let agent = mulaw_ending_mid_utterance(AGENT);
    call.play(&mut ws, &[("inbound", &caller), ("outbound", &agent)], 160)
        .await;
    stop_and_hang_up(ws, &mut call, HangUp::CloseFrame).await;
    let bodies = wait_ended(&receiver, 1).await;
    let events: Vec<&serde_json::Value> = bodies.iter().collect();
    let ctx = format!("{events:#?}");
    assert_call_complete(&events, &[("inbound", CALLER), ("outbound", AGENT)], &ctx);
    let digits: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "call.dtmf")
        .copied()
        .collect();
    assert!(!digits.is_empty(), "{ctx}");
    // The first digit follows chunk 25: 26 chunks of 20 ms on the session clock.
    assert_eq!(
        (
            &digits[0]["digit"],
            &digits[0]["track"],
            &digits[0]["time_ms"]
        ),
        (&json!("5"), &json!("inbound"), &json!(520)),
        "{ctx}"
    );
}

/// A call whose socket has closed while its last finals are still on their way is still a
/// session using the gateway: it stays in `voxgate_sessions_active` (as in `max_sessions`) until
/// its tail has posted `session.ended`, then leaves both. The emulator holds every response back
/// 2 s, so the last final is still due when voxgate's Close arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_delivering_its_last_finals_still_counts_as_active() {
    let emulator = emulator(&["--response-delay-ms", "2000"]);
    let receiver = receiver();
    let token = format!("[dialects.twilio]\nauth_token = \"{AUTH_TOKEN}\"");
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], &token);
    let mut ws = opened(&gateway).await;
    let mut call = Call::new(Envelope::Twilio);
    let start = call.start("audio/x-mulaw", 8_000, &["inbound"], json!({}));
    send_text(&mut ws, &start).await;
    let caller = mulaw_ending_mid_utterance(AGENT);
    call.play(&mut ws, &[("inbound", &caller)], 160).await;
    send_text(&mut ws, &call.stop()).await;
    let _ = ws.close(None).await;
    // voxgate answers the Close after the session handed the call to its tail; the socket's end
    // says it did.
    let ended = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} });
    assert!(ended.await.is_ok(), "voxgate did not answer the Close");
    let active = metric(&gateway.addr, "voxgate_sessions_active").await;
    assert_eq!(
        active, 1.0,
        "the call still delivering its last final counts"
    );
    let bodies = wait_ended(&receiver, 1).await;
    let events: Vec<&serde_json::Value> = bodies.iter().collect();
    assert_call_complete(&events, &[("inbound", AGENT)], &format!("{events:#?}"));
    // The tail frees the call's place as it hands `session.ended` to the webhooks: by the time
    // the post arrived it is (all but) gone.
    let settled = Instant::now() + WAIT;
    while metric(&gateway.addr, "voxgate_sessions_active").await != 0.0 {
        assert!(
            Instant::now() < settled,
            "the drained call is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The documented refusals: a bad or missing signature and a gateway without an auth token get
/// HTTP 401; bad JSON closes with 1007, a codec other than μ-law with 1003, and a call URL
/// outside the allow-list with 1008 — while a good call beside them is transcribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_a_good_call_unaffected() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let token = format!("[dialects.twilio]\nauth_token = \"{AUTH_TOKEN}\"");
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], &token);
    let good = call(&gateway, None);
    let refusals = async {
        let wrong = open_twilio(&gateway, "another-token").await;
        assert_eq!(wrong.err().map(|e| e.0), Some(401));
        let url = format!("ws://{}/twilio", gateway.addr);
        assert_eq!(open(&url, &[]).await.err().map(|e| e.0), Some(401));
        let other_url = format!("ws://{}/other", gateway.addr);
        let misdirected = signature::sign(AUTH_TOKEN, &other_url);
        let signed_elsewhere = open(&url, &[("X-Twilio-Signature", &misdirected)]).await;
        assert_eq!(signed_elsewhere.err().map(|e| e.0), Some(401));

        let mut ws = opened(&gateway).await;
        send_text(&mut ws, "{\"event\": \"start\",").await;
        let closed = read_until_close(&mut ws, WAIT).await.1;
        assert_eq!(closed, Some((1007, "invalid_json".into())));
        let mut ws = opened(&gateway).await;
        let mut call = Call::new(Envelope::Twilio);
        let alaw = call.start("audio/x-alaw", 8_000, &["inbound"], json!({}));
        send_text(&mut ws, &alaw).await;
        let closed = read_until_close(&mut ws, WAIT).await.1;
        assert_eq!(closed, Some((1003, "unsupported_encoding".into())));
        let mut ws = opened(&gateway).await;
        let elsewhere = json!({"webhook_url": "http://127.0.0.1:1/not-allowed"});
        let start = call.start("audio/x-mulaw", 8_000, &["inbound"], elsewhere);
        send_text(&mut ws, &start).await;
        let closed = read_until_close(&mut ws, WAIT).await.1;
        assert_eq!(closed, Some((1008, "invalid_config".into())));
    };
    let (close, ()) = tokio::join!(good, refusals);
    assert_eq!(close.map(|c| c.0), Some(1000));
    let bodies = wait_ended(&receiver, 1).await;
    assert_eq!(sessions(&bodies).len(), 1, "only the good call posted");
    let events: Vec<&serde_json::Value> = bodies.iter().collect();
    assert_eq!(
        track_text(&events, "inbound"),
        synth::expected_words(CALLER).join(" ")
    );

    let unsigned = telephony_gateway(&emulator, &[receiver.url("/hook")], "");
    let refused = open_twilio(&unsigned, AUTH_TOKEN).await;
    assert_eq!(
        refused.err().map(|e| e.0),
        Some(401),
        "no auth token: refused"
    );
    let allowed = telephony_gateway(
        &emulator,
        &[receiver.url("/hook")],
        "[dialects.twilio]\nallow_unsigned = true",
    );
    assert!(
        open_twilio(&allowed, "").await.is_ok(),
        "explicitly allowed"
    );
}

const WAIT: Duration = Duration::from_secs(10);

/// A signed stream the handshake accepts.
async fn opened(gateway: &Process) -> Socket {
    open_twilio(gateway, AUTH_TOKEN)
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"))
}
