//! The shared conformance suite every [`Store`] backend runs unchanged.
//!
//! ```ignore
//! tidings::store_conformance!(async { tidings::store::open("memory:").await.unwrap() });
//! ```
//! expands to one `#[tokio::test]` per behaviour; the expression is
//! evaluated afresh for each test and must give an empty store.

use std::collections::HashSet;
use std::sync::Arc;

use super::{LeaseRequest, MessageChange, OutboxItem, OutboxRow, Store, TransportSlot};
use crate::domain::{ConversationId, Message, NewMessage, PageRequest, UserId};
use crate::error::ErrorKind;
use crate::event;

/// Generates the suite for a backend.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store_conformance!(@tests $factory;
            sends_get_consecutive_seqs_newest_first,
            concurrent_sends_have_no_gap_and_no_duplicate,
            retries_return_the_first_message,
            racing_retries_store_one_message,
            pagination_edges,
            large_and_non_ascii_bodies_round_trip,
            messages_after_catches_up_in_order,
            read_marks_only_move_forward,
            inbox_lists_newest_activity_first_with_unread_counts,
            search_finds_words_only_in_the_users_conversations,
            edits_deletes_and_reactions_follow_the_rules,
            outbox_rows_are_claimed_in_order_and_acked,
            outbox_leases_give_each_conversation_one_owner,
            outbox_rows_wait_for_each_registered_transport,
            commit_sinks_hear_every_commit_in_order,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::store::Store> = $factory.await;
                $crate::store::conformance::$name(store).await;
            }
        )*
    };
}

fn user(id: &str) -> UserId {
    UserId::new(id).expect("valid test user id")
}

fn conv(a: &str, b: &str) -> ConversationId {
    ConversationId::between(&user(a), &user(b)).expect("valid test conversation")
}

fn msg(from: &str, to: &str, body: &str, client_msg_id: Option<&str>) -> NewMessage {
    NewMessage {
        conversation_id: conv(from, to),
        sender_id: user(from),
        body: body.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        created_at: super::now_ms(),
    }
}

async fn send(store: &dyn Store, from: &str, to: &str, body: &str) -> Message {
    store
        .append(msg(from, to, body, None))
        .await
        .expect("append")
        .message
}

/// Registers one durable transport, so that outbox rows are written.
async fn registered(store: &dyn Store) -> TransportSlot {
    store
        .register_transports(&["conformance".to_owned()])
        .await
        .expect("register")[0]
}

/// The rows `slot` still owes, leased (briefly) to one inspecting owner.
async fn pending(store: &dyn Store, slot: TransportSlot, max: u32) -> Vec<OutboxItem> {
    lease(
        store,
        "inspector",
        slot,
        max,
        std::time::Duration::from_millis(1),
    )
    .await
}

async fn lease(
    store: &dyn Store,
    owner: &str,
    slot: TransportSlot,
    max: u32,
    lease: std::time::Duration,
) -> Vec<OutboxItem> {
    store
        .lease_outbox(LeaseRequest {
            owner,
            slot,
            max,
            lease,
            min_age: std::time::Duration::ZERO,
        })
        .await
        .expect("lease")
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

pub async fn sends_get_consecutive_seqs_newest_first(store: Arc<dyn Store>) {
    for body in ["one", "two", "three"] {
        send(&*store, "1", "18", body).await;
    }
    let other = send(&*store, "2", "18", "elsewhere").await;
    assert_eq!(other.seq, 1, "seq is per conversation");
    let page = store
        .history(&conv("1", "18"), PageRequest::default())
        .await
        .expect("history");
    assert_eq!(seqs(&page.items), [3, 2, 1]);
    assert_eq!(page.items[0].body, "three");
    assert_eq!(page.items[0].sender_id, user("1"));
    assert_eq!(page.items[0].conversation_id.as_str(), "1-18");
    assert_eq!(page.next_before, None);
    assert_eq!(store.last_seq(&conv("18", "1")).await.expect("last_seq"), 3);
    let by_id = store.message(page.items[1].id).await.expect("message");
    assert_eq!(by_id.as_ref(), Some(&page.items[1]));
    assert_eq!(store.message(i64::MAX).await.expect("message"), None);
}

pub async fn concurrent_sends_have_no_gap_and_no_duplicate(store: Arc<dyn Store>) {
    const TASKS: usize = 32;
    const EACH: usize = 20;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let from = if t % 2 == 0 { "1" } else { "18" };
                let to = if t % 2 == 0 { "18" } else { "1" };
                let m = store
                    .append(msg(from, to, &format!("task {t} msg {i}"), None))
                    .await
                    .expect("append");
                assert!(m.created);
                seqs.push(m.message.seq);
            }
            // One task's own sends are acknowledged in order.
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=(TASKS * EACH) as i64).collect();
    assert_eq!(all, expected);
    let stored = store
        .messages_after(&conv("1", "18"), 0, 1000)
        .await
        .expect("after");
    assert_eq!(seqs(&stored), expected);
    let ids: HashSet<i64> = stored.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), TASKS * EACH, "message ids are unique");
}

