//! `wss://` served directly: rustls (ring) with the certificate and key of `[tls] cert` / `key`
//! (PEM), swapped at run time without dropping anyone.
//!
//! The server's TLS configuration resolves its certificate through [`ReloadableCert`] on every new
//! handshake; [`ReloadableCert::reload`] reads the files again and swaps the certificate in, so
//! connections already open keep theirs and new ones get the new one. Reloads happen on SIGHUP
//! (`voxgate serve`) and, every `[tls] reload_interval_secs`, when a file's modification time
//! changed. A reload that fails (a half-written file, a key that does not match) keeps the current
//! certificate and is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsSettings;

/// The server's certificate, swappable.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times at the last load (to notice changes).
    loaded_mtimes: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    /// How many changes of the files the watcher has acted on (each a reload attempt, successful
    /// or not): what a caller waits on to know that a change was seen.
    changes_seen: tokio::sync::watch::Sender<u64>,
}

/// The ring crypto provider (the one voxgate builds with; tonic's TLS uses it too).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a certificate chain and its key into a `CertifiedKey`, checking that they match.
fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("tls.cert {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert {}: no PEM certificate in the file",
            cert_path.display()
        ));
    }
    // The error names the file, never its content.
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("tls.key {}: {e}", key_path.display()))?;
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "tls: {} and {}: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(certified)
}

impl ReloadableCert {
    /// Loads `[tls]`'s files; `Ok(None)` when TLS is not configured.
    pub fn from_settings(settings: &TlsSettings) -> Result<Option<Arc<ReloadableCert>>, String> {
        let (Some(cert_path), Some(key_path)) = (&settings.cert, &settings.key) else {
            return Ok(None);
        };
        let mtimes = (mtime(cert_path), mtime(key_path));
        let certified = load(cert_path, key_path)?;
        Ok(Some(Arc::new(ReloadableCert {
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
            current: RwLock::new(Arc::new(certified)),
            loaded_mtimes: Mutex::new(mtimes),
            changes_seen: tokio::sync::watch::Sender::new(0),
        })))
    }

    /// Reads the files again and, if they make a valid certificate, serves it from now on.
    pub fn reload(&self) -> Result<(), String> {
        let mtimes = (mtime(&self.cert_path), mtime(&self.key_path));
        let certified = load(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        *self
            .loaded_mtimes
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mtimes;
        tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads if either file's modification time changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = (mtime(&self.cert_path), mtime(&self.key_path));
        let changed = *self
            .loaded_mtimes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            != now;
        if changed {
            if let Err(e) = self.reload() {
                tracing::error!("TLS certificate not reloaded, the current one stays: {e}");
                // Not again until the files change once more.
                *self
                    .loaded_mtimes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = now;
            }
            self.changes_seen.send_modify(|seen| *seen += 1);
        }
    }

    /// The count of file changes the watcher has acted on so far, updated after each reload
    /// attempt (successful or not) it made.
    pub fn changes_seen(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes_seen.subscribe()
    }

    /// The rustls configuration of the server: TLS 1.2 and 1.3, HTTP/1.1 (WebSockets need it).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}
