//! The Pusher HTTP API: trigger events (one or a
//! batch), query channels and presence users, terminate a user's
//! connections.
//!
//! Every request is signed (Pusher's HTTP API signature) and checked against the raw path, the
//! decoded query pairs and the raw body bytes, never a re-serialized form.
//! Successful answers are always JSON (the Python SDK parses every 200);
//! errors are plain text naming what is wrong: 400 bad input, 401 bad
//! signature, 404 unknown app, 413 event data over 10 KB.
//!
//! `subscription_count` may be asked for on every app: counting costs
//! nothing here, so unlike Pusher it is not gated by
//! [`AppConfig::subscription_count`](super::AppConfig), which only controls
//! the `pusher_internal:subscription_count` events sent to clients. It is
//! also accepted by `GET /channels`, beside `user_count`.
//!
//! In a cluster ([`super::cluster_port`]) the counts and users are the whole
//! cluster's, read from Redis, a trigger answers once its events reached
//! Redis, and a termination reaches every node.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::app::App;
use super::channel::{self, ChannelKind};
use super::protocol;
use super::Broker;
use crate::signature::{self, RequestRejected};

/// Largest request body read at all (a full batch is about 100 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest `data` of one event, like Pusher (larger is 413).
pub const MAX_DATA_BYTES: usize = 10 * 1024;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 200;
/// Most channels one trigger may name.
pub const MAX_CHANNELS: usize = 100;
/// Most events in one batch.
pub const MAX_BATCH: usize = 10;

/// Why an HTTP API request was refused; the message is the response body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong signature, expired timestamp, wrong key.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no app has this id.
    #[error("{0}")]
    NotFound(String),
    /// 413: event data over the limit.
    #[error("{0}")]
    TooLarge(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::debug!(status = status.as_u16(), error = %self, "HTTP API request refused");
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The HTTP API routes, with their own body limit.
pub fn routes(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/apps/{app_id}/events", post(trigger))
        .route("/apps/{app_id}/batch_events", post(trigger_batch))
        .route("/apps/{app_id}/channels", get(list_channels))
        .route("/apps/{app_id}/channels/{channel_name}", get(channel_info))
        .route(
            "/apps/{app_id}/channels/{channel_name}/users",
            get(presence_users),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate),
        )
        // The Python SDK leaves `/apps/{id}` out; the app is the auth_key's.
        .route(
            "/users/{user_id}/terminate_connections",
            post(terminate_by_key),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(broker)
}

/// A request whose signature checked out.
struct Signed {
    app: Arc<App>,
    /// The decoded query pairs, in order.
    params: Vec<(String, String)>,
}

impl Signed {
    fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Finds the app (by the path's id, else by `auth_key`) and checks the
/// request's signature against the raw path, then the percent-decoded one
/// (SDKs sign channel names unescaped).
fn authenticate(
    broker: &Broker,
    app_id: Option<&str>,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<Signed, ApiError> {
    let params: Vec<(String, String)> = Query::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?;
    let key = param(&params, "auth_key");
    let app = match app_id {
        Some(id) => broker
            .apps
            .by_id(id)
            .ok_or_else(|| ApiError::NotFound(format!("Unknown app id {id:?}")))?,
        None => {
            let key = key.ok_or_else(|| {
                ApiError::Unauthorized(RequestRejected::Missing("auth_key").to_string())
            })?;
            broker.apps.by_key(key).ok_or_else(|| {
                ApiError::Unauthorized(format!("Unknown auth_key {key:?}: no app has this key"))
            })?
        }
    };
    match key {
        None => {
            return Err(ApiError::Unauthorized(
                RequestRejected::Missing("auth_key").to_string(),
            ))
        }
        Some(key) if !signature::equal(key, &app.config.key) => {
            return Err(ApiError::Unauthorized(format!(
                "Invalid auth_key {key:?}: it is not the key of app {}",
                app.config.id
            )))
        }
        Some(_) => {}
    }
    let secret = &app.config.secret;
    let path = uri.path();
    let now = unix_now();
    match signature::verify_request(secret, method.as_str(), path, &params, body, now) {
        Ok(()) => {}
        Err(rejected @ RequestRejected::Signature { .. }) => {
            let decoded_ok = percent_decode(path).is_some_and(|decoded| {
                decoded != path
                    && signature::verify_request(
                        secret,
                        method.as_str(),
                        &decoded,
                        &params,
                        body,
                        now,
                    )
                    .is_ok()
            });
            if !decoded_ok {
                return Err(ApiError::Unauthorized(rejected.to_string()));
            }
        }
        Err(rejected) => return Err(ApiError::Unauthorized(rejected.to_string())),
    }
    Ok(Signed {
        app: app.clone(),
        params,
    })
}

/// Percent-decodes a path (`+` stays `+`); `None` if the result is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Which channel attributes a request asks for (`info=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Info {
    user_count: bool,
    subscription_count: bool,
}

impl Info {
    fn parse(text: Option<&str>) -> Result<Info, ApiError> {
        let mut info = Info::default();
        for attribute in text.unwrap_or("").split(',').map(str::trim) {
            match attribute {
                "" => {}
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "Unknown info attribute {other:?}: use user_count and/or subscription_count"
                    )))
                }
            }
        }
        Ok(info)
    }

    fn any(self) -> bool {
        self.user_count || self.subscription_count
    }

    /// The requested attributes of a channel (cluster-wide); `user_count`
    /// only for presence channels, zeros for unoccupied ones.
    async fn attributes(self, app: &App, channel_name: &str) -> Map<String, Value> {
        let counts = app.hub.cluster_channel_info(channel_name).await;
        let mut attributes = Map::new();
        if self.user_count && ChannelKind::of(channel_name) == ChannelKind::Presence {
            let users = counts.and_then(|c| c.user_count).unwrap_or(0);
            attributes.insert("user_count".into(), users.into());
        }
        if self.subscription_count {
            let subscriptions = counts.map_or(0, |c| c.subscription_count);
            attributes.insert("subscription_count".into(), subscriptions.into());
        }
        attributes
    }
}

