//! Delivery benchmarks (issue: pluggable delivery), against an in-process
//! `tidings serve` on loopback:
//!
//! - `transport`: events per second through the Pusher HTTP transport into
//!   the server, 1 and 64 concurrent senders, beside the same sends with no
//!   network transport (the store and outbox alone) in alternating rounds;
//! - `xhr`: trigger-to-delivery latency of the same events at a WebSocket
//!   subscriber and at an `xhr_streaming` subscriber (pusher-js's HTTP
//!   fallback), p50/p99, and the difference;
//! - `hung`: send-to-delivery latency at a broker subscriber (200 sends/s),
//!   p50/p99, on a server whose Pusher mirror accepts connections and never
//!   answers, beside the same server with no mirror, in alternating rounds;
//! - `recovery`: clients offline for `--offline` seconds (default 30) while
//!   100 messages arrive in each of their conversations; each then
//!   reconnects, resubscribes and catches up by seq over the chat API: the
//!   time from reconnecting to holding all 100, in order and without
//!   duplicates (p50/p99 over the trials).
//!
//! ```sh
//! cargo bench -p tidings --bench delivery                      # everything
//! cargo bench -p tidings --bench delivery -- xhr recovery --offline 5
//! cargo bench -p tidings --bench delivery -- hung
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::{signature, Engine, EngineConfig, SendRequest, TransportConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const APP_ID: &str = "77";
const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret-0123456789";
const ROUNDS: usize = 3;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let offline = args
        .iter()
        .position(|a| a == "--offline")
        .and_then(|i| args.get(i + 1))
        .map_or(30, |s| s.parse().expect("--offline SECONDS"));
    let names: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["transport", "xhr", "hung", "recovery"].contains(a))
        .collect();
    let all = names.is_empty();
    runtime.block_on(async {
        if all || names.contains(&"transport") {
            transport().await;
        }
        if all || names.contains(&"xhr") {
            xhr().await;
        }
        if all || names.contains(&"hung") {
            hung().await;
        }
        if all || names.contains(&"recovery") {
            recovery(Duration::from_secs(offline)).await;
        }
    });
}

struct Running {
    addr: std::net::SocketAddr,
    engine: Engine,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn serve(store_in_dir: bool) -> Running {
    serve_with(store_in_dir, Vec::new()).await
}

/// A server with `transports` besides the broker.
async fn serve_with(store_in_dir: bool, transports: Vec<TransportConfig>) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = if store_in_dir {
        format!("sqlite://{}/bench.db", dir.path().display())
    } else {
        "memory:".to_owned()
    };
    let server = Server::bind(ServeConfig {
        demo: true,
        transports,
        ..ServeConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            dir.path(),
            store,
            vec![AppConfig::new(APP_ID, KEY, SECRET)],
        )
    })
    .await
    .expect("bind");
    let addr = server.local_addr().expect("address");
    let engine = server.state().engine.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        engine,
        _stop: stop,
        _dir: dir,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// --------------------------------------------------------------------- hung

/// A Pusher-compatible endpoint that accepts connections and never answers.
async fn hanging_endpoint() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Send-to-delivery latencies (ms) at a broker subscriber, `count` sends
/// paced at `rate` per second, with or without a hung Pusher mirror.
async fn hung_round(with_mirror: bool, count: usize, rate: u64) -> Vec<f64> {
    let transports = if with_mirror {
        let addr = hanging_endpoint().await;
        vec![TransportConfig::pusher(format!(
            "http://{KEY}:{SECRET}@{addr}/apps/{APP_ID}"
        ))]
    } else {
        Vec::new()
    };
    let server = serve_with(false, transports).await;
    let channel = "private-conversation-1-18";
    let (mut ws, socket_id) = ws_connect(server.addr).await;
    ws_subscribe(&mut ws, &socket_id, channel).await;
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(vec![None; count + 1]));
    let sender = {
        let engine = server.engine.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            for i in 1..=count {
                tick.tick().await;
                let at = Instant::now();
                let sent = engine
                    .send(SendRequest::to("1", "18", format!("m{i}")))
                    .await
                    .expect("send");
                sent_at.lock().expect("lock")[sent.message.seq as usize] = Some(at);
            }
        })
    };
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        let frame = next_frame(&mut ws).await;
        if frame["event"] != "new-message" {
            continue;
        }
        let arrived = Instant::now();
        let m: Value = serde_json::from_str(frame["data"].as_str().expect("data")).expect("json");
        let seq = m["seq"].as_u64().expect("seq") as usize;
        // The send returns after the commit, so its instant may be set a
        // moment after the event arrived: wait for it.
        let at = loop {
            if let Some(at) = sent_at.lock().expect("lock")[seq] {
                break at;
            }
            tokio::task::yield_now().await;
        };
        latencies.push(arrived.saturating_duration_since(at).as_secs_f64() * 1e3);
    }
    sender.await.expect("sender");
    latencies
}

