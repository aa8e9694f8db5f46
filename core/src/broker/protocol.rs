//! Pusher protocol 7 frames, I/O-free: parsing what clients send and
//! encoding what the server sends. Server frames are encoded once into a
//! [`Frame`] that every recipient shares.

use std::borrow::Cow;

use axum::extract::ws::Utf8Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// An encoded server→client text frame; cloning shares the bytes.
pub type Frame = Utf8Bytes;

/// Pusher error codes the broker uses.
pub mod code {
    pub const APP_NOT_FOUND: u16 = 4001;
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    pub const UNAUTHORIZED: u16 = 4009;
    pub const OVER_CAPACITY: u16 = 4100;
    pub const RECONNECT: u16 = 4200;
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    pub const CLIENT_EVENT_REJECTED: u16 = 4301;
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Subscribe {
        channel: String,
        auth: Option<String>,
        /// Presence `channel_data`, exactly as sent (it is signed).
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
    Pong,
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-` event; `data` is the raw JSON text, relayed untouched.
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    /// Any other event name (ignored with an error frame).
    Other {
        event: String,
    },
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct SubscribeData {
    channel: Option<String>,
    auth: Option<String>,
    channel_data: Option<String>,
}

#[derive(Deserialize, Default)]
struct SigninData {
    auth: Option<String>,
    user_data: Option<String>,
}

/// Decodes `data` that may be an object or a string holding one (both
/// forms are seen in the wild).
fn object_data<T: serde::de::DeserializeOwned + Default>(
    data: Option<&RawValue>,
) -> Result<T, String> {
    let Some(raw) = data else {
        return Ok(T::default());
    };
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_str(&inner).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// Parses one text frame from a client.
pub fn parse(text: &str) -> Result<ClientFrame, String> {
    let raw: RawFrame<'_> =
        serde_json::from_str(text).map_err(|e| format!("Invalid JSON frame: {e}"))?;
    match raw.event.as_ref() {
        "pusher:subscribe" => {
            let d: SubscribeData =
                object_data(raw.data).map_err(|e| format!("Invalid pusher:subscribe data: {e}"))?;
            let channel = d.channel.ok_or("pusher:subscribe needs data.channel")?;
            Ok(ClientFrame::Subscribe {
                channel,
                auth: d.auth.filter(|a| !a.is_empty()),
                channel_data: d.channel_data,
            })
        }
        "pusher:unsubscribe" => {
            let d: SubscribeData = object_data(raw.data)
                .map_err(|e| format!("Invalid pusher:unsubscribe data: {e}"))?;
            Ok(ClientFrame::Unsubscribe {
                channel: d.channel.ok_or("pusher:unsubscribe needs data.channel")?,
            })
        }
        "pusher:ping" => Ok(ClientFrame::Ping),
        "pusher:pong" => Ok(ClientFrame::Pong),
        "pusher:signin" => {
            let d: SigninData =
                object_data(raw.data).map_err(|e| format!("Invalid pusher:signin data: {e}"))?;
            Ok(ClientFrame::Signin {
                auth: d.auth.ok_or("pusher:signin needs data.auth")?,
                user_data: d.user_data.ok_or("pusher:signin needs data.user_data")?,
            })
        }
        event if event.starts_with("client-") => Ok(ClientFrame::ClientEvent {
            event: event.to_owned(),
            channel: raw
                .channel
                .ok_or("A client event needs a channel")?
                .into_owned(),
            data: raw.data.map_or("null", RawValue::get).to_owned(),
        }),
        event => Ok(ClientFrame::Other {
            event: event.to_owned(),
        }),
    }
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> Frame {
    let data =
        format!(r#"{{"socket_id":"{socket_id}","activity_timeout":{activity_timeout_secs}}}"#);
    format!(
        r#"{{"event":"pusher:connection_established","data":{}}}"#,
        quoted(&data)
    )
    .into()
}

/// `pusher:error`; `code` null for errors that carry no close code.
pub fn error(code: Option<u16>, message: &str) -> Frame {
    let code = code.map_or("null".to_owned(), |c| c.to_string());
    format!(
        r#"{{"event":"pusher:error","data":{{"code":{code},"message":{}}}}}"#,
        quoted(message)
    )
    .into()
}

/// The channel-scoped error that Laravel Echo and pusher-js apps bind to.
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Frame {
    format!(
        r#"{{"event":"pusher:subscription_error","channel":{},"data":{{"type":{},"error":{},"status":{status}}}}}"#,
        quoted(channel),
        quoted(kind),
        quoted(message)
    )
    .into()
}

pub fn pong() -> Frame {
    Frame::from_static(r#"{"event":"pusher:pong","data":"{}"}"#)
}

pub fn ping() -> Frame {
    Frame::from_static(r#"{"event":"pusher:ping","data":"{}"}"#)
}

/// `data` is the JSON text of the succeeded payload (`{}` or presence data).
pub fn subscription_succeeded(channel: &str, data: &str) -> Frame {
    format!(
        r#"{{"event":"pusher_internal:subscription_succeeded","channel":{},"data":{}}}"#,
        quoted(channel),
        quoted(data)
    )
    .into()
}

pub fn member_added(channel: &str, user_id: &str, user_info: &str) -> Frame {
    let data = format!(
        r#"{{"user_id":{},"user_info":{user_info}}}"#,
        quoted(user_id)
    );
    format!(
        r#"{{"event":"pusher_internal:member_added","channel":{},"data":{}}}"#,
        quoted(channel),
        quoted(&data)
    )
    .into()
}

pub fn member_removed(channel: &str, user_id: &str) -> Frame {
    let data = format!(r#"{{"user_id":{}}}"#, quoted(user_id));
    format!(
        r#"{{"event":"pusher_internal:member_removed","channel":{},"data":{}}}"#,
        quoted(channel),
        quoted(&data)
    )
    .into()
}

pub fn subscription_count(channel: &str, count: usize) -> Frame {
    format!(
        r#"{{"event":"pusher_internal:subscription_count","channel":{},"data":{{"subscription_count":{count}}}}}"#,
        quoted(channel)
    )
    .into()
}

pub fn cache_miss(channel: &str) -> Frame {
    format!(
        r#"{{"event":"pusher:cache_miss","channel":{}}}"#,
        quoted(channel)
    )
    .into()
}

pub fn signin_success(user_data: &str) -> Frame {
    format!(
        r#"{{"event":"pusher:signin_success","data":{{"user_data":{}}}}}"#,
        quoted(user_data)
    )
    .into()
}

/// A channel event whose `data` is a string (HTTP API, engine events).
pub fn channel_event(event: &str, channel: &str, data: &str) -> Frame {
    format!(
        r#"{{"event":{},"channel":{},"data":{}}}"#,
        quoted(event),
        quoted(channel),
        quoted(data)
    )
    .into()
}

/// A relayed client event: `data` is raw JSON, `user_id` only on presence.
pub fn client_event(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> Frame {
    let user = user_id.map_or(String::new(), |u| format!(r#","user_id":{}"#, quoted(u)));
    format!(
        r#"{{"event":{},"channel":{},"data":{data}{user}}}"#,
        quoted(event),
        quoted(channel)
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pusher_js_sends() {
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"news"}}"#).unwrap(),
            ClientFrame::Subscribe {
                channel: "news".into(),
                auth: None,
                channel_data: None
            }
        );
        let presence = r#"{"event":"pusher:subscribe","data":{"auth":"k:s","channel_data":"{\"user_id\":\"10\"}","channel":"presence-x"}}"#;
        assert_eq!(
            parse(presence).unwrap(),
            ClientFrame::Subscribe {
                channel: "presence-x".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":"10"}"#.into())
            }
        );
        // String-encoded data is accepted too.
        let stringy = r#"{"event":"pusher:unsubscribe","data":"{\"channel\":\"news\"}"}"#;
        assert_eq!(
            parse(stringy).unwrap(),
            ClientFrame::Unsubscribe {
                channel: "news".into()
            }
        );
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            parse(r#"{"event":"client-typing","channel":"private-c","data":{"typing": true}}"#)
                .unwrap(),
            ClientFrame::ClientEvent {
                event: "client-typing".into(),
                channel: "private-c".into(),
                data: r#"{"typing": true}"#.into()
            }
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"data":{}}"#).is_err());
        assert!(parse(r#"{"event":"pusher:subscribe","data":{}}"#).is_err());
        assert!(parse(r#"{"event":"pusher:subscribe","data":"{oops"}"#).is_err());
        assert!(parse(r#"{"event":"client-x","data":{}}"#).is_err());
    }

    #[test]
    fn server_frames_are_pusher_shaped() {
        let f = connection_established("123.456", 120);
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "123.456");
        assert_eq!(data["activity_timeout"], 120);
        let e: serde_json::Value = serde_json::from_str(
            channel_event("new-message", "private-c", r#"{"a":"\"q\""}"#).as_str(),
        )
        .unwrap();
        assert_eq!(e["data"], r#"{"a":"\"q\""}"#);
        let c: serde_json::Value = serde_json::from_str(
            client_event("client-t", "presence-c", r#"{"x":1}"#, Some("10")).as_str(),
        )
        .unwrap();
        assert_eq!(c["data"]["x"], 1);
        assert_eq!(c["user_id"], "10");
        let err: serde_json::Value =
            serde_json::from_str(error(None, "bad \"sig\"").as_str()).unwrap();
        assert!(err["data"]["code"].is_null());
    }
}
