//! What the bench reads about the processes under test: CPU time and resident memory of a pid from
//! `/proc/PID/stat` and `/proc/PID/status` (Linux), the bench's own CPU time, and the gateway's
//! session and stream gauges from its `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// User + system CPU time since the process started, seconds.
    pub cpu_secs: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Reads `pid`'s CPU time and RSS.
pub fn sample(pid: u32) -> Result<ProcSample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let cpu_secs = parse_cpu_ticks(&stat)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))? as f64
        / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let rss_kib =
        parse_rss_kib(&status).ok_or_else(|| format!("/proc/{pid}/status: no VmRSS line"))?;
    Ok(ProcSample { cpu_secs, rss_kib })
}

/// The bench's own CPU time so far, seconds.
pub fn own_cpu_secs() -> f64 {
    sample(std::process::id()).map_or(0.0, |s| s.cpu_secs)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line; the command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: field 3 (state) is the first; utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Whole-machine CPU counters from `/proc/stat`: busy and total time, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineCpu {
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

/// Reads the machine's CPU counters (all CPUs together).
pub fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_cpu(&stat)
}

fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some(MachineCpu {
        busy_ticks: total.saturating_sub(idle),
        total_ticks: total,
    })
}

impl MachineCpu {
    /// Busy cores on average between `self` and `later` over `secs` of wall time.
    pub fn busy_cores_until(&self, later: &MachineCpu, secs: f64) -> f64 {
        if secs <= 0.0 {
            return 0.0;
        }
        later.busy_ticks.saturating_sub(self.busy_ticks) as f64 / clock_ticks() / secs
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The gateway's gauges and counters of interest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GatewayMetrics {
    /// `voxgate_sessions_active`: session actors alive.
    pub sessions_active: i64,
    /// `voxgate_streams_active`: recognizer actors (upstream calls) alive.
    pub streams_active: i64,
    /// Sum of `voxgate_stream_restarts_total`.
    pub stream_restarts: u64,
    /// Sum of `voxgate_errors_total`.
    pub errors: u64,
}

/// Reads `GET /metrics` of the gateway at `addr`.
pub async fn gateway_metrics(addr: SocketAddr) -> Result<GatewayMetrics, String> {
    let fetch = async {
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("metrics: connect: {e}"))?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("metrics: {e}"))?;
        let mut body = Vec::new();
        socket
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("metrics: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| "metrics: no answer within 10 s".to_string())??;
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "metrics: {}",
            text.lines().next().unwrap_or("no status line")
        ));
    }
    Ok(parse_metrics(&text))
}

fn parse_metrics(text: &str) -> GatewayMetrics {
    let mut metrics = GatewayMetrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let base = name.split('{').next().unwrap_or(name);
        match base {
            "voxgate_sessions_active" => metrics.sessions_active = value as i64,
            "voxgate_streams_active" => metrics.streams_active = value as i64,
            "voxgate_stream_restarts_total" => metrics.stream_restarts += value as u64,
            "voxgate_errors_total" => metrics.errors += value as u64,
            _ => {}
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "4242 (voxgate (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(
            parse_rss_kib("Name:\tx\nVmRSS:\t  12345 kB\n"),
            Some(12_345)
        );
    }

    #[test]
    fn the_bench_can_read_itself() {
        let me = sample(std::process::id());
        assert!(me.as_ref().is_ok_and(|s| s.rss_kib > 0), "{me:?}");
    }

    #[test]
    fn machine_cpu_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 10 50 800 40 0 5 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            parse_machine_cpu(stat),
            Some(MachineCpu {
                busy_ticks: 165,
                total_ticks: 1005
            })
        );
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "HTTP/1.1 200 OK\r\n\r\n# HELP x\nvoxgate_sessions_active 3\n\
                    voxgate_streams_active 2\nvoxgate_stream_restarts_total{code=\"UNAVAILABLE\"} 4\n\
                    voxgate_stream_restarts_total{code=\"INTERNAL\"} 1\nvoxgate_errors_total{code=\"internal\"} 7\n";
        assert_eq!(
            parse_metrics(text),
            GatewayMetrics {
                sessions_active: 3,
                streams_active: 2,
                stream_restarts: 5,
                errors: 7
            }
        );
    }
}
