//! SIGHUP reloads the TLS certificate of a running `voxgate serve`, without dropping the sessions
//! it serves. A real process, since the signal is process-wide.

mod common;

use std::time::{Duration, Instant};

use common::certs::{temp_dir, TestCa};
use common::process::Process;
use common::{start_json, try_connect, WAIT};
use serde_json::json;

#[actix_rt::test]
async fn sighup_reloads_the_certificate_and_keeps_sessions() {
    let first_ca = TestCa::new("voxgate test CA one");
    let second_ca = TestCa::new("voxgate test CA two");
    let dir = temp_dir("tls-sighup");
    let (cert, key) = first_ca.server_cert().write_to(&dir);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let gateway = Process::start(
        &["serve", "--config", "/dev/null", "--listen", "127.0.0.1:0"],
        &[
            ("VOXGATE_TLS__CERT", cert.as_str()),
            ("VOXGATE_TLS__KEY", key.as_str()),
            // Only the signal reloads.
            ("VOXGATE_TLS__RELOAD_INTERVAL_SECS", "0"),
        ],
    );
    let url = format!("wss://{}/v1/listen", gateway.addr);
    let (mut session, _) = try_connect(&url, &[], Some(first_ca.client_config()))
        .await
        .unwrap_or_else(|e| panic!("wss with the first CA: {e:?}"));
    session.send_json(&start_json()).await;
    session.expect_type("ready").await;
    assert!(
        try_connect(&url, &[], Some(second_ca.client_config()))
            .await
            .is_err(),
        "the second CA is not trusted yet"
    );

    second_ca.server_cert().write_to(&dir);
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", gateway.pid())])
        .status()
        .expect("run sh");
    assert!(status.success());
    let began = Instant::now();
    loop {
        if try_connect(&url, &[], Some(second_ca.client_config()))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            began.elapsed() < WAIT,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The session from before the reload goes on to its normal end; the process is still up.
    session.send_binary(&[0; 320]).await;
    session.send_json(&json!({"type":"stop"})).await;
    loop {
        let message = session.expect_json().await;
        if message["type"] == "closed" {
            break;
        }
        assert_ne!(message["type"], "error", "{message}");
    }
    session.expect_close(1000, "closed").await;
    assert!(gateway.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}
