//! One initialized plugin: its checked descriptor, its instance, the host
//! table it was given, and the calls into it (timed, panics contained by
//! disabling it).

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tidings_plugin::abi::*;
use tokio::sync::mpsc;

use crate::event::Event;

/// Hooks slower than this are logged as warnings.
const SLOW_HOOK: Duration = Duration::from_millis(500);

/// The fields of a descriptor the host uses, checked.
pub(crate) struct Checked {
    pub table: tidings_plugin_v1,
    pub name: String,
    pub version: String,
}

/// Reads and checks a descriptor: the major version first (reading nothing
/// else of another major), then only the fields inside `struct_size`.
/// Errors name both versions; the caller adds plugin and file.
pub(crate) fn read_descriptor(ptr: *const tidings_plugin_v1) -> Result<Checked, String> {
    if ptr.is_null() {
        return Err("`tidings_plugin_entry` returned NULL instead of a descriptor".into());
    }
    // SAFETY: every ABI major starts with these three fields; read them
    // without assuming anything about the rest.
    let (major, minor, size) = unsafe {
        (
            std::ptr::addr_of!((*ptr).abi_major).read(),
            std::ptr::addr_of!((*ptr).abi_minor).read(),
            std::ptr::addr_of!((*ptr).struct_size).read(),
        )
    };
    if major != TIDINGS_PLUGIN_ABI_MAJOR {
        return Err(format!(
            "built for plugin ABI {major}.{minor}, but this host speaks plugin ABI \
             {TIDINGS_PLUGIN_ABI_MAJOR}.{TIDINGS_PLUGIN_ABI_MINOR} and loads only major \
             {TIDINGS_PLUGIN_ABI_MAJOR}: rebuild the plugin against tidings_plugin.h \
             {TIDINGS_PLUGIN_ABI_MAJOR}.x"
        ));
    }
    let ours = std::mem::size_of::<tidings_plugin_v1>();
    if size < ours {
        return Err(format!(
            "plugin ABI {major}.{minor} descriptor claims struct_size {size}, smaller than \
             the {ours} bytes of ABI {TIDINGS_PLUGIN_ABI_MAJOR}.0"
        ));
    }
    let mut table = tidings_plugin_v1 {
        abi_major: major,
        abi_minor: minor,
        struct_size: size,
        name: std::ptr::null(),
        version: std::ptr::null(),
        init: None,
        deinit: None,
        before_send: None,
        after_send: None,
        on_event: None,
        deliver: None,
        free_string: None,
    };
    // SAFETY: the plugin promises `size` readable bytes; we copy at most
    // our own size, so fields a newer minor added are not read, and fields
    // past `size` (none, for 1.0) stay NULL.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            (&mut table as *mut tidings_plugin_v1).cast::<u8>(),
            size.min(ours),
        );
    }
    let name = static_str(table.name).ok_or("the descriptor's `name` is NULL or not UTF-8")?;
    if name.is_empty() {
        return Err("the descriptor's `name` is empty".into());
    }
    let version =
        static_str(table.version).ok_or("the descriptor's `version` is NULL or not UTF-8")?;
    let hands_out_strings =
        table.init.is_some() || table.before_send.is_some() || table.deliver.is_some();
    if hands_out_strings && table.free_string.is_none() {
        return Err(format!(
            "plugin {name} has hooks that return strings but no `free_string`"
        ));
    }
    Ok(Checked {
        table,
        name,
        version,
    })
}

fn static_str(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a static NUL-terminated string per the ABI.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// The hooks, for statistics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Init,
    BeforeSend,
    AfterSend,
    OnEvent,
    Deliver,
}

