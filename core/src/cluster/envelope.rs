//! The messages on an app's Redis bus, without I/O.
//!
//! An event is `e` (or `c` for a cache channel), then the origin node, its
//! sequence number on that node, the channel and the excluded socket id
//! (empty for none), each ended by a newline, then the encoded frame as it
//! goes to clients. Channel names and
//! socket ids hold no newline, node ids are hex. Everything else is `j`, a
//! newline and a JSON object tagged by `k`; the Lua scripts write these
//! with `cjson`.

use serde::{Deserialize, Serialize};

/// One message read from the bus.
#[derive(Debug, PartialEq, Eq)]
pub enum BusMessage<'a> {
    Event {
        node: &'a str,
        /// Counts the origin node's events, so it knows its own when they
        /// come back.
        seq: u64,
        channel: &'a str,
        except: Option<&'a str>,
        cache: bool,
        /// The encoded frame, shared by every subscriber.
        frame: &'a [u8],
    },
    Control(Control),
}

/// The non-event messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Control {
    /// A user is in a presence channel (first connection cluster-wide);
    /// `s` is the joining socket, which is not told (empty after a resync).
    Add {
        c: String,
        u: String,
        /// `user_info` as JSON text.
        i: String,
        #[serde(default)]
        s: String,
    },
    /// A user's last connection to a presence channel left.
    Rm { c: String, u: String },
    /// A channel's subscription count changed.
    Count { c: String, n: u64 },
    /// Close a signed-in user's connections (sent by node `n`).
    Term { u: String, n: String },
    /// A node's heartbeat, which it waits to read back (liveness of its
    /// own subscription).
    Hb { n: String },
}

/// The header of an event envelope; the frame follows it.
pub fn event_header(
    node: &str,
    seq: u64,
    channel: &str,
    except: Option<&str>,
    cache: bool,
) -> String {
    let kind = if cache { 'c' } else { 'e' };
    format!(
        "{kind}\n{node}\n{seq}\n{channel}\n{}\n",
        except.unwrap_or("")
    )
}

/// A control message as published.
pub fn control(message: &Control) -> String {
    // Serializing these plain structs cannot fail.
    format!("j\n{}", serde_json::to_string(message).unwrap_or_default())
}

/// Reads one bus message; `Err` names what is wrong with it.
pub fn parse(payload: &[u8]) -> Result<BusMessage<'_>, String> {
    let (kind, rest) = match payload {
        [k @ (b'e' | b'c' | b'j'), b'\n', rest @ ..] => (*k, rest),
        _ => return Err("a bus message starts with e, c or j and a newline".into()),
    };
    if kind == b'j' {
        return serde_json::from_slice(rest)
            .map(BusMessage::Control)
            .map_err(|e| format!("invalid control message: {e}"));
    }
    let mut fields = rest.splitn(5, |&b| b == b'\n');
    let mut text = |what: &str| {
        let field = fields
            .next()
            .ok_or_else(|| format!("the event envelope has no {what}"))?;
        std::str::from_utf8(field).map_err(|_| format!("the event's {what} is not UTF-8"))
    };
    let node = text("node")?;
    let seq = text("sequence number")?
        .parse()
        .map_err(|_| "the event's sequence number is not a number".to_owned())?;
    let channel = text("channel")?;
    let except = text("socket id")?;
    let frame = fields.next().ok_or("the event envelope has no frame")?;
    if channel.is_empty() {
        return Err("the event envelope names no channel".into());
    }
    Ok(BusMessage::Event {
        node,
        seq,
        channel,
        except: (!except.is_empty()).then_some(except),
        cache: kind == b'c',
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_frame_untouched() {
        let frame = "{\"event\":\"e\",\"channel\":\"c\",\"data\":\"a\\nb\"}";
        let mut wire = event_header("00ff", 7, "private-c", Some("1.2"), false).into_bytes();
        wire.extend_from_slice(frame.as_bytes());
        assert_eq!(
            parse(&wire).unwrap(),
            BusMessage::Event {
                node: "00ff",
                seq: 7,
                channel: "private-c",
                except: Some("1.2"),
                cache: false,
                frame: frame.as_bytes(),
            }
        );
        let mut cached = event_header("1", 0, "cache-x", None, true).into_bytes();
        cached.extend_from_slice(b"x\ny");
        assert!(matches!(
            parse(&cached).unwrap(),
            BusMessage::Event {
                cache: true,
                except: None,
                frame: b"x\ny",
                ..
            }
        ));
    }

    #[test]
    fn controls_round_trip_and_read_what_lua_writes() {
        let add = Control::Add {
            c: "presence-x".into(),
            u: "a\nb".into(),
            i: r#"{"name":"Ann"}"#.into(),
            s: "1.2".into(),
        };
        match parse(control(&add).as_bytes()).unwrap() {
            BusMessage::Control(c) => assert_eq!(c, add),
            other => panic!("{other:?}"),
        }
        // cjson escapes slashes and writes numbers bare.
        let lua = br#"j
{"k":"count","c":"a\/b","n":3}"#;
        assert_eq!(
            parse(lua).unwrap(),
            BusMessage::Control(Control::Count {
                c: "a/b".into(),
                n: 3
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"").is_err());
        assert!(parse(b"x\n").is_err());
        assert!(parse(b"e\nnode\nchannel").is_err());
        assert!(parse(b"e\nnode\n1\n\n\nframe").is_err());
        assert!(parse(b"e\nnode\nx\nc\n\nframe").is_err());
        assert!(parse(b"j\n{\"k\":\"nope\"}").is_err());
        assert!(parse(b"e\n\xff\n1\nc\n\nf").is_err());
    }
}
