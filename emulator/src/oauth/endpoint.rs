//! The token endpoint (`--token-listen`): HTTP/1.1, over TLS when the emulator has a certificate
//! (as `https://oauth2.googleapis.com/token`). `POST /token` with the JWT-bearer grant and a valid
//! assertion gets an access token; anything else gets Google's OAuth error. Nothing here logs an
//! assertion or a token.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{assertion, AuthConfig, OAuthError, Tokens};

/// The grant type of a signed-JWT exchange (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A token request is a small form.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One token endpoint's state.
struct TokenEndpoint {
    auth: AuthConfig,
    tokens: Arc<Tokens>,
    /// This endpoint's own URL (`https://ADDR/token`): the audience assertions must name.
    url: String,
    started: Instant,
}

/// A running token endpoint.
pub struct RunningEndpoint {
    /// `https://ADDR/token` (or `http://` without TLS).
    pub url: String,
    pub task: JoinHandle<()>,
}

/// Serves the token endpoint on `listener` until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: AuthConfig,
    tokens: Arc<Tokens>,
    shutdown: CancellationToken,
) -> Result<RunningEndpoint, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("token endpoint listener: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/token");
    let endpoint = Arc::new(TokenEndpoint {
        auth,
        tokens,
        url: url.clone(),
        started: Instant::now(),
    });
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let Ok((socket, _)) = accepted else {
                continue; // out of descriptors, a reset before accept: the next one may do
            };
            let endpoint = Arc::clone(&endpoint);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => match acceptor.accept(socket).await {
                        Ok(stream) => serve_connection(stream, endpoint).await,
                        Err(e) => tracing::debug!("token endpoint: TLS handshake failed: {e}"),
                    },
                    None => serve_connection(socket, endpoint).await,
                }
            });
        }
    });
    Ok(RunningEndpoint { url, task })
}

async fn serve_connection<S>(io: S, endpoint: Arc<TokenEndpoint>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let endpoint = Arc::clone(&endpoint);
        async move { Ok::<_, Infallible>(endpoint.answer(request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("token endpoint connection: {e}");
    }
}

impl TokenEndpoint {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::POST || request.uri().path() != "/token" {
            return reply(StatusCode::NOT_FOUND, &error_json("not_found", "Not Found"));
        }
        if self.started.elapsed() < self.auth.token_unavailable_for {
            self.tokens.refused.fetch_add(1, Ordering::Relaxed);
            let body = error_json(
                "temporarily_unavailable",
                "The service is currently unavailable.",
            );
            return reply(StatusCode::SERVICE_UNAVAILABLE, &body);
        }
        let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return self.refuse(&invalid_request("Request body too large")),
        };
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        match self.grant(&form) {
            Ok((token, ttl_secs)) => {
                let body = serde_json::json!({
                    "access_token": token,
                    "expires_in": ttl_secs,
                    "token_type": "Bearer",
                });
                reply(StatusCode::OK, &body)
            }
            Err(error) => self.refuse(&error),
        }
    }

    /// A token and its lifetime in seconds, or Google's reason for refusing.
    fn grant(&self, form: &HashMap<String, String>) -> Result<(String, u64), OAuthError> {
        let grant_type = form
            .get("grant_type")
            .ok_or_else(|| invalid_request("Missing required parameter: grant_type"))?;
        if grant_type != JWT_BEARER_GRANT {
            return Err(OAuthError {
                error: "unsupported_grant_type",
                description: format!("Invalid grant_type: {grant_type}"),
            });
        }
        let jwt = form
            .get("assertion")
            .ok_or_else(|| invalid_request("Missing required parameter: assertion"))?;
        let scopes = assertion::verify(jwt, &self.auth.account, &self.url)?;
        let token = self.tokens.grant(scopes, self.auth.token_ttl);
        Ok((token, self.auth.token_ttl.as_secs()))
    }

    fn refuse(&self, error: &OAuthError) -> Response<Full<Bytes>> {
        self.tokens.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(error = error.error, description = %error.description, "token request refused");
        reply(
            StatusCode::BAD_REQUEST,
            &error_json(error.error, &error.description),
        )
    }
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError {
        error: "invalid_request",
        description: description.to_string(),
    }
}

fn error_json(error: &str, description: &str) -> serde_json::Value {
    serde_json::json!({ "error": error, "error_description": description })
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
