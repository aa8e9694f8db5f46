//! The chat HTTP API under `/v1/`, JSON in and out, backed by the [`Engine`].
//!
//! Who calls: browsers and mobile apps send `Authorization: Bearer <user
//! token>` (or, in `--demo` mode, `X-Tidings-User: <id>`) and act as that
//! user. Servers may instead sign the request like the Pusher HTTP API
//! (`auth_key`, `auth_timestamp`, `auth_version`, `body_md5`,
//! `auth_signature` in the query, with the default app's key and secret) and
//! name the user they act for in `user_id` (query, or JSON body). A user
//! only reaches conversations they are one of the two members of.
//!
//! | Route | Body / query | Answer |
//! |---|---|---|
//! | `GET /v1/config` (no auth) | | `{app_key, cluster, demo, channel_auth_endpoint, user_auth_endpoint, pusher_js}` |
//! | `GET /v1/me` | | `{user_id}` |
//! | `POST /v1/messages` | `{to \| conversation_id, body, client_msg_id?}` | 201 `{message, created:true}`; 200 `{message, created:false}` for a retry |
//! | `GET /v1/messages/{id}` | | `{message}`; 404 for a message of other people's conversation, as for a missing one |
//! | `PATCH /v1/messages/{id}` | `{body}` | `{message}` (sender only) |
//! | `DELETE /v1/messages/{id}` | | `{message}` (a tombstone; sender only) |
//! | `PUT /v1/messages/{id}/reaction` | `{emoji}` | `{message}` |
//! | `DELETE /v1/messages/{id}/reaction` | | `{message}` |
//! | `GET /v1/inbox` | `?limit=` (1-100, 50) | `{items:[{conversation_id, peer_id, last_message, unread_count, …}]}` |
//! | `GET /v1/search` | `?q=words&limit=` (1-1000, 50) | `{items:[message]}` |
//! | `GET /v1/conversations/{id}` | | `{conversation_id, peer_id, read_seq, unread_count, peer_read_seq}` |
//! | `GET /v1/conversations/with/{user}` | | the same, for the conversation with that user (it may have no messages yet) |
//! | `GET /v1/conversations/{id}/messages` | `?before=&limit=` (1-100, 50) | `{items:[newest first], next_before}` |
//! | `GET /v1/conversations/{id}/messages` | `?after=SEQ&limit=` (1-1000, 100) | `{items:[oldest first], next_after, has_more}` |
//! | `POST /v1/conversations/{id}/read` | `{seq?}` (default: the newest) | `{conversation_id, user_id, seq}` |
//! | `POST /v1/conversations/{id}/typing` | | 204 |
//! | `GET /v1/conversations/{id}/events` | `?after=SEQ&wait=SECS` (0-30, 25)`&limit=` | `{items, next_after, has_more}` |
//!
//! `next_after` is the cursor for the next call (the last item's seq, or
//! `after` when there is none). The events long-poll answers as soon as a
//! message with a seq above `after` exists, or with no items after `wait`.
//! Errors: `{"error":{"kind","message"}}`, see [`ApiError`]. Browsers on
//! other origins may call only when the operator allows theirs
//! ([`super::cors`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{require_user, ApiError};
use super::token::unix_now;
use super::ServerState;
use crate::broker::BrokerTransport;
use crate::domain::page::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::domain::{ConversationId, Message, MessageId, PageRequest, Seq, UserId};
use crate::engine::SendRequest;
use crate::error::{Error, ErrorKind};
use crate::event;
use crate::signature;
use crate::transport::{Received, Transport};

/// Largest request body: a 10 KiB message body escaped as JSON fits.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest long-poll wait.
pub const MAX_WAIT_SECS: u64 = 30;
/// The long-poll wait when none is given.
pub const DEFAULT_WAIT_SECS: u64 = 25;
/// Default `limit` of the oldest-first listings.
pub const DEFAULT_AFTER_LIMIT: u32 = 100;

pub fn routes(state: ServerState) -> Router {
    spawn_user_feed(&state);
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/me", get(me))
        .route("/v1/messages", post(send))
        .route("/v1/messages/{id}", get(message).patch(edit).delete(delete))
        .route("/v1/messages/{id}/reaction", put(react).delete(unreact))
        .route("/v1/inbox", get(inbox))
        .route("/v1/search", get(search))
        .route("/v1/conversations/{id}", get(conversation))
        .route("/v1/conversations/with/{peer}", get(conversation_with))
        .route("/v1/conversations/{id}/messages", get(messages))
        .route("/v1/conversations/{id}/read", post(mark_read))
        .route("/v1/conversations/{id}/typing", post(typing))
        .route("/v1/conversations/{id}/events", get(events))
        .layer(axum::middleware::from_fn_with_state(
            state.allowed_origins.clone(),
            super::cors::layer,
        ))
        .with_state(state)
}

