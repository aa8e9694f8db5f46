//! Embedded SQLite store: WAL, one writer thread with group commit
//! ([`writer`]), a small pool of reader connections on the blocking pool.
//!
//! URL: `sqlite://PATH` (relative or, with a third slash, absolute), with an
//! optional `?synchronous=full` for an fsync per commit. The default,
//! `normal`, keeps every acknowledged message across a process crash; a
//! power loss may take the last commits.

mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags};

use self::rows::{conversation_row, db, load_reactions, messages_where};
use self::writer::{message_for_change, Writer};
use super::{
    apply_change, assign_slots, change_payload, check_change, check_max, keys_in, missing_message,
    no_message, search, slot_bit, Appended, CommitSinks, Committed, CommittedBody, LeaseRequest,
    MessageChange, OutboxId, OutboxItem, OutboxRow, ReadUpdate, Store, TransportSlot,
};
use crate::domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, ReadState, Seq,
    UserId,
};
use crate::error::{Error, Result};
use crate::event;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_outbox_refused.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_outbox_lease.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_delivery_slots.sql"),
    ),
];
/// Idle reader connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// A store in one SQLite file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<ReaderPool>,
    sinks: Arc<CommitSinks>,
}

impl SqliteStore {
    /// Opens `sqlite://PATH[?synchronous=normal|full]`.
    pub async fn open_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| Error::Config(format!("{url:?} is not a sqlite: URL")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut synchronous = "NORMAL";
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", v)) if v.eq_ignore_ascii_case("full") => synchronous = "FULL",
                Some(("synchronous", v)) if v.eq_ignore_ascii_case("normal") => {
                    synchronous = "NORMAL"
                }
                _ => {
                    return Err(Error::Config(format!(
                        "unknown SQLite URL option {pair:?}; known: synchronous=normal|full"
                    )))
                }
            }
        }
        if path.is_empty() || path == ":memory:" {
            return Err(Error::Config(
                "an SQLite store needs a file path (sqlite://PATH); use memory: for a store in memory"
                    .into(),
            ));
        }
        Self::open(PathBuf::from(path), synchronous).await
    }

    /// Opens (creating and migrating) the database file at `path`.
    pub async fn open(path: PathBuf, synchronous: &'static str) -> Result<Self> {
        let opened = tokio::task::spawn_blocking(move || -> Result<(Connection, PathBuf)> {
            #[cfg(unix)]
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            // What tidings creates is its owner's only: directories 0700,
            // the database 0600 whatever the umask. SQLite gives the -wal
            // and -shm files the database's mode; they are set once more
            // below. Existing files and directories keep their modes.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(dir).map_err(|e| {
                    Error::storage(format!("creating the directory {}", dir.display()), e)
                })?;
            }
            #[cfg(unix)]
            let private = || std::fs::Permissions::from_mode(0o600);
            #[cfg(unix)]
            let created = {
                let creating = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path);
                match creating {
                    Ok(_) => {
                        std::fs::set_permissions(&path, private()).map_err(|e| {
                            Error::storage(format!("making {} private", path.display()), e)
                        })?;
                        true
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(e) => {
                        return Err(Error::storage(
                            format!("creating SQLite database {}", path.display()),
                            e,
                        ))
                    }
                }
            };
            let conn = Connection::open(&path).map_err(|e| {
                Error::storage(format!("opening SQLite database {}", path.display()), e)
            })?;
            configure_writer(&conn, synchronous)
                .and_then(|()| migrate(&conn))
                .map_err(|e| match e {
                    Error::Storage { message, source } => Error::Storage {
                        message: format!("{}: {message}", path.display()),
                        source,
                    },
                    other => other,
                })?;
            #[cfg(unix)]
            if created {
                for suffix in ["-wal", "-shm"] {
                    let mut side = path.clone().into_os_string();
                    side.push(suffix);
                    match std::fs::set_permissions(&side, private()) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(Error::storage(
                                format!("making {} private", PathBuf::from(side).display()),
                                e,
                            ))
                        }
                        _ => {}
                    }
                }
            }
            Ok((conn, path))
        })
        .await
        .map_err(|e| Error::storage("opening SQLite", e))??;
        let (conn, path) = opened;
        let sinks = Arc::new(CommitSinks::default());
        let writer = Writer::spawn(conn, "tidings-sqlite-writer".into(), sinks.clone())?;
        Ok(SqliteStore {
            writer,
            readers: Arc::new(ReaderPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            sinks,
        })
    }

    /// Runs `f` on a reader connection off the async worker threads.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| Error::storage("SQLite read task", e))?
    }

    /// Indexes every message not yet in the full-text index.
    async fn catch_up_search_index(&self) -> Result<()> {
        self.writer
            .write(|conn| {
                let upto: i64 = conn
                    .query_row("SELECT indexed_upto FROM search_progress", [], |r| r.get(0))
                    .map_err(db("reading search progress"))?;
                let newest: i64 = conn
                    .query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| r.get(0))
                    .map_err(db("reading search progress"))?;
                if newest > upto {
                    conn.execute(
                        "INSERT INTO search_index (rowid, body)
                         SELECT id, body FROM messages WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL",
                        params![upto, newest],
                    )
                    .map_err(db("indexing messages for search"))?;
                    conn.execute("UPDATE search_progress SET indexed_upto = ?1", [newest])
                        .map_err(db("indexing messages for search"))?;
                }
                Ok(())
            })
            .await
    }
}

