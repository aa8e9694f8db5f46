//! Webhooks of `tidings serve`, received by a local HTTP server that
//! checks them like the Pusher SDKs do (key, signature, content type).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::signature;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
/// How long anything may take on a loaded machine before a test fails
/// (leaves are told after 3 s).
const DEADLINE: Duration = Duration::from_secs(20);

/// One webhook request as received.
#[derive(Debug)]
struct Hook {
    /// What the receiver answered.
    status: u16,
    at: Instant,
    raw: Bytes,
    content_type: String,
    key: String,
    signature: String,
}

impl Hook {
    fn body(&self) -> Value {
        serde_json::from_slice(&self.raw).expect("JSON body")
    }

    fn events(&self) -> Vec<Value> {
        self.body()["events"].as_array().expect("events").clone()
    }
}

struct Receiver {
    url: String,
    hooks: mpsc::UnboundedReceiver<Hook>,
}

#[derive(Clone)]
struct ReceiverState {
    hooks: mpsc::UnboundedSender<Hook>,
    /// Requests still to answer with 500.
    failures: Arc<AtomicUsize>,
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let key = header("x-pusher-key");
    let sig = header("x-pusher-signature");
    let fail = state
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let _ = state.hooks.send(Hook {
        status: status.as_u16(),
        at: Instant::now(),
        raw: body,
        content_type,
        key,
        signature: sig,
    });
    status
}

/// A webhook receiver answering 500 to its first `failures` requests.
async fn receiver(failures: usize) -> Receiver {
    let (hooks, received) = mpsc::unbounded_channel();
    let state = ReceiverState {
        hooks,
        failures: Arc::new(AtomicUsize::new(failures)),
    };
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hooks"),
        hooks: received,
    }
}

