//! One benchmark run, in phases, with the readings taken between them.
//!
//! Steady runs (the default):
//! 1. **baseline** — the server's CPU time and RSS (and the gateway's gauges) before any session;
//! 2. **ramp** — sessions open at `--ramp` per second (gateway: connect, `start`, `ready`);
//! 3. **idle** — every session open and configured, no audio, for `--idle-secs`: RSS per idle
//!    session;
//! 4. **streaming** — at "go" every session streams its plan at real time (the pacer's groups
//!    spread their first frames over one frame period), then sends `stop` and waits for `closed`:
//!    peak RSS per active session, CPU per session-minute, latencies;
//! 5. **after** — a couple of seconds after the last session: RSS and gauges back to baseline?
//!
//! Churn runs (`--churn SECS`): `--sessions` slots each open a session of about SECS seconds of
//! audio, run it to its end, and open the next one at once, for `--duration` seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::dialect::BenchDialect;
use super::direct::{self, ChannelPool, DirectApi};
use super::load;
use super::measure::Totals;
use super::pacer::{FrameSet, Pacer};
use super::process::{self, GatewayMetrics, ProcSample};
use super::script::{Script, ScriptFormat};
use super::shared::{Shared, SharedParts};
use super::telephony::WebhookRouter;
use super::ws::WsUrl;

/// How long after the last session the "after" readings are taken (the server drops its actors
/// and connections, and its allocator returns what it purges, meanwhile).
const SETTLE_AFTER: Duration = Duration::from_secs(5);
/// RSS is sampled this often while streaming.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// What the bench runs against.
#[derive(Debug, Clone)]
pub enum Target {
    /// A gateway's `/v1/listen`, or a dialect's path on it.
    Gateway {
        url: WsUrl,
        base64: bool,
        dialect: BenchDialect,
    },
    /// An emulator (or any Speech server) at `http://HOST:PORT`, called with API version `api`.
    Direct { endpoint: String, api: DirectApi },
}

/// Everything a run is given.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub target: Target,
    pub sessions: u64,
    /// Steady: seconds of audio each session streams. Churn: how long the churn lasts.
    pub duration_secs: f64,
    /// Sessions (or churn slots) opened per second at the start.
    pub ramp_per_sec: f64,
    /// Churn: seconds of audio per session; `None` for a steady run.
    pub churn_secs: Option<f64>,
    /// Steady: how long every session stays open and idle before streaming.
    pub idle_secs: f64,
    pub interim: bool,
    pub format: ScriptFormat,
    /// Pacer groups (ticker tasks).
    pub groups: usize,
    /// Length of the script's loop, seconds.
    pub loop_secs: f64,
    pub server_pid: Option<u32>,
    pub emulator_pid: Option<u32>,
    /// Where the bench's webhook receiver listens (`--dialect twilio`).
    pub webhook_listen: String,
}

/// The readings of one process at the run's phase boundaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcReadings {
    /// Before any session.
    pub before: ProcSample,
    /// After the idle phase (steady runs).
    pub idle: Option<ProcSample>,
    /// At the start of the measured window (go, or the churn's start).
    pub window_start: ProcSample,
    /// At its end (the last session ended).
    pub window_end: ProcSample,
    /// Highest RSS sampled in the window.
    pub peak_rss_kib: u64,
    /// A few seconds after the last session.
    pub after: ProcSample,
}

/// Everything measured, for the report.
pub struct RunResult {
    /// What was run.
    pub spec: RunSpec,
    /// What the sessions measured.
    pub totals: Totals,
    /// How late the pacer's ticks fired, µs.
    pub tick_lag_us: Vec<u32>,
    /// Readings of the server (`--server-pid`) and of the emulator behind it (`--emulator-pid`).
    pub server: Option<ProcReadings>,
    pub emulator: Option<ProcReadings>,
    /// The gateway's gauges before the ramp, after the idle phase, and after the run.
    pub metrics_before: Option<GatewayMetrics>,
    pub metrics_idle: Option<GatewayMetrics>,
    pub metrics_after: Option<GatewayMetrics>,
    /// Sessions opened (churn: all of them).
    pub sessions_opened: u64,
    /// Wall time of the whole run, and of the measured window.
    pub wall_secs: f64,
    pub window_secs: f64,
    pub bench_cpu_secs: f64,
    /// Whole-machine busy cores over the measured window (the processes under test, the bench,
    /// and anything else running on the machine).
    pub machine_busy_cores: Option<f64>,
    /// 1-minute load average at the start and the end of the run.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

/// Builds the frames every session sends.
fn frame_set(script: &Arc<Script>, target: &Target) -> FrameSet {
    match target {
        Target::Direct { .. } => FrameSet::Raw(script.clone()),
        Target::Gateway {
            base64, dialect, ..
        } => FrameSet::Ws {
            frames: (0..script.frames)
                .map(|i| dialect.audio_frame(&script.frame_audio(i), *base64))
                .collect(),
            keepalive: dialect.keepalive(),
            stop: dialect.stop(),
        },
    }
}

/// Reads `pid`, if given; a failed reading is reported once and then skipped.
fn read_proc(pid: Option<u32>) -> Option<ProcSample> {
    let pid = pid?;
    match process::sample(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("bench: cannot read process {pid}: {e}");
            None
        }
    }
}

