//! The engine's way into the broker: a [`Transport`] that publishes to one
//! app's channels in process (and, in a cluster, once through Redis to the
//! other nodes).
//!
//! ## In a cluster: nothing delivered that the cluster did not take
//!
//! An event is delivered (`Ok`) once the cluster took it: queued for Redis
//! and confirmed there by a flush. Otherwise the result is a retryable
//! error, and the engine's outbox tries the event again with back-off
//! (holding back the later events of its conversation) until the cluster
//! takes it:
//!
//! - Redis is down, or this node's queue is full: this node's subscribers
//!   get the event at once, as on a single node; the other nodes do not.
//! - Queued, but not confirmed within the flush timeout (Redis slow, or
//!   lost before it answered): this node's subscribers get it when it
//!   comes back from Redis, or at once when the connection is lost.
//!
//! Either way this node's subscribers have the event, or will have it. So
//! the transport remembers it (channel, name and payload), and its retries
//! through [`deliver_batch`](Transport::deliver_batch) go to the other
//! nodes only: this node does not fan them out again, when they come back
//! or while Redis is still down. Local subscribers see the event once; the
//! other nodes see it once, or twice when an unconfirmed attempt reached
//! Redis after all. That duplicate, and one more for this node's
//! subscribers when the memory is lost (a restart, another node retrying
//! after the lease ran out, more than [`UNCONFIRMED_MEMORY`] events
//! waiting), is within the contract: delivery is at-least-once and clients
//! dedupe by message id and seq.
//!
//! [`deliver`](Transport::deliver) is for one-off events nobody retries
//! (typing, whose repeats carry identical payloads and are new events):
//! it reports the same errors, but every call reaches this node's
//! subscribers and nothing is remembered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::app::App;
use super::protocol::{self, Frame};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::transport::{HeldBack, Transport};

/// Events remembered as had by this node's subscribers but not confirmed
/// by the cluster; beyond this the oldest are forgotten.
pub const UNCONFIRMED_MEMORY: usize = 16 * 1024;

/// Publishes engine events to an app's subscribers; the frame is encoded
/// once per event.
pub struct BrokerTransport {
    app: Arc<App>,
    unconfirmed: Mutex<Unconfirmed>,
}

impl BrokerTransport {
    pub fn new(app: Arc<App>) -> Self {
        BrokerTransport {
            app,
            unconfirmed: Mutex::default(),
        }
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, Unconfirmed> {
        self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers `events` in order; `remember`: they are retried until
    /// `Ok` (the outbox), see the module docs.
    async fn send(&self, events: &[Arc<Event>], remember: bool) -> Vec<Result<()>> {
        let hub = &self.app.hub;
        if !hub.is_clustered() {
            return events
                .iter()
                .map(|e| {
                    hub.publish(&e.channel, &frame(e)?, None);
                    Ok(())
                })
                .collect();
        }
        let mut held = HeldBack::default();
        let mut results = Vec::with_capacity(events.len());
        // Queued for the cluster: their result waits for the flush.
        let mut queued = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let result = held.check(&e.channel).and_then(|()| {
                let frame = frame(e)?;
                let key = Key(e.clone());
                let again = remember && self.unconfirmed().contains(&key);
                if hub.publish_to_cluster(&e.channel, &frame, None, !again) {
                    queued.push((i, key));
                    return Ok(());
                }
                if !again {
                    hub.publish_local(&e.channel, &frame, None);
                    if remember {
                        self.unconfirmed().insert(key);
                    }
                }
                Err(Error::transport(
                    "broker",
                    format!(
                        "the cluster did not take event {:?} on {} (Redis is down or this \
                         node's queue is full): this node's subscribers have it, the other \
                         nodes not yet",
                        e.name, e.channel
                    ),
                ))
            });
            held.record(&e.channel, &result);
            results.push(result);
        }
        if queued.is_empty() || hub.cluster_flush().await {
            let mut unconfirmed = self.unconfirmed();
            for (_, key) in &queued {
                unconfirmed.remove(key);
            }
            return results;
        }
        let mut unconfirmed = self.unconfirmed();
        for (i, key) in queued {
            let e = &events[i];
            results[i] = Err(Error::transport(
                "broker",
                format!(
                    "the cluster did not confirm that event {:?} on {} reached Redis: this \
                     node's subscribers get it, the other nodes perhaps not",
                    e.name, e.channel
                ),
            ));
            if remember {
                unconfirmed.insert(key);
            }
        }
        results
    }
}

/// The frame of an engine event.
fn frame(e: &Event) -> Result<Frame> {
    let data = std::str::from_utf8(&e.payload)
        .map_err(|err| Error::transport("broker", format!("payload is not UTF-8: {err}")))?;
    Ok(protocol::channel_event(&e.name, &e.channel, data))
}

#[async_trait]
impl Transport for BrokerTransport {
    fn name(&self) -> &str {
        "broker"
    }

