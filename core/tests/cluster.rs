//! Several `tidings serve` nodes on one Redis and one PostgreSQL: two
//! engines appending to one conversation at once, three broker nodes
//! fanning out and sharing presence and counts, and a node killed with
//! SIGKILL being swept.
//!
//! Needs `TIDINGS_TEST_REDIS_URL=redis://…` and
//! `TIDINGS_TEST_POSTGRES_URL=postgres://…` (`scripts/test` starts both).
//! Unset, the tests pass with a notice, unless `CI=true`, where they fail.
//! Every test uses an app id of its own (its own Redis keys) and a fresh
//! PostgreSQL schema.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::cluster::ClusterSettings;
use tidings::store::postgres::PostgresStore;
use tidings::{signature, Engine, SendRequest, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const KEY: &str = "cluster-test-key";
const SECRET: &str = "cluster-test-secret-0123456789abcdef";
/// How long anything may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(15);

fn env_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} must be set when CI=true (scripts/test starts the service)")
        }
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: cluster test skipped; set {var} to run it"
            );
            None
        }
    }
}

fn services() -> Option<(String, String)> {
    let redis = env_url("TIDINGS_TEST_REDIS_URL");
    let pg = env_url("TIDINGS_TEST_POSTGRES_URL");
    Some((redis?, pg?))
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (u64::from(std::process::id()) % 10_000) * 1_000_000_000
        + nanos % 1_000_000 * 1000
        + NEXT.fetch_add(1, Ordering::Relaxed) % 1000
}

/// A fresh schema, migrated; the URL selects it for every connection.
async fn fresh_database(pg: &str) -> String {
    let schema = format!("cluster_{}", unique());
    drop(
        PostgresStore::connect_with_schema(pg, &schema)
            .await
            .expect("schema"),
    );
    let sep = if pg.contains('?') { '&' } else { '?' };
    format!("{pg}{sep}options=-csearch_path%3D{schema}")
}

fn settings(redis: &str) -> ClusterSettings {
    let mut s = ClusterSettings::new(redis);
    s.node_ttl = Duration::from_millis(1500);
    s.sweep_interval = Duration::from_millis(500);
    s.outbox_lease = Duration::from_secs(3);
    s
}

/// One in-process node.
struct Node {
    addr: SocketAddr,
    engine: Engine,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn node(app_id: &str, store: &str, redis: &str) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::bind(ServeConfig {
        demo: true,
        cluster: Some(settings(redis)),
        ..ServeConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            dir.path(),
            store,
            vec![AppConfig::new(app_id, KEY, SECRET)],
        )
    })
    .await
    .expect("bind");
    let addr = server.local_addr().expect("address");
    let engine = server.state().engine.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Node {
        addr,
        engine,
        _stop: stop,
        _dir: dir,
    }
}

/// A TCP proxy in front of Redis that can cut every connection (and
/// refuse new ones) and let them through again: a Redis outage for one
/// node only.
struct Cuttable {
    url: String,
    cut: watch::Sender<bool>,
}

