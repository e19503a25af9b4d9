//! `voxgate bench`: a load generator that proves (or disproves) the gateway's scale. It opens N
//! concurrent sessions against a running gateway — or, with `--direct`, straight against the
//! emulator over gRPC, the ceiling — streams emulator-encoded audio paced at real time, checks every
//! final transcript (and its word times) exactly, and reports sessions held and failed, the
//! latency the gateway adds, the server's CPU per session-minute and RSS per session. `voxgate
//! bench scenarios` starts an emulator and a gateway itself and runs the standard scenarios of
//! `docs/benchmarks.md`, which defines every figure.
//!
//! Layout:
//! - [`script`]: the audio every session sends and the finals it must get back (exactly).
//! - `ws`: the bench's own minimal WebSocket client (frames encoded once, sent with one write).
//! - `dialect`: the client side of each protocol the bench speaks (`--dialect`).
//! - `pacer`: real-time pacing — one ticker per group of sessions, not one timer per session.
//! - `load`: one session through the gateway; [`direct`]: one session straight to the emulator
//!   (Speech v1 or v2, `--api`).
//! - [`measure`]: the check of each final, latency samples, percentiles, totals.
//! - `process`: CPU and RSS of the server (and emulator) from `/proc`, the gateway's gauges.
//! - [`run`]: a run's phases (baseline, ramp, idle, streaming, after) and readings.
//! - `shared`: what the sessions of one run share (script, pacer, collector, "go", settling).
//! - [`report`]: the figures, as a table or JSON.
//! - `scenarios`: the standard scenarios, with their own emulator and gateway processes.
//! - `speech`: `voxgate bench speech`, the local engine on real speech (sessions carried, final
//!   latency).
//! - `resume`: `voxgate bench resume`, sessions whose connections are cut and resumed (the resume
//!   gap).
//! - `rolling`: `voxgate bench rolling`, a rolling restart of several instances behind HAProxy
//!   (`balancer`) under load, each session following its server (`follow`).
//! - `telephony`: `--dialect twilio`, calls whose finals come by webhook to a receiver the bench
//!   starts.

mod balancer;
pub mod dialect;
pub mod direct;
mod follow;
mod load;
pub mod measure;
mod pacer;
mod process;
pub mod report;
mod resume;
mod rolling;
pub mod run;
mod scenarios;
pub mod script;
mod shared;
mod speech;
mod telephony;
mod ws;

use std::path::PathBuf;

use dialect::BenchDialect;
use direct::DirectApi;
use measure::Percentiles;
use report::{DialectComparison, Report};
use run::{RunSpec, Target};
use script::ScriptFormat;
use voxgate_emulator::synth::SynthEncoding;

pub use resume::ResumeArgs;
pub use rolling::RollingArgs;
pub use scenarios::ScenarioArgs;

/// `voxgate bench` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `voxgate bench` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Start an emulator and a gateway on loopback and run the standard scenarios (see
    /// docs/benchmarks.md); print their tables, optionally write them into a Markdown file.
    Scenarios(ScenarioArgs),
    /// Start `voxgate serve` with the local engine and stream real speech at rising numbers of
    /// sessions: sessions carried, final latency, CPU (see docs/benchmarks.md).
    Speech(speech::SpeechArgs),
    /// Against a running gateway: sessions whose connections are cut at random and resumed;
    /// the time from the lost connection to the next final (see docs/benchmarks.md).
    Resume(ResumeArgs),
    /// Start N instances behind HAProxy (the shipped configuration) and restart each in turn
    /// while M sessions stream through it: sessions failed, resume gap, added latency (see
    /// docs/benchmarks.md).
    Rolling(RollingArgs),
}

/// One benchmark run.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// The gateway's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/listen")]
    pub url: String,
    /// Stream straight to the emulator over gRPC (at --endpoint), no gateway: the baseline.
    #[arg(long)]
    pub direct: bool,
    /// The emulator for --direct.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// The Speech API version --direct calls: `v1` or `v2` (the emulator serves both). Through a
    /// gateway, its `[google] api` decides.
    #[arg(long, default_value = "v1", value_parser = DirectApi::parse)]
    pub api: DirectApi,
    /// Concurrent sessions (with --churn: concurrent slots, each opening session after session).
    #[arg(long, default_value_t = 100)]
    pub sessions: u64,
    /// Seconds of audio each session streams (whole utterances, at least one); with --churn, how
    /// long the churn goes on.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Sessions opened per second while ramping up.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp: f64,
    /// Connection churn: sessions of about SECS seconds of audio, each followed at once by the
    /// next, for --duration seconds.
    #[arg(long, value_name = "SECS")]
    pub churn: Option<f64>,
    /// Before streaming, every session stays open and idle (started, no audio) this long.
    #[arg(long, default_value_t = 2.0)]
    pub idle_secs: f64,
    /// Send audio as base64 JSON `audio` messages instead of binary frames.
    #[arg(long)]
    pub base64: bool,
    /// Speak a vendor dialect (deepgram, openai, jambonz, vosk) on its path of --url's gateway,
    /// after a native run of the same load on the same gateway, and compare the server's CPU per
    /// session-minute (native binary; native base64 for openai, whose audio is base64). `twilio`:
    /// phone calls (both tracks, μ-law 8 kHz) whose finals come by webhook to a receiver the
    /// bench starts on loopback; no native run (see docs/benchmarks.md).
    #[arg(long, default_value = "native", value_parser = BenchDialect::parse)]
    pub dialect: BenchDialect,
    /// `--dialect twilio`: where the bench's webhook receiver listens; the gateway's `[webhooks]
    /// allow` must name it (`http://127.0.0.1:PORT/`). `stdin`: a socket already listening,
    /// given as standard input (bound by whoever named its port to the gateway).
    #[arg(long, default_value = "127.0.0.1:9099")]
    pub webhook_listen: String,
    /// Ask for final results only (no interim results).
    #[arg(long)]
    pub finals_only: bool,
    /// Audio per message, in ms.
    #[arg(long, default_value_t = 100)]
    pub frame_ms: u64,
    /// Sample rate, Hz.
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// `linear16`, `mulaw` or `alaw` (the gateway must take it: alaw needs Google v2).
    #[arg(long, default_value = "linear16", value_parser = parse_encoding)]
    pub encoding: SynthEncoding,
    /// The server's pid, to read its CPU time and RSS from /proc (the gateway, or with --direct
    /// the emulator).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The emulator's pid behind a gateway, to compare the gateway's CPU with the emulator's.
    #[arg(long)]
    pub emulator_pid: Option<u32>,
    /// JSON report of a --direct run of the same load: its latency is subtracted to give the
    /// gateway's added latency.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Threads of the bench's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Pacing groups (one timer each) over which sessions are spread.
    #[arg(long, default_value_t = 20)]
    pub groups: usize,
    /// Length of the audio script before it repeats, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub loop_secs: f64,
}

