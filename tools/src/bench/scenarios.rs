//! `voxgate bench scenarios`: the standard scenarios of `docs/benchmarks.md`, end to end on
//! loopback, in one command. For each load it starts a fresh `voxgate emulator`, runs the load
//! straight against it (`--direct`, the baseline), then starts a fresh emulator and a `voxgate
//! serve` in front of it and runs the same load through the gateway, binary then base64, with the
//! direct run as baseline; then the connection-churn scenario the same way — twice in a row on the
//! same gateway, so that a leak would show as growth from one run to the next. Every report is kept
//! as JSON; the tables are printed and, with `--markdown FILE`, written into FILE between the
//! lines `<!-- bench:begin -->` and `<!-- bench:end -->`.
//!
//! The processes are this same binary, started with `std::process` (stdout read for their
//! `listening on ADDR` line, stderr to a log file each), stopped with SIGTERM after each scenario.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dialect::BenchDialect;
use super::direct::DirectApi;
use super::report::Report;
use super::run::{self, RunSpec, Target};
use super::script::ScriptFormat;
use super::ws::WsUrl;
use voxgate_emulator::synth::SynthEncoding;

const BEGIN_MARK: &str = "<!-- bench:begin -->";
const END_MARK: &str = "<!-- bench:end -->";
/// How long a started process may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM (the gateway's grace period is not used:
/// every session has ended by then).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// `voxgate bench scenarios` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ScenarioArgs {
    /// Session counts of the steady scenarios (comma-separated).
    #[arg(long, default_value = "100,1000,5000")]
    pub sizes: String,
    /// Seconds of audio each session streams in the steady scenarios.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Concurrent slots of the churn scenario (0: no churn scenario).
    #[arg(long, default_value_t = 1_200)]
    pub churn_slots: u64,
    /// Seconds of audio per churn session.
    #[arg(long, default_value_t = 2.0)]
    pub churn_secs: f64,
    /// How long the churn goes on, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub churn_duration: f64,
    /// Sessions opened per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp: f64,
    /// Skip base64 runs.
    #[arg(long)]
    pub binary_only: bool,
    /// Ask for final results only.
    #[arg(long)]
    pub finals_only: bool,
    /// `RUST_LOG` of the gateway and the emulator (their stderr goes to log files in --out).
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Where the JSON reports and the logs go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Markdown file whose region between `<!-- bench:begin -->` and `<!-- bench:end -->` gets
    /// the tables.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Threads of the bench's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Linux: run this command and the processes it starts with this autogroup nice value (-20…19;
    /// lowering it needs root). On a machine shared with other work, a negative value keeps the
    /// measured processes from being starved by it; the figures then show what they can do.
    #[arg(long, allow_hyphen_values = true)]
    pub autogroup_nice: Option<i32>,
}

/// Sets this process's autogroup nice value (inherited by the processes it starts); returns the
/// previous value to restore.
fn set_autogroup_nice(nice: i32) -> Result<Option<i32>, String> {
    const PATH: &str = "/proc/self/autogroup";
    let before = std::fs::read_to_string(PATH)
        .ok()
        .and_then(|s| s.split("nice").nth(1).and_then(|n| n.trim().parse().ok()));
    std::fs::write(PATH, nice.to_string())
        .map_err(|e| format!("--autogroup-nice {nice}: cannot write {PATH}: {e}"))?;
    Ok(before)
}

/// A `voxgate` child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub(super) struct Server {
    child: Child,
    pub(super) addr: String,
}

