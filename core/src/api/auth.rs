//! Who is calling, and the channel-auth endpoints pusher-js calls.
//!
//! Browser and mobile calls carry a user token ([`super::token`]) as
//! `Authorization: Bearer <token>`; in `--demo` mode `X-Tidings-User: <id>`
//! is accepted as well, so the chat page can sign in by typing a user id.
//!
//! `POST /pusher/auth` (form `socket_id`, `channel_name`) answers
//! `{"auth":"key:hex"}` for `private-conversation-{a}-{b}` when the caller
//! is `a` or `b`, and `{"auth":…,"channel_data":…}` for
//! `presence-conversation-{a}-{b}` with the caller as the member.
//! `POST /pusher/user-auth` (form `socket_id`) answers
//! `{"auth":…,"user_data":"{\"id\":\"…\"}"}` for `pusher:signin`, which
//! opens `#server-to-user-{id}`. Everything is signed with the default app.
//! Other channels are refused with 403; errors are JSON like the chat API's.
//! Both answer CORS preflights of the allowed origins ([`super::cors`]).

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::token::{self, TokenError};
use super::ServerState;
use crate::domain::ids::PRESENCE_CHANNEL_PREFIX;
use crate::domain::{ConversationId, UserId};
use crate::error::{Error, ErrorKind};
use crate::signature;

/// The demo-mode header naming the user.
pub const USER_HEADER: &str = "x-tidings-user";

/// An error answer of the chat API and the auth endpoints:
/// `{"error":{"kind":"…","message":"…"}}` with a matching status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// `ErrorKind::as_str()`, or `unauthenticated` (401), `too_large` (413).
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::from(Error::Forbidden(message.into()))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::from(Error::InvalidArgument(message.into()))
    }
}

/// The HTTP status of an engine error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Storage | ErrorKind::Closed | ErrorKind::Transport => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // A plugin refused the message; the message says which and why.
        ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let kind = err.kind();
        if status_of(kind).is_server_error() {
            tracing::warn!(%err, "chat API call failed");
        }
        ApiError::new(status_of(kind), kind.as_str(), err.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        ApiError::unauthenticated(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "kind": self.kind, "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}

/// The user a browser or mobile call is made by: the bearer token's, or in
/// demo mode the `X-Tidings-User` header's. `Ok(None)` when neither is sent.
pub fn user_from_headers(
    state: &ServerState,
    headers: &HeaderMap,
) -> Result<Option<UserId>, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(ApiError::unauthenticated(
                    "the Authorization header must be `Bearer <user token>`",
                ))
            }
        };
        let claims = token::verify(&state.app().config.secret, token, token::unix_now())?;
        return Ok(Some(claims.user));
    }
    if let Some(value) = headers.get(USER_HEADER) {
        if !state.demo {
            return Err(ApiError::unauthenticated(
                "X-Tidings-User is only accepted in --demo mode; send Authorization: Bearer <user token>",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::invalid("the X-Tidings-User header is not text"))?;
        return Ok(Some(UserId::new(value.trim())?));
    }
    Ok(None)
}

/// Like [`user_from_headers`], but a missing credential is a 401.
pub fn require_user(state: &ServerState, headers: &HeaderMap) -> Result<UserId, ApiError> {
    user_from_headers(state, headers)?.ok_or_else(|| {
        ApiError::unauthenticated(if state.demo {
            "no credentials: send Authorization: Bearer <user token> or X-Tidings-User: <id>"
        } else {
            "no credentials: send Authorization: Bearer <user token> (mint one with `tidings token --user ID`)"
        })
    })
}

pub fn routes(state: ServerState) -> Router {
    Router::new()
        .route("/pusher/auth", post(channel_auth))
        .route("/pusher/user-auth", post(user_auth))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.allowed_origins.clone(),
            super::cors::layer,
        ))
        .with_state(state)
}

#[derive(Deserialize)]
struct ChannelAuthForm {
    socket_id: Option<String>,
    channel_name: Option<String>,
}

