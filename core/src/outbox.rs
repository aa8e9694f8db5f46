//! The outbox worker: the one place events written by the store are
//! delivered. It claims pending rows in id order, hands each to every
//! transport, and acknowledges the ones all transports accepted. A row that
//! fails stays pending and holds back the later rows of its conversation
//! (never delivered out of order), while other conversations go on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::domain::ConversationId;
use crate::store::{OutboxItem, Store};
use crate::transport::Transport;

/// Rows claimed per round.
const CLAIM_BATCH: u32 = 500;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long shutdown waits for pending rows to go out.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

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
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(run(store, transports, wake.clone(), stopped));
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

async fn run(
    store: Arc<dyn Store>,
    transports: Arc<[Arc<dyn Transport>]>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
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
        let claimed = match store.claim_outbox(0, CLAIM_BATCH).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(%err, "claiming the outbox failed; retrying");
                if drain_until.is_some() {
                    return;
                }
                wait(&wake, &mut stopped, Some(retry)).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        if claimed.is_empty() {
            if drain_until.is_some() {
                return;
            }
            wait(&wake, &mut stopped, None).await;
            continue;
        }
        let all_delivered = deliver_round(&*store, &transports, claimed).await;
        if all_delivered {
            retry = FIRST_RETRY;
        } else {
            if drain_until.is_some() {
                return;
            }
            wait(&wake, &mut stopped, Some(retry)).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}

/// Delivers one claimed batch; returns whether every row went out.
async fn deliver_round(
    store: &dyn Store,
    transports: &[Arc<dyn Transport>],
    claimed: Vec<OutboxItem>,
) -> bool {
    let mut delivered = Vec::with_capacity(claimed.len());
    let mut held_back: HashSet<ConversationId> = HashSet::new();
    for item in claimed {
        if held_back.contains(&item.conversation_id) {
            continue;
        }
        match deliver(transports, &item).await {
            Ok(()) => delivered.push(item.id),
            Err(err) => {
                tracing::warn!(
                    conversation = %item.conversation_id,
                    event = %item.event,
                    %err,
                    "delivery failed; the event stays pending"
                );
                if let Err(e) = store.fail_outbox(item.id, &err.to_string()).await {
                    tracing::warn!(%e, "recording the failed delivery failed");
                }
                held_back.insert(item.conversation_id);
            }
        }
    }
    if let Err(err) = store.ack_outbox(&delivered).await {
        // The events went out; they will go out again (at-least-once).
        tracing::warn!(%err, "acknowledging deliveries failed");
        return false;
    }
    held_back.is_empty()
}

async fn deliver(transports: &[Arc<dyn Transport>], item: &OutboxItem) -> crate::Result<()> {
    let channel = item.conversation_id.channel();
    for transport in transports {
        transport
            .deliver(&channel, &item.event, item.payload.clone())
            .await?;
    }
    Ok(())
}

async fn wait(wake: &Notify, stopped: &mut watch::Receiver<bool>, timeout: Option<Duration>) {
    let stop = stopped.changed();
    match timeout {
        Some(t) => {
            tokio::select! {
                _ = wake.notified() => {}
                _ = stop => {}
                _ = tokio::time::sleep(t) => {}
            }
        }
        None => {
            tokio::select! {
                _ = wake.notified() => {}
                _ = stop => {}
            }
        }
    }
}