async fn cuttable(redis: &str) -> Cuttable {
    let (scheme, rest) = redis.split_once("://").expect("redis://HOST:PORT");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, target) = match authority.rsplit_once('@') {
        Some((c, t)) => (format!("{c}@"), t.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (cut, watching) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if *watching.borrow() {
                continue;
            }
            let mut watching = watching.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = watching.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    Cuttable {
        url: format!("{scheme}://{credentials}{addr}/{path}"),
        cut,
    }
}

/// A Pusher-protocol client: frames arrive on a channel, read with deadlines.
struct Client {
    socket_id: String,
    out: mpsc::UnboundedSender<String>,
    frames: mpsc::UnboundedReceiver<Value>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=js&version=8.6.0");
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket");
        let (mut sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if text.is_empty() {
                    let _ = sink.close().await;
                    return;
                }
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let WsMessage::Text(text) = message {
                    if let Ok(mut frame) = serde_json::from_str::<Value>(text.as_str()) {
                        if let Some(data) = frame["data"].as_str() {
                            frame["parsed"] =
                                serde_json::from_str(data).unwrap_or(Value::String(data.into()));
                        } else {
                            frame["parsed"] = frame["data"].clone();
                        }
                        if tx.send(frame).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut client = Client {
            socket_id: String::new(),
            out,
            frames,
        };
        let hello = client
            .next(|f| f["event"] == "pusher:connection_established")
            .await;
        client.socket_id = hello["parsed"]["socket_id"]
            .as_str()
            .expect("socket id")
            .to_owned();
        client
    }

    fn send(&self, frame: Value) {
        let _ = self.out.send(frame.to_string());
    }

    fn close(&self) {
        let _ = self.out.send(String::new());
    }

    /// The next frame matching `pred` (earlier ones are dropped).
    async fn next(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.frames.recv())
                .await
                .expect("the awaited frame came in time")
                .expect("connection open");
            if pred(&frame) {
                return frame;
            }
        }
    }

    /// Every frame until (and without) the first matching `pred`.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let frame = tokio::time::timeout_at(deadline, self.frames.recv())
                .await
                .expect("the awaited frame came in time")
                .expect("connection open");
            if pred(&frame) {
                return seen;
            }
            seen.push(frame);
        }
    }

    /// Subscribes (signing private/presence channels); answers the data of
    /// `subscription_succeeded`.
    async fn subscribe(&mut self, channel: &str, user: Option<&str>) -> Value {
        let mut data = json!({ "channel": channel, "auth": "" });
        if let Some(user) = user {
            let channel_data =
                json!({ "user_id": user, "user_info": { "name": user } }).to_string();
            data["auth"] =
                signature::presence_auth(KEY, SECRET, &self.socket_id, channel, &channel_data)
                    .into();
            data["channel_data"] = channel_data.into();
        } else if channel.starts_with("private-") {
            data["auth"] = signature::channel_auth(KEY, SECRET, &self.socket_id, channel).into();
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data }));
        let ok = self
            .next(|f| {
                f["channel"] == channel
                    && (f["event"] == "pusher_internal:subscription_succeeded"
                        || f["event"] == "pusher:subscription_error")
            })
            .await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        ok["parsed"].clone()
    }
}

/// The Pusher HTTP API of a node.
async fn api(
    addr: SocketAddr,
    app_id: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let full = format!("/apps/{app_id}{path}");
    let (path_only, query) = full.split_once('?').unwrap_or((&full, ""));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let extra: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let params =
        signature::sign_request(KEY, SECRET, method, path_only, body.as_bytes(), now, &extra);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!("http://{addr}{path_only}?{}", query.join("&"));
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let request = match method {
        "POST" => http
            .post(url)
            .header("content-type", "application/json")
            .body(body),
        _ => http.get(url),
    };
    let response = tokio::time::timeout(DEADLINE, request.send())
        .await
        .expect("answer in time")
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("JSON")
}

async fn trigger(
    addr: SocketAddr,
    app_id: &str,
    channel: &str,
    event: &str,
    data: Value,
    except: Option<&str>,
) {
    let mut body = json!({ "name": event, "channel": channel, "data": data.to_string() });
    if let Some(socket) = except {
        body["socket_id"] = socket.into();
    }
    api(addr, app_id, "POST", "/events", Some(body)).await;
}

