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
    assert_eq!(store.claim_outbox(0, 10).await.expect("claim").len(), 1);
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
