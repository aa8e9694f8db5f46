//! User and conversation identifiers, and the channel names derived from them.
//!
//! A conversation between two users has the id `{lo}-{hi}`: the smaller id
//! first (numerically when both are decimal integers, by bytes otherwise), so
//! both sides compute the same id. Inside each id `=` is written `=3D` and
//! `-` is written `=2D`, which makes the one unescaped `-` the separator: the
//! mapping from a pair to an id is injective (`a-b`+`c` and `a`+`b-c` differ)
//! and parses back. Ids without `-` or `=` appear unchanged, so the original
//! app's `private-conversation-1-18` is exactly what tidings uses.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Longest user id: Pusher's presence `user_id` limit.
pub const MAX_USER_ID_LEN: usize = 128;
/// Pusher's channel name limit, prefix included.
pub const MAX_CHANNEL_LEN: usize = 164;
/// Prefix of a conversation's event channel.
pub const PRIVATE_CHANNEL_PREFIX: &str = "private-conversation-";
/// Prefix of a conversation's presence channel (the longer of the two).
pub const PRESENCE_CHANNEL_PREFIX: &str = "presence-conversation-";
/// Longest conversation id, so that both channel names fit in 164 characters.
pub const MAX_CONVERSATION_ID_LEN: usize = MAX_CHANNEL_LEN - PRESENCE_CHANNEL_PREFIX.len();

/// Per-conversation sequence number: 1, 2, 3...
pub type Seq = i64;
/// Store-wide message id.
pub type MessageId = i64;

/// Whether `c` is in Pusher's channel-name alphabet `[A-Za-z0-9_\-=@,.;]`.
pub fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// At most `max_chars` characters of `text`, cut at a character boundary:
/// what an error message quotes of a value that may be long or not ASCII.
pub(crate) fn prefix(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `text` quoted for an error message, its first 64 characters and `...`
/// when it is longer.
pub(crate) fn quoted(text: &str) -> String {
    let shown = prefix(text, 64);
    if shown.len() < text.len() {
        format!("{shown:?}...")
    } else {
        format!("{text:?}")
    }
}

/// A user id chosen by the host app: 1-128 characters of `[A-Za-z0-9_\-=@,.;]`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::invalid("user id is empty"));
        }
        if id.len() > MAX_USER_ID_LEN {
            return Err(Error::invalid(format!(
                "user id {:?}... is {} bytes long; at most {MAX_USER_ID_LEN} are allowed",
                prefix(&id, 16),
                id.len()
            )));
        }
        if let Some(bad) = id.chars().find(|&c| !is_channel_char(c)) {
            return Err(Error::invalid(format!(
                "user id {id:?} contains {bad:?}; allowed are A-Z a-z 0-9 and _ - = @ , . ;"
            )));
        }
        Ok(UserId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_decimal(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_digit())
    }

    /// The order that decides which id comes first in a conversation id.
    pub fn conversation_order(&self, other: &UserId) -> Ordering {
        if self.is_decimal() && other.is_decimal() {
            let a = self.0.trim_start_matches('0');
            let b = other.0.trim_start_matches('0');
            // Equal numbers with different leading zeros fall back to bytes.
            a.len()
                .cmp(&b.len())
                .then_with(|| a.cmp(b))
                .then_with(|| self.0.cmp(&other.0))
        } else {
            self.0.as_bytes().cmp(other.0.as_bytes())
        }
    }

    fn escaped(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for c in self.0.chars() {
            match c {
                '=' => out.push_str("=3D"),
                '-' => out.push_str("=2D"),
                c => out.push(c),
            }
        }
        out
    }

    fn unescape(escaped: &str) -> Option<UserId> {
        let mut out = String::with_capacity(escaped.len());
        let mut rest = escaped;
        while let Some(pos) = rest.find('=') {
            out.push_str(&rest[..pos]);
            match rest.get(pos..pos + 3) {
                Some("=3D") => out.push('='),
                Some("=2D") => out.push('-'),
                _ => return None,
            }
            rest = &rest[pos + 3..];
        }
        out.push_str(rest);
        UserId::new(out).ok()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", self.0)
    }
}

impl std::str::FromStr for UserId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        UserId::new(s)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Host apps often have numeric ids: accept JSON numbers as well.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        };
        UserId::new(text).map_err(serde::de::Error::custom)
    }
}

/// A two-person conversation: `{lo}-{hi}` with escaped ids, smaller id first.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ConversationId {
    id: String,
    #[serde(skip)]
    lo: UserId,
    #[serde(skip)]
    hi: UserId,
}

impl ConversationId {
    /// The conversation of two different users, in either order.
    pub fn between(a: &UserId, b: &UserId) -> Result<Self> {
        if a == b {
            return Err(Error::invalid(format!(
                "a conversation needs two different users, got {a} twice"
            )));
        }
        let (lo, hi) = match a.conversation_order(b) {
            Ordering::Greater => (b, a),
            _ => (a, b),
        };
        let id = format!("{}-{}", lo.escaped(), hi.escaped());
        if id.len() > MAX_CONVERSATION_ID_LEN {
            return Err(Error::invalid(format!(
                "users {lo} and {hi} give a conversation id of {} characters; \
                 channel names are limited to {MAX_CHANNEL_LEN} characters, so the two \
                 escaped ids together may have at most {} (`-` and `=` count 3 each)",
                id.len(),
                MAX_CONVERSATION_ID_LEN - 1
            )));
        }
        Ok(ConversationId {
            id,
            lo: lo.clone(),
            hi: hi.clone(),
        })
    }

