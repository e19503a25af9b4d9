//! End to end, real processes on loopback: resuming a session after the client's connection
//! dropped (issue #15, `docs/protocol.md` "Resume"). A client streams emulator-encoded speech in
//! real time through `voxgate serve` into `voxgate emulator`, loses its connection for 5 s (in the
//! middle of an utterance, or between two), keeps "recording" meanwhile, reconnects with the newest
//! resume token it got, re-sends its audio from the end of the last final it received and carries
//! on: every word must arrive exactly once, on one session clock, under one session id, with the
//! result numbering continued — on the same instance, on a second instance sharing the token
//! secret, and on an instance SIGKILLed and started again. Refusals (expired, forged, another key,
//! malformed) have their codes; resuming twice with one token is allowed (documented).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{emulator, Process};
use common::{connect_with, Client, Event, WAIT};
use serde_json::{json, Value};
use voxgate_actors::protocol::ErrorCode;
use voxgate_emulator::synth::{self, SynthEncoding};

const TEXT: &str = "alpha bravo charlie. delta echo foxtrot golf. hotel india juliet. kilo lima \
                    mike november. oscar papa quebec. romeo sierra tango uniform. victor whiskey \
                    xray";
const SECRET: &str = "resume-e2e-secret-0123456789abcdef";
const KEY_A: &str = "resume-e2e-key-a-0123456789";
const KEY_B: &str = "resume-e2e-key-b-0123456789";
/// LINEAR16 at 16 kHz.
const BYTES_PER_MS: usize = 32;
/// How long the client's connection is down.
const OUTAGE: Duration = Duration::from_secs(5);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `voxgate serve` with keys A and B, the shared token secret and `extra` settings.
fn keyed_gateway(emulator: &Process, extra: &[(&str, &str)]) -> Process {
    keyed_gateway_at(emulator, "127.0.0.1:0", extra)
}

