//! What the dialect tests share: a gateway process with an API key and a configuration file of
//! their own, the vendors' official SDKs run as Python scripts from `tests/sdk/` (in the venv
//! `scripts/setup-test-env.sh` makes), and a raw WebSocket client that sends headers and
//! subprotocols as an SDK would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::process::Process;

/// The API key every dialect test's gateway accepts.
pub const KEY: &str = "dialect-key-0123456789";

/// The Python of the SDK venv (`VOXGATE_SDK_PYTHON` overrides it).
pub fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("VOXGATE_SDK_PYTHON") {
        return PathBuf::from(python);
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-test-env.sh (it installs the vendor SDKs)",
        python.display()
    );
    python
}

/// Runs `tests/sdk/SCRIPT ARGS…` with the SDK venv; every line it prints is one JSON event.
pub async fn run_sdk_script(script: &str, args: Vec<String>) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let python = sdk_python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the SDK script: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("SDK script task: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}): {stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{script} printed `{line}` ({e}); stderr: {stderr}"))
        })
        .collect()
}

/// A gateway process whose only key is [`KEY`], with `extra_toml` appended to its configuration
/// (dialect sections cannot be set from the environment) and `env` settings on top.
pub fn gateway_with(extra_toml: &str, env: &[(&str, &str)]) -> Process {
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let toml = format!("[auth]\napi_keys = [\"sha256:{hash}\"]\n{extra_toml}\n");
    let path = temp_file("toml", toml.as_bytes());
    let mut all = vec![
        ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9"),
        ("VOXGATE_SERVER__CONNECTION_BURST_PER_IP", "1000000"),
        ("VOXGATE_SESSION__MAX_SESSIONS_PER_IP", "1000000"),
    ];
    all.extend_from_slice(env);
    Process::start(
        &["serve", "--config", &path, "--listen", "127.0.0.1:0"],
        &all,
    )
}

/// The settings that point a gateway at an emulator process.
pub fn emulator_env(emulator: &Process) -> Vec<(&'static str, String)> {
    vec![
        ("VOXGATE_RECOGNIZER__BACKEND", "google".to_string()),
        ("VOXGATE_GOOGLE__AUTH", "none".to_string()),
        (
            "VOXGATE_GOOGLE__ENDPOINT",
            format!("http://{}", emulator.addr),
        ),
    ]
}

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `url` with extra request headers (`Authorization`, `Sec-WebSocket-Protocol`, …).
/// `Err`: the HTTP status of a refused upgrade, its headers and body.
pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, String)> {
    let mut request = url
        .into_client_request()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        if let Ok(name) =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
        {
            request.headers_mut().insert(name, value);
        }
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let headers = format!("{:?}", response.headers());
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), format!("{headers} {body}")))
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

/// What arrives on `ws` until its Close (or `within` of silence): the JSON messages and the close.
pub async fn read_until_close(
    ws: &mut Socket,
    within: Duration,
) -> (Vec<Value>, Option<(u16, String)>) {
    let mut messages = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(within, ws.next()).await {
        match message {
            Ok(Message::Text(text)) => {
                messages.push(serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Ok(Message::Close(frame)) => {
                let close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                return (messages, close);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (messages, None)
}

/// The next JSON message on `ws` (panics on a close or silence).
pub async fn next_json(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(&text).unwrap_or(Value::Null)
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }
}

/// Sends a text frame.
pub async fn send_text(ws: &mut Socket, text: &str) {
    ws.send(Message::Text(text.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
}

/// Sends audio in 100 ms binary frames at about real time (`bytes_per_100ms` each).
pub async fn send_audio(ws: &mut Socket, audio: &[u8], bytes_per_100ms: usize) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for chunk in audio.chunks(bytes_per_100ms) {
        ticker.tick().await;
        ws.send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
}

/// Writes `contents` to a fresh temporary file (of this test process); returns its path.
pub fn temp_file(extension: &str, contents: &[u8]) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("voxgate-dialect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{n}.{extension}"));
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}
