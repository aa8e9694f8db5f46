//! The log sink: tidings logs through `tracing`; a C host that wants the
//! lines registers a callback. Nothing is installed until it does.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::boundary::{self, in_callback};
use crate::status::{tidings_status, FfiError};

/// Severity of a log line; the callback's `max_level` keeps lines at or
/// below it (`TIDINGS_LOG_LEVEL_INFO` keeps errors, warnings and info).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tidings_log_level {
    /// No lines at all.
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

/// Receives one log line: its level, its target (the Rust module, such as
/// `tidings::outbox`) and the message with its fields (`key=value`). Both
/// strings are borrowed for the call. Runs on engine threads: return
/// quickly; a blocking `tidings_*` call made here returns `REENTRANT`.
pub type tidings_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: tidings_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Releases the callback's `userdata` once tidings no longer calls it.
pub type tidings_free_userdata = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, tidings_log_level, *const c_char, *const c_char),
    userdata: *mut c_void,
    free_userdata: tidings_free_userdata,
}

// SAFETY: the header requires userdata and callback to be usable from any thread.
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(free) = self.free_userdata {
            // SAFETY: the host gave this finalizer for this userdata.
            in_callback(|| unsafe { free(self.userdata) });
        }
    }
}

static SINK: RwLock<Option<Arc<Sink>>> = RwLock::new(None);
/// `tidings_log_level` as a number; 0 while no callback is set.
static MAX_LEVEL: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

fn level_number(level: &Level) -> usize {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn c_level(level: &Level) -> tidings_log_level {
    match *level {
        Level::ERROR => tidings_log_level::Error,
        Level::WARN => tidings_log_level::Warn,
        Level::INFO => tidings_log_level::Info,
        Level::DEBUG => tidings_log_level::Debug,
        Level::TRACE => tidings_log_level::Trace,
    }
}

/// The process-wide `tracing` subscriber forwarding to the current sink.
/// Spans are not reported; their events are.
struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level changes at run time: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_number(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let sink = match SINK.read() {
            Ok(sink) => sink.clone(),
            Err(_) => return,
        };
        let Some(sink) = sink else { return };
        let mut line = Line::default();
        event.record(&mut line);
        let metadata = event.metadata();
        let (Ok(target), Ok(message)) = (
            CString::new(metadata.target().replace('\0', "")),
            CString::new(line.text.replace('\0', "")),
        ) else {
            return;
        };
        in_callback(|| {
            // SAFETY: the host registered this callback with this userdata;
            // the strings live until it returns.
            unsafe {
                (sink.callback)(
                    sink.userdata,
                    c_level(metadata.level()),
                    target.as_ptr(),
                    message.as_ptr(),
                )
            }
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Line {
    text: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let mut message = format!("{value:?}");
            if !self.text.is_empty() {
                message.push(' ');
                message.push_str(&self.text);
            }
            self.text = message;
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// Sends tidings' log lines up to `max_level` (a `tidings_log_level`) to
/// `callback` with `userdata`; `callback` NULL (or `TIDINGS_LOG_LEVEL_OFF`)
/// stops them. The previous callback's `free_userdata` runs once it is
/// replaced. The first call installs tidings' `tracing` subscriber for the
/// whole process: it fails with `CONFIG` when the host's own Rust code has
/// installed another. `callback` and `userdata` must be usable from any
/// thread.
#[no_mangle]
pub unsafe extern "C" fn tidings_log_set_callback(
    callback: tidings_log_callback,
    max_level: c_int,
    userdata: *mut c_void,
    free_userdata: tidings_free_userdata,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_log_set_callback", error_out, || {
        let level = usize::try_from(max_level)
            .ok()
            .filter(|l| *l <= tidings_log_level::Trace as usize)
            .ok_or_else(|| {
                FfiError::invalid(format!(
                    "max_level {max_level} is not a tidings_log_level (0-5)"
                ))
            })?;
        let sink = callback.map(|callback| {
            Arc::new(Sink {
                callback,
                userdata,
                free_userdata,
            })
        });
        if sink.is_some() {
            INSTALLED
                .get_or_init(|| {
                    tracing::subscriber::set_global_default(Forwarder)
                        .map_err(|e| format!("cannot install the log sink: {e}"))
                })
                .clone()
                .map_err(|e| FfiError::new(tidings_status::Config, e))?;
        }
        let level = if sink.is_some() { level } else { 0 };
        let previous = {
            let mut current = SINK.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, sink)
        };
        MAX_LEVEL.store(level, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        drop(previous);
        Ok(())
    })
}
