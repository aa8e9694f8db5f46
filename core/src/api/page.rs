//! The browser chat page at `/`: plain HTML, CSS and JavaScript embedded in
//! the binary, and pusher-js vendored from npm (`scripts/vendor-pusher-js`),
//! so it needs no build step and no CDN.
//!
//! | Route | What |
//! |---|---|
//! | `GET /` | `page/index.html` |
//! | `GET /assets/app.js` | `page/app.js` (its header lists the test ids) |
//! | `GET /assets/style.css` | `page/style.css` |
//! | `GET /assets/pusher.min.js` | `page/vendor/pusher.min.js` ([`PUSHER_JS_VERSION`]) |

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::ServerState;

/// The vendored pusher-js version (`page/vendor/VERSION`).
pub const PUSHER_JS_VERSION: &str = include_str!("page/vendor/VERSION").trim_ascii();

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");
const PUSHER_JS: &str = include_str!("page/vendor/pusher.min.js");

pub fn routes(_state: ServerState) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/assets/pusher.min.js",
            get(|| asset("text/javascript; charset=utf-8", PUSHER_JS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page changes with the binary; always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
