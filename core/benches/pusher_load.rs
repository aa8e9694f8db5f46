//! A load generator that speaks the Pusher protocol to any compatible
//! server (tidings, soketi, Sockudo) and reports:
//!
//! - `latency`: trigger-to-delivery p50/p99/max for one subscriber at 500 triggers/s;
//! - `fanout`: delivery latency to 1,000 subscribers of one channel at 20 triggers/s;
//! - `saturate`: server CPU time per delivery (from /proc of `--pid`) under
//!   as many triggers as the server takes;
//! - `idle`: resident memory per idle subscribed connection at 10,000
//!   connections (spread over 127.0.0.x source addresses);
//! - `connects`: handshakes per second;
//! - `cluster-saturate` (with `--urls`): deliveries per second to 3,000
//!   subscribers of one channel spread round-robin over the given nodes,
//!   triggers spread over them too;
//! - `cluster-latency` (with `--urls`): trigger-to-delivery p50/p99 at
//!   500 triggers/s through the first node, for a subscriber on that node
//!   and one on every other node (the cross-node path).
//!
//! ```sh
//! cargo bench -p tidings --bench pusher_load -- --url http://127.0.0.1:6001 \
//!     --app-id 1 --key KEY --secret SECRET --pid PID [--scenario latency,fanout,...]
//! ```
//! The client counts frames cheaply (a substring search for the embedded
//! timestamp) so it is not the bottleneck. `scripts/bench-broker` runs it
//! against tidings and its peers, alternating, and reports medians.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

struct Options {
    host: String,
    port: u16,
    /// Every node, for the cluster scenarios (the first is `host:port`).
    nodes: Vec<(String, u16)>,
    cluster_subscribers: usize,
    app_id: String,
    key: String,
    secret: String,
    pid: Option<u32>,
    scenarios: Vec<String>,
    idle_connections: usize,
}

fn parse_options() -> Options {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port: 6001,
        nodes: Vec::new(),
        cluster_subscribers: 3_000,
        app_id: "1".into(),
        key: "tidings-key".into(),
        secret: String::new(),
        pid: None,
        scenarios: vec![
            "latency".into(),
            "fanout".into(),
            "saturate".into(),
            "idle".into(),
            "connects".into(),
        ],
        idle_connections: 10_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--url" => {
                let rest = value.trim_start_matches("http://");
                let (h, p) = rest
                    .trim_end_matches('/')
                    .split_once(':')
                    .unwrap_or((rest, "80"));
                o.host = h.to_owned();
                o.port = p.parse().expect("port");
            }
            "--urls" => {
                o.nodes = value
                    .split(',')
                    .map(|u| {
                        let rest = u.trim().trim_start_matches("http://").trim_end_matches('/');
                        let (h, p) = rest.split_once(':').unwrap_or((rest, "80"));
                        (h.to_owned(), p.parse().expect("port"))
                    })
                    .collect();
                if let Some((h, p)) = o.nodes.first() {
                    o.host = h.clone();
                    o.port = *p;
                }
            }
            "--subscribers" => o.cluster_subscribers = value.parse().expect("count"),
            "--app-id" => o.app_id = value,
            "--key" => o.key = value,
            "--secret" => o.secret = value,
            "--pid" => o.pid = value.parse().ok(),
            "--scenario" => o.scenarios = value.split(',').map(str::to_owned).collect(),
            "--idle-connections" => o.idle_connections = value.parse().expect("count"),
            "--bench" => {
                i += 1;
                continue;
            }
            _ => {}
        }
        i += 2;
    }
    o
}

fn main() {
    let o = parse_options();
    if o.secret.is_empty() {
        eprintln!("pusher_load: give --url --app-id --key --secret [--pid PID]; nothing to do");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut o = o;
        if o.nodes.is_empty() {
            o.nodes.push((o.host.clone(), o.port));
        }
        let o = Arc::new(o);
        for s in o.scenarios.clone() {
            match s.as_str() {
                "latency" => latency(&o).await,
                "fanout" => fanout(&o).await,
                "saturate" => saturate(&o).await,
                "idle" => idle(&o).await,
                "connects" => connects(&o).await,
                "cluster-saturate" => cluster_saturate(&o).await,
                "cluster-latency" => cluster_latency(&o).await,
                other => eprintln!("unknown scenario {other}"),
            }
        }
    });
}

type Ws = WebSocketStream<TcpStream>;

static SOURCE: AtomicU64 = AtomicU64::new(0);

/// Connects from 127.0.0.x (rotating) to spread ephemeral ports.
async fn connect(o: &Options) -> Ws {
    connect_to(o, &o.host, o.port).await
}

async fn connect_to(o: &Options, host: &str, port: u16) -> Ws {
    let n = SOURCE.fetch_add(1, Ordering::Relaxed);
    let source = Ipv4Addr::new(127, 0, 0, 1 + (n % 200) as u8);
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind");
    let target: SocketAddr = format!("{host}:{port}").parse().expect("address");
    let stream = socket.connect(target).await.expect("connect");
    stream.set_nodelay(true).ok();
    let url = format!(
        "ws://{host}:{port}/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
        o.key
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket handshake");
    // Wait for connection_established.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("connection_established") => break,
            Some(Ok(_)) => continue,
            other => panic!("no handshake: {other:?}"),
        }
    }
    ws
}

