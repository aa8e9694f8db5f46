//! Batched acknowledgements: what durable transports took reaches the store
//! in one write per batch, not one per event.
//!
//! Lanes hand over `(slot, outbox id)` pairs as they deliver; the acker
//! waits [`ACK_LINGER`] after the first of a batch (or until [`ACK_BATCH`]
//! are in), then writes each slot's ids with one [`Store::ack_outbox`]. A
//! lane about to read the store (recovery) flushes first, so it never reads
//! back a row it already delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::{OutboxId, Store, TransportSlot};

/// Longest a delivered event waits for its acknowledgement to be written.
pub(crate) const ACK_LINGER: Duration = Duration::from_millis(10);
/// Acknowledgements written at once at most.
const ACK_BATCH: usize = 4096;

enum AckMsg {
    Ack(TransportSlot, OutboxId),
    /// Answered once everything handed over before it is written.
    Flush(oneshot::Sender<()>),
}

/// Hands acknowledgements to the acker task; cloning shares the task.
#[derive(Clone)]
pub(crate) struct Acks {
    queue: mpsc::UnboundedSender<AckMsg>,
}

impl Acks {
    /// Starts the acker; it ends (after writing what it holds) once every
    /// [`Acks`] is dropped.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        store: Arc<dyn Store>,
    ) -> (Acks, JoinHandle<()>) {
        // Unbounded: at most what lanes deliver in one linger.
        let (queue, receiver) = mpsc::unbounded_channel();
        let task = runtime.spawn(run(store, receiver));
        (Acks { queue }, task)
    }

    pub(crate) fn ack(&self, slot: TransportSlot, id: OutboxId) {
        // A stopped acker: the row stays pending and is delivered again.
        let _ = self.queue.send(AckMsg::Ack(slot, id));
    }

    /// Waits until every acknowledgement handed over so far is written.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(AckMsg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Arc<dyn Store>, mut receiver: mpsc::UnboundedReceiver<AckMsg>) {
    let mut pending: BTreeMap<TransportSlot, Vec<OutboxId>> = BTreeMap::new();
    let mut count = 0;
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let deadline = tokio::time::Instant::now() + ACK_LINGER;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(AckMsg::Ack(slot, id)) => {
                    pending.entry(slot).or_default().push(id);
                    count += 1;
                }
                Some(AckMsg::Flush(done)) => {
                    waiting.push(done);
                    break;
                }
                None => {}
            }
            if count >= ACK_BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(msg)) => next = Some(msg),
                Ok(None) | Err(_) => break,
            }
        }
        for (slot, ids) in std::mem::take(&mut pending) {
            if let Err(err) = store.ack_outbox(slot, &ids).await {
                // The events went out; they will go out again (at-least-once).
                tracing::warn!(%err, count = ids.len(), "writing delivery acknowledgements failed");
            }
        }
        count = 0;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