impl Server {
    pub(super) fn start(
        args: &[&str],
        env: &[(&str, String)],
        log: &str,
        log_file: &Path,
    ) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let stderr =
            std::fs::File::create(log_file).map_err(|e| format!("{}: {e}", log_file.display()))?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start voxgate {args:?}: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "no stdout of the child".to_string())?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
        };
        server.addr = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            format!(
                "voxgate {args:?} did not print its address within {} s (see {})",
                START_TIMEOUT.as_secs(),
                log_file.display()
            )
        })?;
        Ok(server)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGSTOP) for `pause`, then lets it run again (SIGCONT): a process
    /// starved of CPU, made deterministic — every timer due meanwhile fires when it runs again.
    pub(super) fn stall(&self, pause: Duration) -> Result<(), String> {
        let pid = libc::pid_t::try_from(self.child.id())
            .ok()
            .filter(|pid| *pid > 0)
            .ok_or("no pid of the child")?;
        // SAFETY: kill(2) on our own child's pid (never 0 or negative: no process group).
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(pause);
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        Ok(())
    }

    /// SIGTERM, then waits; SIGKILL after [`STOP_TIMEOUT`].
    pub(super) fn stop(mut self) -> Result<(), String> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<(), String> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("wait: {e}")),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("process {pid} did not stop after SIGTERM; killed"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

fn emulator(args: &ScenarioArgs, name: &str) -> Result<Server, String> {
    Server::start(
        &["emulator", "--listen", "127.0.0.1:0"],
        &[],
        &args.log,
        &args.out.join(format!("{name}.emulator.log")),
    )
}

fn gateway(args: &ScenarioArgs, name: &str, emulator: &Server) -> Result<Server, String> {
    Server::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "google".to_string()),
            ("VOXGATE_GOOGLE__AUTH", "none".to_string()),
            (
                "VOXGATE_GOOGLE__ENDPOINT",
                format!("http://{}", emulator.addr),
            ),
            // The whole load comes from one address: lift the per-client limits (they would
            // refuse it, rightly, with 429 and too_many_client_sessions).
            ("VOXGATE_SERVER__CONNECTION_RATE_PER_IP", "1e9".to_string()),
            (
                "VOXGATE_SERVER__CONNECTION_BURST_PER_IP",
                "1000000".to_string(),
            ),
            (
                "VOXGATE_SESSION__MAX_SESSIONS_PER_IP",
                "1000000".to_string(),
            ),
        ],
        &args.log,
        &args.out.join(format!("{name}.gateway.log")),
    )
}

/// One load: sessions, and for churn the session length.
#[derive(Debug, Clone, Copy)]
struct Load {
    sessions: u64,
    duration: f64,
    churn: Option<f64>,
}

fn spec(
    args: &ScenarioArgs,
    load: Load,
    target: Target,
    server: u32,
    emulator: Option<u32>,
) -> RunSpec {
    RunSpec {
        target,
        sessions: load.sessions,
        duration_secs: load.duration,
        ramp_per_sec: args.ramp,
        churn_secs: load.churn,
        idle_secs: 2.0,
        interim: !args.finals_only,
        format: ScriptFormat {
            sample_rate_hz: 16_000,
            encoding: SynthEncoding::Linear16,
            frame_ms: 100,
        },
        groups: 20,
        loop_secs: 60.0,
        server_pid: Some(server),
        emulator_pid: emulator,
        webhook_listen: "127.0.0.1:0".to_string(),
    }
}

