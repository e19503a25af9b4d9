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
//!
//! Resume tokens (issue #15, [`ResumeClaims`]: a session's state, handed to its client in `ready`
//! and on finals) have the same form, but their MAC is taken over [`RESUME_DOMAIN`] followed by
//! `vg1.<payload>`: the two kinds are signed with the same secret, yet neither ever verifies as
//! the other (a resume token presented as a credential, or a session token presented to resume,
//! fails its MAC).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use voxgate_actors::session::resume::ResumeState;

/// What every token starts with (and the version of the format).
pub const TOKEN_PREFIX: &str = "vg1.";
/// Longer presented credentials are refused without looking at them.
pub const MAX_TOKEN_CHARS: usize = 1_024;
/// Longest key id a token may carry.
const MAX_KEY_ID_CHARS: usize = 64;
/// Longer resume tokens are refused unread. A resume token carries the session's configuration
/// (its phrase hints), so it may be far longer than a session token; a `start` message carrying it
/// is bounded by `[session] max_json_bytes` anyway.
pub const MAX_RESUME_TOKEN_CHARS: usize = 48 * 1_024;
/// What a resume token's MAC covers before the token's text: the kinds' domain separation.
pub const RESUME_DOMAIN: &[u8] = b"voxgate resume token\0";

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

/// What a resume token says: the session's state, the key it belongs to, its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeClaims {
    #[serde(flatten)]
    pub state: ResumeState,
    /// The API key the session counts against; `None` for an anonymous session.
    pub kid: Option<String>,
    /// Expiry, in Unix seconds.
    pub exp: u64,
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

    /// `vg1.<payload>.<mac>` for the JSON `payload`, the MAC over `domain` then `vg1.<payload>`.
    fn seal(&self, domain: &[u8], payload: &[u8]) -> String {
        let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(domain);
        mac.update(signed.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The payload of a token sealed under `domain`, its MAC checked first.
    fn unseal(&self, domain: &[u8], token: &str, max_chars: usize) -> Result<Vec<u8>, TokenError> {
        if token.len() > max_chars || !token.starts_with(TOKEN_PREFIX) {
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
        mac.update(domain);
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        URL_SAFE_NO_PAD
            .decode(&signed[TOKEN_PREFIX.len()..])
            .map_err(|_| TokenError::Malformed)
    }

    /// The token for `claims`.
    pub fn mint(&self, claims: &Claims) -> String {
        self.seal(b"", &serde_json::to_vec(claims).unwrap_or_default())
    }

    /// The claims of a valid, unexpired token (`now` in Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let payload = self.unseal(b"", token, MAX_TOKEN_CHARS)?;
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

    /// The resume token for `claims`.
    pub fn mint_resume(&self, claims: &ResumeClaims) -> String {
        self.seal(
            RESUME_DOMAIN,
            &serde_json::to_vec(claims).unwrap_or_default(),
        )
    }

    /// The claims of a genuine, unexpired resume token (`now` in Unix seconds). Whose key it is,
    /// is the caller's to compare.
    pub fn verify_resume(&self, token: &str, now: u64) -> Result<ResumeClaims, TokenError> {
        let payload = self.unseal(RESUME_DOMAIN, token, MAX_RESUME_TOKEN_CHARS)?;
        let claims: ResumeClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims
            .kid
            .as_ref()
            .is_some_and(|kid| kid.chars().count() > MAX_KEY_ID_CHARS)
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

    fn resume_claims(exp: u64) -> ResumeClaims {
        use voxgate_actors::session::resume::ResumeConfig;
        ResumeClaims {
            state: ResumeState {
                sid: "6f1c3e0a-8d4b-4f4e-9a51-0c2f3f7b9d11".into(),
                cfg: ResumeConfig {
                    encoding: "LINEAR16".into(),
                    sample_rate_hz: 16_000,
                    language_code: "en-US".into(),
                    interim_results: true,
                    enable_automatic_punctuation: false,
                    model: String::new(),
                    phrases: vec!["voxgate".into()],
                    single_utterance: false,
                    alternative_language_codes: vec!["fr-FR".into()],
                    profanity_filter: true,
                    endpointing: Some("short".into()),
                    denoise: false,
                    voice_activity_events: false,
                },
                fin: 12_340,
                res: 7,
            },
            kid: Some("k-0123456789ab".into()),
            exp,
        }
    }

    #[test]
    fn a_resume_token_round_trips_until_it_expires() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.mint_resume(&resume_claims(1_000));
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(signer.verify_resume(&token, 999), Ok(resume_claims(1_000)));
        assert_eq!(
            signer.verify_resume(&token, 1_000),
            Err(TokenError::Expired)
        );
        let anonymous = ResumeClaims {
            kid: None,
            ..resume_claims(1_000)
        };
        let token = signer.mint_resume(&anonymous);
        assert_eq!(signer.verify_resume(&token, 0), Ok(anonymous));
    }

    #[test]
    fn resume_and_session_tokens_never_pass_for_each_other() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let resume = signer.mint_resume(&resume_claims(u64::MAX));
        let session = signer.mint(&claims(u64::MAX));
        assert_eq!(signer.verify(&resume, 0), Err(TokenError::BadSignature));
        assert_eq!(
            signer.verify_resume(&session, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_changed_or_foreign_resume_token_is_forged_and_junk_is_malformed() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.mint_resume(&resume_claims(u64::MAX));
        let other = TokenSigner::new(b"fedcba9876543210fedcba9876543210");
        assert_eq!(
            other.verify_resume(&token, 0),
            Err(TokenError::BadSignature)
        );
        // The client moves its own clock forward: same MAC, another payload.
        let mut later = resume_claims(u64::MAX);
        later.state.fin = 99_999;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&later).unwrap_or_default());
        let tag = token.rsplit_once('.').map(|(_, t)| t).unwrap_or_default();
        let forged = format!("{TOKEN_PREFIX}{payload}.{tag}");
        assert_eq!(
            signer.verify_resume(&forged, 0),
            Err(TokenError::BadSignature)
        );
        // Signed, but not a resume token's payload.
        let junk = signer.seal(RESUME_DOMAIN, b"{\"sid\":1}");
        assert_eq!(signer.verify_resume(&junk, 0), Err(TokenError::Malformed));
        for token in ["", "vg1.", "abc", "vg1.abc.!!!"] {
            assert_eq!(signer.verify_resume(token, 0), Err(TokenError::Malformed));
        }
        let long = format!("vg1.{}.abc", "a".repeat(MAX_RESUME_TOKEN_CHARS));
        assert_eq!(signer.verify_resume(&long, 0), Err(TokenError::Malformed));
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
