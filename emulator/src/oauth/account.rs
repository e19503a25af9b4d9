//! The service account the emulator accepts (`--require-auth KEY_FILE`): its email, the public
//! half of its key, and the `token_uri` written in the key file. Google keeps only the public key;
//! the emulator reads the key file a user already has and keeps only the public half too.

use ring::signature::{KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::Deserialize;

/// A service account as the token endpoint knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// `client_email`: the assertion's `iss`.
    pub email: String,
    /// The key file's `token_uri`: an audience the assertion may name (besides the endpoint's
    /// own URL).
    pub token_uri: String,
    /// The RSA public key (PKCS#1 DER) the assertion's signature must verify with.
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("email", &self.email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

impl Account {
    /// Reads a service-account key file; errors name the file, never quote the key.
    pub fn from_key_file(path: &str) -> Result<Account, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--require-auth {path}: {e}"))?;
        Account::from_key_json(&text).map_err(|e| format!("--require-auth {path}: {e}"))
    }

    /// Parses a service-account key file's text.
    pub fn from_key_json(text: &str) -> Result<Account, String> {
        let key: KeyFile = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a service-account key file (line {}: a field is missing or invalid)",
                e.line()
            )
        })?;
        if key.kind != "service_account" {
            return Err(format!("`type` is `{}`, not `service_account`", key.kind));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(key.private_key.as_bytes())
            .map_err(|_| "`private_key` is not a PEM PKCS#8 private key".to_string())?;
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| format!("`private_key` is not a usable RSA key ({e})"))?;
        Ok(Account {
            email: key.client_email,
            token_uri: key.token_uri,
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }
}