fn save(args: &ScenarioArgs, name: &str, report: &Report) -> Result<(), String> {
    let path = args.out.join(format!("{name}.json"));
    std::fs::write(&path, report.to_json()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one load directly and through the gateway (binary, and base64 unless skipped).
fn run_load(args: &ScenarioArgs, name: &str, load: Load) -> Result<Vec<(String, Report)>, String> {
    let mut reports = Vec::new();
    let direct_name = format!("{name}-direct");
    eprintln!("bench: {direct_name}");
    let emu = emulator(args, &direct_name)?;
    let result = run::run(
        spec(
            args,
            load,
            Target::Direct {
                endpoint: format!("http://{}", emu.addr),
                api: DirectApi::V1,
            },
            emu.pid(),
            None,
        ),
        args.threads,
    )?;
    emu.stop()?;
    let direct = Report::new(result, None);
    save(args, &direct_name, &direct)?;
    let baseline = direct.decision_latency_ms;
    reports.push((direct_name, direct));
    let framings: &[bool] = if args.binary_only || load.churn.is_some() {
        &[false]
    } else {
        &[false, true]
    };
    // A churn runs twice on the same gateway: a leak shows as growth from one run to the next.
    let repeats = if load.churn.is_some() { 2 } else { 1 };
    for &base64 in framings {
        let base_name = format!("{name}-{}", if base64 { "base64" } else { "binary" });
        let emu = emulator(args, &base_name)?;
        let gw = gateway(args, &base_name, &emu)?;
        for repeat in 0..repeats {
            let run_name = if repeat == 0 {
                base_name.clone()
            } else {
                format!("{base_name}-again")
            };
            eprintln!("bench: {run_name}");
            let url = WsUrl::parse(&format!("ws://{}/v1/listen", gw.addr))?;
            let target = Target::Gateway {
                url,
                base64,
                dialect: BenchDialect::Native,
            };
            let result = run::run(
                spec(args, load, target, gw.pid(), Some(emu.pid())),
                args.threads,
            )?;
            let report = Report::new(result, baseline);
            save(args, &run_name, &report)?;
            reports.push((run_name, report));
        }
        gw.stop()?;
        emu.stop()?;
    }
    Ok(reports)
}

/// Runs `voxgate bench scenarios`.
pub fn run(args: &ScenarioArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let restore_nice = match args.autogroup_nice {
        Some(nice) => Some(set_autogroup_nice(nice)?),
        None => None,
    };
    let result = run_all(args);
    if let Some(Some(before)) = restore_nice {
        let _ = set_autogroup_nice(before);
    }
    result
}

fn run_all(args: &ScenarioArgs) -> Result<(), String> {
    let sizes: Vec<u64> = args
        .sizes
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("--sizes: {s:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    let started = chrono_like_now();
    let mut steady = Vec::new();
    for sessions in sizes {
        let load = Load {
            sessions,
            duration: args.duration,
            churn: None,
        };
        steady.extend(run_load(args, &format!("steady-{sessions}"), load)?);
    }
    let mut churn = Vec::new();
    if args.churn_slots > 0 {
        let load = Load {
            sessions: args.churn_slots,
            duration: args.churn_duration,
            churn: Some(args.churn_secs),
        };
        churn = run_load(args, &format!("churn-{}", args.churn_slots), load)?;
    }
    let tables = tables(args, &started, &steady, &churn);
    print!("{tables}");
    if let Some(path) = &args.markdown {
        write_region(path, &tables)?;
        eprintln!("bench: tables written to {}", path.display());
    }
    Ok(())
}

/// The date and time now, UTC, as `YYYY-MM-DD HH:MM` (without a date crate).
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (hh, mm) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpus} CPUs ({model})")
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.decimals$}"))
}

