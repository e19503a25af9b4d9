//! `voxgate bench resume`: the resume scenario of `docs/benchmarks.md`. N sessions stream
//! emulator-encoded speech at real time through a running gateway; each one's connection is cut at
//! a random moment (the socket dropped, no Close), and the client resumes at once (or after
//! `--outage-ms`) as `docs/protocol.md` ("Resume") says: the newest token, the audio after the last
//! final sent again. The figure is the *resume gap*: from the lost connection to the next final
//! received, per session, as percentiles; every session's finals are checked against its script
//! (each utterance exactly once, in order), so a resume that loses or repeats words counts as a
//! failed session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use super::measure::Percentiles;
use super::script::{Plan, Script, ScriptFormat};
use voxgate_emulator::synth::SynthEncoding;

/// `voxgate bench resume` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ResumeArgs {
    /// The gateway's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/listen")]
    pub url: String,
    /// API key or session token (`Authorization: Bearer`).
    #[arg(long, env = "VOXGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Concurrent sessions, each cut once.
    #[arg(long, default_value_t = 50)]
    pub sessions: u64,
    /// Seconds of audio each session streams (the cut falls between 20 % and 70 % of it).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// How long a cut connection stays down before the client reconnects, ms.
    #[arg(long, default_value_t = 0)]
    pub outage_ms: u64,
    /// Sessions opened per second.
    #[arg(long, default_value_t = 50.0)]
    pub ramp: f64,
    /// Seed of the cut instants (the same seed cuts at the same moments).
    #[arg(long, default_value_t = 15)]
    pub seed: u64,
    /// Threads of the bench's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// LINEAR16 at 16 kHz in 100 ms frames.
pub(super) const FORMAT: ScriptFormat = ScriptFormat {
    sample_rate_hz: 16_000,
    encoding: SynthEncoding::Linear16,
    frame_ms: 100,
};
pub(super) const BYTES_PER_MS: u64 = 32;
/// Longest wait for any one server message before a session is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What one session measured.
struct Outcome {
    /// From the cut to the first final on the resumed connection, µs.
    gap_micros: u32,
}

/// The result of a run.
pub struct ResumeReport {
    sessions: u64,
    ok: u64,
    failures: Vec<String>,
    gap_ms: Option<Percentiles>,
    outage_ms: u64,
}

impl ResumeReport {
    /// Whether every session resumed and got every final exactly once.
    pub fn all_resumed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "resume: {} sessions, each cut once (outage {} ms): {} resumed with every final \
             exactly once, {} failed\n",
            self.sessions,
            self.outage_ms,
            self.ok,
            self.failures.len()
        );
        if let Some(p) = &self.gap_ms {
            out.push_str(&format!(
                "resume gap (lost connection → next final), ms: p50 {:.0}  p90 {:.0}  p99 {:.0}  \
                 max {:.0}  (n = {})\n",
                p.p50, p.p90, p.p99, p.max, p.count
            ));
        }
        for failure in self.failures.iter().take(5) {
            out.push_str(&format!("  failed: {failure}\n"));
        }
        out
    }

    pub fn to_json(&self) -> String {
        json!({
            "sessions": self.sessions,
            "resumed_exactly": self.ok,
            "failed": self.failures.len(),
            "failures": self.failures.iter().take(20).collect::<Vec<_>>(),
            "outage_ms": self.outage_ms,
            "resume_gap_ms": self.gap_ms.as_ref().map(|p| json!({
                "count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max,
            })),
        })
        .to_string()
    }
}

/// Runs the scenario.
pub fn run(args: &ResumeArgs) -> Result<ResumeReport, String> {
    if !(args.duration >= 5.0 && args.duration.is_finite()) {
        return Err("--duration must be at least 5 seconds".into());
    }
    if !(args.ramp > 0.0 && args.ramp.is_finite()) {
        return Err("--ramp must be a positive number".into());
    }
    let script = Arc::new(Script::build(FORMAT, args.duration.max(60.0))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let args = Arc::new(args.clone());
    let mut rng = args.seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    let results = runtime.block_on(ramped(args.sessions, args.ramp, |i| {
        let plan = script.plan(i as usize * 3, args.duration);
        // The cut: a frame between 20 % and 70 % of the session (xorshift, deterministic).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let span = plan.frame_count * 5 / 10;
        let cut = plan.frame_count / 5 + rng % span.max(1);
        let (script, args) = (script.clone(), args.clone());
        async move { session(&script, &plan, cut, &args).await }
    }));
    let mut gaps = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(outcome) => gaps.push(outcome.gap_micros),
            Err(e) => failures.push(e),
        }
    }
    Ok(ResumeReport {
        sessions: args.sessions,
        ok: gaps.len() as u64,
        failures,
        gap_ms: Percentiles::of_micros(&mut gaps),
        outage_ms: args.outage_ms,
    })
}

/// Starts `sessions` sessions, `ramp` a second (session `i` after `i / ramp` s), each the future
/// `start(i)` makes, on the current runtime; their outcomes in order (a panicked task is a failure).
pub(super) async fn ramped<T, F, Fut>(
    sessions: u64,
    ramp: f64,
    mut start: F,
) -> Vec<Result<T, String>>
where
    T: Send + 'static,
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let delay = Duration::from_secs_f64(i as f64 / ramp);
        let session = start(i);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            session.await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            task.await
                .unwrap_or_else(|e| Err(format!("session task: {e}"))),
        );
    }
    results
}

