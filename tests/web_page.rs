//! The live transcription page (`GET /`) in a real headless Chromium against a real `voxgate
//! serve` on loopback with its default offline engine (Moonshine): Chromium's fake microphone
//! plays a LibriVox recording, the page streams it through its audio worklet, and its transcript
//! must show the recording's words. A second test stops the server mid-session and reads what the
//! page says; a third kills it mid-utterance and starts it again, and the page resumes the
//! session (`docs/protocol.md`, "Resume") with every word once. A server with API keys is used
//! through the documented backend step (`?token_url=`, a small backend started by the test that
//! mints a session token with its key), and a denied microphone is explained in words. Each test
//! saves a screenshot under `target/tmp/` as an artefact.

#![cfg(feature = "local")]

#[path = "web_page/cdp.rs"]
mod cdp;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdp::{Browser, Microphone};
use common::librivox::{self, word_error_rate};
use common::process::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The recording: "and mister john dashwood had then leisure to consider how much there might
/// be prudently in his power to do for them" (7.1 s).
const CLIP: &str = "sense_and_sensibility_01_austen_64kb-0870";
/// Silence before the speech (the page opens its worklet after the fake device starts playing)
/// and after it (so the engine hears the end of the utterance).
const LEAD_SILENCE_MS: u64 = 1_000;
const TAIL_SILENCE_MS: u64 = 2_500;
/// Word error rate the page's transcript may have: the engine's own is under 5 % on these clips
/// (`tests/moonshine_e2e.rs`); the browser's capture and resampling may cost a word or two.
const MAX_WORD_ERROR_RATE: f64 = 0.15;
/// What the page shows, for a failed wait.
const PAGE_STATE: &str = "JSON.stringify({state: document.body.dataset.state, \
     status: document.getElementById('status').textContent, \
     error: document.getElementById('error').textContent, \
     sent: document.getElementById('sent').textContent, \
     transcript: document.getElementById('transcript').textContent})";

/// The clip with silence around it, as a 16 kHz mono WAV file written for Chromium's fake
/// microphone; its reference words and speech length.
fn microphone_recording(test: &str) -> (PathBuf, Vec<String>, u64) {
    let clip = librivox::clips()
        .into_iter()
        .find(|c| c.id == CLIP)
        .unwrap_or_else(|| panic!("{CLIP} is not among the LibriVox clips"));
    let silence = |ms: u64| vec![0u8; (ms * 32) as usize];
    let mut pcm = silence(LEAD_SILENCE_MS);
    pcm.extend(clip.bytes());
    pcm.extend(silence(TAIL_SILENCE_MS));
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{CLIP}.wav"));
    std::fs::write(&path, wav_16k_mono(&pcm)).unwrap_or_else(|e| panic!("{e}"));
    let speech_ms = (clip.seconds() * 1000.0) as u64;
    (path, clip.reference, speech_ms)
}

fn wav_16k_mono(pcm: &[u8]) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    for field in [16u32, 1 | (1 << 16), 16_000, 32_000, 2 | (16 << 16)] {
        v.extend_from_slice(&field.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    v.extend_from_slice(pcm);
    v
}

/// `voxgate serve` on loopback with the default engine and `env`.
fn gateway(env: &[(&str, &str)]) -> Process {
    Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        env,
    )
}

fn artefact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Waits until `condition` holds in the page, at most `secs` seconds.
async fn wait(browser: &mut Browser, condition: &str, secs: u64) {
    browser
        .wait_for(condition, Duration::from_secs(secs), PAGE_STATE)
        .await;
}

/// Waits until the page shows an error, saves a screenshot and checks the error says `words`.
async fn shows_error(browser: &mut Browser, words: &str, screenshot: &str) {
    wait(browser, "document.body.dataset.state === 'error'", 20).await;
    browser.screenshot(&artefact(screenshot)).await;
    let error = browser
        .eval("document.getElementById('error').textContent")
        .await;
    assert!(error.as_str().is_some_and(|e| e.contains(words)), "{error}");
}