/// Forwards `new-message` and `messages-read` to both members'
/// `#server-to-user-{id}` channels, so a signed-in client learns about
/// conversations it has not subscribed to (the chat page's inbox). The task
/// ends when the engine is dropped.
fn spawn_user_feed(state: &ServerState) {
    let mut events = state.engine.subscribe();
    let transport = BrokerTransport::new(state.app().clone());
    tokio::spawn(async move {
        while let Some(received) = events.recv().await {
            let Received::Event(event) = received else {
                continue;
            };
            if event.name != event::NEW_MESSAGE && event.name != event::MESSAGES_READ {
                continue;
            }
            let Some(conversation) = ConversationId::from_channel(&event.channel) else {
                continue;
            };
            let (lo, hi) = conversation.users();
            for user in [lo, hi] {
                let channel = format!("#server-to-user-{user}");
                if let Err(err) = transport
                    .deliver(&channel, &event.name, event.payload.clone())
                    .await
                {
                    tracing::debug!(%err, channel, "user feed delivery failed");
                }
            }
        }
    });
}

/// A chat API request: who may be asked, and the raw body (signed calls
/// sign it), read up to [`MAX_REQUEST_BYTES`].
struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl FromRequest<ServerState> for Call {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &ServerState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the request body could not be read or is over {MAX_REQUEST_BYTES} bytes: {e}"
                    ),
                )
            })?;
        Ok(Call {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl Call {
    fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        Query::<T>::try_from_uri(&self.uri)
            .map(|Query(q)| q)
            .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
    }

    /// The JSON body; an empty body reads as `{}`.
    fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("bad JSON body: {e}")))
    }

    /// The user this call acts for. `named` is the body's `user_id`; the
    /// query's `user_id` counts too.
    fn user(&self, state: &ServerState, named: Option<&UserId>) -> Result<UserId, ApiError> {
        let pairs: Vec<(String, String)> = self.query()?;
        let from_query = pairs
            .iter()
            .find(|(k, _)| k == "user_id")
            .map(|(_, v)| UserId::new(v.as_str()))
            .transpose()?;
        let named = match (named, from_query) {
            (Some(a), Some(b)) if *a != b => {
                return Err(ApiError::invalid(format!(
                    "user_id is {a} in the body but {b} in the query"
                )))
            }
            (Some(a), _) => Some(a.clone()),
            (None, b) => b,
        };
        if pairs.iter().any(|(k, _)| k == "auth_signature") {
            self.verify_signature(state, &pairs)?;
            return named.ok_or_else(|| {
                ApiError::invalid("a signed call names the user it acts for in user_id")
            });
        }
        let user = require_user(state, &self.headers)?;
        match named {
            Some(named) if named != user => Err(ApiError::forbidden(format!(
                "signed in as {user}, so may not act for user {named}"
            ))),
            _ => Ok(user),
        }
    }

    /// The user and the JSON body. Who is calling is checked first, so an
    /// unauthenticated call is a 401 whatever its body.
    fn user_and_body<T: Named>(&self, state: &ServerState) -> Result<(UserId, T), ApiError> {
        let body = self.json::<T>();
        let named = body.as_ref().ok().and_then(Named::user_id);
        let user = self.user(state, named)?;
        Ok((user, body?))
    }

    fn verify_signature(
        &self,
        state: &ServerState,
        pairs: &[(String, String)],
    ) -> Result<(), ApiError> {
        let app = &state.app().config;
        let key = pairs.iter().find(|(k, _)| k == "auth_key").map(|(_, v)| v);
        match key {
            Some(key) if key == &app.key => {}
            Some(key) => {
                return Err(ApiError::unauthenticated(format!(
                    "unknown auth_key {key:?}: the chat API is signed with the default app's key"
                )))
            }
            None => return Err(ApiError::unauthenticated("Missing parameter: auth_key")),
        }
        signature::verify_request(
            &app.secret,
            self.method.as_str(),
            self.uri.path(),
            pairs,
            &self.body,
            unix_now(),
        )
        .map_err(|e| ApiError::unauthenticated(e.to_string()))
    }
}

/// The conversation `id` if `user` is one of its members.
fn member_of(user: &UserId, id: &str) -> Result<ConversationId, ApiError> {
    let conversation = ConversationId::parse(id)?;
    if !conversation.has_member(user) {
        return Err(ApiError::forbidden(format!(
            "user {user} is not in conversation {conversation}"
        )));
    }
    Ok(conversation)
}

