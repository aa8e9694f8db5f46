//! The `Store` seam: durability for conversations, messages, read state and
//! the outbox. Backends are chosen by URL scheme at runtime.
//!
//! | URL | backend |
//! |---|---|
//! | `memory:` | in-process, for tests |
//! | `sqlite://PATH`, `sqlite::memory:` | embedded SQLite (feature `sqlite`, default) |
//! | `postgres://…`, `postgresql://…` | PostgreSQL (feature `postgres`) |

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, ReadState, Seq,
    UserId,
};
use crate::error::{Error, Result};

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod search;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Largest `max` for [`Store::messages_after`] and [`Store::search`].
pub const MAX_BATCH: u32 = 1000;

/// Id of an outbox row; rows are claimed in id order.
pub type OutboxId = i64;

/// The result of [`Store::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: Message,
    /// `false` when `client_msg_id` matched an earlier message, which is
    /// returned instead and nothing new was stored.
    pub created: bool,
}

/// The result of [`Store::mark_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUpdate {
    pub state: ReadState,
    /// `false` when the user had already read that far (no event is due).
    pub advanced: bool,
}

/// A change to a message other than its creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    Edit { body: String },
    Delete,
    React { emoji: String },
    Unreact,
}

/// A durable transport's slot in the store's registry of transports
/// ([`Store::register_transports`]): bit `1 << slot` of an outbox row's
/// masks. At most [`MAX_TRANSPORT_SLOTS`] are registered.
pub type TransportSlot = u8;

/// Durable transports a store can track delivery for.
pub const MAX_TRANSPORT_SLOTS: usize = 63;

/// A pending event read back from the outbox to recover its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: OutboxId,
    pub conversation_id: ConversationId,
    pub event: String,
    pub payload: Bytes,
}

/// A pending outbox row as `tidings outbox` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub conversation_id: ConversationId,
    pub event: String,
    /// The registered transports that have not taken it yet.
    pub pending_for: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// A transport refused it for good; it will not be retried there.
    pub refused: bool,
}

/// What a committed change announces, handed to the commit sinks in commit
/// order right after the commit and before the caller is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its outbox row; `None` when no durable transport is registered (no
    /// row was written).
    pub outbox_id: Option<OutboxId>,
    pub conversation_id: ConversationId,
    pub event: &'static str,
    pub body: CommittedBody,
}

/// A committed event's payload: the stored message (serialized by the
/// receiver, off the writer), or the payload the store already built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommittedBody {
    Message(Message),
    Payload(Bytes),
}

impl Committed {
    /// The `new-message` event of a message an append stored.
    pub(crate) fn new_message(appended: &Appended, outbox_id: Option<OutboxId>) -> Committed {
        Committed {
            outbox_id,
            conversation_id: appended.message.conversation_id.clone(),
            event: crate::event::NEW_MESSAGE,
            body: CommittedBody::Message(appended.message.clone()),
        }
    }

    /// The event's JSON payload.
    pub fn payload(&self) -> Bytes {
        match &self.body {
            CommittedBody::Message(m) => crate::event::message_payload(m),
            CommittedBody::Payload(p) => p.clone(),
        }
    }
}

/// Receives every batch of committed events, in commit order. Called on
/// the store's writer: it must only hand the batch on, never block.
pub type CommitSink = Arc<dyn Fn(Vec<Committed>) + Send + Sync>;

/// The sinks of one store, called in registration order.
#[derive(Default)]
pub struct CommitSinks {
    sinks: std::sync::RwLock<Vec<(u64, CommitSink)>>,
    next: std::sync::atomic::AtomicU64,
}

