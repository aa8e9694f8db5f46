//! One app's channels, subscribers and presence members, and fan-out.
//!
//! A publish encodes its frame once; each subscriber's bounded queue gets a
//! clone of the same bytes. A subscriber whose queue is full is closed with
//! 4100 instead of slowing the others. Locks are std locks held only for
//! map updates and `try_send`s, never across an await.
//!
//! ## Locks
//!
//! Each channel has its own `RwLock`; the map from names to channels has
//! another, held only to find, insert or remove an entry, never during a
//! fan-out. A fan-out reads its channel; a subscribe, an unsubscribe or a
//! cache publish writes its channel only, so none of them waits behind
//! another channel's fan-out. An entry leaves the map when its channel is
//! idle: it is marked `removed` under its own lock, that lock is released,
//! then the entry is taken out of the map; whoever finds a removed channel
//! looks the name up again, so no change lands in a channel that left the
//! map. Only [`Hub::cluster_snapshot`] holds several locks: the map's,
//! then every channel's, for reading. Everything else holds one lock at a
//! time (never the map's while it waits for a channel's, nor a channel's
//! while it waits for the map's), so nothing can deadlock with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::app::AppConfig;
use super::channel;
use super::cluster_port::{ClusterLink, Op};
use super::protocol::{self, code, Frame};
use super::webhook::HookEvent;

/// How long a cache channel keeps its last event.
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Outgoing frames a connection may have queued before it is dropped.
    pub queue_capacity: usize,
    /// Outgoing bytes a connection may have queued before it is dropped
    /// (4100), whatever the frame count: a client that does not read holds
    /// this much at most.
    pub queue_bytes: usize,
}

/// Outgoing bytes a connection may have queued: 4 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            queue_capacity: 1024,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

/// What a connection's task needs to be told from outside: frames to send
/// and a request to close.
#[derive(Clone)]
pub struct ConnHandle {
    pub socket_id: Arc<str>,
    queue: mpsc::Sender<Frame>,
    closer: Arc<Closer>,
    /// Bytes queued and not yet taken by the writer.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

#[derive(Default)]
pub struct Closer {
    code: AtomicU16,
    reason: Mutex<Option<String>>,
    notify: Notify,
}

impl Closer {
    /// The close code requested, once one is.
    pub fn requested(&self) -> Option<(u16, String)> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => {
                let reason = self
                    .reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_default();
                Some((code, reason))
            }
        }
    }

    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// A connection's outgoing queue, as its writer reads it: frames, and the
/// bytes they hold (given back as they are taken).
pub struct Outgoing {
    frames: mpsc::Receiver<Frame>,
    bytes: Arc<AtomicUsize>,
}

impl Outgoing {
    pub async fn recv(&mut self) -> Option<Frame> {
        let frame = self.frames.recv().await?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    pub fn try_recv(&mut self) -> Result<Frame, mpsc::error::TryRecvError> {
        let frame = self.frames.try_recv()?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Ok(frame)
    }
}

impl ConnHandle {
    /// A handle whose queue holds `capacity` frames and
    /// [`DEFAULT_QUEUE_BYTES`] at most.
    pub fn new(socket_id: Arc<str>, capacity: usize) -> (ConnHandle, Outgoing) {
        Self::bounded(socket_id, capacity, DEFAULT_QUEUE_BYTES)
    }

    /// A handle whose queue holds `capacity` frames and `max_bytes` at most.
    pub fn bounded(
        socket_id: Arc<str>,
        capacity: usize,
        max_bytes: usize,
    ) -> (ConnHandle, Outgoing) {
        let (queue, frames) = mpsc::channel(capacity.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        (
            ConnHandle {
                socket_id,
                queue,
                closer: Arc::new(Closer::default()),
                bytes: bytes.clone(),
                max_bytes: max_bytes.max(1),
            },
            Outgoing { frames, bytes },
        )
    }

    pub fn closer(&self) -> &Arc<Closer> {
        &self.closer
    }

    /// Queues a frame; a full queue (in frames or bytes) closes the
    /// connection (4100).
    pub fn send(&self, frame: &Frame) -> bool {
        let queued = self.bytes.fetch_add(frame.len(), Ordering::AcqRel) + frame.len();
        if queued > self.max_bytes {
            self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            self.close(
                code::OVER_CAPACITY,
                "Over capacity: the connection did not read its messages",
            );
            return false;
        }
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
                self.close(
                    code::OVER_CAPACITY,
                    "Over capacity: the connection did not read its messages",
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
                false
            }
        }
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        if self
            .closer
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *self.closer.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
            self.closer.notify.notify_one();
        }
    }
}

/// A presence member of this node: what they share, and their connections.
struct Member {
    info: String,
    sockets: Vec<Arc<str>>,
}