/// [`keyed_gateway`] listening on `listen`.
fn keyed_gateway_at(emulator: &Process, listen: &str, extra: &[(&str, &str)]) -> Process {
    let keys = format!(
        "[\"sha256:{}\",\"sha256:{}\"]",
        hex(&common::key_hash_entry(KEY_A).0),
        hex(&common::key_hash_entry(KEY_B).0)
    );
    let mut env = vec![
        ("VOXGATE_AUTH__API_KEYS", keys.as_str()),
        ("VOXGATE_AUTH__TOKEN_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    let endpoint = format!("http://{}", emulator.addr);
    env.extend_from_slice(&[
        ("VOXGATE_RECOGNIZER__BACKEND", "google"),
        ("VOXGATE_GOOGLE__AUTH", "none"),
        ("VOXGATE_GOOGLE__ENDPOINT", endpoint.as_str()),
    ]);
    Process::start(
        &["serve", "--config", "/dev/null", "--listen", listen],
        &env,
    )
}

async fn open(addr: &str, key: &str) -> Client {
    let bearer = format!("Bearer {key}");
    match connect_with(
        &format!("ws://{addr}/v1/listen"),
        &[("authorization", &bearer)],
        None,
    )
    .await
    {
        Ok((client, _)) => client,
        Err(refused) => panic!("upgrade refused: {refused:?}"),
    }
}

/// The speaker: audio that goes on in real time from `t0`, whether or not it is connected.
struct Speaker {
    audio: Vec<u8>,
    t0: Instant,
}

impl Speaker {
    fn new() -> Speaker {
        Speaker {
            audio: synth::encode(TEXT, 16_000, SynthEncoding::Linear16),
            t0: Instant::now(),
        }
    }

    fn audio_ms(&self) -> u64 {
        (self.audio.len() / BYTES_PER_MS) as u64
    }

    /// How much audio has been spoken by now.
    fn live_ms(&self) -> u64 {
        (self.t0.elapsed().as_millis() as u64).min(self.audio_ms())
    }

    /// Where, in ms, the `word`th word (0-based) is half spoken.
    fn mid_word_ms(&self, word: usize) -> u64 {
        let timeline = synth::encode_with_timeline(TEXT, 16_000, SynthEncoding::Linear16);
        let span = &timeline.words[word];
        (span.start_sample + span.end_sample) / 2 / 16
    }
}

/// What the client knows of its session across connections.
#[derive(Default)]
struct ClientState {
    session_id: String,
    /// Every final received, in order, over every connection.
    finals: Vec<Value>,
    /// The newest resume token received (`ready`, finals, acks).
    token: Option<String>,
    /// End of the last final received.
    final_ms: u64,
    /// Audio sent so far on the session clock (where the next audio starts).
    sent_ms: u64,
    closed: Option<Value>,
    close: Option<(u16, String)>,
}

impl ClientState {
    fn take(&mut self, message: &Value) {
        if let Some(token) = message["resume_token"].as_str() {
            self.token = Some(token.to_string());
        }
        match message["type"].as_str() {
            Some("ready") => {
                self.session_id = message["session_id"].as_str().unwrap_or_default().into()
            }
            Some("transcript") if message["is_final"] == true => {
                self.final_ms = message["end_ms"].as_u64().unwrap_or(0);
                self.finals.push(message.clone());
            }
            Some("ack") => assert!(
                message["final_ms"].as_u64() == Some(self.final_ms),
                "an ack says how far the server has finalised: {message}, last final at {}",
                self.final_ms
            ),
            Some("closed") => self.closed = Some(message.clone()),
            Some("error") => panic!("the session failed: {message}"),
            _ => {}
        }
    }

    fn token(&self) -> String {
        self.token
            .clone()
            .unwrap_or_else(|| panic!("no resume token received"))
    }
}

/// When a connection ends.
#[derive(Clone, Copy)]
enum Until {
    /// The connection drops (no Close) once the speaker has spoken this far.
    DropAtMs(u64),
    /// The same, half-way through the `n`th word (0-based) of the text.
    DropMidWord(usize),
    /// The connection drops as soon as this many finals have been received.
    DropAfterFinals(usize),
    /// The speaker finishes: `stop`, then `closed` and the Close.
    End,
}

/// Sends the audio spoken but not yet sent every 100 ms (after a reconnection, the whole backlog
/// at once), reading the server's messages meanwhile, until `until`.
async fn stream(mut client: Client, speaker: &Speaker, state: &mut ClientState, until: Until) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut stopped = false;
    loop {
        if let Until::DropAfterFinals(n) = until {
            if state.finals.len() >= n {
                return; // dropping the client closes the socket without a Close frame
            }
        }
        tokio::select! {
            _ = ticker.tick() => {
                let live = speaker.live_ms();
                if let Until::DropAtMs(at) = until {
                    if live >= at {
                        return;
                    }
                }
                let (from, to) = (state.sent_ms as usize * BYTES_PER_MS, live as usize * BYTES_PER_MS);
                for chunk in speaker.audio[from.min(to)..to].chunks(3_200) {
                    client.send_binary(chunk).await;
                }
                state.sent_ms = state.sent_ms.max(live);
                if live == speaker.audio_ms() && !stopped && matches!(until, Until::End) {
                    client.send_json(&json!({"type":"stop"})).await;
                    stopped = true;
                }
            }
            event = client.next_event(Duration::from_secs(30)) => match event {
                Event::Json(message) => state.take(&message),
                Event::Ping | Event::Binary(_) => {}
                Event::Close(close) => {
                    state.close = close;
                    return;
                }
                other => panic!("the connection ended unexpectedly: {other:?}"),
            }
        }
    }
}

/// Opens a session with key A on `addr`.
async fn start(addr: &str, state: &mut ClientState) -> Client {
    let mut client = open(addr, KEY_A).await;
    client
        .send_json(&json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000}))
        .await;
    let ready = client.expect_type("ready").await;
    state.take(&ready);
    assert!(
        state.token.is_some(),
        "ready carries a resume token: {ready}"
    );
    client
}

/// Resumes on `addr` from the end of the last final received; the audio restarts there.
async fn resume(addr: &str, key: &str, state: &mut ClientState) -> Client {
    let mut client = open(addr, key).await;
    let session_id = state.session_id.clone();
    let resume = json!({"type":"start","resume":{"token":state.token(),"from_ms":state.final_ms}});
    client.send_json(&resume).await;
    let ready = loop {
        match client.next_event(WAIT).await {
            Event::Json(message) => break message,
            Event::Ping => continue,
            other => panic!("expected ready, got {other:?}"),
        }
    };
    assert_eq!(ready["type"], "ready", "{ready}");
    state.take(&ready);
    assert_eq!(state.session_id, session_id, "the same session goes on");
    state.sent_ms = state.final_ms;
    client
}

