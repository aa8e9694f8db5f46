//! The one public error type. Each [`ErrorKind`] maps 1:1 to a C status
//! code, a Node error code and a Python exception class, so its numbering
//! and names are part of the interface.

use std::fmt;

/// Boxed error of a dependency (rusqlite, tokio-postgres, ...), kept as a
/// `#[source]` so no dependency type becomes part of the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, coarse enough to branch on across languages.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller passed a value that can never be valid (bad id, empty body...).
    InvalidArgument,
    /// The conversation or message does not exist.
    NotFound,
    /// The user may not do this (not the sender, not a member).
    Forbidden,
    /// The request clashes with stored state (a `client_msg_id` reused by another sender).
    Conflict,
    /// The store failed or cannot be reached; nothing was half-written.
    Storage,
    /// A transport refused or could not take an event.
    Transport,
    /// The configuration is invalid.
    Config,
    /// The engine is shut down.
    Closed,
    /// A plugin refused the message (the message names it and says why).
    Rejected,
}

impl ErrorKind {
    /// Stable machine-readable name (the Node error code, the JSON `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Storage => "storage",
            ErrorKind::Transport => "transport",
            ErrorKind::Config => "config",
            ErrorKind::Closed => "closed",
            ErrorKind::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every fallible tidings operation returns this error.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage error: {message}")]
    Storage {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("transport {transport}: {message}")]
    Transport {
        transport: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A transport refused an event for good (a 4xx other than 429): retrying
    /// the same event cannot succeed.
    #[error("transport {transport} refused the event: {message}")]
    TransportRefused { transport: String, message: String },
    #[error("configuration error: {0}")]
    Config(String),
    #[error("the engine is shut down")]
    Closed,
    /// A plugin's `before_send` refused the message; `reason` is the
    /// plugin's, meant for the sender.
    #[error("rejected by plugin {plugin}: {reason}")]
    Rejected { plugin: String, reason: String },
    /// A plugin could not be loaded or started (kind `Config`).
    #[error("plugin {plugin} ({file}): {message}")]
    Plugin {
        plugin: String,
        /// The shared library, or `compiled in`.
        file: String,
        message: String,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Storage { .. } => ErrorKind::Storage,
            Error::Transport { .. } | Error::TransportRefused { .. } => ErrorKind::Transport,
            Error::Config(_) => ErrorKind::Config,
            Error::Closed => ErrorKind::Closed,
            Error::Rejected { .. } => ErrorKind::Rejected,
            Error::Plugin { .. } => ErrorKind::Config,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// A storage failure with its cause; `context` says what was being done.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn storage(context: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Error::Storage {
            message: format!("{context}: {source}"),
            source: Some(source),
        }
    }

    pub(crate) fn storage_msg(message: impl Into<String>) -> Self {
        Error::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// Whether retrying the same operation can never succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            Error::Transport { .. } | Error::Storage { .. } | Error::Closed
        )
    }

    /// A permanent transport refusal.
    pub fn transport_refused(transport: impl Into<String>, message: impl Into<String>) -> Self {
        Error::TransportRefused {
            transport: transport.into(),
            message: message.into(),
        }
    }

    pub fn transport(transport: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Transport {
            transport: transport.into(),
            message: message.into(),
            source: None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
