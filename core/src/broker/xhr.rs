//! The HTTP fallback that unmodified pusher-js 8 uses when WebSockets are
//! blocked: its `xhr_streaming` and `xhr_polling` transports, which speak a
//! SockJS-like wire format.
//!
//! pusher-js names a session `{server}/{session}` (0-999 and 8 base-32
//! characters) under `{httpPath}/app/{key}` (`httpPath` defaults to
//! `/pusher`) and issues:
//!
//! - `POST …/{server}/{session}/xhr_streaming`: a long-lived chunked
//!   response; or `POST …/xhr`: one poll, answered as soon as something is
//!   queued (or with `h` after [`XhrSettings::heartbeat`]) and then re-issued;
//! - `POST …/xhr_send` with a JSON array of Pusher frames (`["{…}"]`); an
//!   empty `[]` is the client's ping and its answer to every `h`.
//!
//! Responses are newline-terminated frames: `o` (open, once per session),
//! `a["<pusher json>",…]`, `h` (heartbeat) and `c[code,"reason"]` (close).
//!
//! Each session is a task owning a [`Session`], the same protocol state
//! machine as a WebSocket's: receive requests attach to it in turn, sends
//! feed it, and a session that no receive request has held for
//! [`XhrSettings::disconnect_delay`] is cleaned up like a closed WebSocket
//! (presence `member_removed`, webhooks, and so on).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use super::app::App;
use super::connection::Session;
use super::hub::Outgoing;
use super::protocol::{self, code, Frame};
use super::server::Broker;
use super::BrokerSettings;

/// Settings of the HTTP fallback.
#[derive(Debug, Clone)]
pub struct XhrSettings {
    /// A stream quiet this long gets an `h`; a poll held this long is
    /// answered with `h`. Well under pusher-js's 30-s pong timeout.
    pub heartbeat: Duration,
    /// A session that no receive request has held for this long is closed
    /// and cleaned up. pusher-js re-issues its receive request at once (and
    /// never resumes a session after a failed one), so this only delays the
    /// cleanup of clients that went away.
    pub disconnect_delay: Duration,
    /// Open sessions of all apps together; more are refused with 4100.
    pub max_sessions: usize,
}

impl Default for XhrSettings {
    fn default() -> Self {
        XhrSettings {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(10),
            max_sessions: 10_000,
        }
    }
}

/// Defeats proxies and old browsers that buffer the start of a response:
/// 2048 `h` and a newline before a stream's first frame, as SockJS servers
/// send. pusher-js reads it as a heartbeat before the session is open,
/// which it ignores.
const PRELUDE_LEN: usize = 2048;
/// pusher-js re-opens a stream once it has read more than this many
/// (UTF-16) characters of it (`MAX_BUFFER_LENGTH` in its http_request.ts),
/// aborting the old request: whatever was still in flight on it would be
/// lost. So a stream past this gets nothing more, and what is queued waits
/// for the new request (a stream that is not re-opened within a heartbeat
/// is ended, which SockJS-style clients answer with a new request).
const STREAM_LIMIT: usize = 256 * 1024;
/// Frames per `a[…]` frame.
const MAX_FRAMES_PER_ARRAY: usize = 256;
/// Bytes gathered into one response chunk before it is written.
const MAX_CHUNK_BYTES: usize = 64 * 1024;
/// Response chunks buffered between a session and its receive request.
const BODY_BUFFER: usize = 1;
/// Sends and receive requests waiting for a busy session.
const COMMAND_BUFFER: usize = 64;
/// Longest `{server}` or `{session}` path segment.
const MAX_SEGMENT_LEN: usize = 32;

/// How a receive request wants its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    /// `xhr_streaming`: one long response.
    Streaming,
    /// `xhr`: one response per batch of frames.
    Polling,
}

/// What the HTTP handlers tell a session's task.
enum Command {
    /// A receive request: write frames into `body` (the response).
    Receive {
        kind: Receive,
        body: mpsc::Sender<Bytes>,
    },
    /// The Pusher frames of one `xhr_send`.
    Send(Vec<String>),
}

