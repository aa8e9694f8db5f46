//! One WebSocket connection: the Pusher protocol state machine around a
//! socket. One task per connection reads frames, writes its queue (many
//! frames per flush), pings idle clients and cleans up on exit.
//!
//! The state machine ([`Session`]) knows nothing of sockets: the HTTP
//! fallback ([`super::xhr`]) drives the same one from its requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::app::App;
use super::channel::{self, ChannelKind};
use super::hub::{Closer, ConnHandle, Outgoing, SubscribeRefused};
use super::protocol::{self, code, ClientFrame, Frame};
use super::webhook::HookEvent;
use super::BrokerSettings;
use crate::signature;

/// Frames written per flush.
const MAX_BATCH: usize = 256;
/// Largest `data` of a client event, like Pusher.
const MAX_CLIENT_EVENT_BYTES: usize = 10 * 1024;
/// Presence limits.
const MAX_USER_ID_LEN: usize = 128;
const MAX_USER_INFO_BYTES: usize = 1024;

/// A new socket id: `\d+\.\d+`, as the SDKs require.
pub fn new_socket_id() -> String {
    format!("{}.{}", rand::random::<u32>(), rand::random::<u32>())
}

/// Refuses a connection for an unknown app key (4001: do not retry).
pub async fn refuse(mut socket: WebSocket, close_code: u16, message: &str) {
    let _ = socket
        .send(Message::Text(protocol::error(Some(close_code), message)))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code,
            reason: message.into(),
        })))
        .await;
}

/// The Pusher protocol state of one connection, whatever carries it.
pub(super) struct Session {
    app: Arc<App>,
    conn: ConnHandle,
    /// Channel → presence user id (None for other kinds).
    subscriptions: HashMap<String, Option<String>>,
    /// The signed-in user: id and `user_info` JSON.
    user: Option<(String, String)>,
    client_events: RateWindow,
    /// The subscription limit was logged for this connection (once each).
    logged_subscription_limit: bool,
}

/// A fixed one-second window counter for client events.
struct RateWindow {
    start: Instant,
    count: u32,
}

impl RateWindow {
    fn allow(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= per_second
    }
}

/// Runs a connection until it closes.
pub async fn run(mut socket: WebSocket, app: Arc<App>, settings: Arc<BrokerSettings>) {
    let (mut session, mut queue) = Session::open(app, &settings);
    let closer = session.closer().clone();

    let mut last_seen = Instant::now();
    let mut pinged = false;
    let idle = tokio::time::sleep(settings.activity_timeout);
    tokio::pin!(idle);
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            biased;
            _ = closer.wait() => break closer.requested(),
            frame = queue.recv() => {
                let Some(frame) = frame else { break None };
                // A peer that stops reading blocks this write; a close
                // request (4100 from a full queue) must still get through.
                tokio::select! {
                    biased;
                    _ = closer.wait() => break closer.requested(),
                    written = write_batch(&mut socket, frame, &mut queue) => {
                        if written.is_err() {
                            break None;
                        }
                    }
                }
            }
            incoming = socket.recv() => {
                last_seen = Instant::now();
                pinged = false;
                match incoming {
                    Some(Ok(Message::Text(text))) => session.handle(text.as_str()),
                    Some(Ok(Message::Binary(_))) => session.send(&protocol::error(
                        None,
                        "Binary WebSocket frames are not supported",
                    )),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        // The library queued the pong; make sure it leaves.
                        if socket.flush().await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                }
            }
            _ = &mut idle => {
                let quiet_until = last_seen + settings.activity_timeout;
                if Instant::now() < quiet_until {
                    idle.as_mut().reset(quiet_until);
                } else if pinged {
                    break Some((code::PONG_NOT_RECEIVED, "Pong reply not received".into()));
                } else {
                    pinged = true;
                    session.send(&protocol::ping());
                    idle.as_mut().reset(Instant::now() + settings.pong_timeout);
                }
            }
        }
    };
    // Leave channels and presence now: the goodbye below may wait on a
    // peer that does not read.
    session.cleanup();
    if let Some((code, reason)) = close {
        let goodbye = async {
            // Deliver what is queued (e.g. the error that explains the
            // close), unless the queue overflowing is the reason.
            if code != code::OVER_CAPACITY {
                while let Ok(frame) = queue.try_recv() {
                    socket.feed(Message::Text(frame)).await?;
                }
            }
            socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await
        };
        // A stalled peer gets until its pong would be due to take the close.
        let _ = tokio::time::timeout(settings.pong_timeout, goodbye).await;
    }
}

