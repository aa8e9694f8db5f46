//! The PostgreSQL append path with group commit.
//!
//! One task owns one dedicated connection. It takes every append queued
//! since its last commit and writes them in one transaction whose statement
//! count does not grow with the batch:
//!
//! 1. `INSERT … ON CONFLICT (key) DO UPDATE … RETURNING id, last_seq` on the
//!    batch's conversations, keys sorted: creates them and locks their rows,
//!    so writers on other nodes queue per conversation (gap-free seqs) and
//!    never deadlock;
//! 2. one lookup of the batch's `client_msg_id`s (only when it has any);
//! 3. one `INSERT … SELECT FROM unnest(…)` of the messages, which also
//!    queues their `new-message` outbox rows (a data-modifying CTE);
//! 4. one `UPDATE … FROM unnest(…)` of the conversations' `last_seq`/`last_at`.
//!
//! Each caller is answered only after COMMIT. When the connection breaks
//! during COMMIT the outcome is looked up on a fresh connection (did the
//! batch's first message land?) rather than guessed.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{ClientWrapper, Object, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::rows::{chain, db, load_reactions, messages_from_rows, pg_error, MESSAGE_COLUMNS};
use crate::domain::{ConversationId, Message, MessageId, NewMessage};
use crate::error::{Error, Result};
use crate::event;
use crate::store::{existing_for_retry, now_ms, Appended, CommitSinks, Committed, OutboxId};

/// Most appends in one transaction.
const MAX_GROUP: usize = 4096;
/// Queue depth before senders wait: backpressure, not unbounded memory.
const QUEUE_DEPTH: usize = 16 * 1024;

const UPSERT_CONVERSATIONS: &str = "\
    INSERT INTO conversations (key, user_lo, user_hi)
    SELECT key, user_lo, user_hi
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(key, user_lo, user_hi, n)
    ORDER BY n
    ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
    RETURNING id, key, last_seq";

/// Outbox rows are inserted in message id order, so new-message events of a
/// conversation are recovered in seq order; each is owed to every
/// registered transport, and none is written while there is none.
const INSERT_MESSAGES: &str = "\
    WITH inserted AS (
        INSERT INTO messages (conversation, seq, sender, body, client_msg_id, created_at)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                             $6::bigint[])
        RETURNING id, conversation, seq
    ), registry AS (
        SELECT COALESCE(bit_or(1::bigint << slot::int), 0) AS mask FROM outbox_transports
    ), queued AS (
        INSERT INTO outbox (conversation, event, message, pending, queued_at)
        SELECT i.conversation, $7::text, i.id, r.mask, $8::bigint
        FROM inserted i, registry r WHERE r.mask <> 0 ORDER BY i.id
        RETURNING id, message
    )
    SELECT i.id, i.conversation, i.seq, q.id FROM inserted i LEFT JOIN queued q ON q.message = i.id";

const UPDATE_CONVERSATIONS: &str = "\
    UPDATE conversations AS c
    SET last_seq = u.last_seq, last_at = GREATEST(c.last_at, u.last_at)
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, last_seq, last_at)
    WHERE c.id = u.id";

struct Request {
    msg: NewMessage,
    reply: oneshot::Sender<Result<Appended>>,
}

/// Handle to the writer task; the task ends when every handle is dropped
/// (after answering what is queued).
pub(super) struct Writer {
    queue: mpsc::Sender<Request>,
}

impl Writer {
    /// `target` names the database in error messages; `sinks` hear of every
    /// committed message before its sender is answered.
    pub(super) fn spawn(pool: Pool, target: String, sinks: Arc<CommitSinks>) -> Result<Writer> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::storage("starting the PostgreSQL writer task", e))?;
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        runtime.spawn(run(pool, target, receiver, sinks));
        Ok(Writer { queue })
    }

    pub(super) async fn append(&self, msg: NewMessage) -> Result<Appended> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { msg, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| {
            Error::storage_msg("the PostgreSQL writer task stopped before answering")
        })?
    }
}