fn message_id(id: &str) -> Result<MessageId, ApiError> {
    id.parse::<MessageId>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::invalid(format!("{id:?} is not a message id")))
}

/// The message `id` if `user` is in its conversation. A message of other
/// people's conversation answers exactly like a missing one (404, the same
/// body), so that message ids tell nobody who talks to whom.
async fn visible_message(
    state: &ServerState,
    user: &UserId,
    id: &str,
) -> Result<Message, ApiError> {
    let id = message_id(id)?;
    let missing = || ApiError::from(Error::NotFound(format!("message {id} does not exist")));
    match state.engine.message(id).await {
        Ok(message) if message.conversation_id.has_member(user) => Ok(message),
        Ok(_) => Err(missing()),
        Err(err) if err.kind() == ErrorKind::NotFound => Err(missing()),
        Err(err) => Err(err.into()),
    }
}

/// A JSON body that may name the user a signed call acts for.
trait Named: DeserializeOwned {
    fn user_id(&self) -> Option<&UserId>;
}

macro_rules! named {
    ($($body:ty),*) => {$(
        impl Named for $body {
            fn user_id(&self) -> Option<&UserId> {
                self.user_id.as_ref()
            }
        }
    )*};
}

named!(UserOnly, SendBody, EditBody, ReactBody, ReadBody);

/// Only `user_id`, for bodies that carry nothing else.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserOnly {
    #[serde(default)]
    user_id: Option<UserId>,
}

async fn config(State(state): State<ServerState>) -> Json<serde_json::Value> {
    Json(json!({
        "app_key": state.app().config.key,
        "cluster": "local",
        "demo": state.demo,
        "channel_auth_endpoint": "/pusher/auth",
        "user_auth_endpoint": "/pusher/user-auth",
        "pusher_js": super::page::PUSHER_JS_VERSION,
    }))
}

async fn me(State(state): State<ServerState>, call: Call) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    Ok(Json(json!({ "user_id": user })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    to: Option<UserId>,
    #[serde(default)]
    conversation_id: Option<String>,
    body: String,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    user_id: Option<UserId>,
}

#[derive(Serialize)]
struct SentBody {
    message: Message,
    created: bool,
}

async fn send(State(state): State<ServerState>, call: Call) -> Result<Response, ApiError> {
    let (user, body): (UserId, SendBody) = call.user_and_body(&state)?;
    let request = SendRequest {
        from: user.as_str().to_owned(),
        to: body.to.map(|u| u.as_str().to_owned()),
        conversation_id: body.conversation_id,
        body: body.body,
        client_msg_id: body.client_msg_id,
    };
    let sent = state.engine.send(request).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = SentBody {
        message: sent.message,
        created: sent.created,
    };
    Ok((status, Json(answer)).into_response())
}

fn message_answer(message: Message) -> Response {
    Json(json!({ "message": message })).into_response()
}

async fn message(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    Ok(message_answer(visible_message(&state, &user, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    body: String,
    #[serde(default)]
    user_id: Option<UserId>,
}

async fn edit(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, body): (UserId, EditBody) = call.user_and_body(&state)?;
    let message = visible_message(&state, &user, &id).await?;
    let edited = state
        .engine
        .edit(user.as_str(), message.id, &body.body)
        .await?;
    Ok(message_answer(edited))
}

async fn delete(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, _): (UserId, UserOnly) = call.user_and_body(&state)?;
    let message = visible_message(&state, &user, &id).await?;
    let deleted = state.engine.delete(user.as_str(), message.id).await?;
    Ok(message_answer(deleted))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactBody {
    emoji: String,
    #[serde(default)]
    user_id: Option<UserId>,
}

async fn react(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, body): (UserId, ReactBody) = call.user_and_body(&state)?;
    let message = visible_message(&state, &user, &id).await?;
    let reacted = state
        .engine
        .react(user.as_str(), message.id, &body.emoji)
        .await?;
    Ok(message_answer(reacted))
}

async fn unreact(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, _): (UserId, UserOnly) = call.user_and_body(&state)?;
    let message = visible_message(&state, &user, &id).await?;
    let unreacted = state.engine.unreact(user.as_str(), message.id).await?;
    Ok(message_answer(unreacted))
}

#[derive(Deserialize)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<u32>,
}

async fn inbox(State(state): State<ServerState>, call: Call) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let q: LimitQuery = call.query()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1-{MAX_PAGE_LIMIT}, got {limit}"
        )));
    }
    let items = state.engine.inbox(user.as_str(), limit).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<u32>,
}