/// A channel behind its own lock, as the hub's map holds it.
type Slot = Arc<RwLock<Channel>>;

#[derive(Default)]
struct Channel {
    /// Taken out of the hub's map (it was idle): changes go to a new entry.
    removed: bool,
    subscribers: HashMap<Arc<str>, ConnHandle>,
    /// This node's presence members.
    members: HashMap<String, Member>,
    cached: Option<(Frame, Instant)>,
    /// In a cluster: every member of the channel on any node (user →
    /// `user_info`), as the cluster last told; see [`super::cluster_port`].
    cluster_members: HashMap<String, String>,
}

impl Channel {
    /// Nothing worth keeping: no subscriber, cached event or mirror.
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.cached.is_none() && self.cluster_members.is_empty()
    }

    /// Sends `frame` to every subscriber but the connections of `user`.
    fn send_except_user(&self, frame: &Frame, user: &str, also: Option<&str>) {
        let own = self.members.get(user).map(|m| m.sockets.as_slice());
        for (id, conn) in &self.subscribers {
            let theirs = own.is_some_and(|s| s.contains(id));
            if !theirs && also != Some(&**id) {
                conn.send(frame);
            }
        }
    }

    /// Users present: this node's, or in a cluster the mirror plus `me`.
    fn member_count(&self, clustered: bool) -> usize {
        if !clustered {
            return self.members.len();
        }
        self.cluster_members.len()
            + self
                .members
                .keys()
                .filter(|u| !self.cluster_members.contains_key(*u))
                .count()
    }
}

/// The result of a successful subscribe.
pub struct Subscribed {
    /// JSON text for `subscription_succeeded` (`{}` or the presence data).
    pub data: String,
    /// The cached event to replay, for cache channels (`None`: a miss).
    pub cached: Option<Frame>,
}

/// Why a subscribe was refused.
#[derive(Debug)]
pub enum SubscribeRefused {
    PresenceFull(usize),
}

/// Counts for the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    pub subscription_count: usize,
    /// Distinct users, for presence channels.
    pub user_count: Option<usize>,
}

/// This node's share of the cluster state, for a resync: subscriptions per
/// channel, and presence members with their connection counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalShare {
    pub subscriptions: Vec<(String, usize)>,
    /// (channel, user, user_info, connections)
    pub members: Vec<(String, String, String, usize)>,
}

pub struct Hub {
    app_key: String,
    max_presence_members: usize,
    subscription_count_events: bool,
    settings: HubSettings,
    /// Each channel behind its own lock; see the module docs.
    channels: RwLock<HashMap<String, Slot>>,
    /// Signed-in connections by user id.
    users: Mutex<HashMap<String, Vec<ConnHandle>>>,
    /// Every open connection, for shutdown.
    connections: Mutex<HashMap<Arc<str>, ConnHandle>>,
    connection_count: AtomicUsize,
    hooks: Mutex<Option<mpsc::UnboundedSender<HookEvent>>>,
    /// Set when the app is part of a cluster; never on a single node.
    cluster: OnceLock<Arc<ClusterLink>>,
}

