//! The Pusher-protocol broker (feature `broker`): WebSocket connections at
//! `/app/{key}` (and pusher-js's HTTP fallback, [`xhr`]), public/private/presence/encrypted/cache channels, client
//! events, signin, the Pusher HTTP API and webhooks. It never calls the
//! engine or a store: the engine reaches it through [`BrokerTransport`].
//! It knows no cluster either: its port to one is [`cluster_port`], which
//! an adapter above it (Redis, attached by `tidings serve --cluster`) fills.

pub mod app;
pub mod channel;
pub mod cluster_port;
pub mod connection;
pub mod http_api;
pub mod hub;
pub mod protocol;
pub mod server;
pub mod transport;
pub mod webhook;
pub mod xhr;

use std::sync::Arc;
use std::time::Duration;

pub use app::{App, AppConfig, Apps};
pub use server::Broker;
pub use transport::BrokerTransport;
pub use xhr::XhrSettings;

/// Connection-level settings shared by every app.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Advertised in the handshake; a client silent this long is pinged.
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer before 4201.
    pub pong_timeout: Duration,
    /// Largest incoming WebSocket message.
    pub max_message_bytes: usize,
    pub hub: hub::HubSettings,
    /// The HTTP fallback (pusher-js `xhr_streaming` / `xhr_polling`).
    pub xhr: XhrSettings,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            max_message_bytes: 64 * 1024,
            hub: hub::HubSettings::default(),
            xhr: XhrSettings::default(),
        }
    }
}

/// Shared handle type used by routes.
pub type SharedBroker = Arc<Broker>;
