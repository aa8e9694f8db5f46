//! Sends per second into SQLite (and PostgreSQL when
//! `TIDINGS_BENCH_POSTGRES_URL` is set), with 1, 64 and 1,024 concurrent
//! senders, beside the raw ceiling of the same schema measured in the same
//! run.
//!
//! ```sh
//! cargo bench -p tidings --bench sends            # SQLite only
//! TIDINGS_BENCH_POSTGRES_URL=postgres://… cargo bench -p tidings --bench sends
//! TIDINGS_BENCH_ONLY=postgres …                   # only the variants named so
//! TIDINGS_BENCH_ROUNDS=1 …                        # rounds (default 5)
//! scripts/bench-sends                             # beside a baseline commit, alternating
//! ```
//! Rounds alternate between the variants; medians are reported. Each round
//! also prints `round N: NAME: RATE msgs/s` on stderr, which
//! `scripts/bench-sends` collects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::store::{self, Store};
use tidings::{ConversationId, Engine, EngineConfig, NewMessage, SendRequest, UserId};

const ROUNDS: usize = 5;
const SINGLE_SENDS: usize = 5_000;
const CONCURRENT_SENDS: usize = 64 * 1_000;
const SENDERS: usize = 64;
const MANY_SENDERS: usize = 1_024;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