/// Open sessions by `{key}/{server}/{session}`.
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
}

struct Entry {
    id: u64,
    commands: mpsc::Sender<Command>,
}

/// Why a session could not be opened.
enum Refused {
    OverCapacity(usize),
}

impl Sessions {
    fn commands(&self, name: &str) -> Option<mpsc::Sender<Command>> {
        lock(&self.map).get(name).map(|e| e.commands.clone())
    }

    /// Attaches a receive request to the session `name`, opening it first
    /// if there is none (or its task just ended).
    async fn attach(
        self: &Arc<Self>,
        name: &str,
        app: &Arc<App>,
        settings: &Arc<BrokerSettings>,
        kind: Receive,
        body: mpsc::Sender<Bytes>,
    ) -> Result<(), Refused> {
        let mut command = Command::Receive { kind, body };
        // The second round opens a session: a task that ended between the
        // lookup and the send has unregistered (or will) by then.
        for _ in 0..2 {
            let existing = lock(&self.map)
                .get(name)
                .map(|e| (e.id, e.commands.clone()));
            let (id, commands) = match existing {
                Some(found) => found,
                None => self.open(name, app, settings)?,
            };
            match commands.send(command).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    command = back;
                    let mut map = lock(&self.map);
                    if map.get(name).is_some_and(|e| e.id == id) {
                        map.remove(name);
                    }
                }
            }
        }
        // Unreachable in practice: a fresh task cannot have ended yet. The
        // dropped body ends the response; pusher-js reconnects.
        tracing::warn!(
            session = name,
            "HTTP fallback session could not be attached"
        );
        Ok(())
    }

    /// Registers and starts a session task, unless one appeared meanwhile.
    fn open(
        self: &Arc<Self>,
        name: &str,
        app: &Arc<App>,
        settings: &Arc<BrokerSettings>,
    ) -> Result<(u64, mpsc::Sender<Command>), Refused> {
        let mut map = lock(&self.map);
        if let Some(e) = map.get(name) {
            return Ok((e.id, e.commands.clone()));
        }
        let max = settings.xhr.max_sessions;
        if map.len() >= max {
            return Err(Refused::OverCapacity(max));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(COMMAND_BUFFER);
        map.insert(
            name.to_owned(),
            Entry {
                id,
                commands: commands.clone(),
            },
        );
        drop(map);
        let registered = Registered {
            sessions: self.clone(),
            name: name.to_owned(),
            id,
        };
        tokio::spawn(run(app.clone(), settings.clone(), receiver, registered));
        Ok((id, commands))
    }
}

/// A session's entry in [`Sessions`], removed when its task ends.
struct Registered {
    sessions: Arc<Sessions>,
    name: String,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = lock(&self.sessions.map);
        if map.get(&self.name).is_some_and(|e| e.id == self.id) {
            map.remove(&self.name);
        }
    }
}

/// The receive request a session writes to, and what it has yet to write.
struct Outlet {
    body: Option<mpsc::Sender<Bytes>>,
    kind: Receive,
    /// Whether `o` was sent (it is sent once per session).
    opened: bool,
    /// The next chunk of the response.
    pending: Vec<u8>,
    /// When a quiet receive request gets an `h` (a full stream: ends).
    heartbeat_at: Instant,
    /// Characters written to the current stream, counted like pusher-js.
    streamed: usize,
    /// Since when no receive request is attached.
    detached_at: Instant,
    heartbeat: Duration,
}

impl Outlet {
    fn new(heartbeat: Duration) -> Outlet {
        let now = Instant::now();
        Outlet {
            body: None,
            kind: Receive::Polling,
            opened: false,
            pending: Vec::new(),
            heartbeat_at: now + heartbeat,
            streamed: 0,
            detached_at: now,
            heartbeat,
        }
    }

    /// A new receive request replaces the previous one (whose response ends).
    fn attach(&mut self, kind: Receive, body: mpsc::Sender<Bytes>) {
        let mut start = Vec::new();
        if kind == Receive::Streaming {
            start.resize(PRELUDE_LEN, b'h');
            start.push(b'\n');
        }
        if !self.opened {
            start.extend_from_slice(b"o\n");
            self.opened = true;
        }
        start.append(&mut self.pending);
        self.pending = start;
        self.body = Some(body);
        self.kind = kind;
        self.heartbeat_at = Instant::now() + self.heartbeat;
        self.streamed = 0;
    }