/// Polls `check` until it holds, within the deadline.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_node_once_in_order_and_presence_and_counts_are_cluster_wide() {
    let Some((redis, pg)) = services() else {
        return;
    };
    let app = unique().to_string();
    let store = fresh_database(&pg).await;
    let nodes = [
        node(&app, &store, &redis).await,
        node(&app, &store, &redis).await,
        node(&app, &store, &redis).await,
    ];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();

    // Fan-out: one subscriber per node, triggers round-robin over the nodes.
    let channel = "news";
    let mut subs = Vec::new();
    for &addr in &addrs {
        let mut c = Client::connect(addr).await;
        c.subscribe(channel, None).await;
        subs.push(c);
    }
    for i in 0..30 {
        trigger(addrs[i % 3], &app, channel, "tick", json!({ "i": i }), None).await;
    }
    trigger(addrs[0], &app, channel, "marker", json!({}), None).await;
    for c in &mut subs {
        let got: Vec<i64> = c
            .until(|f| f["event"] == "marker")
            .await
            .iter()
            .filter(|f| f["event"] == "tick")
            .map(|f| f["parsed"]["i"].as_i64().expect("i"))
            .collect();
        assert_eq!(
            got,
            (0..30).collect::<Vec<_>>(),
            "once each, in publish order"
        );
    }

    // socket_id exclusion across nodes.
    let excluded = subs[0].socket_id.clone();
    trigger(
        addrs[2],
        &app,
        channel,
        "not-you",
        json!({}),
        Some(&excluded),
    )
    .await;
    trigger(addrs[2], &app, channel, "marker", json!({}), None).await;
    for (i, c) in subs.iter_mut().enumerate() {
        let before = c.until(|f| f["event"] == "marker").await;
        let got = before.iter().any(|f| f["event"] == "not-you");
        assert_eq!(got, i != 0, "subscriber {i}");
    }

    // Cache channels: the last event is known on every node, and to a node
    // that starts later (read from Redis when it joins).
    trigger(
        addrs[0],
        &app,
        "cache-news",
        "latest",
        json!({ "v": 1 }),
        None,
    )
    .await;
    trigger(addrs[0], &app, channel, "marker", json!({}), None).await;
    subs[1].next(|f| f["event"] == "marker").await;
    let late = node(&app, &store, &redis).await;
    for addr in [addrs[1], late.addr] {
        let mut c = Client::connect(addr).await;
        c.subscribe("cache-news", None).await;
        let first = c.next(|f| f["channel"] == "cache-news").await;
        assert_eq!(first["event"], "latest", "{first}");
        assert_eq!(first["parsed"]["v"], 1);
    }
    drop(late);

    // Presence: per user across nodes, full lists on subscribe.
    let room = "presence-room";
    let mut p1 = Client::connect(addrs[0]).await;
    let first = p1.subscribe(room, Some("u1")).await;
    assert_eq!(first["presence"]["ids"], json!(["u1"]));
    // Joins on two nodes less than a Redis round trip apart are not
    // ordered (subscribe answers from the node's mirror at once): let
    // u1's join be known before u2's.
    eventually("u1 listed", || async {
        let users = api(
            addrs[1],
            &app,
            "GET",
            &format!("/channels/{room}/users"),
            None,
        )
        .await;
        users == json!({ "users": [{ "id": "u1" }] })
    })
    .await;
    // And node 2 read the bus past it (a marker to its news subscriber).
    trigger(addrs[0], &app, channel, "marker", json!({}), None).await;
    subs[1].next(|f| f["event"] == "marker").await;
    let mut p2 = Client::connect(addrs[1]).await;
    let second = p2.subscribe(room, Some("u2")).await;
    assert_eq!(second["presence"]["ids"], json!(["u1", "u2"]));
    assert_eq!(second["presence"]["hash"]["u1"], json!({ "name": "u1" }));
    let added = p1
        .next(|f| f["event"] == "pusher_internal:member_added")
        .await;
    assert_eq!(added["parsed"]["user_id"], "u2");
    // u1 again, on the third node: no member_added for anyone.
    let mut p3 = Client::connect(addrs[2]).await;
    let third = p3.subscribe(room, Some("u1")).await;
    assert_eq!(third["presence"]["count"], 2);
    let info = api(
        addrs[2],
        &app,
        "GET",
        &format!("/channels/{room}?info=user_count,subscription_count"),
        None,
    )
    .await;
    assert_eq!(
        info,
        json!({ "occupied": true, "user_count": 2, "subscription_count": 3 })
    );
    let users = api(
        addrs[1],
        &app,
        "GET",
        &format!("/channels/{room}/users"),
        None,
    )
    .await;
    assert_eq!(users, json!({ "users": [{ "id": "u1" }, { "id": "u2" }] }));
    let listed = api(
        addrs[0],
        &app,
        "GET",
        "/channels?filter_by_prefix=presence-&info=user_count",
        None,
    )
    .await;
    assert_eq!(listed, json!({ "channels": { room: { "user_count": 2 } } }));
    // One of u1's connections leaves: u1 stays. The last one: u1 leaves once.
    p1.close();
    eventually("two subscriptions left", || async {
        let info = api(
            addrs[1],
            &app,
            "GET",
            &format!("/channels/{room}?info=subscription_count"),
            None,
        )
        .await;
        info["subscription_count"] == 2
    })
    .await;
    p3.close();
    let removed = p2
        .until(|f| f["event"] == "pusher_internal:member_removed")
        .await;
    assert!(
        removed
            .iter()
            .all(|f| f["event"] != "pusher_internal:member_added"),
        "{removed:?}"
    );
    let users = api(
        addrs[0],
        &app,
        "GET",
        &format!("/channels/{room}/users"),
        None,
    )
    .await;
    assert_eq!(users, json!({ "users": [{ "id": "u2" }] }));
}