pub async fn retries_return_the_first_message(store: Arc<dyn Store>) {
    let first = store
        .append(msg("1", "18", "hello", Some("c-1")))
        .await
        .expect("append");
    assert!(first.created);
    let retry = store
        .append(msg("1", "18", "hello again", Some("c-1")))
        .await
        .expect("retry");
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    assert_eq!(store.last_seq(&conv("1", "18")).await.expect("last_seq"), 1);
    // The same key in another conversation is another message.
    let elsewhere = store
        .append(msg("1", "19", "hi", Some("c-1")))
        .await
        .expect("append");
    assert!(elsewhere.created);
    // The same key from the other member is a conflict, never their message.
    let err = store
        .append(msg("18", "1", "mine", Some("c-1")))
        .await
        .expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("c-1"), "{err}");
    assert_eq!(store.last_seq(&conv("1", "18")).await.expect("last_seq"), 1);
}

pub async fn racing_retries_store_one_message(store: Arc<dyn Store>) {
    let slot = registered(&*store).await;
    let mut handles = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .append(msg("7", "8", "once", Some("same-key")))
                .await
                .expect("append")
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for h in handles {
        let a = h.await.expect("task");
        created += usize::from(a.created);
        ids.insert(a.message.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(store.last_seq(&conv("7", "8")).await.expect("last_seq"), 1);
    let outbox = pending(&*store, slot, 1000).await;
    assert_eq!(outbox.len(), 1, "one delivery for one message");
}

pub async fn pagination_edges(store: Arc<dyn Store>) {
    let c = conv("1", "18");
    let empty = store
        .history(&c, PageRequest::default())
        .await
        .expect("history");
    assert!(empty.items.is_empty());
    assert_eq!(empty.next_before, None);
    for i in 1..=10 {
        send(&*store, "1", "18", &format!("m{i}")).await;
    }
    let exact = store
        .history(&c, PageRequest::newest(10))
        .await
        .expect("history");
    assert_eq!(seqs(&exact.items), (1..=10).rev().collect::<Vec<_>>());
    assert_eq!(exact.next_before, None, "exactly one page has no next page");
    let first = store
        .history(&c, PageRequest::newest(4))
        .await
        .expect("history");
    assert_eq!(seqs(&first.items), [10, 9, 8, 7]);
    assert_eq!(first.next_before, Some(7));
    let second = store
        .history(&c, PageRequest::before(7, 4))
        .await
        .expect("history");
    assert_eq!(seqs(&second.items), [6, 5, 4, 3]);
    let last = store
        .history(&c, PageRequest::before(3, 4))
        .await
        .expect("history");
    assert_eq!(seqs(&last.items), [2, 1]);
    assert_eq!(last.next_before, None);
    let at_oldest = store
        .history(&c, PageRequest::before(1, 4))
        .await
        .expect("history");
    assert!(at_oldest.items.is_empty());
    assert_eq!(at_oldest.next_before, None);
    let bad = store.history(&c, PageRequest::newest(0)).await;
    assert_eq!(bad.expect_err("limit 0").kind(), ErrorKind::InvalidArgument);
    let bad = store.history(&c, PageRequest::newest(101)).await;
    assert_eq!(
        bad.expect_err("limit 101").kind(),
        ErrorKind::InvalidArgument
    );
}

pub async fn large_and_non_ascii_bodies_round_trip(store: Arc<dyn Store>) {
    let big = "ж".repeat(crate::domain::message::MAX_BODY_BYTES / 2);
    assert_eq!(big.len(), 10 * 1024);
    let texts = [
        big.as_str(),
        "Grüße, 先生! 👩‍🏫 \"quotes\" \\ back\\slash\nnew line",
        "'; DROP TABLE messages; --",
    ];
    for t in texts {
        send(&*store, "1", "18", t).await;
    }
    let stored = store
        .messages_after(&conv("1", "18"), 0, 10)
        .await
        .expect("after");
    let bodies: Vec<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, texts);
}

pub async fn messages_after_catches_up_in_order(store: Arc<dyn Store>) {
    let c = conv("1", "18");
    assert!(store
        .messages_after(&c, 0, 10)
        .await
        .expect("after")
        .is_empty());
    for i in 1..=5 {
        send(&*store, "18", "1", &format!("m{i}")).await;
    }
    assert_eq!(
        seqs(&store.messages_after(&c, 2, 10).await.expect("after")),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(&store.messages_after(&c, 0, 2).await.expect("after")),
        [1, 2]
    );
    assert!(store
        .messages_after(&c, 5, 10)
        .await
        .expect("after")
        .is_empty());
    let bad = store.messages_after(&c, 0, 0).await;
    assert_eq!(bad.expect_err("max 0").kind(), ErrorKind::InvalidArgument);
}

pub async fn read_marks_only_move_forward(store: Arc<dyn Store>) {
    let slot = registered(&*store).await;
    let c = conv("1", "18");
    for i in 1..=4 {
        send(&*store, "1", "18", &format!("m{i}")).await;
    }
    send(&*store, "18", "1", "reply").await;
    let (state, unread) = store.unread(&c, &user("18")).await.expect("unread");
    assert_eq!((state.seq, unread), (0, 4), "own messages are never unread");
    let up = store.mark_read(&c, &user("18"), 2).await.expect("read");
    assert!(up.advanced);
    assert_eq!(up.state.seq, 2);
    let back = store.mark_read(&c, &user("18"), 1).await.expect("read");
    assert!(!back.advanced);
    assert_eq!(back.state.seq, 2, "never moves back");
    let beyond = store.mark_read(&c, &user("18"), 99).await.expect("read");
    assert_eq!(beyond.state.seq, 5, "clamped to the last seq");
    let (_, unread) = store.unread(&c, &user("18")).await.expect("unread");
    assert_eq!(unread, 0);
    let (state, unread) = store.unread(&c, &user("1")).await.expect("unread");
    assert_eq!((state.seq, unread), (0, 1));
    let nothing = store
        .mark_read(&conv("5", "6"), &user("5"), 3)
        .await
        .expect("read");
    assert!(!nothing.advanced);
    assert_eq!(nothing.state.seq, 0);
    let events: Vec<_> = pending(&*store, slot, 1000)
        .await
        .into_iter()
        .filter(|o| o.event == event::MESSAGES_READ)
        .collect();
    assert_eq!(events.len(), 2, "one event per advance");
    let payload: event::MessagesRead = serde_json::from_slice(&events[1].payload).expect("payload");
    assert_eq!(payload.seq, 5);
    assert_eq!(payload.user_id, user("18"));
}

pub async fn inbox_lists_newest_activity_first_with_unread_counts(store: Arc<dyn Store>) {
    send(&*store, "2", "1", "from two").await;
    send(&*store, "3", "1", "from three").await;
    send(&*store, "3", "1", "three again").await;
    // A later message must sort first even within one millisecond.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    send(&*store, "1", "2", "reply to two").await;
    send(&*store, "4", "5", "not mine").await;
    let inbox = store.inbox(&user("1"), 50).await.expect("inbox");
    let order: Vec<&str> = inbox.iter().map(|e| e.conversation_id.as_str()).collect();
    assert_eq!(order, ["1-2", "1-3"]);
    assert_eq!(inbox[0].peer_id, user("2"));
    assert_eq!(inbox[0].last_message.body, "reply to two");
    assert_eq!(inbox[0].unread_count, 1);
    assert_eq!(inbox[1].unread_count, 2);
    store
        .mark_read(&conv("1", "3"), &user("1"), 1)
        .await
        .expect("read");
    let inbox = store.inbox(&user("1"), 1).await.expect("inbox");
    assert_eq!(inbox.len(), 1, "limit applies");
    let inbox = store.inbox(&user("1"), 50).await.expect("inbox");
    assert_eq!(inbox[1].unread_count, 1);
    assert_eq!(inbox[1].last_read_seq, 1);
    assert!(store
        .inbox(&user("99"), 50)
        .await
        .expect("inbox")
        .is_empty());
}

pub async fn search_finds_words_only_in_the_users_conversations(store: Arc<dyn Store>) {
    send(&*store, "1", "18", "Your HOMEWORK is due Friday").await;
    send(&*store, "18", "1", "homework done, привет").await;
    send(&*store, "2", "19", "homework of someone else").await;
    let deleted = send(&*store, "1", "18", "secret homework").await;
    let ids = |found: Vec<Message>| found.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    store
        .change(deleted.id, &user("1"), MessageChange::Delete, 1)
        .await
        .expect("delete");
    let found = store
        .search(&user("1"), "homework", 50)
        .await
        .expect("search");
    assert_eq!(
        ids(found),
        ["homework done, привет", "Your HOMEWORK is due Friday"]
    );
    let found = store
        .search(&user("18"), "Homework due", 50)
        .await
        .expect("search");
    assert_eq!(ids(found), ["Your HOMEWORK is due Friday"]);
    let found = store
        .search(&user("1"), "ПРИВЕТ", 50)
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert!(store
        .search(&user("1"), "someone", 50)
        .await
        .expect("search")
        .is_empty());
    assert!(store
        .search(&user("3"), "homework", 50)
        .await
        .expect("search")
        .is_empty());
    assert!(
        store
            .search(&user("1"), "home", 50)
            .await
            .expect("search")
            .is_empty(),
        "whole words only"
    );
    // An edit after indexing is what search sees.
    let first = store
        .history(&conv("1", "18"), PageRequest::before(2, 1))
        .await
        .expect("history")
        .items
        .remove(0);
    store
        .change(
            first.id,
            &user("1"),
            MessageChange::Edit {
                body: "quiz on Monday".into(),
            },
            2,
        )
        .await
        .expect("edit");
    let found = store
        .search(&user("1"), "homework", 50)
        .await
        .expect("search");
    assert_eq!(ids(found), ["homework done, привет"]);
    let found = store.search(&user("1"), "quiz", 50).await.expect("search");
    assert_eq!(ids(found), ["quiz on Monday"]);
    let err = store.search(&user("1"), "  ", 50).await.expect_err("empty");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

pub async fn edits_deletes_and_reactions_follow_the_rules(store: Arc<dyn Store>) {
    let slot = registered(&*store).await;
    let m = send(&*store, "1", "18", "original").await;
    let (one, teacher, stranger) = (user("1"), user("18"), user("5"));
    let edit = |body: &str| MessageChange::Edit { body: body.into() };
    let err = store
        .change(m.id, &teacher, edit("hijack"), 10)
        .await
        .expect_err("not the sender");
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    let err = store
        .change(i64::MAX, &one, edit("x"), 10)
        .await
        .expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let edited = store
        .change(m.id, &one, edit("fixed"), 10)
        .await
        .expect("edit");
    assert_eq!(
        (edited.body.as_str(), edited.edited_at),
        ("fixed", Some(10))
    );
    let react = |e: &str| MessageChange::React { emoji: e.into() };
    store
        .change(m.id, &teacher, react("👍"), 11)
        .await
        .expect("react");
    store
        .change(m.id, &one, react("🎉"), 12)
        .await
        .expect("react");
    let replaced = store
        .change(m.id, &teacher, react("❤️"), 13)
        .await
        .expect("react");
    let listed: Vec<(&str, &str)> = replaced
        .reactions
        .iter()
        .map(|r| (r.user_id.as_str(), r.emoji.as_str()))
        .collect();
    assert_eq!(listed, [("1", "🎉"), ("18", "❤️")], "one per user");
    let err = store
        .change(m.id, &stranger, react("👎"), 14)
        .await
        .expect_err("not a member");
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    let unreacted = store
        .change(m.id, &one, MessageChange::Unreact, 15)
        .await
        .expect("unreact");
    assert_eq!(unreacted.reactions.len(), 1);
    let stored = store.message(m.id).await.expect("message").expect("exists");
    assert_eq!(stored, unreacted, "what change returns is what is stored");
    let err = store
        .change(m.id, &teacher, MessageChange::Delete, 16)
        .await
        .expect_err("not the sender");
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    let deleted = store
        .change(m.id, &one, MessageChange::Delete, 17)
        .await
        .expect("delete");
    assert_eq!(deleted.deleted_at, Some(17));
    assert!(deleted.body.is_empty() && deleted.reactions.is_empty());
    let err = store
        .change(m.id, &one, edit("again"), 18)
        .await
        .expect_err("deleted");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let history = store
        .history(&conv("1", "18"), PageRequest::default())
        .await
        .expect("history");
    assert_eq!(
        history.items,
        [deleted],
        "a deleted message stays as a tombstone"
    );
    let names: Vec<String> = pending(&*store, slot, 1000)
        .await
        .into_iter()
        .map(|o| o.event)
        .collect();
    assert_eq!(
        names,
        [
            event::NEW_MESSAGE,
            event::MESSAGE_EDITED,
            event::REACTION,
            event::REACTION,
            event::REACTION,
            event::REACTION,
            event::MESSAGE_DELETED
        ]
    );
}

pub async fn outbox_rows_are_claimed_in_order_and_acked(store: Arc<dyn Store>) {
    let slot = registered(&*store).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(&*store, "1", "18", &format!("m{i}")).await);
    }
    let claimed = pending(&*store, slot, 3).await;
    assert_eq!(claimed.len(), 3);
    assert!(claimed.windows(2).all(|w| w[0].id < w[1].id));
    for (item, message) in claimed.iter().zip(&sent) {
        assert_eq!(item.event, event::NEW_MESSAGE);
        assert_eq!(item.conversation_id, message.conversation_id);
        let payload: Message = serde_json::from_slice(&item.payload).expect("payload");
        assert_eq!(&payload, message);
    }
    store
        .fail_outbox(
            slot,
            claimed[0].id,
            "pusher: 503 Service Unavailable",
            false,
        )
        .await
        .expect("fail");
    let ids: Vec<i64> = claimed.iter().skip(1).map(|o| o.id).collect();
    store.ack_outbox(slot, &ids).await.expect("ack");
    let listed = store.list_outbox(100).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, claimed[0].id);
    assert_eq!(listed[0].attempts, 1);
    assert_eq!(listed[0].pending_for, ["conformance"]);
    assert_eq!(
        listed[0].last_error.as_deref(),
        Some("pusher: 503 Service Unavailable")
    );
    assert!(!listed[0].refused);
    let again = pending(&*store, slot, 10).await;
    assert_eq!(again.len(), 3, "unacked rows stay pending");
    // A permanent refusal keeps the row, with its reason, out of claims.
    store
        .fail_outbox(
            slot,
            again[1].id,
            "pusher: 413 Request Entity Too Large",
            true,
        )
        .await
        .expect("refuse");
    let claimable: Vec<i64> = pending(&*store, slot, 10)
        .await
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(claimable, [again[0].id, again[2].id]);
    let listed = store.list_outbox(100).await.expect("list");
    let refused: Vec<&OutboxRow> = listed.iter().filter(|r| r.refused).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].id, again[1].id);
    assert!(refused[0].pending_for.is_empty());
    assert!(refused[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("413")));
    store.ack_outbox(slot, &claimable).await.expect("ack");
    assert!(pending(&*store, slot, 10).await.is_empty());
    assert_eq!(
        store.list_outbox(100).await.expect("list").len(),
        1,
        "the refused row stays visible"
    );
}

