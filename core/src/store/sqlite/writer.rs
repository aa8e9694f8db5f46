//! The single SQLite writer with group commit.
//!
//! One thread owns the write connection. It takes every job queued since its
//! last commit and runs them in one transaction: appends together (one
//! conversation lookup and one `last_seq` update per conversation), other
//! operations each in a savepoint so one failing leaves the rest. Each
//! caller is answered only after the commit. A lone sender gets one commit
//! per message with no wait; under load the writer lingers up to 2 ms while
//! requests keep arriving (until as many are in as last time), so
//! concurrent senders share larger commits. A `client_msg_id` retry is
//! caught by the insert itself (`ON CONFLICT … DO NOTHING`), so a new
//! message costs no lookup before its insert.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::rows::{conversation_row, db, load_reactions, message_by_client_id};
use crate::domain::{Message, NewMessage};
use crate::error::{Error, Result};
use crate::event;
use crate::store::{
    existing_for_retry, now_ms, slot_bit, Appended, CommitSinks, Committed, OutboxId,
};

/// Most jobs in one transaction.
const MAX_GROUP: usize = 4096;
/// Longest wait for more requests before a shared commit.
const MAX_LINGER: Duration = Duration::from_millis(2);
/// How often the writer looks for more requests while it lingers.
const LINGER_STEP: Duration = Duration::from_micros(200);
/// Queue depth before senders wait: backpressure, not unbounded memory.
const QUEUE_DEPTH: usize = 16 * 1024;
/// Conversations whose row id and last seq the writer remembers.
const CACHED_CONVERSATIONS: usize = 64 * 1024;

/// Row id and last seq of the conversations the writer appended to, so a
/// group does not look each one up again. Only this writer changes them,
/// except another process on the same file (then `data_version` moves and
/// the cache is dropped), and a failed transaction drops it too.
#[derive(Default)]
struct Conversations {
    rows: HashMap<String, (i64, i64)>,
}

impl Conversations {
    fn get(&self, key: &str) -> Option<(i64, i64)> {
        self.rows.get(key).copied()
    }

    fn set(&mut self, key: &str, row: i64, last_seq: i64) {
        if self.rows.len() >= CACHED_CONVERSATIONS && !self.rows.contains_key(key) {
            self.rows.clear();
        }
        match self.rows.get_mut(key) {
            Some(entry) => *entry = (row, last_seq),
            None => {
                self.rows.insert(key.to_owned(), (row, last_seq));
            }
        }
    }

    fn clear(&mut self) {
        self.rows.clear();
    }
}

/// A unit of work for the writer, answered after the commit.
trait Job: Send {
    /// Runs inside the open transaction; pushes the events it commits.
    fn run(&mut self, conn: &Connection, events: &mut Vec<Committed>);
    /// Answers the caller; `commit` is the outcome of the whole transaction.
    fn finish(self: Box<Self>, commit: Result<(), &str>);
}

enum Queued {
    Append(NewMessage, oneshot::Sender<Result<Appended>>),
    Job(Box<dyn Job>),
}

/// Handle to the writer thread; cloning shares the thread.
#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Queued>,
    /// The bits of the registered transports, as new outbox rows get them.
    registered: Arc<AtomicI64>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection, name: String, sinks: Arc<CommitSinks>) -> Result<Writer> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let registered = Arc::new(AtomicI64::new(registered_mask(&conn)?));
        let shared = registered.clone();
        thread::Builder::new()
            .name(name)
            .spawn(move || run(conn, receiver, &shared, &sinks))
            .map_err(|e| Error::storage("starting the SQLite writer thread", e))?;
        Ok(Writer { queue, registered })
    }

    /// The registered transports' bits, for rows written inside jobs.
    pub(super) fn registered(&self) -> Arc<AtomicI64> {
        self.registered.clone()
    }

    pub(super) async fn append(&self, msg: NewMessage) -> Result<Appended> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued::Append(msg, reply))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Runs `f` in its own savepoint of the next group transaction.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_events(move |conn, _| f(conn)).await
    }

    /// Like [`write`](Self::write), for a job whose writes announce events:
    /// it pushes them, and they reach the commit sinks after the commit.
    pub(super) async fn write_events<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<Committed>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = SavepointJob {
            f: Some(f),
            result: None,
            reply,
        };
        self.queue
            .send(Queued::Job(Box::new(job)))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> Error {
    Error::storage_msg("the SQLite writer thread stopped before answering")
}

