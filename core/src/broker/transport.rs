//! The engine's way into the broker: a [`Transport`] that publishes to one
//! app's channels in process (and, in a cluster, once through Redis to the
//! other nodes).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::app::App;
use super::protocol;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::transport::Transport;

/// Publishes engine events to an app's subscribers; the frame is encoded
/// once per event.
pub struct BrokerTransport {
    app: Arc<App>,
}

impl BrokerTransport {
    pub fn new(app: Arc<App>) -> Self {
        BrokerTransport { app }
    }

    fn publish(&self, channel: &str, event: &str, payload: &[u8]) -> Result<()> {
        let data = std::str::from_utf8(payload)
            .map_err(|e| Error::transport("broker", format!("payload is not UTF-8: {e}")))?;
        let frame = protocol::channel_event(event, channel, data);
        self.app.hub.publish(channel, &frame, None);
        Ok(())
    }
}

#[async_trait]
impl Transport for BrokerTransport {
    fn name(&self) -> &str {
        "broker"
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        self.publish(channel, event, &payload)?;
        self.app.hub.cluster_flush().await;
        Ok(())
    }

    /// Publishes the whole batch, then waits once for it to reach the
    /// cluster (when there is one).
    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
        let results = events
            .iter()
            .map(|e| self.publish(&e.channel, &e.name, &e.payload))
            .collect();
        self.app.hub.cluster_flush().await;
        results
    }
}
