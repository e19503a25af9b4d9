//! The run's figures: computed from what [`super::run`] measured, printed as a table for people or
//! as JSON (`--json`) for scripts and for the scenario runner. Every figure is defined in
//! `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::dialect::BenchDialect;
use super::direct::DirectApi;
use super::measure::Percentiles;
use super::process::GatewayMetrics;
use super::run::{ProcReadings, RunResult, Target};

/// A server process's figures over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub pid: u32,
    /// CPU seconds (user + system) used during the measured window.
    pub cpu_secs: f64,
    /// `cpu_secs` per minute of audio streamed by all sessions together.
    pub cpu_secs_per_session_minute: f64,
    /// Share of one core over the window.
    pub cpu_cores: f64,
    pub rss_baseline_kib: u64,
    pub rss_idle_kib: Option<u64>,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    /// (idle − baseline) / sessions ready.
    pub rss_idle_per_session_kib: Option<f64>,
    /// (peak − baseline) / sessions ready.
    pub rss_active_per_session_kib: Option<f64>,
}

/// Churn figures.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnFigures {
    /// Seconds of audio per session.
    pub session_secs: f64,
    pub sessions_opened: u64,
    /// Sessions opened per second of the churn's measured window.
    pub opened_per_sec: f64,
    /// Sessions that ran to `closed` per second.
    pub completed_per_sec: f64,
}

/// Everything a run reports. `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `gateway` or `direct`.
    pub mode: &'static str,
    pub target: String,
    /// `binary`, `base64`, `grpc`, or the dialect's name (`deepgram`, `openai`, …).
    pub framing: &'static str,
    pub sessions: u64,
    pub duration_secs: f64,
    pub ramp_per_sec: f64,
    pub frame_ms: u64,
    pub sample_rate_hz: u32,
    pub encoding: &'static str,
    pub interim_results: bool,

    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Failure reason → sessions.
    pub failures: BTreeMap<String, u64>,
    pub transcript_errors: u64,
    pub word_time_errors: u64,
    pub finals_expected: u64,
    pub finals_received: u64,
    /// Warning code → count.
    pub warnings: BTreeMap<String, u64>,
    /// Upstream stream restarts reported in `closed` messages.
    pub restarts: u64,

    /// `decision_latency_ms − baseline_latency_ms`, percentile by percentile; without a
    /// baseline, the decision latency itself (an upper bound: it includes the recogniser's own
    /// time).
    pub added_latency_ms: Percentiles,
    /// Per word: from the send of the frame that let the recogniser decide the word's final to
    /// the final's arrival.
    pub decision_latency_ms: Option<Percentiles>,
    /// The decision latency of a direct run (`--baseline`), if one was given.
    pub baseline_latency_ms: Option<Percentiles>,
    /// Per word: from the send of the frame holding the word's last sample to its final's
    /// arrival (includes the recogniser's 300 ms endpointing wait).
    pub word_latency_ms: Option<Percentiles>,
    /// How late the bench's own pacing ticks fired (its health, not the server's).
    pub bench_tick_lag_ms: Option<Percentiles>,

    /// Audio streamed by all sessions, seconds, and in session-minutes.
    pub audio_secs: f64,
    pub session_minutes: f64,
    pub wall_secs: f64,
    /// The measured window: from go (churn: the start) to the last session's end.
    pub window_secs: f64,
    pub server: Option<ProcessFigures>,
    pub emulator: Option<ProcessFigures>,
    /// Server CPU / emulator CPU over the window (both pids given).
    pub gateway_to_emulator_cpu: Option<f64>,
    pub churn: Option<ChurnFigures>,
    pub gateway_metrics_before: Option<GatewayMetrics>,
    pub gateway_metrics_idle: Option<GatewayMetrics>,
    pub gateway_metrics_after: Option<GatewayMetrics>,
    pub bench_cpu_secs: f64,
    /// Whole-machine busy cores over the window: with the server's, emulator's and bench's CPU
    /// it tells how much else was running (the machine may be shared).
    pub machine_busy_cores: Option<f64>,
    /// 1-minute load average before and after the run.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

