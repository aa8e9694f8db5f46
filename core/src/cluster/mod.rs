//! Several `tidings serve` nodes behind one load balancer, sharing fan-out
//! and presence through Redis (feature `redis` for the adapter; the rest is
//! I/O-free and compiled with the broker).
//!
//! ## What crosses Redis
//!
//! Per app, one pub/sub channel (`tidings:{APP_ID}:bus`). An event
//! published on a node (HTTP API, engine/chat API through the broker
//! transport, client events) is PUBLISHed once, in an envelope naming the
//! origin node, its sequence number there and the excluded `socket_id`;
//! every node receives it once and fans it out to its own subscribers with
//! the same zero-copy fan-out, so the payload crosses Redis once per event.
//! The origin node knows its own events by the node id: it does not decode
//! them but fans out the frame it kept, when the event comes back. So every
//! subscriber on every node sees the events of an app in one order, the
//! order Redis received them (a trigger answered on one node comes before
//! a later trigger on another, for everyone), at the price of one Redis
//! round trip for local subscribers too. A node's outgoing messages leave
//! in one ordered queue over one connection. While Redis is unreachable
//! events go to local subscribers at once; events sent but not back when
//! the connection broke are delivered locally then. The engine's events
//! count as delivered (its outbox acknowledges them) only once Redis
//! confirmed them; until then the outbox retries them, and the retries
//! go to the other nodes only
//! ([`BrokerTransport`](crate::broker::BrokerTransport)).
//!
//! ## Cluster-wide state
//!
//! Subscription counts per channel and presence connection counts per user
//! are kept in Redis twice: the totals and each node's own share, so that a
//! node's share can be taken back whole. Every transition is decided
//! atomically by a Lua script ([`scripts`]): the node whose script moved a
//! channel 0→1 or a user 0→1 sends `channel_occupied`/`member_added`, so
//! webhooks go out once for the cluster. The scripts PUBLISH the resulting
//! `member_added`/`member_removed`/`subscription_count` messages themselves,
//! so every node applies them in the one order Redis decided them; each node
//! keeps a mirror of every presence channel's members built from those
//! messages plus a snapshot read on every (re)connect, so a subscribe is
//! answered at once with the full member list. `channel_vacated` and
//! `member_removed` webhooks wait [`LEAVE_DELAY`](crate::broker::webhook::LEAVE_DELAY)
//! in a Redis sorted set; a comeback inside the delay cancels both the
//! leave and the join webhook, as on one node.
//!
//! ## Nodes dying and Redis going away
//!
//! Each node refreshes a key with a TTL ([`ClusterSettings::node_ttl`],
//! every third of it); every node sweeps, every
//! [`ClusterSettings::sweep_interval`], the nodes whose key expired, taking
//! their shares back (their members leave with `member_removed`, then the
//! webhooks). So a dead node's members are gone within `node_ttl +
//! sweep_interval` (10 s + 5 s = 15 s by default), their webhooks
//! [`LEAVE_DELAY`](crate::broker::webhook::LEAVE_DELAY) later.
//!
//! While Redis is unreachable a node serves its own subscribers alone
//! (events, presence and counts of its own connections), reconnects with
//! exponential back-off (100 ms doubling to 5 s), and on reconnecting puts
//! back its whole share in one script (only the differences become
//! member/occupancy events) and re-reads the cluster's members, telling its
//! subscribers what changed meanwhile. Events published elsewhere while a
//! node was cut off do not reach it (pub/sub keeps no history): stored
//! messages are fetched by seq, as after any reconnect.

//!
//! ## Limits
//!
//! A subscribe answers from the node's mirror at once, so two presence
//! joins on two nodes less than a Redis round trip apart may each list
//! themselves without the other; the `member_added` follows a moment
//! later. The presence member limit is checked against the mirror, so
//! simultaneous joins on several nodes can pass it by a few. Every key of
//! an app carries the hash tag `{APP_ID}` and the bus is one channel per
//! app (ready for a Redis Cluster slot and sharded pub/sub), but the
//! scripts derive their keys from the prefix, and the adapter speaks to one
//! Redis server (PUBLISH, not SPUBLISH).

pub mod envelope;
#[cfg(feature = "redis")]
mod redis;
pub mod scripts;

use std::sync::Arc;
use std::time::Duration;

/// The broker's port, which this adapter fills (its old path).
pub use crate::broker::cluster_port as link;
pub use crate::broker::cluster_port::{ClusterLink, ClusterState};

use crate::broker::Broker;
use crate::error::Result;

/// How a node joins a cluster (`tidings serve --cluster redis://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`. Every node of a cluster uses
    /// the same Redis database and the same app configuration.
    pub url: String,
    /// How long a node's liveness key lives; it is refreshed every third
    /// of it. A node silent this long is swept.
    pub node_ttl: Duration,
    /// How often every node looks for dead nodes to sweep.
    pub sweep_interval: Duration,
    /// How long a node holds the outbox rows it claimed from the shared
    /// store; the rows of a node that died go to another one after this.
    pub outbox_lease: Duration,
}

impl ClusterSettings {
    pub fn new(url: impl Into<String>) -> Self {
        ClusterSettings {
            url: url.into(),
            node_ttl: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(5),
            outbox_lease: Duration::from_secs(30),
        }
    }

    /// The longest a dead node's members stay listed.
    pub fn death_bound(&self) -> Duration {
        self.node_ttl.saturating_add(self.sweep_interval)
    }
}

/// The running cluster adapter of a broker: one task per app.
pub struct Cluster {
    node_id: Arc<str>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    links: Vec<Arc<ClusterLink>>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    stop: tokio::sync::watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// This node's id, as the others see it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Waits until every app is connected and synchronised, at most
    /// `within`; `false` when Redis did not answer in time (the node then
    /// serves alone and keeps trying).
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.links.iter().all(|l| l.is_up()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends what is queued, takes this node's share out of Redis (its
    /// members leave at once instead of after the TTL) and stops.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("the cluster adapter did not stop in time");
            }
        }
    }
}

/// A node id: 16 hex digits, new for every start.
fn new_node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Joins every app of `broker` to the cluster: attaches a [`ClusterLink`]
/// to each hub and starts the adapter tasks on `handle`. Fails only on a
/// malformed URL; an unreachable Redis is retried in the background while
/// the node serves its own subscribers.
#[cfg(feature = "redis")]
pub fn start(
    broker: &Broker,
    settings: ClusterSettings,
    handle: &tokio::runtime::Handle,
) -> Result<Cluster> {
    redis::start(broker, settings, handle, new_node_id())
}

#[cfg(not(feature = "redis"))]
pub fn start(
    _broker: &Broker,
    _settings: ClusterSettings,
    _handle: &tokio::runtime::Handle,
) -> Result<Cluster> {
    let _ = new_node_id;
    Err(crate::error::Error::Config(
        "--cluster needs the Redis adapter, which is not compiled in; enable the cargo feature `redis`"
            .into(),
    ))
}
