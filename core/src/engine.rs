//! The `Engine`: validates requests, stores through the [`Store`], and
//! hands events to the transports through [`crate::delivery`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{EngineConfig, TransportConfig};
use crate::delivery::{Delivery, Route, Takes, Unstored};
use crate::domain::message::{validate_body, validate_client_msg_id, validate_emoji};
use crate::domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, ReadState, Seq,
    UserId,
};
use crate::error::{Error, Result};
use crate::event;
use crate::store::{self, Appended, MessageChange, OutboxRow, Store};
use crate::transport::polling::PollResult;
use crate::transport::{LocalTransport, PollingTransport, Subscription, Transport};

/// What [`Engine::send`] returns: the stored message, and whether this call
/// stored it (`false` for a retry with a known `client_msg_id`).
pub type Sent = Appended;

/// A message to send: from a user to a user, or into a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub from: String,
    /// The recipient; or give `conversation_id`.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    pub body: String,
    /// Idempotency key: a retry with the same key stores nothing new.
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

impl SendRequest {
    /// A message from `from` to `to`.
    pub fn to(from: impl Into<String>, to: impl Into<String>, body: impl Into<String>) -> Self {
        SendRequest {
            from: from.into(),
            to: Some(to.into()),
            conversation_id: None,
            body: body.into(),
            client_msg_id: None,
        }
    }

    /// A message into an existing conversation id such as `1-18`.
    pub fn in_conversation(
        from: impl Into<String>,
        conversation_id: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        SendRequest {
            from: from.into(),
            to: None,
            conversation_id: Some(conversation_id.into()),
            body: body.into(),
            client_msg_id: None,
        }
    }

    pub fn client_msg_id(mut self, id: impl Into<String>) -> Self {
        self.client_msg_id = Some(id.into());
        self
    }

    fn validate(self) -> Result<NewMessage> {
        let sender = UserId::new(self.from)?;
        let conversation_id = match (self.to, self.conversation_id) {
            (Some(to), None) => ConversationId::between(&sender, &UserId::new(to)?)?,
            (None, Some(conv)) => member_conversation(&sender, &conv)?,
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "give either `to` or `conversation_id`, not both",
                ))
            }
            (None, None) => {
                return Err(Error::invalid(
                    "a message needs a recipient (`to`) or a `conversation_id`",
                ))
            }
        };
        if let Some(id) = &self.client_msg_id {
            validate_client_msg_id(id)?;
        }
        Ok(NewMessage {
            conversation_id,
            sender_id: sender,
            body: validate_body(&self.body)?,
            client_msg_id: self.client_msg_id,
            created_at: store::now_ms(),
        })
    }
}

/// Parses a conversation id and checks that `user` is one of its two members.
fn member_conversation(user: &UserId, conversation: &str) -> Result<ConversationId> {
    let conv = ConversationId::parse(conversation)?;
    if !conv.has_member(user) {
        return Err(Error::Forbidden(format!(
            "user {user} is not in conversation {conv}"
        )));
    }
    Ok(conv)
}

/// Builds an [`Engine`]; takes what cannot be serialized.
#[derive(Default)]
pub struct EngineBuilder {
    config: EngineConfig,
    store: Option<Arc<dyn Store>>,
    transports: Vec<Arc<dyn Transport>>,
    broker: Option<Arc<dyn Transport>>,
    runtime: Option<tokio::runtime::Handle>,
    plugins: Vec<crate::plugin::StaticPlugin>,
    outbox_lease: Option<std::time::Duration>,
}

