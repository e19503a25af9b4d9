//! Who gets in, over real connections: API keys (header and browser subprotocol), session tokens
//! from `POST /v1/tokens`, the origin allow-list, the per-address connection rate, the per-key and
//! per-address session limits, and the refusal to serve anonymously on a public address. Each
//! refusal has its status or error code, and a session already open is never disturbed.

mod common;

use common::{
    http_request, key_hash_entry, start_json, still_works, test_config, Client, StartedPipeline,
    TestServer,
};
use serde_json::{json, Value};
use voxgate::config::Secret;
use voxgate::server::tokens::{Claims, TokenSigner};
use voxgate_actors::protocol::ErrorCode;

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";
const SECRET: &str = "a-token-secret-of-at-least-32-characters";

fn keyed_config() -> voxgate::config::Config {
    let mut config = test_config();
    config.auth.api_keys = vec![key_hash_entry(KEY_A), key_hash_entry(KEY_B)];
    config.auth.token_secret = Some(Secret::new(SECRET));
    config
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

/// Connects with `headers`, sends `start`, expects `ready`.
async fn start_with(
    server: &mut TestServer,
    headers: &[(&str, &str)],
) -> (Client, StartedPipeline) {
    let (mut client, _) = server
        .connect_with("/v1/listen", headers)
        .await
        .unwrap_or_else(|r| panic!("upgrade refused: {r:?}"));
    client.send_json(&start_json()).await;
    client.expect_type("ready").await;
    let pipeline = server.next_pipeline().await;
    (client, pipeline)
}

/// POSTs to `/v1/tokens`; the status and the JSON body.
async fn mint(server: &TestServer, authorization: Option<&str>, body: &str) -> (u16, Value) {
    let mut headers = String::from("Content-Type: application/json\r\n");
    if let Some(a) = authorization {
        headers.push_str(&format!("Authorization: {a}\r\n"));
    }
    let (status, head, body) =
        http_request(server.addr, "POST", "/v1/tokens", &headers, body).await;
    if status == 200 {
        assert!(
            head.to_ascii_lowercase()
                .contains("cache-control: no-store"),
            "tokens are not cached: {head}"
        );
    }
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// API keys by header or by subprotocol; anything else is 401 with a JSON body, before the
/// upgrade.
#[actix_rt::test]
async fn api_keys_by_header_or_subprotocol() {
    let mut server = TestServer::start(keyed_config()).await;
    let auth_a = bearer(KEY_A);
    let (mut bystander, bystander_pipeline) =
        start_with(&mut server, &[("Authorization", &auth_a)]).await;

    let hash_hex: String = key_hash_entry(KEY_A)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hash_as_key = bearer(&format!("sha256:{hash_hex}"));
    for (what, headers) in [
        ("no credential", vec![]),
        ("a wrong key", vec![("Authorization", "Bearer not-a-key")]),
        ("an empty bearer", vec![("Authorization", "Bearer ")]),
        ("another scheme", vec![("Authorization", "Basic a2V5LWE=")]),
        (
            "a wrong subprotocol credential",
            vec![("Sec-WebSocket-Protocol", "voxgate.v1, bearer.nope")],
        ),
        (
            "a key's hash instead of the key",
            vec![("Authorization", hash_as_key.as_str())],
        ),
    ] {
        let refused = server.connect_with("/v1/listen", &headers).await.err();
        let refused = refused.unwrap_or_else(|| panic!("{what}: the upgrade succeeded"));
        assert_eq!(refused.status, 401, "{what}");
        assert_eq!(
            refused.body["error"], "unauthorized",
            "{what}: {}",
            refused.body
        );
        assert!(refused.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(
            refused.headers.get("www-authenticate").is_some(),
            "{what}: WWW-Authenticate"
        );
    }
    // Subprotocol credential without voxgate.v1: the server could not answer a subprotocol.
    let refused = server
        .connect_with(
            "/v1/listen",
            &[("Sec-WebSocket-Protocol", &format!("bearer.{KEY_B}"))],
        )
        .await
        .err();
    assert_eq!(refused.as_ref().map(|r| r.status), Some(400));
    assert_eq!(
        refused.map(|r| r.body["error"].clone()),
        Some(json!("subprotocol_required"))
    );

    // The browser way: voxgate.v1 is selected, the credential is never echoed.
    let protocols = format!("voxgate.v1, bearer.{KEY_B}");
    let (mut browser, headers) = server
        .connect_with("/v1/listen", &[("Sec-WebSocket-Protocol", &protocols)])
        .await
        .expect("subprotocol credential accepted");
    assert_eq!(
        headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("voxgate.v1")
    );
    browser.send_json(&start_json()).await;
    browser.expect_type("ready").await;
    let _ = server.next_pipeline().await;

    still_works(&mut bystander, &bystander_pipeline, 1).await;
    let (status, body) = server.http_get("/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("voxgate_http_refusals_total{code=\"unauthorized\"}"),
        "refusals are counted"
    );
    drop((bystander, browser));
    server.stop().await;
}

/// `POST /v1/tokens` mints tokens for an API key only; a token opens a session (as a browser
/// would send it), within its scope; expired, forged or foreign tokens are refused.
#[actix_rt::test]
async fn session_tokens() {
    let mut config = keyed_config();
    config.auth.max_token_ttl_secs = 600.0;
    let mut server = TestServer::start(config).await;
    let auth_a = bearer(KEY_A);
    let (mut bystander, bystander_pipeline) =
        start_with(&mut server, &[("Authorization", &auth_a)]).await;

    assert_eq!(mint(&server, None, "").await.0, 401);
    assert_eq!(mint(&server, Some("Bearer wrong"), "").await.0, 401);
    for bad in [
        "{",
        r#"{"ttl_secs":"long"}"#,
        r#"{"ttl_secs":601}"#,
        r#"{"ttl_secs":0}"#,
        r#"{"max_session_secs":-1}"#,
        r#"{"scope":"all"}"#,
    ] {
        let (status, body) = mint(&server, Some(&auth_a), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
    let (status, body) = mint(&server, Some(&auth_a), "").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let now = voxgate::server::tokens::unix_now();
    let expires_at = body["expires_at"].as_u64().unwrap_or(0);
    assert!(
        (now + 299..=now + 301).contains(&expires_at),
        "default ttl: {body}"
    );
    assert!(!token.contains(KEY_A) && !token.contains(SECRET));

    // A token cannot mint tokens.
    let (status, body) = mint(&server, Some(&bearer(&token)), "").await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("unauthorized"))
    );

    // A token opens a session, the browser way.
    let protocols = format!("voxgate.v1, bearer.{token}");
    let (mut browser, _) = start_with(&mut server, &[("Sec-WebSocket-Protocol", &protocols)]).await;
    browser.send_binary(&[1]).await;

    // Scope: a token's max_session_secs ends its sessions.
    let (status, body) = mint(
        &server,
        Some(&auth_a),
        r#"{"ttl_secs":60,"max_session_secs":0.3}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["max_session_secs"], 0.3);
    let short = format!("Bearer {}", body["token"].as_str().unwrap_or_default());
    let (mut limited, _) = start_with(&mut server, &[("Authorization", &short)]).await;
    limited.expect_error(ErrorCode::SessionTooLong).await;

    // Expired, forged and foreign tokens.
    let signer = TokenSigner::new(SECRET.as_bytes());
    let expired = signer.mint(&Claims {
        kid: "k-000000000000".into(),
        exp: now - 1,
        msl: None,
    });
    let refused = server
        .connect_with("/v1/listen", &[("Authorization", &bearer(&expired))])
        .await
        .err();
    let body = refused.map(|r| (r.status, r.body)).unwrap_or_default();
    assert_eq!(body.0, 401);
    assert!(
        body.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{}",
        body.1
    );
    let foreign = TokenSigner::new(b"another-secret-of-at-least-32-chars!!").mint(&Claims {
        kid: "k-000000000000".into(),
        exp: now + 60,
        msl: None,
    });
    let mut forged: Vec<char> = token.chars().collect();
    let at = forged.len() / 3;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    for bad in [foreign, forged] {
        let refused = server
            .connect_with("/v1/listen", &[("Authorization", &bearer(&bad))])
            .await
            .err();
        assert_eq!(refused.map(|r| r.status), Some(401));
    }
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop((bystander, browser));
    server.stop().await;
}

/// Removing a leaked key from the configuration revokes the tokens it minted (same secret,
/// signature still valid); the other key's tokens go on working.
#[actix_rt::test]
async fn removing_a_key_revokes_its_tokens() {
    let server = TestServer::start(keyed_config()).await;
    let (status, body) = mint(&server, Some(&bearer(KEY_A)), "").await;
    assert_eq!(status, 200, "{body}");
    let token_a = bearer(body["token"].as_str().unwrap_or_default());
    let (status, body) = mint(&server, Some(&bearer(KEY_B)), "").await;
    assert_eq!(status, 200, "{body}");
    let token_b = bearer(body["token"].as_str().unwrap_or_default());
    server.stop().await;

    let mut config = keyed_config();
    config.auth.api_keys = vec![key_hash_entry(KEY_B)];
    let mut server = TestServer::start(config).await;
    let refused = server
        .connect_with("/v1/listen", &[("Authorization", &token_a)])
        .await
        .err()
        .map(|r| (r.status, r.body["error"].clone()));
    assert_eq!(refused, Some((401, json!("unauthorized"))), "key A's token");
    let (client, _) = start_with(&mut server, &[("Authorization", &token_b)]).await;
    drop(client);
    server.stop().await;
}

/// A key's sessions (its tokens' included) are limited; another key and the open sessions are
/// not affected; a closed session frees its place.
#[actix_rt::test]
async fn sessions_per_key() {
    let mut config = keyed_config();
    config.session.max_sessions_per_key = 2;
    let mut server = TestServer::start(config).await;
    let auth_a = bearer(KEY_A);
    let (first, first_pipeline) = start_with(&mut server, &[("Authorization", &auth_a)]).await;
    let (status, body) = mint(&server, Some(&auth_a), "").await;
    assert_eq!(status, 200);
    let token = bearer(body["token"].as_str().unwrap_or_default());
    let (mut second, second_pipeline) = start_with(&mut server, &[("Authorization", &token)]).await;

    for credential in [&auth_a, &token] {
        let (mut third, _) = server
            .connect_with("/v1/listen", &[("Authorization", credential)])
            .await
            .expect("upgraded, to be told why not");
        let error = third.expect_error(ErrorCode::TooManyClientSessions).await;
        assert!(error["message"]
            .as_str()
            .is_some_and(|m| m.contains("API key")));
    }
    let (other, _) = start_with(&mut server, &[("Authorization", &bearer(KEY_B))]).await;
    still_works(&mut second, &second_pipeline, 1).await;

    let mut first = first;
    first.ws.close(None).await.expect("close");
    // The session releases its places in the same step as it stops its pipeline.
    assert_eq!(first_pipeline.stops(1).await, 1);
    let (again, _) = start_with(&mut server, &[("Authorization", &auth_a)]).await;
    drop((second, other, again));
    server.stop().await;
}

/// One address's sessions are limited (anonymous clients on loopback count by address).
#[actix_rt::test]
async fn sessions_per_address() {
    let mut config = test_config();
    config.session.max_sessions_per_ip = 2;
    let mut server = TestServer::start(config).await;
    let (mut first, _, first_pipeline) = server.started_session().await;
    let (second, _, _) = server.started_session().await;
    let mut third = server.connect("/v1/listen").await;
    let error = third.expect_error(ErrorCode::TooManyClientSessions).await;
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("address")));
    assert_eq!(error["retryable"], true);
    still_works(&mut first, &first_pipeline, 1).await;
    drop(second);
    drop(first);
    server.stop().await;
}

/// Browser pages: same origin by default, exactly the allow-list when there is one; clients
/// without an `Origin` are not browsers and pass.
#[actix_rt::test]
async fn origins() {
    let mut server = TestServer::start(test_config()).await;
    let (mut bystander, _, bystander_pipeline) = server.started_session().await;
    let same = format!("http://{}", server.addr);
    assert!(server
        .connect_with("/v1/listen", &[("Origin", &same)])
        .await
        .is_ok());
    for evil in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let refused = server
            .connect_with("/v1/listen", &[("Origin", evil)])
            .await
            .err()
            .unwrap_or_else(|| panic!("{evil} was let in"));
        assert_eq!(refused.status, 403, "{evil}");
        assert_eq!(refused.body["error"], "origin_not_allowed");
    }
    // DNS rebinding: the attacker's name resolves to this server, so its page's Origin and the
    // Host the browser sends agree; a name is not an address, so it is refused all the same.
    let rebound = format!("evil.example:{}", server.addr.port());
    let refused = server
        .connect_with(
            "/v1/listen",
            &[("Host", &rebound), ("Origin", &format!("http://{rebound}"))],
        )
        .await
        .err()
        .map(|r| (r.status, r.body["error"].clone()));
    assert_eq!(
        refused,
        Some((403, json!("origin_not_allowed"))),
        "rebinding"
    );
    let localhost = format!("localhost:{}", server.addr.port());
    assert!(
        server
            .connect_with(
                "/v1/listen",
                &[
                    ("Host", &localhost),
                    ("Origin", &format!("http://{localhost}"))
                ],
            )
            .await
            .is_ok(),
        "a page on localhost is same-origin"
    );
    still_works(&mut bystander, &bystander_pipeline, 1).await;
    drop(bystander);
    server.stop().await;

    let mut config = test_config();
    config.auth.allowed_origins = vec!["https://app.example".into()];
    let server = TestServer::start(config).await;
    assert!(server
        .connect_with("/v1/listen", &[("Origin", "https://app.example")])
        .await
        .is_ok());
    let same = format!("http://{}", server.addr);
    for refused in [same.as_str(), "https://app.example.evil"] {
        let status = server
            .connect_with("/v1/listen", &[("Origin", refused)])
            .await
            .err()
            .map(|r| r.status);
        assert_eq!(status, Some(403), "{refused}");
    }
    assert!(
        server.connect_with("/v1/listen", &[]).await.is_ok(),
        "no Origin"
    );
    server.stop().await;
}

/// New connections beyond the burst from one address get 429 with `Retry-After`, token requests
/// included; sessions already open go on.
#[actix_rt::test]
async fn connection_rate_per_address() {
    let mut config = keyed_config();
    config.server.connection_rate_per_ip = 0.5;
    config.server.connection_burst_per_ip = 3;
    let mut server = TestServer::start(config).await;
    let auth_a = bearer(KEY_A);
    let (mut open, open_pipeline) = start_with(&mut server, &[("Authorization", &auth_a)]).await;
    assert!(server
        .connect_with("/v1/listen", &[("Authorization", &auth_a)])
        .await
        .is_ok());
    assert_eq!(mint(&server, Some(&auth_a), "").await.0, 200);
    let refused = server
        .connect_with("/v1/listen", &[("Authorization", &auth_a)])
        .await
        .err()
        .expect("the fourth connection within a second is refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"], "rate_limited");
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(mint(&server, Some(&auth_a), "").await.0, 429);
    still_works(&mut open, &open_pipeline, 1).await;
    drop(open);
    server.stop().await;
}