struct SavepointJob<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for SavepointJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut Vec<Committed>) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, events: &mut Vec<Committed>) {
        let Some(f) = self.f.take() else { return };
        let before = events.len();
        let result = match conn.execute_batch("SAVEPOINT job") {
            Err(e) => Err(Error::storage("opening a savepoint", e)),
            Ok(()) => {
                let result = f(conn, events);
                if result.is_err() {
                    // Rolled back: what it announced did not happen.
                    events.truncate(before);
                }
                let end = if result.is_ok() {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                match conn.execute_batch(end) {
                    Ok(()) => result,
                    Err(e) => Err(Error::storage("closing a savepoint", e)),
                }
            }
        };
        self.result = Some(result);
    }

    fn finish(self: Box<Self>, commit: Result<(), &str>) {
        let answer = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(why)) => Err(Error::storage_msg(why.to_owned())),
            (None, Ok(())) => Err(Error::storage_msg("write job was never run")),
        };
        // The caller may have gone away; its write is committed regardless.
        let _ = self.reply.send(answer);
    }
}

/// The bits of every registered transport.
fn registered_mask(conn: &Connection) -> Result<i64> {
    let mut stmt = conn
        .prepare_cached("SELECT slot FROM outbox_transports")
        .map_err(db("reading the transport registry"))?;
    let slots: Vec<u8> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(db("reading the transport registry"))?;
    Ok(slots
        .into_iter()
        .fold(0, |mask, slot| mask | slot_bit(slot)))
}

/// Changes committed by other connections (another process on the same
/// file) since the last call.
fn data_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

fn run(
    conn: Connection,
    mut receiver: mpsc::Receiver<Queued>,
    registered: &AtomicI64,
    sinks: &CommitSinks,
) {
    let mut appends = Vec::new();
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut last_group = 0;
    let mut seen_version = data_version(&conn);
    let mut conversations = Conversations::default();
    while let Some(first) = receiver.blocking_recv() {
        let mut group = Group {
            appends: &mut appends,
            jobs: &mut jobs,
            count: 0,
        };
        group.push(first);
        group.drain(&mut receiver);
        // Under load (the last group was shared), wait briefly while more
        // requests keep arriving: fewer, larger commits. Stop once as many
        // are in as last time (those senders are back; waiting longer only
        // delays them). A lone sender never waits.
        if last_group > 1 {
            let deadline = Instant::now() + MAX_LINGER;
            while group.count < last_group && Instant::now() < deadline {
                thread::sleep(LINGER_STEP);
                if group.drain(&mut receiver) == 0 {
                    break;
                }
            }
        }
        last_group = group.count;
        let mut shared = Shared {
            registered,
            conversations: &mut conversations,
            seen_version: &mut seen_version,
        };
        commit_group(&conn, &mut appends, &mut jobs, sinks, &mut shared);
    }
}

/// The jobs of the next transaction.
struct Group<'a> {
    appends: &'a mut Vec<AppendRequest>,
    jobs: &'a mut Vec<Box<dyn Job>>,
    count: usize,
}

impl Group<'_> {
    fn push(&mut self, queued: Queued) {
        match queued {
            Queued::Append(msg, reply) => self.appends.push((msg, reply)),
            Queued::Job(job) => self.jobs.push(job),
        }
        self.count += 1;
    }

    /// Takes what is queued now, up to the group limit; returns how many.
    fn drain(&mut self, receiver: &mut mpsc::Receiver<Queued>) -> usize {
        let before = self.count;
        while self.count < MAX_GROUP {
            match receiver.try_recv() {
                Ok(queued) => self.push(queued),
                Err(_) => break,
            }
        }
        self.count - before
    }
}

type AppendRequest = (NewMessage, oneshot::Sender<Result<Appended>>);

