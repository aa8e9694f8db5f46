//! One transport's lane: its own bounded queue and task, so a transport
//! that is slow, down or hung holds back only itself.
//!
//! Live events come from memory in commit order. A call that fails with a
//! retryable error holds back that event and the later ones of its channel
//! (order per conversation is kept) while other channels go on; they are
//! retried with exponential backoff. A durable lane (the transport has an
//! [`outbox_key`](crate::transport::Transport::outbox_key)) that cannot keep
//! up, a queue that overflowed or more held events than [`HELD_LIMIT`],
//! drops what it holds and recovers from the store instead ([`Lane::recover`]),
//! in id order per conversation, exactly what it did not take.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::acks::Acks;
use crate::event::Event;
use crate::store::{LeaseRequest, OutboxId, OutboxItem, Store, TransportSlot};
use crate::transport::Transport;

/// Events a lane's queue holds before the lane falls back on the store.
pub(crate) const QUEUE_CAPACITY: usize = 16 * 1024;
/// Events held back behind failures before the lane falls back on the store.
pub(crate) const HELD_LIMIT: usize = 16 * 1024;
/// Rows read back from the store per recovery round.
const RECOVERY_BATCH: u32 = 500;
/// Failed events whose attempt is written to the store per round (the
/// rest are retried all the same).
const FAILURES_RECORDED: usize = 64;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One event on its way through a lane.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Its outbox row, when it has one (stored events with a durable
    /// transport registered); `None`: best effort, never retried.
    pub outbox_id: Option<OutboxId>,
    pub event: Arc<Event>,
}

/// The sending side of a lane, where the dispatcher offers events.
pub(crate) struct LaneInput {
    name: String,
    queue: mpsc::Sender<Item>,
    /// Set when a durable lane lost events from memory: it recovers them
    /// from the store.
    lagged: Arc<AtomicBool>,
    durable: bool,
    /// Which events that are not stored this lane takes.
    pub takes: super::Takes,
}