    /// One event, once (see the module docs): in a cluster, `Ok` once the
    /// cluster took it.
    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        let event = Arc::new(Event::new(channel, event, payload));
        let mut results = self.send(std::slice::from_ref(&event), false).await;
        results.pop().unwrap_or(Ok(()))
    }

    /// Publishes the whole batch, then waits once for it to reach the
    /// cluster (when there is one); an event the cluster did not take is a
    /// retryable error, and its retry does not reach this node's
    /// subscribers twice.
    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
        self.send(events, true).await
    }
}

/// What identifies an event across retries: its channel, name and payload
/// (the shared event itself, compared by content; no copy).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key(Arc<Event>);

/// The events this node's subscribers have but the cluster did not
/// confirm, oldest first; a generation tells a key still remembered from
/// one removed and remembered again.
#[derive(Default)]
struct Unconfirmed {
    events: HashMap<Key, u64>,
    order: VecDeque<(Key, u64)>,
    next: u64,
}

impl Unconfirmed {
    fn contains(&self, key: &Key) -> bool {
        !self.events.is_empty() && self.events.contains_key(key)
    }

    fn insert(&mut self, key: Key) {
        if self.events.contains_key(&key) {
            return;
        }
        self.next += 1;
        self.events.insert(key.clone(), self.next);
        self.order.push_back((key, self.next));
        while self.order.len() > UNCONFIRMED_MEMORY {
            if let Some((old, generation)) = self.order.pop_front() {
                if self.events.get(&old) == Some(&generation) {
                    self.events.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, key: &Key) {
        if self.events.remove(key).is_some() && self.events.is_empty() {
            self.order.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::broker::cluster_port::{ClusterLink, Op, QUEUE_CAPACITY};
    use crate::broker::hub::{ConnHandle, Hub, HubSettings, Outgoing};
    use crate::broker::AppConfig;

    const CHANNEL: &str = "private-conversation-1";

    struct Node {
        transport: Arc<BrokerTransport>,
        link: Arc<ClusterLink>,
        /// What the adapter would read.
        queue: mpsc::Receiver<Op>,
        /// What a local subscriber of `CHANNEL` gets.
        local: Outgoing,
    }

    fn clustered() -> Node {
        let config = AppConfig::new("1", "k", "secret-123");
        let hub = Hub::new(&config, HubSettings::default());
        let (link, queue) = ClusterLink::new("node".into());
        hub.join_cluster(link.clone());
        let (conn, local) = ConnHandle::new("1.1".into(), 64);
        hub.subscribe(CHANNEL, &conn, None).unwrap();
        let app = Arc::new(App { config, hub });
        Node {
            transport: Arc::new(BrokerTransport::new(app)),
            link,
            queue,
            local,
        }
    }

    fn event(n: u32) -> Arc<Event> {
        Arc::new(Event::new(
            CHANNEL,
            "new-message",
            Bytes::from(format!(r#"{{"seq":{n}}}"#)),
        ))
    }

    fn local_frames(rx: &mut Outgoing) -> usize {
        std::iter::from_fn(|| rx.try_recv().ok()).count()
    }

    fn retryable(result: &Result<()>) -> bool {
        matches!(result, Err(e) if !e.is_permanent())
    }

    /// The adapter's side of one batch: the events it was given (`here`
    /// of each), then the flush, answered or not.
    async fn adapter(queue: &mut mpsc::Receiver<Op>, confirm: bool) -> Vec<bool> {
        let mut here = Vec::new();
        loop {
            match queue.recv().await {
                Some(Op::Publish { here: h, .. }) => here.push(h),
                Some(Op::Flush(done)) => {
                    if confirm {
                        let _ = done.send(());
                    }
                    return here;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn while_redis_is_down_an_event_is_not_delivered_and_its_retries_reach_local_subscribers_once(
    ) {
        let mut node = clustered();
        let batch = [event(1)];
        let first = node.transport.deliver_batch(&batch).await;
        assert!(retryable(&first[0]), "{first:?}");
        assert_eq!(
            local_frames(&mut node.local),
            1,
            "local subscribers get it at once"
        );
        for _ in 0..3 {
            let again = node.transport.deliver_batch(&batch).await;
            assert!(retryable(&again[0]), "{again:?}");
        }
        assert_eq!(
            local_frames(&mut node.local),
            0,
            "retries are not fanned out again"
        );

        // Redis is back: the retry goes to the other nodes only.
        node.link.set_up(true);
        let retry = tokio::spawn({
            let transport = node.transport.clone();
            async move { transport.deliver_batch(&batch).await }
        });
        assert_eq!(adapter(&mut node.queue, true).await, [false]);
        let done = retry.await.unwrap();
        assert!(done[0].is_ok(), "{done:?}");

        // Taken: the same event again is a new one, for everyone.
        let next = tokio::spawn({
            let transport = node.transport.clone();
            async move { transport.deliver_batch(&[event(1)]).await }
        });
        assert_eq!(adapter(&mut node.queue, true).await, [true]);
        assert!(next.await.unwrap()[0].is_ok());
    }

    #[tokio::test]
    async fn a_full_cluster_queue_is_an_error_for_the_event_and_holds_back_its_channel() {
        let mut node = clustered();
        node.link.set_up(true);
        for i in 0..QUEUE_CAPACITY {
            assert!(node.link.send(Op::Terminate {
                user: i.to_string()
            }));
        }
        let other = Arc::new(Event::new(
            "private-conversation-2",
            "new-message",
            Bytes::from("{}"),
        ));
        let results = node
            .transport
            .deliver_batch(&[event(1), event(2), other])
            .await;
        assert!(results.iter().all(retryable), "{results:?}");
        assert_eq!(
            local_frames(&mut node.local),
            1,
            "the second event of the channel is held back, not delivered out of order"
        );
    }

    #[tokio::test]
    async fn an_event_whose_flush_is_not_confirmed_is_an_error_and_is_retried_for_the_others() {
        let mut node = clustered();
        node.link.set_up(true);
        let batch = [event(1), event(2)];
        let first = tokio::spawn({
            let transport = node.transport.clone();
            let batch = batch.clone();
            async move { transport.deliver_batch(&batch).await }
        });
        // Redis was lost before it answered (the adapter drops the flush).
        assert_eq!(adapter(&mut node.queue, false).await, [true, true]);
        let first = first.await.unwrap();
        assert!(first.iter().all(retryable), "{first:?}");

        let retry = tokio::spawn({
            let transport = node.transport.clone();
            async move { transport.deliver_batch(&batch).await }
        });
        assert_eq!(
            adapter(&mut node.queue, true).await,
            [false, false],
            "this node's subscribers got the first attempt"
        );
        assert!(retry.await.unwrap().iter().all(Result::is_ok));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_redis_does_not_answer_in_time_is_an_error() {
        let mut node = clustered();
        node.link.set_up(true);
        let delivery = tokio::spawn({
            let transport = node.transport.clone();
            async move {
                transport
                    .deliver(CHANNEL, "new-message", Bytes::from("{}"))
                    .await
            }
        });
        let mut kept = None;
        while kept.is_none() {
            if let Some(Op::Flush(done)) = node.queue.recv().await {
                kept = Some(done);
            }
        }
        let result = delivery.await.unwrap();
        assert!(retryable(&result), "{result:?}");
    }

    #[tokio::test]
    async fn one_off_events_reach_local_subscribers_every_time_even_while_redis_is_down() {
        let mut node = clustered();
        for _ in 0..2 {
            let typing = node
                .transport
                .deliver(CHANNEL, "typing", Bytes::from("{}"))
                .await;
            assert!(retryable(&typing), "{typing:?}");
        }
        assert_eq!(local_frames(&mut node.local), 2);
    }

    #[tokio::test]
    async fn a_single_node_delivers_at_once() {
        let config = AppConfig::new("1", "k", "secret-123");
        let hub = Hub::new(&config, HubSettings::default());
        let (conn, mut local) = ConnHandle::new("1.1".into(), 64);
        hub.subscribe(CHANNEL, &conn, None).unwrap();
        let transport = BrokerTransport::new(Arc::new(App { config, hub }));
        let results = transport.deliver_batch(&[event(1), event(1)]).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(local_frames(&mut local), 2);
    }
}
