//! The store conformance suite on PostgreSQL, one fresh schema per test, and
//! what only a shared server database meets: several nodes on one schema,
//! connections killed mid-use, an unreachable server.
//!
//! Needs `TIDINGS_TEST_POSTGRES_URL=postgres://…` (`scripts/test` starts a
//! throwaway server and sets it). Unset, the tests that need a server pass
//! with a notice, unless `CI=true`, where they fail.

#![cfg(all(feature = "testing", feature = "postgres"))]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::store::postgres::PostgresStore;
use tidings::store::{self, Store};
use tidings::{ConversationId, ErrorKind, NewMessage, PageRequest, UserId};

const URL_VAR: &str = "TIDINGS_TEST_POSTGRES_URL";

/// The server's URL, or `None` when the test should be skipped.
fn pg_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{URL_VAR} must name a PostgreSQL server when CI=true")
        }
        _ => {
            // Once, and past the test harness's output capture.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL store tests skipped; set {URL_VAR}=postgres://... to run them"
                );
            });
            None
        }
    }
}

/// A schema name no other test or earlier run uses.
fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

async fn fresh(url: String) -> Arc<dyn Store> {
    Arc::new(
        PostgresStore::connect_with_schema(&url, &fresh_schema())
            .await
            .expect("postgres store"),
    )
}

tidings::store_conformance!(match pg_url() {
    Some(url) => fresh(url),
    None => return,
});

fn user(id: &str) -> UserId {
    UserId::new(id).expect("user")
}

fn conv(a: &str, b: &str) -> ConversationId {
    ConversationId::between(&user(a), &user(b)).expect("conversation")
}

fn msg(from: &str, to: &str, body: &str, client_msg_id: Option<String>) -> NewMessage {
    NewMessage {
        conversation_id: conv(from, to),
        sender_id: user(from),
        body: body.to_owned(),
        client_msg_id,
        created_at: store::now_ms(),
    }
}

/// Asserts a conversation holds seqs 1..=n with ids rising with seq, and
/// one new-message outbox row per message; returns n.
async fn assert_contiguous(store: &dyn Store, c: &ConversationId) -> i64 {
    let stored = store.messages_after(c, 0, 1000).await.expect("after");
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    let n = stored.len() as i64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "gap-free seqs");
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids rise with seq"
    );
    assert_eq!(store.last_seq(c).await.expect("last_seq"), n);
    n
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_storage_error_without_the_password() {
    // Port 1 on loopback refuses at once; no server needed.
    let started = Instant::now();
    let err = store::open("postgres://tidings:hunter2@127.0.0.1:1/chat?password=hunter3")
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::Storage);
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{text}");
    eprintln!("{text}");
}

