//! The Pusher HTTP API (PUSHER_PROTOCOL.md §3). Being written.

use std::sync::Arc;

use axum::Router;

use super::Broker;

pub fn routes(_broker: Arc<Broker>) -> Router {
    Router::new()
}