#[derive(Deserialize)]
struct UserAuthForm {
    socket_id: Option<String>,
}

/// Socket ids look like `123.456`.
fn check_socket_id(socket_id: Option<String>) -> Result<String, ApiError> {
    let socket_id = socket_id.ok_or_else(|| ApiError::invalid("socket_id is missing"))?;
    let valid = socket_id.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if !valid || socket_id.len() > 64 {
        return Err(ApiError::invalid(format!(
            "socket_id {socket_id:?} is not a socket id such as 123.456"
        )));
    }
    Ok(socket_id)
}

/// Largest form the auth endpoints read.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

fn form_error(rejection: FormRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the form is over {MAX_FORM_BYTES} bytes"),
        );
    }
    ApiError::invalid(format!(
        "expected a form-encoded body (socket_id, channel_name): {rejection}"
    ))
}

/// The `channel_data` of a conversation's presence member.
pub fn presence_member(user: &UserId) -> String {
    serde_json::json!({ "user_id": user, "user_info": { "id": user } }).to_string()
}

async fn channel_auth(
    State(state): State<ServerState>,
    headers: HeaderMap,
    form: Result<Form<ChannelAuthForm>, FormRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    let Form(form) = form.map_err(form_error)?;
    let socket_id = check_socket_id(form.socket_id)?;
    let channel = form
        .channel_name
        .ok_or_else(|| ApiError::invalid("channel_name is missing"))?;
    let Some(conversation) = ConversationId::from_channel(&channel) else {
        return Err(ApiError::forbidden(format!(
            "channel {channel:?} is not a conversation channel; this server authorizes \
             private-conversation-{{a}}-{{b}} and presence-conversation-{{a}}-{{b}} only"
        )));
    };
    if !conversation.has_member(&user) {
        return Err(ApiError::forbidden(format!(
            "user {user} is not in conversation {conversation}, so may not join {channel}"
        )));
    }
    let app = &state.app().config;
    if channel.starts_with(PRESENCE_CHANNEL_PREFIX) {
        let channel_data = presence_member(&user);
        let auth =
            signature::presence_auth(&app.key, &app.secret, &socket_id, &channel, &channel_data);
        return Ok(Json(
            serde_json::json!({ "auth": auth, "channel_data": channel_data }),
        ));
    }
    let auth = signature::channel_auth(&app.key, &app.secret, &socket_id, &channel);
    Ok(Json(serde_json::json!({ "auth": auth })))
}

async fn user_auth(
    State(state): State<ServerState>,
    headers: HeaderMap,
    form: Result<Form<UserAuthForm>, FormRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = require_user(&state, &headers)?;
    let Form(form) = form.map_err(form_error)?;
    let socket_id = check_socket_id(form.socket_id)?;
    let user_data = serde_json::json!({ "id": user }).to_string();
    let app = &state.app().config;
    let auth = signature::user_auth(&app.key, &app.secret, &socket_id, &user_data);
    Ok(Json(
        serde_json::json!({ "auth": auth, "user_data": user_data }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids() {
        assert!(check_socket_id(Some("123.456".into())).is_ok());
        for bad in ["", "123", "123.", ".4", "1.2.3", "a.1", "1.2 "] {
            assert!(check_socket_id(Some(bad.into())).is_err(), "{bad:?}");
        }
        assert!(check_socket_id(None).is_err());
    }

    #[test]
    fn presence_member_is_a_string_user_id() {
        let user = UserId::new("18").unwrap();
        assert_eq!(
            presence_member(&user),
            r#"{"user_id":"18","user_info":{"id":"18"}}"#
        );
    }

    #[test]
    fn statuses() {
        let e = ApiError::from(Error::NotFound("x".into()));
        assert_eq!((e.status, e.kind), (StatusCode::NOT_FOUND, "not_found"));
        assert_eq!(
            status_of(ErrorKind::Closed),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(ErrorKind::Conflict), StatusCode::CONFLICT);
    }
}
