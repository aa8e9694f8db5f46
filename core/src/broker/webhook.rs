//! Webhooks: the [`HookEvent`]s a hub emits, and
//! the sender that POSTs them to an app's webhook URLs.
//!
//! Per app with webhooks, one collector task takes the hub's events,
//! delays `channel_vacated`/`member_removed` by [`LEAVE_DELAY`] (dropping
//! them, and the matching `channel_occupied`/`member_added`, when the
//! channel or member comes back meanwhile), batches them when the app asks
//! for it, and encodes and signs each request body once. Per URL, one
//! delivery task sends the bodies in order, retrying a failed one with
//! exponential back-off for up to [`RETRY_FOR`] after it was made; a URL
//! that falls behind keeps at most [`MAX_BUFFERED_EVENTS`] events, dropping
//! the oldest with a warning.
//!
//! The tasks hold no strong reference to the app: when the hub is dropped
//! (the server shut down), the collector sends what it still holds, the
//! delivery tasks try each remaining body once within [`SHUTDOWN_GRACE`],
//! and all of them end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::app::App;
use super::Broker;
use crate::signature;

/// One webhook event, as the `events` array of a webhook body holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum HookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

/// How long `channel_vacated` and `member_removed` wait for a comeback.
pub const LEAVE_DELAY: Duration = Duration::from_secs(3);
/// With batching: the longest an event waits for others...
pub const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// ...and the most events one request carries.
pub const BATCH_MAX_EVENTS: usize = 20;
/// How long a receiver has to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a failed request is retried, counted from its creation (the
/// Python SDK refuses a `time_ms` older than 300 s anyway).
pub const RETRY_FOR: Duration = Duration::from_secs(300);
/// The first wait before a retry; it doubles up to [`MAX_RETRY_INTERVAL`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Events kept per URL while it is slow or down.
pub const MAX_BUFFERED_EVENTS: usize = 10_000;
/// After shutdown, how long the delivery tasks keep sending what is left.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Starts the webhook tasks of every app that has webhooks.
pub fn start_all(broker: &Broker, handle: &Handle) {
    for app in broker.apps.iter() {
        start(app, handle);
    }
}

/// Starts the webhook tasks of one app (nothing when it has no webhooks):
/// the hub's events go to them from now on.
pub fn start(app: &Arc<App>, handle: &Handle) {
    let config = &app.config;
    if config.webhooks.is_empty() {
        return;
    }
    let urls: Vec<reqwest::Url> = config
        .webhooks
        .iter()
        .filter_map(|text| match reqwest::Url::parse(text) {
            Ok(url) if url.scheme() == "http" => Some(url),
            Ok(url) => {
                tracing::error!(
                    app = %config.id,
                    url = %text,
                    "webhook URL {text:?} is skipped: scheme {:?} is not supported (only http)",
                    url.scheme()
                );
                None
            }
            Err(e) => {
                tracing::error!(
                    app = %config.id,
                    url = %text,
                    "webhook URL {text:?} is skipped: {e}"
                );
                None
            }
        })
        .collect();
    if urls.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(app = %config.id, "webhooks are off: cannot build an HTTP client: {e}");
            return;
        }
    };
    let (sender, events) = mpsc::unbounded_channel();
    app.hub.set_hooks(sender);
    let queues: Vec<Arc<Queue>> = urls
        .into_iter()
        .map(|url| {
            let queue = Arc::new(Queue::new());
            let delivery = Delivery {
                app_id: config.id.clone(),
                key: config.key.clone(),
                url,
                client: client.clone(),
                queue: queue.clone(),
            };
            handle.spawn(delivery.run());
            queue
        })
        .collect();
    // In a cluster the leave delay is kept in Redis (by the cluster adapter).
    let collector = Collector::new(config.webhook_batching, !app.hub.is_clustered());
    handle.spawn(collect(
        events,
        collector,
        Arc::downgrade(app),
        config.secret.clone(),
        queues,
    ));
    tracing::debug!(app = %config.id, urls = config.webhooks.len(), "webhooks started");
}

