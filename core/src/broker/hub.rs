//! One app's channels, subscribers and presence members, and fan-out.
//!
//! A publish encodes its frame once; each subscriber's bounded queue gets a
//! clone of the same bytes. A subscriber whose queue is full is closed with
//! 4100 instead of slowing the others. Locks are std locks held only for
//! map updates and `try_send`s, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::app::AppConfig;
use super::channel;
use super::protocol::{self, code, Frame};
use super::webhook::HookEvent;

/// How long a cache channel keeps its last event.
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Outgoing frames a connection may have queued before it is dropped.
    pub queue_capacity: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            queue_capacity: 1024,
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

impl ConnHandle {
    pub fn new(socket_id: Arc<str>, capacity: usize) -> (ConnHandle, mpsc::Receiver<Frame>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        (
            ConnHandle {
                socket_id,
                queue,
                closer: Arc::new(Closer::default()),
            },
            receiver,
        )
    }

    pub fn closer(&self) -> &Arc<Closer> {
        &self.closer
    }

    /// Queues a frame; a full queue closes the connection (4100).
    pub fn send(&self, frame: &Frame) -> bool {
        match self.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(
                    code::OVER_CAPACITY,
                    "Over capacity: the connection did not read its messages",
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
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

/// A presence member: who, what they share, and on how many connections.
struct Member {
    info: String,
    connections: u32,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<Arc<str>, ConnHandle>,
    members: HashMap<String, Member>,
    cached: Option<(Frame, Instant)>,
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

pub struct Hub {
    app_key: String,
    max_presence_members: usize,
    subscription_count_events: bool,
    settings: HubSettings,
    channels: RwLock<HashMap<String, Channel>>,
    /// Signed-in connections by user id.
    users: Mutex<HashMap<String, Vec<ConnHandle>>>,
    /// Every open connection, for shutdown.
    connections: Mutex<HashMap<Arc<str>, ConnHandle>>,
    connection_count: AtomicUsize,
    hooks: Mutex<Option<mpsc::UnboundedSender<HookEvent>>>,
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
        }
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn app_key(&self) -> &str {
        &self.app_key
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

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Channel>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Channel>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
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
    pub fn subscribe(
        &self,
        channel_name: &str,
        conn: &ConnHandle,
        member: Option<(&str, &str)>,
    ) -> Result<Subscribed, SubscribeRefused> {
        let mut hooks = Vec::new();
        let result = {
            let mut channels = self.write();
            let occupied_now = !channels.contains_key(channel_name);
            let channel = channels.entry(channel_name.to_owned()).or_default();
            if let Some((user_id, _)) = member {
                if !channel.members.contains_key(user_id)
                    && channel.members.len() >= self.max_presence_members
                {
                    let refused = SubscribeRefused::PresenceFull(self.max_presence_members);
                    if channel.subscribers.is_empty() {
                        channels.remove(channel_name);
                    }
                    return Err(refused);
                }
            }
            let already = channel
                .subscribers
                .insert(conn.socket_id.clone(), conn.clone())
                .is_some();
            if occupied_now {
                hooks.push(HookEvent::ChannelOccupied {
                    channel: channel_name.to_owned(),
                });
            }
            let data = match member {
                Some((user_id, info)) if !already => {
                    let new_user = match channel.members.get_mut(user_id) {
                        Some(m) => {
                            m.connections += 1;
                            false
                        }
                        None => {
                            channel.members.insert(
                                user_id.to_owned(),
                                Member {
                                    info: info.to_owned(),
                                    connections: 1,
                                },
                            );
                            true
                        }
                    };
                    if new_user {
                        let frame = protocol::member_added(channel_name, user_id, info);
                        for (id, other) in &channel.subscribers {
                            if id != &conn.socket_id {
                                other.send(&frame);
                            }
                        }
                        hooks.push(HookEvent::MemberAdded {
                            channel: channel_name.to_owned(),
                            user_id: user_id.to_owned(),
                        });
                    }
                    presence_data(channel)
                }
                Some(_) => presence_data(channel),
                None => "{}".to_owned(),
            };
            if self.subscription_count_events && member.is_none() && !already {
                self.broadcast_count(channel_name, channel);
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
        };
        for h in hooks {
            self.hook(h);
        }
        result
    }

    /// Removes a subscriber; `user_id` is its presence identity, if any.
    pub fn unsubscribe(&self, channel_name: &str, socket_id: &str, user_id: Option<&str>) {
        let mut hooks = Vec::new();
        {
            let mut channels = self.write();
            let Some(channel) = channels.get_mut(channel_name) else {
                return;
            };
            if channel.subscribers.remove(socket_id).is_none() {
                return;
            }
            if let Some(user_id) = user_id {
                let gone = match channel.members.get_mut(user_id) {
                    Some(m) if m.connections > 1 => {
                        m.connections -= 1;
                        false
                    }
                    Some(_) => {
                        channel.members.remove(user_id);
                        true
                    }
                    None => false,
                };
                if gone {
                    let frame = protocol::member_removed(channel_name, user_id);
                    for other in channel.subscribers.values() {
                        other.send(&frame);
                    }
                    hooks.push(HookEvent::MemberRemoved {
                        channel: channel_name.to_owned(),
                        user_id: user_id.to_owned(),
                    });
                }
            } else if self.subscription_count_events {
                self.broadcast_count(channel_name, channel);
            }
            if channel.subscribers.is_empty() {
                // A cache channel keeps its last event while it is fresh.
                if channel.cached.is_none() {
                    channels.remove(channel_name);
                } else {
                    channel.members.clear();
                }
                hooks.push(HookEvent::ChannelVacated {
                    channel: channel_name.to_owned(),
                });
            }
        }
        for h in hooks {
            self.hook(h);
        }
    }

    fn broadcast_count(&self, channel_name: &str, channel: &Channel) {
        let count = channel.subscribers.len();
        let frame = protocol::subscription_count(channel_name, count);
        for other in channel.subscribers.values() {
            other.send(&frame);
        }
        self.hook(HookEvent::SubscriptionCount {
            channel: channel_name.to_owned(),
            subscription_count: count,
        });
    }

    /// Sends an encoded event to a channel's subscribers except `except`;
    /// returns how many got it. Cache channels remember it.
    pub fn publish(&self, channel_name: &str, frame: &Frame, except: Option<&str>) -> usize {
        if channel::is_cache(channel_name) {
            let mut channels = self.write();
            let channel = channels.entry(channel_name.to_owned()).or_default();
            channel.cached = Some((frame.clone(), Instant::now()));
            return fan_out(channel, frame, except);
        }
        match self.read().get(channel_name) {
            Some(channel) => fan_out(channel, frame, except),
            None => 0,
        }
    }

    pub fn channel_info(&self, channel_name: &str) -> Option<ChannelInfo> {
        self.read()
            .get(channel_name)
            .and_then(|c| info(channel_name, c))
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        let mut out: Vec<(String, ChannelInfo)> = self
            .read()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter_map(|(name, c)| info(name, c).map(|i| (name.clone(), i)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// User ids present in a presence channel.
    pub fn presence_users(&self, channel_name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .read()
            .get(channel_name)
            .map(|c| c.members.keys().cloned().collect())
            .unwrap_or_default();
        users.sort();
        users
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

    /// Closes every signed-in connection of a user (4009); returns how many.
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

fn info(name: &str, channel: &Channel) -> Option<ChannelInfo> {
    if channel.subscribers.is_empty() {
        return None;
    }
    Some(ChannelInfo {
        subscription_count: channel.subscribers.len(),
        user_count: (channel::ChannelKind::of(name) == channel::ChannelKind::Presence)
            .then_some(channel.members.len()),
    })
}

/// `{"presence":{"ids":[…],"hash":{…},"count":n}}` as JSON text.
fn presence_data(channel: &Channel) -> String {
    let mut ids: Vec<&String> = channel.members.keys().collect();
    ids.sort();
    let ids_json = ids
        .iter()
        .map(|id| serde_json::to_string(id).unwrap_or_default())
        .collect::<Vec<_>>();
    let hash = ids
        .iter()
        .map(|id| {
            format!(
                "{}:{}",
                serde_json::to_string(id).unwrap_or_default(),
                channel.members[*id].info
            )
        })
        .collect::<Vec<_>>();
    format!(
        r#"{{"presence":{{"ids":[{}],"hash":{{{}}},"count":{}}}}}"#,
        ids_json.join(","),
        hash.join(","),
        ids.len()
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
