//! The production Google path end to end, real processes on loopback: `voxgate serve` with
//! `[google] auth = "adc"`, `GOOGLE_APPLICATION_CREDENTIALS` pointing at a service-account key file
//! made at test time by `voxgate emulator make-credentials` (a fresh key pair), and `ca_file`
//! trusting a CA made at test time (rcgen); against `voxgate emulator --tls-cert … --tls-key …
//! --require-auth …`, which serves gRPC over TLS (ALPN h2), runs Google's JWT-bearer token
//! endpoint over HTTPS, and refuses calls without a valid token. Nothing is committed: keys and
//! certificates live in a temporary directory for the test's life.
//!
//! The one long test is the 45-second session across three token expiries (15 s tokens): the
//! emulator's tokens expire in real time, so it runs in real time, in parallel with the others.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::certs::{temp_dir, TestCa};
use common::process::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use voxgate_emulator::synth::{self, Encoded, SynthEncoding};

/// 100 ms of 16 kHz LINEAR16.
const CHUNK_BYTES: usize = 3_200;

/// Gateway settings that make streams turn over every few seconds (the emulator ends them at
/// 4 s), so that new streams keep needing tokens while the tokens expire.
const ROTATING: [(&str, &str); 4] = [
    ("VOXGATE_SUPERVISION__ROTATE_AFTER_SECS", "2.5"),
    ("VOXGATE_SUPERVISION__MAX_STREAM_SECS", "3.5"),
    ("VOXGATE_SUPERVISION__FORCE_FINAL_AFTER_SECS", "0"),
    ("VOXGATE_SUPERVISION__STANDBY_MAX_WAIT_SECS", "1.0"),
];

/// An emulator standing in for Google (TLS, OAuth) and what a gateway needs to reach it.
struct Rehearsal {
    dir: PathBuf,
    emulator: Process,
    /// `https://127.0.0.1:PORT/token`, printed by the emulator.
    token_url: String,
    /// The test CA's certificate (PEM): the gateway's `[google] ca_file`.
    ca_file: PathBuf,
    /// The key file of the account the emulator accepts.
    account_json: String,
}

impl Rehearsal {
    /// The emulator with a certificate from a fresh CA, accepting a fresh account, with `flags`.
    fn start(flags: &[&str]) -> Rehearsal {
        Rehearsal::start_logged(flags, Stdio::inherit())
    }

    fn start_logged(flags: &[&str], stderr: Stdio) -> Rehearsal {
        let dir = temp_dir("google-auth");
        let ca = TestCa::new("voxgate test CA");
        let (cert, key) = ca.server_cert().write_to(&dir);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, pem_certificate(ca.der().as_ref())).expect("write ca.pem");
        // The emulator takes its own URL as the audience too; the gateway's copy names it.
        let account_json = make_credentials("https://127.0.0.1/token");
        let account = dir.join("account.json");
        std::fs::write(&account, &account_json).expect("write account.json");
        let path = |p: &Path| p.display().to_string();
        let (cert, key, account) = (path(&cert), path(&key), path(&account));
        let mut args = vec![
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--require-auth",
            &account,
            "--token-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(flags);
        let emulator = Process::start_with_stderr(&args, &[], stderr);
        let token_url = emulator
            .preamble
            .iter()
            .find_map(|l| l.strip_prefix("token endpoint "))
            .unwrap_or_else(|| panic!("no token endpoint line: {:?}", emulator.preamble))
            .to_string();
        Rehearsal {
            dir,
            emulator,
            token_url,
            ca_file,
            account_json,
        }
    }

    /// Writes `key_json` with its `token_uri` set to the emulator's token endpoint; its path.
    fn key_file(&self, key_json: &str, name: &str) -> PathBuf {
        let mut key: Value = serde_json::from_str(key_json).expect("key file is JSON");
        key["token_uri"] = Value::String(self.token_url.clone());
        let path = self.dir.join(name);
        std::fs::write(&path, key.to_string()).expect("write key file");
        path
    }

