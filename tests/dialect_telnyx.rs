//! Telnyx media streaming on `/telnyx`, end to end on loopback: a client sending Telnyx's
//! snake_case frames (both tracks of emulator-encoded speech as PCMU, marks, DTMF; one track as
//! big-endian L16 at 16 kHz) with a voxgate key in the stream URL, a real webhook receiver
//! getting each track's finals exact, signed and in order; a bad key and a codec voxgate cannot
//! decode get the documented refusals while a good call beside them is transcribed.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::{emulator, Process};
use common::telephony::*;
use serde_json::json;
use voxgate_actors::protocol::media_stream::Envelope;
use voxgate_emulator::synth;

const CALLER: &str = "my card was charged twice. can you refund one";
const AGENT: &str = "i can see both charges. the refund is on its way";

async fn open_telnyx(gateway: &Process, query: &str) -> Result<Socket, (u16, String)> {
    open(&format!("ws://{}/telnyx?{query}", gateway.addr), &[]).await
}

/// A PCMU call with both tracks; returns the socket's close.
async fn pcmu_call(gateway: &Process, query: &str) -> Option<(u16, String)> {
    let mut ws = open_telnyx(gateway, query)
        .await
        .unwrap_or_else(|(status, body)| panic!("refused: {status} {body}"));
    let mut call = Call::new(Envelope::Telnyx);
    send_text(&mut ws, &call.connected()).await;
    send_text(&mut ws, &call.start("PCMU", 8_000, &[], json!({}))).await;
    let caller = synth::encode(CALLER, 8_000, synth::SynthEncoding::Mulaw);
    let agent = synth::encode(AGENT, 8_000, synth::SynthEncoding::Mulaw);
    call.play(&mut ws, &[("inbound", &caller), ("outbound", &agent)], 160)
        .await;
    send_text(&mut ws, &call.stop()).await;
    read_until_close(&mut ws, Duration::from_secs(20)).await.1
}

/// Both tracks of a PCMU call, posted to the configured receiver and to the call's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_tracks_of_a_pcmu_call_are_posted() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let allow = format!("allow = [\"{}\"]", receiver.url("/calls"));
    let gateway = telephony_gateway(&emulator, &[receiver.url("/all")], &allow);
    let own = receiver.url("/calls/7");
    let query = format!(
        "token={KEY}&webhook_url={}",
        own.replace(':', "%3A").replace('/', "%2F")
    );
    assert_eq!(pcmu_call(&gateway, &query).await.map(|c| c.0), Some(1000));
    let bodies = wait_ended(&receiver, 2).await;
    let deliveries = receiver.deliveries();
    for path in ["/all", "/calls/7"] {
        let events = delivered_to(&deliveries, &bodies, path);
        let ctx = format!("{path}: {events:#?}");
        assert_in_order(&events);
        assert_eq!(events[0]["dialect"], "telnyx", "{ctx}");
        assert_eq!(events[0]["call"]["call_id"], "v3:CC-test");
        assert_eq!(events[0]["call"]["stream_id"], "ST-test");
        assert_eq!(
            events[0]["call"]["custom_parameters"],
            json!({"client_state": "c3RhdGU="})
        );
        assert_tracks(&events, &[("inbound", CALLER), ("outbound", AGENT)], &ctx);
    }
}

/// L16 is big-endian on the wire: swapped, it transcribes exactly; G722 is refused with 1003;
/// a bad key gets 401; a PCMU call beside them is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l16_is_decoded_and_refusals_leave_a_good_call_unaffected() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], "");
    let key_query = format!("token={KEY}");
    let good = pcmu_call(&gateway, &key_query);
    let others = async {
        let refused = open_telnyx(&gateway, "token=wrong-key").await;
        assert_eq!(refused.err().map(|e| e.0), Some(401));
        assert_eq!(
            open_telnyx(&gateway, "").await.err().map(|e| e.0),
            Some(401)
        );

        let Ok(mut ws) = open_telnyx(&gateway, &format!("token={KEY}")).await else {
            panic!("refused");
        };
        let mut call = Call::new(Envelope::Telnyx);
        send_text(&mut ws, &call.start("G722", 16_000, &[], json!({}))).await;
        let closed = read_until_close(&mut ws, Duration::from_secs(10)).await.1;
        assert_eq!(closed, Some((1003, "unsupported_encoding".into())));

        let Ok(mut ws) = open_telnyx(&gateway, &format!("token={KEY}")).await else {
            panic!("refused");
        };
        let mut call = Call::new(Envelope::Telnyx);
        send_text(&mut ws, &call.start("L16", 16_000, &[], json!({}))).await;
        let little = synth::encode(CALLER, 16_000, synth::SynthEncoding::Linear16);
        let big: Vec<u8> = little.chunks_exact(2).flat_map(|s| [s[1], s[0]]).collect();
        // 20 ms at 16 kHz, 16 bits.
        call.play(&mut ws, &[("inbound", &big)], 640).await;
        send_text(&mut ws, &call.stop()).await;
        read_until_close(&mut ws, Duration::from_secs(20)).await.1
    };
    let (good, l16) = tokio::join!(good, others);
    assert_eq!(good.map(|c| c.0), Some(1000));
    assert_eq!(l16.map(|c| c.0), Some(1000));
    let bodies = wait_ended(&receiver, 2).await;
    let ids = sessions(&bodies);
    assert_eq!(ids.len(), 2, "only the two good calls posted");
    let texts: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let events = of_session(&bodies, id);
            assert_in_order(&events);
            (
                track_text(&events, "inbound"),
                track_text(&events, "outbound"),
            )
        })
        .collect();
    let caller = synth::expected_words(CALLER).join(" ");
    let agent = synth::expected_words(AGENT).join(" ");
    assert!(texts.contains(&(caller.clone(), agent)), "{texts:?}");
    assert!(texts.contains(&(caller, String::new())), "{texts:?}");
}

/// Frames out of order and some twice (Telnyx does not promise order) are put back in order
/// and the copies skipped; and Telnyx hangs up right after `stop` — here without even a Close
/// frame — while the last utterance of each track is still being recognised: every final is
/// posted anyway, exact, before `session.ended`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disordered_frames_and_the_last_finals_after_a_dropped_connection() {
    let emulator = emulator(&[]);
    let receiver = receiver();
    let gateway = telephony_gateway(&emulator, &[receiver.url("/hook")], "");
    let Ok(mut ws) = open_telnyx(&gateway, &format!("token={KEY}")).await else {
        panic!("refused");
    };
    let mut call = Call::new(Envelope::Telnyx);
    call.disorder = true;
    send_text(&mut ws, &call.start("PCMU", 8_000, &[], json!({}))).await;
    let caller = mulaw_ending_mid_utterance(CALLER);
    let agent = mulaw_ending_mid_utterance(AGENT);
    call.play(&mut ws, &[("inbound", &caller), ("outbound", &agent)], 160)
        .await;
    stop_and_hang_up(ws, &mut call, HangUp::Drop).await;
    let bodies = wait_ended(&receiver, 1).await;
    let events: Vec<&serde_json::Value> = bodies.iter().collect();
    let ctx = format!("{events:#?}");
    assert_call_complete(&events, &[("inbound", CALLER), ("outbound", AGENT)], &ctx);
}
