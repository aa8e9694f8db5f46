//! The `Transport` seam: how events leave the engine. The engine holds a
//! list chosen at runtime and hands each event to every one of them.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub mod local;

pub use local::{LocalTransport, Received, Subscription};

/// Something that carries events to clients.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name for logs and errors (`local`, `pusher`, ...).
    fn name(&self) -> &str;

    /// Hands one event over. `payload` is JSON serialized once and shared,
    /// never copied per subscriber. An error leaves the event pending in the
    /// outbox, to be retried.
    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()>;
}
