//! The benchmark harness keeps working: `voxgate bench` against a real gateway (in front of a real
//! emulator), `--direct` against the emulator, `voxgate bench scenarios` and `voxgate bench rolling`
//! (three instances behind HAProxy, restarted in turn) end to end. These runs
//! are small and assert only that the harness works — every session held, every transcript exact,
//! the report's fields present — never speed: figures are for `docs/benchmarks.md`, not for tests.

mod common;

use common::process::{emulator, gateway, voxgate_stdout as voxgate};
use serde_json::Value;

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {stdout}"))
}

/// The figures every report has, with numbers where numbers are due.
fn assert_figures(report: &Value) {
    for key in [
        "sessions_ok",
        "sessions_failed",
        "transcript_errors",
        "finals_expected",
    ] {
        assert!(report[key].is_u64(), "{key} in {report}");
    }
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            report["added_latency_ms"][key].is_number(),
            "added_latency_ms.{key} in {report}"
        );
        assert!(
            report["decision_latency_ms"][key].is_number(),
            "decision_latency_ms.{key} in {report}"
        );
    }
    assert!(
        report["server"]["cpu_secs_per_session_minute"].is_number(),
        "{report}"
    );
    assert!(
        report["server"]["rss_active_per_session_kib"].is_number(),
        "{report}"
    );
}

/// 50 sessions of 10 s through the gateway: all held, all finals exact, figures present.
#[test]
fn bench_holds_50_sessions_through_the_gateway() {
    let emu = emulator(&[]);
    let gw = gateway(&emu, &[]);
    let url = format!("ws://{}/v1/listen", gw.addr);
    let (server, emulator_pid) = (gw.pid().to_string(), emu.pid().to_string());
    let out = voxgate(&[
        "bench",
        "--url",
        &url,
        "--sessions",
        "50",
        "--duration",
        "10",
        "--json",
        "--server-pid",
        &server,
        "--emulator-pid",
        &emulator_pid,
    ]);
    let report = report(&out);
    assert_eq!(report["sessions_ok"], 50, "{report}");
    assert_eq!(report["sessions_failed"], 0, "{report}");
    assert_eq!(report["transcript_errors"], 0, "{report}");
    assert_eq!(report["word_time_errors"], 0, "{report}");
    assert!(
        report["finals_expected"].as_u64().is_some_and(|n| n >= 50),
        "{report}"
    );
    assert_eq!(
        report["finals_received"], report["finals_expected"],
        "{report}"
    );
    assert_figures(&report);
    assert!(report["gateway_to_emulator_cpu"].is_number(), "{report}");
    assert_eq!(
        report["gateway_metrics_after"]["sessions_active"], 0,
        "{report}"
    );
}

/// Base64 audio and `--direct` work too (smaller runs).
#[test]
fn bench_runs_base64_and_direct() {
    let emu = emulator(&[]);
    let gw = gateway(&emu, &[]);
    let url = format!("ws://{}/v1/listen", gw.addr);
    let server = gw.pid().to_string();
    let out = voxgate(&[
        "bench",
        "--url",
        &url,
        "--sessions",
        "10",
        "--duration",
        "4",
        "--base64",
        "--json",
        "--server-pid",
        &server,
    ]);
    let base64 = report(&out);
    assert_eq!(
        (
            base64["sessions_ok"].as_u64(),
            base64["transcript_errors"].as_u64()
        ),
        (Some(10), Some(0)),
        "{base64}"
    );
    assert_eq!(base64["framing"], "base64");

    let endpoint = format!("http://{}", emu.addr);
    let emulator_pid = emu.pid().to_string();
    let out = voxgate(&[
        "bench",
        "--direct",
        "--endpoint",
        &endpoint,
        "--sessions",
        "10",
        "--duration",
        "4",
        "--json",
        "--server-pid",
        &emulator_pid,
    ]);
    let direct = report(&out);
    assert_eq!(
        (
            direct["sessions_ok"].as_u64(),
            direct["transcript_errors"].as_u64()
        ),
        (Some(10), Some(0)),
        "{direct}"
    );
    assert_eq!(direct["mode"], "direct");
    assert_figures(&direct);
}

/// Every one of `sessions` held, every final and word time exact.
fn assert_all_exact(report: &Value, sessions: u64) {
    assert_eq!(
        (
            report["sessions_ok"].as_u64(),
            report["transcript_errors"].as_u64(),
            report["word_time_errors"].as_u64()
        ),
        (Some(sessions), Some(0), Some(0)),
        "{report}"
    );
}

