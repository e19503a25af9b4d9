//! The token cache and the token endpoint's replies; the whole path (key file, signed JWT, TLS,
//! the emulator's token endpoint) is tested end to end in `tests/e2e_google_auth.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::*;

/// A token source that hands out a fixed token (or refuses), counting its calls.
pub(crate) struct FixedTokens {
    token: Option<&'static str>,
    expires_in_secs: u64,
    pub(crate) calls: AtomicUsize,
}

impl FetchToken for FixedTokens {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, FetchError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let result = match self.token {
            Some(token) => Ok(AccessToken::new(
                token,
                Duration::from_secs(self.expires_in_secs),
            )),
            None => Err(FetchError::Refused("no credentials in this test".into())),
        };
        Box::pin(async move {
            // Long enough for concurrent callers to pile up on the cache's lock.
            tokio::time::sleep(Duration::from_millis(20)).await;
            result
        })
    }
}

pub(crate) fn provider(token: Option<&'static str>, expires_in_secs: u64) -> Arc<FixedTokens> {
    Arc::new(FixedTokens {
        token,
        expires_in_secs,
        calls: AtomicUsize::new(0),
    })
}

fn credentials(tokens: &Arc<FixedTokens>) -> Credentials {
    match Credentials::from_provider(tokens.clone(), None) {
        Ok(c) => c,
        Err(e) => panic!("credentials without a quota project are valid: {e}"),
    }
}

async fn authorize_ok(creds: &Credentials) {
    let mut request = tonic::Request::new(());
    assert_eq!(creds.authorize(&mut request).await, Ok(()));
}

/// A token becomes `authorization: Bearer …` (marked sensitive), the quota project its header,
/// and a valid token is fetched once and then served from the cache.
#[actix_rt::test]
async fn adds_bearer_token_and_quota_project() {
    let tokens = provider(Some("ya29.test-token"), 3_600);
    let creds = Credentials::from_provider(tokens.clone(), Some("my-project"));
    let creds = creds.map_err(|e| e.0);
    assert!(creds.is_ok(), "{creds:?}");
    let Ok(creds) = creds else { return };
    for _ in 0..3 {
        let mut request = tonic::Request::new(());
        assert_eq!(creds.authorize(&mut request).await, Ok(()));
        let auth = request.metadata().get("authorization");
        assert_eq!(
            auth.and_then(|v| v.to_str().ok()),
            Some("Bearer ya29.test-token")
        );
        assert!(auth.is_some_and(|v| v.is_sensitive()));
        let project = request.metadata().get("x-goog-user-project");
        assert_eq!(project.and_then(|v| v.to_str().ok()), Some("my-project"));
    }
    assert_eq!(
        tokens.calls.load(Ordering::SeqCst),
        1,
        "cached after the first"
    );
    assert!(!format!("{creds:?}").contains("ya29"), "never printed");
    let token = AccessToken::new("ya29.secret", Duration::from_secs(60));
    assert!(!format!("{token:?}").contains("ya29"), "never printed");
}

/// Concurrent streams wait for one fetch and share its token.
#[actix_rt::test]
async fn concurrent_streams_share_one_fetch() {
    let tokens = provider(Some("shared"), 3_600);
    let creds = credentials(&tokens);
    let calls = (0..32).map(|_| authorize_ok(&creds));
    futures_util::future::join_all(calls).await;
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
}

/// A token within its refresh margin is refreshed before use; the margin is a minute for
/// Google's hour-long tokens and a quarter of the lifetime for short ones.
#[actix_rt::test]
async fn expiring_token_is_refreshed() {
    assert_eq!(
        refresh_margin(Duration::from_secs(3_600)),
        REFRESH_BEFORE_EXPIRY
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(16)),
        Duration::from_secs(4)
    );
    let token = AccessToken::new("t", Duration::from_secs(16));
    let now = token.fetched_at;
    assert!(token.fresh_at(now + Duration::from_secs(11)));
    assert!(!token.fresh_at(now + Duration::from_secs(12)), "4 s left");
    let tokens = provider(Some("short"), 0);
    let creds = credentials(&tokens);
    for _ in 0..2 {
        authorize_ok(&creds).await;
    }
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
}

