//! Credentials for Google: none (the emulator, a trusted proxy) or Google Application Default
//! Credentials, turned into the `authorization: Bearer …` metadata of each call (plus
//! `x-goog-user-project` when a quota project is configured).
//!
//! Shared by every Google engine: the token scope and the headers are the same for each version of
//! the Speech API, so this sits beside [`super::google_v1`] (and the v2 engine to come), not in it.
//!
//! Layout:
//! - this file: [`Credentials`] and the token cache every session of the process shares.
//! - [`adc`]: where credentials are found (key file, gcloud, metadata server), once at start-up.
//! - [`service_account`]: the RS256-signed JWT exchanged at the key's `token_uri`.
//! - [`http`]: the HTTPS requests to token endpoints; [`trust`]: the trust roots (`ca_file`).
//!
//! Our own implementation rather than `gcp_auth`: that crate keeps a cache of its own (a forced
//! refresh after `UNAUTHENTICATED` got the same token back until ~20 s before expiry) and its
//! token requests trust only the system's roots (no `[google] ca_file` for a proxy or a test CA).
//!
//! Tokens are cached here and refreshed ahead of expiry ([`refresh_margin`]), so no stream opens
//! with a token about to lapse; concurrent streams wait for one fetch (the cache's lock), so a
//! burst of sessions costs one request to the token endpoint. When Google still answers
//! `UNAUTHENTICATED` (a token revoked or rotated early), the supervisor calls
//! [`Credentials::invalidate`] and retries once at once: the next call fetches a new token. Every
//! fetch — network I/O and RSA signing — runs on the credentials' own small runtime, never on an
//! actor's event loop. A token endpoint that cannot be reached (or answers 5xx) fails the stream
//! with `UNAVAILABLE`, which the supervisor retries by its policy; one that refuses the
//! credentials fails it with `UNAUTHENTICATED` and Google's reason. Tokens are never logged (the
//! metadata value is marked sensitive, and nothing here prints one).

pub mod adc;
pub mod http;
pub mod service_account;
pub mod trust;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tonic::metadata::{Ascii, MetadataValue};

use crate::messages::StreamFailure;
use crate::metrics::METRICS;
use crate::settings::{GoogleAuth, GoogleSettings};
use http::{CredentialsHttp, HttpReply};
use trust::TrustRoots;

/// The OAuth scope of the Speech-to-Text API.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A cached token is replaced when it has less than this left (Google tokens live an hour)…
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// …or less than a quarter of its lifetime, for short-lived tokens.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    REFRESH_BEFORE_EXPIRY.min(lifetime / 4)
}

/// Credentials could not be set up; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

/// An access token. Its value is never printed (`Debug` leaves it out).
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<str>,
    fetched_at: Instant,
    expires_at: Instant,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// A token worth `expires_in` from now.
    pub fn new(secret: &str, expires_in: Duration) -> AccessToken {
        let now = Instant::now();
        AccessToken {
            secret: Arc::from(secret),
            fetched_at: now,
            expires_at: now + expires_in,
        }
    }

    /// Still good for a while: not within its refresh margin of expiry.
    fn fresh_at(&self, now: Instant) -> bool {
        let lifetime = self.expires_at.saturating_duration_since(self.fetched_at);
        now + refresh_margin(lifetime) < self.expires_at
    }

    /// The token in an OAuth token endpoint's reply (`access_token`, `expires_in`), or why there
    /// is none: a refusal (4xx, Google's `error` and `error_description`) or an endpoint that is
    /// not answering properly (5xx, anything else), which may pass.
    pub fn from_reply(endpoint: &str, reply: &HttpReply) -> Result<AccessToken, FetchError> {
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        #[derive(serde::Deserialize)]
        struct Refused {
            error: String,
            #[serde(default)]
            error_description: String,
        }
        match reply.status {
            200 => serde_json::from_slice::<Granted>(&reply.body)
                .map(|g| AccessToken::new(&g.access_token, Duration::from_secs(g.expires_in)))
                .map_err(|_| FetchError::Unreachable(format!("{endpoint}: not a token reply"))),
            400..=499 if reply.status != 429 => {
                let why = serde_json::from_slice::<Refused>(&reply.body).map_or_else(
                    |_| format!("HTTP {}", reply.status),
                    |r| format!("{}: {}", r.error, r.error_description),
                );
                Err(FetchError::Refused(format!(
                    "{endpoint} refused the credentials ({why})"
                )))
            }
            status => Err(FetchError::Unreachable(format!(
                "{endpoint}: HTTP {status}"
            ))),
        }
    }
}

