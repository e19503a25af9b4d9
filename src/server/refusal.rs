//! Refusals at the HTTP level, before any WebSocket exists: each an HTTP status and a JSON body
//! `{"error":"<code>","message":"…"}`, listed in `docs/protocol.md` (a test checks the table).
//! Refusals *after* an upgrade are `voxgate_actors::protocol::ErrorCode`s instead.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;
use voxgate_actors::metrics::METRICS;

/// Every HTTP-level refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `GET /v1/listen` that is not a valid WebSocket upgrade.
    WebsocketUpgradeRequired,
    /// A credential offered as a subprotocol without `voxgate.v1` beside it.
    SubprotocolRequired,
    /// A request body that is not what the endpoint takes.
    InvalidRequest,
    /// No credential, or one that is not valid.
    Unauthorized,
    /// A browser page whose origin is not allowed.
    OriginNotAllowed,
    /// Too many new connections from this client address.
    RateLimited,
    /// A request body that did not arrive within `[server] request_timeout_secs`.
    RequestTimeout,
}

impl Refusal {
    /// Every refusal, in the order `docs/protocol.md` lists them.
    pub const ALL: [Refusal; 7] = [
        Refusal::WebsocketUpgradeRequired,
        Refusal::SubprotocolRequired,
        Refusal::InvalidRequest,
        Refusal::Unauthorized,
        Refusal::OriginNotAllowed,
        Refusal::RateLimited,
        Refusal::RequestTimeout,
    ];

    /// The stable string sent as `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WebsocketUpgradeRequired => "websocket_upgrade_required",
            Refusal::SubprotocolRequired => "subprotocol_required",
            Refusal::InvalidRequest => "invalid_request",
            Refusal::Unauthorized => "unauthorized",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::RequestTimeout => "request_timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::WebsocketUpgradeRequired
            | Refusal::SubprotocolRequired
            | Refusal::InvalidRequest => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::OriginNotAllowed => StatusCode::FORBIDDEN,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The response, counted in `voxgate_http_refusals_total`.
    pub fn response(self, message: impl Into<String>) -> HttpResponse {
        Refused::new(self, message).response()
    }
}

/// A refusal with its message (and, for `rate_limited`, when to retry), before it is a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub refusal: Refusal,
    /// For a human; never contains a credential.
    pub message: String,
    /// `Retry-After`, in seconds.
    pub retry_after_secs: Option<u64>,
}

impl Refused {
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Refused {
        Refused {
            refusal,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The response, counted in `voxgate_http_refusals_total`.
    pub fn response(self) -> HttpResponse {
        METRICS
            .http_refusals
            .with_label_values(&[self.refusal.as_str()])
            .inc();
        let mut response = HttpResponse::build(self.refusal.status());
        if self.refusal == Refusal::Unauthorized {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"voxgate\""));
        }
        if let Some(secs) = self.retry_after_secs {
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.json(json!({"error": self.refusal.as_str(), "message": self.message}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md lists every refusal with its status, as the code says.
    #[test]
    fn every_refusal_is_documented_as_implemented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!doc.is_empty(), "{} is missing", path.display());
        for refusal in Refusal::ALL {
            let prefix = format!("| `{}` |", refusal.as_str());
            let row = doc.lines().find(|l| l.starts_with(&prefix));
            let cells: Vec<&str> = row
                .map(|r| r.split('|').map(str::trim).collect())
                .unwrap_or_default();
            assert_eq!(
                cells.len(),
                5,
                "{refusal:?}: no table row `{prefix} status | when |`"
            );
            assert_eq!(
                cells[2],
                refusal.status().as_u16().to_string(),
                "status of {refusal:?} in docs/protocol.md"
            );
        }
    }
}