impl CommitSinks {
    pub fn add(&self, sink: CommitSink) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, sink));
        id
    }

    pub fn remove(&self, id: u64) {
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    /// Hands `batch` to every sink (nothing when it is empty).
    pub fn publish(&self, batch: Vec<Committed>) {
        if batch.is_empty() {
            return;
        }
        let sinks = self.sinks.read().unwrap_or_else(|e| e.into_inner());
        if let Some(((_, last), rest)) = sinks.split_last() {
            for (_, sink) in rest {
                sink(batch.clone());
            }
            last(batch);
        }
    }
}

/// Which rows a recovery pass may lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest<'a> {
    /// Who claims (one engine: a node of a cluster).
    pub owner: &'a str,
    /// For which transport: rows that transport has not taken or refused.
    pub slot: TransportSlot,
    pub max: u32,
    /// How long the rows stay the owner's.
    pub lease: std::time::Duration,
    /// Only rows queued at least this long ago (rows of a live engine are
    /// delivered from its memory; a periodic pass looks only for strays).
    pub min_age: std::time::Duration,
}

/// Durable storage. Every method is one transaction; an error means nothing
/// of that call was written.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`memory`, `sqlite`, `postgres`), for logs.
    fn backend(&self) -> &'static str;

    /// Stores a message with the next seq of its conversation and an outbox
    /// row for its `new-message` event, in one transaction; returns after
    /// the commit. Idempotent on `(conversation, client_msg_id)`: a retry
    /// returns the first message; the same key from another sender is a
    /// `Conflict`.
    async fn append(&self, msg: NewMessage) -> Result<Appended>;

    /// Newest first, seq below `page.before`.
    async fn history(&self, conv: &ConversationId, page: PageRequest) -> Result<Page<Message>>;

    /// Oldest first, seq above `after`, at most `max` (1..=[`MAX_BATCH`]).
    async fn messages_after(
        &self,
        conv: &ConversationId,
        after: Seq,
        max: u32,
    ) -> Result<Vec<Message>>;

    /// One message by id.
    async fn message(&self, id: MessageId) -> Result<Option<Message>>;

    /// The conversation's last seq (0 when it has no message).
    async fn last_seq(&self, conv: &ConversationId) -> Result<Seq>;

    /// Moves `user`'s read mark up to `min(up_to, last seq)`; never back.
    /// Writes a `messages-read` outbox row when it advanced.
    async fn mark_read(
        &self,
        conv: &ConversationId,
        user: &UserId,
        up_to: Seq,
    ) -> Result<ReadUpdate>;

    /// The user's read mark and unread count in one conversation.
    async fn unread(&self, conv: &ConversationId, user: &UserId) -> Result<(ReadState, u64)>;

    /// The user's conversations, newest activity first.
    async fn inbox(&self, user: &UserId, limit: u32) -> Result<Vec<InboxEntry>>;

    /// Messages of the user's conversations containing every word of
    /// `query` (whole words, case-insensitive), newest first; deleted
    /// messages never match.
    async fn search(&self, user: &UserId, query: &str, max: u32) -> Result<Vec<Message>>;

    /// Edits, deletes or reacts to a message, with its outbox row, after the
    /// checks: only the sender edits or deletes, only a member reacts, a
    /// deleted message takes no change.
    async fn change(
        &self,
        id: MessageId,
        user: &UserId,
        change: MessageChange,
        at: i64,
    ) -> Result<Message>;

    /// Registers durable transports by key (slots are created on first
    /// use and kept), returning their slots in order. Every outbox row
    /// written from then on is owed to every registered transport, until
    /// each took it ([`ack_outbox`](Self::ack_outbox)) or refused it; rows
    /// from before a transport was registered are not owed to it. Also
    /// returns the registry to what the store says (rows written by another
    /// process or node).
    async fn register_transports(&self, keys: &[String]) -> Result<Vec<TransportSlot>>;

    /// Forgets a registered transport: rows stop waiting for it. Returns
    /// whether it was registered.
    async fn forget_transport(&self, key: &str) -> Result<bool>;

    /// The receivers of this store's committed events.
    fn commit_sinks(&self) -> &CommitSinks;

    /// Adds a receiver of every committed event (see [`Committed`]);
    /// returns its id for [`remove_commit_sink`](Self::remove_commit_sink).
    fn add_commit_sink(&self, sink: CommitSink) -> u64 {
        self.commit_sinks().add(sink)
    }

    fn remove_commit_sink(&self, id: u64) {
        self.commit_sinks().remove(id)
    }

    /// Claims up to `request.max` rows that `request.slot` has not taken,
    /// in id order, for `request.owner` until `request.lease` from now, so
    /// that several engines sharing one store (nodes of a cluster) recover
    /// each conversation from one node at a time: a conversation whose
    /// rows another owner holds an unexpired lease on is skipped whole. The
    /// owner's own rows are returned again (renewing their lease) until
    /// acked, refused or released. A `new-message` row whose message is
    /// gone is refused with that reason, never returned empty.
    async fn lease_outbox(&self, request: LeaseRequest<'_>) -> Result<Vec<OutboxItem>>;

    /// Gives up `owner`'s leases (a graceful stop), so another owner may
    /// claim those rows at once.
    async fn release_outbox(&self, owner: &str) -> Result<()>;

    /// Records that the transport in `slot` took these rows; a row every
    /// registered transport took is removed.
    async fn ack_outbox(&self, slot: TransportSlot, ids: &[OutboxId]) -> Result<()>;

    /// Records a failed attempt of the transport in `slot`. A retryable
    /// failure leaves the row pending; a permanent one (`refused`) keeps it
    /// with the reason, and that transport never claims it again.
    async fn fail_outbox(
        &self,
        slot: TransportSlot,
        id: OutboxId,
        error: &str,
        refused: bool,
    ) -> Result<()>;

    /// Pending and refused rows, oldest first, for operators.
    async fn list_outbox(&self, max: u32) -> Result<Vec<OutboxRow>>;
}