/// Why a token could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The credentials were refused (a wrong key, a revoked account): `UNAUTHENTICATED`.
    Refused(String),
    /// The token endpoint did not answer properly (down, 5xx, too slow): `UNAVAILABLE`, retried.
    Unreachable(String),
    /// The token endpoint's certificate chains to no trusted root: `FAILED_PRECONDITION`, not
    /// retried (the configuration must change: `[google] ca_file`).
    Untrusted(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Refused(m) | FetchError::Unreachable(m) | FetchError::Untrusted(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<FetchError> for StreamFailure {
    fn from(error: FetchError) -> StreamFailure {
        match error {
            FetchError::Refused(message) => StreamFailure {
                code: tonic::Code::Unauthenticated,
                message,
            },
            FetchError::Unreachable(message) => StreamFailure {
                code: tonic::Code::Unavailable,
                message: format!("could not get a Google access token: {message}"),
            },
            FetchError::Untrusted(message) => StreamFailure {
                code: tonic::Code::FailedPrecondition,
                message: format!("certificate not trusted: {message}"),
            },
        }
    }
}

/// Something that hands out access tokens: a key file's account, the metadata server, a test's.
pub trait FetchToken: Send + Sync {
    /// Fetches a new token (no caching: that is [`Credentials`]' job).
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, FetchError>>;
}

/// A runtime of its own for token fetches, off every actor's event loop. Shut down in the
/// background when dropped (dropping a runtime inside another would panic).
struct FetchRuntime(Option<tokio::runtime::Runtime>);

impl FetchRuntime {
    fn new() -> Result<FetchRuntime, CredentialsError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("voxgate-credentials")
            .enable_all()
            .build()
            .map(|r| FetchRuntime(Some(r)))
            .map_err(|e| CredentialsError(format!("credentials runtime: {e}")))
    }

    /// Runs `future` there and waits for it from wherever the caller is.
    async fn run<F>(&self, future: F) -> Result<F::Output, String>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.0.as_ref().ok_or("credentials runtime stopped")?;
        runtime
            .spawn(future)
            .await
            .map_err(|e| format!("token fetch did not complete: {e}"))
    }
}

impl Drop for FetchRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The token source with its cache, shared by every worker thread.
struct TokenCache {
    fetcher: Arc<dyn FetchToken>,
    runtime: FetchRuntime,
    /// The last token; fetched under this lock so concurrent streams wait for one fetch.
    current: tokio::sync::Mutex<Option<AccessToken>>,
    /// Set by [`Credentials::invalidate`]: the next call must not use the cached token.
    invalidated: AtomicBool,
}

impl TokenCache {
    async fn token(&self) -> Result<Arc<str>, StreamFailure> {
        let mut current = self.current.lock().await;
        let invalidated = self.invalidated.swap(false, Ordering::SeqCst);
        if let Some(token) = current.as_ref() {
            if !invalidated && token.fresh_at(Instant::now()) {
                return Ok(token.secret.clone());
            }
        }
        let fetcher = Arc::clone(&self.fetcher);
        let fresh = self
            .runtime
            .run(async move { fetcher.fetch().await })
            .await
            .map_err(|e| StreamFailure::from(FetchError::Unreachable(e)))??;
        METRICS.google_token_fetches.inc();
        let secret = fresh.secret.clone();
        *current = Some(fresh);
        Ok(secret)
    }
}

/// How calls to Google are authenticated. Cheap to clone; shared across worker threads.
#[derive(Clone)]
pub struct Credentials {
    /// `None`: calls carry no `authorization` header.
    tokens: Option<Arc<TokenCache>>,
    /// The `x-goog-user-project` header, if configured.
    quota_project: Option<MetadataValue<Ascii>>,
    /// The project the credentials name (a key file's), for Speech v2's recognizer path.
    project: Option<String>,
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
            .field("project", &self.project)
            .finish()
    }
}

/// The deadline of one request to a token endpoint or the metadata server.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Credentials {
    /// No credentials (the emulator, or a proxy that authenticates).
    pub fn none() -> Credentials {
        Credentials {
            tokens: None,
            quota_project: None,
            project: None,
        }
    }

    /// Credentials from any token source (the service finds one by ADC; tests bring their own).
    pub fn from_provider(
        fetcher: Arc<dyn FetchToken>,
        quota_project: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        Ok(Credentials {
            tokens: Some(Arc::new(TokenCache {
                fetcher,
                runtime: FetchRuntime::new()?,
                current: tokio::sync::Mutex::new(None),
                invalidated: AtomicBool::new(false),
            })),
            quota_project: parse_quota_project(quota_project)?,
            project: None,
        })
    }

    /// Sets up what `[google] auth` asks for. With `adc`, finds Application Default Credentials
    /// once ([`adc::find`]); a failure names what is missing and how to provide it.
    pub async fn from_settings(settings: &GoogleSettings) -> Result<Credentials, CredentialsError> {
        let quota_project = parse_quota_project(settings.quota_project.as_deref())?;
        match settings.auth {
            GoogleAuth::None => Ok(Credentials {
                tokens: None,
                quota_project,
                project: None,
            }),
            GoogleAuth::Adc => {
                let trust = TrustRoots::from_settings(settings)?;
                let http = Arc::new(CredentialsHttp::new(&trust, TOKEN_REQUEST_TIMEOUT)?);
                let runtime = FetchRuntime::new()?;
                let found = runtime
                    .run(adc::find(http))
                    .await
                    .map_err(CredentialsError)??;
                Ok(Credentials {
                    tokens: Some(Arc::new(TokenCache {
                        fetcher: found.tokens,
                        runtime,
                        current: tokio::sync::Mutex::new(None),
                        invalidated: AtomicBool::new(false),
                    })),
                    quota_project,
                    project: found.project,
                })
            }
        }
    }

    /// The Google Cloud project the credentials name (a service-account key's `project_id`,
    /// gcloud user credentials' `quota_project_id`), if any.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// Google rejected a token (`UNAUTHENTICATED`): the next call fetches a new one rather than
    /// use the cache. Cheap; never blocks.
    pub fn invalidate(&self) {
        if let Some(source) = &self.tokens {
            source.invalidated.store(true, Ordering::SeqCst);
        }
    }

    /// Adds the authentication metadata to a call. A token that cannot be had fails the stream
    /// (`UNAUTHENTICATED` when refused, `UNAVAILABLE` when the token endpoint is unreachable).
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
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {token}")
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

#[cfg(test)]
pub(crate) mod tests;