/// The bench drives Google v2 too: through a gateway on `[google] api = "v2"`, and `--direct
/// --api v2` straight to the emulator's v2 service (`--apis v2`: a v1 call would be UNIMPLEMENTED).
#[test]
fn bench_drives_v2_through_the_gateway_and_direct() {
    let emu = emulator(&["--apis", "v2"]);
    let gw = gateway(
        &emu,
        &[
            ("VOXGATE_GOOGLE__API", "v2"),
            ("VOXGATE_GOOGLE__PROJECT", "voxgate-bench"),
        ],
    );
    let url = format!("ws://{}/v1/listen", gw.addr);
    let server = gw.pid().to_string();
    let out = voxgate(&[
        "bench",
        "--url",
        &url,
        "--sessions",
        "10",
        "--duration",
        "4",
        "--json",
        "--server-pid",
        &server,
    ]);
    let through = report(&out);
    assert_all_exact(&through, 10);
    assert_figures(&through);

    let endpoint = format!("http://{}", emu.addr);
    let emulator_pid = emu.pid().to_string();
    let out = voxgate(&[
        "bench",
        "--direct",
        "--api",
        "v2",
        "--endpoint",
        &endpoint,
        "--sessions",
        "10",
        "--duration",
        "4",
        "--json",
        "--server-pid",
        &emulator_pid,
    ]);
    let direct = report(&out);
    assert_all_exact(&direct, 10);
    assert_eq!(direct["framing"], "grpc-v2", "{direct}");
    assert_figures(&direct);
}

/// `voxgate bench scenarios` starts its own processes, runs every kind of scenario (tiny), keeps
/// the JSON reports and writes the tables into the marked region of a Markdown file.
#[test]
fn scenarios_run_end_to_end_and_write_the_tables() {
    let dir = std::env::temp_dir().join(format!("voxgate-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let markdown = dir.join("benchmarks.md");
    std::fs::write(
        &markdown,
        "# Results\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nprose after\n",
    )
    .unwrap_or_else(|e| panic!("{}: {e}", markdown.display()));
    let out_dir = dir.to_string_lossy().into_owned();
    let md = markdown.to_string_lossy().into_owned();
    voxgate(&[
        "bench",
        "scenarios",
        "--sizes",
        "4",
        "--duration",
        "3",
        "--churn-slots",
        "4",
        "--churn-secs",
        "2",
        "--churn-duration",
        "4",
        "--log",
        "warn",
        "--out",
        &out_dir,
        "--markdown",
        &md,
    ]);
    for name in [
        "steady-4-direct",
        "steady-4-binary",
        "steady-4-base64",
        "churn-4-direct",
        "churn-4-binary",
        "churn-4-binary-again",
    ] {
        let path = dir.join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = report(&text);
        assert_eq!(r["sessions_failed"], 0, "{name}: {r}");
        assert_eq!(r["transcript_errors"], 0, "{name}: {r}");
    }
    let text = std::fs::read_to_string(&markdown).unwrap_or_default();
    assert!(text.contains("| steady-4-binary |"), "{text}");
    assert!(text.contains("| churn-4-binary |"), "{text}");
    assert!(!text.contains("old"), "{text}");
    assert!(
        text.ends_with("<!-- bench:end -->\n\nprose after\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `voxgate bench rolling` starts three instances behind HAProxy (the shipped configuration) and
/// restarts each in turn while 30 sessions stream through it: no session fails (every final
/// exactly once), the sessions of each drained instance moved, every instance came back. Before
/// the restarts the third instance is stopped (SIGSTOP) for 7 s, longer than its audio gap (5 s):
/// a starved gateway, which split and cut utterances before it counted only awake time
/// (docs/reliability.md, "A starved gateway").
#[test]
fn rolling_restart_through_haproxy_fails_no_session() {
    let dir = std::env::temp_dir().join(format!("voxgate-bench-rolling-{}", std::process::id()));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");
    let out = voxgate(&[
        "bench",
        "rolling",
        "--instances",
        "3",
        "--sessions",
        "30",
        "--duration",
        "30",
        "--ramp",
        "30",
        "--settle",
        "8",
        "--stall-secs",
        "7",
        "--haproxy-config",
        config,
        "--out",
        &dir.display().to_string(),
        "--json",
    ]);
    let rolling = report(&out);
    assert_eq!(rolling["sessions_failed"], 0, "{rolling}");
    assert_eq!(
        rolling["sessions_failed_after_client_stall"], 0,
        "{rolling}"
    );
    assert_eq!(rolling["sessions_ok"], 30, "{rolling}");
    assert_eq!(
        rolling["restarts"].as_array().map(Vec::len),
        Some(3),
        "{rolling}"
    );
    assert!(rolling["restart_error"].is_null(), "{rolling}");
    assert_eq!(rolling["stall_secs"], 7.0, "{rolling}");
    // Every session was on some instance that drained: each moved at least once.
    assert!(
        rolling["moves"].as_u64().is_some_and(|m| m >= 30),
        "{rolling}"
    );
    for key in ["p50", "p99"] {
        assert!(
            rolling["resume_gap_ms"][key].is_number(),
            "resume_gap_ms.{key} in {rolling}"
        );
        assert!(
            rolling["added_latency_ms"][key].is_number(),
            "added_latency_ms.{key} in {rolling}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