#[tokio::test]
async fn bad_urls_and_schema_names_are_config_errors() {
    let err = store::open("postgres://127.0.0.1:99999999/x")
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    for bad in ["", "Upper", "a-b", "1st", "pg_x", "x;drop", &"x".repeat(64)] {
        let err = PostgresStore::connect_with_schema("postgres://127.0.0.1:1/x", bad)
            .await
            .err()
            .expect("must fail");
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_on_one_schema_keep_seqs_gap_free_and_retries_single() {
    let Some(url) = pg_url() else { return };
    let schema = fresh_schema();
    // Nodes start together: the migration runs once under its lock.
    let nodes: Vec<Arc<dyn Store>> = futures_util::future::join_all(
        (0..3).map(|_| PostgresStore::connect_with_schema(&url, &schema)),
    )
    .await
    .into_iter()
    .map(|s| Arc::new(s.expect("node")) as Arc<dyn Store>)
    .collect();
    let mut tasks = Vec::new();
    for t in 0..24usize {
        let node = nodes[t % nodes.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for i in 0..15 {
                let (from, to) = if t % 2 == 0 { ("1", "18") } else { ("18", "1") };
                // Also a second conversation, so batches span several.
                let to = if i % 3 == 0 { "2" } else { to };
                let from = if to == "2" { "1" } else { from };
                let a = node
                    .append(msg(from, to, &format!("t{t} m{i}"), None))
                    .await
                    .expect("append");
                created.push(a.message.id);
                // Every node retries the same key at the same time.
                let r = node
                    .append(msg("1", "18", "once", Some(format!("key-{i}"))))
                    .await
                    .expect("retry");
                assert_eq!(r.message.client_msg_id, Some(format!("key-{i}")));
            }
            created
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        for id in t.await.expect("task") {
            assert!(ids.insert(id), "duplicate id {id}");
        }
    }
    let n = assert_contiguous(&*nodes[1], &conv("1", "18")).await;
    let m = assert_contiguous(&*nodes[2], &conv("1", "2")).await;
    assert_eq!(n + m, 24 * 15 + 15, "every send once, every key once");
    let keyed = nodes[0]
        .messages_after(&conv("1", "18"), 0, 1000)
        .await
        .expect("after")
        .into_iter()
        .filter(|m| m.client_msg_id.is_some())
        .count();
    assert_eq!(keyed, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_fail_cleanly_and_recover() {
    let Some(url) = pg_url() else { return };
    let app = fresh_schema();
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect_with_schema(
            &with_param(&url, &format!("application_name={app}")),
            &app,
        )
        .await
        .expect("store"),
    );
    // A durable transport, so that every message writes its outbox row.
    store
        .register_transports(&["broker".to_owned()])
        .await
        .expect("register");
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    let kill = || async {
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .expect("terminate")
            .len()
    };
    let c = conv("1", "18");
    store
        .append(msg("1", "18", "before", None))
        .await
        .expect("append");
    store
        .history(&c, PageRequest::default())
        .await
        .expect("history");
    // Idle pooled and writer connections die: the next call may fail, but
    // only with a clear storage error, and the one after works.
    assert!(
        kill().await >= 2,
        "the writer and a pooled connection were open"
    );
    for _ in 0..2 {
        match store.history(&c, PageRequest::default()).await {
            Ok(page) => assert!(!page.items.is_empty()),
            Err(e) => {
                eprintln!("read after a kill: {e}");
                assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
            }
        }
        match store.append(msg("1", "18", "after a kill", None)).await {
            Ok(a) => assert!(a.created),
            Err(e) => {
                eprintln!("append after a kill: {e}");
                assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
            }
        }
    }
    store
        .history(&c, PageRequest::default())
        .await
        .expect("recovered read");
    store
        .append(msg("1", "18", "recovered", None))
        .await
        .expect("recovered append");

    // Kills in the middle of a stream of appends from many tasks.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..40 {
                let key = format!("k{t}-{i}");
                let sent = msg("18", "1", &key, Some(key.clone()));
                outcomes.push((sent.clone(), store.append(sent).await));
            }
            outcomes
        }));
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        kill().await;
    }
    let mut failed = 0;
    for t in tasks {
        for (sent, outcome) in t.await.expect("task") {
            match outcome {
                Ok(a) => {
                    let stored = store
                        .message(a.message.id)
                        .await
                        .expect("read")
                        .expect("stored");
                    assert_eq!(stored, a.message);
                }
                Err(e) => {
                    if failed == 0 {
                        eprintln!("first failed append: {e}");
                    }
                    failed += 1;
                    assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
                    // An error means nothing was written: the retry stores it now.
                    let retry = store.append(sent).await.expect("retry after a failure");
                    assert!(retry.created, "a failed append was written after all: {e}");
                }
            }
        }
    }
    eprintln!("{failed} of 320 appends failed while connections were killed");
    let n = assert_contiguous(&*store, &c).await;
    assert!(n >= 2 + 320, "{n}");
    let outbox = store.list_outbox(1000).await.expect("outbox");
    assert_eq!(
        outbox.len() as i64,
        n,
        "one new-message row per message, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_during_commit_is_resolved_not_guessed() {
    let Some(url) = pg_url() else { return };
    let schema = fresh_schema();
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect_with_schema(
            &with_param(&url, &format!("application_name={schema}")),
            &schema,
        )
        .await
        .expect("store"),
    );
    // A durable transport, so that every message writes its outbox row.
    store
        .register_transports(&["broker".to_owned()])
        .await
        .expect("register");
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    store
        .append(msg("1", "18", "first", None))
        .await
        .expect("append");
    // Make COMMIT take a while (a deferred trigger, once per transaction).
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION {schema}.slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_setting('tidings_test.slept', true) IS DISTINCT FROM 'yes' THEN
                     PERFORM set_config('tidings_test.slept', 'yes', true);
                     PERFORM pg_sleep(0.4);
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {schema}.messages
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {schema}.slow_commit();"
        ))
        .await
        .expect("slow commit trigger");
    let sending = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(msg("1", "18", "during commit", Some("k".into())))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND query = 'COMMIT' AND state = 'active'",
            &[&schema],
        )
        .await
        .expect("terminate");
    assert_eq!(killed.len(), 1, "the writer was committing");
    let sent = sending.await.expect("task");
    // The killed COMMIT did not land: the writer found that out and wrote
    // the batch again on a fresh connection.
    let sent = sent.expect("append after the commit was killed");
    assert!(sent.created);
    assert_eq!(sent.message.seq, 2);
    admin
        .batch_execute(&format!("DROP TRIGGER slow_commit ON {schema}.messages"))
        .await
        .expect("drop trigger");
    let retry = store
        .append(msg("1", "18", "during commit", Some("k".into())))
        .await
        .expect("retry");
    assert!(!retry.created);
    assert_eq!(retry.message, sent.message);
    assert_eq!(assert_contiguous(&*store, &conv("1", "18")).await, 2);
    assert_eq!(store.list_outbox(10).await.expect("outbox").len(), 2);
}