async fn hung() {
    const COUNT: usize = 1_000;
    const RATE: u64 = 200;
    let mut rounds: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (i, with_mirror) in [false, true].into_iter().enumerate() {
            let mut l = hung_round(with_mirror, COUNT, RATE).await;
            l.sort_by(f64::total_cmp);
            let (p50, p99) = (percentile(&l, 0.5), percentile(&l, 0.99));
            eprintln!(
                "round {round}: {}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
                if with_mirror {
                    "with a hung Pusher mirror"
                } else {
                    "broker only"
                },
                l[l.len() - 1]
            );
            rounds[i].push((p50, p99));
        }
    }
    println!(
        "\nhung mirror: send to broker subscriber, {COUNT} sends at {RATE}/s, medians of {ROUNDS} alternating rounds"
    );
    for (name, r) in ["broker only", "with a hung Pusher mirror"]
        .iter()
        .zip(&rounds)
    {
        println!(
            "  {name:<28} p50 {:>7.2} ms   p99 {:>7.2} ms",
            median(r.iter().map(|x| x.0).collect()),
            median(r.iter().map(|x| x.1).collect())
        );
    }
}

// ---------------------------------------------------------------- transport

/// Sends `per` messages from each of `senders` tasks; the rate at which
/// their events left the outbox (every transport took them).
async fn pump(engine: &Engine, senders: usize, per: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let (a, b) = (format!("{}", 2 * s + 1), format!("{}", 2 * s + 2));
                engine
                    .send(SendRequest::to(a, b, format!("message {i} of {s}")))
                    .await
                    .expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    while !engine
        .pending_deliveries(1)
        .await
        .expect("outbox")
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (senders * per) as f64 / start.elapsed().as_secs_f64()
}

async fn transport() {
    let server = serve(false).await;
    let url = format!("http://{KEY}:{SECRET}@{}/apps/{APP_ID}", server.addr);
    println!("transport: events/s into tidings serve over the Pusher HTTP API (median of {ROUNDS} alternating rounds)");
    for (senders, per) in [(1usize, 2_000usize), (64, 200)] {
        let (mut through, mut alone) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let pusher = Engine::open(EngineConfig {
                store: "memory:".into(),
                transports: vec![TransportConfig::pusher(url.clone())],
                ..EngineConfig::default()
            })
            .await
            .expect("engine");
            through.push(pump(&pusher, senders, per).await);
            pusher.shutdown().await;
            let local = Engine::open(EngineConfig::with_store("memory:"))
                .await
                .expect("engine");
            alone.push(pump(&local, senders, per).await);
            local.shutdown().await;
        }
        let (t, a) = (median(through), median(alone));
        println!(
            "  {senders:>2} sender(s): {t:>8.0} events/s through the Pusher transport; {a:>8.0}/s with no network transport ({:.2}x)",
            t / a
        );
    }
}

// ---------------------------------------------------------------------- xhr

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn trigger(http: &reqwest::Client, addr: std::net::SocketAddr, channel: &str, data: &str) {
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name": "tick", "channel": channel, "data": data}).to_string();
    let params =
        signature::sign_request(KEY, SECRET, "POST", &path, body.as_bytes(), now_unix(), &[]);
    let url =
        reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), &params).expect("url");
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("trigger");
    assert!(answer.status().is_success(), "trigger: {}", answer.status());
}

async fn ws_connect(addr: std::net::SocketAddr) -> (Ws, String) {
    let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=bench&version=1");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let hello = next_frame(&mut ws).await;
    let data: Value = serde_json::from_str(hello["data"].as_str().expect("data")).expect("json");
    (
        ws,
        data["socket_id"].as_str().expect("socket id").to_owned(),
    )
}

