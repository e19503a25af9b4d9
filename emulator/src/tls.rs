//! The emulator's TLS identity (`--tls-cert`, `--tls-key`): the speech service serves gRPC over
//! TLS with ALPN h2 (as Google's front ends), and the token endpoint HTTPS with ALPN http/1.1.
//! Both use the one certificate, read and checked once at start-up.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its private key, as PEM. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    cert_pem: Arc<str>,
    key_pem: Arc<str>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads and checks the two PEM files; errors name the flag and the file.
    pub fn from_files(cert: &str, key: &str) -> Result<TlsIdentity, String> {
        let cert_pem =
            std::fs::read_to_string(cert).map_err(|e| format!("--tls-cert {cert}: {e}"))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
        let identity = TlsIdentity {
            cert_pem: Arc::from(cert_pem),
            key_pem: Arc::from(key_pem),
        };
        identity.server_config(b"h2")?;
        Ok(identity)
    }

    /// For tonic's server (which offers ALPN h2 itself).
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&*self.cert_pem, &*self.key_pem);
        tonic::transport::ServerTlsConfig::new().identity(identity)
    }

    /// For the token endpoint: HTTP/1.1 over TLS.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        Ok(tokio_rustls::TlsAcceptor::from(
            self.server_config(b"http/1.1")?,
        ))
    }

    fn server_config(&self, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--tls-cert: {e}"))?;
        if chain.is_empty() {
            return Err("--tls-cert: no PEM certificate in the file".to_string());
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| "--tls-key: no PEM private key in the file".to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}
