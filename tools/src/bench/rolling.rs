//! `voxgate bench rolling`: a rolling restart under load, through a real load balancer. It starts
//! an emulator, N `voxgate serve` instances sharing a token secret, and HAProxy with the shipped
//! configuration in front of them ([`super::balancer`]); opens M sessions through HAProxy, each
//! streaming emulator-encoded speech at real time and following its server ([`super::follow`]);
//! then restarts every instance in turn as an orchestrator would — SIGTERM, wait for the process
//! to exit, start it again on the same address, wait until HAProxy sends it sessions — while the
//! sessions stream. It reports sessions failed (any word lost or repeated fails a session), the
//! resume gap and the latency the moves add (`docs/benchmarks.md` defines them), and how long each
//! drain and restart took.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::balancer::Balancer;
use super::follow::{self, Followed};
use super::measure::Percentiles;
use super::resume::{ramped, FORMAT};
use super::scenarios::Server;
use super::script::Script;

/// `voxgate bench rolling` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct RollingArgs {
    /// `voxgate serve` instances behind HAProxy.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=32))]
    pub instances: u64,
    /// Concurrent sessions through HAProxy.
    #[arg(long, default_value_t = 1000)]
    pub sessions: u64,
    /// Seconds of audio each session streams; it must outlast the ramp and the whole restart.
    #[arg(long, default_value_t = 90.0)]
    pub duration: f64,
    /// Sessions opened per second.
    #[arg(long, default_value_t = 100.0)]
    pub ramp: f64,
    /// Seconds between the last session opened and the first restart.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Stop the last instance (SIGSTOP) for this many seconds once every session is open, then
    /// let it run again (SIGCONT): a gateway starved of CPU, made deterministic. Before the
    /// restarts when `--settle` is longer. 0 = none.
    #[arg(long, default_value_t = 0.0)]
    pub stall_secs: f64,
    /// The instances' `[server] hand_off_delay_secs`.
    #[arg(long, default_value_t = 2.0)]
    pub hand_off_delay: f64,
    /// The instances' `[server] shutdown_grace_secs` (a drain that holds its sessions this long
    /// shows in the drain times).
    #[arg(long, default_value_t = 30.0)]
    pub grace: f64,
    /// The HAProxy configuration (the shipped one).
    #[arg(long, default_value = "deploy/haproxy/haproxy.cfg")]
    pub haproxy_config: PathBuf,
    /// `RUST_LOG` of the instances and the emulator (their stderr goes to log files in --out).
    #[arg(long, default_value = "warn")]
    pub log: String,
    /// Where the logs and HAProxy's files go.
    #[arg(long, default_value = "target/bench/rolling")]
    pub out: PathBuf,
    /// Threads of the bench's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How long a restarted instance may take until HAProxy sends it sessions.
const UP_WAIT: Duration = Duration::from_secs(30);

/// One instance's restart.
#[derive(Debug, Clone, Copy)]
struct Restart {
    /// SIGTERM → the process exited.
    drain: Duration,
    /// Started again → HAProxy sends it sessions.
    back: Duration,
}

/// The result of a run.
pub struct RollingReport {
    instances: u64,
    sessions: u64,
    ok: u64,
    failures: Vec<String>,
    moves: u64,
    drops: u64,
    gap_ms: Option<Percentiles>,
    calm_ms: Option<Percentiles>,
    moved_ms: Option<Percentiles>,
    restarts: Vec<Restart>,
    restart_error: Option<String>,
    /// `--stall-secs`: how long the last instance was stopped.
    stall_secs: f64,
}