/// Takes the readings at the start of the measured window.
fn window_start(
    server: &mut Option<ProcReadings>,
    emulator: &mut Option<ProcReadings>,
    spec: &RunSpec,
) {
    for (readings, pid) in [(server, spec.server_pid), (emulator, spec.emulator_pid)] {
        if let (Some(r), Some(s)) = (readings.as_mut(), read_proc(pid)) {
            r.window_start = s;
            r.peak_rss_kib = s.rss_kib;
        }
    }
}

/// Runs the benchmark described by `spec` (builds its own runtime).
pub fn run(spec: RunSpec, threads: usize) -> Result<RunResult, String> {
    if spec.sessions == 0 {
        return Err("--sessions must be at least 1".to_string());
    }
    if spec.ramp_per_sec.is_nan() || spec.ramp_per_sec <= 0.0 {
        return Err("--ramp must be a positive number of sessions per second".to_string());
    }
    let script = Arc::new(Script::build(spec.format, spec.loop_secs)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(run_async(spec, script))
}

async fn run_async(spec: RunSpec, script: Arc<Script>) -> Result<RunResult, String> {
    let epoch = Instant::now();
    let own_cpu_before = process::own_cpu_secs();
    let period = Duration::from_millis(spec.format.frame_ms);
    let pacer = Pacer::new(frame_set(&script, &spec.target), spec.groups, period, epoch);
    let tickers = pacer.start();
    let (go_tx, go_rx) = watch::channel(spec.churn_secs.is_some());
    if spec.churn_secs.is_some() {
        pacer.go();
    }
    let dialect = match &spec.target {
        Target::Gateway { dialect, .. } => *dialect,
        Target::Direct { .. } => BenchDialect::Native,
    };
    let start_frame = dialect.start(&spec.format, spec.interim);
    let webhooks = match dialect {
        BenchDialect::Twilio => Some(WebhookRouter::start(&spec.webhook_listen)?),
        _ => None,
    };
    let shared = Arc::new(Shared::new(SharedParts {
        plan_secs: spec.churn_secs.unwrap_or(spec.duration_secs),
        script,
        pacer: pacer.clone(),
        interim: spec.interim,
        steady: spec.churn_secs.is_none(),
        go: go_rx,
        start_frame,
        dialect,
        webhooks,
    }));
    let metrics_addr: Option<SocketAddr> = match &spec.target {
        Target::Gateway { url, .. } => Some(url.addr),
        Target::Direct { .. } => None,
    };
    let pool = match &spec.target {
        Target::Direct { endpoint, .. } => Some(Arc::new(ChannelPool::new(endpoint)?)),
        Target::Gateway { .. } => None,
    };
    let metrics = |addr: Option<SocketAddr>| async move {
        match addr {
            Some(addr) => match process::gateway_metrics(addr).await {
                Ok(m) => Some(m),
                Err(e) => {
                    eprintln!("bench: {e}");
                    None
                }
            },
            None => None,
        }
    };

    let load_before = process::load_average();
    let metrics_before = metrics(metrics_addr).await;
    let server_before = read_proc(spec.server_pid);
    let emulator_before = read_proc(spec.emulator_pid);
    let opened = Arc::new(AtomicU64::new(0));
    let mut server = server_before.map(|before| ProcReadings {
        before,
        ..ProcReadings::default()
    });
    let mut emulator = emulator_before.map(|before| ProcReadings {
        before,
        ..ProcReadings::default()
    });
    let churn = spec.churn_secs.is_some();
    let mut window_started = Instant::now();
    let mut machine_start = None;
    if churn {
        window_start(&mut server, &mut emulator, &spec);
        machine_start = process::machine_cpu();
    }
    // A churn runs for `duration` from the start of its ramp.
    let churn_end = Instant::now() + Duration::from_secs_f64(spec.duration_secs.max(0.0));

    // Ramp: session (or churn slot) n starts at n / ramp seconds.
    let mut tasks = tokio::task::JoinSet::new();
    let ramp_started = tokio::time::Instant::now();
    for n in 0..spec.sessions {
        let due = ramp_started + Duration::from_secs_f64(n as f64 / spec.ramp_per_sec);
        tokio::time::sleep_until(due).await;
        let (shared, target, pool, opened) = (
            shared.clone(),
            spec.target.clone(),
            pool.clone(),
            opened.clone(),
        );
        tasks.spawn(async move {
            let mut k = n;
            loop {
                opened.fetch_add(1, Ordering::Relaxed);
                let plan = shared.plan(k);
                let outcome = match (&target, &pool) {
                    (Target::Gateway { url, .. }, _) => {
                        load::gateway_session(&shared, url, k, plan).await
                    }
                    (Target::Direct { api, .. }, Some(pool)) => {
                        direct::direct_session(&shared, pool, plan, *api).await
                    }
                    (Target::Direct { .. }, None) => break,
                };
                shared.collector.add(outcome);
                if !churn || Instant::now() >= churn_end {
                    break;
                }
                k += spec.sessions;
            }
        });
    }

    let mut metrics_idle = None;
    if !churn {
        shared.all_settled(spec.sessions).await;
        tokio::time::sleep(Duration::from_secs_f64(spec.idle_secs.max(0.0))).await;
        metrics_idle = metrics(metrics_addr).await;
        let idle = read_proc(spec.server_pid);
        if let (Some(r), Some(idle)) = (server.as_mut(), idle) {
            r.idle = Some(idle);
        }
        window_started = Instant::now();
        window_start(&mut server, &mut emulator, &spec);
        machine_start = process::machine_cpu();
        pacer.go();
        let _ = go_tx.send(true);
    }
    // Wait for every session, sampling RSS meanwhile.
    let mut sampler = tokio::time::interval(RSS_SAMPLE_EVERY);
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                match joined {
                    None => break,
                    Some(Err(e)) => eprintln!("bench: a session task failed: {e}"),
                    Some(Ok(())) => {}
                }
            }
            _ = sampler.tick() => {
                for (readings, pid) in [(&mut server, spec.server_pid), (&mut emulator, spec.emulator_pid)] {
                    if let (Some(r), Some(pid)) = (readings.as_mut(), pid) {
                        if let Ok(s) = process::sample(pid) {
                            r.peak_rss_kib = r.peak_rss_kib.max(s.rss_kib);
                        }
                    }
                }
            }
        }
    }
    let window_secs = window_started.elapsed().as_secs_f64();
    let machine_busy_cores = match (machine_start, process::machine_cpu()) {
        (Some(start), Some(end)) => Some(start.busy_cores_until(&end, window_secs)),
        _ => None,
    };
    for (readings, pid) in [
        (&mut server, spec.server_pid),
        (&mut emulator, spec.emulator_pid),
    ] {
        if let (Some(r), Some(s)) = (readings.as_mut(), read_proc(pid)) {
            r.window_end = s;
        }
    }
    pacer.stop();
    for ticker in tickers {
        let _ = ticker.await;
    }
    tokio::time::sleep(SETTLE_AFTER).await;
    for (readings, pid) in [
        (&mut server, spec.server_pid),
        (&mut emulator, spec.emulator_pid),
    ] {
        if let (Some(r), Some(s)) = (readings.as_mut(), read_proc(pid)) {
            r.after = s;
        }
    }
    let metrics_after = metrics(metrics_addr).await;
    let totals = shared.collector.take();
    Ok(RunResult {
        tick_lag_us: pacer.take_lag(),
        totals,
        server,
        emulator,
        metrics_before,
        metrics_idle,
        metrics_after,
        sessions_opened: opened.load(Ordering::Relaxed),
        wall_secs: epoch.elapsed().as_secs_f64(),
        window_secs,
        bench_cpu_secs: process::own_cpu_secs() - own_cpu_before,
        machine_busy_cores,
        load_before,
        load_after: process::load_average(),
        spec,
    })
}