    fn detach(&mut self) {
        if self.body.take().is_some() {
            self.detached_at = Instant::now();
        }
    }

    fn attached(&self) -> bool {
        self.body.is_some()
    }

    /// A stream the client is about to replace ([`STREAM_LIMIT`]).
    fn full(&self) -> bool {
        self.kind == Receive::Streaming && self.streamed > STREAM_LIMIT
    }

    /// Whether to take more frames from the queue into the next chunk.
    fn wants_frames(&self) -> bool {
        self.attached() && !self.full() && self.pending.len() < MAX_CHUNK_BYTES
    }

    /// Attached, with nothing to write.
    fn quiet(&self) -> bool {
        self.attached() && self.pending.is_empty()
    }

    /// Nothing was written for a heartbeat: an `h`, or the end of a full
    /// stream that was not replaced.
    fn heartbeat(&mut self) {
        if self.full() {
            self.detach();
        } else {
            self.pending.extend_from_slice(b"h\n");
        }
    }

    /// `first` and what else is queued, as `a[…]` frames.
    fn push_frames(&mut self, first: Frame, queue: &mut Outgoing) {
        push_array(&mut self.pending, first, queue);
    }

    /// Hands the pending chunk to the response; a poll ends with it.
    fn write(&mut self, permit: mpsc::Permit<'_, Bytes>) {
        let chunk = std::mem::take(&mut self.pending);
        self.streamed += utf16_len(&chunk);
        permit.send(Bytes::from(chunk));
        self.heartbeat_at = Instant::now() + self.heartbeat;
        if self.kind == Receive::Polling {
            self.detach();
        }
    }
}

/// The length of UTF-8 `text` in UTF-16 units, as JavaScript counts it.
fn utf16_len(text: &[u8]) -> usize {
    text.iter()
        .map(|b| match b {
            0x80..=0xBF => 0, // a continuation byte
            0xF0.. => 2,      // a character outside the BMP: a surrogate pair
            _ => 1,
        })
        .sum()
}

/// Appends `a["…",…]\n` holding `first` and up to
/// [`MAX_FRAMES_PER_ARRAY`] - 1 more queued frames.
fn push_array(out: &mut Vec<u8>, first: Frame, queue: &mut Outgoing) {
    out.extend_from_slice(b"a[");
    push_quoted(out, first.as_str());
    for _ in 1..MAX_FRAMES_PER_ARRAY {
        if out.len() >= MAX_CHUNK_BYTES {
            break;
        }
        match queue.try_recv() {
            Ok(frame) => {
                out.push(b',');
                push_quoted(out, frame.as_str());
            }
            Err(_) => break,
        }
    }
    out.extend_from_slice(b"]\n");
}

/// Appends `text` as a JSON string.
fn push_quoted(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// `c[code,"reason"]\n`.
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut out = format!("c[{code},").into_bytes();
    push_quoted(&mut out, reason);
    out.extend_from_slice(b"]\n");
    out
}