fn parse_encoding(name: &str) -> Result<SynthEncoding, String> {
    SynthEncoding::parse(name).ok_or_else(|| format!("{name:?}: expected linear16, mulaw or alaw"))
}

impl LoadArgs {
    /// The run these arguments describe.
    pub fn spec(&self) -> Result<RunSpec, String> {
        let target = if self.direct {
            Target::Direct {
                endpoint: self.endpoint.clone(),
                api: self.api,
            }
        } else {
            let format = self.format();
            self.dialect.check_format(&format)?;
            let mut url = ws::WsUrl::parse(&self.url)?;
            url.path = self.dialect.path(&url.path, &format, !self.finals_only);
            Target::Gateway {
                url,
                base64: self.base64,
                dialect: self.dialect,
            }
        };
        if self.duration.is_nan() || self.duration < 0.0 {
            return Err("--duration must be a number of seconds".to_string());
        }
        if self.churn.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err("--churn must be a positive number of seconds".to_string());
        }
        Ok(RunSpec {
            target,
            sessions: self.sessions,
            duration_secs: self.duration,
            ramp_per_sec: self.ramp,
            churn_secs: self.churn,
            idle_secs: self.idle_secs,
            interim: !self.finals_only,
            format: self.format(),
            groups: self.groups,
            loop_secs: self.loop_secs,
            server_pid: self.server_pid,
            emulator_pid: self.emulator_pid,
            webhook_listen: self.webhook_listen.clone(),
        })
    }
}

impl LoadArgs {
    fn format(&self) -> ScriptFormat {
        ScriptFormat {
            sample_rate_hz: self.rate,
            encoding: self.encoding,
            frame_ms: self.frame_ms,
        }
    }

    /// The native run a dialect run is compared with: the same load, on the native path.
    fn native_twin(&self) -> LoadArgs {
        LoadArgs {
            dialect: BenchDialect::Native,
            base64: self.dialect == BenchDialect::OpenAi,
            ..self.clone()
        }
    }
}

/// The decision latency of a previous `--direct` run's JSON report.
pub fn read_baseline(path: &std::path::Path) -> Result<Percentiles, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--baseline {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("--baseline {}: not JSON: {e}", path.display()))?;
    let latency = value
        .get("decision_latency_ms")
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            format!(
                "--baseline {}: no decision_latency_ms (is it a bench report?)",
                path.display()
            )
        })?;
    serde_json::from_value(latency.clone())
        .map_err(|e| format!("--baseline {}: decision_latency_ms: {e}", path.display()))
}

/// Runs one benchmark and returns its report.
pub fn run_load(args: &LoadArgs) -> Result<Report, String> {
    let spec = args.spec()?;
    let baseline = args.baseline.as_deref().map(read_baseline).transpose()?;
    let result = run::run(spec, args.threads)?;
    Ok(Report::new(result, baseline))
}

/// Runs `voxgate bench …`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    match args.command {
        Some(BenchCommand::Scenarios(scenarios)) => scenarios::run(&scenarios),
        Some(BenchCommand::Speech(speech)) => speech::run(&speech),
        Some(BenchCommand::Resume(resume)) => {
            let report = resume::run(&resume)?;
            if resume.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            if report.all_resumed() {
                Ok(())
            } else {
                Err("some sessions did not resume with every final exactly once".into())
            }
        }
        Some(BenchCommand::Rolling(rolling)) => {
            let report = rolling::run(&rolling)?;
            if rolling.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            if report.passed() {
                Ok(())
            } else {
                Err("the rolling restart failed sessions or an instance".into())
            }
        }
        None if !matches!(
            args.load.dialect,
            BenchDialect::Native | BenchDialect::Twilio
        ) && !args.load.direct =>
        {
            let native = run_load(&args.load.native_twin())?;
            let dialect = run_load(&args.load)?;
            let comparison = DialectComparison::new(args.load.dialect, native, dialect);
            if args.load.json {
                println!("{}", comparison.to_json());
            } else {
                print!("{}", comparison.to_table());
            }
            Ok(())
        }
        None => {
            let report = run_load(&args.load)?;
            if args.load.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            Ok(())
        }
    }
}
