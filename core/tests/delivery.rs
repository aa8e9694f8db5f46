//! Delivery through the Pusher HTTP transport and the outbox, against a
//! scripted Pusher-compatible endpoint and a real `tidings serve`: faults
//! (down, slow, 500, 413, 401), batching, order, and nothing lost.
#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tidings::{Engine, EngineConfig, Message, SendRequest, TransportConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const KEY: &str = "fake-key";
const SECRET: &str = "fake-secret-123";

/// What the fake endpoint answers next; `Ok` when the script runs out.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Answer 200 after this long (to trip the client's timeout).
    Slow(Duration),
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Reply>>,
    /// Every accepted event: (channel, name, data).
    accepted: Mutex<Vec<(String, String, String)>>,
    /// Events per accepted batch call.
    batch_sizes: Mutex<Vec<usize>>,
    bad_signatures: Mutex<u32>,
    /// Batches holding this text are refused with 413.
    refuse_containing: Mutex<Option<String>>,
    changed: Notify,
}

impl Fake {
    fn push(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().copied());
    }

    fn accepted_messages(&self) -> Vec<Message> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, name, _)| name == "new-message")
            .map(|(_, _, data)| serde_json::from_str(data).expect("message json"))
            .collect()
    }

    /// Waits until `pred` holds on the accepted messages.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.changed.notified();
            let got = self.accepted_messages();
            if pred(&got) {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for {what}; accepted so far: {}",
                    got.len()
                );
            }
        }
    }
}

async fn batch_events(
    State(fake): State<Arc<Fake>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let params: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if let Err(why) = tidings::signature::verify_request(
        SECRET,
        "POST",
        "/apps/9/batch_events",
        &params,
        &body,
        now,
    ) {
        *fake.bad_signatures.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, why.to_string());
    }
    let refuse = fake.refuse_containing.lock().unwrap().clone();
    if refuse.is_some_and(|r| String::from_utf8_lossy(&body).contains(&r)) {
        fake.changed.notify_waiters();
        return (StatusCode::PAYLOAD_TOO_LARGE, "scripted 413".into());
    }
    let next = fake.script.lock().unwrap().pop_front();
    match next {
        Some(Reply::Status(code)) if code != 200 => {
            fake.changed.notify_waiters();
            return (
                StatusCode::from_u16(code).unwrap(),
                format!("scripted {code}"),
            );
        }
        Some(Reply::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).expect("batch json");
    let batch = parsed["batch"].as_array().expect("batch array");
    fake.batch_sizes.lock().unwrap().push(batch.len());
    let mut accepted = fake.accepted.lock().unwrap();
    for e in batch {
        accepted.push((
            e["channel"].as_str().unwrap().to_owned(),
            e["name"].as_str().unwrap().to_owned(),
            e["data"].as_str().unwrap().to_owned(),
        ));
    }
    drop(accepted);
    fake.changed.notify_waiters();
    (StatusCode::OK, "{}".into())
}

