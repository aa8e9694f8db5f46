//! `tidings_status`: the code every fallible call returns. The numbers are
//! fixed forever; a retired number stays reserved with a comment.

use std::ffi::{c_char, c_int};

use tidings::ErrorKind;

/// What a call did. `TIDINGS_STATUS_OK` is 0, small positive numbers are
/// outcomes that are not errors, errors start at 100. Anything but `OK`
/// leaves the call's out-parameters untouched.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tidings_status {
    /// Done; the out-parameters are written.
    Ok = 0,
    /// `tidings_events_next`: no event came within the timeout.
    Timeout = 1,
    /// `tidings_events_next`: the stream was closed by `tidings_events_close`
    /// or because its engine shut down. No more events will come.
    Closed = 2,
    /// A required pointer argument was NULL; the message names it.
    NullArgument = 100,
    /// A string argument was not UTF-8; it is never repaired.
    InvalidUtf8 = 101,
    /// A JSON argument did not parse as JSON.
    InvalidJson = 102,
    /// A blocking call was made from a tidings callback or an engine thread,
    /// where it would deadlock.
    Reentrant = 103,
    /// A bug in tidings: a panic was caught at the boundary. The handle may
    /// be left in any state but stays safe to free.
    Panic = 104,
    /// A value that can never be valid (bad user id, empty body, unknown
    /// field...).
    InvalidArgument = 105,
    /// The conversation or message does not exist.
    NotFound = 106,
    /// The user may not do this (not the sender, not a member).
    Forbidden = 107,
    /// The request clashes with stored state.
    Conflict = 108,
    /// The store failed or cannot be reached; nothing was half-written.
    Storage = 109,
    /// A transport refused or could not take an event.
    Transport = 110,
    /// The configuration is invalid (engine config, server config).
    Config = 111,
    /// The engine (or server) is shut down.
    ShutDown = 112,
    /// A user token was refused: malformed, forged or expired.
    Unauthorized = 113,
    /// An error this version of the ABI has no code for yet.
    Unknown = 199,
}

impl tidings_status {
    /// Every status, for tests and the bindings' tables.
    pub fn all() -> [tidings_status; 18] {
        [
            tidings_status::Ok,
            tidings_status::Timeout,
            tidings_status::Closed,
            tidings_status::NullArgument,
            tidings_status::InvalidUtf8,
            tidings_status::InvalidJson,
            tidings_status::Reentrant,
            tidings_status::Panic,
            tidings_status::InvalidArgument,
            tidings_status::NotFound,
            tidings_status::Forbidden,
            tidings_status::Conflict,
            tidings_status::Storage,
            tidings_status::Transport,
            tidings_status::Config,
            tidings_status::ShutDown,
            tidings_status::Unauthorized,
            tidings_status::Unknown,
        ]
    }

    /// The stable lower-case name: the Node error `code`, the Python
    /// exception's `code`, the engine's `ErrorKind::as_str` where one exists.
    pub fn name(self) -> &'static str {
        match self {
            tidings_status::Ok => "ok",
            tidings_status::Timeout => "timeout",
            tidings_status::Closed => "closed",
            tidings_status::NullArgument => "null_argument",
            tidings_status::InvalidUtf8 => "invalid_utf8",
            tidings_status::InvalidJson => "invalid_json",
            tidings_status::Reentrant => "reentrant",
            tidings_status::Panic => "panic",
            tidings_status::InvalidArgument => "invalid_argument",
            tidings_status::NotFound => "not_found",
            tidings_status::Forbidden => "forbidden",
            tidings_status::Conflict => "conflict",
            tidings_status::Storage => "storage",
            tidings_status::Transport => "transport",
            tidings_status::Config => "config",
            tidings_status::ShutDown => "shut_down",
            tidings_status::Unauthorized => "unauthorized",
            tidings_status::Unknown => "unknown",
        }
    }

    fn c_name(self) -> &'static [u8] {
        match self {
            tidings_status::Ok => b"ok\0",
            tidings_status::Timeout => b"timeout\0",
            tidings_status::Closed => b"closed\0",
            tidings_status::NullArgument => b"null_argument\0",
            tidings_status::InvalidUtf8 => b"invalid_utf8\0",
            tidings_status::InvalidJson => b"invalid_json\0",
            tidings_status::Reentrant => b"reentrant\0",
            tidings_status::Panic => b"panic\0",
            tidings_status::InvalidArgument => b"invalid_argument\0",
            tidings_status::NotFound => b"not_found\0",
            tidings_status::Forbidden => b"forbidden\0",
            tidings_status::Conflict => b"conflict\0",
            tidings_status::Storage => b"storage\0",
            tidings_status::Transport => b"transport\0",
            tidings_status::Config => b"config\0",
            tidings_status::ShutDown => b"shut_down\0",
            tidings_status::Unauthorized => b"unauthorized\0",
            tidings_status::Unknown => b"unknown\0",
        }
    }

    fn from_code(code: c_int) -> Option<tidings_status> {
        tidings_status::all()
            .into_iter()
            .find(|s| *s as c_int == code)
    }
}

impl From<ErrorKind> for tidings_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => tidings_status::InvalidArgument,
            ErrorKind::NotFound => tidings_status::NotFound,
            ErrorKind::Forbidden => tidings_status::Forbidden,
            ErrorKind::Conflict => tidings_status::Conflict,
            ErrorKind::Storage => tidings_status::Storage,
            ErrorKind::Transport => tidings_status::Transport,
            ErrorKind::Config => tidings_status::Config,
            ErrorKind::Closed => tidings_status::ShutDown,
            _ => tidings_status::Unknown,
        }
    }
}

/// A failed call: its status and the message `error_out` receives.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub status: tidings_status,
    pub message: String,
}

impl FfiError {
    pub fn new(status: tidings_status, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        FfiError::new(tidings_status::InvalidArgument, message)
    }
}

impl From<tidings::Error> for FfiError {
    fn from(err: tidings::Error) -> Self {
        FfiError::new(err.kind().into(), err.to_string())
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

/// The stable lower-case name of a status code (`"not_found"`), or
/// `"unknown"` for a number this library does not define. The string is
/// static: do not free it.
#[no_mangle]
pub extern "C" fn tidings_status_name(status: c_int) -> *const c_char {
    let name = tidings_status::from_code(status)
        .unwrap_or(tidings_status::Unknown)
        .c_name();
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn names_match_error_kinds_and_c_names() {
        for status in tidings_status::all() {
            // SAFETY: c_name is a static NUL-terminated literal.
            let c = unsafe { CStr::from_ptr(tidings_status_name(status as c_int)) };
            assert_eq!(c.to_str().unwrap(), status.name());
        }
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Forbidden,
            ErrorKind::Conflict,
            ErrorKind::Storage,
            ErrorKind::Transport,
            ErrorKind::Config,
        ];
        for kind in kinds {
            assert_eq!(tidings_status::from(kind).name(), kind.as_str());
        }
        assert_eq!(
            tidings_status::from(ErrorKind::Closed),
            tidings_status::ShutDown
        );
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(tidings_status_name(42)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown");
    }

    #[test]
    fn numbers_are_fixed() {
        let numbers: Vec<i32> = tidings_status::all().iter().map(|s| *s as i32).collect();
        assert_eq!(
            numbers,
            [0, 1, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 199]
        );
    }
}