/// Counts deliveries per message id, in one global order, with the node
/// that delivered each.
#[derive(Default)]
struct Recorder {
    order: AtomicU64,
    seen: Mutex<Vec<(u64, i64, i64, String)>>,
}

struct Counting {
    name: String,
    recorder: Arc<Recorder>,
}

#[async_trait]
impl Transport for Counting {
    fn name(&self) -> &str {
        &self.name
    }

    /// One logical transport on every node, as the broker is.
    fn outbox_key(&self) -> Option<String> {
        Some("counting".to_owned())
    }

    async fn deliver(&self, _channel: &str, event: &str, payload: Bytes) -> tidings::Result<()> {
        if event == "new-message" {
            let m: Value = serde_json::from_slice(&payload).unwrap_or_default();
            let at = self.recorder.order.fetch_add(1, Ordering::SeqCst);
            let id = m["id"].as_i64().unwrap_or_default();
            let seq = m["seq"].as_i64().unwrap_or_default();
            self.recorder
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((at, id, seq, self.name.clone()));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_database_keep_seqs_gap_free_and_deliver_each_row_once_in_order_per_node(
) {
    let Some(pg) = env_url("TIDINGS_TEST_POSTGRES_URL") else {
        return;
    };
    let url = fresh_database(&pg).await;
    let recorder = Arc::new(Recorder::default());
    let mut engines = Vec::new();
    for name in ["node-a", "node-b"] {
        let store = Arc::new(PostgresStore::connect(&url).await.expect("store"));
        let engine = Engine::builder()
            .store(store)
            .transport(Arc::new(Counting {
                name: name.to_owned(),
                recorder: recorder.clone(),
            }))
            .outbox_lease(Duration::from_secs(5))
            .build()
            .await
            .expect("engine");
        engines.push(engine);
    }
    const TASKS: usize = 16;
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let engine = engines[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let (from, to) = if t % 3 == 0 { ("18", "1") } else { ("1", "18") };
                let sent = engine
                    .send(SendRequest::to(from, to, format!("task {t} message {i}")))
                    .await
                    .expect("send");
                seqs.push(sent.message.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let total = TASKS * EACH;
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total as i64).collect::<Vec<_>>(),
        "seqs are unique and gap-free across both engines"
    );
    let history = engines[0]
        .messages_after("1-18", 0, 1000)
        .await
        .expect("history");
    assert_eq!(history.len(), total);
    assert!(history.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    eventually("every new-message delivered", || async {
        recorder
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            >= total
    })
    .await;
    eventually("both outboxes empty", || async {
        engines[1]
            .pending_deliveries(10)
            .await
            .is_ok_and(|rows| rows.is_empty())
    })
    .await;
    let mut seen = recorder
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    seen.sort_unstable();
    let ids: HashSet<i64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(ids.len(), total, "each message once");
    assert_eq!(seen.len(), total, "no message twice");
    // Each node hands over what it committed, from memory, in commit order
    // (across nodes subscribers order by seq; recovery keeps seq order).
    for node in ["node-a", "node-b"] {
        let seqs: Vec<i64> = seen.iter().filter(|s| s.3 == node).map(|s| s.2).collect();
        assert!(!seqs.is_empty(), "{node} delivered nothing");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{node} delivered out of seq order: {seqs:?}"
        );
    }
    for engine in &engines {
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_is_swept_within_the_bound() {
    let Some((redis, pg)) = services() else {
        return;
    };
    let app = unique().to_string();
    let store = fresh_database(&pg).await;
    let survivor = node(&app, &store, &redis).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = settings(&redis);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--store", &store, "--cluster", &redis])
        .args(["--cluster-node-ttl", "1500ms", "--cluster-sweep", "500ms"])
        .env("TIDINGS_APP_ID", &app)
        .env("TIDINGS_APP_KEY", KEY)
        .env("TIDINGS_APP_SECRET", SECRET)
        .env_remove("TIDINGS_CONFIG")
        .env_remove("TIDINGS_STORE")
        .env_remove("TIDINGS_LISTEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tidings serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut child = KillOnDrop(child);
    let (found, address) = std::sync::mpsc::channel();
    // Reads the node's stderr to its end (so it never blocks on a full pipe).
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.trim().strip_prefix("tidings serving on http://") {
                let _ = found.send(rest.to_owned());
            }
        }
    });
    let addr: SocketAddr = address
        .recv_timeout(DEADLINE)
        .expect("the node prints its address in time")
        .parse()
        .expect("address");
    let mut watcher = Client::connect(survivor.addr).await;
    watcher.subscribe("presence-doomed", Some("watcher")).await;
    // The watcher's join reached Redis (a join on two nodes within one
    // round trip is not ordered: see the cluster docs).
    eventually("the watcher listed", || async {
        let users = api(addr, &app, "GET", "/channels/presence-doomed/users", None).await;
        users == json!({ "users": [{ "id": "watcher" }] })
    })
    .await;
    // And the doomed node read the bus past it (a marker on another channel).
    let mut victim = Client::connect(addr).await;
    victim.subscribe("barrier", None).await;
    trigger(survivor.addr, &app, "barrier", "marker", json!({}), None).await;
    victim.next(|f| f["event"] == "marker").await;
    let joined = victim.subscribe("presence-doomed", Some("victim")).await;
    assert_eq!(joined["presence"]["count"], 2);
    watcher
        .next(|f| f["event"] == "pusher_internal:member_added")
        .await;
    let killed = Instant::now();
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    let removed = watcher
        .next(|f| f["event"] == "pusher_internal:member_removed")
        .await;
    assert_eq!(removed["parsed"]["user_id"], "victim");
    let took = killed.elapsed();
    let bound = settings.death_bound();
    assert!(
        took <= bound + Duration::from_secs(2),
        "the dead node's member left after {took:?}; the bound is {bound:?}"
    );
    let users = api(
        survivor.addr,
        &app,
        "GET",
        "/channels/presence-doomed/users",
        None,
    )
    .await;
    assert_eq!(users, json!({ "users": [{ "id": "watcher" }] }));
}

/// A child process that never outlives a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_event_is_delivered_once_the_cluster_took_it_and_local_subscribers_get_it_once() {
    let Some(redis) = env_url("TIDINGS_TEST_REDIS_URL") else {
        return;
    };
    let app = unique().to_string();
    let proxy = cuttable(&redis).await;
    // Each node with its own store: node a's outbox alone delivers its events.
    let a = node(&app, "memory:", &proxy.url).await;
    let b = node(&app, "memory:", &redis).await;
    let channel = "private-conversation-1-18";
    let mut on_a = Client::connect(a.addr).await;
    on_a.subscribe(channel, None).await;
    let mut on_b = Client::connect(b.addr).await;
    on_b.subscribe(channel, None).await;
    let new_messages = |frames: &[Value]| {
        frames
            .iter()
            .filter(|f| f["event"] == "new-message")
            .count()
    };

    // Node a loses Redis; its engine sends a message meanwhile.
    proxy.cut.send_replace(true);
    a.engine
        .send(SendRequest::to("1", "18", "while Redis is away"))
        .await
        .expect("send");
    eventually(
        "the broker transport to have refused it a few times",
        || async {
            a.engine.pending_deliveries(10).await.is_ok_and(|rows| {
                rows.iter()
                    .any(|r| r.event == "new-message" && r.attempts >= 3 && r.last_error.is_some())
            })
        },
    )
    .await;
    // Cut off, a's trigger reaches its own subscriber at once, b's not.
    trigger(a.addr, &app, channel, "marker", json!({}), None).await;
    let seen = on_a.until(|f| f["event"] == "marker").await;
    assert_eq!(
        new_messages(&seen),
        1,
        "once locally, whatever the retries: {seen:?}"
    );
    trigger(b.addr, &app, channel, "marker", json!({}), None).await;
    let seen = on_b.until(|f| f["event"] == "marker").await;
    assert_eq!(new_messages(&seen), 0, "{seen:?}");

    // Redis is back for node a: the retry is taken and acknowledged.
    proxy.cut.send_replace(false);
    eventually("node a's outbox to empty", || async {
        a.engine
            .pending_deliveries(10)
            .await
            .is_ok_and(|rows| rows.is_empty())
    })
    .await;
    // Through Redis, behind the retry: b got it once, a no second time.
    trigger(a.addr, &app, channel, "marker", json!({}), None).await;
    let seen = on_b.until(|f| f["event"] == "marker").await;
    assert_eq!(new_messages(&seen), 1, "{seen:?}");
    let seen = on_a.until(|f| f["event"] == "marker").await;
    assert_eq!(
        new_messages(&seen),
        0,
        "no repeat for a's subscriber: {seen:?}"
    );
}