async fn run(
    pool: Pool,
    target: String,
    mut receiver: mpsc::Receiver<Request>,
    sinks: Arc<CommitSinks>,
) {
    let mut conn: Option<ClientWrapper> = None;
    let mut batch = Vec::new();
    while receiver.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let answers = commit_group(&pool, &target, &mut conn, &batch).await;
        // Announced before anyone is answered, in commit order.
        sinks.publish(
            answers
                .iter()
                .filter_map(|a| a.as_ref().ok())
                .filter(|(a, _)| a.created)
                .map(|(a, outbox_id)| Committed::new_message(a, *outbox_id))
                .collect(),
        );
        let answers = answers.into_iter().map(|a| a.map(|(appended, _)| appended));
        for (request, answer) in batch.drain(..).zip(answers) {
            // The caller may have gone away; its message is stored regardless.
            let _ = request.reply.send(answer);
        }
    }
}

/// What a batch transaction came to.
/// An appended message and its outbox row, if one was written.
type Stored = (Appended, Option<OutboxId>);

enum Outcome {
    Committed(Vec<Result<Stored>>),
    /// Nothing was written.
    Failed(Error),
    /// COMMIT was sent but its answer lost: committed iff `probe` exists.
    InDoubt {
        results: Vec<Result<Stored>>,
        probe: Probe,
        error: Error,
    },
}

/// A row the batch inserted: its conversation (locked until the batch's
/// transaction ends) and its first message.
#[derive(Clone, Copy)]
struct Probe {
    conversation: i64,
    message: MessageId,
}

/// Writes one batch and returns each request's answer. A batch that fails
/// because the connection was lost (so nothing of it was written) is tried
/// once more on a fresh connection.
async fn commit_group(
    pool: &Pool,
    target: &str,
    conn: &mut Option<ClientWrapper>,
    batch: &[Request],
) -> Vec<Result<Stored>> {
    let fail_all = |error: &Error| -> Vec<Result<Stored>> {
        let text = message_of(error);
        batch
            .iter()
            .map(|_| Err(Error::storage_msg(text.clone())))
            .collect()
    };
    let msgs: Vec<&NewMessage> = batch.iter().map(|r| &r.msg).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let retry = attempt < 2;
        if conn.as_ref().is_some_and(|c| c.is_closed()) {
            *conn = None;
        }
        if conn.is_none() {
            match pool.get().await {
                // The writer keeps its connection out of the pool for good.
                Ok(object) => *conn = Some(Object::take(object)),
                Err(e) => {
                    return fail_all(&Error::storage_msg(format!(
                        "appending messages: no connection to PostgreSQL at {target}: {}",
                        chain(&e)
                    )))
                }
            }
        }
        let Some(client) = conn.as_mut() else {
            return fail_all(&Error::storage_msg(
                "the PostgreSQL writer has no connection",
            ));
        };
        let outcome = write_batch(client, &msgs).await;
        let lost = client.is_closed()
            || match &outcome {
                Outcome::Failed(e) | Outcome::InDoubt { error: e, .. } => connection_lost(e),
                Outcome::Committed(_) => false,
            };
        if lost {
            *conn = None;
        }
        let error = match outcome {
            Outcome::Committed(results) => return results,
            Outcome::Failed(error) => error,
            Outcome::InDoubt {
                results,
                probe,
                error,
            } => match committed(pool, probe).await {
                Ok(true) => return results,
                Ok(false) => error,
                Err(lookup) => {
                    let error = Error::storage_msg(format!(
                        "the connection to PostgreSQL broke while committing ({}) and the \
                         outcome could not be looked up ({}); retry with the same \
                         client_msg_id to get the stored message, if any",
                        message_of(&error),
                        message_of(&lookup)
                    ));
                    tracing::error!(%error, "PostgreSQL group commit outcome unknown");
                    return fail_all(&error);
                }
            },
        };
        if lost && retry {
            tracing::info!(%error, "PostgreSQL connection lost during a group commit; retrying");
            continue;
        }
        tracing::warn!(%error, "PostgreSQL group commit failed; nothing of it was written");
        return fail_all(&error);
    }
}

