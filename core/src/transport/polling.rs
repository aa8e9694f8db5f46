//! The polling log: a bounded in-memory log of recent events with a
//! cursor, for clients that cannot hold a socket. A reader asks for events
//! after its cursor on some channels and waits until one arrives or its
//! timeout passes; a reader that fell behind the log's start is told so and
//! catches up from the store (`messages_after`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use super::Transport;
use crate::error::Result;
use crate::event::Event;

pub const DEFAULT_CAPACITY: usize = 10_000;

/// One logged event and its cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Polled {
    pub cursor: u64,
    pub channel: String,
    pub event: String,
    /// The event's JSON payload.
    pub data: serde_json::Value,
}

/// The answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollResult {
    pub events: Vec<Polled>,
    /// The cursor to poll after next.
    pub cursor: u64,
    /// Events after the given cursor were dropped from the log: catch up
    /// from the store.
    pub lagged: bool,
}

struct Log {
    /// Cursor of the newest event (0: none yet).
    newest: u64,
    entries: VecDeque<(u64, Arc<Event>)>,
}

pub struct PollingTransport {
    capacity: usize,
    log: Mutex<Log>,
    arrived: Notify,
}

impl PollingTransport {
    pub fn new(capacity: usize) -> Self {
        PollingTransport {
            capacity: capacity.max(1),
            log: Mutex::new(Log {
                newest: 0,
                entries: VecDeque::new(),
            }),
            arrived: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn collect(&self, channels: &[String], after: u64, max: usize) -> PollResult {
        let log = self.lock();
        let oldest = log.entries.front().map_or(log.newest + 1, |(c, _)| *c);
        let lagged = after + 1 < oldest && after < log.newest;
        let mut events = Vec::new();
        let mut cursor = after.min(log.newest);
        for (c, e) in log.entries.iter().filter(|(c, _)| *c > after) {
            if events.len() >= max {
                break;
            }
            cursor = *c;
            if channels.is_empty() || channels.iter().any(|ch| ch == &e.channel) {
                events.push(Polled {
                    cursor: *c,
                    channel: e.channel.clone(),
                    event: e.name.clone(),
                    data: serde_json::from_slice(&e.payload).unwrap_or(serde_json::Value::Null),
                });
            }
        }
        PollResult {
            events,
            cursor,
            lagged,
        }
    }

    /// Events on `channels` (all when empty) with a cursor above `after`,
    /// waiting up to `wait` for the first one.
    pub async fn poll(
        &self,
        channels: &[String],
        after: u64,
        max: usize,
        wait: Duration,
    ) -> PollResult {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so none is missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let result = self.collect(channels, after, max.max(1));
            if !result.events.is_empty() || result.lagged {
                return result;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.collect(channels, after, max.max(1));
            }
        }
    }

    /// Adds shared events to the log and wakes the readers once.
    fn append(&self, events: &[Arc<Event>]) {
        {
            let mut log = self.lock();
            for event in events {
                log.newest += 1;
                let cursor = log.newest;
                log.entries.push_back((cursor, event.clone()));
            }
            while log.entries.len() > self.capacity {
                log.entries.pop_front();
            }
        }
        self.arrived.notify_waiters();
    }

    /// The newest cursor: where a new reader starts.
    pub fn head(&self) -> u64 {
        self.lock().newest
    }
}

#[async_trait]
impl Transport for PollingTransport {
    fn name(&self) -> &str {
        "polling"
    }

    /// Live-only: the log is in memory; readers catch up from the store.
    fn outbox_key(&self) -> Option<String> {
        None
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        self.append(&[Arc::new(Event::new(channel, event, payload))]);
        Ok(())
    }

    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
        self.append(events);
        events.iter().map(|_| Ok(())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_wait_and_resume_by_cursor() {
        let log = Arc::new(PollingTransport::new(3));
        let reader = {
            let log = log.clone();
            tokio::spawn(
                async move { log.poll(&["a".into()], 0, 10, Duration::from_secs(5)).await },
            )
        };
        log.deliver("b", "x", Bytes::from_static(b"1"))
            .await
            .unwrap();
        log.deliver("a", "y", Bytes::from_static(br#"{"v":2}"#))
            .await
            .unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.events.len(), 1);
        assert_eq!(got.events[0].event, "y");
        assert_eq!(got.cursor, 2);
        let empty = log
            .poll(&["a".into()], 2, 10, Duration::from_millis(10))
            .await;
        assert!(empty.events.is_empty() && !empty.lagged);
        for i in 0..5 {
            log.deliver("a", "z", Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        let late = log.poll(&[], 1, 10, Duration::ZERO).await;
        assert!(late.lagged, "events 2..4 fell out of a log of 3");
    }
}
