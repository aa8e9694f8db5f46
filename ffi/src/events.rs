//! `tidings_events`: a bounded stream of an engine's events that the host
//! pulls with a timeout, typically from one thread of its own event loop.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use tidings::transport::{Received, Subscription};
use tokio::sync::watch;

use crate::boundary::{self, ArcHandle, Out};
use crate::engine::{engine_arg, tidings_engine};
use crate::runtime;
use crate::status::tidings_status;

/// One subscriber's stream of events. Thread-safe: `tidings_events_close`
/// may be called from any thread, also while another waits in
/// `tidings_events_next`.
pub struct tidings_events {
    _private: [u8; 0],
}

pub(crate) struct EventsHandle {
    /// `None` once closed, so a closed stream holds no events back.
    subscription: tokio::sync::Mutex<Option<Subscription>>,
    closed: watch::Sender<bool>,
}

impl ArcHandle for tidings_events {
    type Rust = EventsHandle;
    const NAME: &'static str = "events";
}

impl EventsHandle {
    fn close(&self) {
        self.closed.send_replace(true);
        if let Ok(mut subscription) = self.subscription.try_lock() {
            subscription.take();
        }
    }
}

/// Subscribes to every event the engine delivers from now on (`new-message`,
/// `messages-read`, `typing`, `message-edited`, `message-deleted`,
/// `reaction`). The stream holds at most the engine's `event_capacity`
/// events; a reader that falls further behind gets one `lagged` event with
/// the number dropped (catch up with `tidings_engine_messages_after`).
///
/// On `OK`, `*events_out` is a new handle to release with
/// `tidings_events_free`.
#[no_mangle]
pub unsafe extern "C" fn tidings_events_new(
    engine: *const tidings_engine,
    events_out: *mut *mut tidings_events,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_events_new", error_out, || {
        // SAFETY: the caller passes a live handle.
        let handle = unsafe { engine_arg(engine) }?;
        let out = Out::new(events_out, "events_out")?;
        let (closed, _) = watch::channel(false);
        let events = EventsHandle {
            subscription: tokio::sync::Mutex::new(Some(handle.engine.subscribe())),
            closed,
        };
        out.write(tidings_events::into_ptr(Arc::new(events)));
        Ok(())
    })
}

enum Next {
    Event(String),
    Timeout,
    Closed,
}

/// Waits up to `timeout_ms` milliseconds (0: do not wait) for the next
/// event. Returns `OK` with `*event_json_out` set to
/// `{"event": "new-message", "channel": "private-conversation-1-18",
/// "data": {...}}` (the payload transports deliver) or, after falling
/// behind, `{"event": "lagged", "channel": null, "data": {"dropped": 12}}`;
/// `TIMEOUT` when none came in time; `CLOSED` once the stream is closed or
/// its engine shut down. Only `OK` writes `*event_json_out`. Calls from
/// several threads are served one at a time.
#[no_mangle]
pub unsafe extern "C" fn tidings_events_next(
    events: *const tidings_events,
    timeout_ms: u32,
    event_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call_status("tidings_events_next", error_out, || {
        // SAFETY: the caller passes a live handle.
        let handle = unsafe { tidings_events::clone_from(events, tidings_events::NAME) }?;
        let out = Out::new(event_json_out, "event_json_out")?;
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let next = runtime::block_on("tidings_events_next", async {
            let mut closed = handle.closed.subscribe();
            if *closed.borrow_and_update() {
                return Next::Closed;
            }
            let mut subscription = handle.subscription.lock().await;
            let Some(stream) = subscription.as_mut() else {
                return Next::Closed;
            };
            let next = tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => Next::Closed,
                received = stream.recv() => match received {
                    Some(Received::Event(event)) => Next::Event(event_json(
                        &event.name,
                        Some(&event.channel),
                        &String::from_utf8_lossy(&event.payload),
                    )),
                    Some(Received::Lagged(dropped)) => Next::Event(event_json(
                        "lagged",
                        None,
                        &format!("{{\"dropped\":{dropped}}}"),
                    )),
                    None => Next::Closed,
                },
                () = tokio::time::sleep(timeout) => Next::Timeout,
            };
            if matches!(next, Next::Closed) {
                subscription.take();
            }
            next
        })?;
        match next {
            Next::Event(json) => {
                out.write_str(&json)?;
                Ok(tidings_status::Ok)
            }
            Next::Timeout => Ok(tidings_status::Timeout),
            Next::Closed => Ok(tidings_status::Closed),
        }
    })
}

fn event_json(name: &str, channel: Option<&str>, data: &str) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let channel = channel.map_or_else(|| "null".to_owned(), quote);
    format!(
        "{{\"event\":{},\"channel\":{channel},\"data\":{data}}}",
        quote(name)
    )
}

/// Closes the stream: a `tidings_events_next` waiting now or called later
/// returns `CLOSED`. Idempotent, never blocks, NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn tidings_events_close(events: *const tidings_events) {
    boundary::infallible("tidings_events_close", (), || {
        // SAFETY: the caller passes NULL or a live handle.
        if let Ok(handle) = unsafe { tidings_events::clone_from(events, tidings_events::NAME) } {
            handle.close();
        }
    });
}

/// Closes and releases the stream. NULL is a no-op. No call on this handle
/// may be in flight or follow.
#[no_mangle]
pub unsafe extern "C" fn tidings_events_free(events: *mut tidings_events) {
    boundary::infallible("tidings_events_free", (), || {
        // SAFETY: the caller passes NULL or a live handle, never used again.
        if let Some(handle) = unsafe { tidings_events::take(events) } {
            handle.close();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::event_json;

    #[test]
    fn event_json_embeds_the_payload() {
        let json = event_json(
            "new-message",
            Some("private-conversation-1-18"),
            "{\"a\":1}",
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event"], "new-message");
        assert_eq!(value["channel"], "private-conversation-1-18");
        assert_eq!(value["data"]["a"], 1);
        let lagged: serde_json::Value =
            serde_json::from_str(&event_json("lagged", None, "{\"dropped\":3}")).unwrap();
        assert!(lagged["channel"].is_null());
    }
}
