//! `tidings_engine`: an engine opened from a JSON config, and its calls.
//! Each call blocks the calling thread until the engine answers; results
//! are JSON documents (the Rust types' serde form).

use std::ffi::c_char;
use std::sync::Arc;

use serde_json::json;
use tidings::{Engine, EngineConfig, PageRequest, SendRequest};

use crate::boundary::{self, ArcHandle, Out};
use crate::runtime;
use crate::status::{tidings_status, FfiResult};
use crate::string::{arg, json_arg};

/// An engine: a store, the outbox worker and the transports. Thread-safe:
/// any thread may call it, concurrently. Created by `tidings_engine_new` or
/// `tidings_server_engine`, released by `tidings_engine_free`.
pub struct tidings_engine {
    _private: [u8; 0],
}

/// What a `tidings_engine *` points to.
pub(crate) struct EngineHandle {
    pub engine: Engine,
    /// Whether `_free` shuts the engine down (not for a server's engine,
    /// which the server shuts down).
    pub owned: bool,
}

impl ArcHandle for tidings_engine {
    type Rust = EngineHandle;
    const NAME: &'static str = "engine";
}

/// Borrows the engine behind `engine` for one call.
///
/// # Safety
/// `engine` is NULL or a live handle.
pub(crate) unsafe fn engine_arg(engine: *const tidings_engine) -> FfiResult<Arc<EngineHandle>> {
    // SAFETY: per the contract.
    unsafe { tidings_engine::clone_from(engine, tidings_engine::NAME) }
}

/// Opens an engine from `config_json`, the `EngineConfig` JSON form:
/// `{"store": "sqlite://./data/tidings.db", "event_capacity": 4096}`, every
/// field optional (`store` is `sqlite://PATH`, `postgres://...` or
/// `memory:`). Unknown fields are `CONFIG` errors.
///
/// On `OK`, `*engine_out` is a new handle to release with
/// `tidings_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_new(
    config_json: *const c_char,
    engine_out: *mut *mut tidings_engine,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_engine_new", error_out, || {
        let out = Out::new(engine_out, "engine_out")?;
        // SAFETY: the caller passes a NUL-terminated string.
        let config: EngineConfig =
            unsafe { json_arg(config_json, "config_json", tidings_status::Config) }?;
        let handle = runtime::get()?.handle().clone();
        let store = tidings::store::redact_url(&config.store);
        let engine = runtime::block_on(
            "tidings_engine_new",
            Engine::builder().config(config).runtime(handle).build(),
        )??;
        tracing::debug!(%store, "engine opened");
        out.write(tidings_engine::into_ptr(Arc::new(EngineHandle {
            engine,
            owned: true,
        })));
        Ok(())
    })
}

/// Shuts the engine down: new calls fail with `SHUT_DOWN`, pending events
/// are handed to the transports (for a few seconds at most), background
/// work stops and event streams end with `CLOSED`. Idempotent. The handle
/// stays valid until `tidings_engine_free`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_shutdown(
    engine: *const tidings_engine,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_engine_shutdown", error_out, || {
        // SAFETY: the caller passes a live handle.
        let handle = unsafe { engine_arg(engine) }?;
        runtime::block_on("tidings_engine_shutdown", handle.engine.shutdown())
    })
}

/// Releases a handle. An engine opened by `tidings_engine_new` is shut down
/// first (see `tidings_engine_shutdown`; this may block a few seconds while
/// pending events go out). NULL is a no-op. No call on this handle may be in
/// flight or follow.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_free(engine: *mut tidings_engine) {
    boundary::infallible("tidings_engine_free", (), || {
        // SAFETY: the caller passes NULL or a live handle, never used again.
        let Some(handle) = (unsafe { tidings_engine::take(engine) }) else {
            return;
        };
        if !handle.owned {
            return;
        }
        let engine = handle.engine.clone();
        match runtime::block_on("tidings_engine_free", engine.shutdown()) {
            Ok(()) => {}
            // Inside a callback or on a runtime thread: shut down in the background.
            Err(_) => {
                if let Ok(rt) = runtime::get() {
                    rt.spawn(async move { engine.shutdown().await });
                }
            }
        }
    })
}