async fn search(State(state): State<ServerState>, call: Call) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let q: SearchQuery = call.query()?;
    if q.q.trim().is_empty() {
        return Err(ApiError::invalid("search needs words in q"));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    let items = state.engine.search(user.as_str(), &q.q, limit).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn conversation(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let conversation = member_of(&user, &id)?;
    summary(&state, &user, conversation).await
}

async fn conversation_with(
    State(state): State<ServerState>,
    Path(peer): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let conversation = ConversationId::between(&user, &UserId::new(peer)?)?;
    summary(&state, &user, conversation).await
}

/// Read marks of both members and the caller's unread count.
async fn summary(
    state: &ServerState,
    user: &UserId,
    conversation: ConversationId,
) -> Result<Response, ApiError> {
    let peer = conversation
        .peer_of(user)
        .cloned()
        .ok_or_else(|| ApiError::forbidden(format!("user {user} is not in {conversation}")))?;
    let (read, unread) = state
        .engine
        .unread(user.as_str(), conversation.as_str())
        .await?;
    let (peer_read, _) = state
        .engine
        .unread(peer.as_str(), conversation.as_str())
        .await?;
    Ok(Json(json!({
        "conversation_id": conversation,
        "peer_id": peer,
        "read_seq": read.seq,
        "unread_count": unread,
        "peer_read_seq": peer_read.seq,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct MessagesQuery {
    #[serde(default)]
    before: Option<Seq>,
    #[serde(default)]
    after: Option<Seq>,
    #[serde(default)]
    limit: Option<u32>,
}

/// An oldest-first listing and the cursor after it.
fn after_answer(items: Vec<Message>, after: Seq, limit: u32) -> Response {
    let next_after = items.last().map_or(after, |m| m.seq);
    let has_more = items.len() >= limit as usize;
    Json(json!({ "items": items, "next_after": next_after, "has_more": has_more })).into_response()
}

async fn messages(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let conversation = member_of(&user, &id)?;
    let q: MessagesQuery = call.query()?;
    match (q.before, q.after) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give before or after, not both")),
        (None, Some(after)) => {
            let limit = q.limit.unwrap_or(DEFAULT_AFTER_LIMIT);
            let items = state
                .engine
                .messages_after(conversation.as_str(), after, limit)
                .await?;
            Ok(after_answer(items, after, limit))
        }
        (before, None) => {
            let page = PageRequest {
                before,
                limit: q.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            };
            let page = state.engine.history(conversation.as_str(), page).await?;
            Ok(Json(page).into_response())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    #[serde(default)]
    seq: Option<Seq>,
    #[serde(default)]
    user_id: Option<UserId>,
}

async fn mark_read(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, body): (UserId, ReadBody) = call.user_and_body(&state)?;
    let conversation = member_of(&user, &id)?;
    let seq = match body.seq {
        Some(seq) => seq,
        None => state
            .engine
            .history(conversation.as_str(), PageRequest::newest(1))
            .await?
            .items
            .first()
            .map_or(0, |m| m.seq),
    };
    let read = state
        .engine
        .mark_read(user.as_str(), conversation.as_str(), seq)
        .await?;
    Ok(Json(read).into_response())
}

async fn typing(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let (user, _): (UserId, UserOnly) = call.user_and_body(&state)?;
    let conversation = member_of(&user, &id)?;
    state
        .engine
        .typing(user.as_str(), conversation.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: Option<Seq>,
    #[serde(default)]
    wait: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Long poll: answers with the messages after `after` as soon as there is
/// one, or with none once `wait` seconds have passed. It subscribes to the
/// engine's events before it looks, so a message stored in between wakes it.
async fn events(
    State(state): State<ServerState>,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    let user = call.user(&state, None)?;
    let conversation = member_of(&user, &id)?;
    let q: EventsQuery = call.query()?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_AFTER_LIMIT);
    let wait = q.wait.unwrap_or(DEFAULT_WAIT_SECS);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::invalid(format!(
            "wait must be 0-{MAX_WAIT_SECS} seconds, got {wait}"
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let channel = conversation.channel();
    let mut subscription = state.engine.subscribe();
    loop {
        let items = state
            .engine
            .messages_after(conversation.as_str(), after, limit)
            .await?;
        if !items.is_empty() {
            return Ok(after_answer(items, after, limit));
        }
        // Wait for a new message in this conversation (or for having
        // missed some events), then look again.
        loop {
            match tokio::time::timeout_at(deadline, subscription.recv()).await {
                Err(_) | Ok(None) => return Ok(after_answer(Vec::new(), after, limit)),
                Ok(Some(Received::Lagged(_))) => break,
                Ok(Some(Received::Event(e)))
                    if e.name == event::NEW_MESSAGE && e.channel == channel =>
                {
                    break
                }
                Ok(Some(Received::Event(_))) => {}
            }
        }
    }
}
