//! The engine's public API: what a Rust host sees, events included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidings::transport::{Received, Subscription};
use tidings::{
    event, Engine, EngineConfig, ErrorKind, Message, PageRequest, SendRequest, Transport,
};

async fn engine() -> Engine {
    Engine::open(EngineConfig::with_store("memory:"))
        .await
        .expect("engine")
}

/// The next event, or a failure after a deadline (no sleeps: we wait on the stream).
async fn next_event(sub: &mut Subscription) -> Arc<tidings::Event> {
    match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
        Ok(Some(Received::Event(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_send_is_stored_and_announced_on_the_conversation_channel() {
    let engine = engine().await;
    let mut events = engine.subscribe();
    let sent = engine
        .send(SendRequest::to("18", "1", "  Hello, student  "))
        .await
        .expect("send");
    assert!(sent.created);
    assert_eq!(sent.message.seq, 1);
    assert_eq!(sent.message.body, "Hello, student", "trimmed");
    let event = next_event(&mut events).await;
    assert_eq!(event.channel, "private-conversation-1-18");
    assert_eq!(event.name, event::NEW_MESSAGE);
    let payload: Message = serde_json::from_slice(&event.payload).expect("json");
    assert_eq!(payload, sent.message);
    engine.shutdown().await;
}

#[tokio::test]
async fn every_state_change_emits_its_event() {
    let engine = engine().await;
    let mut events = engine.subscribe();
    let m = engine
        .send(SendRequest::to("1", "18", "hi"))
        .await
        .expect("send")
        .message;
    engine.typing("18", "1-18").await.expect("typing");
    engine.mark_read("18", "1-18", 1).await.expect("read");
    engine.edit("1", m.id, "hi there").await.expect("edit");
    engine.react("18", m.id, "👍").await.expect("react");
    engine.unreact("18", m.id).await.expect("unreact");
    engine.delete("1", m.id).await.expect("delete");
    let mut names = Vec::new();
    for _ in 0..7 {
        let e = next_event(&mut events).await;
        assert_eq!(e.channel, "private-conversation-1-18");
        names.push(e.name.clone());
        if e.name == event::TYPING {
            let t: event::Typing = serde_json::from_slice(&e.payload).expect("json");
            assert_eq!(t.user_id.as_str(), "18");
        }
        if e.name == event::REACTION {
            let r: event::ReactionChanged = serde_json::from_slice(&e.payload).expect("json");
            assert_eq!(r.message_id, m.id);
        }
    }
    // Typing skips the outbox, so it may overtake stored events; the
    // stored ones keep their order.
    let stored: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != event::TYPING)
        .collect();
    assert_eq!(
        stored,
        [
            event::NEW_MESSAGE,
            event::MESSAGES_READ,
            event::MESSAGE_EDITED,
            event::REACTION,
            event::REACTION,
            event::MESSAGE_DELETED
        ]
    );
    assert!(names.iter().any(|n| n == event::TYPING));
    let history = engine
        .history("1-18", PageRequest::default())
        .await
        .expect("history");
    assert_eq!(history.items.len(), 1, "typing is never stored");
    engine.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_clear_errors() {
    let engine = engine().await;
    let cases: Vec<(SendRequest, ErrorKind, &str)> = vec![
        (
            SendRequest::to("1", "18", "   "),
            ErrorKind::InvalidArgument,
            "empty",
        ),
        (
            SendRequest::to("1", "18", "x".repeat(10 * 1024 + 1)),
            ErrorKind::InvalidArgument,
            "10 KiB",
        ),
        (
            SendRequest::to("1 2", "18", "hi"),
            ErrorKind::InvalidArgument,
            "' '",
        ),
        (
            SendRequest::in_conversation("5", "1-18", "hi"),
            ErrorKind::Forbidden,
            "not in conversation 1-18",
        ),
        (
            SendRequest::in_conversation("1", "18-1", "hi"),
            ErrorKind::InvalidArgument,
            "canonical",
        ),
    ];
    for (request, kind, needle) in cases {
        let err = engine.send(request).await.expect_err("must fail");
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }
    let ok = engine
        .send(SendRequest::to("1", "18", "x".repeat(10 * 1024)))
        .await;
    assert!(ok.is_ok(), "exactly 10 KiB is allowed");
    let err = engine.typing("5", "1-18").await.expect_err("not a member");
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    let err = engine.message(12345).await.expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    engine.shutdown().await;
    let err = engine
        .send(SendRequest::to("1", "18", "late"))
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
}

#[tokio::test]
async fn a_retried_send_returns_the_first_message_and_announces_nothing_new() {
    let engine = engine().await;
    let mut events = engine.subscribe();
    let first = engine
        .send(SendRequest::to("1", "18", "once").client_msg_id("k1"))
        .await
        .expect("send");
    let again = engine
        .send(SendRequest::to("1", "18", "once").client_msg_id("k1"))
        .await
        .expect("retry");
    assert!(!again.created);
    assert_eq!(again.message, first.message);
    let marker = engine
        .send(SendRequest::to("1", "18", "marker"))
        .await
        .expect("send");
    let a = next_event(&mut events).await;
    let b = next_event(&mut events).await;
    let ids: Vec<i64> = [a, b]
        .iter()
        .map(|e| {
            serde_json::from_slice::<Message>(&e.payload)
                .expect("json")
                .id
        })
        .collect();
    assert_eq!(ids, [first.message.id, marker.message.id]);
    engine.shutdown().await;
}

/// A transport that refuses everything until switched on.
struct Flaky {
    up: AtomicBool,
    delivered: std::sync::Mutex<Vec<(String, String, Bytes)>>,
}

#[async_trait]
impl Transport for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> tidings::Result<()> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(tidings::Error::transport("flaky", "connection refused"));
        }
        self.delivered
            .lock()
            .expect("lock")
            .push((channel.into(), event.into(), payload));
        Ok(())
    }
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_go_out_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let down = Arc::new(Flaky {
        up: AtomicBool::new(false),
        delivered: Default::default(),
    });
    let engine = Engine::builder()
        .config(EngineConfig::with_store(&url))
        .transport(down.clone())
        .build()
        .await
        .expect("engine");
    for i in 1..=3 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .expect("accepted while the transport is down");
    }
    // Wait until the worker has tried (and failed) the first row.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pending = engine.pending_deliveries(10).await.expect("pending");
        if pending.first().is_some_and(|r| r.attempts > 0) {
            assert_eq!(pending.len(), 3);
            assert!(pending[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("connection refused")));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt seen");
        tokio::task::yield_now().await;
    }
    engine.shutdown().await;
    drop(engine);

    let up = Arc::new(Flaky {
        up: AtomicBool::new(true),
        delivered: Default::default(),
    });
    let engine = Engine::builder()
        .config(EngineConfig::with_store(&url))
        .transport(up.clone())
        .build()
        .await
        .expect("engine");
    engine
        .send(SendRequest::to("18", "1", "newer"))
        .await
        .expect("send");
    engine.shutdown().await;
    let bodies: Vec<String> = up
        .delivered
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, _, p)| serde_json::from_slice::<Message>(p).expect("json").body)
        .collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "newer"]);
    assert!(engine
        .pending_deliveries(10)
        .await
        .expect("pending")
        .is_empty());
}

