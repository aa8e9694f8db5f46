//! Delivery: how committed events reach every transport.
//!
//! After each commit the store hands its events to this module in commit
//! order ([`Store::add_commit_sink`], called before the sender is
//! answered). The dispatcher encodes each event once (one `Arc<Event>`
//! shared by every transport, never copied per transport or subscriber)
//! and offers it to every transport's [`lane`]: a bounded queue and a task
//! of its own, so a transport that is slow, down or hung holds back only
//! itself, and every call has a deadline.
//!
//! Durable transports (the broker, a Pusher mirror, plugin transports; see
//! [`Transport::outbox_key`]) each have a slot in the store's registry; the
//! outbox row written with the event records which of them still owe it,
//! and each acknowledges only what it took itself, in batches ([`acks`]).
//! The store is read for delivery only to recover: at start (what was
//! left pending), when a lane fell behind its queue, and every scan
//! interval for rows older than the lease that no live engine delivers (a
//! node that died, a command-line process). Recovery leases rows per
//! conversation ([`Store::lease_outbox`]), so engines sharing a store
//! recover each conversation from one node at a time, in id order.
//!
//! Plugin hooks that cannot change the outcome (`after_send`) run here too,
//! after the sender has its answer, in commit order.

mod acks;
mod lane;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::acks::Acks;
use self::lane::{Item, Lane, LaneContext, LaneInput};
use crate::error::Result;
use crate::event::{self, Event};
use crate::store::{Committed, Store};
use crate::transport::Transport;

/// How long shutdown lets lanes deliver what they hold.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a recovered row stays this engine's unless it says otherwise.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How often an idle durable lane looks for stray rows: a quarter of the
/// lease, 250 ms to 5 s.
pub(crate) fn scan_interval(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// An owner id no other engine uses: process, time and a counter.
fn new_owner() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where `after_send` hooks get the stored messages (their JSON).
pub(crate) type AfterSend = mpsc::Sender<Bytes>;

/// The running delivery of one engine.
pub(crate) struct Delivery {
    store: Arc<dyn Store>,
    inputs: Arc<[LaneInput]>,
    sink: Mutex<Option<u64>>,
    stop: watch::Sender<bool>,
    owner: Arc<str>,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    dispatcher: Option<JoinHandle<()>>,
    lanes: Vec<JoinHandle<()>>,
    acker: Option<JoinHandle<()>>,
    acks: Option<Acks>,
}

/// A transport as the engine hands it to [`Delivery::start`].
pub(crate) struct Route {
    pub transport: Arc<dyn Transport>,
    pub takes: Takes,
}

/// Which events that are not stored a transport gets (stored ones go to
/// every transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Takes {
    /// `typing`.
    pub typing: bool,
    /// What plugins publish.
    pub published: bool,
}

impl Takes {
    pub(crate) const ALL: Takes = Takes {
        typing: true,
        published: true,
    };
}

/// An event that is not stored, by where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unstored {
    Typing,
    Published,
}

impl Delivery {
    /// Registers the durable transports with the store, starts a lane for
    /// every transport and subscribes to the store's commits.
    pub(crate) async fn start(
        runtime: &tokio::runtime::Handle,
        store: Arc<dyn Store>,
        routes: Vec<Route>,
        lease: Duration,
        after_send: Option<AfterSend>,
    ) -> Result<Delivery> {
        let lease = lease.max(Duration::from_millis(100));
        let keys = durable_keys(&routes);
        let registered: Vec<String> = keys.iter().flatten().cloned().collect();
        let slots = if registered.is_empty() {
            Vec::new()
        } else {
            store.register_transports(&registered).await?
        };
        let mut slots = slots.into_iter();
        let owner: Arc<str> = new_owner().into();
        let (acks, acker) = Acks::start(runtime, store.clone());
        let context = Arc::new(LaneContext {
            store: store.clone(),
            acks: acks.clone(),
            owner: owner.clone(),
            lease,
            scan_every: scan_interval(lease),
            drain_deadline: DRAIN_DEADLINE,
        });
        let (stop, stopped) = watch::channel(false);
        let mut inputs = Vec::with_capacity(routes.len());
        let mut lanes = Vec::with_capacity(routes.len());
        for (route, key) in routes.into_iter().zip(&keys) {
            let slot = key.as_ref().and_then(|_| slots.next());
            let (input, lane) = Lane::new(route.transport, slot, context.clone(), route.takes);
            inputs.push(input);
            lanes.push(runtime.spawn(lane.run(stopped.clone())));
        }
        let inputs: Arc<[LaneInput]> = inputs.into();
        // Unbounded: the dispatcher only encodes and queues, far faster
        // than the writer commits; lanes are bounded.
        let (committed, receiver) = mpsc::unbounded_channel::<Vec<Committed>>();
        let dispatcher = runtime.spawn(dispatch(receiver, inputs.clone(), after_send));
        let sink = store.add_commit_sink(Arc::new(move |batch: Vec<Committed>| {
            let _ = committed.send(batch);
        }));
        Ok(Delivery {
            store,
            inputs,
            sink: Mutex::new(Some(sink)),
            stop,
            owner,
            tasks: Mutex::new(Tasks {
                dispatcher: Some(dispatcher),
                lanes,
                acker: Some(acker),
                acks: Some(acks),
            }),
        })
    }

