//! TLS end to end, with certificates made at test time: `wss://` served directly to a client that
//! verifies the certificate (and trusts nothing but the test's CA), certificate reloads that do
//! not drop open sessions, and the Google client's refusal of a certificate it cannot verify.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{temp_dir, TestCa};
use common::{start_json, test_config, try_connect, ConnectError, TestServer, WAIT};
use voxgate::config::Config;
use voxgate_actors::messages::AudioIn;

/// A test configuration serving the files in `dir` over TLS.
fn tls_config(cert: std::path::PathBuf, key: std::path::PathBuf, reload_secs: f64) -> Config {
    let mut config = test_config();
    config.tls.cert = Some(cert);
    config.tls.key = Some(key);
    config.tls.reload_interval_secs = reload_secs;
    config
}

/// Whether a client trusting `client` completes a `wss://` upgrade now.
async fn handshake_ok(
    server: &TestServer,
    client: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    match try_connect(&server.url("/v1/listen"), &[], Some(client)).await {
        Ok((mut c, _)) => {
            let _ = c.ws.close(None).await;
            Ok(())
        }
        Err(ConnectError::Failed(e)) => Err(e),
        Err(ConnectError::Refused(r)) => Err(format!("refused: {r:?}")),
    }
}

/// `wss://` with a verifying client: the session works; a client that does not trust the
/// certificate's CA gets no connection; after a reload, new connections get the new certificate
/// while the session opened before goes on.
#[actix_rt::test]
async fn wss_is_served_verified_and_reloaded_without_dropping_sessions() {
    let first_ca = TestCa::new("voxgate test CA one");
    let second_ca = TestCa::new("voxgate test CA two");
    let dir = temp_dir("tls-reload");
    let (cert, key) = first_ca.server_cert().write_to(&dir);
    let mut server =
        TestServer::start_tls(tls_config(cert, key, 0.0), first_ca.client_config()).await;
    assert!(server.url("/").starts_with("wss://"));

    // The session over TLS: start, ready, audio reaches the pipeline.
    let (mut early, _, early_pipeline) = server.started_session().await;
    early.send_binary(&[1, 2, 3]).await;
    assert_eq!(early_pipeline.audio(1).await.len(), 1);

    // A client that trusts another CA does not get a connection.
    let refused = handshake_ok(&server, second_ca.client_config()).await;
    let error = refused.err().unwrap_or_default();
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "the handshake fails on the certificate: {error}"
    );

    // Reload with a certificate of the second CA (what SIGHUP does).
    second_ca.server_cert().write_to(&dir);
    server.handle().reload_tls().expect("reload");
    assert!(handshake_ok(&server, second_ca.client_config())
        .await
        .is_ok());
    assert!(handshake_ok(&server, first_ca.client_config())
        .await
        .is_err());

    // The session opened before the reload is untouched.
    early.send_binary(&[4, 5]).await;
    let audio = early_pipeline.audio(2).await;
    assert_eq!(audio.get(1).map(|a| a.data.to_vec()), Some(vec![4, 5]));
    early
        .send_json(&serde_json::json!({"type":"keepalive"}))
        .await;
    early.quiet_for(Duration::from_millis(100)).await;
    drop(early);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Changed certificate files are picked up by themselves (`reload_interval_secs`); a change that