/// The text of an error without the "storage error: " its Display adds.
fn message_of(error: &Error) -> String {
    match error {
        Error::Storage { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether `error` came from a connection that is gone (closed, broken, or
/// ended by the server), rather than from a statement.
fn connection_lost(error: &Error) -> bool {
    let Error::Storage {
        source: Some(source),
        ..
    } = error
    else {
        return false;
    };
    let Some(pg) = source.downcast_ref::<tokio_postgres::Error>() else {
        return false;
    };
    if pg.is_closed() {
        return true;
    }
    match pg.as_db_error() {
        Some(db) => {
            matches!(db.severity(), "FATAL" | "PANIC")
                || db.code().code().starts_with("08")
                || db.code().code().starts_with("57P")
        }
        // Not from the server: an I/O failure on the socket.
        None => std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Whether the batch that inserted `probe` committed. Waits (a few seconds
/// at most) for the batch's transaction to end on the server first, so a
/// commit still in flight is not taken for a rollback.
async fn committed(pool: &Pool, probe: Probe) -> Result<bool> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| Error::storage_msg(format!("connecting to PostgreSQL: {}", chain(&e))))?;
    let tx = client
        .transaction()
        .await
        .map_err(db("looking up a commit"))?;
    tx.batch_execute("SET LOCAL lock_timeout = '5s'")
        .await
        .map_err(db("looking up a commit"))?;
    tx.execute(
        "SELECT 1 FROM conversations WHERE id = $1 FOR SHARE",
        &[&probe.conversation],
    )
    .await
    .map_err(db("waiting for the batch's transaction to end"))?;
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)",
            &[&probe.message],
        )
        .await
        .map_err(db("looking up a commit"))?;
    let exists: bool = row.try_get(0).map_err(db("looking up a commit"))?;
    tx.commit().await.map_err(db("looking up a commit"))?;
    Ok(exists)
}

async fn write_batch(client: &mut ClientWrapper, msgs: &[&NewMessage]) -> Outcome {
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return Outcome::Failed(pg_error("starting a write transaction", e)),
    };
    // On error `tx` is dropped, which rolls it back.
    let planned = match append_batch(&tx, msgs).await {
        Ok(planned) => planned,
        Err(e) => return Outcome::Failed(e),
    };
    match tx.commit().await {
        Ok(()) => Outcome::Committed(planned.results),
        Err(e) => {
            let error = pg_error("committing appended messages", e);
            match planned.probe {
                // The server refused the commit (it rolled back).
                _ if !connection_lost(&error) => Outcome::Failed(error),
                // Nothing new was to be written; the answers (earlier
                // messages, conflicts) stand either way.
                None => Outcome::Committed(planned.results),
                // The connection went during COMMIT, perhaps after it.
                Some(probe) => Outcome::InDoubt {
                    results: planned.results,
                    probe,
                    error,
                },
            }
        }
    }
}

struct Planned {
    results: Vec<Result<Stored>>,
    probe: Option<Probe>,
}

/// The answer to one request of the batch, before the messages' ids are known.
enum Slot {
    Done(Box<Result<Stored>>),
    /// Stored as row `n` of the insert.
    New(usize),
    /// A retry of row `n`, first sent earlier in this batch.
    RetryOf(usize),
}

#[derive(Default)]
struct Rows<'a> {
    conversation: Vec<i64>,
    seq: Vec<i64>,
    sender: Vec<&'a str>,
    body: Vec<&'a str>,
    client_msg_id: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
    /// Index into the batch of each row.
    request: Vec<usize>,
}

struct Conversation {
    id: i64,
    last_seq: i64,
    last_at: Option<i64>,
}

/// Runs the batch's statements inside `tx`. An error aborts the batch; a
/// `Conflict` answers only its own request.
async fn append_batch(tx: &Transaction<'_>, msgs: &[&NewMessage]) -> Result<Planned> {
    let mut conversations = lock_conversations(tx, msgs).await?;
    let earlier = messages_by_client_id(tx, &conversations, msgs).await?;

    let mut slots = Vec::with_capacity(msgs.len());
    let mut rows = Rows::default();
    // Keys first used inside this batch, for retries racing each other.
    let mut fresh: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, msg) in msgs.iter().enumerate() {
        let key = msg.conversation_id.as_str();
        if let Some(client_id) = msg.client_msg_id.as_deref() {
            if let Some(&row) = fresh.get(&(key, client_id)) {
                slots.push(Slot::RetryOf(row));
                continue;
            }
            if let Some(first) = earlier.get(&(key, client_id)) {
                let answer = existing_for_retry(first, msg).map(|message| {
                    (
                        Appended {
                            message,
                            created: false,
                        },
                        None,
                    )
                });
                slots.push(Slot::Done(Box::new(answer)));
                continue;
            }
            fresh.insert((key, client_id), rows.seq.len());
        }
        let conv = conversations.get_mut(key).ok_or_else(|| {
            Error::storage_msg(format!("conversation {key} was not locked for the append"))
        })?;
        conv.last_seq += 1;
        conv.last_at = Some(
            conv.last_at
                .map_or(msg.created_at, |at| at.max(msg.created_at)),
        );
        slots.push(Slot::New(rows.seq.len()));
        rows.conversation.push(conv.id);
        rows.seq.push(conv.last_seq);
        rows.sender.push(msg.sender_id.as_str());
        rows.body.push(&msg.body);
        rows.client_msg_id.push(msg.client_msg_id.as_deref());
        rows.created_at.push(msg.created_at);
        rows.request.push(i);
    }

    let ids = insert_messages(tx, &rows).await?;
    update_conversations(tx, &conversations).await?;

    let created: Vec<(Message, Option<OutboxId>)> = ids
        .iter()
        .zip(0..)
        .map(|(&(id, outbox_id), n)| {
            let msg = msgs[rows.request[n]];
            let message = Message {
                id,
                conversation_id: msg.conversation_id.clone(),
                seq: rows.seq[n],
                sender_id: msg.sender_id.clone(),
                body: msg.body.clone(),
                client_msg_id: msg.client_msg_id.clone(),
                created_at: msg.created_at,
                edited_at: None,
                deleted_at: None,
                reactions: Vec::new(),
            };
            (message, outbox_id)
        })
        .collect();
    let missing = || Error::storage_msg("an appended message has no id");
    let results = slots
        .into_iter()
        .zip(msgs)
        .map(|(slot, msg)| match slot {
            Slot::Done(answer) => *answer,
            Slot::New(n) => {
                created
                    .get(n)
                    .cloned()
                    .ok_or_else(missing)
                    .map(|(message, outbox_id)| {
                        (
                            Appended {
                                message,
                                created: true,
                            },
                            outbox_id,
                        )
                    })
            }
            Slot::RetryOf(n) => created
                .get(n)
                .ok_or_else(missing)
                .and_then(|(first, _)| existing_for_retry(first, msg))
                .map(|message| {
                    (
                        Appended {
                            message,
                            created: false,
                        },
                        None,
                    )
                }),
        })
        .collect();
    let probe = rows
        .conversation
        .first()
        .zip(ids.first())
        .map(|(&c, &(m, _))| Probe {
            conversation: c,
            message: m,
        });
    Ok(Planned { results, probe })
}

