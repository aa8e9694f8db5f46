//! Channel names and kinds, by prefix (pusher-js order), I/O-free.

/// Longest channel name the SDKs accept.
pub const MAX_CHANNEL_NAME: usize = 200;
/// Prefix of the per-user channel of signed-in connections.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    /// `private-encrypted-`: authorized like private, payloads pass through.
    Encrypted,
    Presence,
    /// `#server-to-user-{id}`: only for a connection signed in as `{id}`.
    ServerToUser,
}

impl ChannelKind {
    pub fn of(name: &str) -> ChannelKind {
        if name.starts_with("private-encrypted-") {
            ChannelKind::Encrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            ChannelKind::ServerToUser
        } else {
            ChannelKind::Public
        }
    }

    /// Needs a signature to subscribe.
    pub fn needs_auth(self) -> bool {
        matches!(
            self,
            ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
        )
    }

    /// Clients may trigger `client-` events on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// Cache channels replay their last event to new subscribers.
pub fn is_cache(name: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Checks a channel name: 1-200 characters of `[A-Za-z0-9_\-=@,.;]`, or a
/// `#server-to-user-` name.
pub fn validate(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix('#').map_or(name, |r| {
        // Only the server-to-user channels may start with '#'.
        name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(r)
    });
    if name.is_empty() || name.len() > MAX_CHANNEL_NAME {
        return Err(format!(
            "Invalid channel name: must be 1-{MAX_CHANNEL_NAME} characters, got {}",
            name.len()
        ));
    }
    if name.starts_with('#') && !name.starts_with(SERVER_TO_USER_PREFIX) {
        return Err(format!(
            "Invalid channel name {name:?}: '#' names are reserved"
        ));
    }
    if rest.is_empty() || !rest.chars().all(crate::domain::ids::is_channel_char) {
        return Err(format!(
            "Invalid channel name {name:?}: allowed are A-Z a-z 0-9 and _ - = @ , . ;"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_prefix() {
        assert_eq!(ChannelKind::of("news"), ChannelKind::Public);
        assert_eq!(
            ChannelKind::of("private-conversation-1-18"),
            ChannelKind::Private
        );
        assert_eq!(
            ChannelKind::of("private-encrypted-x"),
            ChannelKind::Encrypted
        );
        assert_eq!(
            ChannelKind::of("presence-conversation-1-18"),
            ChannelKind::Presence
        );
        assert_eq!(
            ChannelKind::of("#server-to-user-7"),
            ChannelKind::ServerToUser
        );
        assert!(is_cache("private-cache-x") && !is_cache("private-x"));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate("private-conversation-1-18").is_ok());
        assert!(validate("#server-to-user-1=2D2").is_ok());
        assert!(validate("").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("#other").is_err());
        assert!(validate(&"x".repeat(201)).is_err());
    }
}