/// Writes one frame and whatever else is queued, then flushes once.
async fn write_batch(
    socket: &mut WebSocket,
    first: Frame,
    queue: &mut Outgoing,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    for _ in 1..MAX_BATCH {
        match queue.try_recv() {
            Ok(frame) => socket.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    socket.flush().await
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(default, borrow)]
    user_info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UserData<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    user_info: Option<&'a RawValue>,
}

/// A user id given as a JSON string or number.
fn user_id_of(raw: &RawValue) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(raw.get()).ok()? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Session {
    /// A new connection of `app`: registered with its hub, with
    /// `pusher:connection_established` already queued. The receiver is the
    /// connection's outgoing queue.
    pub(super) fn open(app: Arc<App>, settings: &BrokerSettings) -> (Session, Outgoing) {
        let socket_id: Arc<str> = new_socket_id().into();
        let limits = app.hub.settings();
        let (conn, queue) =
            ConnHandle::bounded(socket_id.clone(), limits.queue_capacity, limits.queue_bytes);
        app.hub.connected(&conn);
        let session = Session {
            app,
            conn,
            subscriptions: HashMap::new(),
            user: None,
            client_events: RateWindow {
                start: Instant::now(),
                count: 0,
            },
            logged_subscription_limit: false,
        };
        session.send(&protocol::connection_established(
            &socket_id,
            settings.activity_timeout.as_secs(),
        ));
        (session, queue)
    }

    /// Where close requests for this connection arrive.
    pub(super) fn closer(&self) -> &Arc<Closer> {
        self.conn.closer()
    }

    pub(super) fn send(&self, frame: &Frame) {
        self.conn.send(frame);
    }

    pub(super) fn socket_id(&self) -> &str {
        &self.conn.socket_id
    }

    /// Processes one client message (the text of one Pusher frame).
    pub(super) fn handle(&mut self, text: &str) {
        match protocol::parse(text) {
            Ok(ClientFrame::Ping) => self.send(&protocol::pong()),
            Ok(ClientFrame::Pong) => {}
            Ok(ClientFrame::Subscribe {
                channel,
                auth,
                channel_data,
            }) => self.subscribe(channel, auth, channel_data),
            Ok(ClientFrame::Unsubscribe { channel }) => {
                if let Some(user) = self.subscriptions.remove(&channel) {
                    self.app
                        .hub
                        .unsubscribe(&channel, self.socket_id(), user.as_deref());
                }
            }
            Ok(ClientFrame::Signin { auth, user_data }) => self.signin(&auth, &user_data),
            Ok(ClientFrame::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(&event, &channel, &data),
            Ok(ClientFrame::Other { event }) => self.send(&protocol::error(
                None,
                &format!("Unsupported event {event:?}"),
            )),
            Err(message) => self.send(&protocol::error(None, &message)),
        }
    }

    fn refuse_subscription(&self, channel: &str, kind: &str, message: &str, status: u16) {
        self.send(&protocol::error(None, message));
        self.send(&protocol::subscription_error(
            channel, kind, message, status,
        ));
    }

    fn subscribe(&mut self, channel: String, auth: Option<String>, channel_data: Option<String>) {
        if let Err(message) = channel::validate(&channel) {
            return self.refuse_subscription(&channel, "InvalidChannel", &message, 400);
        }
        if self.subscriptions.contains_key(&channel) {
            return self.send(&protocol::error(
                None,
                &format!("Existing subscription to channel {channel}"),
            ));
        }
        let max = self.app.config.max_subscriptions_per_connection;
        if self.subscriptions.len() >= max {
            if !std::mem::replace(&mut self.logged_subscription_limit, true) {
                tracing::info!(
                    app = %self.app.config.id,
                    socket_id = %self.conn.socket_id,
                    max,
                    "a connection reached the subscription limit; further subscribes are refused"
                );
            }
            return self.refuse_subscription(
                &channel,
                "LimitReached",
                &format!(
                    "This connection is subscribed to {max} channels, the most allowed; \
                     unsubscribe from one first"
                ),
                400,
            );
        }
        let member = match self.authorize(&channel, auth.as_deref(), channel_data.as_deref()) {
            Ok(member) => member,
            Err(message) => return self.refuse_subscription(&channel, "AuthError", &message, 401),
        };
        let subscribed = self.app.hub.subscribe(
            &channel,
            &self.conn,
            member
                .as_ref()
                .map(|(id, info)| (id.as_str(), info.as_str())),
        );
        match subscribed {
            Ok(done) => {
                self.subscriptions
                    .insert(channel.clone(), member.map(|(id, _)| id));
                self.send(&protocol::subscription_succeeded(&channel, &done.data));
                if channel::is_cache(&channel) {
                    match done.cached {
                        Some(frame) => self.send(&frame),
                        None => self.send(&protocol::cache_miss(&channel)),
                    }
                }
            }
            Err(SubscribeRefused::PresenceFull(max)) => self.refuse_subscription(
                &channel,
                "LimitReached",
                &format!("Presence channel {channel} is full ({max} members)"),
                400,
            ),
        }
    }

    /// Checks the subscription's signature; for presence returns the member.
    fn authorize(
        &self,
        channel: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<Option<(String, String)>, String> {
        let config = &self.app.config;
        let kind = ChannelKind::of(channel);
        if kind == ChannelKind::ServerToUser {
            let wanted = &channel[channel::SERVER_TO_USER_PREFIX.len()..];
            return match &self.user {
                Some((id, _)) if id == wanted => Ok(None),
                _ => Err(format!(
                    "Channel {channel} is only for a connection signed in as {wanted}"
                )),
            };
        }
        if !kind.needs_auth() {
            return Ok(None);
        }
        let given =
            auth.ok_or_else(|| format!("Subscription to {channel} needs an auth signature"))?;
        let socket_id = self.socket_id();
        let (expected, string) = match (kind, channel_data) {
            (ChannelKind::Presence, Some(data)) => (
                signature::presence_auth(&config.key, &config.secret, socket_id, channel, data),
                format!("{socket_id}:{channel}:{data}"),
            ),
            _ => (
                signature::channel_auth(&config.key, &config.secret, socket_id, channel),
                format!("{socket_id}:{channel}"),
            ),
        };
        if !signature::equal(&expected, given) {
            return Err(format!(
                "Invalid signature: Expected HMAC SHA256 hex digest of {string}, but got {given}"
            ));
        }
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        match channel_data {
            Some(data) => {
                let parsed: ChannelData<'_> = serde_json::from_str(data)
                    .map_err(|e| format!("Invalid channel_data for {channel}: {e}"))?;
                let user_id = user_id_of(parsed.user_id)
                    .ok_or_else(|| format!("channel_data for {channel} needs a user_id"))?;
                if user_id.len() > MAX_USER_ID_LEN {
                    return Err(format!(
                        "Presence user_id is {} characters; at most {MAX_USER_ID_LEN} are allowed",
                        user_id.len()
                    ));
                }
                let info = parsed.user_info.map_or("{}", RawValue::get);
                if info.len() > MAX_USER_INFO_BYTES {
                    return Err(format!(
                        "Presence user_info is {} bytes; at most {MAX_USER_INFO_BYTES} are allowed",
                        info.len()
                    ));
                }
                Ok(Some((user_id, info.to_owned())))
            }
            // Signed-in connections may join presence without channel_data.
            None => match &self.user {
                Some((id, info)) => Ok(Some((id.clone(), info.clone()))),
                None => Err(format!(
                    "Subscription to {channel} needs channel_data (or sign in first)"
                )),
            },
        }
    }

    fn signin(&mut self, auth: &str, user_data: &str) {
        let config = &self.app.config;
        let expected =
            signature::user_auth(&config.key, &config.secret, self.socket_id(), user_data);
        if !signature::equal(&expected, auth) {
            let message = format!(
                "Invalid signature: Expected HMAC SHA256 hex digest of {}::user::{user_data}, but got {auth}",
                self.socket_id()
            );
            self.send(&protocol::error(Some(code::UNAUTHORIZED), &message));
            return self
                .conn
                .close(code::UNAUTHORIZED, "Invalid signin signature");
        }
        let parsed: Option<UserData<'_>> = serde_json::from_str(user_data).ok();
        let Some((id, info)) = parsed.and_then(|d| {
            let id = d.id.and_then(user_id_of)?;
            Some((id, d.user_info.map_or("{}", RawValue::get).to_owned()))
        }) else {
            return self.send(&protocol::error(
                None,
                "user_data must be JSON with a non-empty string id",
            ));
        };
        match &self.user {
            Some((current, _)) if current != &id => {
                return self.send(&protocol::error(
                    None,
                    &format!("This connection is already signed in as {current}"),
                ))
            }
            Some(_) => {}
            None => self.app.hub.signed_in(&id, &self.conn),
        }
        self.user = Some((id, info));
        self.send(&protocol::signin_success(user_data));
    }

    fn client_event(&mut self, event: &str, channel: &str, data: &str) {
        let config = &self.app.config;
        if !config.client_events {
            return self.send(&protocol::error(
                None,
                "Client events are not enabled for this app",
            ));
        }
        if !ChannelKind::of(channel).allows_client_events() {
            return self.send(&protocol::error(
                None,
                &format!("Client event rejected: {channel} is not a private or presence channel"),
            ));
        }
        let Some(member) = self.subscriptions.get(channel) else {
            return self.send(&protocol::error(
                None,
                &format!("Client event rejected: not subscribed to {channel}"),
            ));
        };
        if !self
            .client_events
            .allow(config.max_client_events_per_second)
        {
            return self.send(&protocol::error(
                Some(code::CLIENT_EVENT_REJECTED),
                &format!(
                    "Client event rejected - only {} client events per second are allowed",
                    config.max_client_events_per_second
                ),
            ));
        }
        if data.len() > MAX_CLIENT_EVENT_BYTES {
            return self.send(&protocol::error(
                None,
                &format!(
                    "Client event rejected - data is {} bytes; at most {MAX_CLIENT_EVENT_BYTES} are allowed",
                    data.len()
                ),
            ));
        }
        let user_id = member.as_deref();
        let frame = protocol::client_event(event, channel, data, user_id);
        self.app
            .hub
            .publish(channel, &frame, Some(self.socket_id()));
        self.app.hub.hook(HookEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data: data.to_owned(),
            socket_id: self.socket_id().to_owned(),
            user_id: user_id.map(str::to_owned),
        });
    }

    /// Leaves every channel and the hub, as a closed connection must.
    pub(super) fn cleanup(&mut self) {
        let hub = &self.app.hub;
        for (channel, user) in self.subscriptions.drain() {
            hub.unsubscribe(&channel, &self.conn.socket_id, user.as_deref());
        }
        if let Some((id, _)) = self.user.take() {
            hub.signed_out(&id, &self.conn.socket_id);
        }
        hub.disconnected(&self.conn.socket_id);
    }
}
