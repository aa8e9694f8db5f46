//! Loading plugin libraries with `libloading` (cargo feature `plugins`).

use std::path::{Path, PathBuf};

use tidings_plugin::abi::{
    tidings_plugin_entry_fn, tidings_plugin_v1, TIDINGS_PLUGIN_ENTRY_SYMBOL,
};

/// A loaded library and the descriptor its entry point returned. The
/// descriptor points into the library: keep the library loaded while it is
/// used, and past the plugin's `deinit`.
pub(crate) struct Opened {
    pub library: libloading::Library,
    pub descriptor: *const tidings_plugin_v1,
}

/// `dlopen` searches the library path for a bare file name; a configured
/// path always means a file, so `libx.so` becomes `./libx.so`.
fn as_file(path: &Path) -> PathBuf {
    if path.components().count() == 1 && !path.is_absolute() {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    }
}

/// Loads `path` and calls its `tidings_plugin_entry`. Errors say what was
/// wrong without the file name (the caller adds it).
pub(crate) fn open(path: &Path) -> Result<Opened, String> {
    let file = as_file(path);
    if !file.exists() {
        return Err("cannot load: no such file".into());
    }
    // SAFETY: loading runs the library's initializers; loading a plugin is
    // trusting it, as the operator configured.
    let library =
        unsafe { libloading::Library::new(&file) }.map_err(|e| format!("cannot load: {e}"))?;
    let entry = {
        let symbol = format!("{TIDINGS_PLUGIN_ENTRY_SYMBOL}\0");
        // SAFETY: the symbol's type is the one the plugin ABI declares.
        let entry = unsafe { library.get::<tidings_plugin_entry_fn>(symbol.as_bytes()) }
            .map_err(|e| {
                format!(
                    "not a tidings plugin: the library exports no `{TIDINGS_PLUGIN_ENTRY_SYMBOL}` ({e})"
                )
            })?;
        *entry
    };
    // SAFETY: the plugin ABI entry point takes nothing and returns a pointer.
    let descriptor = unsafe { entry() };
    Ok(Opened {
        library,
        descriptor,
    })
}
