//! `include/tidings_plugin.h` and `src/abi.rs` describe the same ABI: a C
//! (and a C++) compiler checks every size, offset and constant of the header
//! against the values the Rust types have.

#![allow(clippy::unwrap_used)] // a test

use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use tidings_plugin::abi::*;

fn header_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

macro_rules! layout {
    ($out:ident, $ty:ident { $($field:ident),* $(,)? }) => {{
        writeln!(
            $out,
            "STATIC_ASSERT(sizeof({}) == {}, \"sizeof {}\");",
            stringify!($ty), size_of::<$ty>(), stringify!($ty)
        ).unwrap();
        $(
            writeln!(
                $out,
                "STATIC_ASSERT(offsetof({ty}, {f}) == {o}, \"offset of {ty}.{f}\");",
                ty = stringify!($ty),
                f = stringify!($field),
                o = offset_of!($ty, $field),
            ).unwrap();
        )*
    }};
}

macro_rules! constants {
    ($out:ident, $($name:ident),* $(,)?) => {{
        $(
            writeln!(
                $out,
                "STATIC_ASSERT({n} == {v}, \"value of {n}\");",
                n = stringify!($name),
                v = $name,
            ).unwrap();
        )*
    }};
}

fn checks() -> String {
    let mut out = String::new();
    out.push_str("#include <stddef.h>\n#include \"tidings_plugin.h\"\n");
    out.push_str(
        "#ifdef __cplusplus\n#define STATIC_ASSERT static_assert\n#else\n#define STATIC_ASSERT _Static_assert\n#endif\n",
    );
    layout!(
        out,
        tidings_host_api_v1 {
            abi_major,
            abi_minor,
            struct_size,
            host_ctx,
            log,
            publish,
        }
    );
    layout!(
        out,
        tidings_plugin_v1 {
            abi_major,
            abi_minor,
            struct_size,
            name,
            version,
            init,
            deinit,
            before_send,
            after_send,
            on_event,
            deliver,
            free_string,
        }
    );
    constants!(
        out,
        TIDINGS_PLUGIN_ABI_MAJOR,
        TIDINGS_PLUGIN_ABI_MINOR,
        TIDINGS_PLUGIN_OK,
        TIDINGS_PLUGIN_REWRITE,
        TIDINGS_PLUGIN_REJECT,
        TIDINGS_PLUGIN_ERROR,
        TIDINGS_PLUGIN_PANIC,
        TIDINGS_LOG_ERROR,
        TIDINGS_LOG_WARN,
        TIDINGS_LOG_INFO,
        TIDINGS_LOG_DEBUG,
        TIDINGS_LOG_TRACE,
    );
    writeln!(
        out,
        "STATIC_ASSERT(sizeof(TIDINGS_PLUGIN_ENTRY_SYMBOL) == {}, \"entry symbol\");",
        TIDINGS_PLUGIN_ENTRY_SYMBOL.len() + 1
    )
    .unwrap();
    // The hook typedefs have the Rust signatures: assigning a function of
    // the Rust-declared shape to each typedef must compile without a cast.
    out.push_str(
        r#"
static tidings_plugin_status t_init(const tidings_host_api_v1 *h, const char *c, void **i, char **e) { (void)h; (void)c; (void)i; (void)e; return 0; }
static void t_deinit(void *i) { (void)i; }
static tidings_plugin_status t_before(void *i, const char *m, char **r, char **why) { (void)i; (void)m; (void)r; (void)why; return 0; }
static tidings_plugin_status t_after(void *i, const char *m) { (void)i; (void)m; return 0; }
static tidings_plugin_status t_event(void *i, const char *c, const char *e, const char *d) { (void)i; (void)c; (void)e; (void)d; return 0; }
static tidings_plugin_status t_deliver(void *i, const char *c, const char *e, const char *d, char **err) { (void)i; (void)c; (void)e; (void)d; (void)err; return 0; }
static void t_free(char *s) { (void)s; }
static const tidings_plugin_v1 table = {
    TIDINGS_PLUGIN_ABI_MAJOR, TIDINGS_PLUGIN_ABI_MINOR, sizeof(tidings_plugin_v1),
    "t", "0", t_init, t_deinit, t_before, t_after, t_event, t_deliver, t_free,
};
const tidings_plugin_v1 *tidings_plugin_entry(void);
const tidings_plugin_v1 *tidings_plugin_entry(void) { return &table; }
"#,
    );
    out
}

fn compile(compiler: &str, args: &[&str], source: &str, ext: &str) {
    let dir = tempfile_dir();
    let file = dir.join(format!("check.{ext}"));
    std::fs::write(&file, source).unwrap();
    let output = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(header_dir())
        .arg("-fsyntax-only")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} rejects the header checks:\n{}\n--- source ---\n{source}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tidings-plugin-header-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn header_matches_the_rust_types_in_c11() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    compile(
        &cc,
        &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &checks(),
        "c",
    );
}

#[test]
fn header_compiles_as_cpp() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    compile(
        &cxx,
        &["-std=c++11", "-Wall", "-Wextra", "-Werror"],
        &checks(),
        "cpp",
    );
}
