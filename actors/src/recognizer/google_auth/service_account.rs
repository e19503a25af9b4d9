//! A service-account key file's credentials: a JWT signed with the account's RSA key (RS256),
//! exchanged at the key's `token_uri` for an access token — the JWT-bearer grant of Google's
//! "Using OAuth 2.0 for Server to Server Applications". Signing runs where the fetch runs, on the
//! credentials' own runtime ([`super::Credentials`]), never on an actor's event loop.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;

use super::http::CredentialsHttp;
use super::{AccessToken, FetchError, FetchToken, CLOUD_PLATFORM_SCOPE};

/// The grant type of a signed-JWT exchange (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long an assertion is valid; Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3_600;

/// A service account, ready to sign assertions.
pub struct ServiceAccount {
    client_email: String,
    token_uri: String,
    key: RsaKeyPair,
    http: Arc<CredentialsHttp>,
}

impl ServiceAccount {
    /// From a key file's fields. The error never quotes the key.
    pub fn new(
        client_email: String,
        private_key_pem: &str,
        token_uri: String,
        http: Arc<CredentialsHttp>,
    ) -> Result<ServiceAccount, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.as_bytes())
            .map_err(|_| "`private_key` is not a PEM PKCS#8 private key".to_string())?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| format!("`private_key` is not a usable RSA key ({e})"))?;
        Ok(ServiceAccount {
            client_email,
            token_uri,
            key,
            http,
        })
    }

    async fn exchange(&self) -> Result<AccessToken, FetchError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let assertion = sign_assertion(&claims, &self.key).map_err(FetchError::Refused)?;
        let reply = self
            .http
            .post_form(
                &self.token_uri,
                &[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)],
            )
            .await?;
        AccessToken::from_reply(&self.token_uri, &reply)
    }
}

impl FetchToken for ServiceAccount {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, FetchError>> {
        Box::pin(self.exchange())
    }
}

/// The claims of an assertion, as Google's token endpoint wants them.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims<'a> {
    /// The service account's email.
    pub iss: &'a str,
    /// Space-separated OAuth scopes.
    pub scope: &'a str,
    /// The token endpoint the assertion is meant for.
    pub aud: &'a str,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, at most an hour after `iat`.
    pub exp: u64,
}

/// `header.claims.signature`, base64url without padding, RS256.
pub fn sign_assertion(claims: &Claims<'_>, key: &RsaKeyPair) -> Result<String, String> {
    let claims = serde_json::to_vec(claims).map_err(|e| format!("JWT claims: {e}"))?;
    let mut jwt = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the JWT failed".to_string())?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}