async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => {
                let frame: Value = serde_json::from_str(t.as_str()).expect("json");
                if frame["event"] == "pusher:ping" {
                    let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
                    ws.send(WsMessage::Text(pong.into())).await.expect("pong");
                    continue;
                }
                return frame;
            }
            Some(Ok(WsMessage::Close(frame))) => panic!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

async fn ws_subscribe(ws: &mut Ws, socket_id: &str, channel: &str) {
    let auth = if channel.starts_with("private-") {
        signature::channel_auth(KEY, SECRET, socket_id, channel)
    } else {
        String::new()
    };
    let frame = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .expect("send");
    loop {
        let f = next_frame(ws).await;
        if f["event"] == "pusher_internal:subscription_succeeded" {
            return;
        }
    }
}

/// Microseconds since `origin`, carried in each event's data.
fn stamp(origin: Instant) -> String {
    origin.elapsed().as_micros().to_string()
}

async fn xhr() {
    let server = serve(false).await;
    let addr = server.addr;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let channel = "latency";
    let events = 2_000usize;
    let origin = Instant::now();

    let (mut ws, socket_id) = ws_connect(addr).await;
    ws_subscribe(&mut ws, &socket_id, channel).await;

    // An xhr_streaming session, as pusher-js opens it.
    let base = format!(
        "http://{addr}/pusher/app/{KEY}/123/bench{:04}",
        std::process::id() % 10_000
    );
    let query = "protocol=7&client=js&version=8.6.0";
    let mut stream = http
        .post(format!("{base}/xhr_streaming?{query}"))
        .send()
        .await
        .expect("stream");
    let mut buffer = Vec::new();
    // Up to `o`, past the prelude of heartbeats.
    let mut opened = false;
    let mut lines = Vec::new();
    while !opened {
        let chunk = stream.chunk().await.expect("chunk").expect("open");
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.starts_with(b"o") {
                opened = true;
            } else if line.starts_with(b"a") {
                lines.push(line);
            }
        }
    }
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string();
    let sent = http
        .post(format!("{base}/xhr_send?{query}"))
        .body(serde_json::to_string(&[subscribe]).expect("json"))
        .send()
        .await
        .expect("xhr_send");
    assert!(sent.status().is_success());

    let xhr_task = tokio::spawn(async move {
        let mut got = Vec::with_capacity(events);
        let mut subscribed = false;
        loop {
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if !line.starts_with(b"a") {
                    continue;
                }
                let frames: Vec<String> = serde_json::from_slice(&line[1..]).expect("a[...]");
                for f in frames {
                    let v: Value = serde_json::from_str(&f).expect("frame");
                    if v["event"] == "pusher_internal:subscription_succeeded" {
                        subscribed = true;
                    } else if v["event"] == "tick" {
                        let at = origin.elapsed().as_micros() as f64;
                        let sent: f64 = v["data"].as_str().expect("data").parse().expect("stamp");
                        got.push(at - sent);
                        if got.len() == events {
                            return got;
                        }
                    }
                }
            }
            match stream.chunk().await {
                Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
                _ => panic!(
                    "the stream ended after {} events (subscribed: {subscribed})",
                    got.len()
                ),
            }
        }
    });
    let ws_task = tokio::spawn(async move {
        let mut got = Vec::with_capacity(events);
        while got.len() < events {
            let f = next_frame(&mut ws).await;
            if f["event"] == "tick" {
                let at = origin.elapsed().as_micros() as f64;
                let sent: f64 = f["data"].as_str().expect("data").parse().expect("stamp");
                got.push(at - sent);
            }
        }
        got
    });
    // The xhr subscription is confirmed asynchronously: wait until a probe
    // trigger is seen by the server as having two subscribers.
    loop {
        let path = format!("/apps/{APP_ID}/channels/{channel}");
        let params = signature::sign_request(
            KEY,
            SECRET,
            "GET",
            &path,
            b"",
            now_unix(),
            &[("info".into(), "subscription_count".into())],
        );
        let url =
            reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), &params).expect("url");
        let info: Value = http
            .get(url)
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("json");
        if info["subscription_count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 200 triggers per second, each stamped with its send time.
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    for _ in 0..events {
        ticker.tick().await;
        trigger(&http, addr, channel, &stamp(origin)).await;
    }
    let mut ws_lat = ws_task.await.expect("ws reader");
    let mut xhr_lat = xhr_task.await.expect("xhr reader");
    ws_lat.sort_by(f64::total_cmp);
    xhr_lat.sort_by(f64::total_cmp);
    let (w50, w99) = (percentile(&ws_lat, 0.5), percentile(&ws_lat, 0.99));
    let (x50, x99) = (percentile(&xhr_lat, 0.5), percentile(&xhr_lat, 0.99));
    println!("xhr: trigger-to-delivery of the same {events} events at 200/s (microseconds, from the trigger request's start)");
    println!(
        "  WebSocket      p50 {w50:>6.0}  p99 {w99:>6.0}  max {:>6.0}",
        ws_lat[ws_lat.len() - 1]
    );
    println!(
        "  xhr_streaming  p50 {x50:>6.0}  p99 {x99:>6.0}  max {:>6.0}",
        xhr_lat[xhr_lat.len() - 1]
    );
    println!(
        "  added by xhr_streaming: p50 {:+.0} us, p99 {:+.0} us",
        x50 - w50,
        x99 - w99
    );
}

