//! PostgreSQL store: appends go through one writer task with group commit
//! (see `writer.rs`); every other operation runs on a pooled connection, each
//! write in its own transaction (or single statement).
//!
//! URL: anything tokio-postgres accepts as `postgres://…` or
//! `postgresql://…` (e.g. `?connect_timeout=10`); connections are
//! unencrypted (no TLS connector is compiled in). The tables live in the
//! first schema of the `search_path`: pick one with
//! `?options=-csearch_path%3Dchat` or [`PostgresStore::connect_with_schema`].
//! Several processes may share one database: migrations run under an
//! advisory lock and appends lock their conversations' rows, so seqs stay
//! gap-free across nodes.

mod rows;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use self::rows::{chain, db, load_reactions, message_from_row, messages_where, MESSAGE_COLUMNS};
use self::writer::Writer;
use super::{
    apply_change, assign_slots, change_payload, check_change, check_max, keys_in, missing_message,
    no_message, now_ms, redact_url, search, slot_bit, Appended, CommitSinks, Committed,
    CommittedBody, LeaseRequest, MessageChange, OutboxId, OutboxItem, OutboxRow, ReadUpdate, Store,
    TransportSlot,
};
use crate::domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, ReadState, Seq,
    UserId,
};
use crate::error::{Error, Result};
use crate::event;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_outbox_refused.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_outbox_lease.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_delivery_slots.sql"),
    ),
];
/// The bits of every registered transport, as an SQL expression.
const REGISTERED_MASK: &str =
    "(SELECT COALESCE(bit_or(1::bigint << slot::int), 0) FROM outbox_transports)";
/// Pooled connections for reads and non-append writes (the writer has its own).
const POOL_SIZE: usize = 16;
/// Connect timeout unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Advisory lock key migrations (and schema creation) run under: "tidings\x01".
const MIGRATION_LOCK: i64 = 0x7469_6469_6e67_7301;
/// Advisory lock key outbox claims run under: "tidings\x02". Claims are
/// serialized so that one conversation's rows never go to two nodes.
const OUTBOX_LOCK: i64 = 0x7469_6469_6e67_7302;
/// Advisory lock key registry changes run under: "tidings\x03".
const REGISTRY_LOCK: i64 = 0x7469_6469_6e67_7303;
/// Longest PostgreSQL identifier.
const MAX_SCHEMA_LEN: usize = 63;

/// ASCII separators become spaces before PostgreSQL's text-search parser
/// sees a body, so `bob@example.com`, `3.14` or `a/b` yield their words (as
/// [`search::words`] does) instead of one e-mail, number or path token.
const SEARCH_VECTOR: &str = r"to_tsvector('simple', regexp_replace(m.body, '[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+', ' ', 'g'))";

/// A store in a PostgreSQL database (or one schema of it).
pub struct PostgresStore {
    pool: Pool,
    writer: Writer,
    /// The URL without password or query, for error messages.
    target: String,
    sinks: std::sync::Arc<CommitSinks>,
}

impl PostgresStore {
    /// Connects to `postgres://…`, checks the server is reachable and
    /// migrates the schema the connection's `search_path` selects.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(url, None).await
    }

    /// Like [`connect`](Self::connect), but keeps everything in `schema`
    /// (created when missing): every connection gets
    /// `options=-c search_path=<schema>`. Schema names are lower-case ASCII
    /// letters, digits and `_`, not starting with a digit or `pg_`.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        check_schema(schema)?;
        Self::open(url, Some(schema)).await
    }

    async fn open(url: &str, schema: Option<&str>) -> Result<Self> {
        let target = describe_url(url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::Config(format!("invalid PostgreSQL URL {target}: {}", chain(&e)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("tidings");
        }
        if let Some(schema) = schema {
            let options = match config.get_options() {
                Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            config.options(options);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            // Connecting, then authentication and startup.
            .create_timeout(Some(connect_timeout + CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| Error::storage("building the PostgreSQL connection pool", e))?;
        let mut client = pool.get().await.map_err(|e| Error::Storage {
            message: format!("cannot connect to PostgreSQL at {target}: {}", chain(&e)),
            source: Some(Box::new(e)),
        })?;
        migrate(&mut client, schema).await.map_err(|e| match e {
            Error::Storage { message, source } => Error::Storage {
                message: format!("PostgreSQL at {target}: {message}"),
                source,
            },
            other => other,
        })?;
        drop(client);
        let sinks = std::sync::Arc::new(CommitSinks::default());
        let writer = Writer::spawn(pool.clone(), target.clone(), sinks.clone())?;
        Ok(PostgresStore {
            pool,
            writer,
            target,
            sinks,
        })
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| Error::Storage {
            message: format!(
                "no connection to PostgreSQL at {}: {}",
                self.target,
                chain(&e)
            ),
            source: Some(Box::new(e)),
        })
    }
}

/// The URL without password and query (which may carry one), for messages.
fn describe_url(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    redact_url(url)
}

fn check_schema(schema: &str) -> Result<()> {
    let valid = !schema.is_empty()
        && schema.len() <= MAX_SCHEMA_LEN
        && !schema.starts_with("pg_")
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "PostgreSQL schema name {schema:?} is not allowed; use 1-{MAX_SCHEMA_LEN} lower-case \
             ASCII letters, digits and `_`, not starting with a digit or `pg_`"
        )))
    }
}