fn ids(items: &[OutboxItem]) -> Vec<i64> {
    items.iter().map(|o| o.id).collect()
}

pub async fn outbox_leases_give_each_conversation_one_owner(store: Arc<dyn Store>) {
    use std::time::Duration;
    const LONG: Duration = Duration::from_secs(600);
    let slot = registered(&*store).await;
    let a1 = send(&*store, "1", "18", "a1").await;
    let b1 = send(&*store, "2", "18", "b1").await;
    let a2 = send(&*store, "1", "18", "a2").await;
    // Node a takes the first two rows: a1 and b1, in id order.
    let mine = lease(&*store, "node-a", slot, 2, LONG).await;
    assert_eq!(mine.len(), 2);
    assert!(mine.windows(2).all(|w| w[0].id < w[1].id));
    let payload: Message = serde_json::from_slice(&mine[0].payload).expect("payload");
    assert_eq!(payload, a1);
    // Node b gets nothing: both conversations have rows node a holds, and
    // a2 must not go out from b while a1 is with a.
    let theirs = lease(&*store, "node-b", slot, 10, LONG).await;
    assert!(theirs.is_empty(), "{:?}", ids(&theirs));
    // Claiming again renews a's own rows and adds the rest of its conversations.
    let again = lease(&*store, "node-a", slot, 10, LONG).await;
    assert_eq!(again.len(), 3);
    assert_eq!(again[2].conversation_id, a2.conversation_id);
    // An acked conversation is free for anyone.
    let b_row: Vec<i64> = again
        .iter()
        .filter(|o| o.conversation_id == b1.conversation_id)
        .map(|o| o.id)
        .collect();
    store.ack_outbox(slot, &b_row).await.expect("ack");
    let b2 = send(&*store, "2", "18", "b2").await;
    let theirs = lease(&*store, "node-b", slot, 10, LONG).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].conversation_id, b2.conversation_id);
    // A refused row is nobody's.
    store
        .fail_outbox(
            slot,
            theirs[0].id,
            "pusher: 413 Request Entity Too Large",
            true,
        )
        .await
        .expect("refuse");
    assert!(lease(&*store, "node-c", slot, 10, LONG).await.is_empty());
    // A graceful stop releases at once.
    store.release_outbox("node-a").await.expect("release");
    let taken = lease(&*store, "node-b", slot, 10, LONG).await;
    assert_eq!(taken.len(), 2, "{:?}", ids(&taken));
    assert!(taken
        .iter()
        .all(|o| o.conversation_id == a1.conversation_id));
    // A lease that runs out (its node died) is taken over.
    store.release_outbox("node-b").await.expect("release");
    let short = lease(&*store, "node-dead", slot, 10, Duration::from_millis(50)).await;
    assert_eq!(short.len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let taken = lease(&*store, "node-c", slot, 10, LONG).await;
        if !taken.is_empty() {
            assert_eq!(ids(&taken), ids(&short));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired lease was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.ack_outbox(slot, &ids(&short)).await.expect("ack");
    assert!(lease(&*store, "node-c", slot, 10, LONG).await.is_empty());
    // A periodic pass for strays skips rows younger than its minimum age.
    send(&*store, "3", "18", "fresh").await;
    let strays = store
        .lease_outbox(LeaseRequest {
            owner: "node-c",
            slot,
            max: 10,
            lease: LONG,
            min_age: Duration::from_secs(600),
        })
        .await
        .expect("lease");
    assert!(strays.is_empty(), "{:?}", ids(&strays));
}

/// Each registered transport takes a row for itself; the row goes once the
/// last one took it, and only transports registered when it was written
/// owe it.
pub async fn outbox_rows_wait_for_each_registered_transport(store: Arc<dyn Store>) {
    let before = send(&*store, "1", "18", "before any transport").await;
    assert!(
        store.list_outbox(10).await.expect("list").is_empty(),
        "no row is written while no durable transport is registered: {before:?}"
    );
    let keys = ["broker".to_owned(), "pusher:mirror".to_owned()];
    let slots = store.register_transports(&keys).await.expect("register");
    assert_eq!(slots.len(), 2);
    assert_ne!(slots[0], slots[1]);
    let again = store.register_transports(&keys[1..]).await.expect("again");
    assert_eq!(again, [slots[1]], "a known key keeps its slot");
    let m = send(&*store, "1", "18", "for both").await;
    let (broker, mirror) = (slots[0], slots[1]);
    let for_broker = pending(&*store, broker, 10).await;
    assert_eq!(for_broker.len(), 1);
    let payload: Message = serde_json::from_slice(&for_broker[0].payload).expect("payload");
    assert_eq!(payload, m);
    store
        .ack_outbox(broker, &ids(&for_broker))
        .await
        .expect("ack");
    assert!(pending(&*store, broker, 10).await.is_empty());
    let listed = store.list_outbox(10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].pending_for, ["pusher:mirror"]);
    let for_mirror = pending(&*store, mirror, 10).await;
    assert_eq!(ids(&for_mirror), ids(&for_broker));
    store
        .ack_outbox(mirror, &ids(&for_mirror))
        .await
        .expect("ack");
    assert!(store.list_outbox(10).await.expect("list").is_empty());
    // A transport that is forgotten stops holding rows back.
    send(&*store, "1", "18", "for both again").await;
    assert!(store
        .forget_transport("pusher:mirror")
        .await
        .expect("forget"));
    assert!(!store
        .forget_transport("pusher:mirror")
        .await
        .expect("forget"));
    let left = pending(&*store, broker, 10).await;
    assert_eq!(left.len(), 1);
    store.ack_outbox(broker, &ids(&left)).await.expect("ack");
    assert!(store.list_outbox(10).await.expect("list").is_empty());
}

