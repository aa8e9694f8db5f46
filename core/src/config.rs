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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: DEFAULT_STORE_URL.to_owned(),
            event_capacity: crate::transport::local::DEFAULT_CAPACITY,
            plugins: Vec::new(),
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
}
