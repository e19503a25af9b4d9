//! The deployment files under deploy/, checked by what checks them on this machine: the systemd
//! unit by `systemd-analyze verify` and by running `voxgate serve` under systemd's readiness
//! protocol (`Type=notify`); the Kubernetes manifests against Kubernetes' own schemas
//! (kubernetes-validate, installed by scripts/setup-test-env.sh), and the config.toml they carry
//! by voxgate's configuration loader. (The HAProxy configuration runs for real in
//! tests/deploy_haproxy.rs; the container image cannot be built here: docs/deploy.md.)

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::Process;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BINARY: &str = env!("CARGO_BIN_EXE_voxgate");

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// `systemd-analyze verify` accepts the unit as shipped (with ExecStart pointing at this build),
/// without a single warning: systemd ignores a misspelt setting with only a warning.
#[test]
fn systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(format!("{ROOT}/deploy/systemd/voxgate.service"))
        .unwrap_or_else(|e| panic!("read the unit: {e}"));
    assert!(
        unit.contains("ExecStart=/usr/local/bin/voxgate serve"),
        "{unit}"
    );
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/voxgate",
        &format!("ExecStart={BINARY}"),
    );
    let path = scratch("systemd").join("voxgate.service");
    std::fs::write(&path, unit).unwrap_or_else(|e| panic!("write the unit: {e}"));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze (scripts/setup-test-env.sh installs it): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

/// What `Type=notify` relies on: `voxgate serve` sends `READY=1` to `$NOTIFY_SOCKET` once it
/// listens, and `STOPPING=1` when SIGTERM starts the drain.
#[test]
fn serve_tells_systemd_when_ready_and_when_stopping() {
    let socket_path = scratch("notify").join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket =
        UnixDatagram::bind(&socket_path).unwrap_or_else(|e| panic!("bind notify socket: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    let notify_socket = socket_path.display().to_string();
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_RECOGNIZER__BACKEND", "emulator"),
            ("NOTIFY_SOCKET", &notify_socket),
        ],
    );
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}"));
    assert_eq!(&buf[..n], b"READY=1");
    let status = gateway.terminate();
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no STOPPING=1: {e}"));
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(status.success(), "{status:?}");
}

/// The venv scripts/setup-test-env.sh installs kubernetes-validate into.
fn kubernetes_validate_venv() -> PathBuf {
    let venv = Path::new(ROOT).join("target/test-env/kubernetes-validate");
    assert!(
        venv.join("bin/python").exists(),
        "{} is missing: run scripts/setup-test-env.sh",
        venv.display()
    );
    venv
}

/// Every manifest passes Kubernetes' schema for the oldest version it needs (1.32: the `sleep`
/// pre-stop action), strictly (an unknown or misplaced field fails).
#[test]
fn kubernetes_manifests_match_the_kubernetes_schema() {
    let venv = kubernetes_validate_venv();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(format!("{ROOT}/deploy/kubernetes"))
        .unwrap_or_else(|e| panic!("deploy/kubernetes: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 6, "{manifests:?}");
    let out = Command::new(venv.join("bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", "1.32.0"])
        .args(&manifests)
        .output()
        .unwrap_or_else(|e| panic!("kubernetes-validate: {e}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The config.toml in the ConfigMap is a valid voxgate configuration, with the Secret's
/// environment overrides applied.
#[test]
fn kubernetes_configmap_holds_a_valid_config() {
    let venv = kubernetes_validate_venv();
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['data']['config.toml'])",
            &format!("{ROOT}/deploy/kubernetes/configmap.yaml"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = scratch("configmap").join("config.toml");
    std::fs::write(&path, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let key_hash = format!("sha256:{}", "0".repeat(64));
    let env = [
        (
            "VOXGATE_AUTH__API_KEYS".to_string(),
            format!("[\"{key_hash}\"]"),
        ),
        ("VOXGATE_AUTH__TOKEN_SECRET".to_string(), "x".repeat(32)),
    ];
    let config = voxgate::config::Config::load(&path, true, env)
        .unwrap_or_else(|e| panic!("the ConfigMap's config.toml: {e}"));
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.server.shutdown_grace_secs, 30.0);
}
