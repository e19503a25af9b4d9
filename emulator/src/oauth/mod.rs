//! The emulator as Google's OAuth (`--require-auth`): a token endpoint that grants access tokens
//! for the JWT-bearer assertions of one service account ([`endpoint`], [`assertion`]), and the
//! check the speech service makes on every call's `authorization` header ([`Tokens::check`]),
//! with Google's codes and messages. Tokens expire after `--token-ttl-secs` of real time; a
//! stream already open keeps going when its token expires, as on Google, but a new one needs a
//! valid token.

pub mod account;
pub mod assertion;
pub mod endpoint;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tonic::metadata::MetadataMap;
use tonic::Status;

pub use account::Account;

/// The scope a Speech-to-Text call needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's words for a call without credentials…
pub const MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. \
    Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// …with a token that is unknown or expired…
pub const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected \
    OAuth 2 access token, login cookie or other valid authentication credential. See \
    https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// …and with a token granted for other scopes.
pub const INSUFFICIENT_SCOPES: &str = "Request had insufficient authentication scopes.";

/// What `--require-auth` sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The one account whose assertions are granted.
    pub account: Account,
    /// How long a granted token is valid.
    pub token_ttl: Duration,
    /// Where the token endpoint listens (port 0: any free port).
    pub token_listen: std::net::SocketAddr,
    /// For this long after the start the token endpoint answers 503 (an outage of Google's OAuth).
    pub token_unavailable_for: Duration,
}

/// A refusal by the token endpoint: HTTP 400 with Google's `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn grant(description: &str) -> OAuthError {
        OAuthError {
            error: "invalid_grant",
            description: description.to_string(),
        }
    }

    pub fn scope() -> OAuthError {
        OAuthError {
            error: "invalid_scope",
            description: "Invalid OAuth scope or ID token audience provided.".to_string(),
        }
    }
}

/// A granted token: until when, for which scopes.
#[derive(Debug)]
struct Granted {
    expires: Instant,
    scopes: Vec<String>,
}

/// The tokens granted so far, and the counts tests read back.
#[derive(Debug, Default)]
pub struct Tokens {
    granted: Mutex<HashMap<String, Granted>>,
    /// Tokens granted.
    pub issued: AtomicU64,
    /// Token requests refused (bad assertion, grant or scope) or answered 503.
    pub refused: AtomicU64,
    /// Calls refused for their credentials (UNAUTHENTICATED or PERMISSION_DENIED).
    pub calls_refused: AtomicU64,
}

impl Tokens {
    /// Grants a new token for `scopes`, valid for `ttl`.
    pub fn grant(&self, scopes: Vec<String>, ttl: Duration) -> String {
        let mut random = [0u8; 24];
        rand::rng().fill(&mut random);
        let token = format!("ya29.emulator-{}", hex(&random));
        let now = Instant::now();
        let mut granted = self.lock();
        granted.retain(|_, g| g.expires > now);
        granted.insert(
            token.clone(),
            Granted {
                expires: now + ttl,
                scopes,
            },
        );
        self.issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// Whether a call's metadata carries a valid, unexpired token for the Speech API's scope.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let result = self.check_at(metadata, Instant::now());
        if result.is_err() {
            self.calls_refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn check_at(&self, metadata: &MetadataMap, now: Instant) -> Result<(), Status> {
        let Some(header) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(MISSING_CREDENTIALS));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated(INVALID_CREDENTIALS))?;
        let granted = self.lock();
        match granted.get(token) {
            Some(g) if g.expires > now => {
                if g.scopes.iter().any(|s| s == CLOUD_PLATFORM_SCOPE) {
                    Ok(())
                } else {
                    Err(Status::permission_denied(INSUFFICIENT_SCOPES))
                }
            }
            _ => Err(Status::unauthenticated(INVALID_CREDENTIALS)),
        }
    }

    /// Adds these counts to a stats snapshot.
    pub(crate) fn add_to(&self, stats: &mut crate::stats::StatsSnapshot) {
        stats.tokens_issued = self.issued.load(Ordering::Relaxed);
        stats.token_requests_refused = self.refused.load(Ordering::Relaxed);
        stats.calls_refused_credentials = self.calls_refused.load(Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Granted>> {
        // A panic elsewhere poisoned the lock; the map itself is still usable.
        self.granted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Ok(value) = format!("Bearer {token}").parse() {
            metadata.insert("authorization", value);
        }
        metadata
    }

    /// A granted token passes until it expires; a missing, unknown or expired one is
    /// UNAUTHENTICATED, a token for another scope PERMISSION_DENIED — in Google's words.
    #[test]
    fn calls_need_a_valid_token_for_the_scope() {
        let tokens = Tokens::default();
        let good = tokens.grant(vec![CLOUD_PLATFORM_SCOPE.into()], Duration::from_secs(15));
        let narrow = tokens.grant(vec!["https://x/other".into()], Duration::from_secs(15));
        let now = Instant::now();
        assert_eq!(tokens.check_at(&with_token(&good), now).ok(), Some(()));
        let code = |m: &MetadataMap, at| tokens.check_at(m, at).err().map(|s| s.code());
        let late = now + Duration::from_secs(16);
        assert_eq!(
            code(&with_token(&good), late),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&with_token("ya29.forged"), now),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&MetadataMap::new(), now),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&with_token(&narrow), now),
            Some(tonic::Code::PermissionDenied)
        );
        let message = tokens.check_at(&MetadataMap::new(), now).err();
        assert_eq!(
            message.map(|s| s.message().to_string()),
            Some(MISSING_CREDENTIALS.into())
        );
        assert_eq!(tokens.issued.load(Ordering::Relaxed), 2);
    }
}
