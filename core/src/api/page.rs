//! Being written.

use axum::Router;

use super::ServerState;

pub fn routes(_state: ServerState) -> Router {
    Router::new()
}
