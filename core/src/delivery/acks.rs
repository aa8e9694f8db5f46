//! Batched acknowledgements: what durable transports took reaches the store
//! in one write per batch, not one per event.
//!
//! Lanes add `(slot, outbox id)` pairs to a shared buffer as they deliver;
//! the acker task wakes once for the first of a batch, waits [`ACK_LINGER`],
//! then writes each slot's ids with one [`Store::ack_outbox`], so a busy
//! engine costs one wake-up and one store write per linger, not per event.
//! A lane about to read the store (recovery) flushes first, so it never
//! reads back a row it already delivered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::store::{OutboxId, Store, TransportSlot};

/// Longest a delivered event waits for its acknowledgement to be written.
pub(crate) const ACK_LINGER: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Buffer {
    ids: BTreeMap<TransportSlot, Vec<OutboxId>>,
    /// Answered once everything added before them is written.
    flushes: Vec<oneshot::Sender<()>>,
    /// No lane is left: write what is here and stop.
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands acknowledgements to the acker task; cloning shares the task.
#[derive(Clone)]
pub(crate) struct Acks {
    shared: Arc<Shared>,
    /// Dropped with the last clone: the acker then writes what it holds and ends.
    _alive: Arc<Closer>,
}

struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

impl Acks {
    /// Starts the acker; it ends (after writing what it holds) once every
    /// [`Acks`] is dropped.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        store: Arc<dyn Store>,
    ) -> (Acks, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            buffer: Mutex::default(),
            wake: Notify::new(),
        });
        let task = runtime.spawn(run(store, shared.clone()));
        let acks = Acks {
            _alive: Arc::new(Closer(shared.clone())),
            shared,
        };
        (acks, task)
    }

    pub(crate) fn ack(&self, slot: TransportSlot, id: OutboxId) {
        let first = {
            let mut buffer = self.shared.lock();
            let first = buffer.ids.is_empty() && buffer.flushes.is_empty();
            buffer.ids.entry(slot).or_default().push(id);
            first
        };
        if first {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every acknowledgement handed over so far is written.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.shared.lock().flushes.push(done);
        self.shared.wake.notify_one();
        // A stopped acker drops the sender: nothing more to wait for.
        let _ = wait.await;
    }
}

async fn run(store: Arc<dyn Store>, shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        let (flush_now, closed) = {
            let buffer = shared.lock();
            (!buffer.flushes.is_empty(), buffer.closed)
        };
        if !flush_now && !closed {
            // Let the batch fill; a flush request cuts the wait short.
            let _ = tokio::time::timeout(ACK_LINGER, shared.wake.notified()).await;
        }
        let (ids, flushes, closed) = {
            let mut buffer = shared.lock();
            (
                std::mem::take(&mut buffer.ids),
                std::mem::take(&mut buffer.flushes),
                buffer.closed,
            )
        };
        for (slot, ids) in ids {
            if let Err(err) = store.ack_outbox(slot, &ids).await {
                // The events went out; they will go out again (at-least-once).
                tracing::warn!(%err, count = ids.len(), "writing delivery acknowledgements failed");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        // What lanes added while this was written has woken the next round.
        if closed {
            return;
        }
    }
}