async fn subscribe(ws: &mut Ws, channel: &str) {
    ws.send(Message::Text(
        format!(r#"{{"event":"pusher:subscribe","data":{{"auth":"","channel":"{channel}"}}}}"#)
            .into(),
    ))
    .await
    .expect("subscribe");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("subscription_succeeded") => break,
            Some(Ok(_)) => continue,
            other => panic!("no subscription: {other:?}"),
        }
    }
}

/// Microseconds since the bench started, shared by triggers and receivers.
fn now_us(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// The `t` embedded in a frame's data (`\"t\":123`), without parsing JSON.
fn embedded_t(frame: &str) -> Option<u64> {
    let i = frame.find("t\\\":")? + 4;
    let digits: String = frame[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

struct Trigger {
    client: reqwest::Client,
    url: String,
    path: String,
    key: String,
    secret: String,
}

impl Trigger {
    fn new(o: &Options) -> Trigger {
        Trigger::to(o, &o.host, o.port)
    }

    fn to(o: &Options, host: &str, port: u16) -> Trigger {
        let path = format!("/apps/{}/events", o.app_id);
        Trigger {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            url: format!("http://{host}:{port}{path}"),
            path,
            key: o.key.clone(),
            secret: o.secret.clone(),
        }
    }

    async fn send(&self, channel: &str, t: u64) -> bool {
        let data = format!(r#"{{"t":{t}}}"#);
        let body =
            serde_json::json!({"name": "bench", "channels": [channel], "data": data}).to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let params = tidings::signature::sign_request(
            &self.key,
            &self.secret,
            "POST",
            &self.path,
            body.as_bytes(),
            now,
            &[],
        );
        let query: String = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        match self
            .client
            .post(format!("{}?{query}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }
}

/// Reads frames on `ws`, sending each embedded latency (µs) to `out`.
fn receive(mut ws: Ws, start: Instant, out: mpsc::UnboundedSender<u64>, counter: Arc<AtomicU64>) {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                if let Some(sent) = embedded_t(t.as_str()) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = out.send(now_us(start).saturating_sub(sent));
                }
            }
        }
    });
}

fn report_latency(name: &str, mut samples: Vec<u64>, expected: usize) {
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{name}: received {}/{expected}  p50 {} us  p99 {} us  max {} us",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples.last().copied().unwrap_or(0)
    );
}

/// Paced triggers on one channel; latency of every delivery.
async fn paced(o: &Arc<Options>, name: &str, subscribers: usize, rate: u64, triggers: u64) {
    let channel = format!("bench-{name}-{}", rand_id());
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counter = Arc::new(AtomicU64::new(0));
    for _ in 0..subscribers {
        let mut ws = connect(o).await;
        subscribe(&mut ws, &channel).await;
        receive(ws, start, tx.clone(), counter.clone());
    }
    drop(tx);
    let trigger = Arc::new(Trigger::new(o));
    // Warm the HTTP connection pool.
    trigger.send("bench-warmup", 0).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..triggers {
        tick.tick().await;
        let trigger = trigger.clone();
        let channel = channel.clone();
        tokio::spawn(async move { trigger.send(&channel, now_us(start)).await });
    }
    let expected = (subscribers as u64 * triggers) as usize;
    let mut samples = Vec::with_capacity(expected);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while samples.len() < expected {
        tokio::select! {
            s = rx.recv() => match s { Some(s) => samples.push(s), None => break },
            _ = &mut deadline => break,
        }
    }
    report_latency(name, samples, expected);
}

async fn latency(o: &Arc<Options>) {
    paced(o, "latency", 1, 500, 5_000).await;
}

async fn fanout(o: &Arc<Options>) {
    paced(o, "fanout", 1_000, 20, 200).await;
}

/// Server CPU seconds so far (utime + stime) from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn saturate(o: &Arc<Options>) {
    let Some(pid) = o.pid else {
        println!("saturate: needs --pid");
        return;
    };
    let channel = format!("bench-saturate-{}", rand_id());
    let start = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    drop(rx); // latencies are not needed here; only the count
    for _ in 0..1_000 {
        let mut ws = connect(o).await;
        subscribe(&mut ws, &channel).await;
        receive(ws, start, tx.clone(), counter.clone());
    }
    let trigger = Arc::new(Trigger::new(o));
    trigger.send("bench-warmup", 0).await;
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    let received_before = counter.load(Ordering::Relaxed);
    let run_for = Duration::from_secs(5);
    let began = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let trigger = trigger.clone();
        let channel = channel.clone();
        senders.push(tokio::spawn(async move {
            while began.elapsed() < run_for {
                trigger.send(&channel, now_us(start)).await;
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    // Let in-flight deliveries land: wait until the count stops moving.
    let mut last = counter.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counter.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let deliveries = counter.load(Ordering::Relaxed) - received_before;
    println!(
        "saturate: {deliveries} deliveries in {:.1} s ({:.0}/s), server CPU {:.2} s, {:.2} us CPU per delivery",
        began.elapsed().as_secs_f64(),
        deliveries as f64 / began.elapsed().as_secs_f64(),
        cpu,
        cpu * 1e6 / deliveries.max(1) as f64
    );
}

async fn idle(o: &Arc<Options>) {
    let Some(pid) = o.pid else {
        println!("idle: needs --pid");
        return;
    };
    let before = rss_bytes(pid).unwrap_or(0);
    let mut held = Vec::with_capacity(o.idle_connections);
    let (tx, mut rx) = mpsc::channel(256);
    let per_task = o.idle_connections / 50;
    for t in 0..50 {
        let o = o.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..per_task {
                let mut ws = connect(&o).await;
                subscribe(&mut ws, &format!("idle-{t}-{i}")).await;
                if tx.send(ws).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    while let Some(ws) = rx.recv().await {
        held.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(pid).unwrap_or(0);
    println!(
        "idle: {} connections, server RSS {} -> {} KiB, {:.0} bytes per connection",
        held.len(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / held.len().max(1) as f64
    );
    drop(held);
}

async fn connects(o: &Arc<Options>) {
    let total = 5_000;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..total / 50 {
                let ws = connect(&o).await;
                drop(ws);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "connects: {total} handshakes in {:.2} s, {:.0}/s",
        began.elapsed().as_secs_f64(),
        total as f64 / began.elapsed().as_secs_f64()
    );
}

/// 3,000 subscribers of one channel spread over the nodes; triggers from 8
/// senders spread over the nodes too, for 5 s; deliveries per second.
async fn cluster_saturate(o: &Arc<Options>) {
    let channel = format!("bench-cluster-{}", rand_id());
    let start = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    drop(rx);
    for i in 0..o.cluster_subscribers {
        let (host, port) = &o.nodes[i % o.nodes.len()];
        let mut ws = connect_to(o, host, *port).await;
        subscribe(&mut ws, &channel).await;
        receive(ws, start, tx.clone(), counter.clone());
    }
    let triggers: Vec<Arc<Trigger>> = o
        .nodes
        .iter()
        .map(|(h, p)| Arc::new(Trigger::to(o, h, *p)))
        .collect();
    for t in &triggers {
        t.send("bench-warmup", 0).await;
    }
    let received_before = counter.load(Ordering::Relaxed);
    let run_for = Duration::from_secs(5);
    let began = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for s in 0..8 {
        let trigger = triggers[s % triggers.len()].clone();
        let channel = channel.clone();
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            while began.elapsed() < run_for {
                if trigger.send(&channel, now_us(start)).await {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    let mut last = counter.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = counter.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let deliveries = counter.load(Ordering::Relaxed) - received_before;
    let triggered = sent.load(Ordering::Relaxed);
    let expected = triggered * o.cluster_subscribers as u64;
    println!(
        "cluster-saturate: {} nodes, {} subscribers, {triggered} triggers, {deliveries}/{expected} deliveries in {:.1} s ({:.0}/s)",
        o.nodes.len(),
        o.cluster_subscribers,
        began.elapsed().as_secs_f64(),
        deliveries as f64 / began.elapsed().as_secs_f64()
    );
}

/// Triggers at 500/s through the first node; latency seen by a subscriber
/// on each node (the first: same node; the others: across Redis).
async fn cluster_latency(o: &Arc<Options>) {
    let channel = format!("bench-cluster-latency-{}", rand_id());
    let start = Instant::now();
    let mut receivers = Vec::new();
    for (host, port) in &o.nodes {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ws = connect_to(o, host, *port).await;
        subscribe(&mut ws, &channel).await;
        receive(ws, start, tx, Arc::new(AtomicU64::new(0)));
        receivers.push(rx);
    }
    let trigger = Arc::new(Trigger::new(o));
    trigger.send("bench-warmup", 0).await;
    let (rate, triggers) = (500u64, 5_000u64);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for _ in 0..triggers {
        tick.tick().await;
        let trigger = trigger.clone();
        let channel = channel.clone();
        tokio::spawn(async move { trigger.send(&channel, now_us(start)).await });
    }
    for (i, mut rx) in receivers.into_iter().enumerate() {
        let mut samples = Vec::with_capacity(triggers as usize);
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while samples.len() < triggers as usize {
            tokio::select! {
                s = rx.recv() => match s { Some(s) => samples.push(s), None => break },
                _ = &mut deadline => break,
            }
        }
        let name = if i == 0 {
            "cluster-latency same node".to_owned()
        } else {
            format!("cluster-latency node {} (cross-node)", i + 1)
        };
        report_latency(&name, samples, triggers as usize);
    }
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        % 1_000_000
}
