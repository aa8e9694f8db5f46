//! The outbox worker: the one place events written by the store are
//! delivered. It claims pending rows in id order, hands each to every
//! transport, and acknowledges the ones all transports accepted. A row that
//! a transport could not take stays pending and holds back the later rows
//! of its conversation on that transport (never delivered out of order),
//! while other conversations, and other transports, go on.
//!
//! Rows are leased ([`Store::lease_outbox`]) to this worker's owner id, so
//! engines sharing one store (the nodes of a cluster on one PostgreSQL)
//! deliver each conversation from one node at a time; the worker looks for
//! rows every [`poll_interval`] besides being woken by its own writes, which
//! is how a node takes over the rows of one that died once their lease ran
//! out. On stop it releases its leases.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::domain::ConversationId;
use crate::event::Event;
use crate::store::{OutboxId, OutboxItem, Store};
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
    let mut progress = Progress::default();
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
        let all_delivered = deliver_round(store, transports, claimed, &mut progress).await;
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

/// Which transports already took (or refused for good) each pending row,
/// kept across rounds: a row that one transport could not take is retried
/// on that transport only, and a transport that is down holds back only
/// its own later rows, never another transport's. In memory: after a
/// restart a pending row goes to every transport again (at-least-once).
#[derive(Default)]
struct Progress {
    rows: HashMap<OutboxId, RowProgress>,
}

#[derive(Default)]
struct RowProgress {
    /// Bit `t`: transport `t` accepted the row.
    accepted: u64,
    /// Bit `t`: transport `t` refused it for good.
    refused: u64,
    /// Why, when one did.
    refusal: Option<String>,
}

impl RowProgress {
    fn settled(&self, transport: usize) -> bool {
        // Beyond 64 transports nothing is remembered: they all get it again.
        transport < 64 && (self.accepted | self.refused) & (1 << transport) != 0
    }

    fn record(&mut self, transport: usize, refused: bool) {
        if transport < 64 {
            let bit = 1 << transport;
            if refused {
                self.refused |= bit;
            } else {
                self.accepted |= bit;
            }
        }
    }
}

/// Hands one claimed batch to every transport, each in order and each
/// holding back a conversation only behind its own failures; returns
/// whether every row is settled (delivered or refused for good).
async fn deliver_round(
    store: &dyn Store,
    transports: &[Arc<dyn Transport>],
    claimed: Vec<OutboxItem>,
    progress: &mut Progress,
) -> bool {
    // Rows no longer claimed (delivered, or leased elsewhere) are forgotten.
    let ids: HashSet<OutboxId> = claimed.iter().map(|item| item.id).collect();
    progress.rows.retain(|id, _| ids.contains(id));
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
    // The last retryable error of each row still pending after this round.
    let mut errors: Vec<Option<crate::Error>> = claimed.iter().map(|_| None).collect();
    let mut pending = vec![false; claimed.len()];
    for (t, transport) in transports.iter().enumerate() {
        // This transport's rows behind one it has not taken wait.
        let mut blocked: HashSet<&ConversationId> = HashSet::new();
        let mut indexes = Vec::with_capacity(claimed.len());
        for (i, item) in claimed.iter().enumerate() {
            let row = progress.rows.entry(item.id).or_default();
            if row.settled(t) {
                continue;
            }
            if blocked.contains(&item.conversation_id) {
                pending[i] = true;
            } else {
                indexes.push(i);
            }
        }
        if indexes.is_empty() {
            continue;
        }
        let batch: Vec<Event> = indexes.iter().map(|&i| events[i].clone()).collect();
        let results = transport.deliver_batch(&batch).await;
        for (&i, result) in indexes.iter().zip(results) {
            let row = progress.rows.entry(claimed[i].id).or_default();
            match result {
                Ok(()) => row.record(t, false),
                Err(err) if err.is_permanent() => {
                    row.record(t, true);
                    row.refusal.get_or_insert_with(|| err.to_string());
                }
                Err(err) => {
                    blocked.insert(&claimed[i].conversation_id);
                    pending[i] = true;
                    errors[i] = Some(err);
                }
            }
        }
    }
    let mut done = Vec::with_capacity(claimed.len());
    let mut all_out = true;
    for (i, item) in claimed.iter().enumerate() {
        if pending[i] {
            all_out = false;
            // Held back behind an earlier row: nothing to record.
            let Some(err) = errors[i].take() else {
                continue;
            };
            tracing::warn!(
                conversation = %item.conversation_id,
                event = %item.event,
                %err,
                "delivery failed; the event stays pending"
            );
            if let Err(e) = store.fail_outbox(item.id, &err.to_string(), false).await {
                tracing::warn!(%e, "recording the failed delivery failed");
            }
            continue;
        }
        match progress
            .rows
            .get(&item.id)
            .and_then(|r| r.refusal.as_deref())
        {
            None => done.push(item.id),
            Some(reason) => {
                tracing::warn!(
                    conversation = %item.conversation_id,
                    event = %item.event,
                    reason,
                    "a transport refused the event for good; it stays in the outbox, not retried"
                );
                if let Err(e) = store.fail_outbox(item.id, reason, true).await {
                    tracing::warn!(%e, "recording the refused delivery failed");
                }
            }
        }
    }
    if let Err(err) = store.ack_outbox(&done).await {
        // The events went out; they will go out again (at-least-once).
        tracing::warn!(%err, "acknowledging deliveries failed");
        return false;
    }
    // Gone from the store: a backend may give a later row the same id
    // (SQLite reuses the highest one), which must start afresh.
    for id in &done {
        progress.rows.remove(id);
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
