//! The `Transport` seam: how events leave the engine. The engine holds a
//! list chosen at runtime and hands each event to every one of them.

use std::sync::Arc;
use std::time::Duration;

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

/// How long one [`Transport::deliver_batch`] call may take unless the
/// transport says otherwise ([`Transport::call_timeout`]); past it the
/// events count as not delivered and are retried.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Something that carries events to clients.
///
/// Each transport of an engine has its own queue and task
/// (`crate::delivery`): one that is slow, down or hung holds back only
/// itself.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name for logs and errors (`local`, `pusher`, ...).
    fn name(&self) -> &str;

    /// The key the store tracks this transport's progress under, so that
    /// what it did not take survives a restart and is recovered for it
    /// alone; `None` for a live-only transport (in-process subscribers),
    /// for which nothing is recorded. Default: [`name`](Self::name). Keep
    /// it stable across restarts.
    fn outbox_key(&self) -> Option<String> {
        Some(self.name().to_owned())
    }

    /// The longest one delivery call may take (see [`DEFAULT_CALL_TIMEOUT`]).
    fn call_timeout(&self) -> Duration {
        DEFAULT_CALL_TIMEOUT
    }

    /// Most events handed over in one [`deliver_batch`](Self::deliver_batch)
    /// call, so that one call fits its timeout.
    fn max_batch(&self) -> usize {
        500
    }

    /// Hands one event over. `payload` is JSON serialized once and shared,
    /// never copied per subscriber. An error leaves the event pending in the
    /// outbox, to be retried.
    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()>;

    /// Hands over several events, in order, returning one result each. A
    /// transport that batches (the Pusher HTTP API) overrides this; it must
    /// not deliver an event after an earlier event of the same channel
    /// failed with a retryable error (order per channel is kept).
    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
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
