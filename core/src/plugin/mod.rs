//! Plugins through the versioned C ABI of `tidings-plugin`
//! (`plugins/api/include/tidings_plugin.h`): loaded from shared libraries
//! ([`host`], cargo feature `plugins`) or compiled in ([`static_registry`],
//! always available).
//!
//! Where they hook into the engine:
//! - `before_send`, in configured order, on each validated message before it
//!   is stored: allow, rewrite (the new body is validated again) or reject
//!   ([`Error::Rejected`], naming the plugin and the reason);
//! - `after_send`, once the message is stored;
//! - `on_event`, for every event delivered (a transport placed after all
//!   others, so it sees what they accepted; it never fails a delivery);
//! - `deliver`: a plugin with it is a transport of its own
//!   (`plugin:<name>`), in configured order after the other transports.
//!
//! Hooks run on blocking threads (`spawn_blocking`), never on the async
//! workers, and each call is timed (a `plugin_hook` span with `elapsed_us`,
//! counters in [`PluginStatus`], a warning past 500 ms). A hook error is
//! logged and the hook treated as absent for that call; a plugin that
//! reports a panic is disabled (logged once). Neither loses an accepted
//! message or stops the engine.

#[cfg(feature = "plugins")]
mod host;
mod instance;
pub mod static_registry;

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use tidings_plugin::abi;
use tidings_plugin::abi::tidings_plugin_v1;

use self::instance::{read_descriptor, Answer, Hook, LoadedPlugin, Publisher};
use crate::domain::message::validate_body;
use crate::domain::NewMessage;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::transport::Transport;

/// Events plugins may have queued through `publish` before they are sent.
const PUBLISH_QUEUE: usize = 1024;
/// Stored messages waiting for the `after_send` hooks before delivery waits.
const AFTER_SEND_QUEUE: usize = 4096;
/// How long shutdown waits for published events to go out.
const PUBLISH_DRAIN: Duration = Duration::from_secs(2);

/// One plugin in [`EngineConfig::plugins`](crate::EngineConfig::plugins).
///
/// JSON: `{"path": "./libprofanity_filter.so", "config": {"words": ["darn"]}}`,
/// or `{"name": "profanity-filter", "config": {…}}` for a plugin compiled in
/// and registered with [`static_registry::register`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The shared library to load (needs the cargo feature `plugins`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Without `path`: the compiled-in plugin to use. With it: the name
    /// logs, errors and rejections show (default: the plugin's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// When loading fails: log the error and go on without the plugin,
    /// instead of refusing to start.
    #[serde(default)]
    pub optional: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl PluginConfig {
    /// The plugin in this shared library, with an empty configuration.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        PluginConfig {
            path: Some(path.into()),
            name: None,
            config: empty_object(),
            optional: false,
        }
    }

    /// The compiled-in plugin registered under `name`.
    pub fn named(name: impl Into<String>) -> Self {
        PluginConfig {
            path: None,
            name: Some(name.into()),
            config: empty_object(),
            optional: false,
        }
    }

    /// Sets the configuration handed to `init`.
    pub fn with_config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Marks the plugin optional: a load error is logged, not fatal.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// What errors call the plugin before its own name is known.
    fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let stem = self
            .path
            .as_deref()
            .and_then(Path::file_stem)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        stem.strip_prefix("lib").unwrap_or(&stem).to_owned()
    }

    fn origin(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "compiled in".to_owned(),
        }
    }
}

/// A compiled-in plugin given to [`EngineBuilder::plugin`](crate::EngineBuilder::plugin).
#[derive(Clone)]
pub(crate) struct StaticPlugin {
    pub descriptor: &'static tidings_plugin_v1,
    pub config: serde_json::Value,
}

/// How one plugin is doing: [`Engine::plugins`](crate::Engine::plugins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStatus {
    /// The configured name, or the plugin's own.
    pub name: String,
    /// The plugin's own name; `None` when it did not load.
    pub plugin: Option<String>,
    /// The plugin's own version; `None` when it did not load.
    pub version: Option<String>,
    /// The file it came from, or `compiled in`.
    pub file: String,
    /// The plugin ABI it was built for (`1.x`).
    pub abi: Option<String>,
    /// Loaded, initialized and not disabled.
    pub running: bool,
    /// Why it did not load (an optional plugin) or why it was disabled.
    pub error: Option<String>,
    /// One entry per hook the plugin has.
    pub hooks: Vec<HookStats>,
}

