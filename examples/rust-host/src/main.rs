//! A Rust host that embeds tidings and chooses at run time how messages
//! travel: `--transport broker` (an in-process Pusher-compatible server
//! that pusher-js connects to), `--transport pusher=URL` (the Pusher HTTP
//! API of Pusher itself or of a `tidings serve` elsewhere), `--transport
//! polling` (the in-memory log a long-poll reads), several at once.
//!
//! ```sh
//! cargo run -p tidings-rust-host -- --transport polling "Hello teacher"
//! cargo run -p tidings-rust-host -- --transport pusher=http://KEY:SECRET@127.0.0.1:6001/apps/1 "Hi"
//! cargo run -p tidings-rust-host -- --transport broker --serve "Hi"   # then open http://127.0.0.1:6002/
//! ```
//!
//! It sends each MESSAGE from `--from` to `--to`, then reports for every
//! message whether its events left the outbox, and what the polling log
//! holds. Without `--transport`, `TIDINGS_PUSHER_URL` picks the Pusher
//! transport, else polling.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::{Engine, EngineConfig, SendRequest, TransportConfig};

#[derive(Parser)]
#[command(about = "Embed tidings and pick its transports at run time")]
struct Args {
    /// `sqlite://PATH`, `postgres://…` or `memory:`.
    #[arg(long, default_value = "memory:")]
    store: String,
    /// `broker`, `polling` or `pusher=URL`; repeat for several.
    #[arg(long = "transport", value_name = "KIND[=URL]")]
    transports: Vec<String>,
    /// Where the in-process broker listens (`--transport broker`).
    #[arg(long, default_value = "127.0.0.1:6002")]
    listen: SocketAddr,
    /// Keep the in-process broker serving after sending, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    #[arg(long, default_value = "1")]
    from: String,
    #[arg(long, default_value = "18")]
    to: String,
    /// Messages to send.
    messages: Vec<String>,
}

/// The transports named on the command line (or the environment).
fn transports(args: &Args) -> Result<(Vec<TransportConfig>, bool)> {
    let mut chosen = Vec::new();
    let mut broker = false;
    for arg in &args.transports {
        match arg.split_once('=') {
            Some(("pusher", url)) => chosen.push(TransportConfig::pusher(url)),
            None if arg == "polling" => chosen.push(TransportConfig::Polling { capacity: 10_000 }),
            None if arg == "broker" => broker = true,
            _ => bail!("unknown transport {arg:?}: use broker, polling or pusher=URL"),
        }
    }
    if chosen.is_empty() && !broker {
        chosen.push(match std::env::var("TIDINGS_PUSHER_URL") {
            Ok(url) => TransportConfig::pusher(url),
            Err(_) => TransportConfig::Polling { capacity: 10_000 },
        });
    }
    Ok((chosen, broker))
}

/// With `broker`, the whole server runs in process and its engine is ours.
async fn open(args: &Args, chosen: Vec<TransportConfig>, broker: bool) -> Result<Opened> {
    if !broker {
        let engine = Engine::open(EngineConfig {
            store: args.store.clone(),
            transports: chosen,
            ..EngineConfig::default()
        })
        .await?;
        return Ok(Opened {
            engine,
            server: None,
        });
    }
    let data_dir = std::env::temp_dir().join(format!("tidings-rust-host-{}", std::process::id()));
    let server = Server::bind(ServeConfig {
        demo: true,
        transports: chosen,
        ..ServeConfig::new(
            args.listen,
            PathBuf::from(&data_dir),
            args.store.clone(),
            vec![AppConfig::new("1", "rust-host-key", "rust-host-secret")],
        )
    })
    .await?;
    let addr = server.local_addr()?;
    println!("broker: ws://{addr}/app/rust-host-key (chat page http://{addr}/, demo sign-in)");
    let engine = server.state().engine.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(Opened {
        engine,
        server: Some((stop, task)),
    })
}

struct Opened {
    engine: Engine,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<tidings::Result<()>>,
    )>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (chosen, broker) = transports(&args)?;
    let names: Vec<String> = chosen
        .iter()
        .map(|t| match t {
            TransportConfig::Pusher { url, .. } => {
                format!("pusher ({})", tidings::store::redact_url(url))
            }
            TransportConfig::Polling { .. } => "polling".to_owned(),
            TransportConfig::Broker => "broker".to_owned(),
        })
        .chain(broker.then(|| "broker".to_owned()))
        .collect();
    println!("transports: {}", names.join(", "));
    let Opened { engine, server } = open(&args, chosen, broker).await?;

    for body in &args.messages {
        let sent = engine
            .send(SendRequest::to(&args.from, &args.to, body))
            .await
            .with_context(|| format!("sending {body:?}"))?;
        let m = &sent.message;
        println!(
            "stored: #{} in {} (id {}): {}",
            m.seq, m.conversation_id, m.id, m.body
        );
    }

    // Each event leaves the outbox once every transport took it; a
    // transport that is down keeps it pending (retried, never lost).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let pending = loop {
        let pending = engine.pending_deliveries(100).await?;
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if pending.is_empty() {
        println!("delivered: every event left the outbox");
    }
    for row in &pending {
        println!(
            "pending: {} on {} after {} attempt(s): {}",
            row.event,
            row.conversation_id,
            row.attempts,
            row.last_error.as_deref().unwrap_or("not tried yet")
        );
    }

    if let Ok(log) = engine.poll(&[], 0, 100, Duration::ZERO).await {
        for e in &log.events {
            println!("polling log #{}: {} on {}", e.cursor, e.event, e.channel);
        }
    }

    match server {
        Some((stop, task)) => {
            if args.serve {
                println!("serving; Ctrl-C stops");
                tokio::signal::ctrl_c().await?;
            }
            let _ = stop.send(());
            task.await??;
        }
        None => engine.shutdown().await,
    }
    Ok(())
}
