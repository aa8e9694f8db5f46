//! Events on a conversation's channel: their names and JSON payloads.
//!
//! Payloads are serialized once into [`Bytes`] and shared by every transport
//! and subscriber that sees them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::{ConversationId, Message, MessageId, Seq, UserId};

/// The full message, after it is stored.
pub const NEW_MESSAGE: &str = "new-message";
/// A user read a conversation up to a seq.
pub const MESSAGES_READ: &str = "messages-read";
/// A user is typing; ephemeral, never stored.
pub const TYPING: &str = "typing";
/// The full message after an edit.
pub const MESSAGE_EDITED: &str = "message-edited";
/// The message after a soft delete: its body is empty and `deleted_at` set.
pub const MESSAGE_DELETED: &str = "message-deleted";
/// A user reacted to a message, or took a reaction back (`emoji` null).
pub const REACTION: &str = "reaction";

/// One event for one channel, as transports deliver it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    pub channel: String,
    pub name: String,
    /// JSON, serialized once.
    pub payload: Bytes,
}

impl Event {
    pub fn new(channel: impl Into<String>, name: impl Into<String>, payload: Bytes) -> Self {
        Event {
            channel: channel.into(),
            name: name.into(),
            payload,
        }
    }
}

/// Payload of [`MESSAGES_READ`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesRead {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub seq: Seq,
}

/// Payload of [`TYPING`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
}

/// Payload of [`REACTION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionChanged {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub seq: Seq,
    pub user_id: UserId,
    /// The new reaction, or `None` when the user took theirs back.
    pub emoji: Option<String>,
}

/// Serializes a payload. Our payload types cannot fail to serialize (string
/// keys, no maps with non-string keys), so a failure is a bug worth a loud log.
pub fn to_payload<T: Serialize>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(json) => Bytes::from(json),
        Err(err) => {
            tracing::error!(%err, "event payload failed to serialize");
            Bytes::from_static(b"null")
        }
    }
}

/// The `new-message` payload of a message.
pub fn message_payload(message: &Message) -> Bytes {
    to_payload(message)
}