/// Every word exactly once, in order, on one session clock; `closed` counts every final.
fn check_whole(state: &ClientState, speaker: &Speaker) {
    let finals: Vec<&str> = state
        .finals
        .iter()
        .filter_map(|f| f["transcript"].as_str())
        .collect();
    let context = format!("{:#?}", state.finals);
    assert_eq!(
        finals.join(" "),
        synth::expected_words(TEXT).join(" "),
        "{context}"
    );
    let mut last_end = 0;
    for f in &state.finals {
        let (start, end) = (f["start_ms"].as_u64(), f["end_ms"].as_u64());
        let (Some(start), Some(end)) = (start, end) else {
            panic!("a final without times: {f}");
        };
        assert!(start >= last_end && end > start, "{f} after {last_end}");
        last_end = end;
    }
    let closed = state.closed.as_ref().unwrap_or_else(|| panic!("no closed"));
    assert_eq!(closed["session_id"], state.session_id.as_str());
    assert_eq!(closed["results"], state.finals.len() as u64, "{closed}");
    let audio_ms = closed["audio_ms"].as_u64().unwrap_or(0);
    assert!(audio_ms.abs_diff(speaker.audio_ms()) <= 1, "{closed}");
    assert_eq!(state.close.as_ref().map(|c| c.0), Some(1000));
}

/// A session started on `first`, its connection dropped at `until`, away for the outage, resumed
/// on `second` and streamed to the end: every word exactly once.
async fn drop_and_resume(first: &str, second: &str, until: Until) {
    let speaker = Speaker::new();
    let mut state = ClientState::default();
    let client = start(first, &mut state).await;
    let until = match until {
        Until::DropMidWord(word) => Until::DropAtMs(speaker.mid_word_ms(word)),
        other => other,
    };
    stream(client, &speaker, &mut state, until).await;
    assert!(!state.finals.is_empty(), "finals came before the drop");
    tokio::time::sleep(OUTAGE).await; // the outage itself: nothing to wait for but time
    let client = resume(second, KEY_A, &mut state).await;
    stream(client, &speaker, &mut state, Until::End).await;
    check_whole(&state, &speaker);
}

/// The connection drops for 5 s in the middle of a word of the third utterance ("india"); the
/// client resumes on the same instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_mid_utterance_resumes_with_every_word_once() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[]);
    drop_and_resume(&gateway.addr, &gateway.addr, Until::DropMidWord(8)).await;
}

/// The connection drops in the pause after the second utterance's final; the client resumes on
/// another instance that shares the token secret (no shared store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_between_utterances_resumes_on_a_second_instance() {
    let emulator = emulator(&[]);
    let first = keyed_gateway(&emulator, &[]);
    let second = keyed_gateway(&emulator, &[]);
    drop_and_resume(&first.addr, &second.addr, Until::DropAfterFinals(2)).await;
}

/// The instance is SIGKILLed while the client is away and started again: the client resumes on
/// the new process and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_between_drop_and_resume_loses_nothing() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[]);
    let speaker = Speaker::new();
    let mut state = ClientState::default();
    let client = start(&gateway.addr, &mut state).await;
    stream(
        client,
        &speaker,
        &mut state,
        Until::DropAtMs(speaker.mid_word_ms(12)),
    )
    .await;
    drop(gateway); // SIGKILL, and waits for the process to be gone
    let started = Instant::now();
    let restarted = keyed_gateway(&emulator, &[]);
    tokio::time::sleep(OUTAGE.saturating_sub(started.elapsed())).await;
    let client = resume(&restarted.addr, KEY_A, &mut state).await;
    stream(client, &speaker, &mut state, Until::End).await;
    check_whole(&state, &speaker);
}

/// Resuming twice with one token is allowed within the window (the token carries state, not a
/// connection): a client whose first resume was lost resumes again from the same point, and the
/// words after it come once on the connection that finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_resumes_twice_as_documented() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[]);
    let speaker = Speaker::new();
    let mut state = ClientState::default();
    let client = start(&gateway.addr, &mut state).await;
    stream(client, &speaker, &mut state, Until::DropAfterFinals(1)).await;
    let token = state.token();
    let kept = (state.finals.len(), state.final_ms);
    // The first resume: ready arrives, then this connection is lost too before any final.
    let first = resume(&gateway.addr, KEY_A, &mut state).await;
    drop(first);
    assert_eq!((state.finals.len(), state.final_ms), kept);
    state.token = Some(token);
    let client = resume(&gateway.addr, KEY_A, &mut state).await;
    stream(client, &speaker, &mut state, Until::End).await;
    check_whole(&state, &speaker);
}

