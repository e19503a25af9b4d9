//! The live transcription web page at `GET /`: four static files (`page/`) embedded in the
//! binary, so a running voxgate is its own demo with nothing to deploy and no build step. The page
//! talks to the server through the public API only (`/v1/offer`, `/v1/listen`, and a token from
//! the operator's backend), so it can also be copied and served from anywhere; `docs/clients.md`
//! describes it.
//!
//! Every file is sent with a content security policy that allows this origin's scripts and styles
//! only, and no framing (the page asks for the microphone).

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use actix_web::{web, HttpResponse};

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The embedded files: where each is served, its content type, its text.
const ASSETS: [(&str, &str, &str); 4] = [
    ("/", HTML, include_str!("page/index.html")),
    ("/page/app.js", JAVASCRIPT, include_str!("page/app.js")),
    (
        "/page/worklet.js",
        JAVASCRIPT,
        include_str!("page/worklet.js"),
    ),
    ("/page/style.css", CSS, include_str!("page/style.css")),
];

/// Scripts and styles from this origin only; connections to this origin's WebSocket and to a
/// token URL the operator names (any origin: it is theirs to choose); never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss: http: https:; media-src 'self' blob:; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in ASSETS {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .insert_header((CONTENT_TYPE, content_type))
                    .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                    .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    // Revalidated each time: a new binary serves a new page at once.
                    .insert_header((CACHE_CONTROL, "no-cache"))
                    .body(body)
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads its script, worklet and style by the paths served here, and the script
    /// names the endpoints the server has.
    #[test]
    fn the_page_refers_to_the_served_files_and_endpoints() {
        let (html, app) = (ASSETS[0].2, ASSETS[1].2);
        for (path, _, _) in &ASSETS[1..] {
            assert!(
                html.contains(path) || app.contains(path),
                "{path} is not referred to"
            );
        }
        for endpoint in ["/v1/offer", "/v1/listen"] {
            assert!(app.contains(endpoint), "app.js does not use {endpoint}");
        }
    }
}
