//! Who may use the server: a client presents an API key or a session token (`tokens`) as
//! `Authorization: Bearer <credential>` or — browsers cannot set headers on a WebSocket — as the
//! subprotocol `bearer.<credential>` next to `voxgate.v1`. Or it presents nothing and is anonymous,
//! which is allowed only where the configuration says so.
//!
//! API keys are stored as SHA-256 hashes (`[auth] api_keys = ["sha256:<hex>"]`); a presented key is
//! hashed and compared with every stored hash in constant time. A key is known in logs, metrics
//! and tokens by its *key id* (`k-` + the first 12 hex digits of its hash), never by itself.
//!
//! Secure by default ([`Authenticator::new`]): with no API key configured, anonymous clients are
//! accepted only while the server listens on loopback and trusts no proxy; on any other address,
//! or behind a proxy (`[server] trusted_proxies`: clients then come from elsewhere through it), the
//! server refuses to start unless `[auth] anonymous = true` (and then warns).

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use voxgate_actors::protocol::native::{BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL};

use super::tokens::{self, Claims, TokenSigner, MAX_TOKEN_CHARS, TOKEN_PREFIX};
use crate::config::AuthSettings;

/// Who a request is.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// No credential, where anonymous clients are allowed.
    Anonymous,
    /// An API key, by its id.
    ApiKey { key_id: String },
    /// A session token minted for the key `key_id`.
    Token {
        key_id: String,
        /// The token's cap on the session length.
        max_session_secs: Option<f64>,
    },
}

impl Principal {
    /// The key whose session limit the principal counts against.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::ApiKey { key_id } | Principal::Token { key_id, .. } => Some(key_id),
        }
    }

    /// For logs: `anonymous`, `key k-…`, `token of k-…`.
    pub fn describe(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".to_string(),
            Principal::ApiKey { key_id } => format!("key {key_id}"),
            Principal::Token { key_id, .. } => format!("token of {key_id}"),
        }
    }
}

/// Why a request is not authenticated; the message names the reason, never the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a credential is required: send `Authorization: Bearer <key or token>` or the WebSocket subprotocols `{SUBPROTOCOL}, bearer.<key or token>`")]
    Missing,
    #[error("the credential is not a valid API key or session token")]
    Invalid,
    #[error("the session token has expired; get a new one from POST /v1/tokens")]
    Expired,
    #[error("the session token was minted by an API key that is no longer configured")]
    KeyRevoked,
    #[error("this needs an API key (a session token cannot mint tokens)")]
    KeyRequired,
    #[error("the Authorization header must be `Bearer <key or token>`")]
    BadScheme,
}

/// A credential offered in the subprotocol list needs `voxgate.v1` next to it (the server must
/// select a subprotocol the browser offered, and will never echo the credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubprotocolMissing;

/// One accepted API key.
struct ApiKey {
    hash: [u8; 32],
    id: String,
}

/// Checks credentials against the configuration.
pub struct Authenticator {
    keys: Vec<ApiKey>,
    /// Whether a request without a credential is let in.
    anonymous: bool,
    pub tokens: TokenSigner,
}