/// Applies the missing migrations in one transaction under an advisory
/// lock, so nodes starting together migrate once.
async fn migrate(client: &mut Object, schema: Option<&str>) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(db("starting the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("waiting for the migration lock"))?;
    if let Some(schema) = schema {
        // `schema` is checked to be a plain lower-case identifier.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| rows::pg_error(format!("creating schema {schema}"), e))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await
    .map_err(db("creating schema_migrations"))?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db("reading the schema version"))?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::storage_msg(format!(
            "the database has schema version {current}, newer than this tidings knows \
             ({newest}); upgrade tidings"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| rows::pg_error(format!("applying migration {version}"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &now_ms()],
        )
        .await
        .map_err(|e| rows::pg_error(format!("recording migration {version}"), e))?;
    }
    tx.commit().await.map_err(db("committing the migration"))
}

/// Rejects text PostgreSQL cannot store (NUL), before it reaches a statement.
fn check_storable(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(format!(
            "{what} contains a NUL character, which PostgreSQL cannot store"
        )));
    }
    Ok(())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Runs one cached statement; returns the rows it touched.
async fn execute<C: GenericClient>(
    client: &C,
    context: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let stmt = client.prepare_cached(sql).await.map_err(db(context))?;
    client.execute(&stmt, params).await.map_err(db(context))
}

fn payload_text(payload: &[u8]) -> Result<&str> {
    std::str::from_utf8(payload).map_err(|e| Error::storage("event payload is not UTF-8", e))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        // One unstorable body must not fail the whole group commit.
        check_storable("message body", &msg.body)?;
        if let Some(id) = &msg.client_msg_id {
            check_storable("client_msg_id", id)?;
        }
        self.writer.append(msg).await
    }

    async fn history(&self, conv: &ConversationId, page: PageRequest) -> Result<Page<Message>> {
        page.validate()?;
        let client = self.client().await?;
        let before = page.before.unwrap_or(i64::MAX);
        let limit = i64::from(page.limit);
        let mut items = messages_where(
            &client,
            "c.key = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3",
            &[&conv.as_str(), &before, &(limit + 1)],
        )
        .await?;
        let more = items.len() > page.limit as usize;
        items.truncate(page.limit as usize);
        load_reactions(&client, &mut items).await?;
        let next_before = more.then(|| items.last().map(|m| m.seq)).flatten();
        Ok(Page { items, next_before })
    }

    async fn messages_after(
        &self,
        conv: &ConversationId,
        after: Seq,
        max: u32,
    ) -> Result<Vec<Message>> {
        check_max(max)?;
        let client = self.client().await?;
        let mut items = messages_where(
            &client,
            "c.key = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3",
            &[&conv.as_str(), &after, &i64::from(max)],
        )
        .await?;
        load_reactions(&client, &mut items).await?;
        Ok(items)
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>> {
        let client = self.client().await?;
        let mut found = messages_where(&client, "m.id = $1", &[&id]).await?;
        load_reactions(&client, &mut found).await?;
        Ok(found.pop())
    }

    async fn last_seq(&self, conv: &ConversationId) -> Result<Seq> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT last_seq FROM conversations WHERE key = $1")
            .await
            .map_err(db("reading the last seq"))?;
        let row = client
            .query_opt(&stmt, &[&conv.as_str()])
            .await
            .map_err(db("reading the last seq"))?;
        match row {
            Some(row) => row.try_get(0).map_err(db("reading the last seq")),
            None => Ok(0),
        }
    }

    async fn mark_read(
        &self,
        conv: &ConversationId,
        user: &UserId,
        up_to: Seq,
    ) -> Result<ReadUpdate> {
        let context = "marking read";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT c.id, c.last_seq, COALESCE(r.seq, 0) FROM conversations c
                 LEFT JOIN read_state r ON r.conversation = c.id AND r.user_id = $2
                 WHERE c.key = $1",
            )
            .await
            .map_err(db(context))?;
        let found = client
            .query_opt(&stmt, &[&conv.as_str(), &user.as_str()])
            .await
            .map_err(db(context))?;
        let state = |seq| ReadState {
            conversation_id: conv.clone(),
            user_id: user.clone(),
            seq,
        };
        let Some(row) = found else {
            return Ok(ReadUpdate {
                state: state(0),
                advanced: false,
            });
        };
        let get = |i| row.try_get::<_, i64>(i).map_err(db(context));
        let (row_id, last_seq, old) = (get(0)?, get(1)?, get(2)?);
        let seq = up_to.min(last_seq);
        if seq <= old {
            return Ok(ReadUpdate {
                state: state(old),
                advanced: false,
            });
        }
        let payload = event::to_payload(&event::MessagesRead {
            conversation_id: conv.clone(),
            user_id: user.clone(),
            seq,
        });
        // One statement: the mark moves only forward, and the event is
        // queued exactly when it moved.
        let stmt = client
            .prepare_cached(&format!(
                "WITH advanced AS (
                     INSERT INTO read_state (conversation, user_id, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (conversation, user_id) DO UPDATE SET seq = EXCLUDED.seq
                     WHERE read_state.seq < EXCLUDED.seq
                     RETURNING seq
                 ), queued AS (
                     INSERT INTO outbox (conversation, event, payload, pending, queued_at)
                     SELECT $1, $4, $5, r.mask, $6 FROM advanced, (SELECT {REGISTERED_MASK} AS mask) r
                     WHERE r.mask <> 0
                     RETURNING id
                 )
                 SELECT (SELECT count(*) FROM advanced), (SELECT id FROM queued)"
            ))
            .await
            .map_err(db(context))?;
        let written = client
            .query_one(
                &stmt,
                &[
                    &row_id,
                    &user.as_str(),
                    &seq,
                    &event::MESSAGES_READ,
                    &payload_text(&payload)?,
                    &now_ms(),
                ],
            )
            .await
            .map_err(db(context))?;
        let advanced: i64 = written.try_get(0).map_err(db(context))?;
        if advanced > 0 {
            self.sinks.publish(vec![Committed {
                outbox_id: written.try_get(1).map_err(db(context))?,
                conversation_id: conv.clone(),
                event: event::MESSAGES_READ,
                body: CommittedBody::Payload(payload),
            }]);
            return Ok(ReadUpdate {
                state: state(seq),
                advanced: true,
            });
        }
        // A concurrent mark went at least as far.
        let now = client
            .query_one(
                "SELECT seq FROM read_state WHERE conversation = $1 AND user_id = $2",
                &[&row_id, &user.as_str()],
            )
            .await
            .and_then(|row| row.try_get::<_, i64>(0))
            .map_err(db(context))?;
        Ok(ReadUpdate {
            state: state(now.max(old)),
            advanced: false,
        })
    }

    async fn unread(&self, conv: &ConversationId, user: &UserId) -> Result<(ReadState, u64)> {
        let context = "counting unread messages";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COALESCE(r.seq, 0),
                        (SELECT COUNT(*) FROM messages m
                         WHERE m.conversation = c.id AND m.seq > COALESCE(r.seq, 0)
                           AND m.sender <> $2 AND m.deleted_at IS NULL)
                 FROM conversations c
                 LEFT JOIN read_state r ON r.conversation = c.id AND r.user_id = $2
                 WHERE c.key = $1",
            )
            .await
            .map_err(db(context))?;
        let found = client
            .query_opt(&stmt, &[&conv.as_str(), &user.as_str()])
            .await
            .map_err(db(context))?;
        let (seq, unread) = match found {
            Some(row) => (
                row.try_get::<_, i64>(0).map_err(db(context))?,
                count(row.try_get(1).map_err(db(context))?),
            ),
            None => (0, 0),
        };
        Ok((
            ReadState {
                conversation_id: conv.clone(),
                user_id: user.clone(),
                seq,
            },
            unread,
        ))
    }

    async fn inbox(&self, user: &UserId, limit: u32) -> Result<Vec<InboxEntry>> {
        check_max(limit)?;
        let context = "reading the inbox";
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS}, top.read_seq,
                        (SELECT COUNT(*) FROM messages u
                         WHERE u.conversation = c.id AND u.seq > top.read_seq
                           AND u.sender <> $1 AND u.deleted_at IS NULL)
                 FROM (
                     SELECT c.id AS conversation, m.id AS message, COALESCE(r.seq, 0) AS read_seq
                     FROM conversations c
                     JOIN messages m ON m.conversation = c.id AND m.seq = c.last_seq
                     LEFT JOIN read_state r ON r.conversation = c.id AND r.user_id = $1
                     WHERE (c.user_lo = $1 OR c.user_hi = $1) AND c.last_seq > 0
                     ORDER BY m.created_at DESC, m.id DESC
                     LIMIT $2
                 ) top
                 JOIN conversations c ON c.id = top.conversation
                 JOIN messages m ON m.id = top.message
                 ORDER BY m.created_at DESC, m.id DESC"
            ))
            .await
            .map_err(db(context))?;
        let rows = client
            .query(&stmt, &[&user.as_str(), &i64::from(limit)])
            .await
            .map_err(db(context))?;
        let mut last_messages = Vec::with_capacity(rows.len());
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            last_messages.push(message_from_row(row, &mut None)?);
            counts.push((
                row.try_get::<_, i64>(9).map_err(db(context))?,
                count(row.try_get(10).map_err(db(context))?),
            ));
        }
        load_reactions(&client, &mut last_messages).await?;
        let mut entries = Vec::with_capacity(last_messages.len());
        for (last_message, (last_read_seq, unread_count)) in last_messages.into_iter().zip(counts) {
            let Some(peer) = last_message.conversation_id.peer_of(user).cloned() else {
                continue;
            };
            entries.push(InboxEntry {
                conversation_id: last_message.conversation_id.clone(),
                peer_id: peer,
                last_message,
                unread_count,
                last_read_seq,
            });
        }
        Ok(entries)
    }

    async fn search(&self, user: &UserId, query: &str, max: u32) -> Result<Vec<Message>> {
        check_max(max)?;
        let words = search::query_words(query)?;
        let terms = words.join(" ");
        let client = self.client().await?;
        let clause = format!(
            "(c.user_lo = $1 OR c.user_hi = $1) AND m.deleted_at IS NULL AND m.id < $3
             AND {SEARCH_VECTOR} @@ plainto_tsquery('simple', $2)
             ORDER BY m.id DESC LIMIT $4"
        );
        let limit = i64::from(max);
        let mut found = Vec::new();
        let mut below = MessageId::MAX;
        // The text-search parser may match more than the word rule (never
        // less for what it can tokenize): page on until `max` pass the rule.
        loop {
            let batch =
                messages_where(&client, &clause, &[&user.as_str(), &terms, &below, &limit]).await?;
            let exhausted = batch.len() < max as usize;
            if let Some(last) = batch.last() {
                below = last.id;
            }
            found.extend(
                batch
                    .into_iter()
                    .filter(|m| search::matches(&m.body, &words)),
            );
            if exhausted || found.len() >= max as usize {
                break;
            }
        }
        found.truncate(max as usize);
        load_reactions(&client, &mut found).await?;
        Ok(found)
    }

    async fn change(
        &self,
        id: MessageId,
        user: &UserId,
        change: MessageChange,
        at: i64,
    ) -> Result<Message> {
        if let MessageChange::Edit { body } = &change {
            check_storable("message body", body)?;
        }
        let context = "changing a message";
        let mut client = self.client().await?;
        // Dropping `tx` on an early return rolls it back.
        let tx = client.transaction().await.map_err(db(context))?;
        let mut found = messages_where(&tx, "m.id = $1 FOR UPDATE OF m", &[&id]).await?;
        load_reactions(&tx, &mut found).await?;
        let mut message = found.pop().ok_or_else(|| no_message(id))?;
        check_change(&message, user, &change)?;
        match &change {
            MessageChange::Edit { body } => {
                let sql = "UPDATE messages SET body = $2, edited_at = $3 WHERE id = $1";
                execute(&tx, context, sql, &[&id, body, &at]).await?;
            }
            MessageChange::Delete => {
                let sql = "UPDATE messages SET body = '', deleted_at = $2 WHERE id = $1";
                execute(&tx, context, sql, &[&id, &at]).await?;
                let sql = "DELETE FROM reactions WHERE message = $1";
                execute(&tx, context, sql, &[&id]).await?;
            }
            MessageChange::React { emoji } => {
                let sql = "INSERT INTO reactions (message, user_id, emoji, created_at)
                           VALUES ($1, $2, $3, $4)
                           ON CONFLICT (message, user_id) DO UPDATE SET emoji = EXCLUDED.emoji";
                execute(&tx, context, sql, &[&id, &user.as_str(), emoji, &at]).await?;
            }
            MessageChange::Unreact => {
                let sql = "DELETE FROM reactions WHERE message = $1 AND user_id = $2";
                execute(&tx, context, sql, &[&id, &user.as_str()]).await?;
            }
        }
        let event_name = apply_change(&mut message, user, change, at);
        let payload = change_payload(&message, user, event_name);
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO outbox (conversation, event, message, payload, pending, queued_at)
                 SELECT m.conversation, $2, m.id, $3, r.mask, $4
                 FROM messages m, (SELECT {REGISTERED_MASK} AS mask) r
                 WHERE m.id = $1 AND r.mask <> 0
                 RETURNING id"
            ))
            .await
            .map_err(db("writing the outbox"))?;
        let queued = tx
            .query_opt(
                &stmt,
                &[&id, &event_name, &payload_text(&payload)?, &now_ms()],
            )
            .await
            .map_err(db("writing the outbox"))?;
        let outbox_id: Option<OutboxId> = match queued {
            Some(row) => Some(row.try_get(0).map_err(db("writing the outbox"))?),
            None => None,
        };
        tx.commit().await.map_err(db(context))?;
        self.sinks.publish(vec![Committed {
            outbox_id,
            conversation_id: message.conversation_id.clone(),
            event: event_name,
            body: CommittedBody::Payload(payload),
        }]);
        Ok(message)
    }

    async fn register_transports(&self, keys: &[String]) -> Result<Vec<TransportSlot>> {
        let context = "registering transports";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db(context))?;
        // Serialized with other nodes registering, so slots never collide.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])
            .await
            .map_err(db(context))?;
        let registry = read_registry(&tx).await?;
        let (slots, added) = assign_slots(&registry, keys)?;
        for (key, slot) in &added {
            tx.execute(
                "INSERT INTO outbox_transports (slot, key) VALUES ($1, $2)",
                &[&i16::from(*slot), key],
            )
            .await
            .map_err(db(context))?;
        }
        tx.commit().await.map_err(db(context))?;
        Ok(slots)
    }

    async fn forget_transport(&self, key: &str) -> Result<bool> {
        let context = "forgetting a transport";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db(context))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK])
            .await
            .map_err(db(context))?;
        let registry = read_registry(&tx).await?;
        let Some((_, slot)) = registry.iter().find(|(k, _)| k == key) else {
            return Ok(false);
        };
        let bit = slot_bit(*slot);
        let mask = registry
            .iter()
            .filter(|(k, _)| k != key)
            .fold(0, |m, (_, s)| m | slot_bit(*s));
        tx.execute("DELETE FROM outbox_transports WHERE key = $1", &[&key])
            .await
            .map_err(db(context))?;
        tx.execute(
            "UPDATE outbox SET pending = pending & ~$1::bigint, refused_by = refused_by & ~$1::bigint
             WHERE (pending | refused_by) & $1::bigint <> 0",
            &[&bit],
        )
        .await
        .map_err(db(context))?;
        tx.execute(
            "DELETE FROM outbox WHERE pending & $1::bigint = 0 AND refused_by = 0",
            &[&mask],
        )
        .await
        .map_err(db(context))?;
        tx.commit().await.map_err(db(context))?;
        Ok(true)
    }

    fn commit_sinks(&self) -> &CommitSinks {
        &self.sinks
    }

    async fn lease_outbox(&self, request: LeaseRequest<'_>) -> Result<Vec<OutboxItem>> {
        check_max(request.max)?;
        check_storable("outbox owner", request.owner)?;
        let context = "leasing the outbox";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db(context))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OUTBOX_LOCK])
            .await
            .map_err(db("waiting for the outbox claim lock"))?;
        let now = now_ms();
        let until = now.saturating_add(super::lease_ms(request.lease));
        let queued_before = now.saturating_sub(super::duration_ms(request.min_age));
        // A new statement after the lock: its snapshot sees every lease
        // committed by earlier claims. SKIP LOCKED passes over rows being
        // acknowledged or failed right now.
        let stmt = tx
            .prepare_cached(
                "WITH busy AS (
                     SELECT DISTINCT conversation FROM outbox
                     WHERE pending <> 0 AND lease_until > $3 AND lease_owner <> $1
                 ), picked AS (
                     SELECT o.id FROM outbox o
                     WHERE o.pending & $5 <> 0 AND o.queued_at <= $6
                       AND o.conversation NOT IN (SELECT conversation FROM busy)
                     ORDER BY o.id LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE outbox o SET lease_owner = $1, lease_until = $2
                 FROM picked, conversations c
                 WHERE o.id = picked.id AND c.id = o.conversation
                 RETURNING o.id, c.key, o.event, o.payload, o.message",
            )
            .await
            .map_err(db(context))?;
        let rows = tx
            .query(
                &stmt,
                &[
                    &request.owner,
                    &until,
                    &now,
                    &i64::from(request.max),
                    &slot_bit(request.slot),
                    &queued_before,
                ],
            )
            .await
            .map_err(db(context))?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = db(context);
            claimed.push((
                row.try_get::<_, OutboxId>(0).map_err(&get)?,
                row.try_get::<_, &str>(1).map_err(&get)?,
                row.try_get::<_, String>(2).map_err(&get)?,
                row.try_get::<_, Option<String>>(3).map_err(&get)?,
                row.try_get::<_, Option<MessageId>>(4).map_err(&get)?,
            ));
        }
        claimed.sort_unstable_by_key(|r| r.0);
        let (items, missing) = outbox_items(&tx, claimed).await?;
        for (id, message) in missing {
            // Reported, never delivered empty.
            let reason = missing_message(message);
            tracing::error!(outbox_id = id, %reason, "an outbox row cannot be delivered; it is kept as refused");
            tx.execute(
                "UPDATE outbox SET refused_by = refused_by | pending, pending = 0, last_error = $2
                 WHERE id = $1",
                &[&id, &reason],
            )
            .await
            .map_err(db(context))?;
        }
        tx.commit().await.map_err(db(context))?;
        Ok(items)
    }

    async fn release_outbox(&self, owner: &str) -> Result<()> {
        check_storable("outbox owner", owner)?;
        let client = self.client().await?;
        execute(
            &client,
            "releasing outbox leases",
            "UPDATE outbox SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1",
            &[&owner],
        )
        .await?;
        Ok(())
    }

    async fn ack_outbox(&self, slot: TransportSlot, ids: &[OutboxId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let context = "acknowledging deliveries";
        let client = self.client().await?;
        // One statement: the last transport's ack removes the row, an
        // earlier one clears its bit.
        let stmt = client
            .prepare_cached(&format!(
                "WITH gone AS (
                     DELETE FROM outbox WHERE id = ANY($1::bigint[])
                       AND pending & ~$2::bigint & {REGISTERED_MASK} = 0 AND refused_by = 0
                     RETURNING id
                 )
                 UPDATE outbox SET pending = pending & ~$2::bigint
                 WHERE id = ANY($1::bigint[]) AND id NOT IN (SELECT id FROM gone)"
            ))
            .await
            .map_err(db(context))?;
        client
            .execute(&stmt, &[&ids, &slot_bit(slot)])
            .await
            .map_err(db(context))?;
        Ok(())
    }

    async fn fail_outbox(
        &self,
        slot: TransportSlot,
        id: OutboxId,
        error: &str,
        refused: bool,
    ) -> Result<()> {
        // A transport's error text could hold a NUL; keep the rest of it.
        let error = error.replace('\0', "\u{fffd}");
        let bit = if refused { slot_bit(slot) } else { 0 };
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                 pending = pending & ~$3::bigint, refused_by = refused_by | $3::bigint
                 WHERE id = $1",
            )
            .await
            .map_err(db("recording a failed delivery"))?;
        client
            .execute(&stmt, &[&id, &error, &bit])
            .await
            .map_err(db("recording a failed delivery"))?;
        Ok(())
    }

    async fn list_outbox(&self, max: u32) -> Result<Vec<OutboxRow>> {
        check_max(max)?;
        let context = "listing the outbox";
        let client = self.client().await?;
        let registry = read_registry(&client).await?;
        let mask = registry.iter().fold(0, |m, (_, s)| m | slot_bit(*s));
        let stmt = client
            .prepare_cached(
                "SELECT o.id, c.key, o.event, o.pending, o.attempts, o.last_error, o.refused_by
                 FROM outbox o JOIN conversations c ON c.id = o.conversation
                 WHERE o.pending & $2 <> 0 OR o.refused_by <> 0
                 ORDER BY o.id LIMIT $1",
            )
            .await
            .map_err(db(context))?;
        let rows = client
            .query(&stmt, &[&i64::from(max), &mask])
            .await
            .map_err(db(context))?;
        rows.iter()
            .map(|row| {
                let get = db(context);
                let key: &str = row.try_get(1).map_err(&get)?;
                let attempts: i32 = row.try_get(4).map_err(&get)?;
                let refused_by: i64 = row.try_get(6).map_err(&get)?;
                Ok(OutboxRow {
                    id: row.try_get(0).map_err(&get)?,
                    conversation_id: ConversationId::parse(key)?,
                    event: row.try_get(2).map_err(&get)?,
                    pending_for: keys_in(&registry, row.try_get(3).map_err(&get)?),
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    last_error: row.try_get(5).map_err(&get)?,
                    refused: refused_by != 0,
                })
            })
            .collect()
    }
}