impl EngineBuilder {
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this store instead of opening `config.store`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a transport; events go to every one, in the order added.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transports.push(transport);
        self
    }

    /// The transport that `{"kind": "broker"}` stands for: the in-process
    /// broker of `tidings serve`.
    pub fn broker(mut self, transport: Arc<dyn Transport>) -> Self {
        self.broker = Some(transport);
        self
    }

    /// How long a recovered outbox row stays this engine's (default 30 s),
    /// and how old a row must be before an engine that did not write it
    /// recovers it: when several engines share one store, the rows of one
    /// that stopped without a goodbye are taken over this long after.
    pub fn outbox_lease(mut self, lease: std::time::Duration) -> Self {
        self.outbox_lease = Some(lease);
        self
    }

    /// The runtime background tasks run on (default: the current one).
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Adds a compiled-in plugin (after those of `config.plugins`), e.g.
    /// `tidings_plugin::descriptor::<MyPlugin>()`; `config` goes to its `init`.
    pub fn plugin(
        mut self,
        descriptor: &'static tidings_plugin::abi::tidings_plugin_v1,
        config: serde_json::Value,
    ) -> Self {
        self.plugins
            .push(crate::plugin::StaticPlugin { descriptor, config });
        self
    }

    /// Opens the store and starts delivering what was left pending.
    pub async fn build(self) -> Result<Engine> {
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Config(
                    "no tokio runtime: build the engine inside one or pass EngineBuilder::runtime"
                        .into(),
                )
            })?,
        };
        let store = match self.store {
            Some(store) => store,
            None => store::open(&self.config.store).await?,
        };
        let plugins =
            crate::plugin::Plugins::load(&self.config.plugins, self.plugins, &runtime).await?;
        let local = LocalTransport::new(self.config.event_capacity);
        let mut transports: Vec<Arc<dyn Transport>> = Vec::new();
        let mut polling = None;
        for configured in &self.config.transports {
            transports.push(match configured {
                TransportConfig::Pusher {
                    url,
                    timeout_ms,
                    attempts,
                } => pusher_transport(url, *timeout_ms, *attempts)?,
                TransportConfig::Broker => self.broker.clone().ok_or_else(|| {
                    Error::Config(
                        "transport kind \"broker\" is the in-process broker of `tidings serve`; \
                         elsewhere use kind \"pusher\" with the server's URL"
                            .into(),
                    )
                })?,
                TransportConfig::Polling { capacity } => {
                    let log = Arc::new(PollingTransport::new(*capacity));
                    polling = Some(log.clone());
                    log
                }
            });
        }
        transports.extend(self.transports);
        transports.extend(plugins.transports());
        // In-process subscribers get typing from `Engine::typing` itself,
        // before it returns.
        let mut routes = vec![Route {
            transport: Arc::new(local.clone()),
            takes: Takes {
                typing: false,
                published: true,
            },
        }];
        routes.extend(transports.into_iter().map(|transport| Route {
            transport,
            takes: Takes::ALL,
        }));
        if let Some(observer) = plugins.observer() {
            // Published events go everywhere but back to on_event, so a
            // plugin that publishes from on_event cannot loop.
            routes.push(Route {
                transport: observer,
                takes: Takes {
                    typing: true,
                    published: false,
                },
            });
        }
        let delivery = Delivery::start(
            &runtime,
            store.clone(),
            routes,
            self.outbox_lease.unwrap_or(crate::delivery::DEFAULT_LEASE),
            plugins.start_after_send(),
        )
        .await?;
        let inner = Arc::new(Inner {
            store,
            local,
            polling,
            delivery,
            plugins,
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        inner.plugins.start_publishing(Arc::new(move |event| {
            if let Some(inner) = weak.upgrade() {
                inner.delivery.publish(Arc::new(event), Unstored::Published);
            }
        }));
        Ok(Engine { inner })
    }
}

struct Inner {
    store: Arc<dyn Store>,
    local: LocalTransport,
    polling: Option<Arc<PollingTransport>>,
    delivery: Delivery,
    plugins: crate::plugin::Plugins,
    closed: AtomicBool,
}

#[cfg(feature = "pusher")]
fn pusher_transport(url: &str, timeout_ms: u64, attempts: u32) -> Result<Arc<dyn Transport>> {
    use crate::transport::pusher::{PusherTransport, RetryPolicy};
    let policy = RetryPolicy {
        timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
        attempts: attempts.max(1),
        ..RetryPolicy::default()
    };
    Ok(Arc::new(PusherTransport::from_url(url, policy)?))
}

#[cfg(not(feature = "pusher"))]
fn pusher_transport(_url: &str, _timeout_ms: u64, _attempts: u32) -> Result<Arc<dyn Transport>> {
    Err(Error::Config(
        "the Pusher transport is not compiled in; enable the cargo feature `pusher`".into(),
    ))
}

