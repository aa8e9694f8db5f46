//! In-process store for tests and hosts that need no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    apply_change, assign_slots, change_payload, check_change, check_max, existing_for_retry,
    keys_in, missing_message, no_message, search, slot_bit, Appended, CommitSinks, Committed,
    CommittedBody, LeaseRequest, MessageChange, OutboxId, OutboxItem, OutboxRow, ReadUpdate, Store,
    TransportSlot,
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
    /// Bits of the transports that have not taken it.
    pending: i64,
    /// Bits of the transports that refused it for good.
    refused_by: i64,
    queued_at: i64,
    /// Who holds the row, and until when (ms since the epoch).
    lease: Option<(String, i64)>,
}

impl PendingEvent {
    fn new(conversation_id: ConversationId, event: &'static str, message: MessageId) -> Self {
        PendingEvent {
            conversation_id,
            event,
            payload: None,
            message,
            attempts: 0,
            last_error: None,
            pending: 0,
            refused_by: 0,
            queued_at: super::now_ms(),
            lease: None,
        }
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Message>,
    conversations: HashMap<ConversationId, Conversation>,
    outbox: BTreeMap<OutboxId, PendingEvent>,
    next_outbox: OutboxId,
    registry: Vec<(String, TransportSlot)>,
}

impl State {
    fn message(&self, id: MessageId) -> Option<&Message> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.messages.get(i))
    }

    fn registered(&self) -> i64 {
        self.registry.iter().fold(0, |m, (_, s)| m | slot_bit(*s))
    }

    /// Queues the event for every registered transport; no row (`None`)
    /// when none is registered.
    fn push_outbox(&mut self, mut event: PendingEvent) -> Option<OutboxId> {
        event.pending = self.registered();
        if event.pending == 0 {
            return None;
        }
        self.next_outbox += 1;
        self.outbox.insert(self.next_outbox, event);
        Some(self.next_outbox)
    }

    /// Drops the row once no registered transport owes it and none refused it.
    fn settle(&mut self, id: OutboxId) {
        let registered = self.registered();
        if self
            .outbox
            .get(&id)
            .is_some_and(|p| p.pending & registered == 0 && p.refused_by == 0)
        {
            self.outbox.remove(&id);
        }
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
    sinks: CommitSinks,
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
        let outbox_id = st.push_outbox(PendingEvent::new(
            message.conversation_id.clone(),
            event::NEW_MESSAGE,
            id,
        ));
        // Under the lock: sinks see commits in commit order.
        let appended = Appended {
            message,
            created: true,
        };
        self.sinks
            .publish(vec![Committed::new_message(&appended, outbox_id)]);
        Ok(appended)
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
            let mut row = PendingEvent::new(conv.clone(), event::MESSAGES_READ, 0);
            row.payload = Some(payload.clone());
            let outbox_id = st.push_outbox(row);
            self.sinks.publish(vec![Committed {
                outbox_id,
                conversation_id: conv.clone(),
                event: event::MESSAGES_READ,
                body: CommittedBody::Payload(payload),
            }]);
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
        let mut row = PendingEvent::new(message.conversation_id.clone(), event, id);
        row.payload = Some(payload.clone());
        let outbox_id = st.push_outbox(row);
        self.sinks.publish(vec![Committed {
            outbox_id,
            conversation_id: message.conversation_id.clone(),
            event,
            body: CommittedBody::Payload(payload),
        }]);
        Ok(message)
    }

    async fn register_transports(&self, keys: &[String]) -> Result<Vec<TransportSlot>> {
        let mut st = self.lock();
        let (slots, added) = assign_slots(&st.registry, keys)?;
        st.registry.extend(added);
        Ok(slots)
    }

    async fn forget_transport(&self, key: &str) -> Result<bool> {
        let mut st = self.lock();
        let Some(at) = st.registry.iter().position(|(k, _)| k == key) else {
            return Ok(false);
        };
        let (_, slot) = st.registry.remove(at);
        let ids: Vec<OutboxId> = st.outbox.keys().copied().collect();
        for id in ids {
            if let Some(row) = st.outbox.get_mut(&id) {
                row.pending &= !slot_bit(slot);
                row.refused_by &= !slot_bit(slot);
            }
            st.settle(id);
        }
        Ok(true)
    }

    fn commit_sinks(&self) -> &CommitSinks {
        &self.sinks
    }

    async fn lease_outbox(&self, request: LeaseRequest<'_>) -> Result<Vec<OutboxItem>> {
        check_max(request.max)?;
        let now = super::now_ms();
        let until = now.saturating_add(super::lease_ms(request.lease));
        let queued_before = now.saturating_sub(super::duration_ms(request.min_age));
        let bit = slot_bit(request.slot);
        let owner = request.owner;
        let mut st = self.lock();
        let foreign = |p: &PendingEvent| {
            p.pending != 0 && matches!(&p.lease, Some((o, t)) if o != owner && *t > now)
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
            .filter(|(_, p)| p.pending & bit != 0 && !busy.contains(&p.conversation_id))
            .filter(|(_, p)| p.queued_at <= queued_before)
            .take(request.max as usize)
            .map(|(&id, _)| id)
            .collect();
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let payload = match st.outbox.get(&id) {
                Some(p) => match &p.payload {
                    Some(payload) => Some(payload.clone()),
                    None => st.message(p.message).map(event::message_payload),
                },
                None => continue,
            };
            let Some(p) = st.outbox.get_mut(&id) else {
                continue;
            };
            let Some(payload) = payload else {
                p.refused_by |= p.pending;
                p.pending = 0;
                p.last_error = Some(missing_message(Some(p.message)));
                continue;
            };
            p.lease = Some((owner.to_owned(), until));
            items.push(OutboxItem {
                id,
                conversation_id: p.conversation_id.clone(),
                event: p.event.to_owned(),
                payload,
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

    async fn ack_outbox(&self, slot: TransportSlot, ids: &[OutboxId]) -> Result<()> {
        let mut st = self.lock();
        for id in ids {
            if let Some(row) = st.outbox.get_mut(id) {
                row.pending &= !slot_bit(slot);
            }
            st.settle(*id);
        }
        Ok(())
    }

    async fn fail_outbox(
        &self,
        slot: TransportSlot,
        id: OutboxId,
        error: &str,
        refused: bool,
    ) -> Result<()> {
        let mut st = self.lock();
        if let Some(row) = st.outbox.get_mut(&id) {
            row.attempts += 1;
            row.last_error = Some(error.to_owned());
            if refused {
                row.pending &= !slot_bit(slot);
                row.refused_by |= slot_bit(slot);
            }
        }
        Ok(())
    }

    async fn list_outbox(&self, max: u32) -> Result<Vec<OutboxRow>> {
        check_max(max)?;
        let st = self.lock();
        let registered = st.registered();
        Ok(st
            .outbox
            .iter()
            .filter(|(_, p)| p.pending & registered != 0 || p.refused_by != 0)
            .take(max as usize)
            .map(|(&id, p)| OutboxRow {
                id,
                conversation_id: p.conversation_id.clone(),
                event: p.event.to_owned(),
                pending_for: keys_in(&st.registry, p.pending),
                attempts: p.attempts,
                last_error: p.last_error.clone(),
                refused: p.refused_by != 0,
            })
            .collect())
    }
}