/// Opens the page and starts the microphone; returns once the server said `ready`.
async fn start_microphone(browser: &mut Browser) {
    wait(browser, "document.body.dataset.state === 'idle'", 20).await;
    browser.eval("document.getElementById('mic').click()").await;
    wait(browser, "document.body.dataset.state === 'streaming'", 20).await;
}

/// Waits until the whole recording was sent, stops the microphone, waits for the session's end
/// and checks it ended normally with the recording's words (within the engine's error rate);
/// what the page shows.
async fn finish_and_check(
    browser: &mut Browser,
    reference: &[String],
    speech_ms: u64,
    screenshot: &str,
) -> serde_json::Value {
    let heard_all = format!(
        "document.body.dataset.state === 'streaming' && \
         Number(document.getElementById('sent').dataset.ms || 0) >= {}",
        LEAD_SILENCE_MS + speech_ms + 1_000
    );
    let recording_secs = (LEAD_SILENCE_MS + speech_ms + TAIL_SILENCE_MS) / 1000;
    wait(browser, &heard_all, recording_secs + 30).await;
    browser.eval("document.getElementById('mic').click()").await;
    wait(
        browser,
        "['closed', 'error'].includes(document.body.dataset.state)",
        30,
    )
    .await;
    browser.screenshot(&artefact(screenshot)).await;
    let state = browser.eval(PAGE_STATE).await;
    let shown: serde_json::Value =
        serde_json::from_str(state.as_str().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(shown["state"], "closed", "{shown}");
    let heard = librivox::normalise(shown["transcript"].as_str().unwrap_or(""));
    let (errors, words, rate) = word_error_rate(&[(reference, &heard)]);
    println!("{screenshot}: page transcript {heard:?}; {errors} errors in {words} words");
    assert!(
        rate <= MAX_WORD_ERROR_RATE,
        "{errors} errors in {words} words: {heard:?}"
    );
    shown
}

/// The fake microphone's speech appears in the page's transcript, word for word within the
/// engine's accuracy; stopping ends the session cleanly.
#[tokio::test]
async fn the_page_transcribes_the_microphone() {
    let (wav, reference, speech_ms) = microphone_recording("mic");
    let server = gateway(&[]);
    let mut browser = Browser::open(
        "mic",
        &format!("http://{}/", server.addr),
        Microphone::Plays(&wav),
    )
    .await;
    start_microphone(&mut browser).await;
    let shown = finish_and_check(
        &mut browser,
        &reference,
        speech_ms,
        "web_page_transcript.png",
    )
    .await;
    assert!(
        shown["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Session ended")),
        "{shown}"
    );
    let latency = browser
        .eval("Number(document.getElementById('latency').dataset.ms)")
        .await;
    assert!(latency.as_f64().is_some_and(|ms| ms >= 0.0), "{latency}");
}

/// The server shuts down mid-session: the page says so, in words.
#[tokio::test]
async fn the_page_says_when_the_server_stops() {
    let (wav, _, _) = microphone_recording("stop");
    let server = gateway(&[("VOXGATE_SERVER__SHUTDOWN_GRACE_SECS", "0.5")]);
    let mut browser = Browser::open(
        "stop",
        &format!("http://{}/", server.addr),
        Microphone::Plays(&wav),
    )
    .await;
    start_microphone(&mut browser).await;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    shows_error(
        &mut browser,
        "The server is shutting down",
        "web_page_server_stopped.png",
    )
    .await;
}