impl Hook {
    pub(crate) const ALL: [Hook; 5] = [
        Hook::Init,
        Hook::BeforeSend,
        Hook::AfterSend,
        Hook::OnEvent,
        Hook::Deliver,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::BeforeSend => "before_send",
            Hook::AfterSend => "after_send",
            Hook::OnEvent => "on_event",
            Hook::Deliver => "deliver",
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub total_us: AtomicU64,
    pub max_us: AtomicU64,
}

/// Where `publish` from any plugin goes: a bounded queue drained by one
/// task into the engine's transports. Empty until the engine is built, and
/// again after shutdown.
#[derive(Default)]
pub(crate) struct Publisher {
    pub queue: Mutex<Option<mpsc::Sender<Event>>>,
}

/// What `host_ctx` points to.
struct HostCtx {
    label: String,
    publisher: Arc<Publisher>,
}

/// The host table handed to the plugin (its `host_ctx` points to a
/// [`HostCtx`], which is `Send + Sync`).
struct HostTable(Box<tidings_host_api_v1>);
// SAFETY: the table is immutable after init and only points to a `HostCtx`
// (Send + Sync) and to thread-safe functions.
unsafe impl Send for HostTable {}
// SAFETY: as above.
unsafe impl Sync for HostTable {}

struct InstancePtr(*mut c_void);
// SAFETY: the plugin ABI requires instances to be thread-safe.
unsafe impl Send for InstancePtr {}
// SAFETY: as above.
unsafe impl Sync for InstancePtr {}

/// What a hook answered.
pub(crate) enum Answer {
    /// Absent, disabled, or already shut down.
    Skipped,
    Ok,
    Rewrite(String),
    Reject(String),
    /// The plugin reported an error (its text, if any).
    Failed(Option<String>),
}

pub(crate) struct LoadedPlugin {
    /// The configured name, or the plugin's own.
    pub label: String,
    /// The plugin's own name.
    pub name: String,
    pub version: String,
    /// The file, or `compiled in`.
    pub origin: String,
    table: tidings_plugin_v1,
    /// `None` once `deinit` ran. Calls hold the read lock, `deinit` the write lock.
    instance: RwLock<Option<InstancePtr>>,
    disabled: OnceLock<String>,
    counters: [Counters; 5],
    // Referenced by raw pointer from the instance: dropped after `deinit`.
    _host_api: HostTable,
    _host_ctx: Box<HostCtx>,
    /// The loaded library, if any: dropped last, after `deinit`.
    _library: Option<Box<dyn Send + Sync>>,
}

impl LoadedPlugin {
    /// Calls `init` (on the calling thread: use a blocking one). Errors say
    /// what failed; the caller names the plugin and the file.
    pub(crate) fn init(
        checked: Checked,
        label: String,
        origin: String,
        config_json: &str,
        publisher: Arc<Publisher>,
        library: Option<Box<dyn Send + Sync>>,
    ) -> Result<LoadedPlugin, String> {
        let host_ctx = Box::new(HostCtx {
            label: label.clone(),
            publisher,
        });
        let host_api = HostTable(Box::new(tidings_host_api_v1 {
            abi_major: TIDINGS_PLUGIN_ABI_MAJOR,
            abi_minor: TIDINGS_PLUGIN_ABI_MINOR,
            struct_size: std::mem::size_of::<tidings_host_api_v1>(),
            host_ctx: (&*host_ctx as *const HostCtx).cast_mut().cast(),
            log: Some(host_log),
            publish: Some(host_publish),
        }));
        let plugin = LoadedPlugin {
            label,
            name: checked.name,
            version: checked.version,
            origin,
            table: checked.table,
            instance: RwLock::new(None),
            disabled: OnceLock::new(),
            counters: Default::default(),
            _host_api: host_api,
            _host_ctx: host_ctx,
            _library: library,
        };
        let mut instance: *mut c_void = std::ptr::null_mut();
        if let Some(init) = plugin.table.init {
            let config = CString::new(config_json)
                .map_err(|_| "the plugin's configuration contains a NUL byte".to_owned())?;
            let mut error: *mut c_char = std::ptr::null_mut();
            let started = Instant::now();
            // SAFETY: the ABI's init: host table valid until deinit, config
            // borrowed for the call, out-parameters valid.
            let status = unsafe {
                init(
                    &*plugin._host_api.0,
                    config.as_ptr(),
                    &mut instance,
                    &mut error,
                )
            };
            plugin.count(Hook::Init, started, status != TIDINGS_PLUGIN_OK);
            let error = plugin.take_string(error);
            if status != TIDINGS_PLUGIN_OK {
                // No instance to deinit: make sure Drop does not try.
                return Err(format!(
                    "init failed: {}",
                    error.unwrap_or_else(|| format!("status {status}, no message"))
                ));
            }
        }
        *plugin.instance.write().unwrap_or_else(|e| e.into_inner()) = Some(InstancePtr(instance));
        Ok(plugin)
    }

    pub(crate) fn has(&self, hook: Hook) -> bool {
        match hook {
            Hook::Init => self.table.init.is_some(),
            Hook::BeforeSend => self.table.before_send.is_some(),
            Hook::AfterSend => self.table.after_send.is_some(),
            Hook::OnEvent => self.table.on_event.is_some(),
            Hook::Deliver => self.table.deliver.is_some(),
        }
    }

    pub(crate) fn disabled(&self) -> Option<&str> {
        self.disabled.get().map(String::as_str)
    }