/// A refused resume: the error with its code, then the Close.
async fn refused(addr: &str, key: &str, token: &str, code: ErrorCode) {
    let mut client = open(addr, key).await;
    client
        .send_json(&json!({"type":"start","resume":{"token":token}}))
        .await;
    client.expect_error(code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_forged_other_key_and_malformed_tokens_are_refused_with_their_codes() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[]);
    let mut state = ClientState::default();
    drop(start(&gateway.addr, &mut state).await);
    let token = state.token();
    // Forged: one character of the payload changed (the MAC no longer matches).
    let mut forged: Vec<char> = token.chars().collect();
    forged[10] = if forged[10] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    refused(&gateway.addr, KEY_A, &forged, ErrorCode::ResumeForged).await;
    refused(&gateway.addr, KEY_B, &token, ErrorCode::ResumeOtherKey).await;
    refused(&gateway.addr, KEY_A, "vg1.nope", ErrorCode::ResumeMalformed).await;
    // A session token (same secret, same form) is no resume token.
    let addr = gateway.addr.parse().unwrap_or_else(|e| panic!("{e}"));
    let auth = format!("Authorization: Bearer {KEY_A}\r\n");
    let (status, _, body) = common::http_request(addr, "POST", "/v1/tokens", &auth, "").await;
    assert_eq!(status, 200, "{body}");
    let minted: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let session_token = minted["token"].as_str().unwrap_or_default();
    assert!(session_token.starts_with("vg1."), "{body}");
    refused(&gateway.addr, KEY_A, session_token, ErrorCode::ResumeForged).await;

    // A window of 1 s (tokens are valid to the second): 2 s later the token has expired.
    let short = keyed_gateway(&emulator, &[("VOXGATE_SESSION__RESUME_WINDOW_SECS", "1")]);
    let mut state = ClientState::default();
    drop(start(&short.addr, &mut state).await);
    tokio::time::sleep(Duration::from_secs(2)).await; // the expiry itself: only time passes
    refused(&short.addr, KEY_A, &state.token(), ErrorCode::ResumeExpired).await;
}

/// With `resume_window_secs = 0` no token is issued and a resume is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_off_issues_no_token_and_refuses() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[("VOXGATE_SESSION__RESUME_WINDOW_SECS", "0")]);
    let mut client = open(&gateway.addr, KEY_A).await;
    client
        .send_json(&json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000}))
        .await;
    let ready = client.expect_type("ready").await;
    assert_eq!(ready.get("resume_token"), None, "{ready}");
    refused(
        &gateway.addr,
        KEY_A,
        "vg1.a.b",
        ErrorCode::ResumeUnavailable,
    )
    .await;
}

/// `voxgate stream` resumes by itself: the gateway is SIGKILLed after the first final and started
/// again on the same address; the client reconnects, resumes, and every word comes exactly once.
#[test]
fn voxgate_stream_resumes_by_itself_across_a_server_restart() {
    let emulator = emulator(&[]);
    let gateway = keyed_gateway(&emulator, &[]);
    let addr = gateway.addr.clone();
    let audio = synth::encode(TEXT, 16_000, SynthEncoding::Linear16);
    let file = std::env::temp_dir().join(format!("voxgate-resume-{}.raw", std::process::id()));
    std::fs::write(&file, &audio).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("ws://{addr}/v1/listen");
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["stream", "--json", "--url", &url, "--api-key", KEY_A])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run voxgate stream: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut messages = Vec::new();
    // Until the first final: then the server dies under the client.
    for line in lines.by_ref() {
        let message: Value = serde_json::from_str(&line.unwrap_or_default()).unwrap_or(Value::Null);
        let is_final = message["is_final"] == true;
        messages.push(message);
        if is_final {
            break;
        }
    }
    drop(gateway); // SIGKILL
    let _restarted = keyed_gateway_at(&emulator, &addr, &[]);
    for line in lines {
        messages.push(serde_json::from_str(&line.unwrap_or_default()).unwrap_or(Value::Null));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("voxgate stream: {e}"));
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming the session"), "{stderr}");
    let finals: Vec<&str> = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .filter_map(|m| m["transcript"].as_str())
        .collect();
    assert_eq!(
        finals.join(" "),
        synth::expected_words(TEXT).join(" "),
        "{messages:#?}"
    );
    let readies = messages.iter().filter(|m| m["type"] == "ready").count();
    assert_eq!(readies, 2, "one session, two connections: {messages:#?}");
}