/// Creates and row-locks the batch's conversations in key order.
async fn lock_conversations<'a>(
    tx: &Transaction<'_>,
    msgs: &[&'a NewMessage],
) -> Result<HashMap<&'a str, Conversation>> {
    let mut convs: Vec<&'a ConversationId> = msgs.iter().map(|&m| &m.conversation_id).collect();
    convs.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    convs.dedup();
    let keys: Vec<&str> = convs.iter().map(|c| c.as_str()).collect();
    let los: Vec<&str> = convs.iter().map(|c| c.users().0.as_str()).collect();
    let his: Vec<&str> = convs.iter().map(|c| c.users().1.as_str()).collect();
    let context = "locking conversations for an append";
    let stmt = tx
        .prepare_cached(UPSERT_CONVERSATIONS)
        .await
        .map_err(db(context))?;
    let found = tx
        .query(&stmt, &[&keys, &los, &his])
        .await
        .map_err(db(context))?;
    let mut out = HashMap::with_capacity(found.len());
    for row in found {
        let key: String = row.try_get(1).map_err(db(context))?;
        let Some(&key) = keys.iter().find(|k| **k == key) else {
            return Err(Error::storage_msg(format!(
                "{context}: PostgreSQL returned conversation {key:?}, which is not in the batch"
            )));
        };
        out.insert(
            key,
            Conversation {
                id: row.try_get(0).map_err(db(context))?,
                last_seq: row.try_get(2).map_err(db(context))?,
                last_at: None,
            },
        );
    }
    Ok(out)
}