type Variant = (
    &'static str,
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = f64>>>>,
);

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().to_path_buf();
    let mut variants: Vec<Variant> = Vec::new();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fresh_sqlite = {
        let counter = counter.clone();
        move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("sqlite://{}/bench-{n}.db", base.display())
        }
    };
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite raw ceiling (rusqlite, 1000 rows/commit, same schema)",
            Box::new(move || Box::pin(raw_sqlite(f(), 1000))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite raw, 64 rows/commit (one per conversation, as 64 senders)",
            Box::new(move || Box::pin(raw_sqlite(f(), SENDERS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite raw, 1 row/commit (as 1 sender)",
            Box::new(move || Box::pin(raw_sqlite(f(), 1))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite store.append, 1 sender",
            Box::new(move || Box::pin(appends(f(), 1, SINGLE_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite store.append, 64 senders",
            Box::new(move || Box::pin(appends(f(), SENDERS, CONCURRENT_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite engine.send, 64 senders (delivery running)",
            Box::new(move || Box::pin(engine_sends(f(), SENDERS, CONCURRENT_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite engine.send, 64 senders, in-process subscribers only (no outbox row)",
            Box::new(move || Box::pin(engine_sends_live_only(f(), SENDERS, CONCURRENT_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite engine.send, 1 sender (delivery running)",
            Box::new(move || Box::pin(engine_sends(f(), 1, SINGLE_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite engine.send, 1024 senders (delivery running)",
            Box::new(move || Box::pin(engine_sends(f(), MANY_SENDERS, CONCURRENT_SENDS))),
        ));
    }
    {
        let f = fresh_sqlite.clone();
        variants.push((
            "sqlite engine.send, 64 senders, profanity-filter plugin",
            Box::new(move || Box::pin(engine_sends_filtered(f(), SENDERS, CONCURRENT_SENDS))),
        ));
    }
    #[cfg(feature = "postgres")]
    if let Ok(pg) = std::env::var("TIDINGS_BENCH_POSTGRES_URL") {
        let (pg2, pg3, pg4, pg5) = (pg.clone(), pg.clone(), pg.clone(), pg.clone());
        variants.push((
            "postgres raw ceiling (multi-row INSERT, 1000 rows/commit, same schema)",
            Box::new(move || Box::pin(raw_postgres(pg3.clone()))),
        ));
        variants.push((
            "postgres store.append, 1 sender",
            Box::new(move || Box::pin(appends(pg.clone(), 1, SINGLE_SENDS / 5))),
        ));
        variants.push((
            "postgres store.append, 64 senders",
            Box::new(move || Box::pin(appends(pg2.clone(), SENDERS, CONCURRENT_SENDS))),
        ));
        variants.push((
            "postgres engine.send, 1 sender (delivery running)",
            Box::new(move || Box::pin(engine_sends(pg4.clone(), 1, SINGLE_SENDS / 5))),
        ));
        variants.push((
            "postgres engine.send, 64 senders (delivery running)",
            Box::new(move || Box::pin(engine_sends(pg5.clone(), SENDERS, CONCURRENT_SENDS))),
        ));
    }
    if let Ok(only) = std::env::var("TIDINGS_BENCH_ONLY") {
        variants.retain(|(name, _)| name.contains(only.as_str()));
    }
    let rounds = std::env::var("TIDINGS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (name, f)) in variants.iter().enumerate() {
            let rate = f().await;
            eprintln!("round {round}: {name}: {rate:.0} msgs/s");
            results[i].push(rate);
        }
    }
    println!("\nmedian of {rounds} alternating rounds (min / median / max msgs/s):");
    for ((name, _), mut r) in variants.iter().zip(results) {
        r.sort_by(f64::total_cmp);
        println!(
            "  {name:<60} {:>9.0} / {:>9.0} / {:>9.0}",
            r[0],
            r[r.len() / 2],
            r[r.len() - 1]
        );
    }
}

fn new_message(sender: usize, i: usize) -> NewMessage {
    // Each sender talks in its own conversation, as chat users do.
    let a = UserId::new(format!("{}", sender * 2 + 1)).expect("user");
    let b = UserId::new(format!("{}", sender * 2 + 2)).expect("user");
    NewMessage {
        conversation_id: ConversationId::between(&a, &b).expect("conv"),
        sender_id: a,
        body: format!("message {i} from sender {sender}: see you in class tomorrow"),
        client_msg_id: Some(format!("{sender}-{i}-{}", rand_suffix())),
        created_at: store::now_ms(),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn appends(url: String, senders: usize, total: usize) -> f64 {
    let store: Arc<dyn Store> = store::open(&url).await.expect("store");
    let per = total / senders;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let store = store.clone();
        let msgs: Vec<NewMessage> = (0..per).map(|i| new_message(s, i)).collect();
        tasks.push(tokio::spawn(async move {
            for m in msgs {
                store.append(m).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    rate(per * senders, start.elapsed())
}

/// Sends through an engine with a durable transport that takes every event
/// at once (what `tidings serve`'s broker is to the engine): each message
/// writes its outbox row, delivered from memory and acknowledged in batches.
async fn engine_sends(url: String, senders: usize, total: usize) -> f64 {
    let engine = Engine::builder()
        .config(EngineConfig::with_store(url))
        .transport(Arc::new(Accepting))
        .build()
        .await
        .expect("engine");
    send_all(&engine, senders, total).await
}

/// Sends through an engine whose only transport is the in-process one: no
/// outbox row is written.
async fn engine_sends_live_only(url: String, senders: usize, total: usize) -> f64 {
    let engine = Engine::open(EngineConfig::with_store(url))
        .await
        .expect("engine");
    send_all(&engine, senders, total).await
}

/// A durable transport that takes everything.
struct Accepting;

#[async_trait::async_trait]
impl tidings::Transport for Accepting {
    fn name(&self) -> &str {
        "bench-accepting"
    }

    async fn deliver(&self, _: &str, _: &str, _: bytes::Bytes) -> tidings::Result<()> {
        Ok(())
    }
}

/// The same sends through a compiled-in profanity filter; also prints the
/// mean and max time of its `before_send` hook.
async fn engine_sends_filtered(url: String, senders: usize, total: usize) -> f64 {
    let engine = Engine::builder()
        .config(EngineConfig::with_store(url))
        .plugin(
            tidings_plugin::descriptor::<profanity_filter::ProfanityFilter>(),
            serde_json::json!({"words": ["darn", "heck", "tomorrow"]}),
        )
        .build()
        .await
        .expect("engine");
    let rate = send_all(&engine, senders, total).await;
    for status in engine.plugins() {
        for hook in status.hooks.iter().filter(|h| h.calls > 0) {
            eprintln!(
                "  {} {}: {} calls, mean {:.1} us, max {} us",
                status.name,
                hook.hook,
                hook.calls,
                hook.total_us as f64 / hook.calls as f64,
                hook.max_us
            );
        }
    }
    rate
}

async fn send_all(engine: &Engine, senders: usize, total: usize) -> f64 {
    let per = total / senders;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let (a, b) = (format!("{}", s * 2 + 1), format!("{}", s * 2 + 2));
                engine
                    .send(SendRequest::to(
                        a,
                        b,
                        format!("message {i}: see you in class tomorrow"),
                    ))
                    .await
                    .expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = start.elapsed();
    engine.shutdown().await;
    rate(per * senders, elapsed)
}

/// The same rows the store writes per message (message + outbox row, plus a
/// conversation update per group), straight through rusqlite, `per_commit`
/// messages per transaction.
async fn raw_sqlite(url: String, per_commit: usize) -> f64 {
    // Let the store create the schema, then write around it.
    drop(store::open(&url).await.expect("store"));
    let path = url.trim_start_matches("sqlite://").to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .expect("pragmas");
        for s in 0..SENDERS {
            conn.execute(
                "INSERT INTO conversations (key, user_lo, user_hi) VALUES (?1, ?2, ?3)",
                rusqlite::params![format!("{}-{}", s * 2 + 1, s * 2 + 2), "a", "b"],
            )
            .expect("conv");
        }
        let total = if per_commit == 1 {
            SINGLE_SENDS
        } else {
            CONCURRENT_SENDS
        };
        let msgs: Vec<NewMessage> = (0..total).map(|i| new_message(i % SENDERS, i)).collect();
        let start = Instant::now();
        let mut seq = vec![0i64; SENDERS];
        for chunk in msgs.chunks(per_commit).enumerate() {
            let (c, chunk) = chunk;
            conn.execute_batch("BEGIN").expect("begin");
            {
                let mut ins = conn
                    .prepare_cached(
                        "INSERT INTO messages (conversation, seq, sender, body, client_msg_id, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .expect("prepare");
                let mut out = conn
                    .prepare_cached("INSERT INTO outbox (conversation, event, message, pending, queued_at) VALUES (?1, 'new-message', ?2, 1, ?3)")
                    .expect("prepare");
                let mut touched = Vec::with_capacity(chunk.len().min(SENDERS));
                for (j, m) in chunk.iter().enumerate() {
                    let s = (c * per_commit + j) % SENDERS;
                    touched.push(s);
                    seq[s] += 1;
                    ins.execute(rusqlite::params![
                        s as i64 + 1,
                        seq[s],
                        m.sender_id.as_str(),
                        m.body,
                        m.client_msg_id,
                        m.created_at
                    ])
                    .expect("insert");
                    out.execute(rusqlite::params![
                        s as i64 + 1,
                        conn.last_insert_rowid(),
                        m.created_at
                    ])
                    .expect("outbox");
                }
                let mut upd = conn
                    .prepare_cached("UPDATE conversations SET last_seq = ?2, last_at = ?3 WHERE id = ?1")
                    .expect("prepare");
                touched.sort_unstable();
                touched.dedup();
                for s in touched {
                    upd.execute(rusqlite::params![s as i64 + 1, seq[s], 0])
                        .expect("update");
                }
            }
            conn.execute_batch("COMMIT").expect("commit");
        }
        rate(total, start.elapsed())
    })
    .await
    .expect("raw task")
}

/// The same statements the PostgreSQL writer runs per group (messages and
/// outbox rows in one multi-row INSERT, one conversation update), 1,000
/// messages per transaction, straight through tokio-postgres.
#[cfg(feature = "postgres")]
async fn raw_postgres(url: String) -> f64 {
    drop(store::open(&url).await.expect("store"));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    // Fresh conversations each run, so seqs start at 1.
    let run = rand_suffix();
    let mut conversations = Vec::with_capacity(SENDERS);
    for s in 0..SENDERS {
        let row = client
            .query_one(
                "INSERT INTO conversations (key, user_lo, user_hi) VALUES ($1, 'a', 'b') RETURNING id",
                &[&format!("raw-{run}-{s}-{}", std::process::id())],
            )
            .await
            .expect("conversation");
        conversations.push(row.get::<_, i64>(0));
    }
    let msgs: Vec<NewMessage> = (0..CONCURRENT_SENDS)
        .map(|i| new_message(i % SENDERS, i))
        .collect();
    let insert = client
        .prepare(
            "WITH inserted AS (
                INSERT INTO messages (conversation, seq, sender, body, client_msg_id, created_at)
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                RETURNING id, conversation
             )
             INSERT INTO outbox (conversation, event, message, pending, queued_at)
             SELECT conversation, 'new-message', id, 1, 0 FROM inserted ORDER BY id",
        )
        .await
        .expect("prepare");
    let update = client
        .prepare(
            "UPDATE conversations AS c SET last_seq = u.last_seq, last_at = u.last_at
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, last_seq, last_at)
             WHERE c.id = u.id",
        )
        .await
        .expect("prepare");
    let start = Instant::now();
    let mut seq = vec![0i64; SENDERS];
    for (c, chunk) in msgs.chunks(1000).enumerate() {
        let (mut conv, mut seqs, mut senders, mut bodies, mut ids, mut at) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (j, m) in chunk.iter().enumerate() {
            let s = (c * 1000 + j) % SENDERS;
            seq[s] += 1;
            conv.push(conversations[s]);
            seqs.push(seq[s]);
            senders.push(m.sender_id.as_str().to_owned());
            bodies.push(m.body.clone());
            ids.push(m.client_msg_id.clone());
            at.push(m.created_at);
        }
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .execute(&insert, &[&conv, &seqs, &senders, &bodies, &ids, &at])
            .await
            .expect("insert");
        let lasts = vec![0i64; SENDERS];
        client
            .execute(&update, &[&conversations, &seq, &lasts])
            .await
            .expect("update");
        client.batch_execute("COMMIT").await.expect("commit");
    }
    rate(CONCURRENT_SENDS, start.elapsed())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
