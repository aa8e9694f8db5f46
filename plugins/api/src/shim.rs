//! The `extern "C"` functions behind [`descriptor`]: each checks its
//! arguments, runs the [`Plugin`] method inside `catch_unwind`, and turns the
//! result into a status and owned out-strings.

use std::any::Any;
use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::*;
use crate::{hand_out, Error, Host, Level, Message, Plugin, Verdict};

/// What the instance pointer points to.
struct Instance<P> {
    plugin: P,
    host: Host,
    /// Set by the first panic; every later call answers `PANIC` at once.
    broken: AtomicBool,
}

/// The static table of a [`Plugin`]: what `tidings_plugin_entry` returns,
/// and what a static build hands to `tidings::EngineBuilder::plugin`.
pub fn descriptor<P: Plugin>() -> &'static tidings_plugin_v1 {
    &Table::<P>::V1
}

struct Table<P>(PhantomData<P>);

impl<P: Plugin> Table<P> {
    const V1: tidings_plugin_v1 = tidings_plugin_v1 {
        abi_major: TIDINGS_PLUGIN_ABI_MAJOR,
        abi_minor: TIDINGS_PLUGIN_ABI_MINOR,
        struct_size: std::mem::size_of::<tidings_plugin_v1>(),
        name: P::NAME.as_ptr(),
        version: P::VERSION.as_ptr(),
        init: Some(init::<P>),
        deinit: Some(deinit::<P>),
        before_send: Some(before_send::<P>),
        after_send: Some(after_send::<P>),
        on_event: Some(on_event::<P>),
        deliver: if P::TRANSPORT {
            Some(deliver::<P>)
        } else {
            None
        },
        free_string: Some(free_string),
    };
}

/// Exports a [`Plugin`] as `tidings_plugin_entry` from a `cdylib`. Use it
/// once per library; a static build calls [`descriptor`] instead.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The tidings plugin entry point (plugin ABI v1).
        #[no_mangle]
        pub extern "C" fn tidings_plugin_entry() -> *const $crate::abi::tidings_plugin_v1 {
            $crate::descriptor::<$plugin>()
        }
    };
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

fn name<P: Plugin>() -> String {
    P::NAME.to_string_lossy().into_owned()
}

/// Borrows a string argument for the call.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(format!("{what} is NULL").into());
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|e| format!("{what} is not UTF-8: {e}").into())
}

/// Writes an owned string into an out-parameter, when there is one.
///
/// # Safety
/// `out` is NULL or valid for a write.
unsafe fn put(out: *mut *mut c_char, text: &str) {
    if !out.is_null() {
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { *out = hand_out(text) };
    }
}

/// Runs one hook of a live instance, containing panics: a panic is logged,
/// its text written to `panic_out` (when not NULL), and `PANIC` returned.
///
/// # Safety
/// `instance` is NULL or a pointer `init::<P>` returned and `deinit` has
/// not released; `panic_out` is NULL or valid for a write.
unsafe fn guarded<P: Plugin>(
    instance: *mut c_void,
    hook: &str,
    panic_out: *mut *mut c_char,
    f: impl FnOnce(&Instance<P>) -> tidings_plugin_status,
) -> tidings_plugin_status {
    if instance.is_null() {
        return TIDINGS_PLUGIN_ERROR;
    }
    // SAFETY: per the function's contract, a live `Instance<P>`.
    let inst = unsafe { &*(instance as *const Instance<P>) };
    if inst.broken.load(Ordering::Acquire) {
        return TIDINGS_PLUGIN_PANIC;
    }
    match catch_unwind(AssertUnwindSafe(|| f(inst))) {
        Ok(status) => status,
        Err(payload) => {
            inst.broken.store(true, Ordering::Release);
            let text = format!("panicked in {hook}: {}", panic_text(&*payload));
            inst.host
                .log(Level::Error, &format!("plugin {} {text}", name::<P>()));
            // SAFETY: per the function's contract.
            unsafe { put(panic_out, &text) };
            TIDINGS_PLUGIN_PANIC
        }
    }
}

unsafe extern "C" fn init<P: Plugin>(
    host: *const tidings_host_api_v1,
    config_json: *const c_char,
    instance_out: *mut *mut c_void,
    error_out: *mut *mut c_char,
) -> tidings_plugin_status {
    let host = Host::from_raw(host);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let config = if config_json.is_null() {
            "{}"
        } else {
            // SAFETY: the host passes a NUL-terminated string borrowed for the call.
            unsafe { arg(config_json, "config_json") }?
        };
        P::init(host, config)
    }));
    let failure = match result {
        Ok(Ok(plugin)) => {
            if instance_out.is_null() {
                return TIDINGS_PLUGIN_ERROR;
            }
            let instance = Box::new(Instance {
                plugin,
                host,
                broken: AtomicBool::new(false),
            });
            // SAFETY: non-null out-parameter from the host.
            unsafe { *instance_out = Box::into_raw(instance).cast() };
            return TIDINGS_PLUGIN_OK;
        }
        Ok(Err(err)) => err.to_string(),
        Err(payload) => format!("panicked in init: {}", panic_text(&*payload)),
    };
    // SAFETY: out-parameter from the host, NULL or writable.
    unsafe { put(error_out, &failure) };
    TIDINGS_PLUGIN_ERROR
}