impl RollingReport {
    /// No session failed, and every instance was restarted.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.restart_error.is_none()
    }

    /// Failed sessions whose client (the bench, starved) sent nothing for longer than the
    /// gateway's `[audio] gap_close_ms`: a pause by the rules, which splits the utterance there.
    fn failed_after_client_stall(&self) -> usize {
        self.failures
            .iter()
            .filter(|f| f.contains(follow::CLIENT_STALL_NOTE))
            .count()
    }

    /// Final latency added by a move: the first finals after a move against the others,
    /// percentile by percentile.
    fn added_ms(&self) -> Option<Percentiles> {
        Some(self.moved_ms.as_ref()?.minus(self.calm_ms.as_ref()?))
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "rolling restart: {} instances behind HAProxy, {} sessions: {} with every final \
             exactly once, {} failed ({} of them after the client itself stalled longer than the \
             gateway's audio gap); {} moves (reconnect) and {} dropped connections followed\n",
            self.instances,
            self.sessions,
            self.ok,
            self.failures.len(),
            self.failed_after_client_stall(),
            self.moves,
            self.drops
        );
        if self.stall_secs > 0.0 {
            out.push_str(&format!(
                "instance {} was stopped (SIGSTOP) for {:.1} s once every session was open\n",
                self.instances, self.stall_secs
            ));
        }
        let mut row = |name: &str, p: &Option<Percentiles>| {
            if let Some(p) = p {
                out.push_str(&format!(
                    "{name}, ms: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}  (n = {})\n",
                    p.p50, p.p90, p.p99, p.max, p.count
                ));
            }
        };
        row("resume gap (reconnect or loss → next final)", &self.gap_ms);
        row("final latency, other finals", &self.calm_ms);
        row("final latency, first final after a move", &self.moved_ms);
        row(
            "added latency (first after a move − other)",
            &self.added_ms(),
        );
        for (i, r) in self.restarts.iter().enumerate() {
            out.push_str(&format!(
                "instance {}: drained and exited {:.1} s after SIGTERM, back in HAProxy {:.1} s \
                 after its start\n",
                i + 1,
                r.drain.as_secs_f64(),
                r.back.as_secs_f64()
            ));
        }
        if let Some(e) = &self.restart_error {
            out.push_str(&format!("  restart failed: {e}\n"));
        }
        for failure in self.failures.iter().take(5) {
            out.push_str(&format!("  failed: {failure}\n"));
        }
        out
    }

    pub fn to_json(&self) -> String {
        let p = |p: &Option<Percentiles>| {
            p.as_ref().map(|p| {
                json!({"count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "max": p.max})
            })
        };
        json!({
            "instances": self.instances,
            "sessions": self.sessions,
            "sessions_ok": self.ok,
            "sessions_failed": self.failures.len(),
            "sessions_failed_after_client_stall": self.failed_after_client_stall(),
            "failures": self.failures.iter().take(20).collect::<Vec<_>>(),
            "moves": self.moves,
            "drops": self.drops,
            "resume_gap_ms": p(&self.gap_ms),
            "final_latency_calm_ms": p(&self.calm_ms),
            "final_latency_moved_ms": p(&self.moved_ms),
            "added_latency_ms": p(&self.added_ms()),
            "restarts": self.restarts.iter().map(|r| json!({
                "drain_secs": r.drain.as_secs_f64(),
                "back_secs": r.back.as_secs_f64(),
            })).collect::<Vec<_>>(),
            "restart_error": self.restart_error,
            "stall_secs": self.stall_secs,
        })
        .to_string()
    }
}

/// The instances and what starts them again.
struct Cluster {
    args: RollingArgs,
    emulator: Server,
    /// The listen address of each instance (kept across its restarts).
    addrs: Vec<String>,
    instances: Vec<Option<Server>>,
    /// Shared by every instance: any of them resumes any session.
    token_secret: String,
}

impl Cluster {
    fn start(args: &RollingArgs) -> Result<Cluster, String> {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("--out {}: {e}", args.out.display()))?;
        let emulator = Server::start(
            &["emulator", "--listen", "127.0.0.1:0"],
            &[],
            &args.log,
            &args.out.join("emulator.log"),
        )?;
        let mut cluster = Cluster {
            args: args.clone(),
            emulator,
            addrs: Vec::new(),
            instances: Vec::new(),
            token_secret: bench_secret(),
        };
        for i in 0..args.instances as usize {
            // A port of its own, kept across restarts (HAProxy's server line names it).
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port: {e}"))?
                .port();
            cluster.addrs.push(format!("127.0.0.1:{port}"));
            cluster.instances.push(None);
            cluster.launch(i)?;
        }
        Ok(cluster)
    }

    /// Starts instance `i` on its address.
    fn launch(&mut self, i: usize) -> Result<(), String> {
        let args = &self.args;
        let env = [
            ("VOXGATE_RECOGNIZER__BACKEND", "google".to_string()),
            ("VOXGATE_GOOGLE__AUTH", "none".to_string()),
            (
                "VOXGATE_GOOGLE__ENDPOINT",
                format!("http://{}", self.emulator.addr),
            ),
            ("VOXGATE_AUTH__TOKEN_SECRET", self.token_secret.clone()),
            // Behind HAProxy on loopback: believe its X-Forwarded-For, and serve anonymously.
            ("VOXGATE_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]".into()),
            ("VOXGATE_AUTH__ANONYMOUS", "true".to_string()),
            (
                "VOXGATE_SERVER__SHUTDOWN_GRACE_SECS",
                args.grace.to_string(),
            ),
            (
                "VOXGATE_SERVER__HAND_OFF_DELAY_SECS",
                args.hand_off_delay.to_string(),
            ),
            // The whole load comes from one address.
            ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9".to_string()),
            (
                "VOXGATE_SERVER__CONNECTION_BURST_PER_IP",
                "1000000".to_string(),
            ),
            (
                "VOXGATE_SESSION__MAX_SESSIONS_PER_IP",
                "1000000".to_string(),
            ),
        ];
        let server = Server::start(
            &[
                "serve",
                "--config",
                "/dev/null",
                "--listen",
                self.addrs[i].as_str(),
            ],
            &env,
            &args.log,
            &args.out.join(format!("gateway{}.log", i + 1)),
        )?;
        self.instances[i] = Some(server);
        Ok(())
    }

    /// Stops the last instance for `pause` (SIGSTOP), then lets it run again (SIGCONT).
    fn stall_last(&self, pause: Duration) -> Result<(), String> {
        match self.instances.last() {
            Some(Some(server)) => server.stall(pause),
            _ => Err("no instance to stall".into()),
        }
    }

    /// Restarts every instance in turn; stops at the first that fails.
    fn roll(&mut self, balancer: &Balancer) -> (Vec<Restart>, Option<String>) {
        let mut restarts = Vec::new();
        for i in 0..self.instances.len() {
            let Some(server) = self.instances[i].take() else {
                continue;
            };
            let began = Instant::now();
            if let Err(e) = server.stop() {
                return (restarts, Some(format!("instance {}: {e}", i + 1)));
            }
            let drain = began.elapsed();
            let started = Instant::now();
            let back = self.launch(i).and_then(|()| balancer.wait_all_up(UP_WAIT));
            if let Err(e) = back {
                return (restarts, Some(format!("instance {}: {e}", i + 1)));
            }
            restarts.push(Restart {
                drain,
                back: started.elapsed(),
            });
        }
        (restarts, None)
    }
}

