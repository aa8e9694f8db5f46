//! The broker's HTTP side: the WebSocket endpoint, pusher-js's HTTP
//! fallback, and the router that the HTTP API, the chat API and the chat
//! page are merged into.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::app::Apps;
use super::connection;
use super::protocol::code;
use super::xhr;
use super::BrokerSettings;
use crate::error::Result;

/// The broker: apps and their hubs, and connection settings.
pub struct Broker {
    pub apps: Apps,
    pub settings: Arc<BrokerSettings>,
    /// Open sessions of the HTTP fallback.
    pub(super) xhr: Arc<xhr::Sessions>,
}

impl Broker {
    pub fn new(apps: Vec<super::AppConfig>, settings: BrokerSettings) -> Result<Arc<Broker>> {
        let apps = Apps::new(apps, &settings.hub)?;
        Ok(Arc::new(Broker {
            apps,
            settings: Arc::new(settings),
            xhr: Arc::default(),
        }))
    }

    /// Routes of the WebSocket endpoint (`/app/{key}`).
    pub fn websocket_routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/app/{key}", get(websocket))
            .with_state(self.clone())
    }

    /// Routes of pusher-js's HTTP fallback (`xhr_streaming`, `xhr_polling`):
    /// `{/pusher,}/app/{key}/{server}/{session}/{xhr_streaming,xhr,xhr_send}`.
    pub fn xhr_routes(self: &Arc<Self>) -> Router {
        xhr::routes(self.clone())
    }

    /// Asks every connection of every app to close with 4200 (reconnect now).
    pub fn close_all(&self) {
        for app in self.apps.iter() {
            app.hub
                .close_all(code::RECONNECT, "Server is restarting; reconnect");
        }
    }

    pub fn connection_count(&self) -> usize {
        self.apps.iter().map(|a| a.hub.connection_count()).sum()
    }
}

async fn websocket(
    State(broker): State<Arc<Broker>>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let settings = broker.settings.clone();
    let upgrade = upgrade
        .max_message_size(settings.max_message_bytes)
        .max_frame_size(settings.max_message_bytes)
        // What clients send is small (subscribes, pings, client events); a
        // 1 KiB read buffer is a quarter of the RSS of 4 KiB on an idle
        // connection (10.0 -> 7.0 KB each at 10,000), and a larger frame
        // still arrives whole, in more reads.
        .read_buffer_size(1024)
        // Frames queued for a connection are fed, then flushed once: up to
        // 16 KiB of them leave in one write instead of a syscall each
        // (saturated fan-out: 8.7 -> 2.7 us of server CPU per delivery).
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(settings.max_message_bytes * 4);
    let protocol: Option<u32> = query.get("protocol").and_then(|p| p.parse().ok());
    let app = broker.apps.by_key(&key).cloned();
    upgrade.on_upgrade(move |socket| async move {
        match (app, protocol) {
            (None, _) => {
                connection::refuse(
                    socket,
                    code::APP_NOT_FOUND,
                    &format!("Application does not exist: no app has the key {key:?}"),
                )
                .await
            }
            (Some(_), Some(p)) if p < 5 => {
                connection::refuse(
                    socket,
                    code::UNSUPPORTED_PROTOCOL,
                    &format!("Unsupported protocol version {p}; use 7"),
                )
                .await
            }
            (Some(app), _) => connection::run(socket, app, settings).await,
        }
    })
}