    /// Turns the plugin off for good; logged once.
    pub(crate) fn disable(&self, reason: String) {
        if self.disabled.set(reason.clone()).is_ok() {
            tracing::error!(
                plugin = %self.label,
                file = %self.origin,
                "plugin disabled: {reason}; the engine goes on without it"
            );
        }
    }

    pub(crate) fn abi_minor(&self) -> u32 {
        self.table.abi_minor
    }

    pub(crate) fn counters(&self, hook: Hook) -> &Counters {
        &self.counters[Hook::ALL.iter().position(|h| *h == hook).unwrap_or(0)]
    }

    fn count(&self, hook: Hook, started: Instant, failed: bool) {
        let elapsed = started.elapsed();
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let c = self.counters(hook);
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.total_us.fetch_add(us, Ordering::Relaxed);
        c.max_us.fetch_max(us, Ordering::Relaxed);
        if failed {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        tracing::trace!(plugin = %self.label, hook = hook.as_str(), elapsed_us = us, "plugin hook");
        if elapsed >= SLOW_HOOK {
            tracing::warn!(
                plugin = %self.label,
                hook = hook.as_str(),
                elapsed_ms = elapsed.as_millis() as u64,
                "slow plugin hook"
            );
        }
    }

    /// Copies and frees a string the plugin handed out.
    fn take_string(&self, ptr: *mut c_char) -> Option<String> {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string the plugin allocated.
        let text = unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned();
        if let Some(free) = self.table.free_string {
            // SAFETY: handed back to the allocator that made it, once.
            unsafe { free(ptr) };
        }
        Some(text)
    }

    /// Runs one hook on a live, enabled instance (blocking: call from a
    /// blocking thread), timed and with its status handled.
    fn call(
        &self,
        hook: Hook,
        f: impl FnOnce(*mut c_void, &mut *mut c_char, &mut *mut c_char) -> tidings_plugin_status,
    ) -> Answer {
        if self.disabled.get().is_some() {
            return Answer::Skipped;
        }
        let guard = self.instance.read().unwrap_or_else(|e| e.into_inner());
        let Some(instance) = guard.as_ref() else {
            return Answer::Skipped;
        };
        let span = tracing::debug_span!(
            "plugin_hook",
            plugin = %self.label,
            hook = hook.as_str(),
            elapsed_us = tracing::field::Empty
        );
        let _entered = span.enter();
        let (mut first, mut second) = (std::ptr::null_mut(), std::ptr::null_mut());
        let started = Instant::now();
        let status = f(instance.0, &mut first, &mut second);
        span.record("elapsed_us", started.elapsed().as_micros() as u64);
        drop(guard);
        let failed = !matches!(
            status,
            TIDINGS_PLUGIN_OK | TIDINGS_PLUGIN_REWRITE | TIDINGS_PLUGIN_REJECT
        );
        self.count(hook, started, failed);
        let first = self.take_string(first);
        let second = self.take_string(second);
        match (hook, status) {
            (_, TIDINGS_PLUGIN_OK) => Answer::Ok,
            (Hook::BeforeSend, TIDINGS_PLUGIN_REWRITE) => match first {
                Some(json) => Answer::Rewrite(json),
                None => self.failed(hook, Some("answered REWRITE without a document".into())),
            },
            (Hook::BeforeSend, TIDINGS_PLUGIN_REJECT) => {
                Answer::Reject(second.unwrap_or_else(|| "no reason given".to_owned()))
            }
            (_, TIDINGS_PLUGIN_PANIC) => {
                let why = second.or(first).unwrap_or_else(|| "it panicked".to_owned());
                self.disable(format!("{} failed fatally: {why}", hook.as_str()));
                Answer::Skipped
            }
            (Hook::BeforeSend, TIDINGS_PLUGIN_ERROR) => self.failed(hook, second),
            (_, TIDINGS_PLUGIN_ERROR) => self.failed(hook, first),
            (_, other) => self.failed(hook, Some(format!("returned unknown status {other}"))),
        }
    }

    fn failed(&self, hook: Hook, why: Option<String>) -> Answer {
        tracing::warn!(
            plugin = %self.label,
            hook = hook.as_str(),
            error = why.as_deref().unwrap_or("no message"),
            "plugin hook failed; going on as if it were absent"
        );
        Answer::Failed(why)
    }

    pub(crate) fn before_send(&self, message_json: &CStr) -> Answer {
        let Some(hook) = self.table.before_send else {
            return Answer::Skipped;
        };
        self.call(Hook::BeforeSend, |instance, rewritten, reason| {
            // SAFETY: the ABI's before_send: live instance, borrowed input,
            // valid out-parameters.
            unsafe { hook(instance, message_json.as_ptr(), rewritten, reason) }
        })
    }

    pub(crate) fn after_send(&self, message_json: &CStr) -> Answer {
        let Some(hook) = self.table.after_send else {
            return Answer::Skipped;
        };
        self.call(Hook::AfterSend, |instance, _, _| {
            // SAFETY: as for before_send.
            unsafe { hook(instance, message_json.as_ptr()) }
        })
    }

    pub(crate) fn on_event(&self, channel: &CStr, event: &CStr, data: &CStr) -> Answer {
        let Some(hook) = self.table.on_event else {
            return Answer::Skipped;
        };
        self.call(Hook::OnEvent, |instance, _, _| {
            // SAFETY: as for before_send.
            unsafe { hook(instance, channel.as_ptr(), event.as_ptr(), data.as_ptr()) }
        })
    }

    pub(crate) fn deliver(&self, channel: &CStr, event: &CStr, data: &CStr) -> Answer {
        let Some(hook) = self.table.deliver else {
            return Answer::Skipped;
        };
        self.call(Hook::Deliver, |instance, error, _| {
            // SAFETY: as for before_send.
            unsafe {
                hook(
                    instance,
                    channel.as_ptr(),
                    event.as_ptr(),
                    data.as_ptr(),
                    error,
                )
            }
        })
    }

    /// Calls `deinit` once, after every call in flight returned (blocking).
    pub(crate) fn deinit(&self) {
        let taken = self
            .instance
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(instance) = taken else { return };
        if let Some(deinit) = self.table.deinit {
            tracing::debug!(plugin = %self.label, "plugin deinit");
            // SAFETY: the instance init made, released once, with no call in
            // flight (we hold it exclusively now).
            unsafe { deinit(instance.0) };
        }
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        // Before the host table, the context and the library go.
        self.deinit();
    }
}

fn ctx<'a>(host_ctx: *mut c_void) -> Option<&'a HostCtx> {
    // SAFETY: host_ctx is the `HostCtx` the host table was built with, alive
    // until after deinit.
    unsafe { host_ctx.cast::<HostCtx>().as_ref() }
}

unsafe extern "C" fn host_log(host_ctx: *mut c_void, level: i32, message: *const c_char) {
    let _ = std::panic::catch_unwind(|| {
        let Some(ctx) = ctx(host_ctx) else { return };
        if message.is_null() {
            return;
        }
        // SAFETY: borrowed for the call per the ABI.
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        let plugin = ctx.label.as_str();
        match level {
            TIDINGS_LOG_ERROR => tracing::error!(plugin, "{message}"),
            TIDINGS_LOG_WARN => tracing::warn!(plugin, "{message}"),
            TIDINGS_LOG_INFO => tracing::info!(plugin, "{message}"),
            TIDINGS_LOG_DEBUG => tracing::debug!(plugin, "{message}"),
            _ => tracing::trace!(plugin, "{message}"),
        }
    });
}

unsafe extern "C" fn host_publish(
    host_ctx: *mut c_void,
    channel: *const c_char,
    event: *const c_char,
    data_json: *const c_char,
) -> tidings_plugin_status {
    let result = std::panic::catch_unwind(|| {
        let ctx = ctx(host_ctx).ok_or("no host context")?;
        let text = |ptr: *const c_char, what: &str| -> Result<String, String> {
            if ptr.is_null() {
                return Err(format!("{what} is NULL"));
            }
            // SAFETY: borrowed for the call per the ABI.
            let s = unsafe { CStr::from_ptr(ptr) };
            s.to_str()
                .map(str::to_owned)
                .map_err(|_| format!("{what} is not UTF-8"))
        };
        let channel = text(channel, "channel")?;
        let event = text(event, "event")?;
        let data = text(data_json, "data_json")?;
        if channel.is_empty() || event.is_empty() {
            return Err("channel and event must not be empty".to_owned());
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_err() {
            return Err(format!("data_json of {event:?} is not JSON"));
        }
        let queue = ctx
            .publisher
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let sender = queue.as_ref().ok_or("the engine is not running")?;
        sender
            .try_send(Event::new(channel, event, data.into_bytes().into()))
            .map_err(|e| format!("cannot queue the event: {e}"))?;
        Ok::<_, String>(ctx.label.clone())
    });
    match result {
        Ok(Ok(_)) => TIDINGS_PLUGIN_OK,
        Ok(Err(why)) => {
            let plugin = ctx(host_ctx).map_or("?", |c| c.label.as_str());
            tracing::warn!(plugin, "publish refused: {why}");
            TIDINGS_PLUGIN_ERROR
        }
        Err(_) => TIDINGS_PLUGIN_ERROR,
    }
}
