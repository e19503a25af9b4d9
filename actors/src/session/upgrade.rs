//! How a connection becomes a session: what the server hands each new session
//! ([`SessionParams`]: settings, the pipeline factory, its admission, the shutdown channel, who
//! the client is), the WebSocket handshake ([`check_upgrade`]) and the upgrade itself
//! ([`upgrade`]), which puts the frame guard and the metered response body around the new
//! [`Session`]. The server calls these and never sees the socket. What an admitted session holds
//! for its life (its [`SessionPermit`], with its place in `voxgate_sessions_active`) is here too.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use tokio::sync::watch;

use super::frame_limit::FrameLimit;
use super::outgoing::MeteredBody;
use super::resume::ResumeTokens;
use super::Session;
use crate::metrics::METRICS;
use crate::pipeline::PipelineFactory;
use crate::protocol::native::SUBPROTOCOL;
use crate::protocol::{Dialect, Rejection};
use crate::settings::SessionSettings;

/// The server is shutting down: what every session is told (through a `watch` channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownNotice {
    /// End of the grace period: then the session flushes its pipeline and closes with 1001.
    pub deadline: Instant,
    /// After the grace period, how long the session waits for its last results.
    pub flush_timeout: Duration,
    /// Drain by hand-off: from this instant a session whose client can follow it is told to
    /// move (`reconnect`, with its resume token) and closes; `None` when no other instance could
    /// resume it (no shared `[auth] token_secret`, resume off, or hand-off switched off).
    pub hand_off_at: Option<Instant>,
}

/// Whatever the server counts a session against (its share of `max_sessions`, of its client's
/// sessions…): held for the session's whole life, released when it is dropped.
pub struct SessionPermit(#[allow(dead_code)] Box<dyn Send>);

impl SessionPermit {
    pub fn new(held: impl Send + 'static) -> SessionPermit {
        SessionPermit(Box::new(held))
    }
}

/// A session's place in `voxgate_sessions_active`: counted from its admission until this is
/// dropped with the session's permit — by the session, or by its tail once a call's last results
/// are delivered — so the gauge and `max_sessions` always count the same sessions.
pub(super) struct ActiveSession;

impl ActiveSession {
    pub(super) fn count() -> ActiveSession {
        METRICS.sessions_active.inc();
        ActiveSession
    }
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        METRICS.sessions_active.dec();
    }
}

/// Whether the server let this connection have a session.
pub enum Admission {
    /// Holds the server's permits for as long as the session lives.
    Admitted(SessionPermit),
    /// Upgraded only to be told why not (`too_many_sessions`, `shutting_down`, …): a browser
    /// cannot read the body of a refused HTTP upgrade, but it can read an error message.
    Refused(Rejection),
}

/// What the server gives each new session.
pub struct SessionParams {
    pub settings: Arc<SessionSettings>,
    /// This worker's way of starting pipelines.
    pub pipelines: Rc<dyn PipelineFactory>,
    pub admission: Admission,
    /// The client's wire protocol (the native one on `/v1/listen`), already holding whatever the
    /// upgrade request said (its query string).
    pub dialect: Box<dyn Dialect>,
    /// `Some` once the server is shutting down.
    pub shutdown: watch::Receiver<Option<ShutdownNotice>>,
    /// Who the client is, for the logs (`key k-1a2b…`, `anonymous`, and its address); never a
    /// secret.
    pub client: Arc<str>,
    /// A cap on the session's length from the client's credential (a token's scope), on top of
    /// `[session] max_session_secs`.
    pub max_session_secs: Option<f64>,
    /// Resume tokens for this connection's key (`None`: resume off, or a dialect that cannot).
    pub resume: Option<Rc<dyn ResumeTokens>>,
    /// `[supervision] stall_tolerance_ms`: the client and idle timeouts count only time the
    /// gateway was awake (`crate::quiet_watch`); `None`: plain timers.
    pub stall_tolerance: Option<Duration>,
}

/// The request was not a valid WebSocket upgrade (the server answers HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRefused(pub String);

/// Checks that `req` is a WebSocket upgrade this server can accept, without starting anything.
pub fn check_upgrade(req: &HttpRequest) -> Result<(), UpgradeRefused> {
    ws::handshake_with_protocols(req, &[SUBPROTOCOL])
        .map(|_| ())
        .map_err(|e| UpgradeRefused(e.to_string()))
}

/// Upgrades `req` to a WebSocket served by a new [`Session`]. When the client offers
/// subprotocols, the dialect's (native: [`SUBPROTOCOL`]) is selected if among them.
pub fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    params: SessionParams,
) -> Result<HttpResponse, UpgradeRefused> {
    let mut response = ws::handshake_with_protocols(req, params.dialect.subprotocols())
        .map_err(|e| UpgradeRefused(e.to_string()))?;
    let max_frame_bytes = params.settings.max_frame_bytes;
    let session = Session::new(params);
    let bytes = FrameLimit::new(
        payload,
        max_frame_bytes,
        session.marker_nonce,
        session.gate.clone(),
        session.id.clone(),
    );
    let outgoing = session.outgoing.clone();
    let codec = actix_http::ws::Codec::new().max_size(max_frame_bytes);
    let context = ws::WebsocketContext::with_codec(session, bytes, codec);
    Ok(response.streaming(MeteredBody::new(context, outgoing)))
}