/// Runs one engine call for an export that writes a JSON result.
fn json_call<T, F, Fut>(
    function: &'static str,
    engine: *const tidings_engine,
    out: *mut *mut c_char,
    out_name: &str,
    error_out: *mut *mut c_char,
    f: F,
) -> tidings_status
where
    T: serde::Serialize,
    F: FnOnce(Engine) -> FfiResult<Fut>,
    Fut: std::future::Future<Output = tidings::Result<T>>,
{
    boundary::call(function, error_out, || {
        // SAFETY: the caller passes a live handle.
        let handle = unsafe { engine_arg(engine) }?;
        let out = Out::new(out, out_name)?;
        let future = f(handle.engine.clone())?;
        let value = runtime::block_on(function, future)??;
        out.write_json(&value)
    })
}

/// Stores a message and returns it once durable; its `new-message` event
/// follows through the transports and event streams.
///
/// `request_json`: `{"from": "1", "to": "18", "body": "Hello",
/// "client_msg_id": "optional idempotency key"}`, or `"conversation_id":
/// "1-18"` instead of `"to"`. `*sent_json_out`: `{"message": {...},
/// "created": true}`, `created` false for a retry with a known
/// `client_msg_id`. A message is `{"id", "conversation_id", "seq",
/// "sender_id", "body", "client_msg_id", "created_at", "edited_at",
/// "deleted_at", "reactions": [{"user_id", "emoji"}]}` (times in Unix ms).
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_send(
    engine: *const tidings_engine,
    request_json: *const c_char,
    sent_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_send",
        engine,
        sent_json_out,
        "sent_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let request: SendRequest = unsafe {
                json_arg(
                    request_json,
                    "request_json",
                    tidings_status::InvalidArgument,
                )
            }?;
            Ok(async move {
                let sent = engine.send(request).await?;
                Ok(json!({ "message": sent.message, "created": sent.created }))
            })
        },
    )
}

/// A page of a conversation's history, newest first: up to `limit` (1-100)
/// messages with a seq below `before`, or the newest when `before` is 0.
/// `*page_json_out`: `{"items": [message...], "next_before": 17 | null}`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_history(
    engine: *const tidings_engine,
    conversation_id: *const c_char,
    before: i64,
    limit: u32,
    page_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_history",
        engine,
        page_json_out,
        "page_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let conversation = unsafe { arg(conversation_id, "conversation_id") }?.to_owned();
            let page = if before == 0 {
                PageRequest::newest(limit)
            } else {
                PageRequest::before(before, limit)
            };
            Ok(async move { engine.history(&conversation, page).await })
        },
    )
}

/// Messages of a conversation with a seq above `after`, oldest first, at
/// most `max` (1-1000): what a client missed. `*messages_json_out` is a
/// JSON array of messages.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_messages_after(
    engine: *const tidings_engine,
    conversation_id: *const c_char,
    after: i64,
    max: u32,
    messages_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_messages_after",
        engine,
        messages_json_out,
        "messages_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let conversation = unsafe { arg(conversation_id, "conversation_id") }?.to_owned();
            Ok(async move { engine.messages_after(&conversation, after, max).await })
        },
    )
}

/// One message by id; `NOT_FOUND` when there is none.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_message(
    engine: *const tidings_engine,
    message_id: i64,
    message_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_message",
        engine,
        message_json_out,
        "message_json_out",
        error_out,
        |engine| Ok(async move { engine.message(message_id).await }),
    )
}

/// Marks a conversation read by `user_id` up to seq `up_to` (a mark never
/// moves back); emits `messages-read` when it moved. `*read_state_json_out`:
/// `{"conversation_id", "user_id", "seq"}`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_mark_read(
    engine: *const tidings_engine,
    user_id: *const c_char,
    conversation_id: *const c_char,
    up_to: i64,
    read_state_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_mark_read",
        engine,
        read_state_json_out,
        "read_state_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes NUL-terminated strings.
            let (user, conversation) = unsafe { two_args(user_id, conversation_id) }?;
            Ok(async move { engine.mark_read(&user, &conversation, up_to).await })
        },
    )
}

/// The user's read mark and unread count in a conversation.
/// `*unread_json_out`: `{"read_state": {...}, "unread_count": 3}`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_unread(
    engine: *const tidings_engine,
    user_id: *const c_char,
    conversation_id: *const c_char,
    unread_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_unread",
        engine,
        unread_json_out,
        "unread_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes NUL-terminated strings.
            let (user, conversation) = unsafe { two_args(user_id, conversation_id) }?;
            Ok(async move {
                let (read_state, unread_count) = engine.unread(&user, &conversation).await?;
                Ok(json!({ "read_state": read_state, "unread_count": unread_count }))
            })
        },
    )
}