/// The server is SIGKILLed mid-utterance and started again on the same address (sharing the
/// token secret): the page resumes the session by itself, re-sends the audio after the last
/// final, and the session ends normally with the recording's words, none twice.
#[tokio::test]
async fn the_page_resumes_after_the_server_is_killed() {
    const SECRET: &str = "web-page-resume-secret-0123456789ab";
    let (wav, reference, speech_ms) = microphone_recording("resume");
    let env = [("VOXGATE_AUTH__TOKEN_SECRET", SECRET)];
    let server = gateway(&env);
    let addr = server.addr.clone();
    let mut browser = Browser::open(
        "resume",
        &format!("http://{addr}/"),
        Microphone::Plays(&wav),
    )
    .await;
    start_microphone(&mut browser).await;
    let mid_speech = format!(
        "Number(document.getElementById('sent').dataset.ms || 0) >= {}",
        LEAD_SILENCE_MS + speech_ms / 2
    );
    wait(&mut browser, &mid_speech, 30).await;
    drop(server); // SIGKILL
    let _restarted = Process::start(&["serve", "--config", "/dev/null", "--listen", &addr], &env);
    finish_and_check(&mut browser, &reference, speech_ms, "web_page_resumed.png").await;
}

/// A server with API keys: the page has no credential of its own, so it POSTs to the backend
/// named by `?token_url=` (here a tiny one started by the test, on another origin, holding the
/// key and relaying to `POST /v1/tokens` as docs/clients.md shows), opens the session with the
/// short-lived token it gets, and transcribes as without keys.
#[tokio::test]
async fn the_page_gets_a_session_token_from_the_backend() {
    const KEY: &str = "web-page-backend-key-0123456789";
    let (wav, reference, speech_ms) = microphone_recording("token");
    let keys = common::api_keys_env(&[KEY]);
    let server = gateway(&[("VOXGATE_AUTH__API_KEYS", &keys)]);
    let gateway_addr: SocketAddr = server.addr.parse().unwrap_or_else(|e| panic!("{e}"));
    let page_origin = format!("http://{}", server.addr);
    let (backend, tokens_served) = token_backend(gateway_addr, KEY, page_origin).await;
    let url = format!(
        "http://{}/?token_url=http://{backend}/voxgate-token",
        server.addr
    );
    let mut browser = Browser::open("token", &url, Microphone::Plays(&wav)).await;
    start_microphone(&mut browser).await;
    finish_and_check(&mut browser, &reference, speech_ms, "web_page_token.png").await;
    assert_eq!(tokens_served.load(Ordering::SeqCst), 1);
}

/// The operator's backend step of docs/clients.md: answers `POST /voxgate-token` by asking
/// voxgate's `POST /v1/tokens` with the API key, with the CORS headers a page on another origin
/// needs. Returns its address and how many tokens it handed out.
async fn token_backend(
    gateway: SocketAddr,
    key: &'static str,
    page_origin: String,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.is_ok_and(|n| n == 1)
            {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let cors = format!(
                "Access-Control-Allow-Origin: {page_origin}\r\n\
                 Access-Control-Allow-Credentials: true\r\n"
            );
            let (status, body) = if head.starts_with("POST /voxgate-token ") {
                let (status, _, body) = common::http_request(
                    gateway,
                    "POST",
                    "/v1/tokens",
                    &format!("Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"),
                    r#"{"ttl_secs": 60}"#,
                )
                .await;
                if status == 200 {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                (status, body)
            } else {
                (404, String::new())
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{cors}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (addr, served)
}

/// The user denies the microphone: the page says so in words and opens no session.
#[tokio::test]
async fn the_page_explains_a_denied_microphone() {
    let server = gateway(&[]);
    let mut browser = Browser::open(
        "denied",
        &format!("http://{}/", server.addr),
        Microphone::Denied,
    )
    .await;
    wait(&mut browser, "document.body.dataset.state === 'idle'", 20).await;
    browser.eval("document.getElementById('mic').click()").await;
    shows_error(
        &mut browser,
        "Microphone access was denied",
        "web_page_microphone_denied.png",
    )
    .await;
    let status = browser
        .eval("document.getElementById('status').textContent")
        .await;
    assert_eq!(status, "Not connected.");
    let (_, metrics) = common::http_get(
        server.addr.parse().unwrap_or_else(|e| panic!("{e}")),
        "/metrics",
        "",
    )
    .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("voxgate_sessions_total") && l.ends_with(" 0")),
        "no session may have been opened:\n{metrics}"
    );
}