/// does not make a valid certificate keeps the current one.
#[actix_rt::test]
async fn changed_files_are_reloaded_and_broken_ones_ignored() {
    let first_ca = TestCa::new("voxgate test CA one");
    let second_ca = TestCa::new("voxgate test CA two");
    let dir = temp_dir("tls-watch");
    let (cert, key) = first_ca.server_cert().write_to(&dir);
    let server = TestServer::start_tls(
        tls_config(cert.clone(), key.clone(), 0.05),
        first_ca.client_config(),
    )
    .await;
    assert!(handshake_ok(&server, first_ca.client_config())
        .await
        .is_ok());
    let mut changes_seen = server
        .handle()
        .tls_changes_seen()
        .expect("a TLS server has a watcher");

    // A key that does not belong to the certificate: refused, the current certificate stays.
    let other = second_ca.server_cert();
    changes_seen.mark_unchanged();
    std::fs::write(&key, &other.key_pem).expect("write mismatched key");
    let error = server.handle().reload_tls().err().unwrap_or_default();
    assert!(!error.is_empty(), "a mismatched key is not loaded");
    assert!(
        !error.contains("PRIVATE KEY")
            && !error.contains(other.key_pem.lines().nth(1).unwrap_or("-")),
        "the error does not show the key: {error}"
    );
    // The watcher saw the change too, tried it, and kept the current certificate.
    tokio::time::timeout(WAIT, changes_seen.changed())
        .await
        .expect("the watcher saw the changed key")
        .expect("the watcher is running");
    assert!(handshake_ok(&server, first_ca.client_config())
        .await
        .is_ok());

    // A complete new pair: picked up without anyone asking. Two files, written one after the
    // other: the watcher may see the first alone (and keep the current certificate), so each of
    // its attempts is waited for until the new certificate is served.
    changes_seen.mark_unchanged();
    other.write_to(&dir);
    let deadline = tokio::time::Instant::now() + WAIT;
    while handshake_ok(&server, second_ca.client_config())
        .await
        .is_err()
    {
        tokio::time::timeout_at(deadline, changes_seen.changed())
            .await
            .expect("the new certificate was not picked up")
            .expect("the watcher is running");
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS and the rest of the edge together: a browser-style credential over `wss://`.
#[actix_rt::test]
async fn credentials_over_tls() {
    let ca = TestCa::new("voxgate test CA");
    let dir = temp_dir("tls-auth");
    let (cert, key) = ca.server_cert().write_to(&dir);
    let mut config = tls_config(cert, key, 0.0);
    config.auth.api_keys = vec![common::key_hash_entry("tls-key-0123456789")];
    let mut server = TestServer::start_tls(config, ca.client_config()).await;
    let refused = server.connect_with("/v1/listen", &[]).await.err();
    assert_eq!(refused.map(|r| r.status), Some(401));
    let (mut client, headers) = server
        .connect_with(
            "/v1/listen",
            &[(
                "Sec-WebSocket-Protocol",
                "voxgate.v1, bearer.tls-key-0123456789",
            )],
        )
        .await
        .expect("authenticated upgrade");
    assert_eq!(
        headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("voxgate.v1")
    );
    client.send_json(&start_json()).await;
    client.expect_type("ready").await;
    let pipeline = server.next_pipeline().await;
    client.send_binary(&[9]).await;
    assert_eq!(pipeline.log.wait_count::<AudioIn>(1, WAIT).await.len(), 1);
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Google client verifies certificates: against a TLS server whose certificate is not signed
/// by a public root, the handshake is aborted by the client (the same server completes a
/// handshake with a client that trusts its CA, so the failure is the verification).
#[actix_rt::test]
async fn the_google_client_refuses_an_unverifiable_certificate() {
    use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1::{
        speech_client::SpeechClient, RecognizeRequest,
    };
    use voxgate_actors::recognizer::google_v1::pool::{ConnectionPool, GoogleEndpoint};
    use voxgate_actors::settings::GoogleSettings;

    let ca = TestCa::new("not a public root");
    let server_cert = ca.server_cert();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let certs: Vec<_> = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(server_cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("parse cert")
    };
    let key = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(server_cert.key_pem.as_bytes())
            .expect("parse key")
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    );
    // Two handshakes, each reported: the Google client's, then the trusting client's.
    let (results_tx, results_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let server_thread = std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut tcp, _)) = listener.accept() else {
                return;
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let result = rustls::ServerConnection::new(server_config.clone())
                .map_err(|e| e.to_string())
                .and_then(|mut conn| {
                    while conn.is_handshaking() {
                        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
            let _ = results_tx.send(result);
        }
    });

    let settings = GoogleSettings {
        endpoint: format!("https://{addr}"),
        connect_timeout_secs: 5.0,
        ..GoogleSettings::default()
    };
    let endpoint = GoogleEndpoint::new(&settings).expect("endpoint");
    let pool = ConnectionPool::new(&endpoint);
    let lease = pool.lease();
    let call = SpeechClient::new(lease.channel())
        .recognize(RecognizeRequest::default())
        .await;
    assert!(call.is_err(), "the call must not succeed");
    let google_handshake = results_rx
        .recv_timeout(WAIT)
        .expect("the Google client connected");
    let error = google_handshake.err().unwrap_or_default();
    // The alert the client sends when it cannot verify the chain, as rustls reports it
    // (any other alert — a protocol or version mismatch — would prove nothing).
    assert!(
        ["UnknownCA", "BadCertificate", "UnknownIssuer"]
            .iter()
            .any(|alert| error.contains(alert)),
        "the Google client aborted the handshake on the certificate: {error}"
    );

    // Control: a client that trusts the CA completes the handshake with the same server.
    let client_config = ca.client_config();
    let trusting = std::thread::spawn(move || -> Result<(), String> {
        let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let mut conn =
            rustls::ClientConnection::new(client_config, name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    assert_eq!(trusting.join().ok(), Some(Ok(())));
    assert_eq!(results_rx.recv_timeout(WAIT).ok(), Some(Ok(())));
    let _ = server_thread.join();
}
