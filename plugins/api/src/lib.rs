//! # tidings-plugin
//!
//! The tidings plugin ABI v1 ([`abi`], the mirror of
//! `include/tidings_plugin.h`) and a safe way to write a plugin in Rust: a
//! struct, an impl of [`Plugin`], and [`export_plugin!`].
//!
//! ```
//! use tidings_plugin::{Host, Message, Plugin, Verdict};
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     const NAME: &'static std::ffi::CStr = c"shout";
//!     const VERSION: &'static std::ffi::CStr = c"1.0.0";
//!
//!     fn init(_host: Host, _config_json: &str) -> Result<Self, tidings_plugin::Error> {
//!         Ok(Shout)
//!     }
//!
//!     fn before_send(&self, message: &Message) -> Result<Verdict, tidings_plugin::Error> {
//!         Ok(Verdict::Rewrite(message.body.to_uppercase()))
//!     }
//! }
//!
//! // In a `cdylib`: exports `tidings_plugin_entry`.
//! tidings_plugin::export_plugin!(Shout);
//! ```
//!
//! Every hook runs inside `catch_unwind`: a panic is logged through the host
//! and reported as `TIDINGS_PLUGIN_PANIC`, after which the host disables the
//! plugin (and the plugin refuses further calls on its own too).
//!
//! The same trait serves static builds: [`descriptor`] returns the table for
//! `tidings::EngineBuilder::plugin`, with nothing loaded at runtime.

pub mod abi;
mod shim;

use std::ffi::{c_char, CStr, CString};

use serde::{Deserialize, Serialize};

pub use abi::*;
pub use shim::descriptor;

/// What a hook returns on failure: any error, shown to the host as text.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A message as hooks see it. In `before_send` it is validated but not yet
/// stored (`id` and `seq` are `None`); in `after_send` it is the stored
/// message. Fields the host adds later are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub conversation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub sender_id: String,
    /// The other member of the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    pub body: String,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What `before_send` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the message through unchanged.
    Allow,
    /// Store this body instead (the host validates it again).
    Rewrite(String),
    /// Refuse the message; the sender sees this reason.
    Reject(String),
}

/// A plugin: a struct and an impl. Hooks may be called concurrently from
/// several threads, hence `Sync`; they should return quickly (they run on
/// blocking threads of the host, but a send waits for `before_send`).
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The plugin's name, as logs and errors show it.
    const NAME: &'static CStr;
    /// The plugin's own version.
    const VERSION: &'static CStr;
    /// Whether the plugin is a transport: set it and implement
    /// [`Plugin::deliver`].
    const TRANSPORT: bool = false;

    /// Builds the plugin from its configuration (JSON, `{}` when none was
    /// given). An error refuses to start the engine, naming the plugin.
    fn init(host: Host, config_json: &str) -> Result<Self, Error>;

    /// Called for each message after validation, before it is stored.
    fn before_send(&self, message: &Message) -> Result<Verdict, Error> {
        let _ = message;
        Ok(Verdict::Allow)
    }

    /// Called once a message is stored (not for a retry of a stored one).
    fn after_send(&self, message: &Message) -> Result<(), Error> {
        let _ = message;
        Ok(())
    }

    /// Called for every event the engine delivered (`new-message`,
    /// `typing`, ...); `data_json` is the event's JSON payload.
    fn on_event(&self, channel: &str, event: &str, data_json: &str) -> Result<(), Error> {
        let _ = (channel, event, data_json);
        Ok(())
    }

    /// As a transport: carry one event. An error leaves the event pending,
    /// to be retried. Only called when [`Plugin::TRANSPORT`] is true.
    fn deliver(&self, channel: &str, event: &str, data_json: &str) -> Result<(), Error> {
        let _ = (channel, event, data_json);
        Ok(())
    }

    /// Called once, last; then the plugin is dropped.
    fn shutdown(&self) {}
}

/// The host's services, valid from `init` until the plugin is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    api: *const tidings_host_api_v1,
}

// SAFETY: the host API table is documented thread-safe and outlives the
// plugin instance (it is valid until `deinit` returns).
unsafe impl Send for Host {}
// SAFETY: as above.
unsafe impl Sync for Host {}

/// Log levels for [`Host::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Host {
    /// A host that offers nothing (logs go nowhere, publish fails); for
    /// unit tests of a plugin.
    pub fn detached() -> Host {
        Host {
            api: std::ptr::null(),
        }
    }

    pub(crate) fn from_raw(api: *const tidings_host_api_v1) -> Host {
        Host { api }
    }

    fn table(&self) -> Option<tidings_host_api_v1> {
        if self.api.is_null() {
            return None;
        }
        // SAFETY: non-null, and valid until deinit per the ABI contract.
        let table = unsafe { *self.api };
        if table.abi_major != TIDINGS_PLUGIN_ABI_MAJOR
            || table.struct_size < std::mem::size_of::<tidings_host_api_v1>()
        {
            return None;
        }
        Some(table)
    }

    /// Writes to the host's log.
    pub fn log(&self, level: Level, message: &str) {
        let Some(table) = self.table() else { return };
        let Some(log) = table.log else { return };
        let level = match level {
            Level::Error => TIDINGS_LOG_ERROR,
            Level::Warn => TIDINGS_LOG_WARN,
            Level::Info => TIDINGS_LOG_INFO,
            Level::Debug => TIDINGS_LOG_DEBUG,
            Level::Trace => TIDINGS_LOG_TRACE,
        };
        let message = c_string_lossy(message);
        // SAFETY: the function and context come from the host table; the
        // message is borrowed for the call.
        unsafe { log(table.host_ctx, level, message.as_ptr()) }
    }

    /// Hands an ephemeral event (never stored) to the engine's transports.
    pub fn publish(&self, channel: &str, event: &str, data_json: &str) -> Result<(), Error> {
        let table = self.table().ok_or("the host offers no publish")?;
        let publish = table.publish.ok_or("the host offers no publish")?;
        let channel = CString::new(channel)?;
        let event = CString::new(event)?;
        let data = CString::new(data_json)?;
        // SAFETY: as for log; the strings are borrowed for the call.
        let status = unsafe {
            publish(
                table.host_ctx,
                channel.as_ptr(),
                event.as_ptr(),
                data.as_ptr(),
            )
        };
        if status == TIDINGS_PLUGIN_OK {
            Ok(())
        } else {
            Err(format!("the host refused to publish {event:?} on {channel:?}").into())
        }
    }
}

/// A C string from any text, NULs replaced (messages must never fail).
pub(crate) fn c_string_lossy(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// Hands a string to the host, which frees it with `free_string`.
pub(crate) fn hand_out(text: &str) -> *mut c_char {
    c_string_lossy(text).into_raw()
}
