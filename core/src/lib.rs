//! # tidings
//!
//! An embeddable real-time messaging engine: two-person conversations,
//! durable messages with per-conversation sequence numbers, read state,
//! inbox, search, edits, deletes and reactions, stored through a pluggable
//! [`Store`] (SQLite by default, PostgreSQL, memory) and delivered through
//! pluggable [`Transport`]s.
//!
//! ```no_run
//! # async fn demo() -> tidings::Result<()> {
//! use tidings::{Engine, EngineConfig, SendRequest};
//!
//! let engine = Engine::builder()
//!     .config(EngineConfig::with_store("sqlite://./tidings-data/tidings.db"))
//!     .build()
//!     .await?;
//! let sent = engine.send(SendRequest::to("1", "18", "Hello teacher")).await?;
//! assert_eq!(sent.message.seq, 1);
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

#[cfg(feature = "broker")]
pub mod api;
#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "broker")]
pub mod cluster;
pub mod config;
mod delivery;
pub mod domain;
pub mod engine;
pub mod error;
pub mod event;
pub mod plugin;
#[cfg(feature = "_signing")]
pub mod signature;
pub mod store;
pub mod transport;

pub use config::{EngineConfig, TransportConfig};
pub use domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, Reaction,
    ReadState, Seq, UserId,
};
pub use engine::{Engine, EngineBuilder, SendRequest, Sent};
pub use error::{Error, ErrorKind, Result};
pub use event::Event;
pub use plugin::{PluginConfig, PluginStatus};
pub use store::Store;
pub use transport::Transport;
