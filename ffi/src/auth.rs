//! What a host's own auth endpoint needs: Pusher channel-auth, presence-auth
//! and user-auth signatures, the conversation a channel belongs to, and user
//! tokens. Pure functions: no engine, no I/O, never blocking.

use std::ffi::c_char;

use serde_json::json;
use tidings::domain::ids::{is_channel_char, MAX_CHANNEL_LEN};
use tidings::signature;
use tidings::{ConversationId, UserId};

use crate::boundary::{self, Out};
use crate::status::{tidings_status, FfiError, FfiResult};
use crate::string::arg;

/// Pusher socket ids are two decimal numbers joined by a dot (`123.456`);
/// anything else could make one signed string pass for another.
fn check_socket_id(socket_id: &str) -> FfiResult<()> {
    let ok = socket_id.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if !ok {
        return Err(FfiError::invalid(format!(
            "socket_id {socket_id:?} is not a Pusher socket id such as \"123.456\""
        )));
    }
    Ok(())
}

fn check_channel(channel: &str) -> FfiResult<()> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
        return Err(FfiError::invalid(format!(
            "channel {channel:?} must be 1-{MAX_CHANNEL_LEN} characters"
        )));
    }
    if let Some(bad) = channel.chars().find(|&c| !is_channel_char(c)) {
        return Err(FfiError::invalid(format!(
            "channel {channel:?} contains {bad:?}; allowed are A-Z a-z 0-9 and _ - = @ , . ;"
        )));
    }
    Ok(())
}

/// The `auth` value of a private (or encrypted) channel subscription:
/// `"key:hex"`, the HMAC-SHA256 of `socket_id:channel` with the app secret.
/// Answer the browser's auth request with `{"auth": "<this>"}` once the host
/// has decided that its user may subscribe.
#[no_mangle]
pub unsafe extern "C" fn tidings_channel_auth(
    app_key: *const c_char,
    app_secret: *const c_char,
    socket_id: *const c_char,
    channel: *const c_char,
    auth_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_channel_auth", error_out, || {
        let out = Out::new(auth_out, "auth_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (key, secret, socket_id, channel) = unsafe {
            (
                arg(app_key, "app_key")?,
                arg(app_secret, "app_secret")?,
                arg(socket_id, "socket_id")?,
                arg(channel, "channel")?,
            )
        };
        check_socket_id(socket_id)?;
        check_channel(channel)?;
        out.write_str(&signature::channel_auth(key, secret, socket_id, channel))
    })
}

/// The `auth` value of a presence channel subscription: signs
/// `socket_id:channel:channel_data`, where `channel_data` is the JSON
/// `{"user_id": "...", "user_info": {...}}` sent back to the browser exactly
/// as signed (answer `{"auth": "<this>", "channel_data": "<channel_data>"}`).
#[no_mangle]
pub unsafe extern "C" fn tidings_presence_auth(
    app_key: *const c_char,
    app_secret: *const c_char,
    socket_id: *const c_char,
    channel: *const c_char,
    channel_data: *const c_char,
    auth_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_presence_auth", error_out, || {
        let out = Out::new(auth_out, "auth_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (key, secret, socket_id, channel, data) = unsafe {
            (
                arg(app_key, "app_key")?,
                arg(app_secret, "app_secret")?,
                arg(socket_id, "socket_id")?,
                arg(channel, "channel")?,
                arg(channel_data, "channel_data")?,
            )
        };
        check_socket_id(socket_id)?;
        check_channel(channel)?;
        check_user_data("channel_data", data)?;
        out.write_str(&signature::presence_auth(
            key, secret, socket_id, channel, data,
        ))
    })
}

/// The `auth` value of a `pusher:signin` (user authentication): signs
/// `socket_id::user::user_data`, where `user_data` is the JSON
/// `{"id": "...", ...}` sent back exactly as signed.
#[no_mangle]
pub unsafe extern "C" fn tidings_user_auth(
    app_key: *const c_char,
    app_secret: *const c_char,
    socket_id: *const c_char,
    user_data: *const c_char,
    auth_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_user_auth", error_out, || {
        let out = Out::new(auth_out, "auth_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (key, secret, socket_id, data) = unsafe {
            (
                arg(app_key, "app_key")?,
                arg(app_secret, "app_secret")?,
                arg(socket_id, "socket_id")?,
                arg(user_data, "user_data")?,
            )
        };
        check_socket_id(socket_id)?;
        check_user_data("user_data", data)?;
        out.write_str(&signature::user_auth(key, secret, socket_id, data))
    })
}

