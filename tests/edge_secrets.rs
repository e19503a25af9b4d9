//! Secrets (API keys, the token secret, session tokens) never appear in logs, error messages,
//! HTTP bodies or metrics, whatever a client does with them. A test binary of its own: it installs
//! the process-wide log subscriber, at the most verbose level, and reads everything logged.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use common::{http_request, key_hash_entry, start_json, test_config, TestServer};
use serde_json::Value;
use voxgate::config::Secret;
use voxgate::server::tokens::{unix_now, Claims, TokenSigner};
use voxgate_actors::protocol::ErrorCode;

const KEY: &str = "sk-voxgate-key-7f3a9c1e5b2d4f6a";
const WRONG_KEY: &str = "sk-voxgate-wrong-0e9d8c7b6a5f4e3d";
const SECRET: &str = "token-secret-5e1f0c3b7a9d2e4f6a8b0c1d";

/// Everything logged, in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).to_string()
    }
}

/// Every way a secret could leak is exercised; none of them shows one.
#[actix_rt::test]
async fn secrets_appear_nowhere() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        // Everything the server side logs; the test's own client library (tungstenite, which
        // the server does not use) traces the requests it sends, credentials included.
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,tungstenite=off,tokio_tungstenite=off",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut config = test_config();
    config.auth.api_keys = vec![key_hash_entry(KEY)];
    config.auth.token_secret = Some(Secret::new(SECRET));
    assert!(
        !format!("{config:?}").contains(SECRET),
        "a logged configuration hides the token secret"
    );
    let mut server = TestServer::start(config).await;
    let mut seen = Vec::new(); // everything the clients were told

    // Keys: right and wrong, by header and by subprotocol.
    let auth = format!("Bearer {KEY}");
    let (mut client, _) = server
        .connect_with("/v1/listen", &[("Authorization", &auth)])
        .await
        .expect("key accepted");
    client.send_json(&start_json()).await;
    seen.push(client.expect_type("ready").await.to_string());
    let pipeline = server.next_pipeline().await;
    client.send_binary(&[1, 2]).await;
    assert_eq!(pipeline.audio(1).await.len(), 1);
    for headers in [
        vec![("Authorization", format!("Bearer {WRONG_KEY}"))],
        vec![(
            "Sec-WebSocket-Protocol",
            format!("voxgate.v1, bearer.{WRONG_KEY}"),
        )],
        vec![("Sec-WebSocket-Protocol", format!("bearer.{KEY}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = server.connect_with("/v1/listen", &headers).await.err();
        seen.push(format!("{:?}", refused.map(|r| (r.body, r.headers))));
    }

    // Tokens: minted, used, refused when expired or forged, refused for minting.
    let (status, _, body) = http_request(
        server.addr,
        "POST",
        "/v1/tokens",
        &format!("Authorization: {auth}\r\n"),
        r#"{"ttl_secs":60}"#,
    )
    .await;
    assert_eq!(status, 200);
    let token = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(String::from))
        .unwrap_or_default();
    assert!(token.len() > 20);
    let protocols = format!("voxgate.v1, bearer.{token}");
    let (mut browser, _) = server
        .connect_with("/v1/listen", &[("Sec-WebSocket-Protocol", &protocols)])
        .await
        .expect("token accepted");
    browser
        .send_json(&serde_json::json!({"type":"start"}))
        .await;
    seen.push(
        browser
            .expect_error(ErrorCode::InvalidMessage)
            .await
            .to_string(),
    );
    let (status, head, body) = http_request(
        server.addr,
        "POST",
        "/v1/tokens",
        &format!("Authorization: Bearer {token}\r\n"),
        "",
    )
    .await;
    assert_eq!(status, 401);
    seen.push(format!("{head}\n{body}"));
    let expired = TokenSigner::new(SECRET.as_bytes()).mint(&Claims {
        kid: "k-000000000000".into(),
        exp: unix_now() - 10,
        msl: None,
    });
    let mut forged = token.clone();
    forged.push('x');
    for bad in [&expired, &forged] {
        let refused = server
            .connect_with("/v1/listen", &[("Authorization", &format!("Bearer {bad}"))])
            .await
            .err();
        seen.push(format!("{:?}", refused.map(|r| (r.body, r.headers))));
    }
    // A client error on the keyed session.
    client.send_text(&format!("not json {KEY}")).await;
    seen.push(
        client
            .expect_error(ErrorCode::InvalidJson)
            .await
            .to_string(),
    );

    let (_, metrics) = server.http_get("/metrics", "").await;
    drop((client, browser));
    server.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("session opened") && logs.contains("refused"),
        "the log was captured (sessions and refusals are logged)"
    );
    for (what, secret) in [
        ("the API key", KEY),
        ("the wrong key", WRONG_KEY),
        ("the token secret", SECRET),
        ("the session token", token.as_str()),
        ("the expired token", expired.as_str()),
    ] {
        assert!(!logs.contains(secret), "{what} is in the logs");
        assert!(!metrics.contains(secret), "{what} is in the metrics");
        for told in &seen {
            assert!(
                !told.contains(secret),
                "{what} was sent to a client: {told}"
            );
        }
    }
    // The token's signature part alone neither.
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(!logs.contains(signature));
}

/// `voxgate stream --api-key` at the most verbose log level, even asking for tungstenite's
/// traces explicitly: the key goes to the server (a listener of this test that reads the request
/// and refuses it) and never to the log.
#[test]
fn the_stream_client_never_logs_its_key() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || -> String {
        let Ok((tcp, _)) = listener.accept() else {
            return String::new();
        };
        let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut reader = BufReader::new(&tcp);
        let mut head = String::new();
        while reader.read_line(&mut head).is_ok_and(|n| n > 0) && !head.ends_with("\r\n\r\n") {}
        let mut tcp = &tcp;
        let _ = tcp.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        head
    });
    let dir = common::certs::temp_dir("stream-key");
    let audio = dir.join("audio.raw");
    std::fs::write(&audio, vec![0u8; 3_200]).expect("write audio");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
        .args(["stream", "--url", &format!("ws://{addr}/v1/listen")])
        .args(["--api-key", KEY])
        .arg(&audio)
        .env(
            "RUST_LOG",
            "trace,tungstenite=trace,tungstenite::handshake::client=trace",
        )
        .output()
        .expect("run voxgate stream");
    let request = server.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        request.contains(&format!("Bearer {KEY}")),
        "the key was sent: {request}"
    );
    assert!(!output.status.success(), "refused with 401");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(KEY), "the key is in the log: {stderr}");
}
