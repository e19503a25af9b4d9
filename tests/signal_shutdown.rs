//! The real signal path of `voxgate serve`: SIGTERM to the process starts the graceful shutdown.
//! A test binary of its own, because the handler it installs is process-wide.

mod common;

use std::time::Duration;

use common::{test_config, TestServer, WAIT};
use voxgate_actors::protocol::ErrorCode;

/// SIGTERM → open sessions are warned, closed with shutting_down 1001 after the grace period,
/// and the server stops.
#[actix_rt::test]
async fn sigterm_shuts_down_gracefully() {
    let mut config = test_config();
    config.server.shutdown_grace_secs = 0.2;
    let mut server = TestServer::start(config).await;
    let addr = server.addr;
    let mut client = server.connect("/v1/listen").await;
    let signal = voxgate::server::shutdown_signal().expect("signal handlers installed");
    let serving = actix_rt::spawn(voxgate::server::serve_until(server.take_handle(), signal));
    client.quiet_for(Duration::from_millis(100)).await;
    assert!(!serving.is_finished(), "serving until the signal");
    // The shell's built-in kill: no dependency on a kill binary being installed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", std::process::id())])
        .status()
        .expect("run sh");
    assert!(status.success(), "kill -TERM {status}");
    let warning = client.expect_type("warning").await;
    assert_eq!(warning["code"], "shutting_down");
    client.expect_error(ErrorCode::ShuttingDown).await;
    let result = tokio::time::timeout(WAIT, serving).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "shutdown completes: {result:?}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