async fn start_fake(listener: TcpListener, fake: Arc<Fake>) {
    let app = Router::new()
        .route("/apps/9/batch_events", post(batch_events))
        .with_state(fake);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

async fn fake_endpoint() -> (Arc<Fake>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(Fake::default());
    start_fake(listener, fake.clone()).await;
    (fake, addr)
}

fn pusher_url(addr: SocketAddr) -> String {
    format!("http://{KEY}:{SECRET}@{addr}/apps/9")
}

async fn engine_to(store: &str, addr: SocketAddr, timeout_ms: u64) -> Engine {
    Engine::open(EngineConfig {
        store: store.to_owned(),
        transports: vec![TransportConfig::Pusher {
            url: pusher_url(addr),
            timeout_ms,
            attempts: 2,
        }],
        ..EngineConfig::default()
    })
    .await
    .expect("engine")
}

/// Polls the outbox until `pred` holds on its rows (the outbox acks after
/// the endpoint's answer, so there is no event to wait on from outside).
async fn outbox_rows_until(
    engine: &Engine,
    what: &str,
    pred: impl Fn(&Vec<tidings::store::OutboxRow>) -> bool,
) -> Vec<tidings::store::OutboxRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = engine.pending_deliveries(100).await.unwrap();
        if pred(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Per conversation, the seqs in the order they were first delivered.
fn first_delivery_order(messages: &[Message]) -> HashMap<String, Vec<i64>> {
    let mut seen = std::collections::HashSet::new();
    let mut order: HashMap<String, Vec<i64>> = HashMap::new();
    for m in messages {
        if seen.insert(m.id) {
            order
                .entry(m.conversation_id.to_string())
                .or_default()
                .push(m.seq);
        }
    }
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_batched_by_ten_in_order() {
    let (fake, addr) = fake_endpoint().await;
    let engine = engine_to("memory:", addr, 2_000).await;
    let mut tasks = Vec::new();
    for t in 0..5 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let (a, b) = (format!("{}", t * 2 + 1), format!("{}", t * 2 + 2));
                engine
                    .send(SendRequest::to(a, b, format!("m{i}")))
                    .await
                    .expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = fake.wait_for("100 messages", |m| m.len() >= 100).await;
    for (conv, seqs) in first_delivery_order(&got) {
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "order in {conv}");
    }
    let sizes = fake.batch_sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|&n| (1..=10).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "concurrent events share calls: {sizes:?}"
    );
    assert_eq!(*fake.bad_signatures.lock().unwrap(), 0, "signatures verify");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_timeouts_are_retried_without_loss_or_reordering() {
    let (fake, addr) = fake_endpoint().await;
    fake.push(&[
        Reply::Status(500),
        Reply::Status(503),
        Reply::Slow(Duration::from_millis(1500)),
        Reply::Status(429),
    ]);
    let engine = engine_to("memory:", addr, 300).await;
    for i in 1..=12 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .expect("accepted whatever the endpoint does");
    }
    let got = fake
        .wait_for("12 messages", |m| {
            first_delivery_order(m)
                .get("1-18")
                .is_some_and(|s| s.len() == 12)
        })
        .await;
    assert_eq!(
        first_delivery_order(&got)["1-18"],
        (1..=12).collect::<Vec<_>>()
    );
    // The endpoint has answered 200; the outbox acks right after.
    outbox_rows_until(&engine, "the outbox to drain", Vec::is_empty).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_kept_with_the_reason_and_do_not_block_later_ones() {
    let (fake, addr) = fake_endpoint().await;
    let engine = engine_to("memory:", addr, 2_000).await;
    // Calls carrying this event are refused (413): it is kept, not retried,
    // and the events around it, even in the same batch, go out.
    *fake.refuse_containing.lock().unwrap() = Some("refuse-me".into());
    let before = engine
        .send(SendRequest::to("1", "18", "before"))
        .await
        .unwrap();
    engine
        .send(SendRequest::to("1", "18", "refuse-me"))
        .await
        .unwrap();
    let later = engine
        .send(SendRequest::to("1", "18", "later"))
        .await
        .unwrap();
    let got = fake
        .wait_for("the later message", |m| {
            m.iter().any(|x| x.id == later.message.id)
        })
        .await;
    assert!(got.iter().any(|m| m.id == before.message.id));
    assert!(got.iter().all(|m| m.body != "refuse-me"));
    let rows = outbox_rows_until(&engine, "a refused row", |rows| {
        rows.iter().any(|r| r.refused)
    })
    .await;
    let refused = rows.into_iter().find(|r| r.refused).unwrap();
    let reason = refused.last_error.unwrap_or_default();
    assert!(reason.contains("413"), "{reason}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_down_gets_everything_once_it_is_back() {
    // Reserve a port, close it: nothing listens there yet.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/t.db", dir.path().display());
    let engine = engine_to(&store, addr, 500).await;
    for i in 1..=5 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .expect("stored while the endpoint is down");
    }
    // The worker has tried and failed at least once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !engine
        .pending_deliveries(10)
        .await
        .unwrap()
        .first()
        .is_some_and(|r| r.attempts > 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt seen"
        );
        tokio::task::yield_now().await;
    }
    engine.shutdown().await;
    drop(engine);
    // Back up: the next engine on this store delivers the pending rows first.
    let listener = TcpListener::bind(addr).await.unwrap();
    let fake = Arc::new(Fake::default());
    start_fake(listener, fake.clone()).await;
    let engine = engine_to(&store, addr, 2_000).await;
    engine
        .send(SendRequest::to("18", "1", "newer"))
        .await
        .unwrap();
    let got = fake.wait_for("6 messages", |m| m.len() >= 6).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "m4", "m5", "newer"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_go_out_truncated_and_are_fetched_by_id() {
    let (fake, addr) = fake_endpoint().await;
    let engine = engine_to("memory:", addr, 2_000).await;
    // 6,000 quotes: 6 KB stored, 12 KB once JSON-escaped.
    let body = "\"".repeat(6_000);
    let sent = engine
        .send(SendRequest::to("1", "18", body.clone()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let data = loop {
        let found = fake
            .accepted
            .lock()
            .unwrap()
            .iter()
            .find(|(_, n, _)| n == "new-message")
            .map(|(_, _, d)| d.clone());
        if let Some(d) = found {
            break d;
        }
        let changed = fake.changed.notified();
        assert!(
            tokio::time::timeout_at(deadline, changed).await.is_ok(),
            "not delivered"
        );
    };
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["truncated"], true);
    assert_eq!(v["id"], sent.message.id);
    assert!(v.get("body").is_none());
    assert_eq!(engine.message(sent.message.id).await.unwrap().body, body);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_refused_with_the_reason_and_never_retried() {
    let (fake, addr) = fake_endpoint().await;
    let engine = Engine::open(EngineConfig {
        store: "memory:".into(),
        transports: vec![TransportConfig::Pusher {
            url: format!("http://{KEY}:not-the-secret@{addr}/apps/9"),
            timeout_ms: 2_000,
            attempts: 3,
        }],
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    for (i, body) in ["m1", "m2"].iter().enumerate() {
        engine
            .send(SendRequest::to("1", "18", *body))
            .await
            .unwrap();
        let rows = outbox_rows_until(&engine, "refused rows", |rows| {
            rows.iter().filter(|r| r.refused).count() == i + 1
        })
        .await;
        for row in rows {
            let reason = row.last_error.unwrap_or_default();
            assert!(reason.contains("401"), "{reason}");
            assert!(reason.contains("Invalid signature"), "{reason}");
            assert_eq!(row.attempts, 1, "refused rows are not tried again");
        }
    }
    // One request per message: neither was retried, nor m1 with m2.
    assert_eq!(*fake.bad_signatures.lock().unwrap(), 2);
    engine.shutdown().await;
}

/// A `tidings serve` that the tests can stop and start again on its port.
#[cfg(feature = "broker")]
mod restarting {
    use std::net::SocketAddr;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tidings::api::{ServeConfig, Server};
    use tidings::broker::AppConfig;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{oneshot, watch};
    use tokio_tungstenite::tungstenite::Message as Ws;

    pub const APP: (&str, &str, &str) = ("31", "restart-key", "restart-secret-42");

    pub struct Running {
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<tidings::Result<()>>,
    }

    pub async fn serve(listen: SocketAddr, dir: &std::path::Path) -> (SocketAddr, Running) {
        let server = Server::bind(ServeConfig::new(
            listen,
            dir,
            "memory:",
            vec![AppConfig::new(APP.0, APP.1, APP.2)],
        ))
        .await
        .expect("bind");
        let addr = server.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        (addr, Running { stop, task })
    }

    impl Running {
        pub async fn stop(self) {
            let _ = self.stop.send(());
            self.task.await.expect("server task").expect("server");
        }
    }

    /// Forwards connections to `upstream` while the gate is open; while it
    /// is closed, connections are dropped at once (the way a host that is
    /// down looks to a client).
    pub async fn gated_proxy(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (gate, open) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*open.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        (addr, gate)
    }

    pub struct Subscriber {
        ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    }

    impl Subscriber {
        /// Connected and subscribed to `channel` (signed like an auth endpoint would).
        pub async fn on(addr: SocketAddr, channel: &str) -> Subscriber {
            let url = format!("ws://{addr}/app/{}?protocol=7&client=test&version=1", APP.1);
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            let mut s = Subscriber { ws };
            let hello = s.frame().await;
            let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
            let socket_id = data["socket_id"].as_str().unwrap();
            let auth = tidings::signature::channel_auth(APP.1, APP.2, socket_id, channel);
            let subscribe =
                json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
            s.ws.send(Ws::Text(subscribe.to_string().into()))
                .await
                .unwrap();
            loop {
                let f = s.frame().await;
                assert_ne!(f["event"], "pusher:error", "{f}");
                if f["event"] == "pusher_internal:subscription_succeeded" {
                    return s;
                }
            }
        }

        pub async fn frame(&mut self) -> Value {
            let deadline = std::time::Duration::from_secs(30);
            loop {
                match tokio::time::timeout(deadline, self.ws.next()).await {
                    Ok(Some(Ok(Ws::Text(t)))) => return serde_json::from_str(t.as_str()).unwrap(),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("no frame within {deadline:?}: {other:?}"),
                }
            }
        }

        /// The seq of the next `new-message`.
        pub async fn next_seq(&mut self) -> i64 {
            loop {
                let f = self.frame().await;
                if f["event"] == "new-message" {
                    let m: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
                    return m["seq"].as_i64().unwrap();
                }
            }
        }
    }
}

#[cfg(feature = "broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tidings_serve_that_restarts_gets_what_was_sent_meanwhile_in_order() {
    use restarting::{gated_proxy, serve, Subscriber, APP};
    let dir = tempfile::tempdir().unwrap();
    let (addr, running) = serve("127.0.0.1:0".parse().unwrap(), dir.path()).await;
    let (via, gate) = gated_proxy(addr).await;
    let engine = Engine::open(EngineConfig {
        store: "memory:".into(),
        transports: vec![TransportConfig::Pusher {
            url: format!("http://{}:{}@{via}/apps/{}", APP.1, APP.2, APP.0),
            timeout_ms: 1_000,
            attempts: 2,
        }],
        ..EngineConfig::default()
    })
    .await
    .unwrap();
    let channel = "private-conversation-1-18";
    let mut before = Subscriber::on(addr, channel).await;
    for i in 1..=2 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(before.next_seq().await, i);
    }

    // The server goes away; sends go on and are kept.
    gate.send_replace(false);
    running.stop().await;
    for i in 3..=5 {
        engine
            .send(SendRequest::to("18", "1", format!("m{i}")))
            .await
            .expect("accepted while the server is down");
    }
    outbox_rows_until(&engine, "failed attempts", |rows| {
        rows.len() == 3 && rows.iter().all(|r| r.attempts > 0 && !r.refused)
    })
    .await;

    // Back on the same port, with a subscriber listening before the
    // engine can reach it again: it gets the missed messages, then a new one.
    let (again, running) = serve(addr, dir.path()).await;
    assert_eq!(again, addr);
    let mut after = Subscriber::on(addr, channel).await;
    gate.send_replace(true);
    engine.send(SendRequest::to("1", "18", "m6")).await.unwrap();
    let mut seqs = Vec::new();
    for _ in 3..=6 {
        seqs.push(after.next_seq().await);
    }
    assert_eq!(seqs, [3, 4, 5, 6]);
    outbox_rows_until(&engine, "the outbox to drain", Vec::is_empty).await;
    engine.shutdown().await;
    running.stop().await;
}

/// Runs the `tidings` command line in `dir`.
#[cfg(feature = "cli")]
async fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .current_dir(&dir)
            .env_remove("TIDINGS_STORE")
            .env_remove("TIDINGS_PUSHER_URL")
            .args(&args)
            .output()
            .expect("run tidings")
    })
    .await
    .unwrap()
}

/// What a Pusher mirror still owes may only be taken by a Pusher transport:
/// no command line run (reads, writes without that transport) acknowledges
/// it, and the next engine with the transport delivers it.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rows_for_a_pusher_transport_survive_every_cli_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A port nothing listens on yet: the mirror is down.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = d.join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite://{}/t.db\"\n[[transport]]\nkind = \"pusher\"\nurl = \"{}\"\ntimeout_ms = 300\nattempts = 1\n",
            d.display(),
            pusher_url(addr)
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let store = format!("sqlite://{}/t.db", d.display());
    let sent = cli(
        d,
        &[
            "--config",
            config,
            "send",
            "--from",
            "1",
            "--to",
            "18",
            "while the mirror is down",
        ],
    )
    .await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        String::from_utf8_lossy(&sent.stderr).contains("delivery pending"),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let key = format!("pusher:http://{addr}/apps/9");
    let owed = |out: std::process::Output| -> Vec<serde_json::Value> {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows
    };
    let everything: [&[&str]; 8] = [
        &["outbox"],
        &["inbox", "--user", "1"],
        &["history", "1-18"],
        &["after", "1-18", "0"],
        &["search", "--user", "1", "mirror"],
        &["read", "--user", "18", "1-18", "--up-to", "1"],
        &["react", "--user", "18", "1", "👍"],
        &["unreact", "--user", "18", "1"],
    ];
    for args in everything {
        // Reads also with the mirror configured; writes without it (once).
        let writes = matches!(args[0], "read" | "react" | "unreact");
        for with_config in [false, true].into_iter().take(if writes { 1 } else { 2 }) {
            let mut all = vec!["--store", store.as_str()];
            if with_config {
                all = vec!["--config", config];
            }
            all.extend_from_slice(args);
            let out = cli(d, &all).await;
            assert!(
                out.status.success(),
                "{all:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let rows = owed(cli(d, &["--json", "--store", &store, "outbox"]).await);
    // The message, the read mark and the two reaction changes.
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for row in &rows {
        assert_eq!(row["pending_for"], serde_json::json!([key]), "{row}");
    }

    // The mirror comes back: the next engine with its transport delivers
    // everything, in order.
    let fake = Arc::new(Fake::default());
    start_fake(TcpListener::bind(addr).await.unwrap(), fake.clone()).await;
    let out = cli(
        d,
        &[
            "--config", config, "read", "--user", "1", "1-18", "--up-to", "1",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = fake
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(_, name, _)| name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "new-message",
            "messages-read",
            "reaction",
            "reaction",
            "messages-read"
        ],
        "every owed event once, in order, then the new read mark"
    );
    assert!(owed(cli(d, &["--json", "--store", &store, "outbox"]).await).is_empty());
}

/// Accepts connections and, while closed, holds them without reading or
/// answering (an endpoint that hangs); once opened, forwards new ones to
/// `upstream`.
async fn hanging_endpoint(upstream: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (gate, open) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !*open.borrow() {
                held.push(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, gate)
}

/// A Pusher mirror whose endpoint accepts and never answers holds back only
/// itself: the broker's subscriber gets every message at once, and the
/// mirror gets them all, in order, once its endpoint answers.
#[cfg(feature = "broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_pusher_mirror_holds_back_only_itself() {
    use restarting::{Subscriber, APP};
    use tidings::api::{ServeConfig, Server};
    use tidings::broker::AppConfig;
    let (fake, fake_addr) = fake_endpoint().await;
    let (hung, open) = hanging_endpoint(fake_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServeConfig {
        transports: vec![TransportConfig::Pusher {
            url: pusher_url(hung),
            timeout_ms: 2_000,
            attempts: 2,
        }],
        ..ServeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            "memory:",
            vec![AppConfig::new(APP.0, APP.1, APP.2)],
        )
    })
    .await
    .expect("bind");
    let addr = server.local_addr().unwrap();
    let engine = server.state().engine.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut subscriber = Subscriber::on(addr, "private-conversation-1-18").await;
    let mut slowest = Duration::ZERO;
    for i in 1..=5 {
        let sent_at = tokio::time::Instant::now();
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(subscriber.next_seq().await, i);
        slowest = slowest.max(sent_at.elapsed());
    }
    // One call to the hung mirror takes up to 2 × 2 s before it gives up;
    // the broker's subscriber waited for none of them.
    assert!(
        slowest < Duration::from_secs(1),
        "a message took {slowest:?} to reach the broker's subscriber"
    );
    assert!(fake.accepted_messages().is_empty());
    open.send_replace(true);
    let got = fake
        .wait_for("the mirror to get all five", |m| m.len() >= 5)
        .await;
    let order = first_delivery_order(&got);
    assert_eq!(order["1-18"], [1, 2, 3, 4, 5], "in order, each once first");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

/// A request whose body never ends does not hold the server past its
/// shutdown timeout.
#[cfg(feature = "broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_does_not_hold_the_shutdown() {
    use restarting::APP;
    use tidings::api::{ServeConfig, Server};
    use tidings::broker::AppConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServeConfig {
        shutdown_timeout: Duration::from_millis(500),
        ..ServeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            "memory:",
            vec![AppConfig::new(APP.0, APP.1, APP.2)],
        )
    })
    .await
    .expect("bind");
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    // One whole request first, so the connection is being served.
    client
        .write_all(b"GET /healthz-not-a-route HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    client.read_exact(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1"), "{answer:?}");
    client
        .write_all(
            format!(
                "POST /apps/{}/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Content-Length: 100000\r\n\r\n{{\"name\":",
                APP.0
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let asked = tokio::time::Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the server stopped despite the open body")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(7),
        "{:?}",
        asked.elapsed()
    );
    drop(client);
}

/// A request whose headers never finish is closed after the header
/// timeout; a well-behaved client on the same server is served meanwhile.
#[cfg(feature = "broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_never_finish_are_cut_off() {
    use restarting::APP;
    use tidings::api::{ServeConfig, Server};
    use tidings::broker::AppConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServeConfig {
        header_timeout: Duration::from_millis(300),
        ..ServeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            "memory:",
            vec![AppConfig::new(APP.0, APP.1, APP.2)],
        )
    })
    .await
    .expect("bind");
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // Meanwhile a well-behaved client gets its answer.
    let ok = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}/apps/{}/channels", APP.0))
        .send()
        .await
        .unwrap();
    assert_ne!(ok.status().as_u16(), 0);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest))
        .await
        .expect("the slow connection was closed");
    assert!(read.is_ok() || rest.is_empty(), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
