//! Plugins through the Rust API and `tidings serve --plugin`: the plugins
//! of `plugins/` (Rust cdylibs built with cargo, the C one with cc), the
//! fixtures that must be refused with a clear error, a panicking plugin,
//! and compiled-in plugins.

#![allow(clippy::unwrap_used)] // a test

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tidings::transport::Received;
use tidings::{Engine, EngineConfig, ErrorKind, PageRequest, PluginConfig, SendRequest};
use tidings_plugin::{Error as PluginError, Host, Message, Plugin, Verdict};

// ---------------------------------------------------------------- building

struct Built {
    profanity: PathBuf,
    rate_limit: PathBuf,
    panicky: PathBuf,
    audit_log: PathBuf,
    wrong_abi: PathBuf,
    not_a_plugin: PathBuf,
    init_fails: PathBuf,
    null_descriptor: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the plugins once per test run: the Rust ones with cargo into
/// their own target directory (no waiting on the lock of the test build),
/// the C ones with cc against the header.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Relative to the workspace root (tests run in core/).
        let target = std::env::var_os("TIDINGS_PLUGIN_TARGET_DIR")
            .map(|dir| root().join(dir))
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
            .args(["-p", "panicky-plugin", "--target-dir"])
            .arg(&target)
            .status()
            .expect("run cargo build for the plugins");
        assert!(status.success(), "building the Rust plugins failed");
        let rust = |name: &str| target.join("debug").join(format!("lib{name}.so"));
        let c_dir = target.join("c");
        std::fs::create_dir_all(&c_dir).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let c = |source: &str, name: &str| {
            let out = c_dir.join(format!("lib{name}.so"));
            let result = Command::new(&cc)
                .args([
                    "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                ])
                .arg("-I")
                .arg(root().join("plugins/api/include"))
                .arg("-o")
                .arg(&out)
                .arg(root().join(source))
                .arg("-lpthread")
                .output()
                .expect("run cc");
            assert!(
                result.status.success(),
                "cc {source}: {}",
                String::from_utf8_lossy(&result.stderr)
            );
            out
        };
        Built {
            profanity: rust("profanity_filter"),
            rate_limit: rust("rate_limit"),
            panicky: rust("panicky_plugin"),
            audit_log: c("plugins/audit-log/audit_log.c", "audit_log"),
            wrong_abi: c("plugins/fixtures/c/wrong_abi.c", "wrong_abi"),
            not_a_plugin: c("plugins/fixtures/c/not_a_plugin.c", "not_a_plugin"),
            init_fails: c("plugins/fixtures/c/init_fails.c", "init_fails"),
            null_descriptor: c("plugins/fixtures/c/null_descriptor.c", "null_descriptor"),
        }
    })
}

fn profanity() -> PluginConfig {
    PluginConfig::path(&built().profanity).with_config(json!({"words": ["darn", "heck"]}))
}

fn rate_limit(max: u32) -> PluginConfig {
    PluginConfig::path(&built().rate_limit).with_config(json!({"max": max, "window_secs": 60}))
}

async fn engine_with(plugins: Vec<PluginConfig>) -> tidings::Result<Engine> {
    Engine::open(EngineConfig {
        store: "memory:".into(),
        plugins,
        ..EngineConfig::default()
    })
    .await
}

async fn bodies(engine: &Engine, conversation: &str) -> Vec<String> {
    let page = engine
        .history(conversation, PageRequest::default())
        .await
        .unwrap();
    page.items.into_iter().rev().map(|m| m.body).collect()
}

fn status_of(engine: &Engine, name: &str) -> tidings::PluginStatus {
    engine
        .plugins()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {:?}", engine.plugins()))
}

fn calls(status: &tidings::PluginStatus, hook: &str) -> u64 {
    status
        .hooks
        .iter()
        .find(|h| h.hook == hook)
        .map_or(0, |h| h.calls)
}

// ---------------------------------------------------- the real plugins