impl Receiver {
    /// The next request, checked like the Pusher SDKs check webhooks.
    async fn next(&mut self) -> Hook {
        let hook = tokio::time::timeout(DEADLINE, self.hooks.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver running");
        // Node's WebHook.isValid wants exactly this content type.
        assert_eq!(hook.content_type, "application/json");
        assert_eq!(hook.key, KEY);
        assert_eq!(
            hook.signature,
            signature::webhook_signature(SECRET, &hook.raw)
        );
        // Python's validate_webhook refuses a time_ms 300 s off.
        let time_ms = hook.body()["time_ms"].as_u64().expect("time_ms");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        assert!(now_ms.abs_diff(time_ms) < 300_000, "time_ms {time_ms}");
        hook
    }

    /// The next request, which must carry exactly one event.
    async fn single(&mut self) -> (Value, Hook) {
        let hook = self.next().await;
        let events = hook.events();
        assert_eq!(events.len(), 1, "unbatched: {events:?}");
        (events[0].clone(), hook)
    }
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    running: tokio::task::JoinHandle<tidings::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(webhook: &str, batching: bool) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = AppConfig::new("3", KEY, SECRET);
    app.webhooks = vec![webhook.to_owned()];
    app.webhook_batching = batching;
    let config = ServeConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        dir.path(),
        "memory:",
        vec![app],
    );
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop,
        running,
        _dir: dir,
    }
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    socket_id: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=js&version=8.4.0");
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut client = Client {
            ws,
            socket_id: String::new(),
        };
        let hello = client.next().await;
        assert_eq!(hello["event"], "pusher:connection_established");
        let data: Value =
            serde_json::from_str(hello["data"].as_str().expect("data")).expect("data JSON");
        client.socket_id = data["socket_id"].as_str().expect("socket id").to_owned();
        client
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("open socket")
                .expect("frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    async fn succeeded(&mut self, channel: &str) {
        loop {
            let frame = self.next().await;
            if frame["event"] == "pusher_internal:subscription_succeeded" {
                assert_eq!(frame["channel"], channel);
                return;
            }
        }
    }

    async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        self.succeeded(channel).await;
    }

    async fn subscribe_presence(&mut self, channel: &str, user_id: &str) {
        let channel_data = json!({ "user_id": user_id }).to_string();
        let auth = signature::presence_auth(KEY, SECRET, &self.socket_id, channel, &channel_data);
        self.send(json!({"event":"pusher:subscribe","data":{
            "channel":channel,"auth":auth,"channel_data":channel_data}}))
            .await;
        self.succeeded(channel).await;
    }

    async fn unsubscribe(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:unsubscribe","data":{"channel":channel}}))
            .await;
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's close arrives, so it has let go of us.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(DEADLINE, self.ws.next()).await {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_with_delayed_leaves() {
    let mut hooks = receiver(0).await;
    let server = start(&hooks.url, false).await;

    let mut a = Client::connect(server.addr).await;
    a.subscribe_presence("presence-room", "1").await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_occupied","channel":"presence-room"})
    );
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"member_added","channel":"presence-room","user_id":"1"})
    );
    let mut b = Client::connect(server.addr).await;
    b.subscribe_presence("presence-room", "2").await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"member_added","channel":"presence-room","user_id":"2"})
    );

    b.send(json!({"event":"client-typing","channel":"presence-room","data":{"typing":true}}))
        .await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"client_event","channel":"presence-room","event":"client-typing",
            "data":"{\"typing\":true}","socket_id":b.socket_id,"user_id":"2"})
    );

    // B leaves: told about 3 s later.
    let left = Instant::now();
    b.close().await;
    let (event, hook) = hooks.single().await;
    assert_eq!(
        event,
        json!({"name":"member_removed","channel":"presence-room","user_id":"2"})
    );
    let waited = hook.at - left;
    assert!(
        waited >= Duration::from_millis(2500),
        "told after {waited:?}"
    );

    // A leaves: the channel is vacated.
    a.unsubscribe("presence-room").await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"member_removed","channel":"presence-room","user_id":"1"})
    );
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_vacated","channel":"presence-room"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comebacks_within_the_delay_are_not_told() {
    let mut hooks = receiver(0).await;
    let server = start(&hooks.url, false).await;

    let mut marker = Client::connect(server.addr).await;
    marker.subscribe("marker").await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_occupied","channel":"marker"})
    );
    let mut a = Client::connect(server.addr).await;
    a.subscribe_presence("presence-s", "1").await;
    assert_eq!(hooks.single().await.0["name"], "channel_occupied");
    assert_eq!(hooks.single().await.0["name"], "member_added");

    // A leaves and comes back on the same connection (frames of one
    // connection are handled in order).
    a.unsubscribe("presence-s").await;
    a.subscribe_presence("presence-s", "1").await;
    // The marker leaves after that; its vacate is due after A's would be.
    marker.unsubscribe("marker").await;
    // So the next thing told is the marker's vacate: nothing of presence-s.
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_vacated","channel":"marker"})
    );

    // A real leave is still told.
    a.close().await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"member_removed","channel":"presence-s","user_id":"1"})
    );
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_vacated","channel":"presence-s"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried() {
    let mut hooks = receiver(2).await;
    let server = start(&hooks.url, false).await;
    let mut a = Client::connect(server.addr).await;
    a.subscribe("news").await;

    let first = hooks.next().await;
    assert_eq!(first.status, 500);
    assert_eq!(
        first.events(),
        [json!({"name":"channel_occupied","channel":"news"})]
    );
    let second = hooks.next().await;
    assert_eq!(second.status, 500);
    let third = hooks.next().await;
    assert_eq!(third.status, 200);
    // The same request each time, after a growing wait.
    for retry in [&second, &third] {
        assert_eq!(retry.raw, first.raw);
        assert_eq!(retry.signature, first.signature);
    }
    assert!(second.at - first.at >= Duration::from_millis(900));
    assert!(third.at - second.at >= Duration::from_millis(1800));

    // Later events follow.
    a.subscribe("sport").await;
    assert_eq!(
        hooks.single().await.0,
        json!({"name":"channel_occupied","channel":"sport"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_groups_up_to_20_events() {
    let mut hooks = receiver(0).await;
    let server = start(&hooks.url, true).await;
    let mut a = Client::connect(server.addr).await;
    let channels: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
    for channel in &channels {
        a.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
    }
    for channel in &channels {
        a.succeeded(channel).await;
    }

    let mut occupied = Vec::new();
    while occupied.len() < channels.len() {
        let hook = hooks.next().await;
        let events = hook.events();
        assert!(events.len() <= 20, "{} events", events.len());
        for event in events {
            assert_eq!(event["name"], "channel_occupied", "{event}");
            occupied.push(event["channel"].as_str().expect("channel").to_owned());
        }
    }
    occupied.sort();
    let mut expected = channels.clone();
    expected.sort();
    assert_eq!(occupied, expected);

    // Leaving all at once: 25 vacates due together, sent as 20 + 5.
    a.close().await;
    let mut sizes = Vec::new();
    let mut vacated = 0;
    while vacated < channels.len() {
        let hook = hooks.next().await;
        let events = hook.events();
        assert!(events.iter().all(|e| e["name"] == "channel_vacated"));
        vacated += events.len();
        sizes.push(events.len());
    }
    assert_eq!(sizes, [20, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_what_is_held_at_once() {
    let mut hooks = receiver(0).await;
    let server = start(&hooks.url, false).await;
    let mut a = Client::connect(server.addr).await;
    a.subscribe("news").await;
    assert_eq!(hooks.single().await.0["name"], "channel_occupied");

    // The server closes A (4200) and lets go of the app: the pending vacate
    // is sent then, not 3 s later, and the webhook tasks end.
    let stopping = Instant::now();
    let _ = server.stop.send(());
    tokio::time::timeout(DEADLINE, server.running)
        .await
        .expect("stops in time")
        .expect("task")
        .expect("clean stop");
    let (event, hook) = hooks.single().await;
    assert_eq!(event, json!({"name":"channel_vacated","channel":"news"}));
    let waited = hook.at - stopping;
    assert!(
        waited < Duration::from_millis(2500),
        "told after {waited:?}"
    );
    drop(a);
}