/// The hub's events in, encoded request bodies out to every URL's queue.
async fn collect(
    mut events: mpsc::UnboundedReceiver<HookEvent>,
    mut collector: Collector,
    app: Weak<App>,
    secret: String,
    queues: Vec<Arc<Queue>>,
) {
    let mut ready = Vec::new();
    let enqueue = |ready: &mut Vec<Vec<HookEvent>>| {
        for batch in ready.drain(..) {
            if let Some(payload) = Payload::new(&secret, &batch) {
                let payload = Arc::new(payload);
                for queue in &queues {
                    queue.push(payload.clone());
                }
            }
        }
    };
    loop {
        let deadline = collector.next_deadline();
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => collector.push(event, Instant::now(), &mut ready),
                None => break,
            },
            () = sleep_until(deadline) => {
                let app = app.upgrade();
                collector.tick(Instant::now(), |e| still_gone(app.as_deref(), e), &mut ready);
            }
        }
        enqueue(&mut ready);
    }
    collector.finish(&mut ready);
    enqueue(&mut ready);
    for queue in &queues {
        queue.close();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Whether a delayed leave still holds: the channel is still empty, the
/// user still absent (an app that is gone has no one left).
fn still_gone(app: Option<&App>, event: &HookEvent) -> bool {
    let Some(app) = app else { return true };
    match event {
        HookEvent::ChannelVacated { channel } => app.hub.channel_info(channel).is_none(),
        HookEvent::MemberRemoved { channel, user_id } => {
            !app.hub.presence_users(channel).contains(user_id)
        }
        _ => true,
    }
}

/// What a leave event waits on: a channel, or a member of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Presence {
    Channel(String),
    Member(String, String),
}

fn leave_of(event: &HookEvent) -> Option<Presence> {
    match event {
        HookEvent::ChannelVacated { channel } => Some(Presence::Channel(channel.clone())),
        HookEvent::MemberRemoved { channel, user_id } => {
            Some(Presence::Member(channel.clone(), user_id.clone()))
        }
        _ => None,
    }
}

fn join_of(event: &HookEvent) -> Option<Presence> {
    match event {
        HookEvent::ChannelOccupied { channel } => Some(Presence::Channel(channel.clone())),
        HookEvent::MemberAdded { channel, user_id } => {
            Some(Presence::Member(channel.clone(), user_id.clone()))
        }
        _ => None,
    }
}

/// Delays, suppression and batching, without I/O: events in, the event
/// lists of requests out.
struct Collector {
    batching: bool,
    /// Hold leaves for [`LEAVE_DELAY`] (a single node; a cluster has done so).
    delay_leaves: bool,
    batch: Vec<HookEvent>,
    batch_due: Option<Instant>,
    /// Leaves waiting out [`LEAVE_DELAY`], oldest first.
    delayed: VecDeque<(Instant, HookEvent)>,
    /// How many delayed leaves each channel or member has.
    pending: HashMap<Presence, usize>,
}

impl Collector {
    fn new(batching: bool, delay_leaves: bool) -> Collector {
        Collector {
            batching,
            delay_leaves,
            batch: Vec::new(),
            batch_due: None,
            delayed: VecDeque::new(),
            pending: HashMap::new(),
        }
    }

    fn push(&mut self, event: HookEvent, now: Instant, ready: &mut Vec<Vec<HookEvent>>) {
        if !self.delay_leaves {
            return self.emit(event, now, ready);
        }
        if let Some(leave) = leave_of(&event) {
            *self.pending.entry(leave).or_default() += 1;
            self.delayed.push_back((now + LEAVE_DELAY, event));
            return;
        }
        if let Some(join) = join_of(&event) {
            if self.pending.remove(&join).is_some() {
                // Back within the delay: neither the leave nor the join is told.
                self.delayed
                    .retain(|(_, e)| leave_of(e).as_ref() != Some(&join));
                tracing::debug!(?join, "left and came back within the delay: no webhook");
                return;
            }
        }
        self.emit(event, now, ready);
    }

    fn emit(&mut self, event: HookEvent, now: Instant, ready: &mut Vec<Vec<HookEvent>>) {
        if !self.batching {
            ready.push(vec![event]);
            return;
        }
        if self.batch.is_empty() {
            self.batch_due = Some(now + BATCH_WINDOW);
        }
        self.batch.push(event);
        if self.batch.len() >= BATCH_MAX_EVENTS {
            self.flush(ready);
        }
    }

    fn flush(&mut self, ready: &mut Vec<Vec<HookEvent>>) {
        self.batch_due = None;
        if !self.batch.is_empty() {
            ready.push(std::mem::take(&mut self.batch));
        }
    }