/// Calls and time spent in one hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookStats {
    pub hook: String,
    pub calls: u64,
    /// Calls that returned an error or panicked.
    pub errors: u64,
    pub total_us: u64,
    pub max_us: u64,
}

/// The engine's plugins, in configured order.
pub(crate) struct Plugins {
    runtime: Handle,
    loaded: Arc<[Arc<LoadedPlugin>]>,
    failed: Vec<PluginStatus>,
    publisher: Arc<Publisher>,
    publish_task: Mutex<Option<JoinHandle<()>>>,
    after_send_task: Mutex<Option<JoinHandle<()>>>,
}

impl Plugins {
    /// Loads and initializes every plugin, in order, on a blocking thread.
    /// A plugin that fails is an error naming it and its file (or, when
    /// optional, a logged error and a status entry).
    pub(crate) async fn load(
        configs: &[PluginConfig],
        statics: Vec<StaticPlugin>,
        runtime: &Handle,
    ) -> Result<Plugins> {
        let publisher = Arc::new(Publisher::default());
        let mut plugins = Plugins {
            runtime: runtime.clone(),
            loaded: Arc::new([]),
            failed: Vec::new(),
            publisher: publisher.clone(),
            publish_task: Mutex::new(None),
            after_send_task: Mutex::new(None),
        };
        if configs.is_empty() && statics.is_empty() {
            return Ok(plugins);
        }
        let configs = configs.to_vec();
        let (loaded, failed) = runtime
            .spawn_blocking(move || load_all(&configs, &statics, &publisher))
            .await
            .map_err(|e| Error::Plugin {
                plugin: "plugins".into(),
                file: "-".into(),
                message: format!("loading failed: {e}"),
            })??;
        plugins.loaded = loaded.into();
        plugins.failed = failed;
        Ok(plugins)
    }

    /// The plugins with `deliver`, each a transport (`plugin:<name>`).
    pub(crate) fn transports(&self) -> Vec<Arc<dyn Transport>> {
        self.loaded
            .iter()
            .filter(|p| p.has(Hook::Deliver))
            .map(|plugin| {
                Arc::new(PluginTransport {
                    name: format!("plugin:{}", plugin.label),
                    plugin: plugin.clone(),
                    runtime: self.runtime.clone(),
                }) as Arc<dyn Transport>
            })
            .collect()
    }

    /// The `on_event` observer: a live-only transport that shows every
    /// delivered event to the plugins that have the hook.
    pub(crate) fn observer(&self) -> Option<Arc<dyn Transport>> {
        let observers: Vec<_> = self
            .loaded
            .iter()
            .filter(|p| p.has(Hook::OnEvent))
            .cloned()
            .collect();
        (!observers.is_empty()).then(|| {
            Arc::new(EventObserver {
                plugins: observers.into(),
                runtime: self.runtime.clone(),
            }) as Arc<dyn Transport>
        })
    }

