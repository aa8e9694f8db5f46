//! In-process store for tests and hosts that need no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    apply_change, change_payload, check_change, check_max, existing_for_retry, no_message, search,
    Appended, MessageChange, OutboxId, OutboxItem, OutboxRow, ReadUpdate, Store,
};
use crate::domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, ReadState, Seq,
    UserId,
};
use crate::error::{Error, Result};
use crate::event;

#[derive(Default)]
struct Conversation {
    /// Message ids in seq order (index = seq - 1).
    messages: Vec<MessageId>,
    read: HashMap<UserId, Seq>,
}

struct PendingEvent {
    conversation_id: ConversationId,
    event: &'static str,
    /// `None`: the `new-message` payload of `message`, built when claimed.
    payload: Option<bytes::Bytes>,
    message: MessageId,
    attempts: u32,
    last_error: Option<String>,
    refused: bool,
    /// Who holds the row, and until when (ms since the epoch).
    lease: Option<(String, i64)>,
}

#[derive(Default)]
struct State {
    messages: Vec<Message>,
    conversations: HashMap<ConversationId, Conversation>,
    outbox: BTreeMap<OutboxId, PendingEvent>,
    next_outbox: OutboxId,
}

impl State {
    fn message(&self, id: MessageId) -> Option<&Message> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.messages.get(i))
    }

    fn push_outbox(&mut self, event: PendingEvent) {
        self.next_outbox += 1;
        self.outbox.insert(self.next_outbox, event);
    }

    fn unread(&self, conv: &ConversationId, user: &UserId) -> (Seq, u64) {
        let Some(c) = self.conversations.get(conv) else {
            return (0, 0);
        };
        let read = c.read.get(user).copied().unwrap_or(0);
        let unread = c.messages[read as usize..]
            .iter()
            .filter_map(|&id| self.message(id))
            .filter(|m| &m.sender_id != user && m.deleted_at.is_none())
            .count();
        (read, unread as u64)
    }
}

