//! The plugin ABI v1 as Rust types: the mirror of
//! `include/tidings_plugin.h`, checked field by field against it by
//! `tests/header.rs`. Names are the C names.
//!
//! Ownership (the header says the same):
//! - strings the host passes in are borrowed for the duration of the call;
//! - strings a plugin hands out (`*error_out`, `*rewritten_json_out`,
//!   `*reason_out`) are allocated by the plugin and released by the host
//!   with the plugin's `free_string`;
//! - the instance is the plugin's, released by its `deinit`;
//! - the descriptor, `name` and `version` are static: they live as long as
//!   the library stays loaded, which is until after `deinit`;
//! - the host API table stays valid from `init` until `deinit` returns.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// Plugins with another major are refused.
pub const TIDINGS_PLUGIN_ABI_MAJOR: u32 = 1;
/// Any minor loads; a newer minor only adds fields at the end.
pub const TIDINGS_PLUGIN_ABI_MINOR: u32 = 0;
/// The one symbol a plugin library exports.
pub const TIDINGS_PLUGIN_ENTRY_SYMBOL: &str = "tidings_plugin_entry";

/// What a hook returns.
pub type tidings_plugin_status = i32;
/// Done; for `before_send`: let the message through unchanged.
pub const TIDINGS_PLUGIN_OK: tidings_plugin_status = 0;
/// `before_send` only: store `*rewritten_json_out` instead.
pub const TIDINGS_PLUGIN_REWRITE: tidings_plugin_status = 1;
/// `before_send` only: refuse the message; `*reason_out` tells the sender why.
pub const TIDINGS_PLUGIN_REJECT: tidings_plugin_status = 2;
/// The hook failed; the out string (if any) says why. The host logs it and
/// goes on as if the hook were absent.
pub const TIDINGS_PLUGIN_ERROR: tidings_plugin_status = 100;
/// The plugin caught a panic (or is otherwise broken): the host disables it.
/// `*reason_out` (`before_send`) or `*error_out` (`deliver`) may say why.
pub const TIDINGS_PLUGIN_PANIC: tidings_plugin_status = 101;

/// Log levels of [`tidings_host_api_v1::log`].
pub type tidings_log_level = i32;
pub const TIDINGS_LOG_ERROR: tidings_log_level = 1;
pub const TIDINGS_LOG_WARN: tidings_log_level = 2;
pub const TIDINGS_LOG_INFO: tidings_log_level = 3;
pub const TIDINGS_LOG_DEBUG: tidings_log_level = 4;
pub const TIDINGS_LOG_TRACE: tidings_log_level = 5;

/// What the host offers a plugin; passed to `init`, valid until `deinit`
/// returns. Thread-safe: a plugin may call it from any thread.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tidings_host_api_v1 {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `sizeof(tidings_host_api_v1)` as the host was built: fields past it
    /// are absent.
    pub struct_size: usize,
    /// Passed back as the first argument of every function below.
    pub host_ctx: *mut c_void,
    /// Writes to the host's log; `message` is borrowed for the call.
    pub log: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            level: tidings_log_level,
            message: *const c_char,
        ),
    >,
    /// Hands an ephemeral event (never stored) to the engine's transports.
    /// `data_json` must be JSON. Returns `TIDINGS_PLUGIN_OK` or
    /// `TIDINGS_PLUGIN_ERROR` (bad arguments, queue full, engine stopped).
    pub publish: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            channel: *const c_char,
            event: *const c_char,
            data_json: *const c_char,
        ) -> tidings_plugin_status,
    >,
}

/// `init(host, config_json, &instance, &error)`.
pub type tidings_plugin_init_fn = unsafe extern "C" fn(
    host: *const tidings_host_api_v1,
    config_json: *const c_char,
    instance_out: *mut *mut c_void,
    error_out: *mut *mut c_char,
) -> tidings_plugin_status;
/// `deinit(instance)`: the last call; frees the instance.
pub type tidings_plugin_deinit_fn = unsafe extern "C" fn(instance: *mut c_void);
/// `before_send(instance, message_json, &rewritten_json, &reason)`.
pub type tidings_plugin_before_send_fn = unsafe extern "C" fn(
    instance: *mut c_void,
    message_json: *const c_char,
    rewritten_json_out: *mut *mut c_char,
    reason_out: *mut *mut c_char,
) -> tidings_plugin_status;
/// `after_send(instance, message_json)`.
pub type tidings_plugin_after_send_fn = unsafe extern "C" fn(
    instance: *mut c_void,
    message_json: *const c_char,
) -> tidings_plugin_status;
/// `on_event(instance, channel, event, data_json)`.
pub type tidings_plugin_on_event_fn = unsafe extern "C" fn(
    instance: *mut c_void,
    channel: *const c_char,
    event: *const c_char,
    data_json: *const c_char,
) -> tidings_plugin_status;
/// `deliver(instance, channel, event, data_json, &error)`.
pub type tidings_plugin_deliver_fn = unsafe extern "C" fn(
    instance: *mut c_void,
    channel: *const c_char,
    event: *const c_char,
    data_json: *const c_char,
    error_out: *mut *mut c_char,
) -> tidings_plugin_status;
/// `free_string(s)`: releases a string the plugin handed out; NULL is a no-op.
pub type tidings_plugin_free_string_fn = unsafe extern "C" fn(s: *mut c_char);

/// The static table `tidings_plugin_entry` returns. NULL hooks are absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tidings_plugin_v1 {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `sizeof(tidings_plugin_v1)` as the plugin was built.
    pub struct_size: usize,
    /// Static, NUL-terminated UTF-8: the plugin's name (`profanity-filter`).
    pub name: *const c_char,
    /// Static, NUL-terminated UTF-8: the plugin's own version (`1.2.0`).
    pub version: *const c_char,
    pub init: Option<tidings_plugin_init_fn>,
    pub deinit: Option<tidings_plugin_deinit_fn>,
    pub before_send: Option<tidings_plugin_before_send_fn>,
    pub after_send: Option<tidings_plugin_after_send_fn>,
    pub on_event: Option<tidings_plugin_on_event_fn>,
    /// Present: the plugin is also a transport.
    pub deliver: Option<tidings_plugin_deliver_fn>,
    /// Required when any hook hands out strings.
    pub free_string: Option<tidings_plugin_free_string_fn>,
}

// SAFETY: the descriptor is immutable static data: two pointers to static
// strings and function pointers, all safe to read from any thread.
unsafe impl Sync for tidings_plugin_v1 {}
// SAFETY: as above; moving a copy to another thread reads the same statics.
unsafe impl Send for tidings_plugin_v1 {}

/// The type of `tidings_plugin_entry`.
pub type tidings_plugin_entry_fn = unsafe extern "C" fn() -> *const tidings_plugin_v1;
