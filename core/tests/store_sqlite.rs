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