/// Opens the store a URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::open_url(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PostgresStore::connect(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(not_compiled_in("sqlite")),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(not_compiled_in("postgres")),
        _ => Err(Error::Config(format!(
            "unknown store URL {:?}; expected memory:, sqlite://PATH or postgres://...",
            redact_url(url)
        ))),
    }
}

#[allow(dead_code)] // unused when every backend is compiled in
fn not_compiled_in(feature: &str) -> Error {
    Error::Config(format!(
        "the {feature} store is not compiled in; enable the cargo feature `{feature}`"
    ))
}

/// The URL with any password replaced, for error messages and logs: the
/// userinfo form (`postgres://u:pw@h/db`, also without `://`) becomes
/// `u:***@`, and the value of every `password=`, `secret=`, `token=`, ...
/// parameter (query `?`/`&`/`;`, or space-separated `key=value` words)
/// becomes `***`. A `/` in the password does not end the userinfo: what is
/// before the last `@` (outside the query) is taken for userinfo when its
/// first `:` comes before any `/`, so a few URLs are hidden more than needed.
pub fn redact_url(url: &str) -> String {
    /// Whether a URL or connection-string parameter holds a credential.
    fn is_secret_key(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        matches!(key.as_str(), "pass" | "pwd")
            || ["password", "passwd", "secret", "token", "api_key", "apikey"]
                .iter()
                .any(|word| key.contains(word))
    }

    fn is_separator(c: char) -> bool {
        matches!(c, '?' | '&' | ';') || c.is_whitespace()
    }

    /// `text` with the value of every secret `key=value` parameter replaced
    /// by `***`; a parameter starts the text or follows `?`, `&`, `;` or
    /// whitespace, and its value ends at the next of those or `#` (a value
    /// in single quotes, as libpq writes them, at its closing quote).
    fn redact_params(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(eq) = rest.find('=') {
            let key_start = rest[..eq]
                .char_indices()
                .rev()
                .find(|&(_, c)| is_separator(c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let key = &rest[key_start..eq];
            let value = &rest[eq + 1..];
            let value_len = match value.strip_prefix('\'') {
                Some(quoted) => quoted.find('\'').map_or(value.len(), |end| end + 2),
                None => value
                    .find(|c: char| is_separator(c) || c == '#')
                    .unwrap_or(value.len()),
            };
            out.push_str(&rest[..=eq]);
            if is_secret_key(key) && value_len > 0 {
                out.push_str("***");
            } else {
                out.push_str(&value[..value_len]);
            }
            rest = &value[value_len..];
        }
        out.push_str(rest);
        out
    }

    // A scheme is a letter, then letters, digits, `+`, `-`, `.`, then `://`
    // (one later in the text, say in a password, is not one; a text that
    // starts with `://` has none, so its `:…@` is taken for a password:
    // hiding too much is the safe side).
    let scheme_len = url
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(url.len());
    let start = match url[scheme_len..].starts_with("://")
        && url.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        true => scheme_len + 3,
        false => 0,
    };
    let query = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| start + i);
    let userinfo = url[start..query].rfind('@').and_then(|at| {
        let userinfo = &url[start..start + at];
        let colon = userinfo.find(':')?;
        match userinfo.find('/') {
            Some(slash) if slash < colon => None,
            _ => Some((start + colon, start + at)),
        }
    });
    match userinfo {
        Some((colon, at)) => redact_params(&format!("{}:***{}", &url[..colon], &url[at..])),
        None => redact_params(url),
    }
}