/// What the writer keeps between groups.
struct Shared<'a> {
    registered: &'a AtomicI64,
    conversations: &'a mut Conversations,
    seen_version: &'a mut Option<i64>,
}

impl Shared<'_> {
    /// Inside the write transaction (no one else can write now): when
    /// another connection committed since the last group, what the writer
    /// remembers (conversations, the transport registry) is read afresh.
    fn refresh(&mut self, conn: &Connection) -> Result<i64> {
        let version = data_version(conn);
        if version != *self.seen_version {
            *self.seen_version = version;
            self.conversations.clear();
            self.registered
                .store(registered_mask(conn)?, Ordering::Release);
        }
        Ok(self.registered.load(Ordering::Acquire))
    }
}

fn commit_group(
    conn: &Connection,
    appends: &mut Vec<AppendRequest>,
    jobs: &mut Vec<Box<dyn Job>>,
    sinks: &CommitSinks,
    shared: &mut Shared<'_>,
) {
    let mut job_events = Vec::new();
    let outcome = transaction(conn, |conn| {
        let registered = shared.refresh(conn)?;
        let msgs: Vec<&NewMessage> = appends.iter().map(|(m, _)| m).collect();
        let results = append_batch(conn, &msgs, registered, shared.conversations)?;
        for job in jobs.iter_mut() {
            job.run(conn, &mut job_events);
        }
        Ok(results)
    });
    match outcome {
        Ok(results) => {
            // Announced before anyone is answered, in commit order.
            let mut events: Vec<Committed> = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter(|(a, _)| a.created)
                .map(|(a, outbox_id)| Committed::new_message(a, *outbox_id))
                .collect();
            events.append(&mut job_events);
            sinks.publish(events);
            for ((_, reply), result) in appends.drain(..).zip(results) {
                let _ = reply.send(result.map(|(appended, _)| appended));
            }
            for job in jobs.drain(..) {
                job.finish(Ok(()));
            }
        }
        Err(err) => {
            // Rolled back: the remembered seqs may be ahead of the file.
            shared.conversations.clear();
            let why = err.to_string();
            tracing::warn!(error = %why, "SQLite group commit failed; nothing of it was written");
            for (_, reply) in appends.drain(..) {
                let _ = reply.send(Err(Error::storage_msg(why.clone())));
            }
            for job in jobs.drain(..) {
                job.finish(Err(&why));
            }
        }
    }
}

/// BEGIN IMMEDIATE … COMMIT, rolled back on any error.
fn transaction<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| Error::storage("starting a write transaction", e))?;
    let result = f(conn).and_then(|value| {
        conn.execute_batch("COMMIT")
            .map_err(|e| Error::storage("committing", e))?;
        Ok(value)
    });
    if result.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "SQLite rollback failed");
        }
    }
    result
}

/// An appended message and its outbox row, if one was written.
type Stored = (Appended, Option<OutboxId>);