/// The registered transports, `(key, slot)`.
async fn read_registry<C: GenericClient>(client: &C) -> Result<Vec<(String, TransportSlot)>> {
    let context = "reading the transport registry";
    let rows = client
        .query("SELECT key, slot FROM outbox_transports ORDER BY slot", &[])
        .await
        .map_err(db(context))?;
    rows.iter()
        .map(|row| {
            let slot: i16 = row.try_get(1).map_err(db(context))?;
            Ok((
                row.try_get(0).map_err(db(context))?,
                TransportSlot::try_from(slot).unwrap_or(0),
            ))
        })
        .collect()
}

/// A claimed outbox row: id, conversation key, event, payload, message.
type ClaimedRow<'a> = (OutboxId, &'a str, String, Option<String>, Option<MessageId>);

/// Outbox rows as items: `new-message` rows carry no payload, so it is built
/// from their messages. Rows whose message is gone come back apart, as
/// `(row id, message id)`.
async fn outbox_items<C: GenericClient>(
    client: &C,
    claimed: Vec<ClaimedRow<'_>>,
) -> Result<(Vec<OutboxItem>, Vec<(OutboxId, Option<MessageId>)>)> {
    let wanted: Vec<MessageId> = claimed
        .iter()
        .filter(|r| r.3.is_none())
        .filter_map(|r| r.4)
        .collect();
    let mut messages = Vec::new();
    if !wanted.is_empty() {
        messages = messages_where(client, "m.id = ANY($1::bigint[])", &[&wanted]).await?;
        load_reactions(client, &mut messages).await?;
    }
    let by_id: std::collections::HashMap<MessageId, &Message> =
        messages.iter().map(|m| (m.id, m)).collect();
    let mut conversation: Option<ConversationId> = None;
    let mut items = Vec::with_capacity(claimed.len());
    let mut missing = Vec::new();
    for (id, key, event, payload, message) in claimed {
        let conversation_id = match &conversation {
            Some(c) if c.as_str() == key => c.clone(),
            _ => {
                let parsed = ConversationId::parse(key)?;
                conversation = Some(parsed.clone());
                parsed
            }
        };
        let payload = match payload {
            Some(p) => Bytes::from(p),
            None => match message.and_then(|m| by_id.get(&m)) {
                Some(m) => event::message_payload(m),
                None => {
                    missing.push((id, message));
                    continue;
                }
            },
        };
        items.push(OutboxItem {
            id,
            conversation_id,
            event,
            payload,
        });
    }
    Ok((items, missing))
}