impl Authenticator {
    /// The server's authenticator, or why the server must not start. The warning, if any, is
    /// for the log (anonymous clients on a non-loopback address or behind a proxy).
    /// `trusted_proxies` is `[server] trusted_proxies`: a server behind a proxy serves clients
    /// from elsewhere, however local its own address.
    pub fn new(
        settings: &AuthSettings,
        listen: SocketAddr,
        trusted_proxies: &[IpAddr],
    ) -> Result<(Authenticator, Option<String>), String> {
        let mut keys = Vec::with_capacity(settings.api_keys.len());
        for hash in &settings.api_keys {
            keys.push(ApiKey {
                id: hash.id(),
                hash: hash.0,
            });
        }
        let loopback = listen.ip().is_loopback();
        let behind_proxy = !trusted_proxies.is_empty();
        let mut warning = None;
        let anonymous = if settings.anonymous {
            if !loopback || behind_proxy {
                let through = if behind_proxy {
                    " (or through the trusted proxies)"
                } else {
                    ""
                };
                warning = Some(format!(
                    "[auth] anonymous = true: anyone who can reach {listen}{through} may use this \
                     server (and its Google quota) without a credential"
                ));
            }
            true
        } else if keys.is_empty() {
            if !loopback {
                return Err(format!(
                    "refusing to listen on {listen} without authentication: configure \
                     [auth] api_keys, or set [auth] anonymous = true to accept anyone (or listen \
                     on a loopback address)"
                ));
            }
            if behind_proxy {
                return Err(format!(
                    "refusing to serve clients through [server] trusted_proxies without \
                     authentication (they come from elsewhere, however local {listen} is): \
                     configure [auth] api_keys, or set [auth] anonymous = true to accept anyone"
                ));
            }
            true
        } else {
            false
        };
        let tokens = match &settings.token_secret {
            Some(secret) => TokenSigner::new(secret.expose().as_bytes()),
            None => TokenSigner::random(),
        };
        Ok((
            Authenticator {
                keys,
                anonymous,
                tokens,
            },
            warning,
        ))
    }

    /// Whether requests without a credential are let in.
    pub fn allows_anonymous(&self) -> bool {
        self.anonymous
    }

    /// The id of the configured key that `presented` is, comparing with every key in constant
    /// time.
    fn match_key(&self, presented: &str) -> Option<&str> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key.id.as_str());
            }
        }
        found
    }

    /// Who presents `credential` (`None`: no credential at all).
    pub fn authenticate(&self, credential: Option<&str>) -> Result<Principal, AuthError> {
        let Some(credential) = credential else {
            return if self.anonymous {
                Ok(Principal::Anonymous)
            } else {
                Err(AuthError::Missing)
            };
        };
        if credential.is_empty() || credential.len() > MAX_TOKEN_CHARS {
            return Err(AuthError::Invalid);
        }
        if let Some(key_id) = self.match_key(credential) {
            return Ok(Principal::ApiKey {
                key_id: key_id.to_string(),
            });
        }
        if credential.starts_with(TOKEN_PREFIX) {
            return match self.tokens.verify(credential, tokens::unix_now()) {
                // A token lives only as long as its key: removing a leaked key from the
                // configuration revokes every token it minted.
                Ok(Claims { kid, .. }) if !self.keys.iter().any(|key| key.id == kid) => {
                    Err(AuthError::KeyRevoked)
                }
                Ok(Claims { kid, msl, .. }) => Ok(Principal::Token {
                    key_id: kid,
                    max_session_secs: msl,
                }),
                Err(tokens::TokenError::Expired) => Err(AuthError::Expired),
                Err(_) => Err(AuthError::Invalid),
            };
        }
        Err(AuthError::Invalid)
    }

    /// The key id of the API key presented (tokens do not count): for `POST /v1/tokens`.
    pub fn authenticate_key(&self, credential: Option<&str>) -> Result<String, AuthError> {
        let credential = credential.ok_or(AuthError::Missing)?;
        if credential.len() > MAX_TOKEN_CHARS {
            return Err(AuthError::Invalid);
        }
        match self.match_key(credential) {
            Some(key_id) => Ok(key_id.to_string()),
            None if credential.starts_with(TOKEN_PREFIX) => Err(AuthError::KeyRequired),
            None => Err(AuthError::Invalid),
        }
    }
}

/// The credential a request carries: the `Authorization: Bearer` header, else a `bearer.<…>`
/// WebSocket subprotocol. `Ok(None)`: none at all.
pub fn credential(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::BadScheme)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AuthError::BadScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::BadScheme);
        }
        return Ok(Some(rest.trim().to_string()));
    }
    Ok(subprotocols(headers)
        .into_iter()
        .find_map(|p| p.strip_prefix(BEARER_SUBPROTOCOL_PREFIX).map(String::from)))
}