    /// Parses `{lo}-{hi}` back into its two users; only canonical ids parse.
    pub fn parse(id: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "{} is not a conversation id; expected `{{lo}}-{{hi}}` such as `1-18`",
                quoted(id)
            ))
        };
        let (lo, hi) = id.split_once('-').ok_or_else(bad)?;
        let lo = UserId::unescape(lo).ok_or_else(bad)?;
        let hi = UserId::unescape(hi).ok_or_else(bad)?;
        let parsed = ConversationId::between(&lo, &hi)?;
        if parsed.id != id {
            return Err(Error::invalid(format!(
                "{} is not in canonical order; the conversation id is {:?}",
                quoted(id),
                parsed.id
            )));
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The two users, smaller first.
    pub fn users(&self) -> (&UserId, &UserId) {
        (&self.lo, &self.hi)
    }

    pub fn has_member(&self, user: &UserId) -> bool {
        &self.lo == user || &self.hi == user
    }

    /// The other member, if `user` is one.
    pub fn peer_of(&self, user: &UserId) -> Option<&UserId> {
        if &self.lo == user {
            Some(&self.hi)
        } else if &self.hi == user {
            Some(&self.lo)
        } else {
            None
        }
    }

    /// `private-conversation-{id}`: where the conversation's events go.
    pub fn channel(&self) -> String {
        format!("{PRIVATE_CHANNEL_PREFIX}{}", self.id)
    }

    /// `presence-conversation-{id}`: who of the two is online.
    pub fn presence_channel(&self) -> String {
        format!("{PRESENCE_CHANNEL_PREFIX}{}", self.id)
    }

    /// The conversation whose private or presence channel this is, if any.
    pub fn from_channel(channel: &str) -> Option<Self> {
        let id = channel
            .strip_prefix(PRIVATE_CHANNEL_PREFIX)
            .or_else(|| channel.strip_prefix(PRESENCE_CHANNEL_PREFIX))?;
        ConversationId::parse(id).ok()
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationId({:?})", self.id)
    }
}

impl std::str::FromStr for ConversationId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ConversationId::parse(s)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConversationId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    fn conv(a: &str, b: &str) -> String {
        ConversationId::between(&user(a), &user(b))
            .unwrap()
            .to_string()
    }

    #[test]
    fn numeric_ids_compare_as_numbers() {
        assert_eq!(conv("1", "18"), "1-18");
        assert_eq!(conv("18", "1"), "1-18");
        assert_eq!(conv("9", "10"), "9-10");
        assert_eq!(conv("10", "9"), "9-10");
    }

    #[test]
    fn other_ids_compare_by_bytes() {
        assert_eq!(conv("bob", "alice"), "alice-bob");
        assert_eq!(conv("9", "10a"), "10a-9");
    }

    #[test]
    fn channel_matches_the_original_app() {
        let c = ConversationId::between(&user("18"), &user("1")).unwrap();
        assert_eq!(c.channel(), "private-conversation-1-18");
        assert_eq!(c.presence_channel(), "presence-conversation-1-18");
        assert_eq!(ConversationId::from_channel(&c.channel()), Some(c));
    }

    #[test]
    fn dashed_ids_never_collide_and_parse_back() {
        let a = ConversationId::between(&user("a-b"), &user("c")).unwrap();
        let b = ConversationId::between(&user("a"), &user("b-c")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str(), "a=2Db-c");
        assert_eq!(b.as_str(), "a-b=2Dc");
        assert_eq!(ConversationId::parse(a.as_str()).unwrap(), a);
        assert_eq!(ConversationId::parse(b.as_str()).unwrap(), b);
        let eq = ConversationId::between(&user("x=2D"), &user("y")).unwrap();
        assert_eq!(eq.as_str(), "x=3D2D-y");
        assert_eq!(eq.users().0.as_str(), "x=2D");
    }

    #[test]
    fn uuids_work() {
        let a = user("0b7e4f5c-2c1e-4b7a-9f1e-3a1b2c3d4e5f");
        let b = user("f3a1c2d4-1111-4222-8333-944455556666");
        let c = ConversationId::between(&a, &b).unwrap();
        assert!(c.presence_channel().len() <= MAX_CHANNEL_LEN);
        assert_eq!(c.users(), (&a, &b));
        assert_eq!(ConversationId::parse(c.as_str()).unwrap(), c);
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        assert!(UserId::new("").is_err());
        let err = UserId::new("a b").unwrap_err().to_string();
        assert!(err.contains("' '"), "{err}");
        assert!(UserId::new("x".repeat(129)).is_err());
        assert!(UserId::new("x".repeat(128)).is_ok());
        let long = user(&"x".repeat(100));
        let err = ConversationId::between(&long, &user(&"y".repeat(50)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("164"), "{err}");
        assert!(ConversationId::between(&user("1"), &user("1")).is_err());
    }

    #[test]
    fn long_ids_are_cut_at_a_character_boundary() {
        // A two-byte character across byte 16 used to panic the request.
        let id = format!("{}é{}", "a".repeat(15), "b".repeat(200));
        let err = UserId::new(id).unwrap_err().to_string();
        assert!(err.contains("aaaaaaaaaaaaaaaé"), "{err}");
        assert_eq!(prefix("😀😀😀", 2), "😀😀");
        assert_eq!(prefix("ab", 5), "ab");
        let err = ConversationId::parse(&"€".repeat(1000))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 400, "{err}");
    }

    #[test]
    fn only_canonical_ids_parse() {
        assert!(ConversationId::parse("18-1").is_err());
        assert!(ConversationId::parse("1-18-3").is_err());
        assert!(ConversationId::parse("1").is_err());
        assert!(ConversationId::parse("a=2X-b").is_err());
        assert!(ConversationId::parse("1-18").is_ok());
    }

    #[test]
    fn numeric_ids_deserialize_from_numbers() {
        let u: UserId = serde_json::from_str("18").unwrap();
        assert_eq!(u.as_str(), "18");
    }
}