pub(crate) fn check_max(max: u32) -> Result<()> {
    if !(1..=MAX_BATCH).contains(&max) {
        return Err(Error::invalid(format!(
            "max must be 1-{MAX_BATCH}, got {max}"
        )));
    }
    Ok(())
}

/// The error for a message id that does not exist.
pub(crate) fn no_message(id: MessageId) -> Error {
    Error::NotFound(format!("message {id} does not exist"))
}

/// Checks a change against a message and who asks for it; the one rule set
/// every backend applies before writing.
pub(crate) fn check_change(message: &Message, user: &UserId, change: &MessageChange) -> Result<()> {
    if message.deleted_at.is_some() {
        return Err(Error::Conflict(format!(
            "message {} was deleted and cannot change",
            message.id
        )));
    }
    match change {
        MessageChange::Edit { .. } | MessageChange::Delete if &message.sender_id != user => {
            Err(Error::Forbidden(format!(
                "user {user} did not send message {} and cannot change it",
                message.id
            )))
        }
        MessageChange::React { .. } | MessageChange::Unreact
            if !message.conversation_id.has_member(user) =>
        {
            Err(Error::Forbidden(format!(
                "user {user} is not in conversation {}",
                message.conversation_id
            )))
        }
        _ => Ok(()),
    }
}

/// Applies a checked change to a message in memory and names its event.
pub(crate) fn apply_change(
    message: &mut Message,
    user: &UserId,
    change: MessageChange,
    at: i64,
) -> &'static str {
    use crate::domain::Reaction;
    use crate::event;
    match change {
        MessageChange::Edit { body } => {
            message.body = body;
            message.edited_at = Some(at);
            event::MESSAGE_EDITED
        }
        MessageChange::Delete => {
            message.body.clear();
            message.deleted_at = Some(at);
            message.reactions.clear();
            event::MESSAGE_DELETED
        }
        MessageChange::React { emoji } => {
            match message.reactions.iter_mut().find(|r| &r.user_id == user) {
                Some(existing) => existing.emoji = emoji,
                None => {
                    message.reactions.push(Reaction {
                        user_id: user.clone(),
                        emoji,
                    });
                    // Listed by user id, as every backend reads them back.
                    message
                        .reactions
                        .sort_by(|a, b| a.user_id.as_str().cmp(b.user_id.as_str()));
                }
            }
            event::REACTION
        }
        MessageChange::Unreact => {
            message.reactions.retain(|r| &r.user_id != user);
            event::REACTION
        }
    }
}