/// Sinks hear every commit, in commit order, with the outbox row it wrote.
pub async fn commit_sinks_hear_every_commit_in_order(store: Arc<dyn Store>) {
    use super::{Committed, CommittedBody};
    let heard: Arc<std::sync::Mutex<Vec<Committed>>> = Arc::default();
    let sink = {
        let heard = heard.clone();
        store.add_commit_sink(Arc::new(move |batch| {
            heard.lock().expect("lock").extend(batch);
        }))
    };
    let unrecorded = send(&*store, "1", "18", "no transport yet").await;
    let slot = registered(&*store).await;
    let mut handles = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            send(&*store, "1", "18", &format!("m{i}")).await
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let c = conv("1", "18");
    store.mark_read(&c, &user("18"), 21).await.expect("read");
    let edited = store
        .change(
            unrecorded.id,
            &user("1"),
            MessageChange::Edit {
                body: "edited".into(),
            },
            5,
        )
        .await
        .expect("edit");
    store.remove_commit_sink(sink);
    send(&*store, "1", "18", "after the sink").await;
    let heard = heard.lock().expect("lock").clone();
    assert_eq!(heard.len(), 23, "{heard:#?}");
    assert_eq!(heard[0].outbox_id, None, "written before any registration");
    match &heard[0].body {
        CommittedBody::Message(m) => assert_eq!(m, &unrecorded),
        other => panic!("a new message carries it: {other:?}"),
    }
    let seqs: Vec<i64> = heard[1..21]
        .iter()
        .map(|c| match &c.body {
            CommittedBody::Message(m) => m.seq,
            other => panic!("not a message: {other:?}"),
        })
        .collect();
    assert_eq!(
        seqs,
        (2..=21).collect::<Vec<_>>(),
        "commit order is seq order"
    );
    assert_eq!(heard[21].event, event::MESSAGES_READ);
    assert_eq!(heard[22].event, event::MESSAGE_EDITED);
    let edit: Message = serde_json::from_slice(&heard[22].payload()).expect("payload");
    assert_eq!(edit, edited);
    let rows: Vec<i64> = pending(&*store, slot, 100)
        .await
        .iter()
        .map(|o| o.id)
        .collect();
    let announced: Vec<i64> = heard[1..].iter().filter_map(|c| c.outbox_id).collect();
    assert_eq!(announced.len(), 22);
    assert_eq!(
        rows[..22],
        announced[..],
        "each announced row is the stored one"
    );
}
