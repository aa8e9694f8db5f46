//! Messages: what is stored, what a sender submits, and the limits on both.

use serde::{Deserialize, Serialize};

use super::ids::{ConversationId, MessageId, Seq, UserId};
use crate::error::{Error, Result};

/// Largest message body, in bytes of UTF-8 after trimming.
pub const MAX_BODY_BYTES: usize = 10 * 1024;
/// Longest idempotency key.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 128;
/// Longest reaction, in bytes (an emoji with modifiers and joiners fits).
pub const MAX_EMOJI_BYTES: usize = 64;

/// A stored message, as every API and event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub sender_id: UserId,
    /// Empty once deleted.
    pub body: String,
    pub client_msg_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// One per user, oldest first.
    pub reactions: Vec<Reaction>,
}

/// One user's reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub user_id: UserId,
    pub emoji: String,
}

/// A validated message waiting to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub body: String,
    pub client_msg_id: Option<String>,
    pub created_at: i64,
}

/// Trims a body and checks its size: the one rule for sends and edits.
pub fn validate_body(body: &str) -> Result<String> {
    let body = body.trim();
    if body.is_empty() {
        return Err(Error::invalid("message body is empty"));
    }
    if body.contains('\0') {
        return Err(Error::invalid("message body contains a NUL character"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::invalid(format!(
            "message body is {} bytes; at most {MAX_BODY_BYTES} (10 KiB) are allowed",
            body.len()
        )));
    }
    Ok(body.to_owned())
}

pub fn validate_client_msg_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(Error::invalid(format!(
            "client_msg_id must be 1-{MAX_CLIENT_MSG_ID_LEN} bytes, got {}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "client_msg_id {id:?} contains a control character"
        )));
    }
    Ok(())
}

pub fn validate_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(Error::invalid(format!(
            "a reaction must be 1-{MAX_EMOJI_BYTES} bytes, got {}",
            emoji.len()
        )));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(format!(
            "reaction {emoji:?} contains whitespace or a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_trimmed_and_bounded() {
        assert_eq!(validate_body("  hi \n").unwrap(), "hi");
        assert!(validate_body(" \n\t").is_err());
        let max = "é".repeat(MAX_BODY_BYTES / 2);
        assert_eq!(validate_body(&format!(" {max} ")).unwrap(), max);
        let err = validate_body(&"x".repeat(MAX_BODY_BYTES + 1)).unwrap_err();
        assert!(err.to_string().contains("10 KiB"), "{err}");
    }

    #[test]
    fn emoji_rules() {
        assert!(validate_emoji("👍").is_ok());
        assert!(validate_emoji("👩‍👩‍👧‍👦").is_ok());
        assert!(validate_emoji("").is_err());
        assert!(validate_emoji("a b").is_err());
    }
}
