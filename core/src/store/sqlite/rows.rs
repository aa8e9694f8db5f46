//! Reading messages out of SQLite rows, shared by readers and the writer.

use rusqlite::{params, Connection, OptionalExtension, Params, Row};

use crate::domain::{ConversationId, Message, Reaction, UserId};
use crate::error::{Error, Result};

const MESSAGE_COLUMNS: &str = "SELECT m.id, c.key, m.seq, m.sender, m.body, m.client_msg_id, \
     m.created_at, m.edited_at, m.deleted_at \
     FROM messages m JOIN conversations c ON c.id = m.conversation WHERE ";

pub(super) fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::storage(context, e)
}

/// Messages matching `clause` (which may end with ORDER BY / LIMIT), without reactions.
pub(super) fn messages_where(
    conn: &Connection,
    clause: &str,
    params: impl Params,
) -> Result<Vec<Message>> {
    let mut stmt = conn
        .prepare_cached(&format!("{MESSAGE_COLUMNS}{clause}"))
        .map_err(db("reading messages"))?;
    let mut rows = stmt.query(params).map_err(db("reading messages"))?;
    let mut out = Vec::new();
    let mut conversation: Option<ConversationId> = None;
    while let Some(row) = rows.next().map_err(db("reading messages"))? {
        out.push(message_from_row(row, &mut conversation)?);
    }
    Ok(out)
}

/// One message; `conversation` caches the parsed id across rows of one conversation.
fn message_from_row(row: &Row<'_>, conversation: &mut Option<ConversationId>) -> Result<Message> {
    let get = db("decoding a message row");
    let key: String = row.get(1).map_err(&get)?;
    let conversation_id = match conversation {
        Some(c) if c.as_str() == key => c.clone(),
        _ => {
            let parsed = ConversationId::parse(&key)?;
            *conversation = Some(parsed.clone());
            parsed
        }
    };
    let sender: String = row.get(3).map_err(&get)?;
    Ok(Message {
        id: row.get(0).map_err(&get)?,
        conversation_id,
        seq: row.get(2).map_err(&get)?,
        sender_id: UserId::new(sender)?,
        body: row.get(4).map_err(&get)?,
        client_msg_id: row.get(5).map_err(&get)?,
        created_at: row.get(6).map_err(&get)?,
        edited_at: row.get(7).map_err(&get)?,
        deleted_at: row.get(8).map_err(&get)?,
        reactions: Vec::new(),
    })
}

/// Fills in the reactions of `messages` (ordered by user id).
pub(super) fn load_reactions(conn: &Connection, messages: &mut [Message]) -> Result<()> {
    let (Some(lo), Some(hi)) = (
        messages.iter().map(|m| m.id).min(),
        messages.iter().map(|m| m.id).max(),
    ) else {
        return Ok(());
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT message, user_id, emoji FROM reactions
             WHERE message BETWEEN ?1 AND ?2 ORDER BY message, user_id",
        )
        .map_err(db("reading reactions"))?;
    let mut rows = stmt
        .query(params![lo, hi])
        .map_err(db("reading reactions"))?;
    let index: std::collections::HashMap<i64, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i))
        .collect();
    while let Some(row) = rows.next().map_err(db("reading reactions"))? {
        let id: i64 = row.get(0).map_err(db("reading reactions"))?;
        if let Some(m) = index.get(&id).map(|&i| &mut messages[i]) {
            let user: String = row.get(1).map_err(db("reading reactions"))?;
            m.reactions.push(Reaction {
                user_id: UserId::new(user)?,
                emoji: row.get(2).map_err(db("reading reactions"))?,
            });
        }
    }
    Ok(())
}

/// The message a `client_msg_id` already names in a conversation.
pub(super) fn message_by_client_id(
    conn: &Connection,
    conversation: i64,
    conversation_id: &ConversationId,
    client_id: &str,
) -> Result<Option<Message>> {
    let mut found = messages_where(
        conn,
        "m.conversation = ?1 AND m.client_msg_id = ?2",
        params![conversation, client_id],
    )?;
    debug_assert!(found.iter().all(|m| &m.conversation_id == conversation_id));
    load_reactions(conn, &mut found)?;
    Ok(found.pop())
}

/// The row id of a conversation, if it has one.
pub(super) fn conversation_row(conn: &Connection, key: &str) -> Result<Option<(i64, i64)>> {
    conn.prepare_cached("SELECT id, last_seq FROM conversations WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db("looking up a conversation"))
}
