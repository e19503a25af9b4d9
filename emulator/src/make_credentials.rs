//! `voxgate emulator make-credentials --token-uri URL`: a service-account key file, in the format
//! Google's console downloads, with a fresh RSA key pair made here and now (nothing is committed
//! or reused), whose `token_uri` points at the emulator's token endpoint. The emulator's
//! `--require-auth` accepts it, so the whole production path can be rehearsed locally.
//!
//! The key pair comes from the `rsa` crate, used for key generation only: signing (the gateway)
//! and verifying (the emulator) are ring's. (RUSTSEC-2023-0071, a timing side channel in `rsa`'s
//! private-key operations, does not apply to making a key on the user's own machine.)

use rand::Rng as _;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::{Generate, PrivateKey};

/// The account's made-up identity.
const PROJECT_ID: &str = "voxgate-emulator";
const CLIENT_EMAIL: &str = "voxgate-emulator@voxgate-emulator.iam.gserviceaccount.com";

/// The key file's JSON, with a fresh key pair.
pub fn key_file(token_uri: &str) -> Result<String, String> {
    let uri: http::Uri = token_uri
        .parse()
        .map_err(|e| format!("--token-uri {token_uri}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(format!(
            "--token-uri {token_uri}: must be an https:// (or http://) URL"
        ));
    }
    let key = PrivateKey::try_generate().map_err(|e| format!("generating a key pair: {e}"))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("encoding the key: {e}"))?;
    let mut rng = rand::rng();
    let key_id: String = (0..20)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    let client_id: String = (0..21)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let file = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": key_id,
        "private_key": pem.as_str(),
        "client_email": CLIENT_EMAIL,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    });
    serde_json::to_string_pretty(&file).map_err(|e| format!("key file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::Account;

    /// Each key file has a key pair of its own that `--require-auth` reads, and the given
    /// `token_uri`; a URL that is not one is refused.
    #[test]
    fn key_files_are_fresh_and_accepted() {
        let files: Vec<String> = (0..2)
            .map(|_| key_file("https://127.0.0.1:8444/token").unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let accounts: Vec<Account> = files
            .iter()
            .map(|f| Account::from_key_json(f).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_ne!(accounts[0].public_key, accounts[1].public_key, "fresh keys");
        assert_eq!(accounts[0].token_uri, "https://127.0.0.1:8444/token");
        assert_eq!(accounts[0].email, CLIENT_EMAIL);
        assert!(key_file("ftp://x/token").is_err());
        assert!(key_file("not a url").is_err());
    }
}
