//! Read state per user per conversation, and the inbox derived from it.

use serde::{Deserialize, Serialize};

use super::ids::{ConversationId, Seq, UserId};
use super::message::Message;

/// How far one user has read one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    /// The highest seq this user has read; 0 when nothing.
    pub seq: Seq,
}

/// One line of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub conversation_id: ConversationId,
    /// The other member.
    pub peer_id: UserId,
    pub last_message: Message,
    /// Messages from the peer after `last_read_seq`, deleted ones excluded.
    pub unread_count: u64,
    pub last_read_seq: Seq,
}
