//! The boundary guard: every export runs inside [`call`] (or [`infallible`]),
//! which turns an unwinding panic into `TIDINGS_STATUS_PANIC`, writes the
//! error message to `error_out`, and refuses blocking calls where they would
//! deadlock. Handles are converted by the typed helpers of [`ArcHandle`],
//! never by ad-hoc casts.

use std::any::Any;
use std::cell::Cell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::status::{tidings_status, FfiError, FfiResult};
use crate::string;

thread_local! {
    /// Set while a host callback (the log sink) runs on this thread.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` inside the guard and answers with its status; on failure the
/// message goes to `error_out` when it is not NULL.
pub(crate) fn call<F>(function: &'static str, error_out: *mut *mut c_char, f: F) -> tidings_status
where
    F: FnOnce() -> FfiResult<()>,
{
    call_status(function, error_out, || f().map(|()| tidings_status::Ok))
}

/// Like [`call`] for functions with outcomes besides `OK` that are not
/// errors (`TIMEOUT`, `CLOSED`): `f` returns the status to answer.
pub(crate) fn call_status<F>(
    function: &'static str,
    error_out: *mut *mut c_char,
    f: F,
) -> tidings_status
where
    F: FnOnce() -> FfiResult<tidings_status>,
{
    let error = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => return status,
        Ok(Err(error)) => error,
        Err(payload) => panicked(function, payload),
    };
    if !error_out.is_null() {
        // SAFETY: the caller passes NULL or a pointer to writable `char *`.
        unsafe { *error_out = string::to_c_lossy(&error.message) };
    }
    error.status
}

/// For functions without a status (getters, `_free`): a panic gives `fallback`.
pub(crate) fn infallible<T, F>(function: &'static str, fallback: T, f: F) -> T
where
    F: FnOnce() -> T,
{
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            panicked(function, payload);
            fallback
        }
    }
}

fn panicked(function: &'static str, payload: Box<dyn Any + Send>) -> FfiError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    tracing::error!(function, panic = %what, "panic caught at the C boundary");
    FfiError::new(
        tidings_status::Panic,
        format!("internal error in {function}: {what} (a bug in tidings; please report it)"),
    )
}

/// Refuses a blocking call from a host callback or a runtime thread.
pub(crate) fn ensure_may_block(function: &'static str) -> FfiResult<()> {
    if IN_CALLBACK.with(Cell::get) || tokio::runtime::Handle::try_current().is_ok() {
        return Err(FfiError::new(
            tidings_status::Reentrant,
            format!(
                "{function} was called from a tidings callback or engine thread, \
                 where a blocking call would deadlock; call it from another thread"
            ),
        ));
    }
    Ok(())
}

/// Marks the current thread as running a host callback while `f` runs.
pub(crate) fn in_callback<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_CALLBACK.with(|c| c.replace(true)));
    f()
}

/// A non-NULL check naming the argument.
pub(crate) fn non_null<T>(ptr: *const T, name: &str) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::new(
            tidings_status::NullArgument,
            format!("{name} is NULL"),
        ));
    }
    Ok(())
}

/// An out-parameter, checked for NULL before any work and written only on
/// success (the last step of a call).
pub(crate) struct Out<T> {
    ptr: *mut T,
}

impl<T> Out<T> {
    pub fn new(ptr: *mut T, name: &str) -> FfiResult<Self> {
        non_null(ptr, name)?;
        Ok(Out { ptr })
    }

    pub fn write(self, value: T) {
        // SAFETY: checked non-NULL in `new`; the caller passes writable memory.
        unsafe { self.ptr.write(value) }
    }
}

impl Out<*mut c_char> {
    /// Writes an owned copy of `text`.
    pub fn write_str(self, text: &str) -> FfiResult<()> {
        let owned = string::to_c(text)?;
        self.write(owned);
        Ok(())
    }

    /// Writes `value` as JSON.
    pub fn write_json<V: serde::Serialize>(self, value: &V) -> FfiResult<()> {
        let json = serde_json::to_string(value).map_err(|e| {
            FfiError::new(
                tidings_status::Unknown,
                format!("cannot encode the result as JSON: {e}"),
            )
        })?;
        self.write_str(&json)
    }
}

/// An opaque C handle owned through an `Arc` of its Rust type. The C struct
/// is never instantiated: pointers to it are `Arc::into_raw` pointers of
/// `Self::Rust`.
pub(crate) trait ArcHandle: Sized {
    type Rust: Send + Sync;
    const NAME: &'static str;

    /// Hands a new reference to C.
    fn into_ptr(value: Arc<Self::Rust>) -> *mut Self {
        Arc::into_raw(value).cast_mut().cast()
    }

    /// A new reference for the duration of a call.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`into_ptr`](Self::into_ptr) and was not freed.
    unsafe fn clone_from(ptr: *const Self, name: &str) -> FfiResult<Arc<Self::Rust>> {
        non_null(ptr, name)?;
        let ptr: *const Self::Rust = ptr.cast();
        // SAFETY: per the contract, `ptr` is a live `Arc::into_raw` pointer.
        unsafe {
            Arc::increment_strong_count(ptr);
            Ok(Arc::from_raw(ptr))
        }
    }

    /// Takes back the reference C held; `None` for NULL.
    ///
    /// # Safety
    /// `ptr` is NULL or came from [`into_ptr`](Self::into_ptr) and was not freed.
    unsafe fn take(ptr: *mut Self) -> Option<Arc<Self::Rust>> {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: per the contract.
        Some(unsafe { Arc::from_raw(ptr.cast_const().cast()) })
    }
}
