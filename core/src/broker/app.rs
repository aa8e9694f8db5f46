//! Apps: credentials and per-app settings, looked up by key or id.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::hub::Hub;
use crate::error::{Error, Result};

/// One app as configured (TOML `[[app]]`, or the default app from env).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Numeric, as the Python SDK requires.
    pub id: String,
    pub key: String,
    pub secret: String,
    /// Where webhooks go (none when empty).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Batch webhook events (up to 250 ms / 20 events per request).
    #[serde(default)]
    pub webhook_batching: bool,
    /// Whether clients may trigger `client-` events.
    #[serde(default = "yes")]
    pub client_events: bool,
    /// Send `pusher_internal:subscription_count` to subscribers.
    #[serde(default)]
    pub subscription_count: bool,
    #[serde(default = "default_max_presence_members")]
    pub max_presence_members: usize,
    #[serde(default = "default_client_event_rate")]
    pub max_client_events_per_second: u32,
    /// Channels one connection may be subscribed to at once; a subscribe
    /// past it is refused (`pusher:error` and a `LimitReached`
    /// `pusher:subscription_error`), the connection stays.
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions_per_connection: usize,
}

fn yes() -> bool {
    true
}
fn default_max_presence_members() -> usize {
    100
}
fn default_client_event_rate() -> u32 {
    10
}
/// Subscriptions per connection: far above what a chat page holds (its
/// conversations and a few presence channels), far below a flood.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;
fn default_max_subscriptions() -> usize {
    DEFAULT_MAX_SUBSCRIPTIONS
}

impl AppConfig {
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            webhooks: Vec::new(),
            webhook_batching: false,
            client_events: true,
            subscription_count: false,
            max_presence_members: default_max_presence_members(),
            max_client_events_per_second: default_client_event_rate(),
            max_subscriptions_per_connection: default_max_subscriptions(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() || !self.id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Config(format!(
                "app id {:?} must be numeric (the Python SDK requires it)",
                self.id
            )));
        }
        if self.key.is_empty() || self.key.contains(':') || self.key.contains('/') {
            return Err(Error::Config(format!(
                "app key {:?} must be non-empty without ':' or '/'",
                self.key
            )));
        }
        if self.secret.len() < 8 {
            return Err(Error::Config(format!(
                "the secret of app {} is too short (at least 8 characters)",
                self.id
            )));
        }
        Ok(())
    }
}

/// A running app: its settings and its channels.
pub struct App {
    pub config: AppConfig,
    pub hub: Hub,
}

/// All apps, by key (WebSocket, auth) and by id (HTTP API).
#[derive(Clone, Default)]
pub struct Apps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
    order: Vec<Arc<App>>,
}

impl Apps {
    pub fn new(configs: Vec<AppConfig>, hub_settings: &super::hub::HubSettings) -> Result<Apps> {
        let mut apps = Apps::default();
        for config in configs {
            config.validate()?;
            if apps.by_key.contains_key(&config.key) || apps.by_id.contains_key(&config.id) {
                return Err(Error::Config(format!(
                    "app id {} / key {} is configured twice",
                    config.id, config.key
                )));
            }
            let hub = Hub::new(&config, hub_settings.clone());
            let app = Arc::new(App { config, hub });
            apps.by_key.insert(app.config.key.clone(), app.clone());
            apps.by_id.insert(app.config.id.clone(), app.clone());
            apps.order.push(app);
        }
        if apps.order.is_empty() {
            return Err(Error::Config("no app is configured".into()));
        }
        Ok(apps)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    /// The first configured app: the one the engine and chat API use.
    pub fn default_app(&self) -> &Arc<App> {
        &self.order[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.order.iter()
    }
}
