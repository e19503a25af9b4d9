//! Application Default Credentials: where the gateway finds its Google credentials, in Google's
//! order, once at start-up.
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS`: a key file — a service account's (`"type":
//!    "service_account"`, [`super::service_account`]) or gcloud user credentials (`"type":
//!    "authorized_user"`). When the variable is set, its file must be usable: a bad file is an
//!    error, never a silent fall-through to other credentials.
//! 2. gcloud's `application_default_credentials.json` (`gcloud auth application-default login`),
//!    in `$CLOUDSDK_CONFIG` or `~/.config/gcloud`.
//! 3. The metadata server of Google Cloud (Compute Engine, GKE, Cloud Run…), at
//!    `$GCE_METADATA_HOST` or 169.254.169.254, probed with a short deadline.
//!
//! A key file also names a Google Cloud project — a service account's `project_id`, gcloud user
//! credentials' `quota_project_id` — which Speech v2 uses when `[google] project` is not set
//! ([`Found::project`]). The metadata server's project is not read: on Google Cloud, set it.
//!
//! Each key file's `token_uri` is honoured (Google's own is the default), so a key file made by
//! `voxgate emulator make-credentials` points the gateway at the emulator's token endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::http::CredentialsHttp;
use super::service_account::ServiceAccount;
use super::{AccessToken, CredentialsError, FetchError, FetchToken, CLOUD_PLATFORM_SCOPE};

/// Google's token endpoint, for key files without a `token_uri`.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's link-local address (overridden by `GCE_METADATA_HOST`).
const METADATA_HOST: &str = "169.254.169.254";
/// How long the start-up probe waits for a metadata server (off Google Cloud there is none).
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A key file, by its `type`. Fields not needed are ignored, as Google's libraries do.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KeyFile {
    ServiceAccount {
        client_email: String,
        private_key: String,
        #[serde(default)]
        project_id: Option<String>,
        #[serde(default = "google_token_uri")]
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        #[serde(default)]
        quota_project_id: Option<String>,
        #[serde(default = "google_token_uri")]
        token_uri: String,
    },
}

fn google_token_uri() -> String {
    GOOGLE_TOKEN_URI.to_string()
}

/// What ADC found: where tokens come from, and the project the credentials name, if any.
pub struct Found {
    pub tokens: Arc<dyn FetchToken>,
    pub project: Option<String>,
}

/// Finds credentials in ADC's order; the error names every place looked at.
pub async fn find(http: Arc<CredentialsHttp>) -> Result<Found, CredentialsError> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        let path = PathBuf::from(path);
        return key_file(&path, http).map_err(|e| {
            CredentialsError(format!(
                "GOOGLE_APPLICATION_CREDENTIALS={}: {e}",
                path.display()
            ))
        });
    }
    let well_known = gcloud_adc_file();
    if let Some(path) = well_known.as_deref().filter(|p| p.exists()) {
        return key_file(path, http)
            .map_err(|e| CredentialsError(format!("{}: {e}", path.display())));
    }
    let metadata = Metadata::new(http.clone());
    let probe = metadata.probe().await;
    match probe {
        Ok(()) => Ok(Found {
            tokens: Arc::new(metadata),
            project: None,
        }),
        Err(why) => Err(CredentialsError(format!(
            "no Google Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS is not set, \
             there is no {}, and no metadata server answered at {} ({why}). Set \
             GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth \
             application-default login`, or run on Google Cloud with a service account \
             (docs/google.md); to use the emulator instead, set [recognizer] backend = \
             \"emulator\" or [google] auth = \"none\"",
            well_known.map_or_else(
                || "gcloud configuration directory (no HOME)".to_string(),
                |p| p.display().to_string()
            ),
            metadata.host
        ))),
    }
}

/// `$CLOUDSDK_CONFIG/application_default_credentials.json`, else under `~/.config/gcloud`.
fn gcloud_adc_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

/// The credentials of a key file. Errors say what is wrong, never quoting a secret.
fn key_file(path: &Path, http: Arc<CredentialsHttp>) -> Result<Found, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "not a service-account or authorized-user key file ({}, line {})",
            json_error_kind(&e),
            e.line()
        )
    })?;
    match key {
        KeyFile::ServiceAccount {
            client_email,
            private_key,
            project_id,
            token_uri,
        } => Ok(Found {
            tokens: Arc::new(ServiceAccount::new(
                client_email,
                &private_key,
                token_uri,
                http,
            )?),
            project: project_id.filter(|p| !p.is_empty()),
        }),
        KeyFile::AuthorizedUser {
            client_id,
            client_secret,
            refresh_token,
            quota_project_id,
            token_uri,
        } => Ok(Found {
            tokens: Arc::new(AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
                http,
            }),
            project: quota_project_id.filter(|p| !p.is_empty()),
        }),
    }
}

/// A short name for a JSON error's kind (its message might quote the file).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
        serde_json::error::Category::Data => "a field is missing or of the wrong type",
    }
}

/// gcloud user credentials: a refresh token exchanged at `token_uri`.
struct AuthorizedUser {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    token_uri: String,
    http: Arc<CredentialsHttp>,
}

impl FetchToken for AuthorizedUser {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, FetchError>> {
        Box::pin(async move {
            let reply = self
                .http
                .post_form(
                    &self.token_uri,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", &self.client_id),
                        ("client_secret", &self.client_secret),
                        ("refresh_token", &self.refresh_token),
                    ],
                )
                .await?;
            AccessToken::from_reply(&self.token_uri, &reply)
        })
    }
}

/// The metadata server's default service account.
struct Metadata {
    host: String,
    http: Arc<CredentialsHttp>,
}

impl Metadata {
    fn new(http: Arc<CredentialsHttp>) -> Metadata {
        let host = std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| METADATA_HOST.into());
        Metadata { host, http }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/computeMetadata/v1/{path}", self.host)
    }

    /// Is there a metadata server? (Asked once, at start-up.)
    async fn probe(&self) -> Result<(), String> {
        let url = self.url("instance/service-accounts/default/email");
        let request = self.http.get(&url, &[("metadata-flavor", "Google")]);
        match tokio::time::timeout(METADATA_PROBE_TIMEOUT, request).await {
            Ok(Ok(reply)) if reply.status == 200 => Ok(()),
            Ok(Ok(reply)) => Err(format!("HTTP {}", reply.status)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no reply within {METADATA_PROBE_TIMEOUT:?}")),
        }
    }
}

impl FetchToken for Metadata {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, FetchError>> {
        Box::pin(async move {
            let url = self.url(&format!(
                "instance/service-accounts/default/token?scopes={CLOUD_PLATFORM_SCOPE}"
            ));
            let reply = self
                .http
                .get(&url, &[("metadata-flavor", "Google")])
                .await?;
            AccessToken::from_reply("the metadata server", &reply)
        })
    }
}