/// After `invalidate` (Google said UNAUTHENTICATED) the next call fetches again even though the
/// cached token is valid for an hour; later calls use the cache again.
#[actix_rt::test]
async fn invalidate_forces_one_refresh() {
    let tokens = provider(Some("long"), 3_600);
    let creds = credentials(&tokens);
    authorize_ok(&creds).await;
    authorize_ok(&creds).await;
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
    creds.invalidate();
    authorize_ok(&creds).await;
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2, "refreshed once");
    authorize_ok(&creds).await;
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2, "then cached again");
    Credentials::none().invalidate();
}

/// Refused credentials → UNAUTHENTICATED with the reason, and no header.
#[actix_rt::test]
async fn token_failure_is_unauthenticated() {
    let creds = credentials(&provider(None, 0));
    let mut request = tonic::Request::new(());
    let failure = creds.authorize(&mut request).await.err();
    assert_eq!(
        failure.as_ref().map(|f| f.code),
        Some(tonic::Code::Unauthenticated)
    );
    assert!(failure.is_some_and(|f| f.message.contains("no credentials in this test")));
    assert!(request.metadata().get("authorization").is_none());
}

/// A token endpoint's replies: a grant, Google's refusals (UNAUTHENTICATED with Google's words),
/// and the failures that may pass (UNAVAILABLE: 5xx, 429, garbage).
#[test]
fn token_replies() {
    let reply = |status: u16, body: &str| HttpReply {
        status,
        body: Bytes::from(body.to_string()),
    };
    let granted = AccessToken::from_reply(
        "E",
        &reply(
            200,
            r#"{"access_token":"ya29.x","expires_in":15,"token_type":"Bearer"}"#,
        ),
    );
    let Ok(granted) = granted else {
        panic!("a grant: {granted:?}");
    };
    assert_eq!(&*granted.secret, "ya29.x");
    let lifetime = granted.expires_at - granted.fetched_at;
    assert_eq!(lifetime, Duration::from_secs(15));
    let refused = AccessToken::from_reply(
        "E",
        &reply(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ),
    );
    assert_eq!(
        refused.map_err(StreamFailure::from).err(),
        Some(StreamFailure {
            code: tonic::Code::Unauthenticated,
            message: "E refused the credentials (invalid_grant: Invalid JWT Signature.)".into()
        })
    );
    for (status, body) in [(503, ""), (429, "{}"), (200, "<html>"), (302, "")] {
        let failure = AccessToken::from_reply("E", &reply(status, body))
            .map_err(StreamFailure::from)
            .err();
        assert_eq!(
            failure.map(|f| f.code),
            Some(tonic::Code::Unavailable),
            "{status} {body}"
        );
    }
}

/// `auth = "none"` adds nothing but the quota project; an invalid project id is refused, and so
/// is a `ca_file` that is missing or holds no certificate.
#[actix_rt::test]
async fn none_adds_no_token_and_bad_settings_are_refused() {
    let settings = GoogleSettings {
        auth: GoogleAuth::None,
        ..GoogleSettings::default()
    };
    let creds = Credentials::from_settings(&settings).await.map_err(|e| e.0);
    let mut request = tonic::Request::new(());
    match creds {
        Ok(c) => assert_eq!(c.authorize(&mut request).await, Ok(())),
        Err(e) => panic!("auth = none needs nothing: {e}"),
    }
    assert!(request.metadata().is_empty());
    let bad = GoogleSettings {
        auth: GoogleAuth::None,
        quota_project: Some("bad\nproject".into()),
        ..GoogleSettings::default()
    };
    let err = Credentials::from_settings(&bad).await.err().map(|e| e.0);
    assert!(err.is_some_and(|e| e.contains("google.quota_project")));
    let dir = std::env::temp_dir().join(format!("voxgate-ca-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let empty = dir.join("empty.pem");
    let _ = std::fs::write(&empty, "not a certificate\n");
    for (path, expected) in [
        (dir.join("missing.pem"), "cannot read"),
        (empty, "holds no PEM certificate"),
    ] {
        let settings = GoogleSettings {
            ca_file: Some(path.display().to_string()),
            ..GoogleSettings::default()
        };
        let err = trust::TrustRoots::from_settings(&settings)
            .err()
            .map(|e| e.0);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("google.ca_file") && e.contains(expected)),
            "{err:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