    /// Hands an event that is not stored (typing, a plugin's publish) to
    /// every transport, best effort: never retried, never recorded.
    pub(crate) fn publish(&self, event: Arc<Event>, kind: Unstored) {
        for input in self.inputs.iter() {
            let takes = match kind {
                Unstored::Typing => input.takes.typing,
                Unstored::Published => input.takes.published,
            };
            if takes {
                input.offer(Item {
                    outbox_id: None,
                    event: event.clone(),
                });
            }
        }
    }

    /// Stops taking commits, lets every lane deliver what it holds and what
    /// the store has for it (a few seconds at most), then gives up this
    /// engine's leases.
    pub(crate) async fn shutdown(&self) {
        if let Some(sink) = lock(&self.sink).take() {
            self.store.remove_commit_sink(sink);
        }
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        // The dispatcher ends once the sink is gone and its queue empty.
        if let Some(dispatcher) = tasks.dispatcher.take() {
            let _ = dispatcher.await;
        }
        let _ = self.stop.send(true);
        let wait = DRAIN_DEADLINE + Duration::from_secs(1);
        for lane in tasks.lanes.drain(..) {
            let abort = lane.abort_handle();
            if tokio::time::timeout(wait, lane).await.is_err() {
                tracing::warn!("a transport did not stop in time; what it owes stays pending");
                abort.abort();
            }
        }
        // The acker ends after writing what it holds, once no lane has it.
        drop(tasks.acks.take());
        if let Some(acker) = tasks.acker.take() {
            let _ = acker.await;
        }
        if let Err(err) = self.store.release_outbox(&self.owner).await {
            tracing::warn!(%err, "releasing the outbox leases failed; they run out by themselves");
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // An engine dropped without a shutdown: lanes drain and end.
        if let Some(sink) = lock(&self.sink).take() {
            self.store.remove_commit_sink(sink);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each route's store key, made unique (`#2`, `#3` … for repeats); `None`
/// for live-only transports.
fn durable_keys(routes: &[Route]) -> Vec<Option<String>> {
    let mut seen: Vec<String> = Vec::new();
    routes
        .iter()
        .map(|route| {
            let key = route.transport.outbox_key()?;
            let mut unique = key.clone();
            let mut n = 1;
            while seen.contains(&unique) {
                n += 1;
                unique = format!("{key}#{n}");
            }
            seen.push(unique.clone());
            Some(unique)
        })
        .collect()
}

/// Encodes each committed event once and offers it to every lane, in
/// commit order; hands stored messages to `after_send`.
async fn dispatch(
    mut committed: mpsc::UnboundedReceiver<Vec<Committed>>,
    inputs: Arc<[LaneInput]>,
    after_send: Option<AfterSend>,
) {
    while let Some(batch) = committed.recv().await {
        for c in batch {
            let event = Arc::new(Event::new(
                c.conversation_id.channel(),
                c.event,
                c.payload(),
            ));
            for input in inputs.iter() {
                input.offer(Item {
                    outbox_id: c.outbox_id,
                    event: event.clone(),
                });
            }
            if c.event == event::NEW_MESSAGE {
                if let Some(hooks) = &after_send {
                    // Bounded: plugins slower than sends for long make
                    // this wait, never memory grow.
                    let _ = hooks.send(event.payload.clone()).await;
                }
            }
        }
    }
}