unsafe extern "C" fn deinit<P: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: the pointer `init::<P>` made; deinit is the last call.
    let inst = unsafe { Box::from_raw(instance as *mut Instance<P>) };
    let host = inst.host;
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || {
        inst.plugin.shutdown();
        drop(inst);
    })) {
        host.log(
            Level::Error,
            &format!(
                "plugin {} panicked in shutdown: {}",
                name::<P>(),
                panic_text(&*payload)
            ),
        );
    }
}

unsafe extern "C" fn before_send<P: Plugin>(
    instance: *mut c_void,
    message_json: *const c_char,
    rewritten_json_out: *mut *mut c_char,
    reason_out: *mut *mut c_char,
) -> tidings_plugin_status {
    let hook = |inst: &Instance<P>| {
        let outcome = (|| {
            // SAFETY: borrowed for the call.
            let json = unsafe { arg(message_json, "message_json") }?;
            let message: Message = serde_json::from_str(json)?;
            let verdict = inst.plugin.before_send(&message)?;
            Ok::<_, Error>(match verdict {
                Verdict::Allow => (TIDINGS_PLUGIN_OK, None),
                Verdict::Rewrite(body) => {
                    let mut doc: serde_json::Value = serde_json::from_str(json)?;
                    doc["body"] = serde_json::Value::String(body);
                    (TIDINGS_PLUGIN_REWRITE, Some(doc.to_string()))
                }
                Verdict::Reject(reason) => (TIDINGS_PLUGIN_REJECT, Some(reason)),
            })
        })();
        match outcome {
            Ok((TIDINGS_PLUGIN_REWRITE, Some(json))) => {
                if rewritten_json_out.is_null() {
                    return TIDINGS_PLUGIN_ERROR;
                }
                // SAFETY: the host's out-parameter, NULL or writable.
                unsafe { put(rewritten_json_out, &json) };
                TIDINGS_PLUGIN_REWRITE
            }
            Ok((TIDINGS_PLUGIN_REJECT, Some(reason))) => {
                // SAFETY: as above.
                unsafe { put(reason_out, &reason) };
                TIDINGS_PLUGIN_REJECT
            }
            Ok((status, _)) => status,
            Err(err) => {
                // SAFETY: as above.
                unsafe { put(reason_out, &err.to_string()) };
                TIDINGS_PLUGIN_ERROR
            }
        }
    };
    // SAFETY: the host passes a live instance.
    unsafe { guarded::<P>(instance, "before_send", reason_out, hook) }
}

/// Logs a hook's error through the host and answers `ERROR`.
fn failed<P: Plugin>(inst: &Instance<P>, hook: &str, err: &Error) -> tidings_plugin_status {
    inst.host.log(
        Level::Warn,
        &format!("plugin {} {hook} failed: {err}", name::<P>()),
    );
    TIDINGS_PLUGIN_ERROR
}

unsafe extern "C" fn after_send<P: Plugin>(
    instance: *mut c_void,
    message_json: *const c_char,
) -> tidings_plugin_status {
    let hook = |inst: &Instance<P>| {
        let outcome = (|| {
            // SAFETY: borrowed for the call.
            let json = unsafe { arg(message_json, "message_json") }?;
            let message: Message = serde_json::from_str(json)?;
            inst.plugin.after_send(&message)
        })();
        match outcome {
            Ok(()) => TIDINGS_PLUGIN_OK,
            Err(err) => failed(inst, "after_send", &err),
        }
    };
    // SAFETY: the host passes a live instance.
    unsafe { guarded::<P>(instance, "after_send", std::ptr::null_mut(), hook) }
}

unsafe extern "C" fn on_event<P: Plugin>(
    instance: *mut c_void,
    channel: *const c_char,
    event: *const c_char,
    data_json: *const c_char,
) -> tidings_plugin_status {
    let hook = |inst: &Instance<P>| {
        let outcome = (|| {
            // SAFETY: borrowed for the call.
            let (channel, event, data) = unsafe {
                (
                    arg(channel, "channel")?,
                    arg(event, "event")?,
                    arg(data_json, "data_json")?,
                )
            };
            inst.plugin.on_event(channel, event, data)
        })();
        match outcome {
            Ok(()) => TIDINGS_PLUGIN_OK,
            Err(err) => failed(inst, "on_event", &err),
        }
    };
    // SAFETY: the host passes a live instance.
    unsafe { guarded::<P>(instance, "on_event", std::ptr::null_mut(), hook) }
}

