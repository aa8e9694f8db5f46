//! The store conformance suite on SQLite, one temporary file per test, and
//! the failures a user of a file-backed store meets.

use tidings::store::{self, Store};
use tidings::ErrorKind;

async fn fresh() -> std::sync::Arc<dyn Store> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/db/tidings.db", dir.path().display());
    // The directory must outlive the store: leak it for the test's duration.
    std::mem::forget(dir);
    store::open(&url).await.expect("sqlite store")
}

tidings::store_conformance!(fresh());

#[tokio::test]
async fn unreachable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let url = format!("sqlite://{}/tidings.db", file.display());
    let err = store::open(&url).await.err().expect("must fail");
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("notes.db");
    std::fs::write(&file, b"these are my notes, not a database at all").expect("write");
    let err = store::open(&format!("sqlite://{}", file.display()))
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.to_string().contains("notes.db"), "{err}");
    let kept = std::fs::read(&file).expect("read");
    assert_eq!(kept, b"these are my notes, not a database at all");
}

#[tokio::test]
async fn messages_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let conv = tidings::ConversationId::parse("1-18").expect("conv");
    {
        let store = store::open(&url).await.expect("open");
        store
            .register_transports(&["broker".to_owned()])
            .await
            .expect("register");
        let msg = tidings::NewMessage {
            conversation_id: conv.clone(),
            sender_id: tidings::UserId::new("1").expect("user"),
            body: "kept".into(),
            client_msg_id: None,
            created_at: 1,
        };
        store.append(msg).await.expect("append");
    }
    let store = store::open(&url).await.expect("reopen");
    let after = store.messages_after(&conv, 0, 10).await.expect("after");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].body, "kept");
    let pending = store.list_outbox(10).await.expect("outbox");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].pending_for, ["broker"]);
}

/// A transport that records what it was given.
#[derive(Default)]
struct Recorder {
    got: std::sync::Mutex<Vec<(String, String, String)>>,
    arrived: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl tidings::Transport for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn deliver(
        &self,
        channel: &str,
        event: &str,
        payload: bytes::Bytes,
    ) -> tidings::Result<()> {
        self.got.lock().expect("lock").push((
            channel.to_owned(),
            event.to_owned(),
            String::from_utf8_lossy(&payload).into_owned(),
        ));
        self.arrived.notify_waiters();
        Ok(())
    }
}

/// A database written by the schema before delivery v2 (migrations 1-3)
/// opens, delivers its pending rows to a transport that registers, keeps a
/// refused row refused, and reports a row whose message is gone instead of
/// delivering it empty.
#[tokio::test]
async fn a_database_from_before_delivery_v2_delivers_its_pending_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        for sql in [
            include_str!("../src/store/migrations/sqlite/0001_init.sql"),
            include_str!("../src/store/migrations/sqlite/0002_outbox_refused.sql"),
            include_str!("../src/store/migrations/sqlite/0003_outbox_lease.sql"),
        ] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO conversations (id, key, user_lo, user_hi, last_seq, last_at)
                 VALUES (1, '1-18', '1', '18', 2, 5);
             INSERT INTO messages (id, conversation, seq, sender, body, created_at)
                 VALUES (1, 1, 1, '1', 'still pending', 4), (2, 1, 2, '18', 'refused one', 5);
             INSERT INTO outbox (id, conversation, event, message) VALUES (1, 1, 'new-message', 1);
             INSERT INTO outbox (id, conversation, event, message, refused, last_error)
                 VALUES (2, 1, 'new-message', 2, 1, 'pusher: 413');
             INSERT INTO outbox (id, conversation, event, message) VALUES (3, 1, 'new-message', 99);",
        )
        .expect("old rows");
    }
    let recorder = std::sync::Arc::new(Recorder::default());
    let engine = tidings::Engine::builder()
        .config(tidings::EngineConfig::with_store(format!(
            "sqlite://{}",
            path.display()
        )))
        .transport(recorder.clone())
        .build()
        .await
        .expect("engine on the old database");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let arrived = recorder.arrived.notified();
        let listed = engine.pending_deliveries(10).await.expect("outbox");
        if !recorder.got.lock().expect("lock").is_empty() && listed.iter().all(|r| r.refused) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pending row was never delivered: {listed:?}"
        );
        // Woken by a delivery; the outbox is looked at again at least every 50 ms.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), arrived).await;
    }
    let got = recorder.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "private-conversation-1-18");
    assert!(got[0].2.contains("still pending"), "{got:?}");
    let listed = engine.pending_deliveries(10).await.expect("outbox");
    let ids: Vec<i64> = listed.iter().map(|r| r.id).collect();
    assert_eq!(ids, [2, 3], "{listed:?}");
    assert!(listed.iter().all(|r| r.refused && r.pending_for.is_empty()));
    assert_eq!(listed[0].last_error.as_deref(), Some("pusher: 413"));
    assert!(
        listed[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("message 99")),
        "{listed:?}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn unknown_url_options_are_refused() {
    let err = store::open("sqlite://x.db?journal=off")
        .await
        .err()
        .expect("fail");
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = store::open("mysql://localhost/x")
        .await
        .err()
        .expect("fail");
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// Two stores on one file (a server and a command-line process): each
/// writer notices the other's commits, so seqs stay consecutive and no
/// append fails.
#[tokio::test]
async fn two_processes_on_one_file_keep_seqs_consecutive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/shared.db", dir.path().display());
    let a = store::open(&url).await.expect("open a");
    let b = store::open(&url).await.expect("open b");
    let conv = tidings::ConversationId::parse("1-18").expect("conv");
    for i in 0..20 {
        let store = if i % 3 == 0 { &b } else { &a };
        let sent = store
            .append(tidings::NewMessage {
                conversation_id: conv.clone(),
                sender_id: tidings::UserId::new("1").expect("user"),
                body: format!("m{i}"),
                client_msg_id: None,
                created_at: i,
            })
            .await
            .expect("append");
        assert_eq!(sent.message.seq, i + 1);
    }
    assert_eq!(a.last_seq(&conv).await.expect("last seq"), 20);
}

/// The database, its -wal and -shm, and the directories tidings creates are
/// readable by their owner only.
#[cfg(unix)]
#[tokio::test]
async fn a_new_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("data/db/tidings.db");
    let store = store::open(&format!("sqlite://{}", file.display()))
        .await
        .expect("sqlite store");
    let message = tidings::NewMessage {
        conversation_id: tidings::ConversationId::parse("1-18").expect("conversation"),
        sender_id: tidings::UserId::new("1").expect("user"),
        body: "hello".into(),
        client_msg_id: None,
        created_at: 1,
    };
    store.append(message).await.expect("append");
    assert_eq!(mode(&file), 0o600);
    for side in ["tidings.db-wal", "tidings.db-shm"] {
        let side = dir.path().join("data/db").join(side);
        assert!(side.exists(), "{} should exist in WAL mode", side.display());
        assert_eq!(mode(&side), 0o600, "{}", side.display());
    }
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data/db")), 0o700);
    drop(store);

    // An existing database keeps the mode its owner gave it.
    let shared = dir.path().join("shared.db");
    std::fs::write(&shared, b"").expect("write");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let store = store::open(&format!("sqlite://{}", shared.display()))
        .await
        .expect("sqlite store");
    drop(store);
    assert_eq!(mode(&shared), 0o640);
}