/// Every subprotocol the client offers, in order.
pub fn subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A credential in the subprotocols needs [`SUBPROTOCOL`] offered too.
pub fn check_subprotocols(headers: &HeaderMap) -> Result<(), SubprotocolMissing> {
    let offered = subprotocols(headers);
    let has_bearer = offered
        .iter()
        .any(|p| p.starts_with(BEARER_SUBPROTOCOL_PREFIX));
    if has_bearer && !offered.iter().any(|p| p == SUBPROTOCOL) {
        return Err(SubprotocolMissing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyHash;
    use actix_web::http::header::HeaderValue;
    use proptest::prelude::*;

    const KEY: &str = "test-key-0123456789";

    fn hash_entry(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    fn settings(keys: &[&str], anonymous: bool) -> AuthSettings {
        AuthSettings {
            api_keys: keys.iter().map(|k| hash_entry(k)).collect(),
            anonymous,
            ..AuthSettings::default()
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 1)))
    }

    #[test]
    fn without_keys_anonymous_only_on_loopback_unless_explicit() {
        for loopback in ["127.0.0.1:80", "[::1]:80", "127.0.0.2:1"] {
            let (auth, warning) = Authenticator::new(&settings(&[], false), addr(loopback), &[])
                .unwrap_or_else(|e| panic!("{loopback}: {e}"));
            assert!(auth.allows_anonymous() && warning.is_none());
        }
        for exposed in ["0.0.0.0:80", "[::]:80", "192.168.1.5:80"] {
            let refused = Authenticator::new(&settings(&[], false), addr(exposed), &[]).err();
            assert!(
                refused.is_some_and(|e| e.contains("anonymous")),
                "{exposed}"
            );
            let (auth, warning) = Authenticator::new(&settings(&[], true), addr(exposed), &[])
                .unwrap_or_else(|e| panic!("{exposed}: {e}"));
            assert!(auth.allows_anonymous());
            assert!(warning.is_some(), "anonymous on {exposed} is warned about");
        }
        let (auth, _) = Authenticator::new(&settings(&[KEY], false), addr("0.0.0.0:80"), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!auth.allows_anonymous(), "keys configured: no anonymous");
    }

    /// Behind a trusted proxy the clients come from elsewhere: no keys and no explicit
    /// `anonymous` is refused even on loopback.
    #[test]
    fn behind_a_proxy_anonymous_must_be_explicit() {
        let proxy = [IpAddr::from([127, 0, 0, 1])];
        let refused = Authenticator::new(&settings(&[], false), addr("127.0.0.1:80"), &proxy).err();
        assert!(
            refused.is_some_and(|e| e.contains("trusted_proxies") && e.contains("anonymous")),
            "no keys behind a proxy"
        );
        let (auth, warning) =
            Authenticator::new(&settings(&[], true), addr("127.0.0.1:80"), &proxy)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.allows_anonymous() && warning.is_some());
        let (auth, _) = Authenticator::new(&settings(&[KEY], false), addr("127.0.0.1:80"), &proxy)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!auth.allows_anonymous());
    }

    #[test]
    fn keys_are_matched_by_hash_and_known_by_id() {
        let (auth, _) =
            Authenticator::new(&settings(&["other", KEY], false), addr("0.0.0.0:1"), &[])
                .unwrap_or_else(|e| panic!("{e}"));
        let principal = auth.authenticate(Some(KEY));
        let expected_id = hash_entry(KEY).id();
        assert_eq!(
            principal,
            Ok(Principal::ApiKey {
                key_id: expected_id.clone()
            })
        );
        assert!(!expected_id.contains(KEY));
        assert_eq!(auth.authenticate(Some("wrong")), Err(AuthError::Invalid));
        assert_eq!(auth.authenticate(Some("")), Err(AuthError::Invalid));
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(auth.authenticate_key(Some(KEY)), Ok(expected_id));
    }

    #[test]
    fn tokens_authenticate_for_their_key_but_cannot_mint() {
        let (auth, _) = Authenticator::new(&settings(&[KEY], false), addr("0.0.0.0:1"), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let kid = hash_entry(KEY).id();
        let token = auth.tokens.mint(&Claims {
            kid: kid.clone(),
            exp: tokens::unix_now() + 60,
            msl: Some(30.0),
        });
        assert_eq!(
            auth.authenticate(Some(&token)),
            Ok(Principal::Token {
                key_id: kid.clone(),
                max_session_secs: Some(30.0)
            })
        );
        assert_eq!(
            auth.authenticate_key(Some(&token)),
            Err(AuthError::KeyRequired)
        );
        let expired = auth.tokens.mint(&Claims {
            kid,
            exp: 1,
            msl: None,
        });
        assert_eq!(auth.authenticate(Some(&expired)), Err(AuthError::Expired));
    }

    /// A token whose key is no longer configured is refused, though its signature is valid.
    #[test]
    fn a_token_of_a_removed_key_is_refused() {
        let mut keyed = settings(&[KEY, "other-key-0123456789"], false);
        keyed.token_secret = Some(crate::config::Secret::new("s".repeat(32)));
        let (before, _) =
            Authenticator::new(&keyed, addr("0.0.0.0:1"), &[]).unwrap_or_else(|e| panic!("{e}"));
        let kid = hash_entry(KEY).id();
        let token = before.tokens.mint(&Claims {
            kid,
            exp: tokens::unix_now() + 60,
            msl: None,
        });
        assert!(before.authenticate(Some(&token)).is_ok());
        keyed.api_keys.remove(0);
        let (after, _) =
            Authenticator::new(&keyed, addr("0.0.0.0:1"), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(after.authenticate(Some(&token)), Err(AuthError::KeyRevoked));
        let unknown = after.tokens.mint(&Claims {
            kid: "k-abc".into(),
            exp: tokens::unix_now() + 60,
            msl: None,
        });
        assert_eq!(
            after.authenticate(Some(&unknown)),
            Err(AuthError::KeyRevoked)
        );
    }

    #[test]
    fn credentials_come_from_the_header_or_the_subprotocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers), Ok(None));
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("voxgate.v1, bearer.abc"),
        );
        assert_eq!(credential(&headers), Ok(Some("abc".into())));
        assert_eq!(check_subprotocols(&headers), Ok(()));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(
            credential(&headers),
            Ok(Some("xyz".into())),
            "the header wins"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(credential(&headers), Err(AuthError::BadScheme));
        let mut bare = HeaderMap::new();
        bare.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer.abc"),
        );
        assert_eq!(check_subprotocols(&bare), Err(SubprotocolMissing));
    }

    proptest! {
        /// Arbitrary headers never panic the credential parser, and whatever it extracts is
        /// refused unless it is a configured key.
        #[test]
        fn arbitrary_credentials_are_refused_without_panic(
            authorization in "\\PC{0,200}",
            protocols in "[ -~]{0,200}",
        ) {
            let (auth, _) = Authenticator::new(&settings(&[KEY], false), addr("0.0.0.0:1"), &[])
                .unwrap_or_else(|e| panic!("{e}"));
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&protocols) {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
            }
            let _ = check_subprotocols(&headers);
            if let Ok(Some(found)) = credential(&headers) {
                prop_assert!(found == KEY || auth.authenticate(Some(&found)).is_err());
            }
            if let Ok(value) = HeaderValue::from_str(&authorization) {
                headers.insert(AUTHORIZATION, value);
            }
            if let Ok(Some(found)) = credential(&headers) {
                prop_assert!(found == KEY || auth.authenticate(Some(&found)).is_err());
            }
        }
    }
}
