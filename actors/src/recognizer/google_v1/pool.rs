//! The HTTP/2 connections to Google, pooled per worker thread.
//!
//! A tonic `Channel` is one HTTP/2 connection (reconnecting by itself when it breaks), and its
//! background task lives on the runtime that created it — so each actix worker thread has its own
//! pool, and the pool needs no locks (`Rc`, `Cell`). Google front ends allow about 100 concurrent
//! streams per connection: each channel carries at most `streams_per_connection` streams; a
//! recognizer takes a [`ChannelLease`] on a channel with room (a new channel is opened, lazily,
//! when all are full) and gives it back by dropping it when it stops. Idle channels beyond one are
//! closed when the next lease is taken, so a burst does not keep its connections forever.
//!
//! Each connection's socket is a [`CoalescingStream`]: audio frames of its streams that are ready
//! within `[google] write_coalesce_ms` of each other leave in one write (see `coalesce`).
//!
//! `https://` endpoints use TLS (ALPN h2) with the webpki root certificates, plus those of
//! `[google] ca_file` ([`TrustRoots`]), and the endpoint's host name as the server name —
//! certificates are always verified. `http://` endpoints are plaintext (the emulator on loopback).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::coalesce::CoalescingConnector;
use crate::recognizer::google_auth::trust::TrustRoots;
use crate::settings::{GoogleSettings, MAX_WRITE_COALESCE_MS};

/// HTTP/2 keepalive pings on connections with open streams: a silently dead connection is noticed
/// within interval + timeout instead of at the next TCP retransmission limit.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive, for connections idle at the HTTP/2 level.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The `[google]` endpoint cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PoolError(pub String);

/// One connection and how many streams it carries now.
struct PooledChannel {
    channel: Channel,
    streams: Cell<usize>,
}

/// A stream's claim on a channel; dropping it frees the slot.
pub struct ChannelLease {
    pooled: Rc<PooledChannel>,
}

impl ChannelLease {
    /// The channel to make the call on (clones share the connection).
    pub fn channel(&self) -> Channel {
        self.pooled.channel.clone()
    }
}

impl Drop for ChannelLease {
    fn drop(&mut self) {
        self.pooled
            .streams
            .set(self.pooled.streams.get().saturating_sub(1));
    }
}

/// How to connect to the configured endpoint (address, TLS, timeouts, keepalive, streams per
/// connection), checked once at start-up and shared by every worker thread's pool.
#[derive(Debug, Clone)]
pub struct GoogleEndpoint {
    endpoint: Endpoint,
    /// Opens the connections' sockets (coalescing their writes).
    connector: CoalescingConnector,
    /// Streams one connection may carry at once.
    streams_per_connection: usize,
}

impl GoogleEndpoint {
    /// Checks the endpoint settings, naming the bad key; connects nothing.
    pub fn new(settings: &GoogleSettings) -> Result<GoogleEndpoint, PoolError> {
        let coalesce_ms = settings.write_coalesce_ms;
        if !(0.0..=MAX_WRITE_COALESCE_MS).contains(&coalesce_ms) {
            return Err(PoolError(format!(
                "google.write_coalesce_ms: must be between 0 and {MAX_WRITE_COALESCE_MS} ms"
            )));
        }
        let coalesce = Duration::from_secs_f64(coalesce_ms / 1000.0);
        Ok(GoogleEndpoint {
            endpoint: endpoint(settings)?,
            connector: CoalescingConnector::new(TCP_KEEPALIVE, coalesce),
            streams_per_connection: settings.streams_per_connection.max(1),
        })
    }
}

/// The connections of one worker thread to one endpoint.
pub struct ConnectionPool {
    /// How every connection is made (address, TLS, timeouts, keepalive).
    endpoint: Endpoint,
    connector: CoalescingConnector,
    /// Streams one connection may carry at once.
    streams_per_connection: usize,
    /// Open connections, in the order they were opened (leases prefer the oldest).
    channels: RefCell<Vec<Rc<PooledChannel>>>,
}

impl ConnectionPool {
    /// An empty pool for `endpoint`; connects nothing yet.
    pub fn new(endpoint: &GoogleEndpoint) -> ConnectionPool {
        ConnectionPool {
            endpoint: endpoint.endpoint.clone(),
            connector: endpoint.connector.clone(),
            streams_per_connection: endpoint.streams_per_connection,
            channels: RefCell::new(Vec::new()),
        }
    }

