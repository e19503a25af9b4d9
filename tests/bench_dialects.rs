//! `voxgate bench --dialect` keeps working for every dialect: against a real gateway in front of
//! a real emulator, each run holds its sessions with every final exact, natively and through the
//! dialect, and reports both runs' server CPU per session-minute. Small runs, asserting only that
//! the harness works — never speed (figures are for `docs/benchmarks.md`).

mod common;

use std::process::{Command, Stdio};

use common::process::{emulator, gateway};
use serde_json::Value;

/// `voxgate bench --dialect DIALECT EXTRA… --json` against `url`; the comparison it prints.
fn bench_dialect(url: &str, server_pid: &str, dialect: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "bench",
        "--url",
        url,
        "--dialect",
        dialect,
        "--sessions",
        "8",
        "--duration",
        "4",
        "--idle-secs",
        "0.5",
        "--json",
        "--server-pid",
        server_pid,
    ];
    args.extend_from_slice(extra);
    let output = Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run voxgate {args:?}: {e}"));
    assert!(
        output.status.success(),
        "voxgate {args:?}: {:?}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}

/// Every dialect (the four at once, on one gateway): both runs held, every final exact, the CPU
/// figures and their difference present, the dialect's run framed by its name.
#[test]
fn every_dialect_is_benched_beside_a_native_run() {
    let emu = emulator(&[]);
    let gw = gateway(&emu, &[]);
    let url = format!("ws://{}/v1/listen", gw.addr);
    let pid = gw.pid().to_string();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("deepgram", vec![]),
        ("openai", vec!["--rate", "24000"]),
        ("jambonz", vec!["--rate", "8000"]),
        ("vosk", vec![]),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(dialect, extra)| {
                let (url, pid) = (&url, &pid);
                scope.spawn(move || (*dialect, bench_dialect(url, pid, dialect, extra)))
            })
            .collect();
        for handle in handles {
            let (dialect, comparison) = handle
                .join()
                .unwrap_or_else(|_| panic!("a bench thread panicked"));
            assert_eq!(comparison["dialect"], dialect, "{comparison}");
            for (run, framing) in [
                (
                    "native",
                    if dialect == "openai" {
                        "base64"
                    } else {
                        "binary"
                    },
                ),
                ("dialect_run", dialect),
            ] {
                let report = &comparison[run];
                assert_eq!(report["framing"], framing, "{dialect} {run}: {report}");
                assert_eq!(report["sessions_ok"], 8, "{dialect} {run}: {report}");
                assert_eq!(report["transcript_errors"], 0, "{dialect} {run}: {report}");
                assert_eq!(report["word_time_errors"], 0, "{dialect} {run}: {report}");
                assert!(
                    report["finals_expected"].as_u64().is_some_and(|n| n >= 8),
                    "{report}"
                );
                assert_eq!(report["finals_received"], report["finals_expected"]);
            }
            for key in [
                "native_cpu_per_session_minute",
                "dialect_cpu_per_session_minute",
                "dialect_cpu_extra_percent",
            ] {
                assert!(comparison[key].is_number(), "{key}: {comparison}");
            }
        }
    });
}
