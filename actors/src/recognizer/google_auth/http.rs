//! The gateway's small HTTP/1.1 client: a form `POST` to a token endpoint (service account,
//! gcloud user credentials), a `GET` from the metadata server, and the webhooks' JSON `POST`s
//! (`crate::webhooks`). One short connection per exchange (a token lives an hour; a webhook
//! receiver is posted to a few times a second at most, so there is little worth keeping open),
//! TLS for `https://` with the given [`TrustRoots`], a bounded reply, and a deadline on the whole.
//! Nothing here logs a request or a reply: both may carry secrets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::trust::TrustRoots;
use super::{CredentialsError, FetchError};

/// Larger replies are not a token endpoint's.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// An HTTP reply: its status and body.
pub struct HttpReply {
    pub status: u16,
    pub body: Bytes,
}

/// Makes HTTP requests (credentials, webhooks). Cheap to share.
pub struct CredentialsHttp {
    tls: Arc<rustls::ClientConfig>,
    /// For the whole exchange: connect, TLS, request and reply.
    timeout: Duration,
    /// The configuration key of the extra trust roots, named when a certificate is refused.
    ca_key: &'static str,
}

impl CredentialsHttp {
    pub fn new(trust: &TrustRoots, timeout: Duration) -> Result<CredentialsHttp, CredentialsError> {
        Ok(CredentialsHttp {
            tls: trust.client_config(b"http/1.1")?,
            timeout,
            ca_key: trust.key(),
        })
    }

    /// `POST url` with `body` of `content_type` and `headers`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpReply, FetchError> {
        let mut request = http::Request::post(url).header(CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| FetchError::Unreachable(format!("`{url}`: {e}")))?;
        self.send(request).await
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body of `form`.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<HttpReply, FetchError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = http::Request::post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| FetchError::Unreachable(format!("`{url}`: {e}")))?;
        self.send(request).await
    }

    /// `GET url` with `headers`.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<HttpReply, FetchError> {
        let mut request = http::Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError::Unreachable(format!("`{url}`: {e}")))?;
        self.send(request).await
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<HttpReply, FetchError> {
        let url = request.uri().to_string();
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Err(_) => Err(FetchError::Unreachable(format!(
                "{url}: no reply within {timeout:?}"
            ))),
            Ok(Err(Failed::Untrusted(e))) => Err(FetchError::Untrusted(format!(
                "{url}: {e}; is its CA in {}?",
                self.ca_key
            ))),
            Ok(Err(Failed::Other(e))) => Err(FetchError::Unreachable(format!("{url}: {e}"))),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    async fn exchange(&self, mut request: http::Request<Full<Bytes>>) -> Result<HttpReply, Failed> {
        let uri = request.uri().clone();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Failed::Other("must start with https:// or http://".into())),
        };
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Failed::Other("no host name".into()))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str().to_string());
        // HTTP/1.1 sends the path alone and the authority as `Host`.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = path.parse().map_err(|e| Failed::Other(format!("{e}")))?;
        if let Some(authority) = authority {
            let value = authority
                .parse()
                .map_err(|e| Failed::Other(format!("{e}")))?;
            request.headers_mut().insert(HOST, value);
        }
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| Failed::Other(format!("cannot connect: {e}")))?;
        if !https {
            return exchange_on(tcp, request).await.map_err(Failed::Other);
        }
        let name = ServerName::try_from(host.clone())
            .map_err(|e| Failed::Other(format!("{host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| {
                let certificate = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
                if certificate {
                    Failed::Untrusted(format!("TLS: {e}"))
                } else {
                    Failed::Other(format!("TLS: {e}"))
                }
            })?;
        exchange_on(tls, request).await.map_err(Failed::Other)
    }
}

/// Why an exchange failed: the server's certificate is not trusted (a configuration error that
/// retrying does not fix), or anything else.
enum Failed {
    Untrusted(String),
    Other(String),
}

/// One request and its reply on a fresh connection.
async fn exchange_on<S>(io: S, request: http::Request<Full<Bytes>>) -> Result<HttpReply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection's I/O runs beside the request; it ends when the reply has been read.
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the reply: {e}"))?
        .to_bytes();
    Ok(HttpReply { status, body })
}