/// `channel_data` and `user_data` must be JSON objects: the broker parses
/// what it verifies.
fn check_user_data(name: &str, data: &str) -> FfiResult<()> {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(value) if value.is_object() => Ok(()),
        Ok(_) => Err(FfiError::invalid(format!("{name} must be a JSON object"))),
        Err(e) => Err(FfiError::new(
            tidings_status::InvalidJson,
            format!("{name} is not valid JSON: {e}"),
        )),
    }
}

/// The id of the conversation between two users (`"1-18"`), the same
/// whichever order they are given in.
#[no_mangle]
pub unsafe extern "C" fn tidings_conversation_id(
    user_a: *const c_char,
    user_b: *const c_char,
    conversation_id_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_conversation_id", error_out, || {
        let out = Out::new(conversation_id_out, "conversation_id_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (a, b) = unsafe { (arg(user_a, "user_a")?, arg(user_b, "user_b")?) };
        let conversation = ConversationId::between(&UserId::new(a)?, &UserId::new(b)?)?;
        out.write_str(conversation.as_str())
    })
}

/// The conversation a channel belongs to, for an auth endpoint deciding who
/// may subscribe: `private-conversation-{a}-{b}` and
/// `presence-conversation-{a}-{b}` give `{"conversation_id": "1-18",
/// "members": ["1", "18"], "presence": false}`; any other channel is
/// `INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn tidings_conversation_of_channel(
    channel: *const c_char,
    conversation_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_conversation_of_channel", error_out, || {
        let out = Out::new(conversation_json_out, "conversation_json_out")?;
        // SAFETY: the caller passes a NUL-terminated string.
        let channel = unsafe { arg(channel, "channel") }?;
        let conversation = ConversationId::from_channel(channel).ok_or_else(|| {
            FfiError::invalid(format!(
                "{channel:?} is not a conversation channel \
                 (private-conversation-{{a}}-{{b}} or presence-conversation-{{a}}-{{b}})"
            ))
        })?;
        let (lo, hi) = conversation.users();
        out.write_json(&json!({
            "conversation_id": conversation.as_str(),
            "members": [lo.as_str(), hi.as_str()],
            "presence": channel.starts_with("presence-"),
        }))
    })
}

/// Mints a user token for `user_id` with the app secret, valid for
/// `ttl_seconds` (0: one day; at most 366 days). `tidings serve` accepts it
/// on its chat API and auth endpoints.
#[no_mangle]
pub unsafe extern "C" fn tidings_token_mint(
    app_secret: *const c_char,
    user_id: *const c_char,
    ttl_seconds: u64,
    token_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_token_mint", error_out, || {
        let out = Out::new(token_out, "token_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (secret, user) = unsafe { (arg(app_secret, "app_secret")?, arg(user_id, "user_id")?) };
        out.write_str(&tokens::mint(secret, user, ttl_seconds)?)
    })
}

/// Verifies a user token: on `OK`, `*claims_json_out` is `{"user": "17",
/// "exp": 1764131111}` (expiry in Unix seconds); a malformed, forged or
/// expired token is `UNAUTHORIZED` with the reason.
#[no_mangle]
pub unsafe extern "C" fn tidings_token_verify(
    app_secret: *const c_char,
    token: *const c_char,
    claims_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_token_verify", error_out, || {
        let out = Out::new(claims_json_out, "claims_json_out")?;
        // SAFETY: the caller passes NUL-terminated strings.
        let (secret, token) = unsafe { (arg(app_secret, "app_secret")?, arg(token, "token")?) };
        out.write_json(&tokens::verify(secret, token)?)
    })
}

#[cfg(feature = "broker")]
mod tokens {
    use std::time::Duration;

    use tidings::api::token;

    use crate::status::{tidings_status, FfiError, FfiResult};

    pub fn mint(secret: &str, user: &str, ttl_seconds: u64) -> FfiResult<String> {
        let ttl = match ttl_seconds {
            0 => token::DEFAULT_TTL,
            secs => Duration::from_secs(secs),
        };
        Ok(token::mint(secret, user, ttl)?)
    }

    pub fn verify(secret: &str, text: &str) -> FfiResult<serde_json::Value> {
        let claims = token::verify(secret, text, token::unix_now())
            .map_err(|e| FfiError::new(tidings_status::Unauthorized, e.to_string()))?;
        Ok(serde_json::json!({ "user": claims.user, "exp": claims.exp }))
    }
}

#[cfg(not(feature = "broker"))]
mod tokens {
    use crate::status::{tidings_status, FfiError, FfiResult};

    fn missing() -> FfiError {
        FfiError::new(
            tidings_status::Config,
            "user tokens need tidings-ffi built with the `broker` feature",
        )
    }

    pub fn mint(_: &str, _: &str, _: u64) -> FfiResult<String> {
        Err(missing())
    }

    pub fn verify(_: &str, _: &str) -> FfiResult<serde_json::Value> {
        Err(missing())
    }
}