    /// Starts handing what plugins `publish` to `deliver`.
    pub(crate) fn start_publishing(&self, deliver: Arc<dyn Fn(Event) + Send + Sync>) {
        if self.loaded.is_empty() {
            return;
        }
        let (sender, receiver) = mpsc::channel(PUBLISH_QUEUE);
        *self
            .publisher
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(sender);
        let task = self.runtime.spawn(publish(receiver, deliver));
        *self.publish_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Starts the task that runs every `after_send`, in order, with each
    /// stored message (its JSON) handed to the returned queue; `None` when
    /// no plugin has the hook. The hooks run after the sender was answered.
    pub(crate) fn start_after_send(&self) -> Option<mpsc::Sender<Bytes>> {
        if !self.loaded.iter().any(|p| p.has(Hook::AfterSend)) {
            return None;
        }
        let (sender, receiver) = mpsc::channel(AFTER_SEND_QUEUE);
        let task = self.runtime.spawn(after_send(
            receiver,
            self.loaded.clone(),
            self.runtime.clone(),
        ));
        *self
            .after_send_task
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
        Some(sender)
    }

    fn with(&self, hook: Hook) -> Vec<Arc<LoadedPlugin>> {
        self.loaded
            .iter()
            .filter(|p| p.has(hook) && p.disabled().is_none())
            .cloned()
            .collect()
    }

    /// Runs every `before_send`, in order; a later plugin sees the earlier
    /// ones' rewrites.
    pub(crate) async fn before_send(&self, new: NewMessage) -> Result<NewMessage> {
        let plugins = self.with(Hook::BeforeSend);
        if plugins.is_empty() {
            return Ok(new);
        }
        self.runtime
            .spawn_blocking(move || before_send(&plugins, new))
            .await
            .map_err(|e| Error::Plugin {
                plugin: "before_send".into(),
                file: "-".into(),
                message: format!("the hook thread failed: {e}"),
            })?
    }

    pub(crate) fn status(&self) -> Vec<PluginStatus> {
        let mut all: Vec<PluginStatus> = self.loaded.iter().map(|p| status(p)).collect();
        all.extend(self.failed.iter().cloned());
        all
    }

    /// Stops publishing, then calls every `deinit` (after calls in flight).
    pub(crate) async fn shutdown(&self) {
        self.publisher
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let task = self
            .publish_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // The after_send task ends once delivery dropped its queue.
        let after = self
            .after_send_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for task in task.into_iter().chain(after) {
            let abort = task.abort_handle();
            if tokio::time::timeout(PUBLISH_DRAIN, task).await.is_err() {
                abort.abort();
            }
        }
        let loaded = self.loaded.clone();
        if loaded.is_empty() {
            return;
        }
        let deinit = self.runtime.spawn_blocking(move || {
            for plugin in loaded.iter() {
                plugin.deinit();
            }
        });
        if let Err(err) = deinit.await {
            tracing::error!(%err, "plugin deinit failed");
        }
    }
}

impl Drop for Plugins {
    fn drop(&mut self) {
        // Ends the publish task (it holds the transports, which hold the
        // plugins) when the engine goes without a shutdown.
        self.publisher
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn status(p: &LoadedPlugin) -> PluginStatus {
    PluginStatus {
        name: p.label.clone(),
        plugin: Some(p.name.clone()),
        version: Some(p.version.clone()),
        file: p.origin.clone(),
        abi: Some(format!(
            "{}.{}",
            abi::TIDINGS_PLUGIN_ABI_MAJOR,
            p.abi_minor()
        )),
        running: p.disabled().is_none(),
        error: p.disabled().map(str::to_owned),
        hooks: Hook::ALL
            .iter()
            .filter(|h| p.has(**h))
            .map(|h| {
                let c = p.counters(*h);
                HookStats {
                    hook: h.as_str().to_owned(),
                    calls: c.calls.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    total_us: c.total_us.load(Ordering::Relaxed),
                    max_us: c.max_us.load(Ordering::Relaxed),
                }
            })
            .collect(),
    }
}

type Loaded = (Vec<Arc<LoadedPlugin>>, Vec<PluginStatus>);

fn load_all(
    configs: &[PluginConfig],
    statics: &[StaticPlugin],
    publisher: &Arc<Publisher>,
) -> Result<Loaded> {
    let mut loaded: Vec<Arc<LoadedPlugin>> = Vec::new();
    let mut failed = Vec::new();
    let mut names = HashSet::new();
    let wanted = configs
        .iter()
        .map(|c| (c.clone(), None))
        .chain(statics.iter().map(|s| {
            let config = PluginConfig {
                path: None,
                name: None,
                config: s.config.clone(),
                optional: false,
            };
            (config, Some(s.descriptor))
        }));
    for (config, descriptor) in wanted {
        match load_one(&config, descriptor, publisher) {
            Ok(plugin) => {
                if !names.insert(plugin.label.clone()) {
                    return Err(Error::Plugin {
                        plugin: plugin.label.clone(),
                        file: plugin.origin.clone(),
                        message: "another plugin already has this name; give one a different \
                                  `name` in its configuration"
                            .into(),
                    });
                }
                tracing::info!(
                    plugin = %plugin.label,
                    version = %plugin.version,
                    file = %plugin.origin,
                    "plugin loaded"
                );
                loaded.push(Arc::new(plugin));
            }
            Err(err) if config.optional => {
                tracing::error!(%err, "optional plugin not loaded; going on without it");
                let Error::Plugin {
                    plugin,
                    file,
                    message,
                } = err
                else {
                    continue;
                };
                failed.push(PluginStatus {
                    name: plugin,
                    plugin: None,
                    version: None,
                    file,
                    abi: None,
                    running: false,
                    error: Some(message),
                    hooks: Vec::new(),
                });
            }
            Err(err) => return Err(err),
        }
    }
    Ok((loaded, failed))
}

fn load_one(
    config: &PluginConfig,
    descriptor: Option<&'static tidings_plugin_v1>,
    publisher: &Arc<Publisher>,
) -> Result<LoadedPlugin> {
    let mut label = config.label();
    let origin = config.origin();
    let error = |label: &str, message: String| Error::Plugin {
        plugin: label.to_owned(),
        file: origin.clone(),
        message,
    };
    let (ptr, library) = match (descriptor, &config.path) {
        (Some(d), _) => (d as *const tidings_plugin_v1, None),
        (None, Some(path)) => open_library(path).map_err(|m| error(&label, m))?,
        (None, None) => {
            let name = config.name.as_deref().unwrap_or_default();
            let d = static_registry::find(name).ok_or_else(|| {
                error(
                    &label,
                    format!(
                        "no `path`, and no compiled-in plugin is registered under this name \
                         (registered: {})",
                        list(&static_registry::registered())
                    ),
                )
            })?;
            (d as *const tidings_plugin_v1, None)
        }
    };
    let checked = read_descriptor(ptr).map_err(|m| error(&label, m))?;
    if config.path.is_none() || config.name.is_none() {
        label = checked.name.clone();
    }
    let config_json = config.config.to_string();
    LoadedPlugin::init(
        checked,
        label.clone(),
        origin.clone(),
        &config_json,
        publisher.clone(),
        library,
    )
    .map_err(|m| error(&label, m))
}

type OpenedLibrary = (*const tidings_plugin_v1, Option<Box<dyn Send + Sync>>);

#[cfg(feature = "plugins")]
fn open_library(path: &Path) -> std::result::Result<OpenedLibrary, String> {
    let opened = host::open(path)?;
    Ok((opened.descriptor, Some(Box::new(opened.library))))
}

#[cfg(not(feature = "plugins"))]
fn open_library(_path: &Path) -> std::result::Result<OpenedLibrary, String> {
    Err(
        "this build of tidings cannot load plugin files: enable the cargo feature `plugins` \
         (or compile the plugin in and register it)"
            .into(),
    )
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The message as `before_send` sees it.
fn message_json(new: &NewMessage) -> serde_json::Value {
    let (lo, hi) = new.conversation_id.users();
    let recipient = if *lo == new.sender_id { hi } else { lo };
    serde_json::json!({
        "conversation_id": new.conversation_id,
        "sender_id": new.sender_id,
        "recipient_id": recipient,
        "body": new.body,
        "client_msg_id": new.client_msg_id,
        "created_at": new.created_at,
    })
}

fn before_send(plugins: &[Arc<LoadedPlugin>], mut new: NewMessage) -> Result<NewMessage> {
    for plugin in plugins {
        let doc = message_json(&new);
        let Ok(json) = CString::new(doc.to_string()) else {
            // Unreachable: bodies and ids never hold NUL, and JSON escapes it.
            tracing::error!(plugin = %plugin.label, "the message holds a NUL byte; hook skipped");
            continue;
        };
        match plugin.before_send(&json) {
            Answer::Skipped | Answer::Ok | Answer::Failed(_) => {}
            Answer::Reject(reason) => {
                tracing::debug!(plugin = %plugin.label, %reason, "message rejected");
                return Err(Error::Rejected {
                    plugin: plugin.label.clone(),
                    reason,
                });
            }
            Answer::Rewrite(rewritten) => match rewritten_body(&doc, &rewritten) {
                Ok(body) => {
                    new.body = validate_body(&body).map_err(|e| {
                        Error::InvalidArgument(format!(
                            "plugin {} rewrote the message into an invalid one: {e}",
                            plugin.label
                        ))
                    })?;
                }
                Err(why) => {
                    tracing::warn!(plugin = %plugin.label, "rewrite ignored: {why}");
                }
            },
        }
    }
    Ok(new)
}

/// The body of a rewritten message document, checking nothing else changed.
fn rewritten_body(
    original: &serde_json::Value,
    rewritten: &str,
) -> std::result::Result<String, String> {
    let doc: serde_json::Value = serde_json::from_str(rewritten)
        .map_err(|e| format!("the rewritten message is not JSON: {e}"))?;
    let body = doc
        .get("body")
        .and_then(serde_json::Value::as_str)
        .ok_or("the rewritten message has no `body` string")?;
    if let Some(fields) = original.as_object() {
        for (key, value) in fields {
            if key != "body" && doc.get(key).is_some_and(|v| v != value) {
                return Err(format!("it changed `{key}`; only `body` may change"));
            }
        }
    }
    Ok(body.to_owned())
}

fn event_strings(
    channel: &str,
    event: &str,
    payload: &Bytes,
) -> Option<(CString, CString, CString)> {
    Some((
        CString::new(channel).ok()?,
        CString::new(event).ok()?,
        CString::new(payload.to_vec()).ok()?,
    ))
}

/// A plugin with `deliver`, as a transport.
struct PluginTransport {
    name: String,
    plugin: Arc<LoadedPlugin>,
    runtime: Handle,
}

#[async_trait]
impl Transport for PluginTransport {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        if self.plugin.disabled().is_some() {
            return Ok(());
        }
        let Some((channel, event, data)) = event_strings(channel, event, &payload) else {
            return Err(Error::transport(&self.name, "the event holds a NUL byte"));
        };
        let plugin = self.plugin.clone();
        let answer = self
            .runtime
            .spawn_blocking(move || plugin.deliver(&channel, &event, &data))
            .await
            .map_err(|e| Error::transport(&self.name, format!("the hook thread failed: {e}")))?;
        match answer {
            Answer::Failed(why) => Err(Error::transport(
                &self.name,
                why.unwrap_or_else(|| "deliver failed".to_owned()),
            )),
            _ => Ok(()),
        }
    }
}

/// Hands every delivered event to the plugins' `on_event`. Last in the
/// transport list; never fails a delivery.
struct EventObserver {
    plugins: Arc<[Arc<LoadedPlugin>]>,
    runtime: Handle,
}

#[async_trait]
impl Transport for EventObserver {
    fn name(&self) -> &str {
        "plugins"
    }

    /// Live-only: hooks see what is delivered, nothing is recovered for them.
    fn outbox_key(&self) -> Option<String> {
        None
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        if self.plugins.iter().all(|p| p.disabled().is_some()) {
            return Ok(());
        }
        let Some((channel, event, data)) = event_strings(channel, event, &payload) else {
            tracing::warn!(channel, event, "event with a NUL byte not shown to plugins");
            return Ok(());
        };
        let plugins = self.plugins.clone();
        let calls = self.runtime.spawn_blocking(move || {
            for plugin in plugins.iter() {
                plugin.on_event(&channel, &event, &data);
            }
        });
        if let Err(err) = calls.await {
            tracing::error!(%err, "on_event hooks failed");
        }
        Ok(())
    }
}

/// Hands what plugins publish to the transports, until the queue closes.
async fn publish(mut events: mpsc::Receiver<Event>, deliver: Arc<dyn Fn(Event) + Send + Sync>) {
    while let Some(event) = events.recv().await {
        deliver(event);
    }
}

/// Runs every `after_send` on each stored message, in order, until the
/// queue closes. Several messages waiting go to the hooks in one blocking
/// call.
async fn after_send(
    mut messages: mpsc::Receiver<Bytes>,
    plugins: Arc<[Arc<LoadedPlugin>]>,
    runtime: Handle,
) {
    let mut batch = Vec::new();
    while messages.recv_many(&mut batch, 256).await > 0 {
        let json: Vec<CString> = batch
            .drain(..)
            .filter_map(|m| CString::new(m.to_vec()).ok())
            .collect();
        let plugins: Vec<Arc<LoadedPlugin>> = plugins
            .iter()
            .filter(|p| p.has(Hook::AfterSend) && p.disabled().is_none())
            .cloned()
            .collect();
        if plugins.is_empty() {
            continue;
        }
        let calls = runtime.spawn_blocking(move || {
            for message in &json {
                for plugin in &plugins {
                    plugin.after_send(message);
                }
            }
        });
        if let Err(err) = calls.await {
            tracing::error!(%err, "after_send hooks failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_may_change_only_the_body() {
        let original = serde_json::json!({"sender_id": "1", "body": "a", "created_at": 5});
        assert_eq!(
            rewritten_body(&original, r#"{"sender_id":"1","body":"b"}"#).unwrap(),
            "b"
        );
        let err = rewritten_body(&original, r#"{"sender_id":"2","body":"b"}"#).unwrap_err();
        assert!(err.contains("sender_id"), "{err}");
        assert!(rewritten_body(&original, r#"{"body":3}"#).is_err());
        assert!(rewritten_body(&original, "nope").is_err());
    }

    #[test]
    fn config_json_and_labels() {
        let c: PluginConfig =
            serde_json::from_str(r#"{"path":"/x/libprofanity_filter.so"}"#).unwrap();
        assert_eq!(c.label(), "profanity_filter");
        assert_eq!(c.config, serde_json::json!({}));
        assert!(!c.optional);
        let err = serde_json::from_str::<PluginConfig>(r#"{"file":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
