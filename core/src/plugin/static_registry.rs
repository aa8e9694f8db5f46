//! Plugins compiled into the program: nothing is loaded at runtime, which is
//! how a mobile app (one static library, no `dlopen`) uses plugins. A Rust
//! plugin written with the `tidings-plugin` trait registers the same way a
//! loaded one is exported: through its descriptor.
//!
//! Either hand the descriptor to [`EngineBuilder::plugin`], or [`register`]
//! it once at start-up so a JSON engine configuration (the C ABI, Python,
//! Node) can name it: `{"plugins": [{"name": "profanity-filter", "config": {…}}]}`.
//!
//! [`EngineBuilder::plugin`]: crate::EngineBuilder::plugin

use std::sync::Mutex;

use tidings_plugin::abi::tidings_plugin_v1;

use super::instance::read_descriptor;
use crate::error::{Error, Result};

static REGISTRY: Mutex<Vec<(String, &'static tidings_plugin_v1)>> = Mutex::new(Vec::new());

/// Makes a compiled-in plugin available by its name to engine
/// configurations (`{"name": …}` without a `path`). Registering the same
/// descriptor again is a no-op; another plugin under a taken name is an error.
pub fn register(descriptor: &'static tidings_plugin_v1) -> Result<String> {
    let checked = read_descriptor(descriptor).map_err(|message| Error::Plugin {
        plugin: "static plugin".into(),
        file: "compiled in".into(),
        message,
    })?;
    let name = checked.name;
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    match registry.iter().find(|(n, _)| *n == name) {
        Some((_, d)) if std::ptr::eq(*d, descriptor) => {}
        Some(_) => {
            return Err(Error::Plugin {
                plugin: name.clone(),
                file: "compiled in".into(),
                message: "another compiled-in plugin is registered under this name".into(),
            })
        }
        None => registry.push((name.clone(), descriptor)),
    }
    Ok(name)
}

/// [`register`] for a plugin written with the `tidings-plugin` trait.
pub fn register_plugin<P: tidings_plugin::Plugin>() -> Result<String> {
    register(tidings_plugin::descriptor::<P>())
}

/// The names registered so far.
pub fn registered() -> Vec<String> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.iter().map(|(n, _)| n.clone()).collect()
}

pub(crate) fn find(name: &str) -> Option<&'static tidings_plugin_v1> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
}
