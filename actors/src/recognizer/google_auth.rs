//! Credentials for Google: none (the emulator, a trusted proxy) or Google Application Default
//! Credentials through `gcp_auth`, turned into the `authorization: Bearer …` metadata of each call
//! (plus `x-goog-user-project` when a quota project is configured).
//!
//! Shared by every Google engine: the token scope and the headers are the same for each version of
//! the Speech API, so this sits beside [`super::google_v1`] (and the v2 engine to come), not in it.
//!
//! The credential source is looked up once, at service start ([`Credentials::from_settings`]).
//! Tokens are cached here and refreshed [`REFRESH_BEFORE_EXPIRY`] before they expire, so no stream
//! opens with a token about to lapse. When Google still answers `UNAUTHENTICATED` (a token revoked
//! or rotated early), the supervisor calls [`Credentials::invalidate`] and retries at once: the next
//! call asks the provider again instead of using the cache. (gcp_auth's own providers keep a cache
//! of their own and hand out a new token only within ~20 s of expiry: a forced refresh is as fresh
//! as the provider makes it.) A refresh may run `gcloud` or
//! sign a JWT — blocking or CPU work — so it runs on tokio's blocking pool, never on an actor's
//! event loop; the cached path is a lock and a clone. Tokens are never logged (the metadata value
//! is marked sensitive, and nothing here prints one).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gcp_auth::{Token, TokenProvider};
use tonic::metadata::{Ascii, MetadataValue};

use crate::messages::StreamFailure;
use crate::settings::{GoogleAuth, GoogleSettings};

/// The OAuth scope of the Speech-to-Text API.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A cached token is replaced when it has less than this left (Google tokens live ~1 h).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Credentials could not be set up; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

/// A token source with its cache, shared by every worker thread.
struct TokenSource {
    provider: Arc<dyn TokenProvider>,
    /// The last token; refreshed under this lock so concurrent streams wait for one refresh.
    cached: tokio::sync::Mutex<Option<Arc<Token>>>,
    /// Set by [`Credentials::invalidate`]: the next call must not use the cached token.
    invalidated: AtomicBool,
}

/// How calls to Google are authenticated. Cheap to clone; shared across worker threads.
#[derive(Clone)]
pub struct Credentials {
    /// `None`: calls carry no `authorization` header.
    tokens: Option<Arc<TokenSource>>,
    /// The `x-goog-user-project` header, if configured.
    quota_project: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "tokens",
                &self
                    .tokens
                    .as_ref()
                    .map(|_| "application default credentials"),
            )
            .field("quota_project", &self.quota_project)
            .finish()
    }
}

impl Credentials {
    /// No credentials (the emulator, or a proxy that authenticates).
    pub fn none() -> Credentials {
        Credentials {
            tokens: None,
            quota_project: None,
        }
    }

    /// Credentials from any `gcp_auth` token provider (the service uses ADC; tests use their own).
    pub fn from_provider(
        provider: Arc<dyn TokenProvider>,
        quota_project: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        Ok(Credentials {
            tokens: Some(Arc::new(TokenSource {
                provider,
                cached: tokio::sync::Mutex::new(None),
                invalidated: AtomicBool::new(false),
            })),
            quota_project: parse_quota_project(quota_project)?,
        })
    }

    /// Sets up what `[google] auth` asks for. With `adc`, looks up Application Default Credentials
    /// once; a failure explains how to provide them.
    pub async fn from_settings(settings: &GoogleSettings) -> Result<Credentials, CredentialsError> {
        match settings.auth {
            GoogleAuth::None => Ok(Credentials {
                tokens: None,
                quota_project: parse_quota_project(settings.quota_project.as_deref())?,
            }),
            GoogleAuth::Adc => {
                let provider = off_the_event_loop(gcp_auth::provider())
                    .await
                    .map_err(|e| CredentialsError(format!("looking up Google credentials: {e}")))?
                    .map_err(|e| {
                        CredentialsError(format!(
                            "no Google Application Default Credentials found ({e}). Set \
                             GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run \
                             `gcloud auth application-default login`, or run on Google Cloud with a \
                             service account; to use the emulator instead, set [recognizer] \
                             backend = \"emulator\" or [google] auth = \"none\""
                        ))
                    })?;
                Credentials::from_provider(provider, settings.quota_project.as_deref())
            }
        }
    }

    /// Google rejected a token (`UNAUTHENTICATED`): the next call fetches a new one from the
    /// provider rather than use the cache. Cheap; never blocks.
    pub fn invalidate(&self) {
        if let Some(source) = &self.tokens {
            source.invalidated.store(true, Ordering::SeqCst);
        }
    }

    /// Adds the authentication metadata to a call. A token that cannot be had is an
    /// `UNAUTHENTICATED` failure of that stream.
    pub async fn authorize<T>(&self, request: &mut tonic::Request<T>) -> Result<(), StreamFailure> {
        if let Some(project) = &self.quota_project {
            request
                .metadata_mut()
                .insert("x-goog-user-project", project.clone());
        }
        let Some(source) = &self.tokens else {
            return Ok(());
        };
        let token = source.token().await?;
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.as_str())
            .try_into()
            .map_err(|_| StreamFailure {
                code: tonic::Code::Unauthenticated,
                message: "the Google access token is not a valid header value".to_string(),
            })?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        Ok(())
    }
}