#[tokio::test]
async fn shutdown_ends_subscriptions_after_what_they_hold() {
    let engine = engine().await;
    let mut sub = engine.subscribe();
    // A clone held elsewhere (a server, a binding) must not keep it open.
    let _held = engine.clone();
    engine
        .send(SendRequest::to("1", "18", "last words"))
        .await
        .expect("send");
    engine.shutdown().await;
    let e = next_event(&mut sub).await;
    assert_eq!(e.name, event::NEW_MESSAGE);
    let end = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await;
    assert_eq!(end, Ok(None), "the stream ends after the held events");
    assert_eq!(
        engine.subscribe().recv().await,
        None,
        "a subscription after shutdown is already ended"
    );
}

/// Every delivered body, in order, with a watch on how many there are.
struct Recorder {
    bodies: std::sync::Mutex<Vec<String>>,
    count: tokio::sync::watch::Sender<usize>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            bodies: Default::default(),
            count: tokio::sync::watch::channel(0).0,
        })
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        let mut count = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} deliveries expected, got {:?}", self.bodies))
            .expect("recorder alive");
        self.bodies.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Transport for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn deliver(&self, _channel: &str, _event: &str, payload: Bytes) -> tidings::Result<()> {
        let body = serde_json::from_slice::<Message>(&payload)
            .expect("json")
            .body;
        let mut bodies = self.bodies.lock().expect("lock");
        bodies.push(body);
        self.count.send_replace(bodies.len());
        Ok(())
    }
}