/// The messaging engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine on `config` with the default transports.
    pub async fn open(config: EngineConfig) -> Result<Engine> {
        Engine::builder().config(config).build().await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Every event the engine delivers from now on (including `typing`).
    pub fn subscribe(&self) -> Subscription {
        self.inner.local.subscribe()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Stores a message and returns it once it is durable; its `new-message`
    /// event is on its way to every transport by then (and `after_send`
    /// plugins see it after this returns).
    pub async fn send(&self, request: SendRequest) -> Result<Sent> {
        self.check_open()?;
        let new = request.validate()?;
        let new = self.inner.plugins.before_send(new).await?;
        self.inner.store.append(new).await
    }

    /// A page of history, newest first.
    pub async fn history(&self, conversation: &str, page: PageRequest) -> Result<Page<Message>> {
        self.check_open()?;
        page.validate()?;
        let conv = ConversationId::parse(conversation)?;
        self.inner.store.history(&conv, page).await
    }

    /// Messages after `after`, oldest first: what a client missed.
    pub async fn messages_after(
        &self,
        conversation: &str,
        after: Seq,
        max: u32,
    ) -> Result<Vec<Message>> {
        self.check_open()?;
        let conv = ConversationId::parse(conversation)?;
        self.inner.store.messages_after(&conv, after, max).await
    }

    /// One message by id.
    pub async fn message(&self, id: MessageId) -> Result<Message> {
        self.check_open()?;
        self.inner
            .store
            .message(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("message {id} does not exist")))
    }

    /// Marks `conversation` read by `user` up to `up_to`; emits
    /// `messages-read` when the mark moved.
    pub async fn mark_read(&self, user: &str, conversation: &str, up_to: Seq) -> Result<ReadState> {
        self.check_open()?;
        let user = UserId::new(user)?;
        let conv = member_conversation(&user, conversation)?;
        let update = self.inner.store.mark_read(&conv, &user, up_to).await?;
        Ok(update.state)
    }

    /// The user's read mark and number of unread messages in a conversation.
    pub async fn unread(&self, user: &str, conversation: &str) -> Result<(ReadState, u64)> {
        self.check_open()?;
        let user = UserId::new(user)?;
        let conv = member_conversation(&user, conversation)?;
        self.inner.store.unread(&conv, &user).await
    }

    /// The user's conversations, newest activity first, with unread counts.
    pub async fn inbox(&self, user: &str, limit: u32) -> Result<Vec<InboxEntry>> {
        self.check_open()?;
        let user = UserId::new(user)?;
        self.inner.store.inbox(&user, limit).await
    }

    /// Messages in the user's conversations containing every word of `query`.
    pub async fn search(&self, user: &str, query: &str, max: u32) -> Result<Vec<Message>> {
        self.check_open()?;
        let user = UserId::new(user)?;
        self.inner.store.search(&user, query, max).await
    }

    /// Tells the conversation that `user` is typing. Never stored: the
    /// engine's own subscribers have it when this returns, the transports
    /// get it best effort (never retried).
    pub async fn typing(&self, user: &str, conversation: &str) -> Result<()> {
        self.check_open()?;
        let user = UserId::new(user)?;
        let conv = member_conversation(&user, conversation)?;
        let payload = event::to_payload(&event::Typing {
            conversation_id: conv.clone(),
            user_id: user,
        });
        let event = Arc::new(event::Event::new(conv.channel(), event::TYPING, payload));
        // In-process subscribers have it when this returns; the other
        // transports get it through their lanes, best effort.
        self.inner.local.publish_shared(event.clone());
        self.inner.delivery.publish(event, Unstored::Typing);
        Ok(())
    }

    /// Replaces the body of a message; only its sender may.
    pub async fn edit(&self, user: &str, id: MessageId, body: &str) -> Result<Message> {
        let body = validate_body(body)?;
        self.change(user, id, MessageChange::Edit { body }).await
    }

    /// Soft-deletes a message: its body is cleared, its seq stays. Sender only.
    pub async fn delete(&self, user: &str, id: MessageId) -> Result<Message> {
        self.change(user, id, MessageChange::Delete).await
    }

    /// Sets the user's one reaction on a message (replacing an earlier one).
    pub async fn react(&self, user: &str, id: MessageId, emoji: &str) -> Result<Message> {
        validate_emoji(emoji)?;
        let emoji = emoji.to_owned();
        self.change(user, id, MessageChange::React { emoji }).await
    }

    /// Takes the user's reaction back.
    pub async fn unreact(&self, user: &str, id: MessageId) -> Result<Message> {
        self.change(user, id, MessageChange::Unreact).await
    }

    async fn change(&self, user: &str, id: MessageId, change: MessageChange) -> Result<Message> {
        self.check_open()?;
        let user = UserId::new(user)?;
        let message = self
            .inner
            .store
            .change(id, &user, change, store::now_ms())
            .await?;
        Ok(message)
    }

    /// Events from the polling log (transport kind `polling`) on `channels`
    /// after `cursor`, waiting up to `wait` for the first.
    pub async fn poll(
        &self,
        channels: &[String],
        cursor: u64,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<PollResult> {
        self.check_open()?;
        let log = self.inner.polling.as_ref().ok_or_else(|| {
            Error::Config("no polling transport is configured (transport kind \"polling\")".into())
        })?;
        Ok(log.poll(channels, cursor, max, wait).await)
    }

    /// The configured plugins: loaded or not, disabled or not, with the
    /// calls and time spent in each hook.
    pub fn plugins(&self) -> Vec<crate::plugin::PluginStatus> {
        self.inner.plugins.status()
    }

    /// Events not yet delivered, oldest first, with their last error.
    pub async fn pending_deliveries(&self, max: u32) -> Result<Vec<OutboxRow>> {
        self.inner.store.list_outbox(max).await
    }

    /// Refuses new calls, delivers what is pending (for a few seconds at
    /// most), and stops background work. Subscriptions then end (`None`)
    /// once they have read the events they hold.
    pub async fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.delivery.shutdown().await;
        self.inner.plugins.shutdown().await;
        // After the last deliveries: subscribers read what they hold, then end.
        self.inner.local.close();
    }
}
