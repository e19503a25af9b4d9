//! Checking a JWT-bearer assertion as Google's token endpoint does: RS256, signed by the
//! account's key, issued by the account, meant for this endpoint, short-lived and current, with a
//! scope. Each refusal is Google's `invalid_grant`/`invalid_scope` with Google's description.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde::Deserialize;

use super::account::Account;
use super::OAuthError;

/// Google accepts assertions valid for at most an hour…
const MAX_LIFETIME_SECS: u64 = 3_600;
/// …and tolerates this much clock skew.
const CLOCK_SKEW_SECS: u64 = 300;

const BAD_TIMES: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                         reasonable timeframe. Check your iat and exp values in the JWT claim.";

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The scopes a valid `assertion` asks for; `endpoint_url` is this token endpoint's own URL.
pub fn verify(
    assertion: &str,
    account: &Account,
    endpoint_url: &str,
) -> Result<Vec<String>, OAuthError> {
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OAuthError::grant("Invalid JWT: not a compact JWS"));
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| OAuthError::grant("Invalid JWT: not base64url"))
    };
    let parsed: Header = serde_json::from_slice(&decode(header)?)
        .map_err(|_| OAuthError::grant("Invalid JWT header"))?;
    if parsed.alg != "RS256" {
        return Err(OAuthError::grant("Invalid JWT: alg must be RS256"));
    }
    let signed = &assertion[..header.len() + 1 + claims.len()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| OAuthError::grant("Invalid JWT Signature."))?;
    let claims: Claims = serde_json::from_slice(&decode(claims)?)
        .map_err(|_| OAuthError::grant("Invalid JWT: missing or invalid claims"))?;
    if claims.iss != account.email {
        return Err(OAuthError::grant("Invalid grant: account not found"));
    }
    if claims.aud != endpoint_url && claims.aud != account.token_uri {
        return Err(OAuthError::grant(&format!(
            "Invalid JWT: Failed audience check. The right audience is {endpoint_url}"
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let current = claims.iat <= now + CLOCK_SKEW_SECS && claims.exp + CLOCK_SKEW_SECS > now;
    if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_LIFETIME_SECS || !current {
        return Err(OAuthError::grant(BAD_TIMES));
    }
    let scopes: Vec<String> = claims.scope.split_whitespace().map(String::from).collect();
    if scopes.is_empty() {
        return Err(OAuthError::scope());
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use ring::signature::RsaKeyPair;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use voxgate_actors::recognizer::google_auth::service_account::{sign_assertion, Claims};

    use super::*;
    use crate::make_credentials::key_file;

    const URL: &str = "https://127.0.0.1:50052/token";
    const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

    fn account_and_key() -> (Account, RsaKeyPair) {
        let json = key_file("https://example.test/token").unwrap_or_else(|e| panic!("{e}"));
        let account = Account::from_key_json(&json).unwrap_or_else(|e| panic!("{e}"));
        let file: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let pem = file["private_key"].as_str().unwrap_or_default();
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap_or_else(|e| panic!("{e}"));
        (account, key)
    }

    /// The gateway's assertions verify; each claim Google checks is checked, with Google's error.
    #[test]
    fn assertions_are_checked_as_google_does() {
        let (account, key) = account_and_key();
        let (_, other_key) = account_and_key();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let good = Claims {
            iss: &account.email,
            scope: SCOPE,
            aud: URL,
            iat: now,
            exp: now + 3_600,
        };
        let sign = |c: &Claims<'_>, k: &RsaKeyPair| sign_assertion(c, k).unwrap_or_default();
        let check = |jwt: &str| verify(jwt, &account, URL);
        assert_eq!(check(&sign(&good, &key)), Ok(vec![SCOPE.to_string()]));
        let key_file_aud = Claims {
            aud: "https://example.test/token",
            ..good
        };
        assert!(
            check(&sign(&key_file_aud, &key)).is_ok(),
            "the key file's token_uri"
        );
        let description = |jwt: String| check(&jwt).err().map(|e| (e.error, e.description));
        let grant = |d: &str| Some(("invalid_grant", d.to_string()));
        assert_eq!(
            description(sign(&good, &other_key)),
            grant("Invalid JWT Signature.")
        );
        let stranger = Claims {
            iss: "x@y.iam.gserviceaccount.com",
            ..good
        };
        assert_eq!(
            description(sign(&stranger, &key)),
            grant("Invalid grant: account not found")
        );
        let elsewhere = Claims {
            aud: "https://oauth2.googleapis.com/token",
            ..good
        };
        assert!(description(sign(&elsewhere, &key))
            .is_some_and(|(_, d)| d.starts_with("Invalid JWT: Failed audience check")));
        for (iat, exp) in [(now, now + 7_200), (now - 7_200, now - 3_600), (now, now)] {
            let times = Claims { iat, exp, ..good };
            assert_eq!(description(sign(&times, &key)), grant(BAD_TIMES));
        }
        let no_scope = Claims { scope: " ", ..good };
        assert_eq!(
            check(&sign(&no_scope, &key)).err().map(|e| e.error),
            Some("invalid_scope")
        );
        let jwt = sign(&good, &key);
        let (head, _) = jwt.split_at(jwt.len() / 2);
        assert!(description(head.to_string()).is_some());
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            "e30"
        );
        assert_eq!(
            description(none_alg),
            grant("Invalid JWT: alg must be RS256")
        );
    }
}
