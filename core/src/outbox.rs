//! The outbox worker: the one place events written by the store are
//! delivered. It claims pending rows in id order, hands each to every
//! transport, and acknowledges the ones all transports accepted. A row that
//! fails stays pending and holds back the later rows of its conversation
//! (never delivered out of order), while other conversations go on.
//!
//! Rows are leased ([`Store::lease_outbox`]) to this worker's owner id, so
//! engines sharing one store (the nodes of a cluster on one PostgreSQL)
//! deliver each conversation from one node at a time; the worker looks for
//! rows every [`poll_interval`] besides being woken by its own writes, which
//! is how a node takes over the rows of one that died once their lease ran
//! out. On stop it releases its leases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::domain::ConversationId;
use crate::event::Event;
use crate::store::{OutboxItem, Store};
use crate::transport::Transport;

/// Rows claimed per round.
const CLAIM_BATCH: u32 = 500;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long shutdown waits for pending rows to go out.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a claimed row stays this worker's unless it says otherwise.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How often a worker looks for rows it was not woken for (rows of other
/// engines whose lease ran out): a quarter of the lease, 250 ms to 5 s.
pub(crate) fn poll_interval(lease: Duration) -> Duration {
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

pub(crate) struct OutboxWorker {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl OutboxWorker {
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        store: Arc<dyn Store>,
        transports: Arc<[Arc<dyn Transport>]>,
        lease: Duration,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let lease = Lease {
            owner: new_owner(),
            length: lease.max(Duration::from_millis(100)),
        };
        let task = runtime.spawn(run(store, transports, lease, wake.clone(), stopped));
        OutboxWorker {
            wake,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// New rows were written.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers what is pending (up to a deadline), then stops.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            if tokio::time::timeout(DRAIN_DEADLINE + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                tracing::warn!(
                    "outbox worker did not stop in time; pending rows stay for the next start"
                );
            }
        }
    }
}

/// Who this worker claims rows as, and for how long.
struct Lease {
    owner: String,
    length: Duration,
}

async fn run(
    store: Arc<dyn Store>,
    transports: Arc<[Arc<dyn Transport>]>,
    lease: Lease,
    wake: Arc<Notify>,
    stopped: watch::Receiver<bool>,
) {
    deliver_until_stopped(&*store, &transports, &lease, &wake, stopped).await;
    if let Err(err) = store.release_outbox(&lease.owner).await {
        tracing::warn!(%err, "releasing the outbox leases failed; they run out by themselves");
    }
}

async fn deliver_until_stopped(
    store: &dyn Store,
    transports: &[Arc<dyn Transport>],
    lease: &Lease,
    wake: &Notify,
    mut stopped: watch::Receiver<bool>,
) {
    let poll = poll_interval(lease.length);
    let mut retry = FIRST_RETRY;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        // A dropped engine (sender gone) stops the worker like a shutdown.
        let stop_requested = *stopped.borrow() || stopped.has_changed().is_err();
        if stop_requested && drain_until.is_none() {
            drain_until = Some(tokio::time::Instant::now() + DRAIN_DEADLINE);
        }
        if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return;
        }
        // Always from the start: delivered rows are gone, so this returns
        // only pending ones, including any committed out of id order.
        let claimed = match store
            .lease_outbox(&lease.owner, CLAIM_BATCH, lease.length)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(%err, "claiming the outbox failed; retrying");
                if drain_until.is_some() {
                    return;
                }
                wait(wake, &mut stopped, retry.min(poll)).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        if claimed.is_empty() {
            if drain_until.is_some() {
                return;
            }
            wait(wake, &mut stopped, poll).await;
            continue;
        }
        let all_delivered = deliver_round(store, transports, claimed).await;
        if all_delivered {
            retry = FIRST_RETRY;
        } else {
            if drain_until.is_some() {
                return;
            }
            // Never past the lease: the rows stay ours while we retry.
            wait(wake, &mut stopped, retry.min(lease.length / 2)).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}

/// Where one claimed row stands in a round.
enum Outcome {
    /// Every transport so far accepted it.
    Accepted,
    /// Not sent: an earlier row of its conversation is not delivered.
    HeldBack,
    Failed(crate::Error),
}

/// Delivers one claimed batch to every transport, in order; returns whether
/// every row went out (or was refused for good).
async fn deliver_round(
    store: &dyn Store,
    transports: &[Arc<dyn Transport>],
    claimed: Vec<OutboxItem>,
) -> bool {
    let events: Vec<Event> = claimed
        .iter()
        .map(|item| {
            Event::new(
                item.conversation_id.channel(),
                item.event.clone(),
                item.payload.clone(),
            )
        })
        .collect();
    let mut outcomes: Vec<Outcome> = claimed.iter().map(|_| Outcome::Accepted).collect();
    for transport in transports {
        // Rows behind an undelivered row of their conversation wait.
        let mut blocked: HashSet<&ConversationId> = HashSet::new();
        let mut indexes = Vec::with_capacity(claimed.len());
        for (i, item) in claimed.iter().enumerate() {
            match &outcomes[i] {
                Outcome::Failed(e) if e.is_permanent() => {}
                Outcome::Failed(_) | Outcome::HeldBack => {
                    blocked.insert(&item.conversation_id);
                }
                Outcome::Accepted if blocked.contains(&item.conversation_id) => {
                    outcomes[i] = Outcome::HeldBack;
                }
                Outcome::Accepted => indexes.push(i),
            }
        }
        if indexes.is_empty() {
            continue;
        }
        let batch: Vec<Event> = indexes.iter().map(|&i| events[i].clone()).collect();
        let results = transport.deliver_batch(&batch).await;
        for (&i, result) in indexes.iter().zip(results) {
            if let Err(err) = result {
                outcomes[i] = Outcome::Failed(err);
            }
        }
    }
    let mut done = Vec::with_capacity(claimed.len());
    let mut all_out = true;
    for (item, outcome) in claimed.iter().zip(outcomes) {
        match outcome {
            Outcome::Accepted => done.push(item.id),
            Outcome::HeldBack => all_out = false,
            Outcome::Failed(err) => {
                let refused = err.is_permanent();
                all_out &= refused;
                if refused {
                    tracing::warn!(
                        conversation = %item.conversation_id,
                        event = %item.event,
                        %err,
                        "a transport refused the event for good; it stays in the outbox, not retried"
                    );
                } else {
                    tracing::warn!(
                        conversation = %item.conversation_id,
                        event = %item.event,
                        %err,
                        "delivery failed; the event stays pending"
                    );
                }
                if let Err(e) = store.fail_outbox(item.id, &err.to_string(), refused).await {
                    tracing::warn!(%e, "recording the failed delivery failed");
                }
            }
        }
    }
    if let Err(err) = store.ack_outbox(&done).await {
        // The events went out; they will go out again (at-least-once).
        tracing::warn!(%err, "acknowledging deliveries failed");
        return false;
    }
    all_out
}

async fn wait(wake: &Notify, stopped: &mut watch::Receiver<bool>, timeout: Duration) {
    tokio::select! {
        _ = wake.notified() => {}
        _ = stopped.changed() => {}
        _ = tokio::time::sleep(timeout) => {}
    }
}