impl Hub {
    pub fn new(config: &AppConfig, settings: HubSettings) -> Hub {
        Hub {
            app_key: config.key.clone(),
            max_presence_members: config.max_presence_members,
            subscription_count_events: config.subscription_count,
            settings,
            channels: RwLock::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            connection_count: AtomicUsize::new(0),
            hooks: Mutex::new(None),
            cluster: OnceLock::new(),
        }
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    /// Whether the app sends `pusher_internal:subscription_count`.
    pub fn subscription_count_events(&self) -> bool {
        self.subscription_count_events
    }

    /// Makes the hub part of a cluster (once, before it serves anyone).
    pub fn join_cluster(&self, link: Arc<ClusterLink>) {
        let _ = self.cluster.set(link);
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.get()
    }

    pub fn is_clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Where webhook events go (set when the app has webhooks).
    pub fn set_hooks(&self, sink: mpsc::UnboundedSender<HookEvent>) {
        *lock(&self.hooks) = Some(sink);
    }

    pub(crate) fn hook(&self, event: HookEvent) {
        if let Some(sink) = lock(&self.hooks).as_ref() {
            let _ = sink.send(event);
        }
    }

    /// A channel's entry, when there is one (it may have just been
    /// removed: then it is idle, which readers need not tell apart).
    fn slot(&self, channel_name: &str) -> Option<Slot> {
        read(&self.channels).get(channel_name).cloned()
    }

    /// Every entry, for the queries that go through all channels.
    fn slots(&self) -> Vec<(String, Slot)> {
        read(&self.channels)
            .iter()
            .map(|(name, slot)| (name.clone(), slot.clone()))
            .collect()
    }

    /// Runs `change` on a channel under its write lock, creating the
    /// channel when missing; takes it out of the map afterwards when it is
    /// idle.
    fn change<R>(&self, channel_name: &str, change: impl FnOnce(&mut Channel) -> R) -> R {
        loop {
            let slot = match self.slot(channel_name) {
                Some(slot) => slot,
                None => write(&self.channels)
                    .entry(channel_name.to_owned())
                    .or_default()
                    .clone(),
            };
            let live = self.live(channel_name, &slot);
            if let Some(channel) = live {
                return self.apply(channel_name, &slot, channel, change);
            }
        }
    }

    /// [`change`](Self::change) for a channel that exists; `None` when it
    /// does not.
    fn change_existing<R>(
        &self,
        channel_name: &str,
        change: impl FnOnce(&mut Channel) -> R,
    ) -> Option<R> {
        loop {
            let slot = self.slot(channel_name)?;
            let live = self.live(channel_name, &slot);
            if let Some(channel) = live {
                return Some(self.apply(channel_name, &slot, channel, change));
            }
        }
    }

    /// The channel locked for writing, unless it was removed meanwhile
    /// (then its entry is taken out, for the caller to look again).
    fn live<'a>(
        &self,
        channel_name: &str,
        slot: &'a Slot,
    ) -> Option<RwLockWriteGuard<'a, Channel>> {
        let channel = write(slot);
        if !channel.removed {
            return Some(channel);
        }
        drop(channel);
        self.forget(channel_name, slot);
        None
    }

    fn apply<R>(
        &self,
        channel_name: &str,
        slot: &Slot,
        mut channel: RwLockWriteGuard<'_, Channel>,
        change: impl FnOnce(&mut Channel) -> R,
    ) -> R {
        let result = change(&mut channel);
        if channel.is_idle() {
            channel.removed = true;
            drop(channel);
            self.forget(channel_name, slot);
        }
        result
    }

    /// Takes a removed channel's entry out of the map, unless it was
    /// replaced already.
    fn forget(&self, channel_name: &str, slot: &Slot) {
        let mut channels = write(&self.channels);
        if channels
            .get(channel_name)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            channels.remove(channel_name);
        }
    }

    pub fn connected(&self, conn: &ConnHandle) {
        lock(&self.connections).insert(conn.socket_id.clone(), conn.clone());
        self.connection_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self, socket_id: &str) {
        if lock(&self.connections).remove(socket_id).is_some() {
            self.connection_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Relaxed)
    }

    /// Asks every connection to close (shutdown: 4200, reconnect now).
    pub fn close_all(&self, code: u16, reason: &str) {
        for conn in lock(&self.connections).values() {
            conn.close(code, reason);
        }
    }

    /// Adds a subscriber; for presence, `member` is `(user_id, user_info JSON)`.
    ///
    /// On a single node the hub decides everything here. In a cluster
    /// (while Redis is up) it tells the cluster instead, and the
    /// occupancy/member transitions, their frames to the others and their
    /// webhooks come back from Redis (through the [`ClusterLink`]); while Redis is
    /// down it serves its own subscribers as a single node would, without
    /// webhooks.
    pub fn subscribe(
        &self,
        channel_name: &str,
        conn: &ConnHandle,
        member: Option<(&str, &str)>,
    ) -> Result<Subscribed, SubscribeRefused> {
        let link = self.cluster.get();
        let mut hooks = Vec::new();
        let result = self.change(channel_name, |channel| {
            // Read under the channel's lock: the adapter flips it while it
            // holds every channel's (see `cluster_snapshot`).
            let up = link.is_some_and(|l| l.is_up());
            let occupied_now = channel.subscribers.is_empty();
            if let Some((user_id, _)) = member {
                let known = channel.members.contains_key(user_id)
                    || channel.cluster_members.contains_key(user_id);
                if !known && channel.member_count(link.is_some()) >= self.max_presence_members {
                    return Err(SubscribeRefused::PresenceFull(self.max_presence_members));
                }
            }
            let already = channel
                .subscribers
                .insert(conn.socket_id.clone(), conn.clone())
                .is_some();
            let counted = self.subscription_count_events && member.is_none();
            if !already {
                match link {
                    None if occupied_now => hooks.push(HookEvent::ChannelOccupied {
                        channel: channel_name.to_owned(),
                    }),
                    None => {}
                    Some(link) => {
                        let _ = link.send(Op::Subscribed {
                            channel: channel_name.to_owned(),
                            counted,
                        });
                    }
                }
            }
            let data = match member {
                Some((user_id, info)) if !already => {
                    let new_user = match channel.members.get_mut(user_id) {
                        Some(m) => {
                            m.sockets.push(conn.socket_id.clone());
                            false
                        }
                        None => {
                            channel.members.insert(
                                user_id.to_owned(),
                                Member {
                                    info: info.to_owned(),
                                    sockets: vec![conn.socket_id.clone()],
                                },
                            );
                            true
                        }
                    };
                    if new_user {
                        match link {
                            None => {
                                let frame = protocol::member_added(channel_name, user_id, info);
                                channel.send_except_user(&frame, user_id, None);
                                hooks.push(HookEvent::MemberAdded {
                                    channel: channel_name.to_owned(),
                                    user_id: user_id.to_owned(),
                                });
                            }
                            Some(link) if up => {
                                let _ = link.send(Op::Joined {
                                    channel: channel_name.to_owned(),
                                    user: user_id.to_owned(),
                                    info: info.to_owned(),
                                    socket: conn.socket_id.clone(),
                                });
                            }
                            Some(_) => {
                                // Cut off from the cluster: serve this node.
                                if channel
                                    .cluster_members
                                    .insert(user_id.to_owned(), info.to_owned())
                                    .is_none()
                                {
                                    let frame = protocol::member_added(channel_name, user_id, info);
                                    channel.send_except_user(&frame, user_id, None);
                                }
                            }
                        }
                    }
                    presence_data(channel, Some(user_id), link.is_some())
                }
                Some((user_id, _)) => presence_data(channel, Some(user_id), link.is_some()),
                None => "{}".to_owned(),
            };
            if counted && !already && !up {
                self.broadcast_count(channel_name, channel, link.is_none());
            }
            let cached = if channel::is_cache(channel_name) {
                let fresh = channel
                    .cached
                    .as_ref()
                    .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                    .map(|(f, _)| f.clone());
                if fresh.is_none() {
                    hooks.push(HookEvent::CacheMiss {
                        channel: channel_name.to_owned(),
                    });
                }
                fresh
            } else {
                None
            };
            Ok(Subscribed { data, cached })
        });
        for h in hooks {
            self.hook(h);
        }
        result
    }

    /// Removes a subscriber; `user_id` is its presence identity, if any.
    pub fn unsubscribe(&self, channel_name: &str, socket_id: &str, user_id: Option<&str>) {
        let link = self.cluster.get();
        let mut hooks = Vec::new();
        self.change_existing(channel_name, |channel| {
            // Read under the channel's lock, as in `subscribe`.
            let up = link.is_some_and(|l| l.is_up());
            if channel.subscribers.remove(socket_id).is_none() {
                return;
            }
            let counted = self.subscription_count_events && user_id.is_none();
            if let Some(link) = link {
                let _ = link.send(Op::Unsubscribed {
                    channel: channel_name.to_owned(),
                    counted,
                });
            }
            if let Some(user_id) = user_id {
                let gone = match channel.members.get_mut(user_id) {
                    Some(m) => {
                        m.sockets.retain(|s| &**s != socket_id);
                        m.sockets.is_empty()
                    }
                    None => false,
                };
                if gone {
                    channel.members.remove(user_id);
                    match link {
                        None => {
                            let frame = protocol::member_removed(channel_name, user_id);
                            for other in channel.subscribers.values() {
                                other.send(&frame);
                            }
                            hooks.push(HookEvent::MemberRemoved {
                                channel: channel_name.to_owned(),
                                user_id: user_id.to_owned(),
                            });
                        }
                        Some(link) if up => {
                            let _ = link.send(Op::Left {
                                channel: channel_name.to_owned(),
                                user: user_id.to_owned(),
                            });
                        }
                        Some(_) => {
                            if channel.cluster_members.remove(user_id).is_some() {
                                let frame = protocol::member_removed(channel_name, user_id);
                                for other in channel.subscribers.values() {
                                    other.send(&frame);
                                }
                            }
                        }
                    }
                }
            } else if self.subscription_count_events && !up {
                self.broadcast_count(channel_name, channel, link.is_none());
            }
            if channel.subscribers.is_empty() {
                if link.is_none() {
                    hooks.push(HookEvent::ChannelVacated {
                        channel: channel_name.to_owned(),
                    });
                }
                // A cache channel keeps its last event while it is fresh,
                // a clustered one the members of the other nodes.
                // (An idle channel leaves the map after this.)
                channel.members.clear();
            }
        });
        for h in hooks {
            self.hook(h);
        }
    }

    /// The local subscription count to local subscribers; the webhook only
    /// on a single node (a cluster's count comes from Redis).
    fn broadcast_count(&self, channel_name: &str, channel: &Channel, hook: bool) {
        let count = channel.subscribers.len();
        let frame = protocol::subscription_count(channel_name, count);
        for other in channel.subscribers.values() {
            other.send(&frame);
        }
        if hook {
            self.hook(HookEvent::SubscriptionCount {
                channel: channel_name.to_owned(),
                subscription_count: count,
            });
        }
    }

    /// Sends an encoded event to a channel's subscribers except `except`;
    /// returns how many got it here. Cache channels remember it.
    ///
    /// In a cluster the event is queued once for Redis instead, and every
    /// node, this one too, fans it out when it comes back: so every
    /// subscriber sees one order, the order Redis saw (a trigger answered
    /// on one node comes before a later one on another). While Redis is
    /// down it goes to this node's subscribers at once.
    pub fn publish(&self, channel_name: &str, frame: &Frame, except: Option<&str>) -> usize {
        if self.publish_to_cluster(channel_name, frame, except, true) {
            return 0;
        }
        self.publish_local(channel_name, frame, except)
    }

    /// Queues an event for every node of the cluster; `here`: this node's
    /// subscribers get it too, when it comes back (`false`: they had it
    /// already). `false` when it was not queued: no cluster, Redis down or
    /// the queue full.
    pub fn publish_to_cluster(
        &self,
        channel_name: &str,
        frame: &Frame,
        except: Option<&str>,
        here: bool,
    ) -> bool {
        self.cluster.get().is_some_and(|link| {
            link.send(Op::Publish {
                channel: channel_name.to_owned(),
                frame: frame.clone(),
                except: except.map(Arc::from),
                cache: channel::is_cache(channel_name),
                here,
            })
        })
    }

    /// [`publish`](Self::publish) to this node's subscribers only: what an
    /// event gets once it came back through Redis.
    pub fn publish_local(&self, channel_name: &str, frame: &Frame, except: Option<&str>) -> usize {
        if channel::is_cache(channel_name) {
            return self.change(channel_name, |channel| {
                channel.cached = Some((frame.clone(), Instant::now()));
                fan_out(channel, frame, except)
            });
        }
        match self.slot(channel_name) {
            Some(slot) => fan_out(&read(&slot), frame, except),
            None => 0,
        }
    }

    /// Resolves once this node's events so far reached the cluster, or
    /// once that cannot be confirmed (see [`ClusterLink::flush`]);
    /// `true` when they did, and at once on a single node.
    pub async fn cluster_flush(&self) -> bool {
        match self.cluster.get() {
            Some(link) => link.flush().await,
            None => true,
        }
    }

    /// This node's counts of a channel.
    pub fn channel_info(&self, channel_name: &str) -> Option<ChannelInfo> {
        let clustered = self.is_clustered();
        self.slot(channel_name)
            .and_then(|slot| info(channel_name, &read(&slot), clustered))
    }

    /// Occupied channels whose name starts with `prefix` (this node's view).
    pub fn channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        let clustered = self.is_clustered();
        let slots: Vec<(String, Slot)> = read(&self.channels)
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, slot)| (name.clone(), slot.clone()))
            .collect();
        let mut out: Vec<(String, ChannelInfo)> = slots
            .into_iter()
            .filter_map(|(name, slot)| {
                let info = info(&name, &read(&slot), clustered)?;
                Some((name, info))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// User ids present in a presence channel (this node's view).
    pub fn presence_users(&self, channel_name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .slot(channel_name)
            .map(|slot| {
                let c = read(&slot);
                let mut all: Vec<String> = c.members.keys().cloned().collect();
                all.extend(
                    c.cluster_members
                        .keys()
                        .filter(|u| !c.members.contains_key(*u))
                        .cloned(),
                );
                all
            })
            .unwrap_or_default();
        users.sort();
        users
    }

    /// [`channel_info`](Self::channel_info) for the whole cluster (this
    /// node's when it is not in one, or Redis does not answer).
    pub async fn cluster_channel_info(&self, channel_name: &str) -> Option<ChannelInfo> {
        if let Some(state) = self.cluster.get().and_then(|l| l.state()) {
            match state.channel(channel_name).await {
                Ok(info) => return info,
                Err(err) => {
                    tracing::warn!(%err, channel = %channel_name, "cluster query failed; answering with this node's counts")
                }
            }
        }
        self.channel_info(channel_name)
    }

    /// [`channels`](Self::channels) for the whole cluster.
    pub async fn cluster_channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        if let Some(state) = self.cluster.get().and_then(|l| l.state()) {
            match state.channels(prefix).await {
                Ok(list) => return list,
                Err(err) => {
                    tracing::warn!(%err, "cluster query failed; answering with this node's channels")
                }
            }
        }
        self.channels(prefix)
    }

    /// [`presence_users`](Self::presence_users) for the whole cluster.
    pub async fn cluster_presence_users(&self, channel_name: &str) -> Vec<String> {
        if let Some(state) = self.cluster.get().and_then(|l| l.state()) {
            match state.users(channel_name).await {
                Ok(users) => return users,
                Err(err) => {
                    tracing::warn!(%err, channel = %channel_name, "cluster query failed; answering with this node's members")
                }
            }
        }
        self.presence_users(channel_name)
    }

    /// Records that a connection signed in as `user_id`.
    pub fn signed_in(&self, user_id: &str, conn: &ConnHandle) {
        lock(&self.users)
            .entry(user_id.to_owned())
            .or_default()
            .push(conn.clone());
    }

    pub fn signed_out(&self, user_id: &str, socket_id: &str) {
        let mut users = lock(&self.users);
        if let Some(conns) = users.get_mut(user_id) {
            conns.retain(|c| &*c.socket_id != socket_id);
            if conns.is_empty() {
                users.remove(user_id);
            }
        }
    }

    /// Closes every signed-in connection of a user on this node (4009);
    /// returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        let conns = lock(&self.users).get(user_id).cloned().unwrap_or_default();
        for conn in &conns {
            conn.send(&protocol::error(
                Some(code::UNAUTHORIZED),
                "You got disconnected by the app.",
            ));
            conn.close(code::UNAUTHORIZED, "You got disconnected by the app.");
        }
        conns.len()
    }

    /// [`terminate_user`](Self::terminate_user) here and on every other node.
    pub fn cluster_terminate_user(&self, user_id: &str) -> usize {
        if let Some(link) = self.cluster.get() {
            let _ = link.send(Op::Terminate {
                user: user_id.to_owned(),
            });
        }
        self.terminate_user(user_id)
    }

    // ---- what the cluster adapter calls ----

    /// Runs `mark` (the adapter draining its stale queue and marking the
    /// link up) and reads this node's share, holding the map's lock and
    /// every channel's, so that every later subscribe is queued after the
    /// share.
    ///
    /// Every change of a subscription or member happens under its
    /// channel's write lock and reads `up` there; with every channel read
    /// locked no change is half done, and with the map read locked no
    /// channel can appear, so each change is either in the share (made
    /// before, its queued operation drained by `mark`) or made after with
    /// `up` set (queued after the drain). Fan-outs, which only read, go on
    /// meanwhile.
    pub fn cluster_snapshot(&self, mark: impl FnOnce()) -> LocalShare {
        let map = read(&self.channels);
        // Only this function holds more than one lock, so any order is a
        // fixed one.
        let channels: Vec<(&String, RwLockReadGuard<'_, Channel>)> =
            map.iter().map(|(name, slot)| (name, read(slot))).collect();
        mark();
        let mut share = LocalShare::default();
        for (name, channel) in &channels {
            if channel.subscribers.is_empty() {
                continue;
            }
            share
                .subscriptions
                .push(((*name).clone(), channel.subscribers.len()));
            for (user, member) in &channel.members {
                share.members.push((
                    (*name).clone(),
                    user.clone(),
                    member.info.clone(),
                    member.sockets.len(),
                ));
            }
        }
        share
    }

    /// A user joined a presence channel somewhere (first connection
    /// cluster-wide): told to this node's subscribers, but never to the
    /// user's own connections or the joining socket.
    pub fn cluster_member_added(&self, channel_name: &str, user: &str, info: &str, socket: &str) {
        self.change(channel_name, |channel| {
            if channel
                .cluster_members
                .insert(user.to_owned(), info.to_owned())
                .is_some()
            {
                return;
            }
            let frame = protocol::member_added(channel_name, user, info);
            channel.send_except_user(&frame, user, Some(socket));
        });
    }

    /// A user's last connection to a presence channel left, somewhere.
    pub fn cluster_member_removed(&self, channel_name: &str, user: &str) {
        self.change_existing(channel_name, |channel| {
            if channel.cluster_members.remove(user).is_some() {
                let frame = protocol::member_removed(channel_name, user);
                channel.send_except_user(&frame, user, None);
            }
        });
    }

    /// A channel's cluster-wide subscription count, for its subscribers here.
    pub fn cluster_subscription_count(&self, channel_name: &str, count: u64) {
        if let Some(slot) = self.slot(channel_name) {
            let channel = read(&slot);
            let frame = protocol::subscription_count(
                channel_name,
                usize::try_from(count).unwrap_or(usize::MAX),
            );
            for conn in channel.subscribers.values() {
                conn.send(&frame);
            }
        }
    }

    /// Replaces the mirror of every presence channel with what Redis holds
    /// (after a (re)connect) and tells this node's subscribers what changed
    /// meanwhile; also takes the cache channels' last events. One channel
    /// at a time: only the adapter changes the mirror while the cluster is
    /// up, and it calls this after marking it up.
    pub fn cluster_resync(
        &self,
        members: HashMap<String, HashMap<String, String>>,
        cached: Vec<(String, Frame, Duration)>,
    ) {
        let mut members = members;
        let mut names: Vec<String> = self
            .slots()
            .into_iter()
            .filter(|(_, slot)| !read(slot).cluster_members.is_empty())
            .map(|(name, _)| name)
            .chain(members.keys().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let new = members.remove(&name).unwrap_or_default();
            self.change(&name, |channel| {
                let old = std::mem::replace(&mut channel.cluster_members, new);
                for user in old.keys() {
                    if !channel.cluster_members.contains_key(user)
                        && !channel.members.contains_key(user)
                    {
                        let frame = protocol::member_removed(&name, user);
                        channel.send_except_user(&frame, user, None);
                    }
                }
                for (user, info) in &channel.cluster_members {
                    if !old.contains_key(user) && !channel.members.contains_key(user) {
                        let frame = protocol::member_added(&name, user, info);
                        channel.send_except_user(&frame, user, None);
                    }
                }
            });
        }
        let now = Instant::now();
        for (name, frame, age) in cached {
            let at = now.checked_sub(age).unwrap_or(now);
            self.change(&name, |channel| channel.cached = Some((frame, at)));
        }
    }
}

