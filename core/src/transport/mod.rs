//! The `Transport` seam: how events leave the engine. The engine holds a
//! list chosen at runtime and hands each event to every one of them.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::event::Event;

pub mod local;
pub mod polling;
#[cfg(feature = "pusher")]
pub mod pusher;

pub use local::{LocalTransport, Received, Subscription};
pub use polling::PollingTransport;

/// Something that carries events to clients.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name for logs and errors (`local`, `pusher`, ...).
    fn name(&self) -> &str;

    /// Hands one event over. `payload` is JSON serialized once and shared,
    /// never copied per subscriber. An error leaves the event pending in the
    /// outbox, to be retried.
    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()>;

    /// Hands over several events, in order, returning one result each. A
    /// transport that batches (the Pusher HTTP API) overrides this; it must
    /// not deliver an event after an earlier event of the same channel
    /// failed with a retryable error (order per channel is kept).
    async fn deliver_batch(&self, events: &[Event]) -> Vec<Result<()>> {
        let mut held = HeldBack::default();
        let mut results = Vec::with_capacity(events.len());
        for e in events {
            let result = match held.check(&e.channel) {
                Err(err) => Err(err),
                Ok(()) => self.deliver(&e.channel, &e.name, e.payload.clone()).await,
            };
            held.record(&e.channel, &result);
            results.push(result);
        }
        results
    }
}

/// Channels whose earlier event failed with a retryable error in this batch:
/// their later events are held back so order per channel is kept.
#[derive(Default)]
pub struct HeldBack {
    channels: std::collections::HashSet<String>,
}

impl HeldBack {
    /// `Err` (retryable) when an earlier event of `channel` failed.
    pub fn check(&self, channel: &str) -> Result<()> {
        if self.channels.contains(channel) {
            return Err(crate::Error::transport(
                "outbox",
                format!("held back: an earlier event on {channel} is not delivered yet"),
            ));
        }
        Ok(())
    }

    pub fn record(&mut self, channel: &str, result: &Result<()>) {
        if let Err(e) = result {
            if !e.is_permanent() {
                self.channels.insert(channel.to_owned());
            }
        }
    }
}