#[tokio::test]
async fn profanity_filter_masks_listed_words() {
    let engine = engine_with(vec![profanity()]).await.unwrap();
    let sent = engine
        .send(SendRequest::to(
            "1",
            "18",
            "Darn it, what the HECK. Checkmate!",
        ))
        .await
        .unwrap();
    assert_eq!(sent.message.body, "**** it, what the ****. Checkmate!");
    engine
        .send(SendRequest::to("1", "18", "nothing to mask"))
        .await
        .unwrap();
    assert_eq!(
        bodies(&engine, "1-18").await,
        ["**** it, what the ****. Checkmate!", "nothing to mask"]
    );
    let status = status_of(&engine, "profanity-filter");
    assert!(status.running);
    assert_eq!(status.version.as_deref(), Some("1.0.0"));
    assert_eq!(status.abi.as_deref(), Some("1.0"));
    assert_eq!(calls(&status, "before_send"), 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn rate_limit_rejects_with_the_reason_and_stores_nothing() {
    let engine = engine_with(vec![rate_limit(2)]).await.unwrap();
    for text in ["one", "two"] {
        engine.send(SendRequest::to("1", "18", text)).await.unwrap();
    }
    let err = engine
        .send(SendRequest::to("1", "18", "three"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.kind().as_str(), "rejected");
    let text = err.to_string();
    assert!(text.contains("rejected by plugin rate-limit"), "{text}");
    assert!(
        text.contains("user 1 may send 2 messages per 60 seconds"),
        "{text}"
    );
    // Per sender: the other member may still talk.
    engine.send(SendRequest::to("18", "1", "hi")).await.unwrap();
    assert_eq!(bodies(&engine, "1-18").await, ["one", "two", "hi"]);
    engine.shutdown().await;
}

#[tokio::test]
async fn audit_log_in_c_appends_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let engine = engine_with(vec![
        PluginConfig::path(&built().audit_log).with_config(json!({"path": file}))
    ])
    .await
    .unwrap();
    let sent = engine
        .send(SendRequest::to("1", "18", "for \"the\" record\n"))
        .await
        .unwrap();
    engine.typing("18", "1-18").await.unwrap();
    engine
        .mark_read("18", "1-18", sent.message.seq)
        .await
        .unwrap();
    // Shutdown delivers what is pending, then deinit closes the file.
    engine.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert!(events.contains(&"new-message"), "{events:?}");
    assert!(events.contains(&"typing"), "{events:?}");
    assert!(events.contains(&"messages-read"), "{events:?}");
    let new = lines.iter().find(|l| l["event"] == "new-message").unwrap();
    assert_eq!(new["channel"], "private-conversation-1-18");
    assert_eq!(new["data"]["body"], "for \"the\" record");
    assert!(new["ts"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn plugins_run_in_order_and_each_sees_the_previous_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let engine = engine_with(vec![
        profanity(),
        rate_limit(1),
        PluginConfig::path(&built().audit_log).with_config(json!({"path": file})),
    ])
    .await
    .unwrap();
    let names: Vec<String> = engine.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["profanity-filter", "rate-limit", "audit-log"]);
    engine
        .send(SendRequest::to("1", "18", "heck yes"))
        .await
        .unwrap();
    let err = engine
        .send(SendRequest::to("1", "18", "heck no"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    engine.shutdown().await;
    let audit = std::fs::read_to_string(&file).unwrap();
    assert!(audit.contains("**** yes"), "{audit}");
    assert!(!audit.contains("heck"), "{audit}");
    assert_eq!(audit.matches("new-message").count(), 1, "{audit}");
}

// ------------------------------------------------- what must be refused

async fn refused(config: PluginConfig) -> String {
    let err = engine_with(vec![config]).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    err.to_string()
}

/// The same plugin, optional: the engine starts without it and serves.
async fn optional_is_skipped(config: PluginConfig, expected: &str) {
    let engine = engine_with(vec![config.optional(), profanity()])
        .await
        .unwrap();
    let sent = engine
        .send(SendRequest::to("1", "18", "darn, still serving"))
        .await
        .unwrap();
    assert_eq!(sent.message.body, "****, still serving");
    let failed = engine
        .plugins()
        .into_iter()
        .find(|p| !p.running)
        .expect("the failed plugin is listed");
    assert!(
        failed.error.as_deref().unwrap().contains(expected),
        "{failed:?}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_plugin_for_another_abi_major_is_refused() {
    let path = &built().wrong_abi;
    let text = refused(PluginConfig::path(path)).await;
    assert!(text.contains("plugin wrong_abi"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("built for plugin ABI 2.3"), "{text}");
    assert!(text.contains("this host speaks plugin ABI 1.0"), "{text}");
    optional_is_skipped(PluginConfig::path(path), "plugin ABI 2.3").await;
}

#[tokio::test]
async fn a_library_that_is_not_a_plugin_is_refused() {
    let path = &built().not_a_plugin;
    let text = refused(PluginConfig::path(path)).await;
    assert!(text.contains("plugin not_a_plugin"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a tidings plugin"), "{text}");
    assert!(text.contains("tidings_plugin_entry"), "{text}");
    optional_is_skipped(PluginConfig::path(path), "not a tidings plugin").await;
}

#[tokio::test]
async fn a_missing_file_and_a_null_descriptor_are_refused() {
    let text = refused(PluginConfig::path("/nonexistent/libnothing.so")).await;
    assert!(
        text.contains("plugin nothing (/nonexistent/libnothing.so): cannot load: no such file"),
        "{text}"
    );
    let text = refused(PluginConfig::path(&built().null_descriptor)).await;
    assert!(text.contains("plugin null_descriptor"), "{text}");
    assert!(text.contains("returned NULL"), "{text}");
    // A named entry shows the configured name.
    let text = refused(PluginConfig {
        name: Some("spam-guard".into()),
        ..PluginConfig::path("/nonexistent/libnothing.so")
    })
    .await;
    assert!(text.contains("plugin spam-guard"), "{text}");
}

#[tokio::test]
async fn a_failing_init_is_refused_with_its_message() {
    let path = &built().init_fails;
    let text = refused(PluginConfig::path(path)).await;
    assert!(text.contains("plugin init-fails"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("init failed: the database this plugin needs is unreachable"),
        "{text}"
    );
    // A plugin's own config errors come back the same way.
    let text = refused(PluginConfig::path(&built().profanity)).await;
    assert!(text.contains("plugin profanity-filter"), "{text}");
    assert!(text.contains("init failed: config {}"), "{text}");
    optional_is_skipped(PluginConfig::path(path), "unreachable").await;
}

#[tokio::test]
async fn a_panicking_plugin_is_disabled_and_the_message_still_goes_through() {
    let engine = engine_with(vec![PluginConfig::path(&built().panicky), profanity()])
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let sent = engine
        .send(SendRequest::to("1", "18", "darn panics"))
        .await
        .unwrap();
    // The message is stored, the next plugin ran, the event went out.
    assert_eq!(sent.message.body, "**** panics");
    loop {
        match events.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(Received::Event(e)) if e.name == "new-message" => break,
            Some(_) => {}
            None => panic!("no new-message event"),
        }
    }
    let status = status_of(&engine, "panicky");
    assert!(!status.running);
    let error = status.error.clone().unwrap();
    assert!(error.contains("panicked in before_send"), "{error}");
    assert!(error.contains("panicky plugin refuses"), "{error}");
    assert_eq!(calls(&status, "before_send"), 1);
    assert_eq!(status.hooks[1].errors, 1);
    // Disabled: not called again; the engine goes on.
    engine
        .send(SendRequest::to("1", "18", "again"))
        .await
        .unwrap();
    assert_eq!(calls(&status_of(&engine, "panicky"), "before_send"), 1);
    assert_eq!(
        calls(&status_of(&engine, "profanity-filter"), "before_send"),
        2
    );
    engine.shutdown().await;
}

// ------------------------------------------------- compiled-in plugins

#[tokio::test]
async fn the_same_trait_registers_compiled_in_plugins() {
    use profanity_filter::ProfanityFilter;
    let engine = Engine::builder()
        .config(EngineConfig::with_store("memory:"))
        .plugin(
            tidings_plugin::descriptor::<ProfanityFilter>(),
            json!({"words": ["heck"]}),
        )
        .build()
        .await
        .unwrap();
    let sent = engine
        .send(SendRequest::to("1", "18", "what the heck"))
        .await
        .unwrap();
    assert_eq!(sent.message.body, "what the ****");
    assert_eq!(status_of(&engine, "profanity-filter").file, "compiled in");
    engine.shutdown().await;

    // Registered by name, a JSON config (C ABI, Python, Node) can use it.
    tidings::plugin::static_registry::register_plugin::<ProfanityFilter>().unwrap();
    let config = EngineConfig::from_json(
        r#"{"store": "memory:",
            "plugins": [{"name": "profanity-filter", "config": {"words": ["darn"]}}]}"#,
    )
    .unwrap();
    let engine = Engine::open(config).await.unwrap();
    let sent = engine
        .send(SendRequest::to("1", "18", "darn"))
        .await
        .unwrap();
    assert_eq!(sent.message.body, "****");
    engine.shutdown().await;
    let text = refused(PluginConfig::named("no-such-plugin")).await;
    assert!(
        text.contains("no compiled-in plugin is registered under this name"),
        "{text}"
    );
    assert!(text.contains("registered: profanity-filter"), "{text}");
}

/// What the recorder saw, per test (keyed by its config's `id`).
static SEEN: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

fn seen(id: &str) -> Vec<String> {
    SEEN.lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(id).cloned())
        .unwrap_or_default()
}

/// A plugin that is a transport, publishes a note after each send, and
/// records every hook call.
struct Recorder {
    id: String,
    host: Host,
}

impl Recorder {
    fn record(&self, what: String) {
        let mut seen = SEEN.lock().unwrap();
        seen.get_or_insert_with(HashMap::new)
            .entry(self.id.clone())
            .or_default()
            .push(what);
    }
}

impl Plugin for Recorder {
    const NAME: &'static std::ffi::CStr = c"recorder";
    const VERSION: &'static std::ffi::CStr = c"0.1.0";
    const TRANSPORT: bool = true;

    fn init(host: Host, config_json: &str) -> Result<Self, PluginError> {
        let config: Value = serde_json::from_str(config_json)?;
        let id = config["id"].as_str().ok_or("no id")?.to_owned();
        Ok(Recorder { id, host })
    }

    fn before_send(&self, message: &Message) -> Result<Verdict, PluginError> {
        self.record(format!(
            "before_send {} -> {:?}",
            message.sender_id, message.recipient_id
        ));
        if message.body == "fail" {
            return Err("a hook error".into());
        }
        Ok(Verdict::Allow)
    }

    fn after_send(&self, message: &Message) -> Result<(), PluginError> {
        self.record(format!("after_send seq {}", message.seq.unwrap_or(-1)));
        let note = json!({"id": message.id}).to_string();
        self.host.publish("private-audit", "noted", &note)?;
        Ok(())
    }

    fn on_event(&self, channel: &str, event: &str, _data: &str) -> Result<(), PluginError> {
        self.record(format!("on_event {channel} {event}"));
        Ok(())
    }

    fn deliver(&self, channel: &str, event: &str, _data: &str) -> Result<(), PluginError> {
        self.record(format!("deliver {channel} {event}"));
        Ok(())
    }

    fn shutdown(&self) {
        self.record("shutdown".into());
    }
}

#[tokio::test]
async fn after_send_on_event_deliver_and_publish() {
    let engine = Engine::builder()
        .config(EngineConfig::with_store("memory:"))
        .plugin(
            tidings_plugin::descriptor::<Recorder>(),
            json!({"id": "hooks"}),
        )
        .build()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    // A hook error is logged and the message goes on.
    engine
        .send(SendRequest::to("1", "18", "fail"))
        .await
        .unwrap();
    let (mut new_message, mut noted) = (false, false);
    while !(new_message && noted) {
        match events.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(Received::Event(e)) if e.name == "new-message" => new_message = true,
            Some(Received::Event(e)) if e.name == "noted" => {
                assert_eq!(e.channel, "private-audit");
                noted = true;
            }
            Some(_) => {}
            None => panic!("events missing: new-message {new_message}, noted {noted}"),
        }
    }
    engine.shutdown().await;
    let seen = seen("hooks");
    assert_eq!(seen[0], "before_send 1 -> Some(\"18\")");
    // after_send and delivery both follow the commit, in either order.
    assert!(seen.contains(&"after_send seq 1".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&"deliver private-conversation-1-18 new-message".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"deliver private-audit noted".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"on_event private-conversation-1-18 new-message".to_owned()),
        "{seen:?}"
    );
    // Published events are not fed back to on_event (no loops).
    assert!(
        !seen.contains(&"on_event private-audit noted".to_owned()),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), "shutdown");
    let status = engine.plugins().remove(0);
    assert_eq!(
        status
            .hooks
            .iter()
            .find(|h| h.hook == "before_send")
            .unwrap()
            .errors,
        1
    );
}

#[test]
fn plugins_in_the_engine_config_json() {
    let config = EngineConfig::from_json(
        r#"{"plugins": [
            {"path": "./libprofanity_filter.so", "config": {"words": ["darn"]}},
            {"path": "/opt/librate_limit.so", "name": "limits", "optional": true}
        ]}"#,
    )
    .unwrap();
    assert_eq!(config.plugins.len(), 2);
    assert_eq!(config.plugins[0].config, json!({"words": ["darn"]}));
    assert_eq!(config.plugins[1].name.as_deref(), Some("limits"));
    assert!(config.plugins[1].optional);
    assert_eq!(config.plugins[1].config, json!({}));
    let err = EngineConfig::from_json(r#"{"plugins": [{"path": "x", "confg": {}}]}"#).unwrap_err();
    assert!(err.to_string().contains("confg"), "{err}");
}

// --------------------------------------------------- tidings serve --plugin

struct Serve {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(dir: &Path, plugins: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidings"));
    cmd.current_dir(dir)
        .env_remove("TIDINGS_STORE")
        .env_remove("TIDINGS_CONFIG")
        .args([
            "--store",
            "memory:",
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir);
    for p in plugins {
        cmd.arg("--plugin").arg(p);
    }
    cmd
}

/// Starts `tidings serve` and waits for its "serving on" line.
fn serve(plugins: &[String]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_command(dir.path(), plugins)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("tidings serving on http://") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tidings serve did not start");
    Serve {
        child,
        addr: addr.parse().unwrap(),
        _dir: dir,
    }
}

/// `POST /v1/messages` as a demo user: (status, JSON answer).
fn post_message(addr: SocketAddr, user: &str, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nX-Tidings-User: {user}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(json)
    } else {
        json.to_owned()
    };
    (status, serde_json::from_str(&json).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn arg(path: &Path, config: Value) -> String {
    format!("{}={config}", path.display())
}

#[test]
fn serve_with_plugins_rewrites_and_rejects_through_the_chat_api() {
    let b = built();
    let server = serve(&[
        arg(&b.profanity, json!({"words": ["darn"]})),
        arg(&b.rate_limit, json!({"max": 2, "window_secs": 60})),
    ]);
    let (status, answer) = post_message(server.addr, "1", json!({"to": "18", "body": "darn it"}));
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["message"]["body"], "**** it");
    let (status, _) = post_message(server.addr, "1", json!({"to": "18", "body": "two"}));
    assert_eq!(status, 201);
    let (status, answer) = post_message(server.addr, "1", json!({"to": "18", "body": "three"}));
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["kind"], "rejected");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rejected by plugin rate-limit"),
        "{message}"
    );
    assert!(message.contains("user 1 may send 2 messages"), "{message}");
    // Still serving, for everyone else.
    let (status, _) = post_message(server.addr, "18", json!({"to": "1", "body": "ok"}));
    assert_eq!(status, 201);
}

#[test]
fn serve_keeps_serving_when_a_plugin_panics() {
    let b = built();
    let server = serve(&[
        b.panicky.display().to_string(),
        arg(&b.profanity, json!({"words": ["heck"]})),
    ]);
    for text in ["heck one", "heck two"] {
        let (status, answer) = post_message(server.addr, "1", json!({"to": "18", "body": text}));
        assert_eq!(status, 201, "{answer}");
        assert!(answer["message"]["body"]
            .as_str()
            .unwrap()
            .starts_with("****"));
    }
}

#[test]
fn serve_refuses_bad_plugins_with_a_clear_error() {
    let b = built();
    let cases = [
        (
            b.wrong_abi.display().to_string(),
            "built for plugin ABI 2.3",
        ),
        (b.not_a_plugin.display().to_string(), "not a tidings plugin"),
        (
            b.init_fails.display().to_string(),
            "init failed: the database",
        ),
        ("./libmissing.so".to_owned(), "cannot load: no such file"),
        (format!("{}={{nope", b.profanity.display()), "is not JSON"),
    ];
    for (plugin, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = serve_command(dir.path(), std::slice::from_ref(&plugin))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{plugin}: started anyway: {stderr}");
        assert!(stderr.contains(expected), "{plugin}: {stderr}");
    }
}
