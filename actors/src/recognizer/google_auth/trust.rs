//! Which certificates the gateway trusts upstream: the public web roots, plus the PEM file of
//! `[google] ca_file` when set (a TLS-inspecting proxy's CA, or a test CA). Read once at start-up
//! and used by both connections to Google: the speech endpoint (tonic, [`TrustRoots::extra_pem`])
//! and the token endpoint ([`TrustRoots::client_config`]). The webhooks (`crate::webhooks`) build
//! theirs the same way from `[webhooks] ca_file`. There is no way to turn verification off: a
//! certificate that chains to none of these roots fails the connection.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::CredentialsError;
use crate::settings::GoogleSettings;

/// The trust roots for Google's endpoints. Cheap to clone.
#[derive(Clone)]
pub struct TrustRoots {
    /// `[google] ca_file` as read, for tonic's `Certificate::from_pem`; `None` without one.
    extra_pem: Option<Arc<[u8]>>,
    /// The same certificates, parsed (checked at start-up).
    extra: Arc<[CertificateDer<'static>]>,
    /// The configuration key the extra certificates came from, for error messages.
    key: &'static str,
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoots")
            .field("extra_certificates", &self.extra.len())
            .finish()
    }
}

impl TrustRoots {
    /// The public roots and `[google] ca_file`'s certificates; a file that cannot be read or
    /// holds no certificate is an error naming the key and the file.
    pub fn from_settings(settings: &GoogleSettings) -> Result<TrustRoots, CredentialsError> {
        TrustRoots::from_ca_file("google.ca_file", settings.ca_file.as_deref())
    }

    /// The public roots and the certificates of the PEM file `path` (configuration key `key`).
    pub fn from_ca_file(
        key: &'static str,
        path: Option<&str>,
    ) -> Result<TrustRoots, CredentialsError> {
        let Some(path) = path else {
            return Ok(TrustRoots {
                extra_pem: None,
                extra: Arc::from(Vec::new()),
                key,
            });
        };
        let pem = std::fs::read(path)
            .map_err(|e| CredentialsError(format!("{key}: cannot read `{path}`: {e}")))?;
        let extra = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CredentialsError(format!("{key}: `{path}`: {e}")))?;
        if extra.is_empty() {
            return Err(CredentialsError(format!(
                "{key}: `{path}` holds no PEM certificate"
            )));
        }
        Ok(TrustRoots {
            extra_pem: Some(Arc::from(pem)),
            extra: Arc::from(extra),
            key,
        })
    }

    /// The configuration key of the extra certificates (`google.ca_file`, `webhooks.ca_file`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The PEM of `[google] ca_file`, if set.
    pub fn extra_pem(&self) -> Option<&[u8]> {
        self.extra_pem.as_deref()
    }

    /// A rustls client configuration trusting these roots, offering `alpn` (e.g. `http/1.1`).
    pub fn client_config(
        &self,
        alpn: &[u8],
    ) -> Result<Arc<rustls::ClientConfig>, CredentialsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in self.extra.iter() {
            roots
                .add(certificate.clone())
                .map_err(|e| CredentialsError(format!("{}: {e}", self.key)))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CredentialsError(format!("TLS set-up: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}