fn tables(
    args: &ScenarioArgs,
    started: &str,
    steady: &[(String, Report)],
    churn: &[(String, Report)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {started}, commit `{}`, {}; emulator, gateway and bench on this machine. \
         Command: `voxgate bench scenarios --sizes {} --duration {} --churn-slots {} --churn-secs {} \
         --churn-duration {}{}{}{}`; 16 kHz LINEAR16, 100 ms frames, {}.\n",
        git_commit(),
        machine(),
        args.sizes,
        args.duration,
        args.churn_slots,
        args.churn_secs,
        args.churn_duration,
        if args.binary_only { " --binary-only" } else { "" },
        if args.finals_only { " --finals-only" } else { "" },
        args.autogroup_nice
            .map_or(String::new(), |n| format!(" --autogroup-nice {n}")),
        if args.finals_only { "finals only" } else { "interim results on" },
    );
    if !steady.is_empty() {
        let _ = writeln!(out, "| scenario | held / failed | transcript errors | added latency p50 / p90 / p99 / max (ms) | direct p99 (ms) | server CPU s per session-min | server cores | gateway ÷ emulator CPU | RSS KiB per idle / active session | bench tick lag p99 (ms) | machine busy cores / load |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, r) in steady {
            row(&mut out, name, r);
        }
        let _ = writeln!(out);
    }
    if !churn.is_empty() {
        let _ = writeln!(out, "| churn | opened / s | completed / s | held / failed | transcript errors | added latency p99 (ms) | server cores | RSS KiB before → peak → after | sessions / streams active after | machine busy cores / load |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for (name, r) in churn {
            let c = r.churn.as_ref();
            let s = r.server.as_ref();
            let m = r.gateway_metrics_after.as_ref();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
                opt(c.map(|c| c.opened_per_sec), 0),
                opt(c.map(|c| c.completed_per_sec), 0),
                r.sessions_ok,
                r.sessions_failed,
                r.transcript_errors,
                format_args!("{:.2}", r.added_latency_ms.p99),
                opt(s.map(|s| s.cpu_cores), 2),
                s.map_or("—".to_string(), |s| format!(
                    "{} → {} → {}",
                    s.rss_baseline_kib, s.rss_peak_kib, s.rss_after_kib
                )),
                m.map_or("—".to_string(), |m| format!(
                    "{} / {}",
                    m.sessions_active, m.streams_active
                )),
                machine_load(r),
            );
        }
        let _ = writeln!(out);
    }
    let failures: Vec<String> = steady
        .iter()
        .chain(churn)
        .filter(|(_, r)| !r.failures.is_empty())
        .map(|(name, r)| {
            let reasons: Vec<String> = r
                .failures
                .iter()
                .map(|(k, n)| format!("{n} × {k}"))
                .collect();
            format!("- {name}: {}", reasons.join("; "))
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "Failures:\n{}\n", failures.join("\n"));
    }
    out
}

fn row(out: &mut String, name: &str, r: &Report) {
    let s = r.server.as_ref();
    let added = if r.mode == "direct" {
        "(baseline)".to_string()
    } else {
        let a = &r.added_latency_ms;
        format!("{:.2} / {:.2} / {:.2} / {:.2}", a.p50, a.p90, a.p99, a.max)
    };
    let direct_p99 = match (r.mode, &r.decision_latency_ms, &r.baseline_latency_ms) {
        ("direct", Some(d), _) => format!("{:.2}", d.p99),
        (_, _, Some(b)) => format!("{:.2}", b.p99),
        _ => "—".to_string(),
    };
    let _ = writeln!(
        out,
        "| {name} | {} / {} | {} | {added} | {direct_p99} | {} | {} | {} | {} / {} | {} | {} |",
        r.sessions_ok,
        r.sessions_failed,
        r.transcript_errors,
        opt(s.map(|s| s.cpu_secs_per_session_minute), 4),
        opt(s.map(|s| s.cpu_cores), 2),
        opt(r.gateway_to_emulator_cpu, 2),
        opt(s.and_then(|s| s.rss_idle_per_session_kib), 1),
        opt(s.and_then(|s| s.rss_active_per_session_kib), 1),
        opt(r.bench_tick_lag_ms.map(|p| p.p99), 2),
        machine_load(r),
    );
}

/// Machine busy cores during the window, and the load average at the start.
fn machine_load(r: &Report) -> String {
    format!(
        "{} / {}",
        opt(r.machine_busy_cores, 2),
        opt(r.load_before, 1)
    )
}

/// Replaces the marked region of `path` with `tables`.
fn write_region(path: &Path, tables: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN_MARK), text.find(END_MARK)) else {
        return Err(format!(
            "{}: no `{BEGIN_MARK}` … `{END_MARK}` region to write the tables into",
            path.display()
        ));
    };
    if end < begin {
        return Err(format!(
            "{}: {END_MARK} comes before {BEGIN_MARK}",
            path.display()
        ));
    }
    let updated = format!("{}{BEGIN_MARK}\n{tables}{}", &text[..begin], &text[end..]);
    std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        let now = chrono_like_now();
        assert_eq!(now.len(), "2025-01-01 00:00 UTC".len(), "{now}");
        assert!(now.starts_with("20"), "{now}");
    }
}