// ----------------------------------------------------------------- recovery

async fn recovery(offline: Duration) {
    const TRIALS: usize = 100;
    const MISSED: usize = 100;
    let server = serve(true).await;
    let addr = server.addr;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    static USERS: AtomicU64 = AtomicU64::new(1);

    // Each trial's client is online for one message, then goes away.
    let mut trials = Vec::with_capacity(TRIALS);
    for _ in 0..TRIALS {
        let lo = USERS.fetch_add(2, Ordering::Relaxed);
        let (me, peer) = (lo.to_string(), (lo + 1).to_string());
        let channel = format!("private-conversation-{me}-{peer}");
        let (mut ws, socket_id) = ws_connect(addr).await;
        ws_subscribe(&mut ws, &socket_id, &channel).await;
        let first = server
            .engine
            .send(SendRequest::to(&peer, &me, "before going offline"))
            .await
            .expect("send");
        loop {
            let f = next_frame(&mut ws).await;
            if f["event"] == "new-message" {
                break;
            }
        }
        ws.close(None).await.ok();
        trials.push((
            me,
            peer,
            channel,
            first.message.conversation_id.to_string(),
            first.message.seq,
        ));
    }
    // While they are away, 100 messages arrive in each conversation.
    for (me, peer, ..) in &trials {
        for i in 0..MISSED {
            server
                .engine
                .send(SendRequest::to(peer, me, format!("missed {i}")))
                .await
                .expect("send");
        }
    }
    println!(
        "recovery: {TRIALS} clients offline for {offline:?} while {MISSED} messages arrive each"
    );
    tokio::time::sleep(offline).await;

    let mut took = Vec::with_capacity(TRIALS);
    for (me, _peer, channel, conversation, last_seq) in &trials {
        let start = Instant::now();
        let (mut ws, socket_id) = ws_connect(addr).await;
        ws_subscribe(&mut ws, &socket_id, channel).await;
        let url = format!(
            "http://{addr}/v1/conversations/{conversation}/messages?after={last_seq}&limit=100"
        );
        let page: Value = http
            .get(url)
            .header("x-tidings-user", me.as_str())
            .send()
            .await
            .expect("catch-up")
            .json()
            .await
            .expect("json");
        let elapsed = start.elapsed();
        let items = page["items"].as_array().expect("items");
        let seqs: Vec<i64> = items
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        let expected: Vec<i64> = (last_seq + 1..=last_seq + MISSED as i64).collect();
        assert_eq!(seqs, expected, "all {MISSED}, in order");
        let ids: HashSet<i64> = items
            .iter()
            .map(|m| m["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids.len(), MISSED, "no duplicates");
        took.push(elapsed.as_secs_f64() * 1e3);
        ws.close(None).await.ok();
    }
    took.sort_by(f64::total_cmp);
    println!(
        "  reconnect + resubscribe + catch-up of {MISSED}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (all {TRIALS} complete, in order, no duplicates)",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1]
    );
}
