//! The request handlers: `GET /v1/listen` (WebSocket upgrade into a session), the dialects'
//! upgrades (`GET /deepgram/v1/listen`, `GET /openai/v1/realtime`, the media streams `GET /twilio`
//! and `GET /telnyx`, `GET /jambonz`, `GET /vosk`, see `docs/dialects.md`),
//! `POST /v1/tokens` (session tokens for an API key), `GET /healthz` (liveness), `GET /readyz`
//! (readiness), `GET /metrics`.

use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::ConnectionType;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use voxgate_actors::pipeline::PipelineFactory;
use voxgate_actors::protocol::deepgram::{self, DeepgramDialect, QueryRefusal};
use voxgate_actors::protocol::jambonz::{self, JambonzDialect};
use voxgate_actors::protocol::media_stream::{self, Envelope, MediaStreamDialect, TwilioSettings};
use voxgate_actors::protocol::native::NativeDialect;
use voxgate_actors::protocol::openai::{self, OpenAiDialect};
use voxgate_actors::protocol::vosk::{self, VoskDialect};
use voxgate_actors::protocol::Dialect;
use voxgate_actors::session::{self, Admission, SessionParams, SessionPermit, UpgradeRefused};
use voxgate_actors::webhooks::{WebhookDialect, Webhooks};

use super::auth::{self, Principal};
use super::gatekeeper::{Gatekeeper, Passed};
use super::refusal::{Refusal, Refused};
use super::resume::ResumeSigner;
use super::shutdown::ServerState;
use super::tokens::{self, Claims};
use crate::config::DialectsSettings;

/// This worker thread's pipeline factory (app data is per worker, so it need not be `Send`).
pub struct WorkerPipelines(pub Rc<dyn PipelineFactory>);

/// The process's webhooks (`[webhooks]`), shared by every worker; `None` without a secret.
pub struct ServerWebhooks(pub Option<Arc<Webhooks>>);

/// Largest `POST /v1/tokens` body read.
const MAX_TOKEN_REQUEST_BYTES: usize = 4_096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/listen", web::get().to(listen))
        .route("/deepgram/v1/listen", web::get().to(deepgram_listen))
        .route("/openai/v1/realtime", web::get().to(openai_realtime))
        .route("/twilio", web::get().to(twilio_stream))
        .route("/telnyx", web::get().to(telnyx_stream))
        .route("/jambonz", web::get().to(jambonz_transcribe))
        .route("/vosk", web::get().to(vosk_recognize))
        .route("/v1/tokens", web::post().to(mint_token))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .configure(super::page::configure)
        .configure(super::offer::configure);
}

/// Upgrades to a session, once the gate let the request through (429, 403, 401 otherwise). A
/// connection over a session limit, or arriving during shutdown, is still upgraded so it can read
/// the error message; a request that is not an upgrade gets 400.
async fn listen(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
) -> HttpResponse {
    let passed = match gate.check_listen(&req) {
        Ok(passed) => passed,
        Err(refused) => return refused.response(),
    };
    let native = NativeDialect::new(req.query_string(), state.settings.max_phrases);
    open_session(&req, payload, &state, &gate, passed, Box::new(native))
}

/// Deepgram's live API: its credential forms, its query refused as Deepgram refuses it (HTTP 400
/// or 401 with `dg-error`), then a session like any other.
async fn deepgram_listen(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let settings = &dialects.deepgram;
    let passed = match admit_dialect(
        settings.enabled,
        "deepgram",
        &req,
        &gate,
        deepgram::credential(req.headers()),
        |e| deepgram_refusal(Refusal::Unauthorized, "INVALID_AUTH", e),
    ) {
        Ok(passed) => passed,
        Err(response) => return *response,
    };
    let config = match deepgram::parse_query(req.query_string(), state.settings.max_phrases) {
        Ok(config) => config,
        Err(QueryRefusal(message)) => {
            return deepgram_refusal(Refusal::InvalidRequest, "Bad Request", &message)
        }
    };
    let dialect = Box::new(DeepgramDialect::new(config, settings));
    open_session(&req, payload, &state, &gate, passed, dialect)
}