    /// Releases the leaves that are due (if `still_gone` confirms them)
    /// and a batch whose window is over.
    fn tick(
        &mut self,
        now: Instant,
        still_gone: impl Fn(&HookEvent) -> bool,
        ready: &mut Vec<Vec<HookEvent>>,
    ) {
        while self.delayed.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, event)) = self.delayed.pop_front() else {
                break;
            };
            if let Some(leave) = leave_of(&event) {
                if let Some(count) = self.pending.get_mut(&leave) {
                    *count -= 1;
                    if *count == 0 {
                        self.pending.remove(&leave);
                    }
                }
            }
            if still_gone(&event) {
                self.emit(event, now, ready);
            } else {
                tracing::debug!(?event, "came back within the delay: no webhook");
            }
        }
        if self.batch_due.is_some_and(|due| due <= now) {
            self.flush(ready);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let leave = self.delayed.front().map(|(due, _)| *due);
        match (leave, self.batch_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Releases everything at once (shutdown).
    fn finish(&mut self, ready: &mut Vec<Vec<HookEvent>>) {
        let now = Instant::now();
        self.pending.clear();
        while let Some((_, event)) = self.delayed.pop_front() {
            self.emit(event, now, ready);
        }
        self.flush(ready);
    }
}

/// One encoded, signed request body, shared by every URL.
struct Payload {
    body: Bytes,
    signature: String,
    events: usize,
    created: Instant,
}

#[derive(Serialize)]
struct Body<'a> {
    time_ms: u64,
    events: &'a [HookEvent],
}

impl Payload {
    fn new(secret: &str, events: &[HookEvent]) -> Option<Payload> {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match serde_json::to_vec(&Body { time_ms, events }) {
            Ok(body) => Some(Payload {
                signature: signature::webhook_signature(secret, &body),
                body: Bytes::from(body),
                events: events.len(),
                created: Instant::now(),
            }),
            Err(e) => {
                tracing::error!("cannot encode webhook events {events:?}: {e}");
                None
            }
        }
    }
}

