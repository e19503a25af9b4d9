//! The request handlers: `GET /v1/listen` (WebSocket upgrade into a session), `GET /healthz`,
//! `GET /metrics`.

use std::rc::Rc;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use voxgate_actors::pipeline::PipelineFactory;
use voxgate_actors::session::{self, SessionParams, UpgradeRefused};

use super::shutdown::ServerState;

/// This worker thread's pipeline factory (app data is per worker, so it need not be `Send`).
pub struct WorkerPipelines(pub Rc<dyn PipelineFactory>);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/listen", web::get().to(listen))
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics));
}

/// Upgrades to a session. A connection over the session limit, or arriving during shutdown, is
/// still upgraded so it can read the error message; a request that is not an upgrade gets 400.
async fn listen(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let Some(WorkerPipelines(pipelines)) = req.app_data::<WorkerPipelines>() else {
        tracing::error!("no pipeline factory registered on this worker");
        return HttpResponse::InternalServerError()
            .json(json!({"error": "internal", "message": "no pipeline factory"}));
    };
    let params = SessionParams {
        settings: state.settings.clone(),
        pipelines: pipelines.clone(),
        admission: state.admit(),
        query: req.query_string().to_string(),
        shutdown: state.subscribe(),
    };
    match session::upgrade(&req, payload, params) {
        Ok(response) => response,
        Err(UpgradeRefused(reason)) => HttpResponse::BadRequest().json(json!({
            "error": "websocket_upgrade_required",
            "message": format!("GET /v1/listen must be a WebSocket upgrade: {reason}"),
        })),
    }
}

/// 200 while serving; 503 once shutdown has begun (so a load balancer stops sending clients).
async fn healthz(state: web::Data<ServerState>) -> HttpResponse {
    if state.is_draining() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    }
}

/// Prometheus text exposition of every voxgate metric.
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(voxgate_actors::metrics::render())
}