/// The outbox payload of a change: the full message, or for reactions the
/// [`event::ReactionChanged`](crate::event::ReactionChanged) record.
pub(crate) fn change_payload(message: &Message, user: &UserId, event_name: &str) -> Bytes {
    use crate::event;
    if event_name == event::REACTION {
        let emoji = message
            .reactions
            .iter()
            .find(|r| &r.user_id == user)
            .map(|r| r.emoji.clone());
        event::to_payload(&event::ReactionChanged {
            conversation_id: message.conversation_id.clone(),
            message_id: message.id,
            seq: message.seq,
            user_id: user.clone(),
            emoji,
        })
    } else {
        event::message_payload(message)
    }
}

/// The bit of `slot` in an outbox row's `pending` and `refused_by` masks.
pub(crate) fn slot_bit(slot: TransportSlot) -> i64 {
    1i64 << (slot as u32 % MAX_TRANSPORT_SLOTS as u32)
}

/// The store's registry of durable transports: `(key, slot)` pairs.
pub(crate) type Registry = Vec<(String, TransportSlot)>;

/// The slots of `keys` given the registry so far (`(key, slot)` pairs):
/// known keys keep theirs, new ones take the lowest free slots. Returns
/// the slots in `keys` order and the entries to add.
pub(crate) fn assign_slots(
    registry: &[(String, TransportSlot)],
    keys: &[String],
) -> Result<(Vec<TransportSlot>, Registry)> {
    let mut taken: Vec<(String, TransportSlot)> = registry.to_vec();
    let mut added = Vec::new();
    let mut slots = Vec::with_capacity(keys.len());
    for key in keys {
        if key.is_empty() || key.len() > 200 {
            return Err(Error::Config(format!(
                "transport key {key:?} must be 1-200 bytes long"
            )));
        }
        if let Some((_, slot)) = taken.iter().find(|(k, _)| k == key) {
            slots.push(*slot);
            continue;
        }
        let free = (0..MAX_TRANSPORT_SLOTS as TransportSlot)
            .find(|s| !taken.iter().any(|(_, t)| t == s))
            .ok_or_else(|| {
                Error::Config(format!(
                    "transport {key:?} cannot be registered: the store already tracks \
                     {MAX_TRANSPORT_SLOTS} transports (`tidings outbox --forget KEY` frees one)"
                ))
            })?;
        taken.push((key.clone(), free));
        added.push((key.clone(), free));
        slots.push(free);
    }
    Ok((slots, added))
}

/// The registered transports' keys whose bits are set in `mask`.
pub(crate) fn keys_in(registry: &[(String, TransportSlot)], mask: i64) -> Vec<String> {
    let mut keys: Vec<&(String, TransportSlot)> = registry
        .iter()
        .filter(|(_, slot)| mask & slot_bit(*slot) != 0)
        .collect();
    keys.sort_by_key(|(_, slot)| *slot);
    keys.into_iter().map(|(k, _)| k.clone()).collect()
}

/// The reason a `new-message` row is refused when its message is gone.
pub(crate) fn missing_message(id: Option<MessageId>) -> String {
    match id {
        Some(id) => format!("message {id} of this event no longer exists"),
        None => "the event names no message and carries no payload".to_owned(),
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A lease's length in milliseconds (at least 1), for the backends.
pub(crate) fn lease_ms(lease: std::time::Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The stored message a retry returns, or `Conflict` when another sender
/// used the same key.
pub(crate) fn existing_for_retry(first: &Message, retry: &NewMessage) -> Result<Message> {
    if first.sender_id != retry.sender_id {
        return Err(Error::Conflict(format!(
            "client_msg_id {:?} is already used in conversation {} by user {}",
            retry.client_msg_id.as_deref().unwrap_or_default(),
            first.conversation_id,
            first.sender_id
        )));
    }
    Ok(first.clone())
}
