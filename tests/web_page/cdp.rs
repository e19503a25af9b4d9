//! Headless Chromium driven over the DevTools protocol, for the web page's tests: no WebDriver
//! server and no npm, one WebSocket to the browser. Chromium is Debian's `chromium`
//! (`scripts/setup-test-env.sh` installs it); it runs with a fresh profile, every network feature
//! off (the machine has no network but loopback), and a fake microphone that plays a WAV file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest a DevTools command may take (a `wait_for` has its own limit).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the page's microphone does.
pub enum Microphone<'a> {
    /// Access is granted and the fake device plays this WAV file (once, then silence).
    Plays(&'a Path),
    /// The user denied access for the page's origin (getUserMedia rejects with
    /// `NotAllowedError`): no fake permission UI, and the permission set to "denied".
    Denied,
}

/// A headless Chromium showing one page; killed (and its profile removed) when dropped.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The DevTools session of the page (commands to the page carry it).
    session: String,
    next_id: u64,
    /// Events received while waiting for replies, by method name, for [`Browser::wait_event`].
    events: Vec<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts Chromium with a fake microphone as `microphone` says and opens `url`.
    pub async fn open(name: &str, url: &str, microphone: Microphone<'_>) -> Browser {
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=900,900",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-device-for-media-stream",
                "--remote-debugging-port=0",
            ])
            // The fake permission UI grants every request, whatever the permission says: only
            // with a microphone to play.
            .args(match microphone {
                Microphone::Plays(wav) => vec![
                    "--use-fake-ui-for-media-stream".to_string(),
                    format!("--use-file-for-fake-audio-capture={}%noloop", wav.display()),
                ],
                Microphone::Denied => vec![],
            })
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromium: {e} (scripts/setup-test-env.sh installs it)")
            });
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        // Chromium says where its DevTools endpoint is on stderr, once it listens.
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
                        break url.to_string();
                    }
                }
                other => {
                    let _ = child.kill();
                    panic!("chromium exited before listening: {other:?}");
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools {endpoint}: {e}"));
        let mut browser = Browser {
            child,
            profile,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = browser
            .browser_call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].clone();
        let attached = browser
            .browser_call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no DevTools session: {attached}"))
            .to_string();
        // Navigated once attached, so that scripts run in the page's own context (not in the
        // blank page it replaces) and start once it has loaded.
        if let Microphone::Denied = microphone {
            browser
                .browser_call(
                    "Browser.setPermission",
                    json!({"permission": {"name": "microphone"}, "setting": "denied",
                           "origin": origin(url)}),
                )
                .await;
        }
        browser.call("Page.enable", json!({})).await;
        browser.call("Page.navigate", json!({"url": url})).await;
        browser.wait_event("Page.loadEventFired").await;
        browser
    }

    /// Waits for an event of the page (one already received counts).
    async fn wait_event(&mut self, method: &str) {
        if let Some(at) = self.events.iter().position(|e| e == method) {
            self.events.remove(at);
            return;
        }
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            while let Some(message) = self.ws.next().await {
                if let Ok(Message::Text(text)) = message {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if value["method"] == method {
                        return;
                    }
                }
            }
            panic!("DevTools connection closed waiting for {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {method} in {COMMAND_TIMEOUT:?}"));
    }

    async fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None, COMMAND_TIMEOUT).await
    }

    /// A command to the page; its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_within(method, params, COMMAND_TIMEOUT).await
    }

    async fn call_within(&mut self, method: &str, params: Value, within: Duration) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(session), within).await
    }

    /// Sends a command (to the page's session, or to the browser) and waits `within` for its
    /// reply.
    async fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<String>,
        within: Duration,
    ) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::Text(command.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("DevTools send: {e}"));
        let reply = tokio::time::timeout(within, async {
            // Events are kept for `wait_event`; other replies (of abandoned waits) are skipped.
            while let Some(message) = self.ws.next().await {
                if let Ok(Message::Text(text)) = message {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if value["id"] == id {
                        return value;
                    }
                    if let Some(event) = value["method"].as_str() {
                        self.events.push(event.to_string());
                    }
                }
            }
            panic!("DevTools connection closed during {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("DevTools {method}: no reply in {within:?}"));
        if !reply["error"].is_null() {
            panic!("DevTools {method}: {}", reply["error"]);
        }
        reply["result"].clone()
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise); its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.eval_within(expression, COMMAND_TIMEOUT).await
    }

    async fn eval_within(&mut self, expression: &str, within: Duration) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call_within("Runtime.evaluate", params, within).await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page, re-checked on
    /// every change of the document (no polling). After `within`, panics with the value of
    /// `describe` (an expression saying what the page shows).
    pub async fn wait_for(&mut self, condition: &str, within: Duration, describe: &str) {
        let expression = format!(
            "new Promise((resolve) => {{
                const check = () => {{ if ({condition}) {{ observer.disconnect(); resolve(true); }} }};
                const observer = new MutationObserver(check);
                observer.observe(document, {{subtree: true, childList: true, characterData: true,
                                             attributes: true}});
                check();
            }})"
        );
        let waited = tokio::time::timeout(within, self.eval_within(&expression, within * 2)).await;
        if waited.is_err() {
            // The page answers other commands while that promise is pending.
            let state = self.eval(describe).await;
            panic!("waited {within:?} for `{condition}`; the page: {state}");
        }
    }

    /// Saves a PNG screenshot of the page at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    url[after_scheme..]
        .find('/')
        .map_or(url, |end| &url[..after_scheme + end])
}
