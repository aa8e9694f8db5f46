//! The SIGKILL test's three roles (driven by `scripts/kill-test`):
//!
//! - `burst endpoint ADDR EVENT_LOG`: a Pusher-compatible `batch_events`
//!   endpoint that appends every accepted event to EVENT_LOG as a JSON line;
//! - `burst send STORE PUSHER_URLS TASKS PER_TASK ACK_LOG`: many tasks send
//!   through an engine delivering to those endpoints (comma-separated: each
//!   is a transport of its own, with its own progress); each acknowledged
//!   send is appended to ACK_LOG before the next (this process gets
//!   SIGKILLed);
//! - `burst verify STORE PUSHER_URLS ACK_LOG EVENT_LOGS`: reopens the store,
//!   lets the outbox deliver what the killed process left, and checks that
//!   every acknowledged message is stored exactly once, seqs are gap-free,
//!   and every stored message was delivered to every endpoint (one event
//!   log each, comma-separated, in the order of the URLs), first deliveries
//!   in seq order per conversation.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tidings::{Engine, EngineConfig, Message, SendRequest, TransportConfig};

const CONVERSATIONS: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["endpoint", addr, log] => endpoint(addr, log).await,
        ["send", store, url, tasks, per, acks] => {
            send(store, url, tasks.parse()?, per.parse()?, acks).await
        }
        ["verify", store, url, acks, events] => verify(store, url, acks, events).await,
        _ => bail!("usage: burst endpoint ADDR LOG | send STORE URL TASKS PER ACKS | verify STORE URL ACKS EVENTS"),
    }
}

fn engine_config(store: &str, urls: &str) -> EngineConfig {
    EngineConfig {
        store: store.to_owned(),
        transports: urls.split(',').map(TransportConfig::pusher).collect(),
        ..EngineConfig::default()
    }
}

async fn endpoint(addr: &str, log: &str) -> Result<()> {
    use axum::routing::post;
    let file = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?,
    ));
    let app = axum::Router::new().route(
        "/apps/{id}/batch_events",
        post(move |body: axum::body::Bytes| {
            let file = file.clone();
            async move {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, "bad json");
                };
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                for e in v["batch"].as_array().into_iter().flatten() {
                    let _ = writeln!(f, "{e}");
                }
                let _ = f.flush();
                (axum::http::StatusCode::OK, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn send(store: &str, url: &str, tasks: usize, per: usize, acks: &str) -> Result<()> {
    let engine = Engine::open(engine_config(store, url)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acks)?;
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(line) = rx.blocking_recv() {
            // One write + flush per ack: what is in the log was acknowledged.
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
    });
    let mut handles = Vec::new();
    for t in 0..tasks {
        let engine = engine.clone();
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let c = (t + i) % CONVERSATIONS;
                let client_id = format!("t{t}-{i}");
                let request = SendRequest::to(
                    format!("{}", 2 * c + 1),
                    format!("{}", 2 * c + 2),
                    format!("burst {client_id}"),
                )
                .client_msg_id(client_id.clone());
                match engine.send(request).await {
                    Ok(sent) => {
                        let _ = tx.send(format!("{client_id} {}", sent.message.id));
                    }
                    Err(e) => eprintln!("send {client_id}: {e}"),
                }
            }
        }));
    }
    drop(tx);
    for h in handles {
        h.await?;
    }
    writer.await?;
    engine.shutdown().await;
    Ok(())
}

async fn verify(store: &str, url: &str, acks: &str, events: &str) -> Result<()> {
    let engine = Engine::open(engine_config(store, url)).await?;
    // Let the outbox deliver what the killed process left behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending = engine.pending_deliveries(1000).await?;
        if pending.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{} events still pending after 60 s; first: {:?}",
            pending.len(),
            pending[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stored: HashMap<String, Message> = HashMap::new();
    let mut per_conv: HashMap<String, Vec<i64>> = HashMap::new();
    for c in 0..CONVERSATIONS {
        let conv = format!("{}-{}", 2 * c + 1, 2 * c + 2);
        let mut after = 0;
        loop {
            let page = engine.messages_after(&conv, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for m in page {
                per_conv.entry(conv.clone()).or_default().push(m.seq);
                let key = m
                    .client_msg_id
                    .clone()
                    .context("burst messages carry a client id")?;
                ensure!(
                    stored.insert(key.clone(), m).is_none(),
                    "client id {key} stored twice"
                );
            }
        }
    }
    for (conv, seqs) in &per_conv {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        ensure!(seqs == &expected, "seqs of {conv} have a gap or duplicate");
    }
    let acked = std::fs::read_to_string(acks)?;
    let mut acked_count = 0;
    for line in acked.lines() {
        let Some((client_id, id)) = line.split_once(' ') else {
            continue;
        };
        let m = stored
            .get(client_id)
            .with_context(|| format!("acknowledged {client_id} is not stored"))?;
        ensure!(
            m.id.to_string() == id,
            "{client_id}: acknowledged id {id}, stored {}",
            m.id
        );
        acked_count += 1;
    }
    // Deliveries, to each endpoint: every stored message, first
    // deliveries in seq order.
    let logs: Vec<&str> = events.split(',').collect();
    for log in &logs {
        let mut seen = HashSet::new();
        let mut delivered: HashMap<String, Vec<i64>> = HashMap::new();
        for line in std::fs::read_to_string(log)?.lines() {
            let e: serde_json::Value = serde_json::from_str(line)?;
            if e["name"] != "new-message" {
                continue;
            }
            let m: Message = serde_json::from_str(e["data"].as_str().unwrap_or("null"))?;
            if seen.insert(m.id) {
                delivered
                    .entry(m.conversation_id.to_string())
                    .or_default()
                    .push(m.seq);
            }
        }
        for (conv, seqs) in &per_conv {
            let got = delivered.get(conv).cloned().unwrap_or_default();
            ensure!(
                &got == seqs,
                "{log}: {conv}: delivered {} of {} messages, or out of order",
                got.len(),
                seqs.len()
            );
        }
    }
    engine.shutdown().await;
    println!(
        "verified: {acked_count} acknowledged, {} stored exactly once, all delivered to each of {} transports in seq order per conversation",
        stored.len(),
        logs.len()
    );
    Ok(())
}
