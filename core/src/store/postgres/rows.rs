//! Reading messages out of PostgreSQL rows, and the error mapping, shared by
//! the pooled operations and the writer task.

use std::collections::HashMap;
use std::fmt;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::{ConversationId, Message, MessageId, Reaction, UserId};
use crate::error::{Error, Result};

/// The columns [`message_from_row`] reads, from `messages m JOIN conversations c`.
pub(super) const MESSAGE_COLUMNS: &str = "m.id, c.key, m.seq, m.sender, m.body, \
     m.client_msg_id, m.created_at, m.edited_at, m.deleted_at";

/// A storage error for a failed PostgreSQL call. tokio-postgres shows only
/// "db error" at its top level, so the message carries the whole chain
/// (the server's own words included).
pub(super) fn pg_error(context: impl fmt::Display, err: tokio_postgres::Error) -> Error {
    Error::Storage {
        message: format!("{context}: {}", chain(&err)),
        source: Some(Box::new(err)),
    }
}

/// `pg_error` with a fixed context, for `map_err`.
pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| pg_error(context, e)
}

/// An error and its sources, joined with ": ".
pub(super) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Runs `SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ...
/// WHERE {clause}` (the clause may end with ORDER BY / LIMIT); no reactions.
pub(super) async fn messages_where<C: GenericClient>(
    client: &C,
    clause: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m \
         JOIN conversations c ON c.id = m.conversation WHERE {clause}"
    );
    let stmt = client
        .prepare_cached(&sql)
        .await
        .map_err(db("reading messages"))?;
    let rows = client
        .query(&stmt, params)
        .await
        .map_err(db("reading messages"))?;
    messages_from_rows(&rows)
}

pub(super) fn messages_from_rows(rows: &[Row]) -> Result<Vec<Message>> {
    let mut conversation = None;
    rows.iter()
        .map(|row| message_from_row(row, &mut conversation))
        .collect()
}

/// One message from the first columns of `row` (in [`MESSAGE_COLUMNS`]
/// order); `conversation` caches the parsed id across rows.
pub(super) fn message_from_row(
    row: &Row,
    conversation: &mut Option<ConversationId>,
) -> Result<Message> {
    let get = db("decoding a message row");
    let key: &str = row.try_get(1).map_err(&get)?;
    let conversation_id = match conversation {
        Some(c) if c.as_str() == key => c.clone(),
        _ => {
            let parsed = ConversationId::parse(key)?;
            *conversation = Some(parsed.clone());
            parsed
        }
    };
    let sender: String = row.try_get(3).map_err(&get)?;
    Ok(Message {
        id: row.try_get(0).map_err(&get)?,
        conversation_id,
        seq: row.try_get(2).map_err(&get)?,
        sender_id: UserId::new(sender)?,
        body: row.try_get(4).map_err(&get)?,
        client_msg_id: row.try_get(5).map_err(&get)?,
        created_at: row.try_get(6).map_err(&get)?,
        edited_at: row.try_get(7).map_err(&get)?,
        deleted_at: row.try_get(8).map_err(&get)?,
        reactions: Vec::new(),
    })
}

/// Fills in the reactions of `messages`, ordered by user id (bytewise, as
/// SQLite orders them).
pub(super) async fn load_reactions<C: GenericClient>(
    client: &C,
    messages: &mut [Message],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    let stmt = client
        .prepare_cached(
            "SELECT message, user_id, emoji FROM reactions
             WHERE message = ANY($1::bigint[]) ORDER BY message, user_id COLLATE \"C\"",
        )
        .await
        .map_err(db("reading reactions"))?;
    let rows = client
        .query(&stmt, &[&ids])
        .await
        .map_err(db("reading reactions"))?;
    let index: HashMap<MessageId, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let get = db("decoding a reaction row");
    for row in rows {
        let id: MessageId = row.try_get(0).map_err(&get)?;
        if let Some(&i) = index.get(&id) {
            let user: String = row.try_get(1).map_err(&get)?;
            messages[i].reactions.push(Reaction {
                user_id: UserId::new(user)?,
                emoji: row.try_get(2).map_err(&get)?,
            });
        }
    }
    Ok(())
}
