//! The C programs in `tests/c/` built with `-Wall -Wextra -Werror` against
//! the committed header and the static library, then run; and the header
//! compiled alone as C11 and as C++11.
#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static library cargo built along with this test: in
/// `target/<profile>/deps`, beside the test executable (cargo copies it up
/// to `target/<profile>` only for `cargo build`).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let lib = deps.join("libtidings_ffi.a");
    assert!(lib.exists(), "{} is missing", lib.display());
    lib
}

fn compiler(cpp: bool) -> String {
    let (var, default) = if cpp { ("CXX", "c++") } else { ("CC", "cc") };
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn build(name: &str) -> PathBuf {
    let lib = static_lib();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    std::fs::create_dir_all(&out_dir).expect("output folder");
    let exe = out_dir.join(name);
    run(Command::new(compiler(false))
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
        ])
        .arg("-I")
        .arg(ffi_dir().join("include"))
        .arg(ffi_dir().join("tests/c").join(format!("{name}.c")))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe));
    exe
}

fn run_program(name: &str, args: &[&Path]) {
    let exe = build(name);
    let out = run(Command::new(&exe).args(args));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn errors_and_status_codes() {
    run_program("errors", &[]);
}

#[test]
fn events_across_threads() {
    run_program("events", &[]);
}

#[test]
fn server_in_process() {
    let scratch = tempfile::tempdir().unwrap();
    run_program("server", &[scratch.path()]);
}

#[test]
fn header_compiles_alone_as_c11_and_cpp() {
    let header = ffi_dir().join("include/tidings.h");
    for (cpp, std) in [(false, "-std=c11"), (true, "-std=c++11")] {
        let lang = if cpp { "c++" } else { "c" };
        run(Command::new(compiler(cpp))
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
                "-x",
                lang,
            ])
            .arg(&header));
    }
}