/// Stored messages the batch's `client_msg_id`s already name, by
/// (conversation key, client_msg_id). Race-free: the conversations are locked.
async fn messages_by_client_id<'a>(
    tx: &Transaction<'_>,
    conversations: &HashMap<&'a str, Conversation>,
    msgs: &[&'a NewMessage],
) -> Result<HashMap<(&'a str, &'a str), Message>> {
    let mut wanted: Vec<(i64, &str)> = msgs
        .iter()
        .filter_map(|m| {
            let client_id = m.client_msg_id.as_deref()?;
            let conv = conversations.get(m.conversation_id.as_str())?;
            Some((conv.id, client_id))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    wanted.sort_unstable();
    wanted.dedup();
    let (conv_ids, client_ids): (Vec<i64>, Vec<&str>) = wanted.into_iter().unzip();
    let context = "looking up client_msg_ids";
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}
             FROM unnest($1::bigint[], $2::text[]) AS k(conversation, client_msg_id)
             JOIN messages m
               ON m.conversation = k.conversation AND m.client_msg_id = k.client_msg_id
             JOIN conversations c ON c.id = m.conversation"
        ))
        .await
        .map_err(db(context))?;
    let found = tx
        .query(&stmt, &[&conv_ids, &client_ids])
        .await
        .map_err(db(context))?;
    let mut found = messages_from_rows(&found)?;
    if found.is_empty() {
        return Ok(HashMap::new());
    }
    load_reactions(tx, &mut found).await?;
    // Borrow the keys from the batch so the map lives as long as it.
    let mut out = HashMap::with_capacity(found.len());
    for message in found {
        let key = msgs.iter().find_map(|&m| {
            let client_id = m.client_msg_id.as_deref()?;
            (m.conversation_id == message.conversation_id
                && Some(client_id) == message.client_msg_id.as_deref())
            .then(|| (m.conversation_id.as_str(), client_id))
        });
        if let Some(key) = key {
            out.insert(key, message);
        }
    }
    Ok(out)
}

/// Inserts the rows and their outbox rows; returns the message and outbox
/// ids, row by row.
async fn insert_messages(
    tx: &Transaction<'_>,
    rows: &Rows<'_>,
) -> Result<Vec<(MessageId, Option<OutboxId>)>> {
    if rows.seq.is_empty() {
        return Ok(Vec::new());
    }
    let context = "inserting messages";
    let stmt = tx
        .prepare_cached(INSERT_MESSAGES)
        .await
        .map_err(db(context))?;
    let inserted = tx
        .query(
            &stmt,
            &[
                &rows.conversation,
                &rows.seq,
                &rows.sender,
                &rows.body,
                &rows.client_msg_id,
                &rows.created_at,
                &event::NEW_MESSAGE,
                &now_ms(),
            ],
        )
        .await
        .map_err(db(context))?;
    let mut by_seq: HashMap<(i64, i64), (MessageId, Option<OutboxId>)> =
        HashMap::with_capacity(inserted.len());
    for row in inserted {
        let id: MessageId = row.try_get(0).map_err(db(context))?;
        let conversation: i64 = row.try_get(1).map_err(db(context))?;
        let seq: i64 = row.try_get(2).map_err(db(context))?;
        let outbox_id: Option<OutboxId> = row.try_get(3).map_err(db(context))?;
        by_seq.insert((conversation, seq), (id, outbox_id));
    }
    rows.conversation
        .iter()
        .zip(&rows.seq)
        .map(|(&c, &s)| {
            by_seq.get(&(c, s)).copied().ok_or_else(|| {
                Error::storage_msg(format!(
                    "{context}: PostgreSQL returned no id for seq {s} of conversation row {c}"
                ))
            })
        })
        .collect()
}

async fn update_conversations(
    tx: &Transaction<'_>,
    conversations: &HashMap<&str, Conversation>,
) -> Result<()> {
    let mut ids = Vec::new();
    let mut last_seqs = Vec::new();
    let mut last_ats = Vec::new();
    for conv in conversations.values() {
        if let Some(at) = conv.last_at {
            ids.push(conv.id);
            last_seqs.push(conv.last_seq);
            last_ats.push(at);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let context = "updating conversations after an append";
    let stmt = tx
        .prepare_cached(UPDATE_CONVERSATIONS)
        .await
        .map_err(db(context))?;
    tx.execute(&stmt, &[&ids, &last_seqs, &last_ats])
        .await
        .map_err(db(context))?;
    Ok(())
}