#[tokio::test]
async fn search_finds_words_inside_addresses_numbers_and_paths() {
    let Some(url) = pg_url() else { return };
    let store = fresh(url).await;
    for body in [
        "mail bob@example.com today",
        "pi is 3.14",
        "see /usr/lib/tidings or snake_case",
    ] {
        store
            .append(msg("1", "18", body, None))
            .await
            .expect("append");
    }
    let bodies =
        |found: Vec<tidings::Message>| found.into_iter().map(|m| m.body).collect::<Vec<_>>();
    let search = |q: &'static str| {
        let store = store.clone();
        async move { bodies(store.search(&user("18"), q, 10).await.expect("search")) }
    };
    assert_eq!(search("example").await, ["mail bob@example.com today"]);
    assert_eq!(search("14").await, ["pi is 3.14"]);
    assert_eq!(
        search("LIB case").await,
        ["see /usr/lib/tidings or snake_case"]
    );
    assert!(search("exam").await.is_empty(), "whole words only");
}

#[tokio::test]
async fn a_body_postgres_cannot_store_fails_alone() {
    let Some(url) = pg_url() else { return };
    let store = fresh(url).await;
    let (bad, good) = tokio::join!(
        store.append(msg("1", "18", "nul \0 inside", None)),
        store.append(msg("1", "18", "fine", None)),
    );
    assert_eq!(bad.expect_err("NUL").kind(), ErrorKind::InvalidArgument);
    assert_eq!(good.expect("append").message.seq, 1);
}

#[tokio::test]
async fn store_open_routes_postgres_urls() {
    let Some(url) = pg_url() else { return };
    let schema = fresh_schema();
    let first = PostgresStore::connect_with_schema(&url, &schema)
        .await
        .expect("store");
    first
        .append(msg("1", "18", "hello", None))
        .await
        .expect("append");
    // The same schema through store::open and libpq's `options`.
    let opened = store::open(&with_param(
        &url,
        &format!("options=-csearch_path%3D{schema}"),
    ))
    .await
    .expect("open");
    assert_eq!(opened.backend(), "postgres");
    assert_eq!(
        opened.last_seq(&conv("1", "18")).await.expect("last_seq"),
        1
    );
}
