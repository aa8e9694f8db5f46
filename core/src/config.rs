//! `EngineConfig`: the one configuration schema every host uses (Rust, the
//! C ABI's JSON, Python, Node, `tidings serve`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default store: an SQLite file under `./tidings-data`.
pub const DEFAULT_STORE_URL: &str = "sqlite://./tidings-data/tidings.db";

/// How an engine stores and delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Store URL: `sqlite://PATH`, `postgres://…` or `memory:`.
    pub store: String,
    /// How many events an in-process subscriber may fall behind before it
    /// gets a `lagged` notice instead.
    pub event_capacity: usize,
    /// Plugins, in the order their hooks run (see [`crate::plugin`]).
    pub plugins: Vec<crate::plugin::PluginConfig>,
    /// Where events go besides in-process subscribers, in this order.
    pub transports: Vec<TransportConfig>,
}

/// One delivery transport, chosen at runtime (TOML `[[transport]]`, JSON
/// `{"kind": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// The Pusher HTTP API: `http(s)://KEY:SECRET@HOST[:PORT]/apps/APP_ID`.
    Pusher {
        url: String,
        /// Per request, in milliseconds.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// Attempts per delivery before the outbox retries later.
        #[serde(default = "default_attempts")]
        attempts: u32,
    },
    /// The in-process broker of `tidings serve`.
    Broker,
    /// A bounded in-memory log that long-poll clients read by cursor.
    Polling {
        #[serde(default = "default_polling_capacity")]
        capacity: usize,
    },
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    3
}
fn default_polling_capacity() -> usize {
    crate::transport::polling::DEFAULT_CAPACITY
}

impl TransportConfig {
    /// A Pusher transport with the default timeout and attempts.
    pub fn pusher(url: impl Into<String>) -> Self {
        TransportConfig::Pusher {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            attempts: default_attempts(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: DEFAULT_STORE_URL.to_owned(),
            event_capacity: crate::transport::local::DEFAULT_CAPACITY,
            plugins: Vec::new(),
            transports: Vec::new(),
        }
    }
}

impl EngineConfig {
    pub fn with_store(url: impl Into<String>) -> Self {
        EngineConfig {
            store: url.into(),
            ..Self::default()
        }
    }

    /// Parses the JSON form, naming the offending field on error.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Config(format!("engine config: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_defaults_and_unknown_fields() {
        let c = EngineConfig::from_json("{}").unwrap();
        assert_eq!(c, EngineConfig::default());
        let c = EngineConfig::from_json(r#"{"store":"memory:"}"#).unwrap();
        assert_eq!(c.store, "memory:");
        let err = EngineConfig::from_json(r#"{"stor":"memory:"}"#).unwrap_err();
        assert!(err.to_string().contains("stor"), "{err}");
    }

    #[test]
    fn transports_by_kind() {
        let c = EngineConfig::from_json(
            r#"{"transports":[{"kind":"pusher","url":"http://k:s@127.0.0.1:6001/apps/1"},
                              {"kind":"polling"},{"kind":"broker"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.transports[0],
            TransportConfig::pusher("http://k:s@127.0.0.1:6001/apps/1")
        );
        assert!(matches!(c.transports[1], TransportConfig::Polling { capacity } if capacity > 0));
        assert_eq!(c.transports[2], TransportConfig::Broker);
        let err =
            EngineConfig::from_json(r#"{"transports":[{"kind":"carrier-pigeon"}]}"#).unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
        let err =
            EngineConfig::from_json(r#"{"transports":[{"kind":"polling","size":3}]}"#).unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }
}
