//! The committed header is what cbindgen writes from the current source,
//! and its version defines match Cargo's. `TIDINGS_BLESS=1` rewrites it.
#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("include").join("tidings.h")
}

fn generate() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn header_is_fresh() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("TIDINGS_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "{} is stale (first difference at line {}); regenerate it with \
             `TIDINGS_BLESS=1 cargo test -p tidings-ffi --test header` and commit it",
            path.display(),
            first + 1
        );
    }
}

fn define(header: &str, name: &str) -> u32 {
    let prefix = format!("#define {name} ");
    let line = header
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{name} is not defined in the header"));
    line[prefix.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e} in {line:?}"))
}

#[test]
fn version_defines_match_cargo() {
    let header = std::fs::read_to_string(header_path()).expect("read the header");
    for (name, cargo) in [
        ("TIDINGS_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("TIDINGS_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("TIDINGS_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert_eq!(define(&header, name).to_string(), cargo, "{name}");
    }
    let major = define(&header, "TIDINGS_ABI_VERSION_MAJOR");
    let minor = define(&header, "TIDINGS_ABI_VERSION_MINOR");
    assert_eq!(tidings_ffi::tidings_abi_version(), (major << 16) | minor);
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(tidings_ffi::tidings_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn header_names_every_export() {
    let header = std::fs::read_to_string(header_path()).expect("read the header");
    let src = crate_dir().join("src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for name in exports(&text) {
            if !header.contains(&format!("{name}(")) {
                missing.push(format!("{name} ({})", rel(&path)));
            }
        }
    }
    assert!(missing.is_empty(), "not in the header: {missing:?}");
}

fn exports(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[no_mangle]" {
            if let Some(next) = lines.next() {
                if let Some(rest) = next.split("fn ").nth(1) {
                    names.push(rest.split('(').next().unwrap_or_default().to_owned());
                }
            }
        }
    }
    names
}

fn rel(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}