/// Resolves when `body` can take a chunk (an error once its response is gone).
async fn reserve(
    body: &Option<mpsc::Sender<Bytes>>,
) -> Result<mpsc::Permit<'_, Bytes>, mpsc::error::SendError<()>> {
    match body {
        Some(body) => body.reserve().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the response of `body` is gone (the client left).
async fn gone(body: &Option<mpsc::Sender<Bytes>>) {
    match body {
        Some(body) => body.closed().await,
        None => std::future::pending().await,
    }
}

/// Runs one session until it closes or expires.
async fn run(
    app: Arc<App>,
    settings: Arc<BrokerSettings>,
    mut commands: mpsc::Receiver<Command>,
    registered: Registered,
) {
    let (mut session, mut queue) = Session::open(app, &settings);
    let closer = session.closer().clone();
    let socket_id = session.socket_id().to_owned();
    tracing::debug!(connection = %socket_id, session = %registered.name, "HTTP fallback session opened");
    let xhr = &settings.xhr;
    let mut out = Outlet::new(xhr.heartbeat);
    let mut last_seen = Instant::now();
    let mut pinged = false;
    let idle = sleep(settings.activity_timeout);
    tokio::pin!(idle);
    let close: Option<(u16, String)> = loop {
        // A handle for this round, so the arms below may replace `out.body`.
        let body = out.body.clone();
        tokio::select! {
            biased;
            _ = closer.wait() => break closer.requested(),
            command = commands.recv() => {
                let Some(command) = command else { break None };
                last_seen = Instant::now();
                pinged = false;
                match command {
                    Command::Receive { kind, body } => out.attach(kind, body),
                    Command::Send(messages) => {
                        for message in &messages {
                            session.handle(message);
                        }
                    }
                }
            }
            frame = queue.recv(), if out.wants_frames() => {
                let Some(frame) = frame else { break None };
                out.push_frames(frame, &mut queue);
            }
            permit = reserve(&body), if !out.pending.is_empty() => match permit {
                Ok(permit) => out.write(permit),
                Err(_) => out.detach(),
            },
            _ = gone(&body), if out.quiet() => out.detach(),
            _ = sleep_until(out.heartbeat_at), if out.quiet() => out.heartbeat(),
            _ = sleep_until(out.detached_at + xhr.disconnect_delay), if !out.attached() => {
                tracing::debug!(connection = %socket_id, "HTTP fallback session expired: no receive request");
                break None;
            }
            _ = &mut idle => {
                let quiet_until = last_seen + settings.activity_timeout;
                if Instant::now() < quiet_until {
                    idle.as_mut().reset(quiet_until);
                } else if pinged {
                    break Some((code::PONG_NOT_RECEIVED, "Pong reply not received".into()));
                } else {
                    pinged = true;
                    session.send(&protocol::ping());
                    idle.as_mut().reset(Instant::now() + settings.pong_timeout);
                }
            }
        }
    };
    session.cleanup();
    if let Some((code, reason)) = close {
        tracing::debug!(connection = %socket_id, code, %reason, "HTTP fallback session closed");
        // Deliver what is queued (e.g. the error that explains the close)
        // and the close frame, to the next receive request if none is here.
        while let Ok(frame) = queue.try_recv() {
            push_array(&mut out.pending, frame, &mut queue);
        }
        out.pending.extend_from_slice(&close_frame(code, &reason));
        let deadline = Instant::now() + xhr.disconnect_delay;
        if !out.attached() {
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(Command::Receive { kind, body }) => {
                            out.attach(kind, body);
                            break;
                        }
                        Some(Command::Send(_)) => {}
                        None => break,
                    },
                    _ = sleep_until(deadline) => break,
                }
            }
        }
        if let Some(body) = out.body.take() {
            let chunk = Bytes::from(std::mem::take(&mut out.pending));
            let _ = tokio::time::timeout_at(deadline, body.send(chunk)).await;
        }
    }
    drop(registered);
}

/// The routes of the fallback, at pusher-js's default `httpPath`
/// (`/pusher`) and at the root.
pub(super) fn routes(broker: Arc<Broker>) -> Router {
    let send_limit = broker.settings.max_message_bytes.saturating_mul(2) + 1024;
    let mut router = Router::new();
    for prefix in ["/pusher", ""] {
        let base = format!("{prefix}/app/{{key}}/{{server}}/{{session}}");
        router = router
            .route(
                &format!("{base}/xhr_streaming"),
                post(streaming).options(preflight),
            )
            .route(&format!("{base}/xhr"), post(polling).options(preflight))
            .route(
                &format!("{base}/xhr_send"),
                post(send)
                    .options(preflight)
                    .layer(DefaultBodyLimit::max(send_limit)),
            );
    }
    router.with_state(broker)
}

type SessionPath = Path<(String, String, String)>;

async fn streaming(
    State(broker): State<Arc<Broker>>,
    Path((key, server, session)): SessionPath,
    RawQuery(query): RawQuery,
) -> Response {
    receive(broker, key, server, session, query, Receive::Streaming).await
}

