//! Plugins through the C ABI: the engine configuration JSON given to
//! `tidings_engine_new` lists plugin libraries, exactly as C, Python and
//! Node hosts pass it.
#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;

use tidings_ffi::engine::{
    tidings_engine_free, tidings_engine_new, tidings_engine_send, tidings_engine_shutdown,
};
use tidings_ffi::status::tidings_status;
use tidings_ffi::tidings_string_free;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Rust plugins, built with cargo into their own target directory.
fn plugin(name: &str) -> PathBuf {
    let target = std::env::var_os("TIDINGS_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("plugins"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "-p",
            "profanity-filter",
            "-p",
            "rate-limit",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo build for the plugins");
    assert!(status.success(), "building the plugins failed");
    target.join("debug").join(format!("lib{name}.so"))
}

fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { tidings_string_free(s) };
    text
}

fn send(
    engine: *const tidings_ffi::engine::tidings_engine,
    body: &str,
) -> (tidings_status, String) {
    let request =
        CString::new(serde_json::json!({"from": "1", "to": "18", "body": body}).to_string())
            .unwrap();
    let (mut out, mut error) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe { tidings_engine_send(engine, request.as_ptr(), &mut out, &mut error) };
    if status == tidings_status::Ok {
        (status, take(out))
    } else {
        (status, take(error))
    }
}

#[test]
fn plugins_listed_in_the_engine_config_json() {
    let config = serde_json::json!({
        "store": "memory:",
        "plugins": [
            {"path": plugin("profanity_filter"), "config": {"words": ["darn"]}},
            {"path": plugin("rate_limit"), "config": {"max": 1, "window_secs": 60}},
        ]
    });
    let config = CString::new(config.to_string()).unwrap();
    let (mut engine, mut error) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe { tidings_engine_new(config.as_ptr(), &mut engine, &mut error) };
    assert_eq!(status, tidings_status::Ok);

    let (status, sent) = send(engine, "darn it");
    assert_eq!(status, tidings_status::Ok, "{sent}");
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["message"]["body"], "**** it");

    let (status, error) = send(engine, "again");
    assert_ne!(status, tidings_status::Ok);
    assert!(error.contains("rejected by plugin rate-limit"), "{error}");

    unsafe {
        tidings_engine_shutdown(engine, ptr::null_mut());
        tidings_engine_free(engine);
    }
}

#[test]
fn a_plugin_that_cannot_load_is_a_config_error_naming_it() {
    let config = serde_json::json!({
        "store": "memory:",
        "plugins": [{"path": "/nonexistent/libspam_guard.so"}]
    });
    let config = CString::new(config.to_string()).unwrap();
    let (mut engine, mut error) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe { tidings_engine_new(config.as_ptr(), &mut engine, &mut error) };
    assert_eq!(status, tidings_status::Config);
    assert!(engine.is_null());
    let error = take(error);
    assert!(
        error.contains("plugin spam_guard (/nonexistent/libspam_guard.so): cannot load"),
        "{error}"
    );
}