/// Appends a group of messages, with an outbox row each when a durable
/// transport is registered (`registered`: their bits); the outer error
/// aborts the transaction, an inner one answers only its message (e.g. a
/// `client_msg_id` conflict).
fn append_batch(
    conn: &Connection,
    msgs: &[&NewMessage],
    registered: i64,
    conversations: &mut Conversations,
) -> Result<Vec<Result<Stored>>> {
    let mut results: Vec<Option<Result<Stored>>> = (0..msgs.len()).map(|_| None).collect();
    // Group by conversation, keeping arrival order inside each.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let key = m.conversation_id.as_str();
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let db = |e: rusqlite::Error| Error::storage("appending messages", e);
    let mut insert_message = conn
        .prepare_cached(
            "INSERT INTO messages (conversation, seq, sender, body, client_msg_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (conversation, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
        )
        .map_err(db)?;
    let mut insert_outbox = conn
        .prepare_cached(
            "INSERT INTO outbox (conversation, event, message, pending, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?;
    let queued_at = now_ms();
    for (key, members) in groups {
        let first = msgs[members[0]];
        let (conv, mut last_seq) = match conversations.get(key) {
            Some(found) => found,
            None => conversation_for_append(conn, key, first)?,
        };
        let mut last_at = None;
        // Keys first used inside this batch, for retries racing each other.
        let mut fresh: HashMap<&str, usize> = HashMap::new();
        for i in members {
            let msg = msgs[i];
            let client_id = msg.client_msg_id.as_deref();
            let earlier_in_batch =
                client_id
                    .and_then(|c| fresh.get(c))
                    .and_then(|&j| match &results[j] {
                        Some(Ok((a, _))) => Some(a.message.clone()),
                        _ => None,
                    });
            if let Some(first) = earlier_in_batch {
                results[i] = Some(retry_of(&first, msg));
                continue;
            }
            // The insert itself detects a retry of an earlier batch's
            // message (no lookup before every insert); only then is the
            // first message read back.
            let inserted = insert_message
                .execute(params![
                    conv,
                    last_seq + 1,
                    msg.sender_id.as_str(),
                    msg.body,
                    msg.client_msg_id,
                    msg.created_at
                ])
                .map_err(db)?;
            match (inserted, client_id) {
                // Only a client_msg_id conflict leaves a row out.
                (0, Some(client_id)) => {
                    let first = message_by_client_id(conn, conv, &msg.conversation_id, client_id)?
                        .ok_or_else(|| {
                            Error::storage_msg("a client_msg_id conflict without its message")
                        })?;
                    results[i] = Some(retry_of(&first, msg));
                    continue;
                }
                (0, None) => return Err(Error::storage_msg("a message insert wrote no row")),
                (_, Some(client_id)) => {
                    fresh.insert(client_id, i);
                }
                (_, None) => {}
            }
            last_seq += 1;
            let id = conn.last_insert_rowid();
            let outbox_id = if registered != 0 {
                insert_outbox
                    .execute(params![conv, event::NEW_MESSAGE, id, registered, queued_at])
                    .map_err(db)?;
                Some(conn.last_insert_rowid())
            } else {
                None
            };
            last_at = Some(msg.created_at);
            results[i] = Some(Ok((
                Appended {
                    message: Message {
                        id,
                        conversation_id: msg.conversation_id.clone(),
                        seq: last_seq,
                        sender_id: msg.sender_id.clone(),
                        body: msg.body.clone(),
                        client_msg_id: msg.client_msg_id.clone(),
                        created_at: msg.created_at,
                        edited_at: None,
                        deleted_at: None,
                        reactions: Vec::new(),
                    },
                    created: true,
                },
                outbox_id,
            )));
        }
        if let Some(at) = last_at {
            conn.prepare_cached(
                "UPDATE conversations SET last_seq = ?2, last_at = MAX(last_at, ?3) WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![conv, last_seq, at]))
            .map_err(db)?;
        }
        conversations.set(key, conv, last_seq);
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::storage_msg("message was not appended"))))
        .collect())
}

/// The answer to a retry: the first message, if the retry matches it.
fn retry_of(first: &Message, retry: &NewMessage) -> Result<Stored> {
    existing_for_retry(first, retry).map(|message| {
        (
            Appended {
                message,
                created: false,
            },
            None,
        )
    })
}

/// The conversation's row id and last seq, creating the row on first use.
fn conversation_for_append(conn: &Connection, key: &str, msg: &NewMessage) -> Result<(i64, i64)> {
    let db = |e: rusqlite::Error| Error::storage("creating a conversation", e);
    let found = conversation_row(conn, key)?;
    if let Some(found) = found {
        return Ok(found);
    }
    let (lo, hi) = msg.conversation_id.users();
    conn.prepare_cached("INSERT INTO conversations (key, user_lo, user_hi) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![key, lo.as_str(), hi.as_str()]))
        .map_err(db)?;
    Ok((conn.last_insert_rowid(), 0))
}

/// Loads a message with its reactions inside a write job.
pub(super) fn message_for_change(conn: &Connection, id: i64) -> Result<Option<Message>> {
    let mut found = super::rows::messages_where(conn, "m.id = ?1", params![id])?;
    load_reactions(conn, &mut found)?;
    Ok(found.pop())
}
