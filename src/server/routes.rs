//! The request handlers: `GET /v1/listen` (WebSocket upgrade into a session), the dialects'
//! upgrades (`GET /deepgram/v1/listen`, `GET /openai/v1/realtime`, `GET /jambonz`, `GET /vosk`,
//! see `docs/dialects.md`),
//! `POST /v1/tokens` (session tokens for an API key), `GET /healthz` (liveness), `GET /readyz`
//! (readiness), `GET /metrics`.

use std::rc::Rc;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::ConnectionType;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use voxgate_actors::pipeline::PipelineFactory;
use voxgate_actors::protocol::deepgram::{self, DeepgramDialect, QueryRefusal};
use voxgate_actors::protocol::jambonz::{self, JambonzDialect};
use voxgate_actors::protocol::native::NativeDialect;
use voxgate_actors::protocol::openai::{self, OpenAiDialect};
use voxgate_actors::protocol::vosk::{self, VoskDialect};
use voxgate_actors::protocol::Dialect;
use voxgate_actors::session::{self, Admission, SessionParams, SessionPermit, UpgradeRefused};

use super::auth::{self, Principal};
use super::gatekeeper::{Gatekeeper, Passed};
use super::refusal::{Refusal, Refused};
use super::shutdown::ServerState;
use super::tokens::{self, Claims};
use crate::config::DialectsSettings;

/// This worker thread's pipeline factory (app data is per worker, so it need not be `Send`).
pub struct WorkerPipelines(pub Rc<dyn PipelineFactory>);

/// Largest `POST /v1/tokens` body read.
const MAX_TOKEN_REQUEST_BYTES: usize = 4_096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/listen", web::get().to(listen))
        .route("/deepgram/v1/listen", web::get().to(deepgram_listen))
        .route("/openai/v1/realtime", web::get().to(openai_realtime))
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
    if !enabled {
        return Err(Box::new(HttpResponse::NotFound().finish()));
    }
    let client = gate
        .check_client(req)
        .map_err(|refused| Box::new(refused.response()))?;
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
    let dialect = Box::new(JambonzDialect::new(state.settings.max_phrases));
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
    let params = SessionParams {
        settings: state.settings.clone(),
        pipelines: pipelines.clone(),
        admission,
        dialect,
        shutdown: state.subscribe(),
        client: format!("{} from {}", passed.principal.describe(), passed.client).into(),
        max_session_secs,
    };
    match session::upgrade(req, payload, params) {
        Ok(response) => response,
        Err(UpgradeRefused(reason)) => Refusal::WebsocketUpgradeRequired
            .response(format!("GET {path} must be a WebSocket upgrade: {reason}")),
    }
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