    /// A channel with room for one more stream. Must be called on the pool's worker thread,
    /// inside its runtime (a new channel spawns its connection task there).
    pub fn lease(&self) -> ChannelLease {
        let mut channels = self.channels.borrow_mut();
        let mut idle_kept = false;
        channels.retain(|c| {
            if c.streams.get() > 0 {
                return true;
            }
            let keep = !idle_kept;
            idle_kept = true;
            keep
        });
        let pooled = match channels
            .iter()
            .find(|c| c.streams.get() < self.streams_per_connection)
        {
            Some(c) => c.clone(),
            None => {
                let c = Rc::new(PooledChannel {
                    channel: self
                        .endpoint
                        .connect_with_connector_lazy(self.connector.clone()),
                    streams: Cell::new(0),
                });
                channels.push(c.clone());
                c
            }
        };
        pooled.streams.set(pooled.streams.get() + 1);
        ChannelLease { pooled }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.channels.borrow().len()
    }

    /// Streams leased now, over all connections.
    pub fn streams(&self) -> usize {
        self.channels.borrow().iter().map(|c| c.streams.get()).sum()
    }
}

/// The connection settings for `[google]`.
fn endpoint(settings: &GoogleSettings) -> Result<Endpoint, PoolError> {
    let url = settings.endpoint.as_str();
    let uri: Uri = url
        .parse()
        .map_err(|e| PoolError(format!("google.endpoint: `{url}` is not a valid URL: {e}")))?;
    let connect_timeout = Duration::try_from_secs_f64(settings.connect_timeout_secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PoolError("google.connect_timeout_secs: must be a positive number of seconds".into())
        })?;
    let user_agent = concat!("voxgate/", env!("CARGO_PKG_VERSION"));
    let mut endpoint = Endpoint::from(uri.clone())
        .user_agent(user_agent)
        .map_err(|e| PoolError(format!("user agent: {e}")))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false);
    match uri.scheme_str() {
        Some("https") => {
            let host = uri
                .host()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| PoolError(format!("google.endpoint: `{url}` has no host name")))?;
            let mut tls = ClientTlsConfig::new()
                .with_webpki_roots()
                .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            let trust = TrustRoots::from_settings(settings).map_err(|e| PoolError(e.0))?;
            if let Some(pem) = trust.extra_pem() {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| PoolError(format!("google.endpoint: TLS setup failed: {e}")))?;
        }
        Some("http") => {}
        _ => {
            return Err(PoolError(format!(
                "google.endpoint: `{url}` must start with https:// or http://"
            )))
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, per_connection: usize) -> GoogleSettings {
        GoogleSettings {
            endpoint: endpoint.into(),
            streams_per_connection: per_connection,
            ..GoogleSettings::default()
        }
    }

    /// Streams fill a connection up to the limit before another is opened; freed slots are reused.
    #[actix_rt::test]
    async fn fills_connections_up_to_the_limit() {
        let pool = GoogleEndpoint::new(&settings("http://127.0.0.1:9", 3)).map_err(|e| e.0);
        let Ok(endpoint) = pool else {
            panic!(
                "a plain http endpoint is valid: {pool:?}",
                pool = pool.err()
            );
        };
        let pool = ConnectionPool::new(&endpoint);
        let mut leases: Vec<ChannelLease> = (0..7).map(|_| pool.lease()).collect();
        assert_eq!(pool.connections(), 3);
        assert_eq!(pool.streams(), 7);
        leases.remove(0);
        leases.remove(0);
        assert_eq!(pool.streams(), 5);
        leases.push(pool.lease());
        assert_eq!(pool.connections(), 3, "a freed slot is reused");
        leases.push(pool.lease());
        leases.push(pool.lease());
        assert_eq!(pool.connections(), 3);
        assert_eq!(pool.streams(), 8);
    }

    /// Idle connections beyond one are closed when the next lease is taken.
    #[actix_rt::test]
    async fn idle_connections_are_closed() {
        let Ok(endpoint) = GoogleEndpoint::new(&settings("http://127.0.0.1:9", 1)) else {
            panic!("a plain http endpoint is valid");
        };
        let pool = ConnectionPool::new(&endpoint);
        let leases: Vec<ChannelLease> = (0..4).map(|_| pool.lease()).collect();
        assert_eq!(pool.connections(), 4);
        drop(leases);
        let _one = pool.lease();
        assert_eq!(pool.connections(), 1);
        assert_eq!(pool.streams(), 1);
    }

    /// https gets TLS (no connection is made here); bad endpoints and timeouts are named.
    #[actix_rt::test]
    async fn endpoints_are_checked() {
        assert!(GoogleEndpoint::new(&settings("https://speech.googleapis.com", 100)).is_ok());
        assert!(GoogleEndpoint::new(&settings("https://[::1]:8443", 100)).is_ok());
        let err = |s: GoogleSettings| {
            GoogleEndpoint::new(&s)
                .err()
                .map(|e| e.0)
                .unwrap_or_default()
        };
        assert!(err(settings("ftp://x", 100)).contains("google.endpoint"));
        assert!(err(settings("not a url", 100)).contains("google.endpoint"));
        let mut s = settings("http://127.0.0.1:9", 100);
        s.connect_timeout_secs = -1.0;
        assert!(err(s).contains("google.connect_timeout_secs"));
    }
}