impl TokenSource {
    async fn token(&self) -> Result<Arc<Token>, StreamFailure> {
        let mut cached = self.cached.lock().await;
        let invalidated = self.invalidated.swap(false, Ordering::SeqCst);
        let fresh_enough =
            |t: &&Arc<Token>| seconds_left(t) > REFRESH_BEFORE_EXPIRY.as_secs() as i64;
        if let Some(token) = cached
            .as_ref()
            .filter(fresh_enough)
            .filter(|_| !invalidated)
        {
            return Ok(token.clone());
        }
        let provider = self.provider.clone();
        let fresh =
            off_the_event_loop(async move { provider.token(&[CLOUD_PLATFORM_SCOPE]).await })
                .await
                .map_err(|e| unauthenticated(format!("token refresh did not complete: {e}")))?
                .map_err(|e| {
                    unauthenticated(format!("could not get a Google access token: {e}"))
                })?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Whole seconds until `token` expires (negative once expired).
fn seconds_left(token: &Token) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    token.expires_at().timestamp() - now
}

fn unauthenticated(message: String) -> StreamFailure {
    StreamFailure {
        code: tonic::Code::Unauthenticated,
        message,
    }
}

fn parse_quota_project(
    project: Option<&str>,
) -> Result<Option<MetadataValue<Ascii>>, CredentialsError> {
    project
        .map(|p| {
            MetadataValue::try_from(p).map_err(|_| {
                CredentialsError(format!(
                    "google.quota_project: `{p}` is not a valid project id"
                ))
            })
        })
        .transpose()
}

/// Runs `future` on tokio's blocking pool, driven by the current runtime's I/O and timers (the
/// caller's runtime keeps running them), so blocking steps inside it cannot stall the caller's
/// event loop.
async fn off_the_event_loop<F>(future: F) -> Result<F::Output, tokio::task::JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(future)).await
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A token provider that hands out a fixed token (or fails), counting its calls.
    pub(crate) struct FixedTokens {
        token: Option<&'static str>,
        expires_in_secs: u64,
        pub(crate) calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl TokenProvider for FixedTokens {
        async fn token(&self, scopes: &[&str]) -> Result<Arc<Token>, gcp_auth::Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(scopes, [CLOUD_PLATFORM_SCOPE]);
            let Some(token) = self.token else {
                return Err(gcp_auth::Error::Str("no credentials in this test"));
            };
            let json =
                serde_json::json!({ "access_token": token, "expires_in": self.expires_in_secs });
            serde_json::from_value(json)
                .map(Arc::new)
                .map_err(|e| gcp_auth::Error::Json("test token", e))
        }

        async fn project_id(&self) -> Result<Arc<str>, gcp_auth::Error> {
            Ok(Arc::from("test-project"))
        }
    }

    pub(crate) fn provider(token: Option<&'static str>, expires_in_secs: u64) -> Arc<FixedTokens> {
        Arc::new(FixedTokens {
            token,
            expires_in_secs,
            calls: AtomicUsize::new(0),
        })
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
            "cached after the first call"
        );
        assert!(!format!("{creds:?}").contains("ya29"), "never printed");
    }

    /// A token with less than `REFRESH_BEFORE_EXPIRY` left is refreshed before use.
    #[actix_rt::test]
    async fn expiring_token_is_refreshed() {
        let tokens = provider(Some("short"), REFRESH_BEFORE_EXPIRY.as_secs() - 10);
        let Ok(creds) = Credentials::from_provider(tokens.clone(), None) else {
            panic!("credentials without a quota project are valid");
        };
        for _ in 0..2 {
            let mut request = tonic::Request::new(());
            assert_eq!(creds.authorize(&mut request).await, Ok(()));
        }
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
    }

    /// After `invalidate` (Google said UNAUTHENTICATED) the next call asks the provider again even
    /// though the cached token is valid for an hour; later calls use the cache again.
    #[actix_rt::test]
    async fn invalidate_forces_one_refresh() {
        let tokens = provider(Some("long"), 3_600);
        let Ok(creds) = Credentials::from_provider(tokens.clone(), None) else {
            panic!("credentials without a quota project are valid");
        };
        let authorize = || async {
            let mut request = tonic::Request::new(());
            assert_eq!(creds.authorize(&mut request).await, Ok(()));
        };
        authorize().await;
        authorize().await;
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
        creds.invalidate();
        authorize().await;
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2, "refreshed once");
        authorize().await;
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 2, "then cached again");
        Credentials::none().invalidate();
    }

    /// No token → UNAUTHENTICATED with the provider's reason.
    #[actix_rt::test]
    async fn token_failure_is_unauthenticated() {
        let Ok(creds) = Credentials::from_provider(provider(None, 0), None) else {
            panic!("credentials without a quota project are valid");
        };
        let mut request = tonic::Request::new(());
        let failure = creds.authorize(&mut request).await.err();
        assert_eq!(
            failure.as_ref().map(|f| f.code),
            Some(tonic::Code::Unauthenticated)
        );
        assert!(failure.is_some_and(|f| f.message.contains("no credentials in this test")));
        assert!(request.metadata().get("authorization").is_none());
    }

    /// `auth = "none"` adds nothing but the quota project; an invalid project id is refused.
    #[actix_rt::test]
    async fn none_adds_no_token_and_bad_project_is_refused() {
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
    }
}