/// One event to trigger, validated.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Info,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    context: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{context}{field} must be a string, got {}",
            type_name(other)
        ))),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(ApiError::BadRequest(format!(
            "The body must be a JSON object, got {}",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "The body is not valid JSON: {e}"
        ))),
    }
}

/// `^\d+\.\d+$`, the form of every socket id.
fn is_socket_id(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.split_once('.')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Validates one event; `batch_index` is set for batch entries, which name
/// a single `channel`.
fn parse_event(object: &Map<String, Value>, batch_index: Option<usize>) -> Result<Event, ApiError> {
    let context = batch_index.map_or(String::new(), |i| format!("batch[{i}]: "));
    let name = string_field(object, "name", &context)?
        .ok_or_else(|| ApiError::BadRequest(format!("{context}Missing event name (\"name\")")))?;
    if name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{context}The event name must not be empty"
        )));
    }
    let name_len = name.chars().count();
    if name_len > MAX_EVENT_NAME {
        return Err(ApiError::BadRequest(format!(
            "{context}The event name is {name_len} characters; at most {MAX_EVENT_NAME} are allowed"
        )));
    }
    let data = match object.get("data") {
        None | Some(Value::Null) => {
            return Err(ApiError::BadRequest(format!(
                "{context}Missing event data (\"data\") for event {name:?}"
            )))
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            let got = type_name(other);
            return Err(ApiError::BadRequest(format!(
                "{context}The data of event {name:?} must be a string (JSON-encode it), got {got}"
            )));
        }
    };
    if data.len() > MAX_DATA_BYTES {
        return Err(ApiError::TooLarge(format!(
            "{context}The data of event {name:?} is {} bytes; at most {MAX_DATA_BYTES} are allowed",
            data.len()
        )));
    }
    let mut channels: Vec<String> = match (object.get("channels"), object.get("channel")) {
        (Some(_), Some(_)) if batch_index.is_none() => {
            return Err(ApiError::BadRequest(
                "Give either \"channels\" or \"channel\", not both".into(),
            ))
        }
        (Some(Value::Array(list)), None) if batch_index.is_none() => list
            .iter()
            .map(|c| match c {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::BadRequest(format!(
                    "channels must hold channel names (strings), got {}",
                    type_name(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        (Some(other), None) if batch_index.is_none() => {
            return Err(ApiError::BadRequest(format!(
                "channels must be an array of channel names, got {}",
                type_name(other)
            )))
        }
        _ => match string_field(object, "channel", &context)? {
            Some(c) => vec![c.to_owned()],
            None => {
                return Err(ApiError::BadRequest(if batch_index.is_some() {
                    format!("{context}Missing \"channel\"")
                } else {
                    "Missing \"channels\" (or \"channel\")".into()
                }))
            }
        },
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(ApiError::BadRequest(format!(
            "An event goes to 1-{MAX_CHANNELS} channels; {} were given",
            channels.len()
        )));
    }
    for c in &channels {
        channel::validate(c).map_err(|e| ApiError::BadRequest(format!("{context}{e}")))?;
    }
    // The same channel twice would deliver the event twice.
    let mut seen = std::collections::HashSet::new();
    channels.retain(|c| seen.insert(c.clone()));
    let socket_id = string_field(object, "socket_id", &context)?;
    if let Some(id) = socket_id {
        if !is_socket_id(id) {
            return Err(ApiError::BadRequest(format!(
                "{context}Invalid socket_id {id:?}: expected digits.digits, like \"1234.5678\""
            )));
        }
    }
    let info = Info::parse(string_field(object, "info", &context)?)
        .map_err(|e| ApiError::BadRequest(format!("{context}{e}")))?;
    Ok(Event {
        name: name.to_owned(),
        data: data.to_owned(),
        channels,
        socket_id: socket_id.map(str::to_owned),
        info,
    })
}

/// Sends an event to its channels, encoding it once per channel.
fn publish(app: &App, event: &Event) {
    let mut delivered = 0;
    for channel_name in &event.channels {
        let frame = protocol::channel_event(&event.name, channel_name, &event.data);
        delivered += app
            .hub
            .publish(channel_name, &frame, event.socket_id.as_deref());
    }
    tracing::debug!(
        app = %app.config.id,
        event = %event.name,
        channels = event.channels.len(),
        delivered,
        "triggered"
    );
}

async fn trigger(
    State(broker): State<Arc<Broker>>,
    Path(app_id): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    let event = parse_event(&parse_body(&body)?, None)?;
    publish(&signed.app, &event);
    // In a cluster: answer once the other nodes can see it (order across nodes).
    signed.app.hub.cluster_flush().await;
    if !event.info.any() {
        return Ok(Json(json!({})));
    }
    let mut channels = Map::new();
    for c in &event.channels {
        let attributes = event.info.attributes(&signed.app, c).await;
        channels.insert(c.clone(), Value::Object(attributes));
    }
    Ok(Json(json!({ "channels": channels })))
}

async fn trigger_batch(
    State(broker): State<Arc<Broker>>,
    Path(app_id): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    let object = parse_body(&body)?;
    let batch = match object.get("batch") {
        Some(Value::Array(batch)) => batch,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "batch must be an array of events, got {}",
                type_name(other)
            )))
        }
        None => return Err(ApiError::BadRequest(
            "Missing \"batch\": the body must be {\"batch\":[{\"channel\",\"name\",\"data\"},…]}"
                .into(),
        )),
    };
    if batch.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "The batch holds {} events; at most {MAX_BATCH} are allowed",
            batch.len()
        )));
    }
    // Check every event before sending any.
    let events = batch
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(object) => parse_event(object, Some(i)),
            other => Err(ApiError::BadRequest(format!(
                "batch[{i}] must be an event object, got {}",
                type_name(other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for event in &events {
        publish(&signed.app, event);
    }
    signed.app.hub.cluster_flush().await;
    if !events.iter().any(|e| e.info.any()) {
        return Ok(Json(json!({})));
    }
    let mut answers = Vec::with_capacity(events.len());
    for e in &events {
        // A batch event has exactly one channel.
        let attributes = match e.channels.first() {
            Some(c) => e.info.attributes(&signed.app, c).await,
            None => Map::new(),
        };
        answers.push(Value::Object(attributes));
    }
    Ok(Json(json!({ "batch": answers })))
}

async fn list_channels(
    State(broker): State<Arc<Broker>>,
    Path(app_id): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    let prefix = signed.param("filter_by_prefix").unwrap_or("");
    let info = Info::parse(signed.param("info"))?;
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::BadRequest(format!(
            "info=user_count needs filter_by_prefix=presence- (only presence channels \
             have users), got filter_by_prefix={prefix:?}"
        )));
    }
    let channels: Map<String, Value> = signed
        .app
        .hub
        .cluster_channels(prefix)
        .await
        .into_iter()
        .map(|(name, counts)| {
            let mut attributes = Map::new();
            if info.user_count {
                attributes.insert("user_count".into(), counts.user_count.unwrap_or(0).into());
            }
            if info.subscription_count {
                attributes.insert(
                    "subscription_count".into(),
                    counts.subscription_count.into(),
                );
            }
            (name, Value::Object(attributes))
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

fn checked_channel(name: &str) -> Result<(), ApiError> {
    channel::validate(name).map_err(ApiError::BadRequest)
}

async fn channel_info(
    State(broker): State<Arc<Broker>>,
    Path((app_id, channel_name)): Path<(String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    checked_channel(&channel_name)?;
    let info = Info::parse(signed.param("info"))?;
    if info.user_count && ChannelKind::of(&channel_name) != ChannelKind::Presence {
        return Err(ApiError::BadRequest(format!(
            "info=user_count is only for presence channels; {channel_name:?} is not one"
        )));
    }
    let occupied = signed
        .app
        .hub
        .cluster_channel_info(&channel_name)
        .await
        .is_some();
    let mut answer = Map::new();
    answer.insert("occupied".into(), occupied.into());
    answer.extend(info.attributes(&signed.app, &channel_name).await);
    Ok(Json(Value::Object(answer)))
}

async fn presence_users(
    State(broker): State<Arc<Broker>>,
    Path((app_id, channel_name)): Path<(String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    checked_channel(&channel_name)?;
    if ChannelKind::of(&channel_name) != ChannelKind::Presence {
        return Err(ApiError::BadRequest(format!(
            "Users can only be listed for presence channels; {channel_name:?} is not one"
        )));
    }
    let users: Vec<Value> = signed
        .app
        .hub
        .cluster_presence_users(&channel_name)
        .await
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

fn terminate_user(signed: &Signed, user_id: &str) -> ApiResult {
    let closed = signed.app.hub.cluster_terminate_user(user_id);
    tracing::info!(
        app = %signed.app.config.id,
        user = %user_id,
        closed,
        "terminated the user's connections"
    );
    Ok(Json(json!({})))
}

async fn terminate(
    State(broker): State<Arc<Broker>>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, Some(&app_id), &method, &uri, &body)?;
    terminate_user(&signed, &user_id)
}

async fn terminate_by_key(
    State(broker): State<Arc<Broker>>,
    Path(user_id): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> ApiResult {
    let signed = authenticate(&broker, None, &method, &uri, &body)?;
    terminate_user(&signed, &user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids() {
        assert!(is_socket_id("1234.5678"));
        assert!(!is_socket_id("1234."));
        assert!(!is_socket_id(".1"));
        assert!(!is_socket_id("12a.3"));
        assert!(!is_socket_id("1.2.3"));
    }

    #[test]
    fn decodes_paths() {
        assert_eq!(
            percent_decode("/apps/3/channels/a%3Db%40c+d").as_deref(),
            Some("/apps/3/channels/a=b@c+d")
        );
        assert_eq!(percent_decode("/x%zz%4").as_deref(), Some("/x%zz%4"));
        assert_eq!(percent_decode("/%ff"), None);
    }

    #[test]
    fn info_attributes() {
        assert_eq!(
            Info::parse(Some("user_count, subscription_count")).ok(),
            Some(Info {
                user_count: true,
                subscription_count: true
            })
        );
        assert_eq!(Info::parse(None).ok(), Some(Info::default()));
        let err = Info::parse(Some("user_count,foo")).unwrap_err().to_string();
        assert!(err.contains("\"foo\""), "{err}");
    }

    #[test]
    fn events_are_checked_with_reasons() {
        let parse = |body: &str| parse_event(&parse_body(body.as_bytes())?, None);
        let ok = parse(r#"{"name":"e","data":"{}","channels":["a","b","a"]}"#).unwrap();
        assert_eq!(ok.channels, ["a", "b"]);
        let one = parse(r#"{"name":"e","data":"x","channel":"a","socket_id":"1.2"}"#).unwrap();
        assert_eq!(one.channels, ["a"]);
        assert_eq!(one.socket_id.as_deref(), Some("1.2"));
        let err = |body: &str| parse(body).unwrap_err();
        assert!(matches!(
            err(r#"{"data":"x","channel":"a"}"#),
            ApiError::BadRequest(_)
        ));
        assert!(err(r#"{"name":"e","data":{"a":1},"channel":"a"}"#)
            .to_string()
            .contains("must be a string"));
        assert!(matches!(
            err(&format!(
                r#"{{"name":"e","data":"{}","channel":"a"}}"#,
                "x".repeat(MAX_DATA_BYTES + 1)
            )),
            ApiError::TooLarge(_)
        ));
        assert!(err(r#"{"name":"e","data":"x","channels":[]}"#)
            .to_string()
            .contains("0 were given"));
        assert!(err(r#"{"name":"e","data":"x","channel":"a b"}"#)
            .to_string()
            .contains("Invalid channel name"));
        assert!(
            err(r#"{"name":"e","data":"x","channel":"a","socket_id":"abc"}"#)
                .to_string()
                .contains("\"abc\"")
        );
        assert!(err("[1]").to_string().contains("an array"));
        assert!(err("{").to_string().contains("not valid JSON"));
    }
}