/// Everything in one mutex; operations are short and never await inside it.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a
        // way later calls rely on, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let conv = st
            .conversations
            .entry(msg.conversation_id.clone())
            .or_default();
        if let Some(key) = &msg.client_msg_id {
            let messages = &st.messages;
            if let Some(first) = conv
                .messages
                .iter()
                .map(|&id| &messages[id as usize - 1])
                .find(|m| m.client_msg_id.as_ref() == Some(key))
            {
                return existing_for_retry(first, &msg).map(|message| Appended {
                    message,
                    created: false,
                });
            }
        }
        let id = st.messages.len() as MessageId + 1;
        let conv = st
            .conversations
            .get_mut(&msg.conversation_id)
            .ok_or_else(|| Error::storage_msg("conversation vanished"))?;
        conv.messages.push(id);
        let seq = conv.messages.len() as Seq;
        let message = Message {
            id,
            conversation_id: msg.conversation_id,
            seq,
            sender_id: msg.sender_id,
            body: msg.body,
            client_msg_id: msg.client_msg_id,
            created_at: msg.created_at,
            edited_at: None,
            deleted_at: None,
            reactions: Vec::new(),
        };
        st.messages.push(message.clone());
        st.push_outbox(PendingEvent {
            conversation_id: message.conversation_id.clone(),
            event: event::NEW_MESSAGE,
            payload: None,
            message: id,
            attempts: 0,
            last_error: None,
            refused: false,
            lease: None,
        });
        Ok(Appended {
            message,
            created: true,
        })
    }

    async fn history(&self, conv: &ConversationId, page: PageRequest) -> Result<Page<Message>> {
        page.validate()?;
        let st = self.lock();
        let Some(c) = st.conversations.get(conv) else {
            return Ok(Page {
                items: Vec::new(),
                next_before: None,
            });
        };
        let end = page.before.map_or(c.messages.len(), |b| {
            (b - 1).clamp(0, c.messages.len() as Seq) as usize
        });
        let start = end.saturating_sub(page.limit as usize);
        let items: Vec<Message> = c.messages[start..end]
            .iter()
            .rev()
            .filter_map(|&id| st.message(id).cloned())
            .collect();
        let next_before = (start > 0).then(|| items.last().map(|m| m.seq)).flatten();
        Ok(Page { items, next_before })
    }

    async fn messages_after(
        &self,
        conv: &ConversationId,
        after: Seq,
        max: u32,
    ) -> Result<Vec<Message>> {
        check_max(max)?;
        let st = self.lock();
        let Some(c) = st.conversations.get(conv) else {
            return Ok(Vec::new());
        };
        let start = after.clamp(0, c.messages.len() as Seq) as usize;
        Ok(c.messages[start..]
            .iter()
            .take(max as usize)
            .filter_map(|&id| st.message(id).cloned())
            .collect())
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>> {
        Ok(self.lock().message(id).cloned())
    }

    async fn last_seq(&self, conv: &ConversationId) -> Result<Seq> {
        let st = self.lock();
        Ok(st
            .conversations
            .get(conv)
            .map_or(0, |c| c.messages.len() as Seq))
    }

    async fn mark_read(
        &self,
        conv: &ConversationId,
        user: &UserId,
        up_to: Seq,
    ) -> Result<ReadUpdate> {
        let mut st = self.lock();
        let c = st.conversations.entry(conv.clone()).or_default();
        let last = c.messages.len() as Seq;
        let old = c.read.get(user).copied().unwrap_or(0);
        let seq = old.max(up_to.min(last));
        let advanced = seq > old;
        let state = ReadState {
            conversation_id: conv.clone(),
            user_id: user.clone(),
            seq,
        };
        if advanced {
            c.read.insert(user.clone(), seq);
            let payload = event::to_payload(&event::MessagesRead {
                conversation_id: conv.clone(),
                user_id: user.clone(),
                seq,
            });
            st.push_outbox(PendingEvent {
                conversation_id: conv.clone(),
                event: event::MESSAGES_READ,
                payload: Some(payload),
                message: 0,
                attempts: 0,
                last_error: None,
                refused: false,
                lease: None,
            });
        }
        Ok(ReadUpdate { state, advanced })
    }

    async fn unread(&self, conv: &ConversationId, user: &UserId) -> Result<(ReadState, u64)> {
        let st = self.lock();
        let (seq, unread) = st.unread(conv, user);
        Ok((
            ReadState {
                conversation_id: conv.clone(),
                user_id: user.clone(),
                seq,
            },
            unread,
        ))
    }

    async fn inbox(&self, user: &UserId, limit: u32) -> Result<Vec<InboxEntry>> {
        check_max(limit)?;
        let st = self.lock();
        let mut entries: Vec<InboxEntry> = st
            .conversations
            .iter()
            .filter(|(id, c)| id.has_member(user) && !c.messages.is_empty())
            .filter_map(|(id, c)| {
                let last = st.message(*c.messages.last()?)?.clone();
                let (last_read_seq, unread_count) = st.unread(id, user);
                Some(InboxEntry {
                    conversation_id: id.clone(),
                    peer_id: id.peer_of(user)?.clone(),
                    last_message: last,
                    unread_count,
                    last_read_seq,
                })
            })
            .collect();
        entries.sort_by(|a, b| {
            (b.last_message.created_at, b.last_message.id)
                .cmp(&(a.last_message.created_at, a.last_message.id))
        });
        entries.truncate(limit as usize);
        Ok(entries)
    }

    async fn search(&self, user: &UserId, query: &str, max: u32) -> Result<Vec<Message>> {
        check_max(max)?;
        let words = search::query_words(query)?;
        let st = self.lock();
        Ok(st
            .messages
            .iter()
            .rev()
            .filter(|m| m.deleted_at.is_none() && m.conversation_id.has_member(user))
            .filter(|m| search::matches(&m.body, &words))
            .take(max as usize)
            .cloned()
            .collect())
    }

    async fn change(
        &self,
        id: MessageId,
        user: &UserId,
        change: MessageChange,
        at: i64,
    ) -> Result<Message> {
        let mut st = self.lock();
        let index = usize::try_from(id - 1)
            .ok()
            .filter(|&i| i < st.messages.len())
            .ok_or_else(|| no_message(id))?;
        check_change(&st.messages[index], user, &change)?;
        let message = &mut st.messages[index];
        let event = apply_change(message, user, change, at);
        let message = message.clone();
        let payload = change_payload(&message, user, event);
        st.push_outbox(PendingEvent {
            conversation_id: message.conversation_id.clone(),
            event,
            payload: Some(payload),
            message: id,
            attempts: 0,
            last_error: None,
            refused: false,
            lease: None,
        });
        Ok(message)
    }

    async fn claim_outbox(&self, after: OutboxId, max: u32) -> Result<Vec<OutboxItem>> {
        check_max(max)?;
        let st = self.lock();
        Ok(st
            .outbox
            .range(after + 1..)
            .filter(|(_, p)| !p.refused)
            .take(max as usize)
            .map(|(&id, p)| OutboxItem {
                id,
                conversation_id: p.conversation_id.clone(),
                event: p.event.to_owned(),
                payload: match &p.payload {
                    Some(payload) => payload.clone(),
                    None => st
                        .message(p.message)
                        .map(event::message_payload)
                        .unwrap_or_default(),
                },
            })
            .collect())
    }

    async fn lease_outbox(
        &self,
        owner: &str,
        max: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxItem>> {
        check_max(max)?;
        let now = super::now_ms();
        let until = now.saturating_add(super::lease_ms(lease));
        let mut st = self.lock();
        let foreign = |p: &PendingEvent| {
            !p.refused && matches!(&p.lease, Some((o, t)) if o != owner && *t > now)
        };
        let busy: std::collections::HashSet<ConversationId> = st
            .outbox
            .values()
            .filter(|p| foreign(p))
            .map(|p| p.conversation_id.clone())
            .collect();
        let ids: Vec<OutboxId> = st
            .outbox
            .iter()
            .filter(|(_, p)| !p.refused && !busy.contains(&p.conversation_id))
            .take(max as usize)
            .map(|(&id, _)| id)
            .collect();
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(p) = st.outbox.get_mut(&id) else {
                continue;
            };
            p.lease = Some((owner.to_owned(), until));
            let (conversation_id, event_name, payload, message) = (
                p.conversation_id.clone(),
                p.event,
                p.payload.clone(),
                p.message,
            );
            items.push(OutboxItem {
                id,
                conversation_id,
                event: event_name.to_owned(),
                payload: match payload {
                    Some(payload) => payload,
                    None => st
                        .message(message)
                        .map(event::message_payload)
                        .unwrap_or_default(),
                },
            });
        }
        Ok(items)
    }

    async fn release_outbox(&self, owner: &str) -> Result<()> {
        for p in self.lock().outbox.values_mut() {
            if p.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                p.lease = None;
            }
        }
        Ok(())
    }

    async fn ack_outbox(&self, ids: &[OutboxId]) -> Result<()> {
        let mut st = self.lock();
        for id in ids {
            st.outbox.remove(id);
        }
        Ok(())
    }

    async fn fail_outbox(&self, id: OutboxId, error: &str, refused: bool) -> Result<()> {
        if let Some(row) = self.lock().outbox.get_mut(&id) {
            row.attempts += 1;
            row.last_error = Some(error.to_owned());
            row.refused |= refused;
        }
        Ok(())
    }

    async fn list_outbox(&self, max: u32) -> Result<Vec<OutboxRow>> {
        check_max(max)?;
        Ok(self
            .lock()
            .outbox
            .iter()
            .take(max as usize)
            .map(|(&id, p)| OutboxRow {
                id,
                conversation_id: p.conversation_id.clone(),
                event: p.event.to_owned(),
                attempts: p.attempts,
                last_error: p.last_error.clone(),
                refused: p.refused,
            })
            .collect())
    }
}