impl LaneInput {
    /// Queues an event without waiting. A full queue marks a durable lane
    /// lagged (the store has the event); elsewhere the event is dropped.
    pub(crate) fn offer(&self, item: Item) {
        match self.queue.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                if self.durable && item.outbox_id.is_some() {
                    if !self.lagged.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            transport = %self.name,
                            "the transport fell behind its queue; it catches up from the store"
                        );
                    }
                } else {
                    tracing::warn!(
                        transport = %self.name,
                        channel = %item.event.channel,
                        event = %item.event.name,
                        "the transport's queue is full; the event is dropped for it"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// What a lane needs besides its transport.
pub(crate) struct LaneContext {
    pub store: Arc<dyn Store>,
    pub acks: Acks,
    pub owner: Arc<str>,
    pub lease: Duration,
    /// How often an idle durable lane looks for rows no live engine
    /// delivers (a node that died, another process).
    pub scan_every: Duration,
    pub drain_deadline: Duration,
}

/// The task side of a lane.
pub(crate) struct Lane {
    transport: Arc<dyn Transport>,
    slot: Option<TransportSlot>,
    queue: mpsc::Receiver<Item>,
    lagged: Arc<AtomicBool>,
    context: Arc<LaneContext>,
    /// Events held back behind a failure, in order, and their channels.
    held: Vec<Item>,
    held_channels: HashSet<String>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Live events at or below this id were delivered by a recovery.
    recovered_upto: OutboxId,
}

/// Why a delivery round stopped short.
struct Failed;

impl Lane {
    /// A lane for `transport`; `slot` is its place in the store's registry
    /// when it is durable.
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        slot: Option<TransportSlot>,
        context: Arc<LaneContext>,
        takes: super::Takes,
    ) -> (LaneInput, Lane) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        // A durable lane starts by delivering what was left from before.
        let lagged = Arc::new(AtomicBool::new(slot.is_some()));
        let input = LaneInput {
            name: transport.name().to_owned(),
            queue,
            lagged: lagged.clone(),
            durable: slot.is_some(),
            takes,
        };
        let lane = Lane {
            transport,
            slot,
            queue: receiver,
            lagged,
            context,
            held: Vec::new(),
            held_channels: HashSet::new(),
            retry_at: None,
            backoff: FIRST_RETRY,
            recovered_upto: 0,
        };
        (input, lane)
    }

    /// Delivers until stopped, then drains what it holds (until the drain
    /// deadline) and, when durable, what the store still has for it.
    pub(crate) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut scan = tokio::time::interval(self.context.scan_every);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        scan.reset();
        let mut batch = Vec::with_capacity(self.transport.max_batch());
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_none() && (*stopped.borrow() || stopped.has_changed().is_err()) {
                drain_until = Some(Instant::now() + self.context.drain_deadline);
            }
            if let Some(deadline) = drain_until {
                self.drain(deadline).await;
                return;
            }
            if self.slot.is_some() && self.lagged.swap(false, Ordering::AcqRel) {
                self.catch_up(&mut stopped).await;
                continue;
            }
            let capacity = self.transport.max_batch().max(1);
            let retry_at = self.retry_at;
            tokio::select! {
                n = self.queue.recv_many(&mut batch, capacity), if self.held.len() < HELD_LIMIT => {
                    if n == 0 {
                        // Every input is gone (the engine was dropped).
                        drain_until = Some(Instant::now() + self.context.drain_deadline);
                        continue;
                    }
                    let ready = self.sort(std::mem::take(&mut batch));
                    self.deliver(ready).await;
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    self.retry_at = None;
                    let ready = std::mem::take(&mut self.held);
                    self.held_channels.clear();
                    self.deliver(ready).await;
                }
                _ = scan.tick(), if self.slot.is_some() && self.held.is_empty() => {
                    // Only rows older than a lease: younger ones are some
                    // live engine's, delivered from its memory.
                    let min_age = self.context.lease;
                    let _ = self.recover(min_age, None).await;
                }
                _ = stopped.changed() => {}
            }
            if self.held.len() >= HELD_LIMIT {
                self.overflow();
            }
        }
    }

    /// Splits fresh events into those to deliver now and those that wait
    /// behind a held event of their channel.
    fn sort(&mut self, items: Vec<Item>) -> Vec<Item> {
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            if item
                .outbox_id
                .is_some_and(|id| id <= self.recovered_upto && self.slot.is_some())
            {
                continue;
            }
            if self.held_channels.contains(&item.event.channel) {
                self.held.push(item);
            } else {
                ready.push(item);
            }
        }
        ready
    }

    /// Too much held back: a durable lane lets the store carry it.
    fn overflow(&mut self) {
        if self.slot.is_some() {
            tracing::warn!(
                transport = self.transport.name(),
                held = self.held.len(),
                "the transport is failing; it catches up from the store when it answers"
            );
            self.lagged.store(true, Ordering::Release);
        } else {
            tracing::warn!(
                transport = self.transport.name(),
                dropped = self.held.len(),
                "the transport is failing; its held-back events are dropped"
            );
        }
        self.held.clear();
        self.held_channels.clear();
        self.retry_at = None;
    }

    /// Hands events over in calls of at most `max_batch`, each bounded by
    /// the transport's call timeout. Taken events are acknowledged; events
    /// refused for good are recorded; the rest are held back by channel.
    async fn deliver(&mut self, ready: Vec<Item>) {
        if ready.is_empty() {
            return;
        }
        let mut failed = 0;
        let max = self.transport.max_batch().max(1);
        for chunk in ready.chunks(max) {
            // A channel that failed earlier in this round waits: nothing of
            // it may overtake the held event.
            let (send, behind): (Vec<&Item>, Vec<&Item>) = chunk
                .iter()
                .partition(|i| !self.held_channels.contains(&i.event.channel));
            self.held.extend(behind.into_iter().cloned());
            if send.is_empty() {
                continue;
            }
            let events: Vec<Arc<Event>> = send.iter().map(|i| i.event.clone()).collect();
            let results = self.call(&events).await;
            for (item, result) in send.into_iter().zip(results) {
                match (result, self.slot, item.outbox_id) {
                    (Ok(()), Some(slot), Some(id)) => self.context.acks.ack(slot, id),
                    (Ok(()), _, _) => {}
                    (Err(err), slot, id) if err.is_permanent() => {
                        self.refuse(slot, id, &item.event, &err.to_string()).await;
                    }
                    (Err(err), _, None) => {
                        tracing::debug!(
                            transport = self.transport.name(),
                            channel = %item.event.channel,
                            event = %item.event.name,
                            %err,
                            "a best-effort event was not delivered"
                        );
                    }
                    (Err(err), slot, Some(id)) => {
                        if failed == 0 {
                            tracing::warn!(
                                transport = self.transport.name(),
                                channel = %item.event.channel,
                                event = %item.event.name,
                                %err,
                                "delivery failed; the event stays pending and is retried"
                            );
                        }
                        if failed < FAILURES_RECORDED {
                            self.record_failure(slot, id, &err.to_string());
                        }
                        failed += 1;
                        self.held_channels.insert(item.event.channel.clone());
                        self.held.push(item.clone());
                    }
                }
            }
        }
        let failed = failed > 0;
        if failed {
            if self.retry_at.is_none() {
                self.retry_at = Some(Instant::now() + self.backoff);
            }
            self.backoff = (self.backoff * 2).min(MAX_RETRY);
        } else if self.held.is_empty() {
            self.backoff = FIRST_RETRY;
        }
    }

    /// One bounded call; a timeout fails every event of it (retryable).
    async fn call(&self, events: &[Arc<Event>]) -> Vec<crate::Result<()>> {
        let limit = self.transport.call_timeout();
        match tokio::time::timeout(limit, self.transport.deliver_batch(events)).await {
            Ok(mut results) => {
                // A transport that answers short: the rest did not go.
                results.resize_with(events.len(), || {
                    Err(crate::Error::transport(
                        self.transport.name(),
                        "no result for this event",
                    ))
                });
                results
            }
            Err(_) => events
                .iter()
                .map(|_| {
                    Err(crate::Error::transport(
                        self.transport.name(),
                        format!("no answer within {} ms", limit.as_millis()),
                    ))
                })
                .collect(),
        }
    }

    /// Counts the attempt on the row, with the error (`tidings outbox`).
    fn record_failure(&self, slot: Option<TransportSlot>, id: OutboxId, error: &str) {
        if let Some(slot) = slot {
            let store = self.context.store.clone();
            let error = error.to_owned();
            tokio::spawn(async move {
                if let Err(e) = store.fail_outbox(slot, id, &error, false).await {
                    tracing::warn!(%e, "recording the failed delivery failed");
                }
            });
        }
    }

    async fn refuse(
        &self,
        slot: Option<TransportSlot>,
        id: Option<OutboxId>,
        event: &Event,
        reason: &str,
    ) {
        tracing::warn!(
            transport = self.transport.name(),
            channel = %event.channel,
            event = %event.name,
            reason,
            "the transport refused the event for good; it stays in the outbox, not retried"
        );
        if let (Some(slot), Some(id)) = (slot, id) {
            if let Err(e) = self.context.store.fail_outbox(slot, id, reason, true).await {
                tracing::warn!(%e, "recording the refused delivery failed");
            }
        }
    }

    /// Recovers every pending row of this transport from the store, with
    /// backoff while it fails, until caught up or stopped.
    async fn catch_up(&mut self, stopped: &mut watch::Receiver<bool>) {
        // The store has everything held; it is delivered in order from there.
        self.held.clear();
        self.held_channels.clear();
        self.retry_at = None;
        let mut backoff = FIRST_RETRY;
        loop {
            match self.recover(Duration::ZERO, None).await {
                Ok(upto) => {
                    self.recovered_upto = self.recovered_upto.max(upto);
                    return;
                }
                Err(Failed) => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => {
                            // Stopping: the drain tries once more.
                            self.lagged.store(true, Ordering::Release);
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Leases and delivers this transport's pending rows (queued at least
    /// `min_age` ago), in id order, round after round until none is left;
    /// returns the highest id delivered. Stops at the first round with a
    /// retryable failure (the rows stay pending, leased to this engine).
    async fn recover(
        &mut self,
        min_age: Duration,
        deadline: Option<Instant>,
    ) -> Result<OutboxId, Failed> {
        let Some(slot) = self.slot else {
            return Ok(0);
        };
        // Live deliveries reach the store first: none is read back.
        self.context.acks.flush().await;
        let mut upto = 0;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Failed);
            }
            let request = LeaseRequest {
                owner: &self.context.owner,
                slot,
                max: RECOVERY_BATCH,
                lease: self.context.lease,
                min_age,
            };
            let rows = match self.context.store.lease_outbox(request).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(transport = self.transport.name(), %err, "reading the outbox failed; retrying");
                    return Err(Failed);
                }
            };
            let count = rows.len();
            if count == 0 {
                return Ok(upto);
            }
            upto = upto.max(rows.iter().map(|r| r.id).max().unwrap_or(0));
            let delivered = self.deliver_rows(slot, rows).await;
            if let Err(err) = self.context.store.ack_outbox(slot, &delivered.taken).await {
                tracing::warn!(%err, "acknowledging recovered deliveries failed");
                return Err(Failed);
            }
            if delivered.failed {
                return Err(Failed);
            }
            if count < RECOVERY_BATCH as usize {
                return Ok(upto);
            }
        }
    }

    /// Delivers recovered rows in order, holding back a channel behind its
    /// first failure; returns the ids taken.
    async fn deliver_rows(&mut self, slot: TransportSlot, rows: Vec<OutboxItem>) -> Recovered {
        let mut out = Recovered {
            taken: Vec::with_capacity(rows.len()),
            failed: false,
        };
        let mut blocked: HashSet<String> = HashSet::new();
        let items: Vec<(OutboxId, Arc<Event>)> = rows
            .into_iter()
            .map(|row| {
                let event = Event::new(row.conversation_id.channel(), row.event, row.payload);
                (row.id, Arc::new(event))
            })
            .collect();
        let max = self.transport.max_batch().max(1);
        for chunk in items.chunks(max) {
            let events: Vec<Arc<Event>> = chunk
                .iter()
                .filter(|(_, e)| !blocked.contains(&e.channel))
                .map(|(_, e)| e.clone())
                .collect();
            let ids: Vec<OutboxId> = chunk
                .iter()
                .filter(|(_, e)| !blocked.contains(&e.channel))
                .map(|(id, _)| *id)
                .collect();
            if events.is_empty() {
                continue;
            }
            let results = self.call(&events).await;
            for ((id, event), result) in ids.into_iter().zip(&events).zip(results) {
                if blocked.contains(&event.channel) {
                    continue;
                }
                match result {
                    Ok(()) => out.taken.push(id),
                    Err(err) if err.is_permanent() => {
                        self.refuse(Some(slot), Some(id), event, &err.to_string())
                            .await;
                    }
                    Err(err) => {
                        out.failed = true;
                        if blocked.insert(event.channel.clone()) {
                            tracing::warn!(
                                transport = self.transport.name(),
                                channel = %event.channel,
                                event = %event.name,
                                %err,
                                "delivery failed; the event stays pending and is retried"
                            );
                            if let Err(e) = self
                                .context
                                .store
                                .fail_outbox(slot, id, &err.to_string(), false)
                                .await
                            {
                                tracing::warn!(%e, "recording the failed delivery failed");
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Stopping: delivers what the queue and the held list have, then
    /// (durable) one recovery pass for what the store still has, all before
    /// `deadline`.
    async fn drain(&mut self, deadline: Instant) {
        loop {
            let mut batch = Vec::new();
            while let Ok(item) = self.queue.try_recv() {
                batch.push(item);
            }
            let mut ready = std::mem::take(&mut self.held);
            self.held_channels.clear();
            ready.extend(self.sort(batch));
            if ready.is_empty() || Instant::now() >= deadline {
                break;
            }
            let before = ready.len();
            let outcome = tokio::time::timeout_at(deadline, self.deliver(ready)).await;
            if outcome.is_err() || self.held.len() == before {
                // No progress: what is left stays pending for the next start.
                break;
            }
            if !self.held.is_empty() {
                let wait = self
                    .backoff
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(wait).await;
            }
        }
        if self.slot.is_some() {
            let _ = tokio::time::timeout_at(deadline, self.recover(Duration::ZERO, Some(deadline)))
                .await;
            self.context.acks.flush().await;
        }
    }
}

struct Recovered {
    taken: Vec<OutboxId>,
    failed: bool,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