/// A refused Deepgram handshake as Deepgram answers it: the reason in `dg-error` and in a JSON
/// body `{err_code, err_msg, request_id}`.
fn deepgram_refusal(refusal: Refusal, err_code: &str, message: &str) -> HttpResponse {
    voxgate_actors::metrics::METRICS
        .http_refusals
        .with_label_values(&[refusal.as_str()])
        .inc();
    let refused = deepgram::HandshakeRefusal::new(err_code, message);
    HttpResponse::build(refusal.status())
        .insert_header(("dg-error", refused.header()))
        .insert_header(("dg-request-id", refused.request_id.as_str()))
        .json(refused.body())
}

/// OpenAI's Realtime API, transcription sessions only: its credential forms, refusals in OpenAI's
/// error shape (HTTP 401, or 400 for a conversation session), then a session like any other.
async fn openai_realtime(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let passed = match admit_dialect(
        dialects.openai.enabled,
        "openai",
        &req,
        &gate,
        openai::credential(req.headers()),
        |e| openai_refusal(Refusal::Unauthorized, "invalid_api_key", e),
    ) {
        Ok(passed) => passed,
        Err(response) => return *response,
    };
    if let Err(message) = openai::check_query(req.query_string()) {
        return openai_refusal(
            Refusal::InvalidRequest,
            "unsupported_session_type",
            &message,
        );
    }
    let dialect = Box::new(OpenAiDialect::new());
    open_session(&req, payload, &state, &gate, passed, dialect)
}

/// A refused OpenAI handshake: `{error: {type, code, message, param}}`.
fn openai_refusal(refusal: Refusal, code: &str, message: &str) -> HttpResponse {
    voxgate_actors::metrics::METRICS
        .http_refusals
        .with_label_values(&[refusal.as_str()])
        .inc();
    HttpResponse::build(refusal.status()).json(openai::refusal_body(
        "invalid_request_error",
        code,
        message,
    ))
}

/// The client of a request to a dialect's path: 404 when the dialect is off, the gate's refusal
/// (connection rate) otherwise.
fn served_client(
    req: &HttpRequest,
    gate: &Gatekeeper,
    enabled: bool,
) -> Result<super::client_limits::ClientAddr, Box<HttpResponse>> {
    if !enabled {
        return Err(Box::new(HttpResponse::NotFound().finish()));
    }
    gate.check_client(req)
        .map_err(|refused| Box::new(refused.response()))
}

/// Twilio Media Streams: the handshake's `X-Twilio-Signature` checked against
/// `[dialects.twilio] auth_token` (401 otherwise; without a token, 401 unless `allow_unsigned`),
/// then a session whose transcripts go to the webhooks.
async fn twilio_stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let settings = &dialects.twilio;
    let client = match served_client(&req, &gate, settings.enabled) {
        Ok(client) => client,
        Err(response) => return *response,
    };
    if let Err(message) = twilio_signed(&req, settings) {
        tracing::info!(%client, "twilio: refused: {message}");
        return Refusal::Unauthorized.response(message);
    }
    let dialect = MediaStreamDialect::new(
        Envelope::Twilio,
        &settings.language_code,
        req.query_string(),
    )
    .frame_ms(settings.frame_ms);
    let passed = Passed {
        principal: Principal::Anonymous,
        client,
    };
    open_session(&req, payload, &state, &gate, passed, Box::new(dialect))
}

