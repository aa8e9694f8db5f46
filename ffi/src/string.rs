//! Strings across the boundary: borrowed UTF-8 in, owned `char *` out, freed
//! only by [`tidings_string_free`].

use std::ffi::{c_char, CStr, CString};

use serde::de::DeserializeOwned;

use crate::boundary::{self, non_null};
use crate::status::{tidings_status, FfiError, FfiResult};

/// Borrows a NUL-terminated UTF-8 argument for the call.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string alive for `'a`.
pub(crate) unsafe fn arg<'a>(ptr: *const c_char, name: &str) -> FfiResult<&'a str> {
    non_null(ptr, name)?;
    // SAFETY: per the contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        FfiError::new(
            tidings_status::InvalidUtf8,
            format!(
                "{name} is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Parses a JSON argument: bad JSON is `INVALID_JSON`, JSON of the wrong
/// shape is `shape_status` (INVALID_ARGUMENT or CONFIG).
///
/// # Safety
/// As [`arg`].
pub(crate) unsafe fn json_arg<T: DeserializeOwned>(
    ptr: *const c_char,
    name: &str,
    shape_status: tidings_status,
) -> FfiResult<T> {
    // SAFETY: per the contract.
    let text = unsafe { arg(ptr, name) }?;
    // Syntax first, shape second: `{"from": 1,` is bad JSON, not a bad field.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        FfiError::new(
            tidings_status::InvalidJson,
            format!("{name} is not valid JSON: {e}"),
        )
    })?;
    T::deserialize(value).map_err(|e| FfiError::new(shape_status, format!("{name}: {e}")))
}

/// An owned C copy of `text` for the host.
pub(crate) fn to_c(text: &str) -> FfiResult<*mut c_char> {
    CString::new(text).map(CString::into_raw).map_err(|_| {
        FfiError::new(
            tidings_status::Unknown,
            "a result string contains a NUL byte",
        )
    })
}

/// Like [`to_c`], dropping interior NULs (for error messages, which must
/// always arrive).
pub(crate) fn to_c_lossy(text: &str) -> *mut c_char {
    let clean: Vec<u8> = text.bytes().filter(|&b| b != 0).collect();
    match CString::new(clean) {
        Ok(c) => c.into_raw(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Frees a string that tidings returned. NULL is a no-op. Passing anything
/// else (a string from another allocator, one already freed) is undefined
/// behaviour.
#[no_mangle]
pub unsafe extern "C" fn tidings_string_free(string: *mut c_char) {
    boundary::infallible("tidings_string_free", (), || {
        if !string.is_null() {
            // SAFETY: the caller passes a pointer from `CString::into_raw`.
            drop(unsafe { CString::from_raw(string) });
        }
    });
}