fn fan_out(channel: &Channel, frame: &Frame, except: Option<&str>) -> usize {
    let mut sent = 0;
    for (id, conn) in &channel.subscribers {
        if except != Some(&**id) && conn.send(frame) {
            sent += 1;
        }
    }
    sent
}

fn info(name: &str, channel: &Channel, clustered: bool) -> Option<ChannelInfo> {
    if channel.subscribers.is_empty() {
        return None;
    }
    Some(ChannelInfo {
        subscription_count: channel.subscribers.len(),
        user_count: (channel::ChannelKind::of(name) == channel::ChannelKind::Presence)
            .then_some(channel.member_count(clustered)),
    })
}

/// `{"presence":{"ids":[…],"hash":{…},"count":n}}` as JSON text: this
/// node's members, or in a cluster every member the mirror knows plus `me`
/// (whose join may still be on its way through Redis).
fn presence_data(channel: &Channel, me: Option<&str>, clustered: bool) -> String {
    let mut all: Vec<(&str, &str)> = if clustered {
        let mut all: Vec<(&str, &str)> = channel
            .cluster_members
            .iter()
            .map(|(u, i)| (u.as_str(), i.as_str()))
            .collect();
        if let Some(me) = me.filter(|me| !channel.cluster_members.contains_key(*me)) {
            if let Some(m) = channel.members.get(me) {
                all.push((me, m.info.as_str()));
            }
        }
        all
    } else {
        channel
            .members
            .iter()
            .map(|(u, m)| (u.as_str(), m.info.as_str()))
            .collect()
    };
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let ids_json = all
        .iter()
        .map(|(id, _)| serde_json::to_string(id).unwrap_or_default())
        .collect::<Vec<_>>();
    let hash = all
        .iter()
        .map(|(id, info)| format!("{}:{info}", serde_json::to_string(id).unwrap_or_default()))
        .collect::<Vec<_>>();
    format!(
        r#"{{"presence":{{"ids":[{}],"hash":{{{}}},"count":{}}}}}"#,
        ids_json.join(","),
        hash.join(","),
        all.len()
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(rx: &mut Outgoing) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
            let data: serde_json::Value =
                serde_json::from_str(v["data"].as_str().unwrap_or("{}")).unwrap_or_default();
            out.push(format!(
                "{} {}",
                v["event"].as_str().unwrap(),
                data["user_id"]
            ));
        }
        out
    }

    /// A queue bounded in bytes closes its connection (4100) once the
    /// frames it holds would pass the bound, however few they are, and
    /// gives the room back as the writer takes them.
    #[test]
    fn queues_are_bounded_in_bytes() {
        let (conn, mut queue) = ConnHandle::bounded("1.1".into(), 1024, 2_500);
        let frame = Frame::from(String::from_utf8(vec![b'x'; 1_000]).unwrap());
        assert!(conn.send(&frame));
        assert!(conn.send(&frame));
        assert!(queue.try_recv().is_ok(), "the writer took one");
        assert!(conn.send(&frame), "its bytes were given back");
        assert_eq!(conn.closer().requested(), None);
        assert!(!conn.send(&frame), "3,000 bytes would be queued");
        assert_eq!(
            conn.closer().requested().map(|(code, _)| code),
            Some(code::OVER_CAPACITY)
        );
    }

    #[test]
    fn a_cluster_resync_tells_subscribers_only_what_changed() {
        let hub = Hub::new(
            &AppConfig::new("1", "k", "secret-123"),
            HubSettings::default(),
        );
        let (link, _queue) = ClusterLink::new("node".into());
        hub.join_cluster(link);
        let (conn, mut rx) = ConnHandle::new("1.1".into(), 64);
        // Redis is down (the link is not up): served as one node.
        let ok = hub
            .subscribe("presence-x", &conn, Some(("u2", "{}")))
            .unwrap();
        assert!(ok.data.contains(r#""count":1"#), "{}", ok.data);
        hub.cluster_member_added("presence-x", "u1", "{}", "");
        hub.cluster_member_added("presence-x", "u1", "{}", "");
        assert_eq!(
            frames(&mut rx),
            [r#"pusher_internal:member_added "u1""#],
            "a member is told once"
        );
        let snapshot = HashMap::from([(
            "presence-x".to_owned(),
            HashMap::from([
                ("u1".to_owned(), "{}".to_owned()),
                ("u2".to_owned(), "{}".to_owned()),
                ("u3".to_owned(), "{}".to_owned()),
            ]),
        )]);
        hub.cluster_resync(snapshot, Vec::new());
        assert_eq!(frames(&mut rx), [r#"pusher_internal:member_added "u3""#]);
        hub.cluster_member_removed("presence-x", "u3");
        assert_eq!(frames(&mut rx), [r#"pusher_internal:member_removed "u3""#]);
        assert_eq!(hub.presence_users("presence-x"), ["u1", "u2"]);
    }

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(
            &AppConfig::new("1", "k", "secret-123"),
            HubSettings::default(),
        ))
    }

    #[test]
    fn a_channel_held_for_writing_blocks_no_other_channel() {
        let hub = hub();
        let (conn, mut rx) = ConnHandle::new("1.1".into(), 64);
        hub.subscribe("news", &conn, None).unwrap();
        let (held, holding) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                // A long subscribe or cache publish on one channel.
                hub.change("cache-busy", |_| {
                    held.send(()).unwrap();
                    released.recv().unwrap();
                });
            })
        };
        holding.recv().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let other = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let frame = protocol::channel_event("e", "news", "{}");
                let fanned_out = hub.publish_local("news", &frame, None);
                let (late, _rx) = ConnHandle::new("1.2".into(), 64);
                hub.subscribe("cache-other", &late, None).unwrap();
                hub.publish_local("cache-other", &frame, None);
                hub.unsubscribe("news", "1.1", None);
                done.send(fanned_out).unwrap();
            })
        };
        let fanned_out = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("another channel's fan-out, subscribe and cache publish went on");
        assert_eq!(fanned_out, 1);
        assert_eq!(frames(&mut rx), ["e null"]);
        release.send(()).unwrap();
        holder.join().unwrap();
        other.join().unwrap();
        assert_eq!(
            hub.channels(""),
            [(
                "cache-other".to_owned(),
                ChannelInfo {
                    subscription_count: 1,
                    user_count: None
                }
            )]
        );
    }

    #[test]
    fn a_subscribe_racing_the_channels_removal_is_never_lost() {
        let hub = hub();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    let socket: Arc<str> = format!("1.{t}").into();
                    let (conn, _rx) = ConnHandle::new(socket.clone(), 4);
                    for _ in 0..2_000 {
                        hub.subscribe("race", &conn, Some((&socket, "{}"))).unwrap();
                        let users = hub.presence_users("race");
                        assert!(
                            users.iter().any(|u| **u == *socket),
                            "{socket} not in {users:?}"
                        );
                        hub.unsubscribe("race", &socket, Some(&socket));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(hub.slot("race").is_none(), "an idle channel leaves the map");
    }

    #[test]
    fn every_subscription_is_in_the_snapshot_or_queued_after_it() {
        let hub = hub();
        let (link, mut queue) = ClusterLink::new("node".into());
        hub.join_cluster(link.clone());
        let progress = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let hub = hub.clone();
                let progress = progress.clone();
                std::thread::spawn(move || {
                    for i in 0..3_000 {
                        let socket: Arc<str> = format!("{t}.{}", i % 50).into();
                        let (conn, _rx) = ConnHandle::new(socket.clone(), 4);
                        let channel = format!("c{}", i % 7);
                        hub.subscribe(&channel, &conn, None).unwrap();
                        if i % 3 == 0 {
                            hub.unsubscribe(&channel, &socket, None);
                        }
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // In the middle of the changes.
        while progress.load(Ordering::Relaxed) < 2_000 {
            std::thread::yield_now();
        }
        let share = hub.cluster_snapshot(|| {
            while queue.try_recv().is_ok() {}
            link.set_up(true);
        });
        for w in workers {
            w.join().unwrap();
        }
        let mut expected: HashMap<String, i64> = share
            .subscriptions
            .into_iter()
            .map(|(c, n)| (c, n as i64))
            .collect();
        while let Ok(op) = queue.try_recv() {
            match op {
                Op::Subscribed { channel, .. } => *expected.entry(channel).or_default() += 1,
                Op::Unsubscribed { channel, .. } => *expected.entry(channel).or_default() -= 1,
                other => panic!("{other:?}"),
            }
        }
        expected.retain(|_, n| *n != 0);
        let actual: HashMap<String, i64> = hub
            .channels("")
            .into_iter()
            .map(|(c, i)| (c, i.subscription_count as i64))
            .collect();
        assert_eq!(expected, actual);
    }
}
