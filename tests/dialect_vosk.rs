//! vosk-server's protocol on `/vosk`, end to end on loopback: a real `voxgate serve` in front of
//! the emulator, driven over raw WebSockets exactly as vosk-server's own test clients drive it
//! (`config`, binary PCM, one reply awaited per frame, `{"eof" : 1}`): the words of
//! emulator-encoded speech come back exact, as partials and results, and the last result follows
//! eof before a 1000 close. Refusals (bad key, bad JSON, a wrong sample rate) are the documented
//! ones, and a session beside them is unaffected.

mod common;

use std::time::Duration;

use common::dialect::*;
use common::process::{emulator, Process};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth;

const TEXT: &str = "the quick brown fox. jumps over the lazy dog. vosk clients switch by url";

fn vosk_gateway(emulator: &Process, extra_toml: &str) -> Process {
    let env = emulator_env(emulator);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    gateway_with(extra_toml, &env)
}

fn url(gateway: &Process, query: &str) -> String {
    format!("ws://{}/vosk{query}", gateway.addr)
}

/// What one vosk session returned: every reply in order, and the close.
struct Replies {
    /// The reply to each frame, then the last result.
    replies: Vec<Value>,
    close: Option<(u16, String)>,
}

impl Replies {
    /// The text of every result, joined.
    fn text(&self) -> String {
        self.replies
            .iter()
            .filter_map(|r| r["text"].as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The next text message (pings skipped; a close or silence is a failure).
async fn reply(ws: &mut Socket) -> Value {
    next_json(ws).await
}

/// A vosk client: `config`, then `audio` in frames of `frame_bytes`, each reply awaited before
/// the next frame (at least `pace` apart), then `{"eof" : 1}` and the last reply and close.
async fn vosk_session(
    ws: &mut Socket,
    config: &str,
    audio: &[u8],
    frame_bytes: usize,
    pace: Duration,
) -> Replies {
    send_text(ws, config).await;
    let mut replies = Vec::new();
    let mut ticker = tokio::time::interval(pace);
    for chunk in audio.chunks(frame_bytes) {
        ticker.tick().await;
        ws.send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        replies.push(reply(ws).await);
    }
    send_text(ws, r#"{"eof" : 1}"#).await;
    let (rest, close) = read_until_close(ws, Duration::from_secs(20)).await;
    replies.extend(rest);
    Replies { replies, close }
}

/// `text` spoken at 16 kHz by a vosk client configured for that rate (see [`vosk_session`]).
async fn speak_16k(ws: &mut Socket, text: &str, frame_bytes: usize, pace: Duration) -> Replies {
    let audio = synth::encode(text, 16_000, synth::SynthEncoding::Linear16);
    let config = r#"{ "config" : { "sample_rate" : 16000 } }"#;
    vosk_session(ws, config, &audio, frame_bytes, pace).await
}

/// A live vosk client (frames of 0.2 s at real time, 16 kHz, words on): every frame is answered
/// with one partial or result, interims show the words as they come, results carry word times,
/// and all results together — the last one after eof — are exactly the words spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_client_gets_partials_and_exact_results() {
    let emulator = emulator(&[]);
    let gateway = vosk_gateway(&emulator, "");
    let bearer = format!("Bearer {KEY}");
    let mut ws = open(&url(&gateway, ""), &[("Authorization", &bearer)])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let frames = synth::encode(TEXT, 16_000, synth::SynthEncoding::Linear16)
        .chunks(6_400)
        .count();
    let session = speak_16k(&mut ws, TEXT, 6_400, Duration::from_millis(200)).await;
    let ctx = format!("{:#?}", session.replies);
    assert_eq!(
        session.replies.len(),
        frames + 1,
        "one reply per frame, then the last result; {ctx}"
    );
    for r in &session.replies[..frames] {
        assert!(
            r["partial"].is_string() || r["text"].is_string(),
            "a frame's reply is a partial or a result: {r}"
        );
    }
    assert_eq!(
        session.text(),
        synth::expected_words(TEXT).join(" "),
        "{ctx}"
    );
    let first_result = session.replies.iter().position(|r| r["text"].is_string());
    let first_partial = session
        .replies
        .iter()
        .position(|r| r["partial"].as_str().is_some_and(|p| !p.is_empty()));
    assert!(
        matches!((first_partial, first_result), (Some(p), Some(f)) if p < f),
        "partials come before the first result; {ctx}"
    );
    assert!(
        session.replies[..frames]
            .iter()
            .any(|r| r["text"].is_string()),
        "a live client gets results while it streams; {ctx}"
    );
    // Each result's words are its text, in order, in seconds.
    for r in session.replies.iter().filter(|r| r["text"].is_string()) {
        let words: Vec<&str> = r["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["word"].as_str())
            .collect();
        assert_eq!(words.join(" "), r["text"].as_str().unwrap_or(""), "{r}");
        for w in r["result"].as_array().into_iter().flatten() {
            let (start, end) = (w["start"].as_f64(), w["end"].as_f64());
            assert!(
                matches!((start, end), (Some(s), Some(e)) if e > s && e < 30.0),
                "{w}"
            );
            assert!(w["conf"].is_number(), "{w}");
        }
    }
    assert_eq!(session.close, Some((1000, String::new())), "{ctx}");
}

/// A file client as in vosk-server's `test.py` (the next frame as soon as the reply came, the key
/// in the URL, the server's default rate, `max_alternatives` and no words): one reply per frame,
/// the words exact in the `alternatives` form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_client_with_the_key_in_the_url_gets_alternatives() {
    let emulator = emulator(&[]);
    let gateway = vosk_gateway(&emulator, "");
    let mut ws = open(&url(&gateway, &format!("?key={KEY}")), &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let text = "file clients. send as fast as replies come";
    let audio = synth::encode(text, 8_000, synth::SynthEncoding::Linear16);
    let frames = audio.chunks(3_200).count();
    let session = vosk_session(
        &mut ws,
        r#"{"config" : { "max_alternatives" : 20, "words": false } }"#,
        &audio,
        3_200,
        Duration::from_millis(1),
    )
    .await;
    let ctx = format!("{:#?}", session.replies);
    assert_eq!(session.replies.len(), frames + 1, "{ctx}");
    let texts: Vec<&str> = session
        .replies
        .iter()
        .filter_map(|r| r["alternatives"][0]["text"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        texts.join(" "),
        synth::expected_words(text).join(" "),
        "{ctx}"
    );
    assert!(
        session
            .replies
            .iter()
            .all(|r| r["alternatives"][0].get("result").is_none()),
        "no words when words are off; {ctx}"
    );
    assert_eq!(session.close.map(|c| c.0), Some(1000), "{ctx}");
}

/// The documented refusals: a bad or missing key is HTTP 401; bad JSON is `{"error", "code":
/// "invalid_json"}` and 1007; a sample rate vosk cannot mean is `unsupported_sample_rate` and
/// 1003; eof without audio is vosk's empty result and 1000 — while a session beside them gets
/// its words exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_a_good_session_unaffected() {
    let emulator = emulator(&[]);
    let gateway = vosk_gateway(&emulator, "");
    let good = tokio::spawn({
        let url = url(&gateway, &format!("?key={KEY}&language=en-US"));
        async move {
            let mut ws = open(&url, &[]).await.unwrap_or_else(|e| panic!("{e:?}"));
            let text = "beside the refusals";
            let session = speak_16k(&mut ws, text, 3_200, Duration::from_millis(100)).await;
            assert_eq!(session.text(), synth::expected_words(text).join(" "));
            assert_eq!(session.close.map(|c| c.0), Some(1000));
        }
    });
    for (query, headers) in [
        (String::new(), vec![]),
        ("?key=wrong-key".to_string(), vec![]),
        (String::new(), vec![("Authorization", "Basic abc")]),
    ] {
        match open(&url(&gateway, &query), &headers).await {
            Err((status, text)) => assert_eq!(status, 401, "{query}: {text}"),
            Ok(_) => panic!("{query} {headers:?} accepted"),
        }
    }
    match open(&url(&gateway, &format!("?key={KEY}&language=e%20n")), &[]).await {
        Err((status, text)) => assert_eq!(status, 400, "{text}"),
        Ok(_) => panic!("a bad language was accepted"),
    }
    let keyed = url(&gateway, &format!("?key={KEY}"));
    for (sent, code, close) in [
        ("this is not json", "invalid_json", 1007),
        (
            r#"{"config": {"sample_rate": 12345.5}}"#,
            "unsupported_sample_rate",
            1003,
        ),
        (r#"{"hello": "vosk"}"#, "invalid_message", 1007),
    ] {
        let mut ws = open(&keyed, &[]).await.unwrap_or_else(|e| panic!("{e:?}"));
        send_text(&mut ws, sent).await;
        let (messages, closed) = read_until_close(&mut ws, Duration::from_secs(10)).await;
        assert_eq!(messages.len(), 1, "{sent}: {messages:?}");
        assert_eq!(messages[0]["code"], code, "{sent}: {messages:?}");
        assert!(messages[0]["error"].is_string(), "{messages:?}");
        assert_eq!(closed, Some((close, code.to_string())), "{sent}");
    }
    let mut ws = open(&keyed, &[]).await.unwrap_or_else(|e| panic!("{e:?}"));
    send_text(&mut ws, r#"{"eof" : 1}"#).await;
    let (messages, closed) = read_until_close(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(messages, [serde_json::json!({"text": ""})]);
    assert_eq!(closed.map(|c| c.0), Some(1000));
    good.await.unwrap_or_else(|e| panic!("good session: {e}"));
}

/// `[dialects.vosk] enabled = false`: the path is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_dialect_is_not_served() {
    let emulator = emulator(&[]);
    let gateway = vosk_gateway(&emulator, "[dialects.vosk]\nenabled = false");
    match open(&url(&gateway, &format!("?key={KEY}")), &[]).await {
        Err((status, _)) => assert_eq!(status, 404),
        Ok(mut ws) => {
            let next = ws.next().await;
            panic!("served while disabled: {next:?}")
        }
    }
}
