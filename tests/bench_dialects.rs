//! `voxgate bench --dialect` keeps working for every dialect: against a real gateway in front of
//! a real emulator, each run holds its sessions with every final exact, natively and through the
//! dialect, and reports both runs' server CPU per session-minute; Twilio calls get every final of
//! both tracks by webhook at the bench's own receiver. Small runs, asserting only that
//! the harness works — never speed (figures are for `docs/benchmarks.md`).

mod common;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use common::process::{emulator, gateway, voxgate_stdout_with_stdin};
use common::telephony::telephony_gateway;
use serde_json::Value;

/// `voxgate bench --dialect DIALECT EXTRA… --json` against `url` (`stdin` its standard input);
/// the comparison it prints.
fn bench_dialect(
    url: &str,
    server_pid: &str,
    dialect: &str,
    extra: &[&str],
    stdin: Stdio,
) -> Value {
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
    let stdout = voxgate_stdout_with_stdin(&args, stdin);
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
                scope.spawn(move || {
                    let comparison = bench_dialect(url, pid, dialect, extra, Stdio::null());
                    (*dialect, comparison)
                })
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

/// `--dialect twilio`: calls with both tracks (μ-law 8 kHz, 20 ms frames) whose finals come by
/// webhook to the receiver the bench starts: every call held, every final of both tracks
/// delivered and exact, the latency and CPU figures present.
#[test]
fn twilio_calls_are_benched_with_finals_by_webhook() {
    let emu = emulator(&[]);
    // The receiver's port must be in the gateway's allow-list before the bench starts: the test
    // binds it and hands the listening socket to the bench as its standard input, so the port
    // stays taken throughout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no port: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no address: {e}"))
        .port();
    let allow =
        format!("allow = [\"http://127.0.0.1:{port}/\"]\n[dialects.twilio]\nallow_unsigned = true");
    let gw = telephony_gateway(&emu, &[], &allow);
    let url = format!("ws://{}/v1/listen", gw.addr);
    let pid = gw.pid().to_string();
    let extra = [
        "--encoding",
        "mulaw",
        "--rate",
        "8000",
        "--frame-ms",
        "20",
        "--webhook-listen",
        "stdin",
    ];
    let stdin = Stdio::from(OwnedFd::from(listener));
    let report = bench_dialect(&url, &pid, "twilio", &extra, stdin);
    assert_eq!(report["framing"], "twilio", "{report}");
    assert_eq!(report["sessions_ok"], 8, "{report}");
    assert_eq!(report["transcript_errors"], 0, "{report}");
    assert_eq!(report["word_time_errors"], 0, "{report}");
    assert!(
        report["finals_expected"].as_u64().is_some_and(|n| n >= 16),
        "two tracks of 8 calls: {report}"
    );
    assert_eq!(
        report["finals_received"], report["finals_expected"],
        "{report}"
    );
    assert!(report["decision_latency_ms"]["p99"].is_number(), "{report}");
    assert!(
        report["server"]["cpu_secs_per_session_minute"].is_number(),
        "{report}"
    );
}