pub(super) type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// One connection: its sending half, and its messages from a reader task (which ends with the
/// connection; aborted when the connection is cut).
pub(super) struct Connection {
    pub(super) sink: Sink,
    pub(super) messages: mpsc::UnboundedReceiver<Value>,
    pub(super) reader: tokio::task::JoinHandle<()>,
}

/// Connects to `url` (with the key, if any) and sends `start`.
pub(super) async fn open(
    url: &str,
    api_key: Option<&str>,
    start: &Value,
) -> Result<Connection, String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("--url {url}: {e}"))?;
    if let Some(key) = api_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| "--api-key: not a valid header value".to_string())?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sink, mut source) = ws.split();
    sink.send(Message::Text(start.to_string().into()))
        .await
        .map_err(|e| format!("send start: {e}"))?;
    let (tx, messages) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            if let Message::Text(text) = message {
                let _ = tx.send(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
        }
    });
    Ok(Connection {
        sink,
        messages,
        reader,
    })
}

/// What a session knows of itself across its connections.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) token: Option<String>,
    pub(super) final_ms: u64,
    pub(super) finals: Vec<String>,
    pub(super) closed: bool,
}

impl Progress {
    /// Takes a server message; an error ends the session.
    pub(super) fn take(&mut self, message: &Value) -> Result<(), String> {
        if let Some(token) = message["resume_token"].as_str() {
            self.token = Some(token.to_string());
        }
        match message["type"].as_str() {
            Some("transcript") if message["is_final"] == true => {
                self.final_ms = message["end_ms"].as_u64().unwrap_or(self.final_ms);
                self.finals
                    .push(message["transcript"].as_str().unwrap_or("").to_string());
            }
            Some("closed") => self.closed = true,
            Some("error") => return Err(format!("server error: {message}")),
            _ => {}
        }
        Ok(())
    }
}

/// Sends session frames `from..to` (the first one from `skip_bytes` on).
pub(super) async fn send_frames(
    conn: &mut Connection,
    script: &Script,
    plan: &Plan,
    (from, to): (u64, u64),
    skip_bytes: usize,
) -> Result<(), String> {
    for frame in from..to {
        let audio = script.frame_audio(plan.first_frame + frame);
        let audio = if frame == from {
            audio.slice(skip_bytes.min(audio.len())..)
        } else {
            audio
        };
        conn.sink
            .send(Message::Binary(audio))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    Ok(())
}

/// One session: stream, cut at frame `cut`, resume, stream to the end, check every final.
async fn session(
    script: &Script,
    plan: &Plan,
    cut: u64,
    args: &ResumeArgs,
) -> Result<Outcome, String> {
    let frame_ms = FORMAT.frame_ms;
    let start = json!({"type":"start","encoding":"LINEAR16","sample_rate_hz":16000,
        "interim_results":false});
    let key = args.api_key.as_deref();
    let mut conn = open(&args.url, key, &start).await?;
    let mut progress = Progress::default();
    let t0 = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(frame_ms));
    let mut sent = 0u64; // session frames sent
    let mut cut_at: Option<Instant> = None;
    let mut gap: Option<Duration> = None;
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = ticker.tick(), if !stopped => {
                let due = (t0.elapsed().as_millis() as u64 / frame_ms + 1).min(plan.frame_count);
                if cut_at.is_none() && due > cut {
                    // The cut: the socket goes away without a Close.
                    conn.reader.abort();
                    drop(conn);
                    cut_at = Some(Instant::now());
                    tokio::time::sleep(Duration::from_millis(args.outage_ms)).await;
                    let token = progress.token.clone().ok_or("no resume token before the cut")?;
                    let from_ms = progress.final_ms;
                    let resume = json!({"type":"start","resume":{"token":token,"from_ms":from_ms}});
                    conn = open(&args.url, key, &resume).await?;
                    // The audio from the last final on, then live again.
                    let first = from_ms / frame_ms;
                    let skip = ((from_ms - first * frame_ms) * BYTES_PER_MS) as usize;
                    let due = (t0.elapsed().as_millis() as u64 / frame_ms + 1).min(plan.frame_count);
                    send_frames(&mut conn, script, plan, (first, due), skip).await?;
                    sent = due;
                    continue;
                }
                send_frames(&mut conn, script, plan, (sent, due), 0).await?;
                sent = due;
                if sent == plan.frame_count {
                    conn.sink
                        .send(Message::Text(json!({"type":"stop"}).to_string().into()))
                        .await
                        .map_err(|e| format!("send stop: {e}"))?;
                    stopped = true;
                }
            }
            message = tokio::time::timeout(READ_TIMEOUT, conn.messages.recv()) => {
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => return Err("the connection ended before closed".into()),
                    Err(_) => return Err(format!("nothing from the server for {READ_TIMEOUT:?}")),
                };
                let finals_before = progress.finals.len();
                progress.take(&message)?;
                if let (Some(at), None) = (cut_at, gap) {
                    if progress.finals.len() > finals_before {
                        gap = Some(at.elapsed());
                    }
                }
                if progress.closed {
                    break;
                }
            }
        }
    }
    let expected: Vec<&str> = plan
        .finals
        .iter()
        .map(|f| script.utterances[f.utterance].transcript.as_str())
        .collect();
    if progress.finals != expected {
        return Err(format!(
            "finals {:?}, expected {expected:?}",
            progress.finals
        ));
    }
    let gap = gap.ok_or("no final after the resume")?;
    Ok(Outcome {
        gap_micros: u32::try_from(gap.as_micros()).unwrap_or(u32::MAX),
    })
}