/// `X-Forwarded-For` decides the client address only when the TCP peer is a trusted proxy: from
/// anyone else, forging it does not dodge the per-address connection rate.
#[actix_rt::test]
async fn forwarded_addresses_count_from_trusted_proxies_only() {
    let auth_a = bearer(KEY_A);
    for (proxies, forged_dodges) in [(vec![], false), (vec!["127.0.0.1".parse().ok()], true)] {
        let mut config = keyed_config();
        config.server.connection_rate_per_ip = 0.01;
        config.server.connection_burst_per_ip = 1;
        config.server.trusted_proxies = proxies.into_iter().flatten().collect();
        let server = TestServer::start(config).await;
        let mut statuses = Vec::new();
        for client in ["198.51.100.1", "198.51.100.2", "198.51.100.2"] {
            let headers = format!("Authorization: {auth_a}\r\nX-Forwarded-For: {client}\r\n");
            let (status, _, _) =
                http_request(server.addr, "POST", "/v1/tokens", &headers, "").await;
            statuses.push(status);
        }
        let expected = if forged_dodges {
            vec![200, 200, 429]
        } else {
            vec![200, 429, 429]
        };
        assert_eq!(statuses, expected, "trusted proxy: {forged_dodges}");
        server.stop().await;
    }
}

/// Secure by default: no API key and a non-loopback address (or a trusted proxy, whose clients
/// come from elsewhere) is no server at all, unless anonymous access is asked for explicitly.
/// Nothing here binds anything but loopback: the refusal is checked on the authenticator, and on
/// the real command, which refuses before binding.
#[actix_rt::test]
async fn no_anonymous_server_on_a_public_address() {
    use voxgate::server::auth::Authenticator;
    let public: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
    let refused = Authenticator::new(&test_config().auth, public, &[])
        .err()
        .unwrap_or_default();
    assert!(refused.contains("refusing to listen"), "{refused}");
    let (keyed, _) = Authenticator::new(&keyed_config().auth, public, &[])
        .unwrap_or_else(|e| panic!("a keyed server may listen anywhere: {e}"));
    assert!(!keyed.allows_anonymous(), "keys configured: no anonymous");

    // The command refuses before binding: 192.0.2.1 (TEST-NET-1) is no address of this host, so
    // a bind would fail with `cannot listen on`; the refusal comes first. Likewise behind a
    // trusted proxy on loopback.
    for (listen, proxies, expected) in [
        ("0.0.0.0:0", "[]", "[auth] anonymous = true"),
        ("192.0.2.1:9", "[]", "[auth] anonymous = true"),
        ("127.0.0.1:0", "[\"127.0.0.1\"]", "trusted_proxies"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args(["serve", "--config", "/dev/null", "--listen", listen])
            .env("RUST_LOG", "warn")
            .env("VOXGATE_SERVER__TRUSTED_PROXIES", proxies)
            .output()
            .expect("run voxgate");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{listen}: {stderr}");
        assert!(stderr.contains(expected), "{listen}: {stderr}");
        assert!(
            !stderr.contains("cannot listen"),
            "{listen}: bound first: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("listening on"),
            "{listen}: served"
        );
    }
}