async fn polling(
    State(broker): State<Arc<Broker>>,
    Path((key, server, session)): SessionPath,
    RawQuery(query): RawQuery,
) -> Response {
    receive(broker, key, server, session, query, Receive::Polling).await
}

async fn receive(
    broker: Arc<Broker>,
    key: String,
    server: String,
    session: String,
    query: Option<String>,
    kind: Receive,
) -> Response {
    if let Err(message) = check_segments(&server, &session) {
        return plain(StatusCode::NOT_FOUND, message);
    }
    let Some(app) = broker.apps.by_key(&key) else {
        return refuse(
            code::APP_NOT_FOUND,
            &format!("Application does not exist: no app has the key {key:?}"),
        );
    };
    if let Some(p) = protocol_version(query.as_deref()).filter(|p| *p < 5) {
        return refuse(
            code::UNSUPPORTED_PROTOCOL,
            &format!("Unsupported protocol version {p}; use 7"),
        );
    }
    let (body, chunks) = mpsc::channel::<Bytes>(BODY_BUFFER);
    let name = format!("{key}/{server}/{session}");
    let attached = broker
        .xhr
        .attach(&name, app, &broker.settings, kind, body)
        .await;
    if let Err(Refused::OverCapacity(max)) = attached {
        tracing::warn!(max, "HTTP fallback session refused: too many sessions");
        return refuse(
            code::OVER_CAPACITY,
            &format!("Over capacity: {max} HTTP fallback sessions are open; retry later"),
        );
    }
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks
            .recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), chunks))
    });
    (frame_headers(), Body::from_stream(stream)).into_response()
}

/// A complete answer that opens and closes at once, the way a refused
/// WebSocket gets a `pusher:error` and a close frame: pusher-js's handshake
/// sees the error's code (4001: do not retry).
fn refuse(close_code: u16, message: &str) -> Response {
    let mut body = b"o\na[".to_vec();
    push_quoted(
        &mut body,
        protocol::error(Some(close_code), message).as_str(),
    );
    body.extend_from_slice(b"]\n");
    body.extend_from_slice(&close_frame(close_code, message));
    (frame_headers(), body).into_response()
}

async fn send(
    State(broker): State<Arc<Broker>>,
    Path((key, server, session)): SessionPath,
    body: Bytes,
) -> Response {
    if let Err(message) = check_segments(&server, &session) {
        return plain(StatusCode::NOT_FOUND, message);
    }
    let messages: Vec<String> = match serde_json::from_slice(&body) {
        Ok(messages) => messages,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("xhr_send expects a JSON array of strings (Pusher frames): {e}"),
            )
        }
    };
    let max = broker.settings.max_message_bytes;
    if let Some(big) = messages.iter().find(|m| m.len() > max) {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a message of {} bytes was sent; at most {max} are allowed",
                big.len()
            ),
        );
    }
    let name = format!("{key}/{server}/{session}");
    let Some(commands) = broker.xhr.commands(&name) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no HTTP fallback session {server}/{session} is open for the app key {key:?}"),
        );
    };
    if commands.send(Command::Send(messages)).await.is_err() {
        return plain(
            StatusCode::NOT_FOUND,
            format!("the HTTP fallback session {server}/{session} has closed"),
        );
    }
    (StatusCode::NO_CONTENT, cors()).into_response()
}

/// The CORS preflight of a cross-origin pusher-js (it posts JSON).
async fn preflight(headers: HeaderMap) -> Response {
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type"));
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("OPTIONS, POST"),
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            ),
        ],
    )
        .into_response()
}

/// pusher-js sends no cookies, so any origin may read the answers.
fn cors() -> [(header::HeaderName, &'static str); 1] {
    [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")]
}

fn frame_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (
            header::CONTENT_TYPE,
            "application/javascript; charset=UTF-8",
        ),
        (
            header::CACHE_CONTROL,
            "no-store, no-cache, no-transform, must-revalidate, max-age=0",
        ),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        // nginx: pass chunks on as they come.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ]
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, cors(), message.into()).into_response()
}