/// Whether the request carries Twilio's signature of the URL it was sent to (see
/// `media_stream::signature`): the configured `public_url`, else this request's host with either
/// scheme Twilio may have signed (a TLS-terminating proxy hides which).
fn twilio_signed(req: &HttpRequest, settings: &TwilioSettings) -> Result<(), String> {
    let Some(token) = settings.auth_token.as_deref() else {
        return if settings.allow_unsigned {
            Ok(())
        } else {
            Err(
                "[dialects.twilio] auth_token is not set, so no stream can be verified; \
                 refused (allow_unsigned = true accepts unsigned streams)"
                    .into(),
            )
        };
    };
    let signature = req
        .headers()
        .get(media_stream::signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Twilio-Signature header")?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let urls: Vec<String> = match &settings.public_url {
        Some(base) => vec![format!("{}{path_and_query}", base.trim_end_matches('/'))],
        None => {
            let host = req.connection_info().host().to_string();
            ["wss", "ws", "https", "http"]
                .iter()
                .map(|scheme| format!("{scheme}://{host}{path_and_query}"))
                .collect()
        }
    };
    if media_stream::signature::valid(token, &urls, signature) {
        Ok(())
    } else {
        Err("X-Twilio-Signature is not the auth token's signature of this URL".into())
    }
}

/// Telnyx media streaming: a voxgate key or session token as `?token=` in the stream URL (or
/// `Authorization: Bearer`), then a session whose transcripts go to the webhooks.
async fn telnyx_stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let settings = &dialects.telnyx;
    let client = match served_client(&req, &gate, settings.enabled) {
        Ok(client) => client,
        Err(response) => return *response,
    };
    let from_query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|query| query.get("token").cloned());
    let credential = match from_query {
        Some(token) => Ok(Some(token)),
        None => auth::credential(req.headers()).map_err(|e| e.to_string()),
    };
    let principal = match credential.and_then(|c| {
        gate.auth
            .authenticate(c.as_deref())
            .map_err(|e| e.to_string())
    }) {
        Ok(principal) => principal,
        Err(e) => {
            tracing::info!(%client, "telnyx: refused: {e}");
            return Refusal::Unauthorized.response(e);
        }
    };
    let dialect = MediaStreamDialect::new(
        Envelope::Telnyx,
        &settings.language_code,
        req.query_string(),
    )
    .reorder_window(settings.reorder_frames)
    .frame_ms(settings.frame_ms);
    open_session(
        &req,
        payload,
        &state,
        &gate,
        Passed { principal, client },
        Box::new(dialect),
    )
}

/// What every dialect's upgrade checks before its own: 404 while the dialect is off, the client
/// checks (connection rate, origin), then its `credential` — refused by `refuse` (the dialect's
/// way of saying so) and logged under `name`.
fn admit_dialect(
    enabled: bool,
    name: &str,
    req: &HttpRequest,
    gate: &Gatekeeper,
    credential: Result<Option<String>, &'static str>,
    refuse: impl FnOnce(&str) -> HttpResponse,
) -> Result<Passed, Box<HttpResponse>> {
    let client = served_client(req, gate, enabled)?;
    let principal = credential.map_err(str::to_string).and_then(|c| {
        gate.auth
            .authenticate(c.as_deref())
            .map_err(|e| e.to_string())
    });
    match principal {
        Ok(principal) => Ok(Passed { principal, client }),
        Err(e) => {
            tracing::info!(%client, "{name}: refused: {e}");
            Err(Box::new(refuse(&e)))
        }
    }
}

/// jambonz's custom speech-to-text vendor API: `Authorization: Bearer <key>` (refused with HTTP
/// 401 and jambonz's error shape), then a session configured by jambonz's `start`.
async fn jambonz_transcribe(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let passed = match admit_dialect(
        dialects.jambonz.enabled,
        "jambonz",
        &req,
        &gate,
        jambonz::credential(req.headers()),
        |e| {
            voxgate_actors::metrics::METRICS
                .http_refusals
                .with_label_values(&[Refusal::Unauthorized.as_str()])
                .inc();
            HttpResponse::build(Refusal::Unauthorized.status())
                .content_type("application/json")
                .body(jambonz::refusal_body(e))
        },
    ) {
        Ok(passed) => passed,
        Err(response) => return *response,
    };
    let dialect = Box::new(
        JambonzDialect::new(state.settings.max_phrases).frame_ms(dialects.jambonz.frame_ms),
    );
    open_session(&req, payload, &state, &gate, passed, dialect)
}