/// A token secret for this run's instances only (loopback, gone with them): long enough for
/// `[auth] token_secret`, different on every run.
fn bench_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("voxgate-bench-rolling-{nanos:032x}-{}", std::process::id())
}

/// Runs the scenario.
pub fn run(args: &RollingArgs) -> Result<RollingReport, String> {
    if !(args.duration >= 5.0 && args.duration.is_finite()) {
        return Err("--duration must be at least 5 seconds".into());
    }
    if !(args.ramp > 0.0 && args.ramp.is_finite()) {
        return Err("--ramp must be a positive number".into());
    }
    if !(args.settle >= 0.0 && args.settle.is_finite()) {
        return Err("--settle must be a number of seconds".into());
    }
    if !(args.stall_secs >= 0.0 && args.stall_secs.is_finite()) {
        return Err("--stall-secs must be a number of seconds".into());
    }
    let script = Arc::new(Script::build(FORMAT, args.duration.max(60.0))?);
    let mut cluster = Cluster::start(args)?;
    let balancer = Balancer::start(
        &args.haproxy_config,
        &cluster.addrs,
        args.sessions,
        &args.out,
    )?;
    balancer.wait_all_up(UP_WAIT)?;
    let url = Arc::new(format!("ws://{}/v1/listen", balancer.addr));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let ramp_secs = args.sessions as f64 / args.ramp;
    let first_restart = Duration::from_secs_f64(ramp_secs + args.settle);
    let sessions = ramped(args.sessions, args.ramp, |i| {
        let plan = script.plan(i as usize * 3, args.duration);
        let (script, url) = (script.clone(), url.clone());
        async move { follow::session(&script, &plan, &url).await }
    });
    // The restarts block (processes, HAProxy's socket): a thread of their own, beside the
    // sessions' runtime, on the schedule of the run.
    let (results, (restarts, restart_error)) = std::thread::scope(|scope| {
        let roller = scope.spawn(|| {
            let began = Instant::now();
            if args.stall_secs > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(ramp_secs));
                if let Err(e) = cluster.stall_last(Duration::from_secs_f64(args.stall_secs)) {
                    return (Vec::new(), Some(format!("stall: {e}")));
                }
            }
            std::thread::sleep(first_restart.saturating_sub(began.elapsed()));
            cluster.roll(&balancer)
        });
        let results = runtime.block_on(sessions);
        let rolled = roller
            .join()
            .unwrap_or_else(|_| (Vec::new(), Some("the restart thread panicked".into())));
        (results, rolled)
    });
    let mut followed = Followed::default();
    let mut failures = Vec::new();
    let mut ok = 0;
    for result in results {
        match result {
            Ok(one) => {
                ok += 1;
                followed.moves += one.moves;
                followed.drops += one.drops;
                followed.gaps_us.extend(one.gaps_us);
                followed.calm_us.extend(one.calm_us);
                followed.moved_us.extend(one.moved_us);
            }
            Err(e) => failures.push(e),
        }
    }
    Ok(RollingReport {
        instances: args.instances,
        sessions: args.sessions,
        ok,
        failures,
        moves: u64::from(followed.moves),
        drops: u64::from(followed.drops),
        gap_ms: Percentiles::of_micros(&mut followed.gaps_us),
        calm_ms: Percentiles::of_micros(&mut followed.calm_us),
        moved_ms: Percentiles::of_micros(&mut followed.moved_us),
        restarts,
        restart_error,
        stall_secs: args.stall_secs,
    })
}