unsafe extern "C" fn deliver<P: Plugin>(
    instance: *mut c_void,
    channel: *const c_char,
    event: *const c_char,
    data_json: *const c_char,
    error_out: *mut *mut c_char,
) -> tidings_plugin_status {
    let hook = |inst: &Instance<P>| {
        let outcome = (|| {
            // SAFETY: borrowed for the call.
            let (channel, event, data) = unsafe {
                (
                    arg(channel, "channel")?,
                    arg(event, "event")?,
                    arg(data_json, "data_json")?,
                )
            };
            inst.plugin.deliver(channel, event, data)
        })();
        match outcome {
            Ok(()) => TIDINGS_PLUGIN_OK,
            Err(err) => {
                // SAFETY: the host's out-parameter, NULL or writable.
                unsafe { put(error_out, &err.to_string()) };
                TIDINGS_PLUGIN_ERROR
            }
        }
    };
    // SAFETY: the host passes a live instance.
    unsafe { guarded::<P>(instance, "deliver", error_out, hook) }
}

unsafe extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string this crate hands out comes from `CString::into_raw`.
        drop(unsafe { CString::from_raw(s) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    struct Echo;

    impl Plugin for Echo {
        const NAME: &'static CStr = c"echo";
        const VERSION: &'static CStr = c"0.0.1";

        fn init(_host: Host, config_json: &str) -> Result<Self, Error> {
            if config_json.contains("fail") {
                return Err("told to fail".into());
            }
            Ok(Echo)
        }

        fn before_send(&self, message: &Message) -> Result<Verdict, Error> {
            match message.body.as_str() {
                "boom" => panic!("boom"),
                "no" => Ok(Verdict::Reject("no means no".into())),
                "bad" => Err("bad body".into()),
                b => Ok(Verdict::Rewrite(format!("{b}!"))),
            }
        }
    }

    fn take(s: *mut c_char) -> String {
        assert!(!s.is_null());
        let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_owned();
        unsafe { free_string(s) };
        text
    }

    #[test]
    fn descriptor_is_static_and_complete() {
        let d = descriptor::<Echo>();
        assert_eq!(d.abi_major, TIDINGS_PLUGIN_ABI_MAJOR);
        assert_eq!(d.struct_size, std::mem::size_of::<tidings_plugin_v1>());
        assert_eq!(unsafe { CStr::from_ptr(d.name) }, c"echo");
        assert!(d.deliver.is_none(), "not a transport");
        assert!(ptr::eq(d, descriptor::<Echo>()));
    }

    #[test]
    fn hooks_round_trip_and_panics_are_contained() {
        let d = descriptor::<Echo>();
        let mut instance = ptr::null_mut();
        let mut error = ptr::null_mut();
        let status = unsafe {
            (d.init.unwrap())(
                ptr::null(),
                c"{\"fail\":1}".as_ptr(),
                &mut instance,
                &mut error,
            )
        };
        assert_eq!(status, TIDINGS_PLUGIN_ERROR);
        assert_eq!(take(error), "told to fail");

        let status =
            unsafe { (d.init.unwrap())(ptr::null(), ptr::null(), &mut instance, &mut error) };
        assert_eq!(status, TIDINGS_PLUGIN_OK);
        let before = d.before_send.unwrap();
        let call = |body: &str| {
            let json = CString::new(format!(
                r#"{{"conversation_id":"1-2","sender_id":"1","body":"{body}","client_msg_id":null,"created_at":5,"future":true}}"#
            ))
            .unwrap();
            let mut rewritten = ptr::null_mut();
            let mut reason = ptr::null_mut();
            let status = unsafe { before(instance, json.as_ptr(), &mut rewritten, &mut reason) };
            (status, rewritten, reason)
        };
        let (status, rewritten, _) = call("hi");
        assert_eq!(status, TIDINGS_PLUGIN_REWRITE);
        let doc: serde_json::Value = serde_json::from_str(&take(rewritten)).unwrap();
        assert_eq!(doc["body"], "hi!");
        assert_eq!(doc["future"], true, "unknown fields are kept");
        let (status, _, reason) = call("no");
        assert_eq!(status, TIDINGS_PLUGIN_REJECT);
        assert_eq!(take(reason), "no means no");
        let (status, _, reason) = call("bad");
        assert_eq!(status, TIDINGS_PLUGIN_ERROR);
        assert_eq!(take(reason), "bad body");
        let (status, _, reason) = call("boom");
        assert_eq!(status, TIDINGS_PLUGIN_PANIC);
        assert_eq!(take(reason), "panicked in before_send: boom");
        let (status, _, _) = call("hi");
        assert_eq!(
            status, TIDINGS_PLUGIN_PANIC,
            "a panicked instance stays off"
        );
        unsafe { (d.deinit.unwrap())(instance) };
    }
}