/// vosk-server's protocol: the key as `Authorization: Bearer` or `?key=` (vosk clients can only
/// change their URL), refused with voxgate's HTTP 401; `?language=` (400 when it is not a tag).
async fn vosk_recognize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
    gate: web::Data<Gatekeeper>,
    dialects: web::Data<DialectsSettings>,
) -> HttpResponse {
    let settings = &dialects.vosk;
    if !settings.enabled {
        return HttpResponse::NotFound().finish();
    }
    let query = match vosk::parse_query(req.query_string()) {
        Ok(query) => query,
        Err(message) => return Refusal::InvalidRequest.response(message),
    };
    let passed = match admit_dialect(
        settings.enabled,
        "vosk",
        &req,
        &gate,
        vosk::credential(req.headers(), &query),
        |e| Refusal::Unauthorized.response(e),
    ) {
        Ok(passed) => passed,
        Err(response) => return *response,
    };
    let dialect = Box::new(VoskDialect::new(
        settings,
        &query,
        state.settings.max_phrases,
    ));
    open_session(&req, payload, &state, &gate, passed, dialect)
}

/// The upgrade into a session speaking `dialect`, for a request that passed the gate.
fn open_session(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ServerState,
    gate: &Gatekeeper,
    passed: Passed,
    dialect: Box<dyn Dialect>,
) -> HttpResponse {
    let Some(WorkerPipelines(pipelines)) = req.app_data::<WorkerPipelines>() else {
        tracing::error!("no pipeline factory registered on this worker");
        return HttpResponse::InternalServerError()
            .json(json!({"error": "internal", "message": "no pipeline factory"}));
    };
    let path = req.path();
    if let Err(UpgradeRefused(reason)) = session::check_upgrade(req) {
        return Refusal::WebsocketUpgradeRequired
            .response(format!("GET {path} must be a WebSocket upgrade: {reason}"));
    }
    let admission = state
        .admit()
        .and_then(|server| gate.share(&passed).map(|share| (server, share)))
        .map_or_else(Admission::Refused, |held| {
            Admission::Admitted(SessionPermit::new(held))
        });
    let max_session_secs = match &passed.principal {
        Principal::Token {
            max_session_secs, ..
        } => *max_session_secs,
        _ => None,
    };
    // Every dialect may ask for its results to be posted too (`voxgate_actors::webhooks`).
    let webhooks = req
        .app_data::<web::Data<ServerWebhooks>>()
        .and_then(|w| w.0.clone());
    let dialect = WebhookDialect::wrap(dialect, webhooks);
    let resume = resume_signer(req, state, &passed, dialect.as_ref());
    let params = SessionParams {
        settings: state.settings.clone(),
        pipelines: pipelines.clone(),
        admission,
        dialect,
        shutdown: state.subscribe(),
        client: format!("{} from {}", passed.principal.describe(), passed.client).into(),
        max_session_secs,
        resume,
        stall_tolerance: state.stall_tolerance,
    };
    match session::upgrade(req, payload, params) {
        Ok(response) => response,
        Err(UpgradeRefused(reason)) => Refusal::WebsocketUpgradeRequired
            .response(format!("GET {path} must be a WebSocket upgrade: {reason}")),
    }
}

/// Resume tokens for this connection: only for dialects whose clients can resume, and while
/// `[session] resume_window_secs` is not 0.
fn resume_signer(
    req: &HttpRequest,
    state: &ServerState,
    passed: &Passed,
    dialect: &dyn Dialect,
) -> Option<Rc<dyn session::resume::ResumeTokens>> {
    let window = std::time::Duration::try_from_secs_f64(state.settings.resume_window_secs).ok()?;
    if window.is_zero() || !dialect.resumable() {
        return None;
    }
    let gate = req
        .app_data::<web::Data<Gatekeeper>>()?
        .clone()
        .into_inner();
    let key_id = passed.principal.key_id().map(str::to_string);
    Some(Rc::new(ResumeSigner::new(gate, key_id, window)))
}

/// The body of `POST /v1/tokens` (empty = all defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// Lifetime; default `[auth] token_ttl_secs`, at most `max_token_ttl_secs`.
    ttl_secs: Option<f64>,
    /// The longest session the token may open.
    max_session_secs: Option<f64>,
}