fn process_figures(
    pid: u32,
    r: &ProcReadings,
    ready: u64,
    session_minutes: f64,
    window_secs: f64,
) -> ProcessFigures {
    let cpu_secs = (r.window_end.cpu_secs - r.window_start.cpu_secs).max(0.0);
    let per_session =
        |kib: u64| (ready > 0).then(|| (kib as f64 - r.before.rss_kib as f64) / ready as f64);
    ProcessFigures {
        pid,
        cpu_secs,
        cpu_secs_per_session_minute: if session_minutes > 0.0 {
            cpu_secs / session_minutes
        } else {
            0.0
        },
        cpu_cores: if window_secs > 0.0 {
            cpu_secs / window_secs
        } else {
            0.0
        },
        rss_baseline_kib: r.before.rss_kib,
        rss_idle_kib: r.idle.map(|s| s.rss_kib),
        rss_peak_kib: r.peak_rss_kib,
        rss_after_kib: r.after.rss_kib,
        rss_idle_per_session_kib: r.idle.and_then(|s| per_session(s.rss_kib)),
        rss_active_per_session_kib: per_session(r.peak_rss_kib),
    }
}

impl Report {
    /// The figures of `result`; `baseline` is the decision latency of a direct run.
    pub fn new(mut result: RunResult, baseline: Option<Percentiles>) -> Report {
        let spec = &result.spec;
        let totals = &mut result.totals;
        let (mode, target, framing) = match &spec.target {
            Target::Gateway {
                url,
                base64,
                dialect,
            } => (
                "gateway",
                format!("ws://{}{}", url.authority, url.path),
                match dialect {
                    BenchDialect::Native if *base64 => "base64",
                    BenchDialect::Native => "binary",
                    other => other.name(),
                },
            ),
            Target::Direct { endpoint, api } => (
                "direct",
                endpoint.clone(),
                match api {
                    DirectApi::V1 => "grpc",
                    DirectApi::V2 => "grpc-v2",
                },
            ),
        };
        let decision = Percentiles::of_micros(&mut totals.decision_us);
        let added = match (decision, baseline) {
            (Some(d), Some(b)) => d.minus(&b),
            (Some(d), None) => d,
            (None, _) => Percentiles::default(),
        };
        let session_minutes = totals.audio_secs / 60.0;
        let ready = totals.sessions_ready;
        let window = result.window_secs;
        let server = match (spec.server_pid, &result.server) {
            (Some(pid), Some(r)) => Some(process_figures(pid, r, ready, session_minutes, window)),
            _ => None,
        };
        let emulator = match (spec.emulator_pid, &result.emulator) {
            (Some(pid), Some(r)) => Some(process_figures(pid, r, ready, session_minutes, window)),
            _ => None,
        };
        let ratio = match (&server, &emulator) {
            (Some(s), Some(e)) if e.cpu_secs > 0.0 => Some(s.cpu_secs / e.cpu_secs),
            _ => None,
        };
        let churn = spec.churn_secs.map(|session_secs| ChurnFigures {
            session_secs,
            sessions_opened: result.sessions_opened,
            opened_per_sec: if window > 0.0 {
                result.sessions_opened as f64 / window
            } else {
                0.0
            },
            completed_per_sec: if window > 0.0 {
                totals.sessions_ok as f64 / window
            } else {
                0.0
            },
        });
        Report {
            mode,
            target,
            framing,
            sessions: spec.sessions,
            duration_secs: spec.duration_secs,
            ramp_per_sec: spec.ramp_per_sec,
            frame_ms: spec.format.frame_ms,
            sample_rate_hz: spec.format.sample_rate_hz,
            encoding: spec.format.encoding_name(),
            interim_results: spec.interim,
            sessions_ok: totals.sessions_ok,
            sessions_failed: totals.sessions_failed,
            failures: std::mem::take(&mut totals.failures),
            transcript_errors: totals.transcript_errors,
            word_time_errors: totals.word_time_errors,
            finals_expected: totals.finals_expected,
            finals_received: totals.finals_received,
            warnings: std::mem::take(&mut totals.warnings),
            restarts: totals.restarts,
            added_latency_ms: added,
            decision_latency_ms: decision,
            baseline_latency_ms: baseline,
            word_latency_ms: Percentiles::of_micros(&mut totals.word_us),
            bench_tick_lag_ms: Percentiles::of_micros(&mut result.tick_lag_us),
            audio_secs: totals.audio_secs,
            session_minutes,
            wall_secs: result.wall_secs,
            window_secs: window,
            server,
            emulator,
            gateway_to_emulator_cpu: ratio,
            churn,
            gateway_metrics_before: result.metrics_before,
            gateway_metrics_idle: result.metrics_idle,
            gateway_metrics_after: result.metrics_after,
            bench_cpu_secs: result.bench_cpu_secs,
            machine_busy_cores: result.machine_busy_cores,
            load_before: result.load_before,
            load_after: result.load_after,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let p = |p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  max {:>8.2}  (n={})",
                p.p50, p.p90, p.p99, p.max, p.count
            ),
            None => "—".to_string(),
        };
        let _ =
            writeln!(
            out,
            "voxgate bench — {} {} ({}), {} sessions{}, {} s, ramp {}/s, {} ms frames, {} Hz {}{}",
            self.mode,
            self.target,
            self.framing,
            self.sessions,
            match &self.churn {
                Some(c) => format!(" (churn slots of {} s)", c.session_secs),
                None => String::new(),
            },
            self.duration_secs,
            self.ramp_per_sec,
            self.frame_ms,
            self.sample_rate_hz,
            self.encoding,
            if self.interim_results { ", interim results" } else { "" },
        );
        let _ = writeln!(out, "  sessions held          {}", self.sessions_ok);
        let _ = writeln!(out, "  sessions failed        {}", self.sessions_failed);
        for (reason, n) in &self.failures {
            let _ = writeln!(out, "    {n:>6} × {reason}");
        }
        let _ = writeln!(
            out,
            "  transcript errors      {}   (finals {}/{} received; word-time errors {})",
            self.transcript_errors,
            self.finals_received,
            self.finals_expected,
            self.word_time_errors
        );
        if !self.warnings.is_empty() || self.restarts > 0 {
            let warnings: Vec<String> = self
                .warnings
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect();
            let _ = writeln!(
                out,
                "  warnings / restarts    {} / {}",
                if warnings.is_empty() {
                    "none".to_string()
                } else {
                    warnings.join(", ")
                },
                self.restarts
            );
        }
        let _ = writeln!(out, "  latency (ms)");
        let _ = writeln!(
            out,
            "    added                {}",
            p(&Some(self.added_latency_ms))
        );
        let _ = writeln!(
            out,
            "    decision → final     {}",
            p(&self.decision_latency_ms)
        );
        let _ = writeln!(
            out,
            "    baseline (direct)    {}",
            p(&self.baseline_latency_ms)
        );
        let _ = writeln!(out, "    word end → final     {}", p(&self.word_latency_ms));
        let _ = writeln!(
            out,
            "    bench tick lag       {}",
            p(&self.bench_tick_lag_ms)
        );
        let _ = writeln!(
            out,
            "  audio                  {:.0} s ({:.1} session-minutes) in a {:.1} s window ({:.1} s wall)",
            self.audio_secs, self.session_minutes, self.window_secs, self.wall_secs
        );
        for (name, figures) in [("server", &self.server), ("emulator", &self.emulator)] {
            let Some(f) = figures else { continue };
            let _ = writeln!(
                out,
                "  {name:<8} pid {:<8} CPU {:.2} s ({:.2} cores), {:.4} s per session-minute",
                f.pid, f.cpu_secs, f.cpu_cores, f.cpu_secs_per_session_minute
            );
            let kib = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "           RSS KiB: baseline {}, idle {}, peak {}, after {}; per session: idle {}, active {}",
                f.rss_baseline_kib,
                f.rss_idle_kib.map_or("—".to_string(), |v| v.to_string()),
                f.rss_peak_kib,
                f.rss_after_kib,
                kib(f.rss_idle_per_session_kib),
                kib(f.rss_active_per_session_kib)
            );
        }
        if let Some(ratio) = self.gateway_to_emulator_cpu {
            let _ = writeln!(out, "  gateway CPU / emulator CPU  {ratio:.2}");
        }
        if let Some(c) = &self.churn {
            let _ = writeln!(
                out,
                "  churn                  {} opened: {:.0}/s opened, {:.0}/s completed",
                c.sessions_opened, c.opened_per_sec, c.completed_per_sec
            );
        }
        for (name, m) in [
            ("before", &self.gateway_metrics_before),
            ("idle", &self.gateway_metrics_idle),
            ("after", &self.gateway_metrics_after),
        ] {
            let Some(m) = m else { continue };
            let _ = writeln!(
                out,
                "  gateway gauges {name:<7} sessions_active {}, streams_active {}, restarts {}, errors {}",
                m.sessions_active, m.streams_active, m.stream_restarts, m.errors
            );
        }
        let _ = writeln!(
            out,
            "  bench CPU              {:.2} s ({:.2} cores over the wall time)",
            self.bench_cpu_secs,
            if self.wall_secs > 0.0 {
                self.bench_cpu_secs / self.wall_secs
            } else {
                0.0
            }
        );
        let _ = writeln!(
            out,
            "  machine                {} busy cores in the window; load average {} → {}",
            self.machine_busy_cores
                .map_or("—".to_string(), |c| format!("{c:.2}")),
            self.load_before
                .map_or("—".to_string(), |l| format!("{l:.2}")),
            self.load_after
                .map_or("—".to_string(), |l| format!("{l:.2}")),
        );
        out
    }
}

