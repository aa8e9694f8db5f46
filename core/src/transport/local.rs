//! In-process delivery: a bounded broadcast that hosts and tests subscribe to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::Transport;
use crate::error::Result;
use crate::event::Event;

/// How many events a subscriber may fall behind before it loses some.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Broadcasts every event to in-process subscribers. Each event is one
/// `Arc` shared by all of them. Clones share one channel; [`close`]
/// (Self::close) ends it for all of them.
#[derive(Clone)]
pub struct LocalTransport {
    /// `None` once closed: subscribers then read what they hold and end.
    sender: Arc<Mutex<Option<broadcast::Sender<Arc<Event>>>>>,
}

impl Default for LocalTransport {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl LocalTransport {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        LocalTransport {
            sender: Arc::new(Mutex::new(Some(sender))),
        }
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<Event>>>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sees every event published from now on; after [`close`](Self::close)
    /// a subscription that is already ended.
    pub fn subscribe(&self) -> Subscription {
        let receiver = match &*self.sender() {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        };
        Subscription { receiver }
    }

    /// Publishes an event to the current subscribers, if any.
    pub fn publish(&self, event: Event) {
        self.publish_shared(Arc::new(event));
    }

    /// Publishes an event every subscriber shares.
    pub fn publish_shared(&self, event: Arc<Event>) {
        if let Some(sender) = &*self.sender() {
            // No subscriber is not an error: the event reached everyone listening.
            let _ = sender.send(event);
        }
    }

    /// Ends every subscription once it has read the events it holds (engine
    /// shutdown); later publishes go nowhere.
    pub fn close(&self) {
        self.sender().take();
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn name(&self) -> &str {
        "local"
    }

    /// Live-only: a subscriber that missed events catches up from the store.
    fn outbox_key(&self) -> Option<String> {
        None
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        self.publish(Event::new(channel, event, payload));
        Ok(())
    }

    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
        events
            .iter()
            .map(|e| {
                self.publish_shared(e.clone());
                Ok(())
            })
            .collect()
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Event(Arc<Event>),
    /// The subscriber fell behind and this many events were dropped for it;
    /// catch up with `messages_after`.
    Lagged(u64),
}

/// One subscriber's view of a [`LocalTransport`].
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
}

impl Subscription {
    /// The next event; `None` once the transport is gone (engine shut down).
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` with `Ok(None)`;
    /// `Err(())` means closed.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, Closed> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(Some(received)) => Ok(Some(received)),
            Ok(None) => Err(Closed),
            Err(_) => Ok(None),
        }
    }

    /// The next event without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Received>, Closed> {
        match self.receiver.try_recv() {
            Ok(event) => Ok(Some(Received::Event(event))),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Ok(Some(Received::Lagged(n))),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Closed) => Err(Closed),
        }
    }
}

/// The subscription ended: the engine shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;