/// The bodies waiting for one URL.
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the delivery task for a new body or the close.
    ready: Notify,
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct QueueState {
    payloads: VecDeque<Arc<Payload>>,
    events: usize,
    closed: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            closed: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a body, dropping the oldest beyond [`MAX_BUFFERED_EVENTS`].
    fn push(&self, payload: Arc<Payload>) {
        let dropped = {
            let mut state = self.lock();
            state.events += payload.events;
            state.payloads.push_back(payload);
            let mut dropped = 0;
            while state.events > MAX_BUFFERED_EVENTS && state.payloads.len() > 1 {
                if let Some(old) = state.payloads.pop_front() {
                    state.events -= old.events;
                    dropped += old.events;
                }
            }
            dropped
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "webhook receiver is behind by more than {MAX_BUFFERED_EVENTS} events; dropped the oldest"
            );
        }
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.closed.send_replace(true);
        self.ready.notify_one();
    }

    /// The next body; `None` once the queue is closed and empty.
    async fn next(&self) -> Option<Arc<Payload>> {
        loop {
            {
                let mut state = self.lock();
                if let Some(payload) = state.payloads.pop_front() {
                    state.events -= payload.events;
                    return Some(payload);
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

/// Sends one URL's bodies, in order.
struct Delivery {
    app_id: String,
    key: String,
    url: reqwest::Url,
    client: reqwest::Client,
    queue: Arc<Queue>,
}

impl Delivery {
    async fn run(self) {
        let mut closed = self.queue.closed.subscribe();
        let mut closed_at: Option<Instant> = None;
        while let Some(payload) = self.queue.next().await {
            if *closed.borrow() {
                let since = *closed_at.get_or_insert_with(Instant::now);
                if since.elapsed() > SHUTDOWN_GRACE {
                    tracing::warn!(
                        app = %self.app_id,
                        url = %self.url,
                        "shutting down: webhook events left undelivered"
                    );
                    break;
                }
            }
            self.deliver(&payload, &mut closed).await;
        }
    }

    /// POSTs a body until it is accepted, retrying with back-off; after
    /// shutdown began, tries once more only.
    async fn deliver(&self, payload: &Payload, closed: &mut watch::Receiver<bool>) {
        let mut wait = FIRST_RETRY;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let reason = match self.post(payload).await {
                Ok(()) => return,
                Err(reason) => reason,
            };
            let give_up_at = payload.created + RETRY_FOR;
            if *closed.borrow() || Instant::now() + wait > give_up_at {
                tracing::warn!(
                    app = %self.app_id,
                    url = %self.url,
                    attempts,
                    events = payload.events,
                    "webhook not delivered, giving up: {reason}"
                );
                return;
            }
            tracing::debug!(
                app = %self.app_id,
                url = %self.url,
                attempts,
                "webhook failed ({reason}); retrying in {wait:?}"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = closed.wait_for(|c| *c) => {}
            }
            // Up to a quarter more, so that retries of many apps spread out.
            let jitter = wait.mul_f64(rand::random::<f64>() / 4.0);
            wait = (wait * 2).min(MAX_RETRY_INTERVAL) + jitter;
        }
    }

    async fn post(&self, payload: &Payload) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Pusher-Key", &self.key)
            .header("X-Pusher-Signature", &payload.signature)
            .body(payload.body.clone())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vacated(c: &str) -> HookEvent {
        HookEvent::ChannelVacated { channel: c.into() }
    }
    fn occupied(c: &str) -> HookEvent {
        HookEvent::ChannelOccupied { channel: c.into() }
    }
    fn removed(c: &str, u: &str) -> HookEvent {
        HookEvent::MemberRemoved {
            channel: c.into(),
            user_id: u.into(),
        }
    }
    fn added(c: &str, u: &str) -> HookEvent {
        HookEvent::MemberAdded {
            channel: c.into(),
            user_id: u.into(),
        }
    }

    #[test]
    fn serializes_like_pusher() {
        let body = serde_json::to_string(&Body {
            time_ms: 1327078148132,
            events: &[occupied("test_channel")],
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#
        );
    }

    #[test]
    fn leaves_wait_and_comebacks_cancel_both() {
        let t0 = Instant::now();
        let mut c = Collector::new(false, true);
        let mut ready = Vec::new();
        c.push(occupied("a"), t0, &mut ready);
        assert_eq!(ready, vec![vec![occupied("a")]]);
        ready.clear();
        c.push(removed("p", "1"), t0, &mut ready);
        c.push(vacated("a"), t0, &mut ready);
        c.push(vacated("p"), t0, &mut ready);
        assert!(ready.is_empty());
        assert_eq!(c.next_deadline(), Some(t0 + LEAVE_DELAY));
        // "a" comes back: neither its vacate nor its occupy is told.
        c.push(occupied("a"), t0 + Duration::from_secs(1), &mut ready);
        assert!(ready.is_empty());
        c.tick(t0 + Duration::from_secs(2), |_| true, &mut ready);
        assert!(ready.is_empty());
        c.tick(t0 + LEAVE_DELAY, |_| true, &mut ready);
        assert_eq!(ready, vec![vec![removed("p", "1")], vec![vacated("p")]]);
        assert_eq!(c.next_deadline(), None);
        // A join after the leave was told is told too.
        ready.clear();
        c.push(added("p", "1"), t0 + LEAVE_DELAY, &mut ready);
        assert_eq!(ready, vec![vec![added("p", "1")]]);
    }

    #[test]
    fn the_hub_has_the_last_word() {
        let t0 = Instant::now();
        let mut c = Collector::new(false, true);
        let mut ready = Vec::new();
        c.push(vacated("a"), t0, &mut ready);
        c.push(vacated("b"), t0, &mut ready);
        c.tick(t0 + LEAVE_DELAY, |e| e == &vacated("b"), &mut ready);
        assert_eq!(ready, vec![vec![vacated("b")]]);
    }

    #[test]
    fn batches_by_count_and_window() {
        let t0 = Instant::now();
        let mut c = Collector::new(true, true);
        let mut ready = Vec::new();
        for i in 0..25 {
            c.push(occupied(&format!("c{i}")), t0, &mut ready);
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].len(), BATCH_MAX_EVENTS);
        assert_eq!(c.next_deadline(), Some(t0 + BATCH_WINDOW));
        c.tick(t0 + BATCH_WINDOW / 2, |_| true, &mut ready);
        assert_eq!(ready.len(), 1);
        c.tick(t0 + BATCH_WINDOW, |_| true, &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[1].len(), 5);
        c.push(vacated("x"), t0, &mut ready);
        c.finish(&mut ready);
        assert_eq!(ready[2], vec![vacated("x")]);
    }

    #[test]
    fn full_queues_drop_the_oldest() {
        let q = Queue::new();
        let payload = |n| {
            Arc::new(Payload {
                body: Bytes::new(),
                signature: String::new(),
                events: n,
                created: Instant::now(),
            })
        };
        q.push(payload(MAX_BUFFERED_EVENTS));
        q.push(payload(1));
        let state = q.lock();
        assert_eq!(state.payloads.len(), 1);
        assert_eq!(state.events, 1);
    }
}
