//! Short-lived session tokens, so that a browser never holds a long-lived API key: minted by
//! `POST /v1/tokens` for a caller with an API key, presented like a key, checked without any state.
//!
//! Format: `vg1.<payload>.<mac>`, where `<payload>` is the base64url (no padding) of a JSON object
//! `{"kid":"<key id>","exp":<unix seconds>,"msl":<max session seconds, optional>}` and `<mac>` the
//! base64url of HMAC-SHA256 under `[auth] token_secret` over `vg1.<payload>` (the ASCII text).
//! Every character is one a WebSocket subprotocol may carry, so a browser can send
//! `bearer.<token>`.
//!
//! The MAC is checked (in constant time) before the payload is even decoded; a token of another
//! secret, a changed payload, or a token past `exp` is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What every token starts with (and the version of the format).
pub const TOKEN_PREFIX: &str = "vg1.";
/// Longer presented credentials are refused without looking at them.
pub const MAX_TOKEN_CHARS: usize = 1_024;
/// Longest key id a token may carry.
const MAX_KEY_ID_CHARS: usize = 64;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The id of the API key that minted the token (its sessions count against that key).
    pub kid: String,
    /// Expiry, in Unix seconds.
    pub exp: u64,
    /// The longest session the token may open, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msl: Option<f64>,
}

/// Why a presented token was refused (for the log and the 401 message; never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// Mints and checks tokens with one secret.
pub struct TokenSigner {
    /// HMAC key. Never logged (this type has no `Debug`).
    secret: Vec<u8>,
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> TokenSigner {
        TokenSigner {
            secret: secret.to_vec(),
        }
    }

    /// A signer with a random 256-bit secret: its tokens are valid in this process only.
    pub fn random() -> TokenSigner {
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        TokenSigner { secret }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail; a fresh MAC per use.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }

    /// The token for `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of a valid, unexpired token (`now` in Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_CHARS || !token.starts_with(TOKEN_PREFIX) {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        if signed.len() <= TOKEN_PREFIX.len() {
            return Err(TokenError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(&signed[TOKEN_PREFIX.len()..])
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.kid.chars().count() > MAX_KEY_ID_CHARS
            || claims
                .msl
                .is_some_and(|msl| !(msl > 0.0 && msl.is_finite()))
        {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            kid: "k-0123456789ab".into(),
            exp,
            msl: Some(60.0),
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.mint(&claims(1_000));
        assert!(token.starts_with(TOKEN_PREFIX));
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        assert_eq!(signer.verify(&token, 999), Ok(claims(1_000)));
        assert_eq!(signer.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn another_secret_or_a_changed_payload_is_refused() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let other = TokenSigner::new(b"fedcba9876543210fedcba9876543210");
        let token = signer.mint(&claims(1_000));
        assert_eq!(other.verify(&token, 0), Err(TokenError::BadSignature));
        // The same MAC over a payload that says something else.
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                exp: u64::MAX,
                ..claims(0)
            })
            .unwrap_or_default(),
        );
        let tag = token.rsplit_once('.').map(|(_, t)| t).unwrap_or_default();
        let forged = format!("{TOKEN_PREFIX}{forged_payload}.{tag}");
        assert_eq!(signer.verify(&forged, 0), Err(TokenError::BadSignature));
        let random = TokenSigner::random();
        assert_eq!(random.verify(&token, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        for token in [
            "",
            "vg1.",
            "vg1..",
            "vg1.abc",
            "vg2.abc.def",
            "vg1.abc.!!!",
            &format!("vg1.{}.abc", "a".repeat(2_000)),
        ] {
            assert!(signer.verify(token, 0).is_err(), "{token:?}");
        }
    }

    proptest! {
        /// Whatever is presented, verification answers without panicking, and only the signer's
        /// own tokens pass.
        #[test]
        fn verify_never_panics_and_accepts_only_minted_tokens(text in "\\PC{0,300}") {
            let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
            prop_assert!(signer.verify(&text, 0).is_err());
            let prefixed = format!("{TOKEN_PREFIX}{text}");
            prop_assert!(signer.verify(&prefixed, 0).is_err());
        }

        /// Changing any one character of a valid token makes it invalid.
        #[test]
        fn any_changed_character_breaks_the_token(at in 0usize..200, to in "[A-Za-z0-9._-]") {
            let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
            let token = signer.mint(&claims(u64::MAX));
            let at = at % token.len();
            let mut changed: Vec<char> = token.chars().collect();
            let to = to.chars().next().unwrap_or('A');
            prop_assume!(changed[at] != to);
            changed[at] = to;
            let changed: String = changed.into_iter().collect();
            prop_assert!(signer.verify(&changed, 0).is_err());
        }
    }
}