/// Mints a session token for a caller with an API key (`Authorization: Bearer <key>`).
async fn mint_token(
    req: HttpRequest,
    mut payload: web::Payload,
    gate: web::Data<Gatekeeper>,
) -> HttpResponse {
    let client = match gate.check_client(&req) {
        Ok(client) => client,
        Err(refused) => return refused.response(),
    };
    let key_id = match auth::credential(req.headers())
        .and_then(|credential| gate.auth.authenticate_key(credential.as_deref()))
    {
        Ok(key_id) => key_id,
        Err(e) => {
            tracing::info!(%client, "token refused: {e}");
            return Refusal::Unauthorized.response(e.to_string());
        }
    };
    // actix's request timeout covers the head only: a body trickled byte by byte would hold the
    // connection (and this handler) for as long as the client likes.
    let body = match tokio::time::timeout(gate.request_timeout, read_body(&mut payload)).await {
        Ok(Ok(body)) => body,
        Ok(Err(refused)) => return refused.response(),
        Err(_) => {
            tracing::info!(%client, "token request refused: body not received in time");
            let mut response = Refusal::RequestTimeout.response(format!(
                "the request body did not arrive within {:.1} s",
                gate.request_timeout.as_secs_f64()
            ));
            response
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            return response;
        }
    };
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return Refusal::InvalidRequest.response(format!(
                    "the body must be {{\"ttl_secs\":…,\"max_session_secs\":…}} (both optional): \
                     {e}"
                ))
            }
        }
    };
    let ttl = match gate.token_ttl(request.ttl_secs) {
        Ok(ttl) => ttl,
        Err(e) => return Refusal::InvalidRequest.response(e),
    };
    if let Some(msl) = request.max_session_secs {
        if !(msl > 0.0 && msl.is_finite()) {
            return Refusal::InvalidRequest.response("max_session_secs must be more than 0");
        }
    }
    let Some(expires_at) = tokens::unix_now()
        .checked_add(ttl.as_secs())
        .and_then(|t| t.checked_add(u64::from(ttl.subsec_nanos() > 0)))
    else {
        return Refusal::InvalidRequest.response("ttl_secs is too large");
    };
    let token = gate.auth.tokens.mint(&Claims {
        kid: key_id.clone(),
        exp: expires_at,
        msl: request.max_session_secs,
    });
    tracing::info!(%client, key_id, expires_in_secs = ttl.as_secs_f64(), "session token minted");
    let mut body = json!({"token": token, "expires_at": expires_at});
    if let Some(msl) = request.max_session_secs {
        body["max_session_secs"] = json!(msl);
    }
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The whole body, at most [`MAX_TOKEN_REQUEST_BYTES`].
async fn read_body(payload: &mut web::Payload) -> Result<Vec<u8>, Refused> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Err(Refused::new(
                Refusal::InvalidRequest,
                "the request body could not be read",
            ));
        };
        if body.len() + chunk.len() > MAX_TOKEN_REQUEST_BYTES {
            return Err(Refused::new(
                Refusal::InvalidRequest,
                format!("the request body exceeds {MAX_TOKEN_REQUEST_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Liveness: 200 for as long as the process serves HTTP, draining included (a restart would only
/// cut the sessions the drain is finishing); the body says which.
async fn healthz(state: web::Data<ServerState>) -> HttpResponse {
    let status = if state.is_draining() {
        "draining"
    } else {
        "ok"
    };
    HttpResponse::Ok().json(json!({ "status": status }))
}

/// Readiness: 200 while a new session would be served; 503, with the reason, once a drain has
/// begun, while every session slot is taken, or while the upstream circuit breaker holds streams
/// back — so a load balancer sends new clients elsewhere.
async fn readyz(state: web::Data<ServerState>) -> HttpResponse {
    match state.readiness() {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({ "status": reason.as_str() }))
        }
    }
}

/// Prometheus text exposition of every voxgate metric.
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(voxgate_actors::metrics::render())
}