    /// The gateway's environment: Google at the emulator over TLS, ADC from `key`, `ca_file`
    /// (when `trusted`), then `extra`.
    fn gateway_env(
        &self,
        key: &Path,
        trusted: bool,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("VOXGATE_GOOGLE__AUTH", "adc".to_string()),
            (
                "VOXGATE_GOOGLE__ENDPOINT",
                format!("https://{}", self.emulator.addr),
            ),
            ("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if trusted {
            let ca = self.ca_file.display().to_string();
            env.push(("VOXGATE_GOOGLE__CA_FILE".into(), ca));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// `voxgate serve` reaching the emulator as it would reach Google.
    fn gateway(&self, key: &Path, trusted: bool, extra: &[(&str, &str)]) -> Process {
        let env = self.gateway_env(key, trusted, extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        gateway(&self.emulator, &env)
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `voxgate emulator make-credentials --token-uri URL`'s output: a key file with a fresh key.
fn make_credentials(token_uri: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["emulator", "make-credentials", "--token-uri", token_uri])
        .output()
        .expect("run make-credentials");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("key file is UTF-8")
}

fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// At least `secs` seconds of synthetic speech: utterances of words the emulator recognises
/// exactly, numbered so that a lost or repeated one shows.
fn speech(secs: usize) -> Encoded {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut text = String::new();
    for n in 0.. {
        let e = synth::encode_with_timeline(&text, 16_000, SynthEncoding::Linear16);
        if e.audio.len() >= secs * 10 * CHUNK_BYTES {
            return e;
        }
        let (a, b) = (WORDS[n % 8], WORDS[(n * 3 + 1) % 8]);
        text.push_str(&format!("{a} {b} {n}. "));
    }
    unreachable!("the loop returns")
}

fn expected_text(encoded: &Encoded) -> String {
    let words: Vec<&str> = encoded.words.iter().map(|w| w.word.as_str()).collect();
    words.join(" ")
}

/// Streams `audio` at real time in 100 ms chunks, then `stop`; everything received, and whether
/// the server ended the session before all the audio was sent.
async fn talk(addr: &str, audio: &[u8]) -> (Received, bool) {
    let (mut sink, reader) = start_live_session(addr, Duration::from_secs(30)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut cut_short = false;
    for chunk in audio.chunks(CHUNK_BYTES) {
        ticker.tick().await;
        let sent = sink.send(Message::Binary(chunk.to_vec().into())).await;
        if sent.is_err() {
            cut_short = true;
            break;
        }
    }
    let _ = sink
        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
        .await;
    let received = reader.await.unwrap_or_else(|e| panic!("reader: {e}"));
    (received, cut_short)
}

/// The session came back exact: every word once, in order, no error, no warning, closed cleanly.
fn assert_exact(rx: &Received, expected: &Encoded, label: &str) {
    assert!(
        rx.of_type("error").is_empty(),
        "{label}: {:?}",
        rx.of_type("error")
    );
    assert!(
        rx.of_type("warning").is_empty(),
        "{label}: {:?}",
        rx.of_type("warning")
    );
    assert_eq!(rx.final_text(), expected_text(expected), "{label}");
    assert_eq!(rx.close.as_ref().map(|c| c.0), Some(1000), "{label}");
}

/// The only error of a session, which must be `upstream_rejected`; its message.
fn rejection(rx: &Received) -> String {
    let errors = rx.of_type("error");
    assert_eq!(errors.len(), 1, "{:?}", rx.messages);
    assert_eq!(errors[0]["code"], "upstream_rejected", "{:?}", errors[0]);
    assert_eq!(
        rx.close,
        Some((1011, "upstream_rejected".to_string())),
        "{:?}",
        rx.messages
    );
    errors[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// 45 seconds of speech through streams that turn over every few seconds, with tokens that live
/// 15 s: every new stream finds a valid token (refreshed ahead of expiry, never refused), so the
/// transcript is exact and the client hears of nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_outlives_three_token_expiries() {
    let google = Rehearsal::start(&["--token-ttl-secs", "15", "--stream-limit-secs", "4"]);
    let key = google.key_file(&google.account_json, "gateway.json");
    let gateway = google.gateway(&key, true, &ROTATING);
    let expected = speech(45);
    let (rx, _) = talk(&gateway.addr, &expected.audio).await;
    assert_exact(&rx, &expected, "45 s session");
    let fetches = metric(&gateway.addr, "voxgate_google_token_fetches_total").await;
    assert!((4.0..=6.0).contains(&fetches), "{fetches} token fetches");
    let restarts = metric(&gateway.addr, "voxgate_stream_restarts_total").await;
    assert_eq!(restarts, 0.0, "no stream was refused its token");
}

/// Sessions starting together wait for one token fetch and share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_one_token_fetch() {
    let google = Rehearsal::start(&[]);
    let key = google.key_file(&google.account_json, "gateway.json");
    let gateway = google.gateway(&key, true, &[]);
    let expected = speech(3);
    let sessions: Vec<_> = (0..16)
        .map(|_| {
            let (addr, audio) = (gateway.addr.clone(), expected.audio.clone());
            tokio::spawn(async move { talk(&addr, &audio).await })
        })
        .collect();
    for (i, session) in sessions.into_iter().enumerate() {
        let (rx, _) = session.await.expect("session task");
        assert_exact(&rx, &expected, &format!("session {i}"));
    }
    let fetches = metric(&gateway.addr, "voxgate_google_token_fetches_total").await;
    assert_eq!(fetches, 1.0);
}

/// A key the emulator does not know (another key pair for the account): the token endpoint
/// refuses its assertion as Google does, and the client gets `upstream_rejected` with
/// UNAUTHENTICATED and Google's reason at once, not after its audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_emulator_does_not_accept_is_rejected_at_once() {
    let google = Rehearsal::start(&[]);
    let stranger = make_credentials("https://127.0.0.1/token");
    let key = google.key_file(&stranger, "stranger.json");
    let gateway = google.gateway(&key, true, &[]);
    let expected = speech(10);
    let started = Instant::now();
    let (rx, cut_short) = talk(&gateway.addr, &expected.audio).await;
    let message = rejection(&rx);
    assert!(
        message.starts_with("UNAUTHENTICATED: ") && message.contains("Invalid JWT Signature."),
        "{message}"
    );
    assert!(cut_short && started.elapsed() < Duration::from_secs(5));
}

/// The token endpoint answers 503 for the first 2 s: streams wait by the restart policy (the
/// client is told it is reconnecting), then get a token, and no word is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_wait_out_a_token_endpoint_outage() {
    let google = Rehearsal::start(&["--token-unavailable-secs", "2"]);
    let key = google.key_file(&google.account_json, "gateway.json");
    let gateway = google.gateway(&key, true, &[]);
    let expected = speech(6);
    let (rx, _) = talk(&gateway.addr, &expected.audio).await;
    assert!(rx.of_type("error").is_empty(), "{:?}", rx.of_type("error"));
    assert_eq!(rx.final_text(), expected_text(&expected));
    let restarts = metric(&gateway.addr, "voxgate_stream_restarts_total").await;
    assert!(
        restarts >= 1.0,
        "the outage was waited out ({restarts} restarts)"
    );
    assert_eq!(
        metric(&gateway.addr, "voxgate_google_token_fetches_total").await,
        1.0
    );
}

/// Without `ca_file` the emulator's certificate chains to no trusted root: the client gets a
/// clear, non-retryable error naming the certificate and the setting, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_clear_error() {
    let google = Rehearsal::start(&[]);
    let key = google.key_file(&google.account_json, "gateway.json");
    let gateway = google.gateway(&key, false, &[]);
    let expected = speech(10);
    let (rx, cut_short) = talk(&gateway.addr, &expected.audio).await;
    let message = rejection(&rx);
    assert!(
        message.starts_with("FAILED_PRECONDITION: certificate not trusted")
            && message.contains("UnknownIssuer")
            && message.contains("ca_file"),
        "{message}"
    );
    assert!(cut_short);
}

/// Runs `command` (a `voxgate serve` that must refuse to start) to its end; its output. Waited
/// for on a thread, so that a gateway that does not stop fails the test.
fn exits_at_start(mut command: Command) -> std::process::Output {
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(command.output());
    });
    exited
        .recv_timeout(Duration::from_secs(10))
        .expect("the gateway stops")
        .expect("run voxgate")
}