/// `{server}` and `{session}`: short, and only letters, digits, `_`, `-`.
fn check_segments(server: &str, session: &str) -> Result<(), String> {
    for (what, value) in [("server", server), ("session", session)] {
        let ok = !value.is_empty()
            && value.len() <= MAX_SEGMENT_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "invalid {what} id {value:?} in the session path: 1 to {MAX_SEGMENT_LEN} letters, digits, '_' or '-'"
            ));
        }
    }
    Ok(())
}

/// The `protocol` query parameter, when it is a number.
fn protocol_version(query: Option<&str>) -> Option<u32> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("protocol="))
        .and_then(|v| v.parse().ok())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(texts: &[&'static str]) -> (Frame, Outgoing) {
        let (tx, rx) = crate::broker::hub::ConnHandle::new("1.1".into(), 16);
        for t in &texts[1..] {
            assert!(tx.send(&Frame::from_static(t)));
        }
        (Frame::from_static(texts[0]), rx)
    }

    #[test]
    fn arrays_hold_json_strings_of_frames() {
        let (first, mut rest) =
            frames(&[r#"{"event":"a","data":"{\"x\":1}"}"#, r#"{"event":"b"}"#]);
        let mut out = Vec::new();
        push_array(&mut out, first, &mut rest);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("a[") && text.ends_with("]\n"));
        let parsed: Vec<String> = serde_json::from_str(&text[1..text.len() - 1]).unwrap();
        assert_eq!(
            parsed,
            vec![r#"{"event":"a","data":"{\"x\":1}"}"#, r#"{"event":"b"}"#]
        );
    }

    #[test]
    fn close_frames_quote_the_reason() {
        assert_eq!(
            close_frame(4001, "no \"app\"\n"),
            b"c[4001,\"no \\\"app\\\"\\n\"]\n".to_vec()
        );
    }

    #[test]
    fn a_session_opens_once_and_streams_start_with_the_prelude() {
        let mut out = Outlet::new(Duration::from_secs(25));
        let (body, _rx) = mpsc::channel(1);
        out.attach(Receive::Streaming, body.clone());
        assert_eq!(out.pending.len(), PRELUDE_LEN + 1 + 2);
        assert!(out.pending.ends_with(b"h\no\n"));
        out.pending.clear();
        out.attach(Receive::Polling, body.clone());
        assert!(out.pending.is_empty(), "a second receive gets no `o`");
        out.attach(Receive::Streaming, body);
        assert!(!out.pending.ends_with(b"o\n"));
    }

    #[test]
    fn streams_count_characters_like_javascript() {
        assert_eq!(utf16_len("aé€😀".as_bytes()), 1 + 1 + 1 + 2);
        let mut out = Outlet::new(Duration::from_secs(25));
        let (body, mut rx) = mpsc::channel(4);
        out.attach(Receive::Streaming, body.clone());
        out.pending.resize(STREAM_LIMIT, b'x');
        out.write(body.try_reserve().unwrap());
        assert!(
            !out.full() && out.wants_frames(),
            "exactly the limit is not past it"
        );
        out.pending.extend_from_slice(b"h\n");
        out.write(body.try_reserve().unwrap());
        assert!(out.full() && !out.wants_frames());
        out.heartbeat();
        assert!(!out.attached(), "a full stream that is not replaced ends");
        assert_eq!(rx.try_recv().unwrap().len(), STREAM_LIMIT);
        out.attach(Receive::Streaming, body);
        assert!(!out.full(), "a new stream starts from zero");
    }

    #[test]
    fn segments_and_protocol() {
        assert!(check_segments("123", "abcdefgh").is_ok());
        assert!(check_segments("", "abcdefgh").is_err());
        assert!(check_segments("1", "a/b").is_err());
        assert!(check_segments("1", &"x".repeat(33)).is_err());
        assert_eq!(
            protocol_version(Some("protocol=7&client=js&version=8.6.0&t=1&n=2")),
            Some(7)
        );
        assert_eq!(protocol_version(Some("client=js")), None);
        assert_eq!(protocol_version(None), None);
    }
}
