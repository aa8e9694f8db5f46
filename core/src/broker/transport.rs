//! The engine's way into the broker: a [`Transport`] that publishes to one
//! app's channels in process.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::app::App;
use super::protocol;
use crate::error::{Error, Result};
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
}

#[async_trait]
impl Transport for BrokerTransport {
    fn name(&self) -> &str {
        "broker"
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        let data = std::str::from_utf8(&payload)
            .map_err(|e| Error::transport("broker", format!("payload is not UTF-8: {e}")))?;
        let frame = protocol::channel_event(event, channel, data);
        self.app.hub.publish(channel, &frame, None);
        Ok(())
    }
}