fn configure_writer(conn: &Connection, synchronous: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA page_size = 1024;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA wal_autocheckpoint = 16384;
         PRAGMA cache_size = -16384;
         PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = OFF;"
    ))
    .map_err(db("configuring the database"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("reading the schema version"))?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::storage_msg(format!(
            "the database has schema version {current}, newer than this tidings knows ({newest}); \
             upgrade tidings"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}\n; PRAGMA user_version = {version}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            Error::storage(format!("applying migration {version}"), e)
        })?;
    }
    Ok(())
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.lock().pop() {
            return Ok(conn);
        }
        open_reader(&self.path)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::storage(format!("opening SQLite database {}", path.display()), e))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")
        .map_err(db("configuring a reader"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The read mark and unread count of one user in one conversation row.
fn unread_in(conn: &Connection, conv: i64, user: &str) -> Result<(Seq, u64)> {
    let read: Seq = conn
        .prepare_cached("SELECT seq FROM read_state WHERE conversation = ?1 AND user_id = ?2")
        .and_then(|mut s| {
            use rusqlite::OptionalExtension;
            s.query_row(params![conv, user], |r| r.get(0)).optional()
        })
        .map_err(db("reading read state"))?
        .unwrap_or(0);
    let unread: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM messages WHERE conversation = ?1 AND seq > ?2
             AND sender <> ?3 AND deleted_at IS NULL",
        )
        .and_then(|mut s| s.query_row(params![conv, read, user], |r| r.get(0)))
        .map_err(db("counting unread messages"))?;
    Ok((read, unread as u64))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn append(&self, msg: NewMessage) -> Result<Appended> {
        self.writer.append(msg).await
    }

    async fn history(&self, conv: &ConversationId, page: PageRequest) -> Result<Page<Message>> {
        page.validate()?;
        let key = conv.as_str().to_owned();
        self.read(move |conn| {
            let Some((row, _)) = conversation_row(conn, &key)? else {
                return Ok(Page {
                    items: Vec::new(),
                    next_before: None,
                });
            };
            let before = page.before.unwrap_or(i64::MAX);
            let mut items = messages_where(
                conn,
                "m.conversation = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
                params![row, before, page.limit + 1],
            )?;
            let more = items.len() > page.limit as usize;
            items.truncate(page.limit as usize);
            load_reactions(conn, &mut items)?;
            let next_before = more.then(|| items.last().map(|m| m.seq)).flatten();
            Ok(Page { items, next_before })
        })
        .await
    }

    async fn messages_after(
        &self,
        conv: &ConversationId,
        after: Seq,
        max: u32,
    ) -> Result<Vec<Message>> {
        check_max(max)?;
        let key = conv.as_str().to_owned();
        self.read(move |conn| {
            let Some((row, _)) = conversation_row(conn, &key)? else {
                return Ok(Vec::new());
            };
            let mut items = messages_where(
                conn,
                "m.conversation = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3",
                params![row, after, max],
            )?;
            load_reactions(conn, &mut items)?;
            Ok(items)
        })
        .await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>> {
        self.read(move |conn| message_for_change(conn, id)).await
    }

    async fn last_seq(&self, conv: &ConversationId) -> Result<Seq> {
        let key = conv.as_str().to_owned();
        self.read(move |conn| Ok(conversation_row(conn, &key)?.map_or(0, |(_, seq)| seq)))
            .await
    }

    async fn mark_read(
        &self,
        conv: &ConversationId,
        user: &UserId,
        up_to: Seq,
    ) -> Result<ReadUpdate> {
        let (conv, user) = (conv.clone(), user.clone());
        let registered = self.writer.registered();
        self.writer
            .write_events(move |conn, events| {
                let Some((row, last_seq)) = conversation_row(conn, conv.as_str())? else {
                    return Ok(ReadUpdate {
                        state: ReadState {
                            conversation_id: conv,
                            user_id: user,
                            seq: 0,
                        },
                        advanced: false,
                    });
                };
                let (old, _) = unread_in(conn, row, user.as_str())?;
                let seq = old.max(up_to.min(last_seq));
                let state = ReadState {
                    conversation_id: conv,
                    user_id: user,
                    seq,
                };
                if seq <= old {
                    return Ok(ReadUpdate {
                        state,
                        advanced: false,
                    });
                }
                conn.prepare_cached(
                    "INSERT INTO read_state (conversation, user_id, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation, user_id) DO UPDATE SET seq = excluded.seq",
                )
                .and_then(|mut s| s.execute(params![row, state.user_id.as_str(), seq]))
                .map_err(db("marking read"))?;
                let payload = event::to_payload(&event::MessagesRead {
                    conversation_id: state.conversation_id.clone(),
                    user_id: state.user_id.clone(),
                    seq,
                });
                let mask = registered.load(std::sync::atomic::Ordering::Acquire);
                let outbox_id =
                    insert_outbox(conn, row, event::MESSAGES_READ, None, &payload, mask)?;
                events.push(Committed {
                    outbox_id,
                    conversation_id: state.conversation_id.clone(),
                    event: event::MESSAGES_READ,
                    body: CommittedBody::Payload(payload),
                });
                Ok(ReadUpdate {
                    state,
                    advanced: true,
                })
            })
            .await
    }

    async fn unread(&self, conv: &ConversationId, user: &UserId) -> Result<(ReadState, u64)> {
        let (conv, user) = (conv.clone(), user.clone());
        self.read(move |conn| {
            let (seq, unread) = match conversation_row(conn, conv.as_str())? {
                Some((row, _)) => unread_in(conn, row, user.as_str())?,
                None => (0, 0),
            };
            Ok((
                ReadState {
                    conversation_id: conv,
                    user_id: user,
                    seq,
                },
                unread,
            ))
        })
        .await
    }

    async fn inbox(&self, user: &UserId, limit: u32) -> Result<Vec<InboxEntry>> {
        check_max(limit)?;
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, last_seq FROM conversations
                     WHERE (user_lo = ?1 OR user_hi = ?1) AND last_seq > 0
                     ORDER BY last_at DESC, id DESC LIMIT ?2",
                )
                .map_err(db("reading the inbox"))?;
            let convs: Vec<(i64, i64)> = stmt
                .query_map(params![user.as_str(), limit], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(db("reading the inbox"))?;
            let mut entries = Vec::with_capacity(convs.len());
            for (row, last_seq) in convs {
                let mut last = messages_where(
                    conn,
                    "m.conversation = ?1 AND m.seq = ?2",
                    params![row, last_seq],
                )?;
                load_reactions(conn, &mut last)?;
                let Some(last_message) = last.pop() else {
                    continue;
                };
                let (last_read_seq, unread_count) = unread_in(conn, row, user.as_str())?;
                let Some(peer) = last_message.conversation_id.peer_of(&user).cloned() else {
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
        })
        .await
    }

    async fn search(&self, user: &UserId, query: &str, max: u32) -> Result<Vec<Message>> {
        check_max(max)?;
        let words = search::query_words(query)?;
        self.catch_up_search_index().await?;
        // Words are letters and digits only, so quoting them is enough.
        let expr = words
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let user = user.clone();
        self.read(move |conn| {
            let mut found = messages_where(
                conn,
                "m.id IN (SELECT rowid FROM search_index WHERE search_index MATCH ?1)
                 AND (c.user_lo = ?2 OR c.user_hi = ?2) AND m.deleted_at IS NULL
                 ORDER BY m.id DESC LIMIT ?3",
                params![expr, user.as_str(), max],
            )?;
            // The index folds case like our word rule but may split words
            // differently in rare scripts; the shared rule has the last word.
            found.retain(|m| search::matches(&m.body, &words));
            load_reactions(conn, &mut found)?;
            Ok(found)
        })
        .await
    }

    async fn change(
        &self,
        id: MessageId,
        user: &UserId,
        change: MessageChange,
        at: i64,
    ) -> Result<Message> {
        let user = user.clone();
        let registered = self.writer.registered();
        self.writer
            .write_events(move |conn, events| {
                let mut message = message_for_change(conn, id)?.ok_or_else(|| no_message(id))?;
                check_change(&message, &user, &change)?;
                let sql_db = db("changing a message");
                match &change {
                    MessageChange::Edit { body } => {
                        conn.prepare_cached(
                            "UPDATE messages SET body = ?2, edited_at = ?3 WHERE id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![id, body, at]))
                        .map_err(&sql_db)?;
                        reindex(conn, id, Some(body))?;
                    }
                    MessageChange::Delete => {
                        conn.prepare_cached(
                            "UPDATE messages SET body = '', deleted_at = ?2 WHERE id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![id, at]))
                        .map_err(&sql_db)?;
                        conn.prepare_cached("DELETE FROM reactions WHERE message = ?1")
                            .and_then(|mut s| s.execute([id]))
                            .map_err(&sql_db)?;
                        reindex(conn, id, None)?;
                    }
                    MessageChange::React { emoji } => {
                        conn.prepare_cached(
                            "INSERT INTO reactions (message, user_id, emoji, created_at)
                             VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (message, user_id) DO UPDATE SET emoji = excluded.emoji",
                        )
                        .and_then(|mut s| s.execute(params![id, user.as_str(), emoji, at]))
                        .map_err(&sql_db)?;
                    }
                    MessageChange::Unreact => {
                        conn.prepare_cached(
                            "DELETE FROM reactions WHERE message = ?1 AND user_id = ?2",
                        )
                        .and_then(|mut s| s.execute(params![id, user.as_str()]))
                        .map_err(&sql_db)?;
                    }
                }
                let event_name = apply_change(&mut message, &user, change, at);
                let payload = change_payload(&message, &user, event_name);
                let (row, _) = conversation_row(conn, message.conversation_id.as_str())?
                    .ok_or_else(|| no_message(id))?;
                let mask = registered.load(std::sync::atomic::Ordering::Acquire);
                let outbox_id = insert_outbox(conn, row, event_name, Some(id), &payload, mask)?;
                events.push(Committed {
                    outbox_id,
                    conversation_id: message.conversation_id.clone(),
                    event: event_name,
                    body: CommittedBody::Payload(payload),
                });
                Ok(message)
            })
            .await
    }

    async fn register_transports(&self, keys: &[String]) -> Result<Vec<TransportSlot>> {
        let keys = keys.to_vec();
        let registered = self.writer.registered();
        self.writer
            .write(move |conn| {
                let registry = read_registry(conn)?;
                let (slots, added) = assign_slots(&registry, &keys)?;
                let mut insert = conn
                    .prepare_cached("INSERT INTO outbox_transports (slot, key) VALUES (?1, ?2)")
                    .map_err(db("registering a transport"))?;
                for (key, slot) in &added {
                    insert
                        .execute(params![slot, key])
                        .map_err(db("registering a transport"))?;
                }
                let mask = registry
                    .iter()
                    .chain(&added)
                    .fold(0, |m, (_, s)| m | slot_bit(*s));
                registered.store(mask, std::sync::atomic::Ordering::Release);
                Ok(slots)
            })
            .await
    }

    async fn forget_transport(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        let registered = self.writer.registered();
        self.writer
            .write(move |conn| {
                let registry = read_registry(conn)?;
                let Some((_, slot)) = registry.iter().find(|(k, _)| *k == key) else {
                    return Ok(false);
                };
                let bit = slot_bit(*slot);
                let mask = registry
                    .iter()
                    .filter(|(k, _)| *k != key)
                    .fold(0, |m, (_, s)| m | slot_bit(*s));
                let context = db("forgetting a transport");
                conn.execute("DELETE FROM outbox_transports WHERE key = ?1", [&key])
                    .map_err(&context)?;
                conn.execute(
                    "UPDATE outbox SET pending = pending & ~?1, refused_by = refused_by & ~?1",
                    [bit],
                )
                .map_err(&context)?;
                conn.execute(
                    "DELETE FROM outbox WHERE pending & ?1 = 0 AND refused_by = 0",
                    [mask],
                )
                .map_err(&context)?;
                registered.store(mask, std::sync::atomic::Ordering::Release);
                Ok(true)
            })
            .await
    }

    fn commit_sinks(&self) -> &CommitSinks {
        &self.sinks
    }

    async fn lease_outbox(&self, request: LeaseRequest<'_>) -> Result<Vec<OutboxItem>> {
        check_max(request.max)?;
        let owner = request.owner.to_owned();
        let now = super::now_ms();
        let until = now.saturating_add(super::lease_ms(request.lease));
        let queued_before = now.saturating_sub(super::duration_ms(request.min_age));
        let bit = slot_bit(request.slot);
        let max = request.max;
        // On the writer: one transaction, so two claims never interleave.
        self.writer
            .write(move |conn| {
                let context = db("leasing the outbox");
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE outbox SET lease_owner = ?1, lease_until = ?2
                         WHERE id IN (
                             SELECT o.id FROM outbox o
                             WHERE o.pending & ?5 <> 0 AND o.queued_at <= ?6
                               AND o.conversation NOT IN (
                                 SELECT b.conversation FROM outbox b
                                 WHERE b.pending <> 0 AND b.lease_until > ?3
                                   AND b.lease_owner IS NOT NULL AND b.lease_owner <> ?1)
                             ORDER BY o.id LIMIT ?4)
                         RETURNING id",
                    )
                    .map_err(&context)?;
                let mut ids: Vec<OutboxId> = stmt
                    .query_map(params![owner, until, now, max, bit, queued_before], |r| {
                        r.get(0)
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(&context)?;
                ids.sort_unstable();
                let mut items = Vec::with_capacity(ids.len());
                let mut row = conn
                    .prepare_cached(
                        "SELECT o.id, c.key, o.event, o.payload, o.message FROM outbox o
                         JOIN conversations c ON c.id = o.conversation WHERE o.id = ?1",
                    )
                    .map_err(&context)?;
                for id in ids {
                    let (id, key, event, payload, message): (
                        OutboxId,
                        String,
                        String,
                        Option<String>,
                        Option<i64>,
                    ) = row
                        .query_row([id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                        })
                        .map_err(&context)?;
                    let payload = match (payload, message) {
                        (Some(p), _) => Some(Bytes::from(p)),
                        (None, Some(message)) => {
                            let mut found = messages_where(conn, "m.id = ?1", [message])?;
                            load_reactions(conn, &mut found)?;
                            found.first().map(event::message_payload)
                        }
                        (None, None) => None,
                    };
                    let Some(payload) = payload else {
                        // Reported, never delivered empty.
                        conn.execute(
                            "UPDATE outbox SET refused_by = refused_by | pending, pending = 0,
                             last_error = ?2 WHERE id = ?1",
                            params![id, missing_message(message)],
                        )
                        .map_err(&context)?;
                        tracing::error!(
                            outbox_id = id,
                            reason = missing_message(message),
                            "an outbox row cannot be delivered; it is kept as refused"
                        );
                        continue;
                    };
                    items.push(OutboxItem {
                        id,
                        conversation_id: ConversationId::parse(&key)?,
                        event,
                        payload,
                    });
                }
                Ok(items)
            })
            .await
    }

    async fn release_outbox(&self, owner: &str) -> Result<()> {
        let owner = owner.to_owned();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE outbox SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?1",
                )
                .and_then(|mut s| s.execute([owner]))
                .map_err(db("releasing outbox leases"))?;
                Ok(())
            })
            .await
    }

    async fn ack_outbox(&self, slot: TransportSlot, ids: &[OutboxId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        let bit = slot_bit(slot);
        let registered = self.writer.registered();
        self.writer
            .write(move |conn| {
                let context = db("acknowledging deliveries");
                let mask = registered.load(std::sync::atomic::Ordering::Acquire);
                // The last transport's ack removes the row; an earlier one
                // clears its bit.
                let mut delete = conn
                    .prepare_cached(
                        "DELETE FROM outbox WHERE id = ?1 AND pending & ~?2 & ?3 = 0
                         AND refused_by = 0",
                    )
                    .map_err(&context)?;
                let mut clear = conn
                    .prepare_cached("UPDATE outbox SET pending = pending & ~?2 WHERE id = ?1")
                    .map_err(&context)?;
                for id in ids {
                    if delete.execute(params![id, bit, mask]).map_err(&context)? == 0 {
                        clear.execute(params![id, bit]).map_err(&context)?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn fail_outbox(
        &self,
        slot: TransportSlot,
        id: OutboxId,
        error: &str,
        refused: bool,
    ) -> Result<()> {
        let error = error.to_owned();
        let bit = if refused { slot_bit(slot) } else { 0 };
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                     pending = pending & ~?3, refused_by = refused_by | ?3 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, error, bit]))
                .map_err(db("recording a failed delivery"))?;
                Ok(())
            })
            .await
    }

    async fn list_outbox(&self, max: u32) -> Result<Vec<OutboxRow>> {
        check_max(max)?;
        self.read(move |conn| {
            let registry = read_registry(conn)?;
            let mask = registry.iter().fold(0, |m, (_, s)| m | slot_bit(*s));
            let mut stmt = conn
                .prepare_cached(
                    "SELECT o.id, c.key, o.event, o.pending, o.attempts, o.last_error,
                            o.refused_by FROM outbox o
                     JOIN conversations c ON c.id = o.conversation
                     WHERE o.pending & ?2 <> 0 OR o.refused_by <> 0
                     ORDER BY o.id LIMIT ?1",
                )
                .map_err(db("listing the outbox"))?;
            type Row = (OutboxId, String, String, i64, u32, Option<String>, i64);
            let rows: Vec<Row> = stmt
                .query_map(params![max, mask], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .and_then(|rows| rows.collect())
                .map_err(db("listing the outbox"))?;
            rows.into_iter()
                .map(
                    |(id, key, event, pending, attempts, last_error, refused_by)| {
                        Ok(OutboxRow {
                            id,
                            conversation_id: ConversationId::parse(&key)?,
                            event,
                            pending_for: keys_in(&registry, pending),
                            attempts,
                            last_error,
                            refused: refused_by != 0,
                        })
                    },
                )
                .collect()
        })
        .await
    }
}

/// The registered transports, `(key, slot)`.
fn read_registry(conn: &Connection) -> Result<Vec<(String, TransportSlot)>> {
    let mut stmt = conn
        .prepare_cached("SELECT key, slot FROM outbox_transports ORDER BY slot")
        .map_err(db("reading the transport registry"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(db("reading the transport registry"));
    rows
}

/// Queues an event for the registered transports (`registered`: their
/// bits); no row when there is none.
fn insert_outbox(
    conn: &Connection,
    conversation: i64,
    event: &str,
    message: Option<MessageId>,
    payload: &[u8],
    registered: i64,
) -> Result<Option<OutboxId>> {
    if registered == 0 {
        return Ok(None);
    }
    let payload = std::str::from_utf8(payload)
        .map_err(|e| Error::storage("event payload is not UTF-8", e))?;
    conn.prepare_cached(
        "INSERT INTO outbox (conversation, event, message, payload, pending, queued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            conversation,
            event,
            message,
            payload,
            registered,
            super::now_ms()
        ])
    })
    .map_err(db("writing the outbox"))?;
    Ok(Some(conn.last_insert_rowid()))
}

/// Keeps the search index in step with an edit (`Some(body)`) or delete
/// (`None`) of a message that is already indexed.
fn reindex(conn: &Connection, id: MessageId, body: Option<&str>) -> Result<()> {
    let upto: i64 = conn
        .query_row("SELECT indexed_upto FROM search_progress", [], |r| r.get(0))
        .map_err(db("reading search progress"))?;
    if id > upto {
        return Ok(());
    }
    conn.execute("DELETE FROM search_index WHERE rowid = ?1", [id])
        .map_err(db("updating the search index"))?;
    if let Some(body) = body {
        conn.execute(
            "INSERT INTO search_index (rowid, body) VALUES (?1, ?2)",
            params![id, body],
        )
        .map_err(db("updating the search index"))?;
    }
    Ok(())
}
