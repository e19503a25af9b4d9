//! The checks a request passes before it gets anything, in order of cost: the client address's
//! connection rate (429), the page's origin (403), the credential (401); then, for a WebSocket,
//! the client's share of sessions (per address, per API key), refused after the upgrade like the
//! server-wide limit so a browser can read why.
//!
//! One `Gatekeeper` is shared by every worker. Refusals are logged with the client address and the
//! reason — never with the credential.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::header::{HOST, ORIGIN};
use actix_web::HttpRequest;
use voxgate_actors::protocol::{ErrorCode, Rejection};

use super::auth::{self, Authenticator, Principal};
use super::client_limits::{self, ClientAddr, ConnectionRate, CountGuard, SessionCounts};
use super::origin::OriginPolicy;
use super::refusal::{Refusal, Refused};
use crate::config::Config;

/// What a request that passed the gate is.
pub struct Passed {
    pub principal: Principal,
    pub client: ClientAddr,
}

/// A client's hold on its share of sessions (released when dropped).
pub struct ClientShare {
    _per_ip: CountGuard<ClientAddr>,
    _per_key: Option<CountGuard<String>>,
}

pub struct Gatekeeper {
    pub auth: Authenticator,
    origins: OriginPolicy,
    rate: ConnectionRate,
    per_ip: SessionCounts<ClientAddr>,
    per_key: SessionCounts<String>,
    /// `[server] trusted_proxies`: the peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<IpAddr>,
    /// `[server] request_timeout_secs`: also how long a request body may take to arrive.
    pub request_timeout: Duration,
    /// `[auth] token_ttl_secs` / `max_token_ttl_secs`.
    pub token_ttl_secs: f64,
    pub max_token_ttl_secs: f64,
}

impl Gatekeeper {
    /// The gate of a server listening on `listen`: `Err` when the configuration must not be
    /// served there (see [`Authenticator::new`]).
    pub fn new(config: &Config, listen: SocketAddr) -> Result<Gatekeeper, String> {
        let (auth, warning) =
            Authenticator::new(&config.auth, listen, &config.server.trusted_proxies)?;
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
        }
        Ok(Gatekeeper {
            auth,
            origins: OriginPolicy::new(&config.auth.allowed_origins)
                .map_err(|e| format!("auth.allowed_origins: {e}"))?,
            rate: ConnectionRate::new(
                config.server.connection_rate_per_ip,
                config.server.connection_burst_per_ip,
            ),
            per_ip: SessionCounts::new(config.session.max_sessions_per_ip),
            per_key: SessionCounts::new(config.session.max_sessions_per_key),
            trusted_proxies: config.server.trusted_proxies.clone(),
            request_timeout: Duration::try_from_secs_f64(config.server.request_timeout_secs)
                .map_err(|e| format!("server.request_timeout_secs: {e}"))?,
            token_ttl_secs: config.auth.token_ttl_secs,
            max_token_ttl_secs: config.auth.max_token_ttl_secs,
        })
    }

    /// The client address of `req` for the limits.
    fn client(&self, req: &HttpRequest) -> ClientAddr {
        let ip = client_limits::client_ip(req, &self.trusted_proxies);
        ClientAddr::of(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }

    /// Rate, then origin: the checks every endpoint that opens something passes.
    pub fn check_client(&self, req: &HttpRequest) -> Result<ClientAddr, Refused> {
        let client = self.client(req);
        if let Err(wait) = self.rate.allow(client, Instant::now()) {
            tracing::info!(%client, "refused: connection rate exceeded");
            let mut refused = Refused::new(
                Refusal::RateLimited,
                "too many new connections from this address; try again later",
            );
            refused.retry_after_secs = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            return Err(refused);
        }
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        if !self.origins.allows(header(ORIGIN), header(HOST)) {
            tracing::info!(%client, origin = header(ORIGIN).unwrap_or(""), "refused: origin not allowed");
            return Err(Refused::new(
                Refusal::OriginNotAllowed,
                "this page's origin may not connect (see [auth] allowed_origins)",
            ));
        }
        Ok(client)
    }

    /// Everything before a WebSocket upgrade: rate, origin, subprotocols, credential.
    pub fn check_listen(&self, req: &HttpRequest) -> Result<Passed, Refused> {
        let client = self.check_client(req)?;
        if auth::check_subprotocols(req.headers()).is_err() {
            return Err(Refused::new(
                Refusal::SubprotocolRequired,
                format!(
                    "a credential sent as a subprotocol needs `{}` offered too",
                    voxgate_actors::protocol::native::SUBPROTOCOL
                ),
            ));
        }
        let principal = auth::credential(req.headers())
            .and_then(|credential| self.auth.authenticate(credential.as_deref()))
            .map_err(|e| {
                tracing::info!(%client, "refused: {e}");
                Refused::new(Refusal::Unauthorized, e.to_string())
            })?;
        Ok(Passed { principal, client })
    }

    /// The client's share of sessions, or why it has none left.
    pub fn share(&self, passed: &Passed) -> Result<ClientShare, Rejection> {
        let per_ip = self.per_ip.acquire(passed.client).ok_or_else(|| {
            Rejection::new(
                ErrorCode::TooManyClientSessions,
                format!(
                    "this address has {} sessions open, its maximum; close one or try again later",
                    self.per_ip.max()
                ),
            )
        })?;
        let per_key = match passed.principal.key_id() {
            Some(key_id) => Some(self.per_key.acquire(key_id.to_string()).ok_or_else(|| {
                Rejection::new(
                    ErrorCode::TooManyClientSessions,
                    format!(
                        "this API key has {} sessions open, its maximum; close one or try again \
                         later",
                        self.per_key.max()
                    ),
                )
            })?),
            None => None,
        };
        Ok(ClientShare {
            _per_ip: per_ip,
            _per_key: per_key,
        })
    }

    /// A token's lifetime: the asked one (default `token_ttl_secs`), at most `max_token_ttl_secs`.
    pub fn token_ttl(&self, asked: Option<f64>) -> Result<Duration, String> {
        let ttl = asked.unwrap_or(self.token_ttl_secs);
        if !(ttl > 0.0 && ttl <= self.max_token_ttl_secs) {
            return Err(format!(
                "ttl_secs must be more than 0 and at most {}",
                self.max_token_ttl_secs
            ));
        }
        Duration::try_from_secs_f64(ttl).map_err(|e| e.to_string())
    }
}
