//! The broker's port to a cluster, in the broker's terms and without I/O:
//! the ordered queue of what this node tells the others ([`Op`]), whether
//! the cluster is reachable right now, and the cluster-wide queries the
//! HTTP API asks ([`ClusterState`]). The broker defines it and never knows
//! what is behind it: a cluster adapter (the Redis one, feature `redis`)
//! sits above the broker, attaches a [`ClusterLink`] to each hub
//! ([`Hub::join_cluster`](super::hub::Hub::join_cluster)), drains its queue and implements
//! [`ClusterState`].
//!
//! Hubs enqueue while holding their channel lock and never wait: a full
//! queue drops the operation and asks the adapter for a full resync (state
//! operations) or refuses the event with a warning (events: the hub then
//! fans it out to this node's subscribers only, and the engine's
//! transport reports it as not delivered). While the cluster is down
//! nothing is queued: the resync on reconnect carries the node's state,
//! and events reach local subscribers only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Notify};

use super::hub::ChannelInfo;
use super::protocol::Frame;
use crate::error::Result;

/// Operations a node's queue can hold before it asks for a resync.
pub const QUEUE_CAPACITY: usize = 64 * 1024;
/// How long a flush waits for what was queued before it to reach Redis.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing this node tells the cluster, in order.
#[derive(Debug)]
pub enum Op {
    /// An event for every node: this one fans it out when it comes back
    /// through Redis, so every node delivers in the one order Redis saw.
    Publish {
        channel: String,
        frame: Frame,
        except: Option<Arc<str>>,
        cache: bool,
        /// Whether this node's subscribers get it too (when it comes back,
        /// or at once if Redis is lost first). `false` for a retry of an
        /// event they already had ([`BrokerTransport`](super::BrokerTransport)).
        here: bool,
    },
    /// One more subscription to `channel` on this node; `counted`: the app
    /// sends `subscription_count` for it.
    Subscribed {
        channel: String,
        counted: bool,
    },
    Unsubscribed {
        channel: String,
        counted: bool,
    },
    /// A user's first connection to a presence channel on this node.
    Joined {
        channel: String,
        user: String,
        info: String,
        socket: Arc<str>,
    },
    /// A user's last connection to a presence channel on this node left.
    Left {
        channel: String,
        user: String,
    },
    /// Close a signed-in user's connections on every node.
    Terminate {
        user: String,
    },
    /// Answered once everything queued before it reached Redis; dropped
    /// unanswered when that is not known (Redis lost or down).
    Flush(oneshot::Sender<()>),
}

impl Op {
    /// Part of the node's share (replaced whole by a resync).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn is_state(&self) -> bool {
        !matches!(
            self,
            Op::Publish { .. } | Op::Terminate { .. } | Op::Flush(_)
        )
    }
}

/// Cluster-wide answers for the HTTP API (implemented over Redis).
#[async_trait]
pub trait ClusterState: Send + Sync + 'static {
    /// Counts of one channel, `None` when no node has a subscriber.
    async fn channel(&self, channel: &str) -> Result<Option<ChannelInfo>>;
    /// Occupied channels whose name starts with `prefix`, sorted.
    async fn channels(&self, prefix: &str) -> Result<Vec<(String, ChannelInfo)>>;
    /// User ids in a presence channel, sorted.
    async fn users(&self, channel: &str) -> Result<Vec<String>>;
}

/// What a hub holds when it is part of a cluster.
pub struct ClusterLink {
    node_id: Arc<str>,
    queue: mpsc::Sender<Op>,
    up: AtomicBool,
    resync: AtomicBool,
    resync_wake: Notify,
    dropped_events: AtomicU64,
    state: OnceLock<Arc<dyn ClusterState>>,
}

impl ClusterLink {
    /// A link and the receiving end of its queue (for the adapter).
    pub fn new(node_id: Arc<str>) -> (Arc<ClusterLink>, mpsc::Receiver<Op>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let link = ClusterLink {
            node_id,
            queue,
            up: AtomicBool::new(false),
            resync: AtomicBool::new(false),
            resync_wake: Notify::new(),
            dropped_events: AtomicU64::new(0),
            state: OnceLock::new(),
        };
        (Arc::new(link), receiver)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Connected to Redis and synchronised.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Set up by the adapter only, while the hub holds every channel's
    /// lock (see [`Hub::cluster_snapshot`](super::hub::Hub::cluster_snapshot)).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// Queues an operation; `false` when it was not (the cluster is down,
    /// or the queue full).
    pub fn send(&self, op: Op) -> bool {
        if !self.is_up() {
            return false;
        }
        let state = op.is_state();
        match self.queue.try_send(op) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(_)) if state => {
                if !self.resync.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        node = %self.node_id,
                        "the cluster queue is full; this node's state will be resynchronised"
                    );
                }
                self.resync_wake.notify_one();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped_events.fetch_add(1, Ordering::Relaxed);
                if (n + 1).is_power_of_two() {
                    tracing::warn!(
                        node = %self.node_id,
                        dropped = n + 1,
                        "the cluster queue is full; events reach this node's subscribers only"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        false
    }

    /// Resolves once everything queued so far reached Redis (`true`), or
    /// when that cannot be confirmed (`false`): at once while the cluster
    /// is down or the queue is full, when the connection to Redis is lost
    /// first, and after [`FLUSH_TIMEOUT`]. What was queued still goes out
    /// after a `false` (to Redis, or to this node's subscribers only).
    pub async fn flush(&self) -> bool {
        if !self.is_up() {
            return false;
        }
        let (done, wait) = oneshot::channel();
        if self.queue.try_send(Op::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(FLUSH_TIMEOUT, wait).await, Ok(Ok(())))
    }

    /// The adapter asks whether a resync was requested (and clears it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn resync_requested(&self) {
        self.resync_wake.notified().await;
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_state(&self, state: Arc<dyn ClusterState>) {
        let _ = self.state.set(state);
    }

    /// The cluster-wide queries, while the cluster is up.
    pub fn state(&self) -> Option<&Arc<dyn ClusterState>> {
        self.state.get().filter(|_| self.is_up())
    }
}