/// `voxgate bench --dialect X`: a native run and a run of the dialect, of the same load on the
/// same gateway, one after the other, and how their server CPU per session-minute compares
/// (issue 12's budget: a dialect session at most 10 % above a native one).
#[derive(Debug, Clone, Serialize)]
pub struct DialectComparison {
    pub dialect: &'static str,
    pub native: Report,
    #[serde(rename = "dialect_run")]
    pub dialect_report: Report,
    /// Server CPU s per session-minute, native and dialect (`--server-pid` given).
    pub native_cpu_per_session_minute: Option<f64>,
    pub dialect_cpu_per_session_minute: Option<f64>,
    /// dialect ÷ native − 1, in percent.
    pub dialect_cpu_extra_percent: Option<f64>,
}

impl DialectComparison {
    pub fn new(dialect: BenchDialect, native: Report, dialect_report: Report) -> DialectComparison {
        let per_minute = |r: &Report| r.server.as_ref().map(|s| s.cpu_secs_per_session_minute);
        let (n, d) = (per_minute(&native), per_minute(&dialect_report));
        DialectComparison {
            dialect: dialect.name(),
            dialect_cpu_extra_percent: match (n, d) {
                (Some(n), Some(d)) if n > 0.0 => Some((d / n - 1.0) * 100.0),
                _ => None,
            },
            native_cpu_per_session_minute: n,
            dialect_cpu_per_session_minute: d,
            native,
            dialect_report,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Both runs' tables, then the comparison.
    pub fn to_table(&self) -> String {
        let mut out = self.native.to_table();
        out.push('\n');
        out.push_str(&self.dialect_report.to_table());
        let figure = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            out,
            "\nserver CPU s per session-minute: native ({}) {}, {} {}; {} costs {} per session-minute",
            self.native.framing,
            figure(self.native_cpu_per_session_minute),
            self.dialect,
            figure(self.dialect_cpu_per_session_minute),
            self.dialect,
            self.dialect_cpu_extra_percent
                .map_or("— (give --server-pid)".to_string(), |p| format!("{p:+.1} %")),
        );
        out
    }
}