/// Credentials that cannot be used stop the gateway at start-up with an error naming them.
#[test]
fn unusable_credentials_stop_the_gateway_at_start() {
    let dir = temp_dir("google-auth-start");
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "-----BEGIN PRIVATE KEY-----\n").expect("write");
    let missing = dir.join("missing.json");
    for (path, reason) in [(&missing, "cannot read"), (&not_json, "not valid JSON")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_voxgate"));
        command
            .args(["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"])
            .env("VOXGATE_RECOGNIZER__BACKEND", "google")
            .env("GOOGLE_APPLICATION_CREDENTIALS", path);
        let output = exits_at_start(command);
        let (status, stderr) = (output.status, String::from_utf8_lossy(&output.stderr));
        assert!(!status.success());
        let named = format!("GOOGLE_APPLICATION_CREDENTIALS={}", path.display());
        assert!(
            stderr.contains(&named) && stderr.contains(reason),
            "{stderr}"
        );
        assert!(!stderr.contains("BEGIN PRIVATE KEY"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Neither process logs the private key, the signed assertion or an access token, even at the
/// most verbose level, across a session, a refusal and token refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_logged() {
    let logs = temp_dir("google-auth-logs");
    let log = |name: &str| {
        let file = std::fs::File::create(logs.join(name)).expect("log file");
        Stdio::from(file)
    };
    let google = Rehearsal::start_logged(&["--token-ttl-secs", "4"], log("emulator.log"));
    let key = google.key_file(&google.account_json, "gateway.json");
    let mut env = google.gateway_env(&key, true, &ROTATING);
    env.push(("RUST_LOG".into(), "trace".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = vec![
        ("VOXGATE_RECOGNIZER__BACKEND", "google"),
        ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9"),
    ];
    all.extend_from_slice(&env);
    let gateway = Process::start_with_stderr(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &all,
        log("gateway.log"),
    );
    let expected = speech(8);
    let (rx, _) = talk(&gateway.addr, &expected.audio).await;
    assert_exact(&rx, &expected, "logged session");
    assert!(metric(&gateway.addr, "voxgate_google_token_fetches_total").await >= 2.0);
    let account_json = google.account_json.clone();
    drop(gateway);
    drop(google);
    let private_key: Value = serde_json::from_str(&account_json).expect("JSON");
    let private_key = private_key["private_key"].as_str().unwrap_or_default();
    // Every 40-character piece of the key's base64 body.
    let key_pieces: Vec<&str> = private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.as_bytes().chunks(40))
        .filter_map(|c| std::str::from_utf8(c).ok())
        .filter(|c| c.len() == 40)
        .collect();
    assert!(key_pieces.len() > 10);
    for name in ["gateway.log", "emulator.log"] {
        let text = std::fs::read_to_string(logs.join(name)).expect("read log");
        assert!(!text.contains("ya29."), "{name} shows an access token");
        // The base64 of `{"alg":"RS256"`: the start of every assertion.
        assert!(
            !text.contains("eyJhbGciOiJSUzI1NiIs"),
            "{name} shows an assertion"
        );
        for piece in &key_pieces {
            assert!(!text.contains(piece), "{name} shows the private key");
        }
    }
    let gateway_log = std::fs::read_to_string(logs.join("gateway.log")).unwrap_or_default();
    assert!(
        gateway_log.len() > 10_000,
        "the gateway logged at trace level"
    );
    let _ = std::fs::remove_dir_all(&logs);
}

/// Speech v2 without `[google] project`: the project comes from the key file's `project_id`
/// (the session is transcribed exactly), and a key file that names none stops the gateway at
/// start-up with an error naming `google.project`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_v2_takes_the_project_from_the_key_file() {
    let google = Rehearsal::start(&[]);
    let v2 = [("VOXGATE_GOOGLE__API", "v2")];
    let key = google.key_file(&google.account_json, "gateway.json");
    let gateway = google.gateway(&key, true, &v2);
    let expected = speech(3);
    let (rx, _) = talk(&gateway.addr, &expected.audio).await;
    assert_exact(&rx, &expected, "v2 session, project from the key file");

    let mut nameless: Value = serde_json::from_str(&google.account_json).expect("key file is JSON");
    if let Some(fields) = nameless.as_object_mut() {
        fields.remove("project_id");
    }
    let nameless = google.key_file(&nameless.to_string(), "no-project.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_voxgate"));
    command
        .args(["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"])
        .env("VOXGATE_RECOGNIZER__BACKEND", "google")
        .envs(google.gateway_env(&nameless, true, &v2));
    let output = exits_at_start(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("google.project"), "{stderr}");
}