/// The user's conversations, newest activity first, at most `limit`.
/// `*inbox_json_out`: `[{"conversation_id", "peer_id", "last_message",
/// "unread_count", "last_read_seq"}]`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_inbox(
    engine: *const tidings_engine,
    user_id: *const c_char,
    limit: u32,
    inbox_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_inbox",
        engine,
        inbox_json_out,
        "inbox_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let user = unsafe { arg(user_id, "user_id") }?.to_owned();
            Ok(async move { engine.inbox(&user, limit).await })
        },
    )
}

/// Messages in the user's conversations containing every word of `query`,
/// at most `max`. `*messages_json_out` is a JSON array of messages.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_search(
    engine: *const tidings_engine,
    user_id: *const c_char,
    query: *const c_char,
    max: u32,
    messages_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_search",
        engine,
        messages_json_out,
        "messages_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes NUL-terminated strings.
            let (user, query) = unsafe { (arg(user_id, "user_id")?, arg(query, "query")?) };
            let (user, query) = (user.to_owned(), query.to_owned());
            Ok(async move { engine.search(&user, &query, max).await })
        },
    )
}

/// Tells a conversation that `user_id` is typing (a `typing` event; never
/// stored).
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_typing(
    engine: *const tidings_engine,
    user_id: *const c_char,
    conversation_id: *const c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_engine_typing", error_out, || {
        // SAFETY: the caller passes a live handle and NUL-terminated strings.
        let handle = unsafe { engine_arg(engine) }?;
        // SAFETY: as above.
        let (user, conversation) = unsafe { two_args(user_id, conversation_id) }?;
        let engine = handle.engine.clone();
        runtime::block_on("tidings_engine_typing", async move {
            engine.typing(&user, &conversation).await
        })??;
        Ok(())
    })
}

/// Replaces the body of a message; only its sender may. Emits
/// `message-edited`. `*message_json_out` is the message after the edit.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_edit(
    engine: *const tidings_engine,
    user_id: *const c_char,
    message_id: i64,
    body: *const c_char,
    message_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_edit",
        engine,
        message_json_out,
        "message_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes NUL-terminated strings.
            let (user, body) = unsafe { two_named(user_id, "user_id", body, "body") }?;
            Ok(async move { engine.edit(&user, message_id, &body).await })
        },
    )
}

/// Soft-deletes a message (body cleared, seq kept); only its sender may.
/// Emits `message-deleted`. `*message_json_out` is the deleted message.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_delete(
    engine: *const tidings_engine,
    user_id: *const c_char,
    message_id: i64,
    message_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_delete",
        engine,
        message_json_out,
        "message_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let user = unsafe { arg(user_id, "user_id") }?.to_owned();
            Ok(async move { engine.delete(&user, message_id).await })
        },
    )
}

/// Sets the user's one reaction on a message, replacing an earlier one.
/// Emits `reaction`. `*message_json_out` is the message after the change.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_react(
    engine: *const tidings_engine,
    user_id: *const c_char,
    message_id: i64,
    emoji: *const c_char,
    message_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_react",
        engine,
        message_json_out,
        "message_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes NUL-terminated strings.
            let (user, emoji) = unsafe { two_named(user_id, "user_id", emoji, "emoji") }?;
            Ok(async move { engine.react(&user, message_id, &emoji).await })
        },
    )
}

/// Takes the user's reaction back. Emits `reaction` with `"emoji": null`.
#[no_mangle]
pub unsafe extern "C" fn tidings_engine_unreact(
    engine: *const tidings_engine,
    user_id: *const c_char,
    message_id: i64,
    message_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    json_call(
        "tidings_engine_unreact",
        engine,
        message_json_out,
        "message_json_out",
        error_out,
        |engine| {
            // SAFETY: the caller passes a NUL-terminated string.
            let user = unsafe { arg(user_id, "user_id") }?.to_owned();
            Ok(async move { engine.unreact(&user, message_id).await })
        },
    )
}

/// `user_id` and `conversation_id`, owned.
///
/// # Safety
/// As [`arg`].
unsafe fn two_args(
    user_id: *const c_char,
    conversation_id: *const c_char,
) -> FfiResult<(String, String)> {
    // SAFETY: per the contract.
    unsafe { two_named(user_id, "user_id", conversation_id, "conversation_id") }
}

/// # Safety
/// As [`arg`].
unsafe fn two_named(
    a: *const c_char,
    a_name: &str,
    b: *const c_char,
    b_name: &str,
) -> FfiResult<(String, String)> {
    // SAFETY: per the contract.
    unsafe { Ok((arg(a, a_name)?.to_owned(), arg(b, b_name)?.to_owned())) }
}