#[tokio::test]
async fn a_transport_that_is_down_holds_back_only_itself() {
    let down = Arc::new(Flaky {
        up: AtomicBool::new(false),
        delivered: Default::default(),
    });
    let live = Recorder::new();
    // The failing transport comes first: the live one must not wait for it.
    let engine = Engine::builder()
        .config(EngineConfig::with_store("memory:"))
        .transport(down.clone())
        .transport(live.clone())
        .build()
        .await
        .expect("engine");
    for i in 1..=3 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .expect("send");
    }
    assert_eq!(live.wait_for(3).await, ["m1", "m2", "m3"]);
    let pending = engine.pending_deliveries(10).await.expect("pending");
    assert_eq!(pending.len(), 3, "still owed to the transport that is down");

    // Back up: it gets all three in order; the live one gets nothing twice.
    down.up.store(true, Ordering::SeqCst);
    engine
        .send(SendRequest::to("18", "1", "m4"))
        .await
        .expect("send");
    assert_eq!(live.wait_for(4).await, ["m1", "m2", "m3", "m4"]);
    engine.shutdown().await;
    let bodies: Vec<String> = down
        .delivered
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, _, p)| serde_json::from_slice::<Message>(p).expect("json").body)
        .collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "m4"]);
    assert_eq!(live.bodies.lock().expect("lock").len(), 4, "no duplicates");
    assert!(engine
        .pending_deliveries(10)
        .await
        .expect("pending")
        .is_empty());
}

/// SQLite gives a new row the highest deleted id again: a row delivered
/// and acknowledged must not make a later row with its id count as sent.
#[tokio::test]
async fn a_new_outbox_row_with_a_reused_id_is_still_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = Recorder::new();
    let engine = Engine::builder()
        .config(EngineConfig::with_store(format!(
            "sqlite://{}/t.db",
            dir.path().display()
        )))
        .transport(live.clone())
        .build()
        .await
        .expect("engine");
    for i in 1..=3 {
        engine
            .send(SendRequest::to("1", "18", format!("m{i}")))
            .await
            .expect("send");
        live.wait_for(i).await;
        // Acknowledged (deleted) before the next send takes its id.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !engine
            .pending_deliveries(10)
            .await
            .expect("pending")
            .is_empty()
        {
            assert!(tokio::time::Instant::now() < deadline, "m{i} never acked");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(live.wait_for(3).await, ["m1", "m2", "m3"]);
    engine.shutdown().await;
}

/// One event per call; while `failures` is above zero, calls fail
/// (retryable) and count it down. Every attempted body is recorded, with
/// whether it went through.
struct OneAtATime {
    failures: std::sync::atomic::AtomicUsize,
    attempts: std::sync::Mutex<Vec<(String, bool)>>,
    delivered: tokio::sync::watch::Sender<usize>,
}

#[async_trait]
impl Transport for OneAtATime {
    fn name(&self) -> &str {
        "one-at-a-time"
    }
    fn max_batch(&self) -> usize {
        1
    }
    async fn deliver(&self, _channel: &str, _event: &str, payload: Bytes) -> tidings::Result<()> {
        let body = serde_json::from_slice::<Message>(&payload)
            .expect("json")
            .body;
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        self.attempts.lock().expect("lock").push((body, !fail));
        if fail {
            return Err(tidings::Error::transport("one-at-a-time", "503"));
        }
        self.delivered.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// While a conversation's event is held back behind a failure, no later
/// event of it reaches the transport, even when they are retried in one
/// round of separate calls.
#[tokio::test]
async fn a_held_event_is_never_overtaken_by_a_later_one() {
    let transport = Arc::new(OneAtATime {
        failures: std::sync::atomic::AtomicUsize::new(0),
        attempts: Default::default(),
        delivered: tokio::sync::watch::channel(0).0,
    });
    let engine = Engine::builder()
        .config(EngineConfig::with_store("memory:"))
        .transport(transport.clone())
        .build()
        .await
        .expect("engine");
    let mut delivered = transport.delivered.subscribe();
    // Delivered live once the lane has caught up with the store.
    engine
        .send(SendRequest::to("1", "18", "warm-up"))
        .await
        .expect("send");
    tokio::time::timeout(Duration::from_secs(10), delivered.wait_for(|n| *n >= 1))
        .await
        .expect("warm-up delivered")
        .expect("transport alive");
    transport.attempts.lock().expect("lock").clear();
    transport.failures.store(3, Ordering::SeqCst);
    for body in ["first", "second", "third"] {
        engine
            .send(SendRequest::to("1", "18", body))
            .await
            .expect("send");
    }
    tokio::time::timeout(Duration::from_secs(10), delivered.wait_for(|n| *n >= 4))
        .await
        .expect("all three delivered")
        .expect("transport alive");
    let attempts = transport.attempts.lock().expect("lock").clone();
    let first_ok = attempts
        .iter()
        .position(|(b, ok)| b == "first" && *ok)
        .expect("first delivered");
    assert!(
        attempts[..first_ok].iter().all(|(b, _)| b == "first"),
        "a later event was tried before the held one went through: {attempts:?}"
    );
    let order: Vec<&str> = attempts
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(b, _)| b.as_str())
        .collect();
    assert_eq!(order, ["first", "second", "third"]);
    engine.shutdown().await;
}
