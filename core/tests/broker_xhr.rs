//! pusher-js's HTTP fallback (`xhr_streaming`, `xhr_polling`) on
//! `tidings serve`, driven on the wire the way pusher-js 8 drives it
//! (pusher-js xhr_streaming and xhr_polling): session paths, `o`/`a[…]`/`h`/`c[…]` frames,
//! `xhr_send`, events triggered through the signed Pusher HTTP API.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tidings::api::{ServeConfig, Server};
use tidings::broker::{AppConfig, BrokerSettings, XhrSettings};
use tidings::signature;
use tokio::sync::oneshot;

const APP_ID: &str = "3";
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
/// How long anything may take on a loaded machine before a test fails.
const DEADLINE: Duration = Duration::from_secs(15);
const QUERY: &str = "protocol=7&client=js&version=8.6.0";

struct TestServer {
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(xhr: XhrSettings) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServeConfig {
        demo: true,
        broker: BrokerSettings {
            xhr,
            ..BrokerSettings::default()
        },
        ..ServeConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            dir.path(),
            "memory:",
            vec![AppConfig::new(APP_ID, KEY, SECRET)],
        )
    };
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        _stop: stop,
        _dir: dir,
    }
}

fn fast() -> XhrSettings {
    XhrSettings {
        heartbeat: Duration::from_millis(500),
        disconnect_delay: Duration::from_millis(500),
        ..XhrSettings::default()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A session id the way pusher-js makes one: `{0-999}/{8 base-32 chars}`.
fn session_path() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let mut n = nanos ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 40);
    let server = n % 1000;
    let chars: String = (0..8)
        .map(|_| {
            let digit = (n % 32) as u32;
            n /= 32;
            char::from_digit(digit, 32).expect("base 32")
        })
        .collect();
    format!("{server}/{chars}")
}

impl TestServer {
    /// A new session at pusher-js's default `httpPath`.
    fn session(&self) -> Session {
        self.session_at("/pusher", KEY)
    }

    fn session_at(&self, prefix: &str, key: &str) -> Session {
        Session {
            base: format!("http://{}{prefix}/app/{key}/{}", self.addr, session_path()),
            http: self.http.clone(),
            counter: 0,
        }
    }

    /// Triggers an event through the HTTP API, signed like the SDKs sign.
    async fn trigger(&self, channel: &str, event: &str, data: &str) {
        let path = format!("/apps/{APP_ID}/events");
        let body = json!({"name": event, "channel": channel, "data": data}).to_string();
        let (status, text) = self.signed("POST", &path, &body).await;
        assert_eq!(status, 200, "trigger: {text}");
    }

    async fn signed(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let params =
            signature::sign_request(KEY, SECRET, method, path, body.as_bytes(), now(), &[]);
        let url = reqwest::Url::parse_with_params(&format!("http://{}{path}", self.addr), &params)
            .expect("url");
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let response = within(request.send()).await.expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("an answer within the deadline")
}

/// One HTTP fallback session, addressed like pusher-js addresses it.
struct Session {
    /// `http://host/pusher/app/{key}/{server}/{session}`
    base: String,
    http: reqwest::Client,
    /// pusher-js's `n` (every URL also gets `t`).
    counter: u32,
}

impl Session {
    fn url(&mut self, what: &str, query: &str) -> String {
        self.counter += 1;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let sep = if query.is_empty() { "" } else { "&" };
        format!(
            "{}/{what}?{query}{sep}t={millis}&n={}",
            self.base, self.counter
        )
    }

    /// `POST …/xhr_streaming`: the open response.
    async fn stream(&mut self) -> Lines {
        let url = self.url("xhr_streaming", QUERY);
        let response = within(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .send(),
        )
        .await
        .expect("stream request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/javascript; charset=UTF-8"
        );
        Lines::new(response)
    }

    /// `POST …/xhr`: one whole poll answer.
    async fn poll(&mut self) -> String {
        let url = self.url("xhr", QUERY);
        let response = within(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .send(),
        )
        .await
        .expect("poll request");
        assert_eq!(response.status(), 200);
        within(response.text()).await.expect("poll body")
    }

    /// `POST …/xhr_send` with a raw body; the status.
    async fn send_raw(&mut self, body: String) -> u16 {
        let url = self.url("xhr_send", "");
        let response = within(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send(),
        )
        .await
        .expect("send request");
        response.status().as_u16()
    }

    /// Sends one Pusher frame the way pusher-js does: `["<json>"]`.
    async fn send(&mut self, frame: Value) {
        let body = serde_json::to_string(&[frame.to_string()]).expect("encode");
        assert_eq!(self.send_raw(body).await, 204);
    }

    async fn subscribe(&mut self, channel: &str, auth: Option<String>, data: Option<&str>) {
        let mut d = json!({ "channel": channel });
        if let Some(auth) = auth {
            d["auth"] = auth.into();
        }
        if let Some(data) = data {
            d["channel_data"] = data.into();
        }
        self.send(json!({"event": "pusher:subscribe", "data": d}))
            .await;
    }
}

/// The frames of a streaming response, line by line.
struct Lines {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// Pusher frames of an `a[…]` line not yet returned.
    frames: VecDeque<Value>,
}

impl Lines {
    fn new(response: reqwest::Response) -> Lines {
        Lines {
            response,
            buffer: Vec::new(),
            frames: VecDeque::new(),
        }
    }

    /// The next line; `None` when the response ended.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(String::from_utf8(line[..end].to_vec()).expect("UTF-8"));
            }
            match within(self.response.chunk()).await.expect("chunk") {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => {
                    assert!(self.buffer.is_empty(), "a partial line at the end");
                    return None;
                }
            }
        }
    }

    /// The next line, or `None` if none comes within `wait`.
    async fn line_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.line()).await.ok().flatten()
    }

    /// The next Pusher frame (heartbeats are skipped).
    async fn frame(&mut self) -> Value {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return frame;
            }
            let line = self.line().await.expect("the stream is still open");
            match line.as_bytes().first() {
                Some(b'a') => self.frames.extend(array_frames(&line)),
                Some(b'h') => continue,
                _ => panic!("expected a frame, got {line:?}"),
            }
        }
    }

    async fn expect(&mut self, event: &str) -> Value {
        let frame = self.frame().await;
        assert_eq!(frame["event"], event, "{frame}");
        frame
    }

    /// The prelude, `o` and `connection_established`; the socket id.
    async fn opened(&mut self) -> String {
        let prelude = self.line().await.expect("prelude");
        assert_eq!(prelude, "h".repeat(2048));
        assert_eq!(self.line().await.as_deref(), Some("o"));
        socket_id(&self.expect("pusher:connection_established").await)
    }
}

/// The Pusher frames of an `a["…",…]` line: each element is JSON text.
fn array_frames(line: &str) -> Vec<Value> {
    let texts: Vec<String> = serde_json::from_str(&line[1..]).expect("a JSON array");
    texts
        .iter()
        .map(|t| serde_json::from_str(t).expect("each element is a JSON frame"))
        .collect()
}

/// The frames of a whole poll answer, `o` and `h` included as strings.
fn poll_frames(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n'), "frames end with a newline: {body:?}");
    body.lines()
        .flat_map(|line| match line.as_bytes().first() {
            Some(b'a') => array_frames(line),
            _ => vec![Value::String(line.to_owned())],
        })
        .collect()
}

fn socket_id(established: &Value) -> String {
    let data: Value =
        serde_json::from_str(established["data"].as_str().expect("data string")).expect("JSON");
    assert_eq!(data["activity_timeout"], 120);
    data["socket_id"].as_str().expect("socket id").to_owned()
}

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data string")).expect("data JSON")
}

#[tokio::test]
async fn streaming_opens_subscribes_and_receives_events() {
    let server = start(XhrSettings::default()).await;
    let mut session = server.session();
    let mut stream = session.stream().await;
    let socket_id = stream.opened().await;

    session.subscribe("news", None, None).await;
    let ok = stream
        .expect("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(ok["channel"], "news");

    let private = "private-conversation-alice-bob";
    let auth = signature::channel_auth(KEY, SECRET, &socket_id, private);
    session.subscribe(private, Some(auth), None).await;
    stream
        .expect("pusher_internal:subscription_succeeded")
        .await;

    server.trigger("news", "headline", r#"{"n":1}"#).await;
    let event = stream.expect("headline").await;
    assert_eq!(event["channel"], "news");
    assert_eq!(event["data"], r#"{"n":1}"#);
    let tricky = "quote \" newline \n unicode \u{2028} é";
    server.trigger(private, "new-message", tricky).await;
    let event = stream.expect("new-message").await;
    assert_eq!(event["data"], tricky);

    // Pusher pings get pongs; a bad signature gets an error, as on a WebSocket.
    session
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    stream.expect("pusher:pong").await;
    session
        .subscribe("private-other", Some(format!("{KEY}:bad")), None)
        .await;
    stream.expect("pusher:error").await;
    stream.expect("pusher:subscription_error").await;

    // The HTTP API counts the session like a WebSocket.
    let (status, text) = server
        .signed("GET", &format!("/apps/{APP_ID}/channels/news"), "")
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON")["occupied"],
        true
    );
}

#[tokio::test]
async fn empty_sends_are_activity_and_never_answered_with_heartbeats() {
    let server = start(XhrSettings {
        heartbeat: Duration::from_millis(1500),
        ..XhrSettings::default()
    })
    .await;
    let mut session = server.session();
    let mut stream = session.stream().await;
    stream.opened().await;
    // pusher-js answers every `h` with `[]`; answering `[]` with `h` loops.
    for _ in 0..5 {
        assert_eq!(session.send_raw("[]".into()).await, 204);
    }
    assert_eq!(
        stream.line_within(Duration::from_millis(500)).await,
        None,
        "an empty send is not answered"
    );
    // The heartbeat comes on its timer.
    let started = Instant::now();
    assert_eq!(stream.line().await.as_deref(), Some("h"));
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(stream.line().await.as_deref(), Some("h"));
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn polling_answers_queued_frames_waits_for_new_ones_and_heartbeats() {
    let server = start(fast()).await;
    let mut session = server.session();
    // The first poll opens the session and carries the handshake.
    let first = poll_frames(&session.poll().await);
    assert_eq!(first[0], "o");
    assert_eq!(first[1]["event"], "pusher:connection_established");
    assert_eq!(first.len(), 2);

    session.subscribe("news", None, None).await;
    let frames = poll_frames(&session.poll().await);
    assert_eq!(frames[0]["event"], "pusher_internal:subscription_succeeded");

    // A poll waits for the next frame.
    let (sent_tx, sent_rx) = oneshot::channel();
    let trigger = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.trigger("news", "headline", "first").await;
        let _ = sent_tx.send(Instant::now());
    };
    let (body, ()) = tokio::join!(session.poll(), trigger);
    let frames = poll_frames(&body);
    assert_eq!(frames[0]["event"], "headline");
    assert_eq!(frames[0]["data"], "first");
    assert!(sent_rx.await.is_ok());

    // Frames queued between polls come in one answer, in order.
    for n in 0..5 {
        server.trigger("news", "burst", &n.to_string()).await;
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        for frame in poll_frames(&session.poll().await) {
            if frame["event"] == "burst" {
                got.push(frame["data"].as_str().expect("data").to_owned());
            }
        }
    }
    assert_eq!(got, ["0", "1", "2", "3", "4"]);

    // A quiet poll ends with a heartbeat, and the session lives on.
    let started = Instant::now();
    assert_eq!(session.poll().await, "h\n");
    assert!(started.elapsed() >= Duration::from_millis(400));
    server.trigger("news", "later", "x").await;
    assert_eq!(poll_frames(&session.poll().await)[0]["event"], "later");
}

#[tokio::test]
async fn a_session_no_request_holds_expires_like_a_closed_socket() {
    let server = start(fast()).await;
    let channel = "presence-room";
    let member = |id: &str| json!({"user_id": id, "user_info": {"name": id}}).to_string();

    let mut alice = server.session();
    let mut alice_stream = alice.stream().await;
    let alice_id = alice_stream.opened().await;
    let data = member("alice");
    let auth = signature::presence_auth(KEY, SECRET, &alice_id, channel, &data);
    alice.subscribe(channel, Some(auth), Some(&data)).await;
    alice_stream
        .expect("pusher_internal:subscription_succeeded")
        .await;

    let mut bob = server.session();
    let mut bob_stream = bob.stream().await;
    let bob_id = bob_stream.opened().await;
    let data = member("bob");
    let auth = signature::presence_auth(KEY, SECRET, &bob_id, channel, &data);
    bob.subscribe(channel, Some(auth), Some(&data)).await;
    let ok = bob_stream
        .expect("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(data_of(&ok)["presence"]["count"], 2);
    alice_stream.expect("pusher_internal:member_added").await;

    // Alice's tab goes away: her stream closes and nothing comes back.
    let gone = Instant::now();
    drop(alice_stream);
    let removed = bob_stream.expect("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed)["user_id"], "alice");
    assert!(
        gone.elapsed() >= Duration::from_millis(400),
        "the session waits for a new receive request first"
    );
    let (status, text) = server
        .signed(
            "GET",
            &format!("/apps/{APP_ID}/channels/{channel}/users"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON")["users"],
        json!([{"id": "bob"}])
    );
    // Sends to it are refused; a new receive request opens a new session,
    // whose `o` tells a client that still holds the old one it was lost.
    assert_eq!(alice.send_raw("[]".into()).await, 404);
    let mut again = alice.stream().await;
    assert_ne!(again.opened().await, alice_id);

    // A stream replaced by a new one (pusher-js re-opens after 256 KB)
    // keeps the session: no second `o`, and frames go to the new stream.
    let mut reopened = bob.stream().await;
    assert_eq!(
        reopened.line().await.expect("prelude"),
        "h".repeat(2048),
        "a re-opened stream starts with the prelude"
    );
    assert_eq!(bob_stream.line().await, None, "the replaced stream ends");
    server.trigger(channel, "after-reopen", "1").await;
    let frame = reopened.frame().await;
    assert_eq!(
        frame["event"], "after-reopen",
        "no `o` on a re-open: {frame}"
    );
}

#[tokio::test]
async fn a_stream_stops_where_pusher_js_reopens_it_and_nothing_is_lost() {
    let server = start(fast()).await;
    let mut session = server.session();
    let mut stream = session.stream().await;
    stream.opened().await;
    session.subscribe("bulk", None, None).await;
    stream
        .expect("pusher_internal:subscription_succeeded")
        .await;
    // ~360,000 UTF-16 characters (630 KB of UTF-8) of events, with
    // characters JavaScript counts differently: past the 256 K mark.
    const EVENTS: usize = 90;
    let filler = "é😀x".repeat(1000);
    for n in 0..EVENTS {
        server
            .trigger("bulk", "chunk", &format!("{n} {filler}"))
            .await;
    }
    // The first stream gets frames up to pusher-js's 256 KB mark, then
    // nothing; it ends when no new request replaces it.
    let mut got = Vec::new();
    let mut chars = 2048 + 1 + 2; // prelude and `o`, already read
    while let Some(line) = stream.line().await {
        chars += line.encode_utf16().count() + 1;
        match line.as_bytes().first() {
            Some(b'a') => got.extend(array_frames(&line)),
            Some(b'h') => {}
            _ => panic!("only frames while the stream fills up, got {line:?}"),
        }
    }
    assert!(chars > 256 * 1024, "{chars} characters");
    assert!(chars < 256 * 1024 + 70 * 1024, "{chars} characters");
    assert!(got.len() > 1 && got.len() < EVENTS, "{} frames", got.len());
    // The next request of the session (no `o`) carries the rest.
    let mut next = session.stream().await;
    assert_eq!(next.line().await.expect("prelude"), "h".repeat(2048));
    while got.len() < EVENTS {
        got.push(next.frame().await);
    }
    let numbers: Vec<String> = got
        .iter()
        .map(|f| {
            let data = f["data"].as_str().expect("data");
            assert!(data.ends_with(&filler), "{}", f["event"]);
            data.split(' ').next().expect("number").to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..EVENTS).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn the_server_closes_sessions_with_c_frames() {
    let server = start(fast()).await;
    let mut session = server.session();
    let mut stream = session.stream().await;
    let socket_id = stream.opened().await;
    let user_data = json!({"id": "carol"}).to_string();
    let auth = signature::user_auth(KEY, SECRET, &socket_id, &user_data);
    session
        .send(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    stream.expect("pusher:signin_success").await;

    let (status, text) = server
        .signed(
            "POST",
            &format!("/apps/{APP_ID}/users/carol/terminate_connections"),
            "{}",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let error = stream.expect("pusher:error").await;
    assert_eq!(error["data"]["code"], 4009);
    assert_eq!(
        stream.line().await.as_deref(),
        Some(r#"c[4009,"You got disconnected by the app."]"#)
    );
    assert_eq!(stream.line().await, None, "the response ends after `c`");
}

#[tokio::test]
async fn a_close_while_no_request_is_held_waits_for_the_next_poll() {
    let server = start(XhrSettings {
        disconnect_delay: Duration::from_secs(5),
        ..fast()
    })
    .await;
    let mut session = server.session();
    let first = poll_frames(&session.poll().await);
    let socket_id = socket_id(&first[1]);
    let user_data = json!({"id": "dave"}).to_string();
    let auth = signature::user_auth(KEY, SECRET, &socket_id, &user_data);
    session
        .send(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    assert_eq!(
        poll_frames(&session.poll().await)[0]["event"],
        "pusher:signin_success"
    );
    // No poll is held while the app terminates the user.
    let (status, text) = server
        .signed(
            "POST",
            &format!("/apps/{APP_ID}/users/dave/terminate_connections"),
            "{}",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let body = session.poll().await;
    assert!(
        body.ends_with("c[4009,\"You got disconnected by the app.\"]\n"),
        "{body:?}"
    );
}

#[tokio::test]
async fn unknown_keys_and_old_protocols_are_refused_like_websockets() {
    let server = start(XhrSettings::default()).await;
    let mut session = server.session_at("/pusher", "no-such-key");
    let body = session.poll().await;
    let frames = poll_frames(&body);
    assert_eq!(frames[0], "o");
    assert_eq!(frames[1]["event"], "pusher:error");
    assert_eq!(frames[1]["data"]["code"], 4001);
    assert!(
        body.ends_with("\"]\n") && body.contains("\nc[4001,\"Application does not exist"),
        "{body:?}"
    );
    let mut lines = session.stream().await;
    assert_eq!(lines.line().await.as_deref(), Some("o"));
    assert!(lines.line().await.expect("error").starts_with("a["));
    assert!(lines.line().await.expect("close").starts_with("c[4001,"));
    assert_eq!(lines.line().await, None);
    assert_eq!(session.send_raw("[]".into()).await, 404);

    let old = server.session();
    let url = format!("{}/xhr?protocol=4&t=1&n=1", old.base);
    let body = within(old.http.post(url).send())
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains("\nc[4007,"), "{body:?}");
}

#[tokio::test]
async fn requests_are_bounded_and_cross_origin_ready() {
    let server = start(XhrSettings {
        max_sessions: 1,
        ..fast()
    })
    .await;
    // Without the `/pusher` prefix too (an `httpPath` of "").
    let mut session = server.session_at("", KEY);
    let mut stream = session.stream().await;
    stream.opened().await;
    assert_eq!(
        stream.response.headers()["access-control-allow-origin"],
        "*"
    );

    // Over the session limit: 4100, which pusher-js retries after a pause.
    let mut second = server.session();
    let body = second.poll().await;
    assert!(body.contains("\nc[4100,"), "{body:?}");

    assert_eq!(session.send_raw("not json".into()).await, 400);
    assert_eq!(session.send_raw(r#"[{"event":"x"}]"#.into()).await, 400);
    let big = serde_json::to_string(&["x".repeat(64 * 1024 + 1)]).expect("encode");
    assert_eq!(session.send_raw(big).await, 413);
    let huge = serde_json::to_string(&["\"".repeat(100 * 1024)]).expect("encode");
    assert_eq!(session.send_raw(huge).await, 413);
    // The session survived all of that.
    session
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    stream.expect("pusher:pong").await;

    let bad = format!("http://{}/pusher/app/{KEY}/1/a.b/xhr", server.addr);
    let status = within(server.http.post(bad).send())
        .await
        .expect("request")
        .status();
    assert_eq!(status, 404);

    let url = session.url("xhr_send", "");
    let preflight = within(
        server
            .http
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send(),
    )
    .await
    .expect("preflight");
    assert_eq!(preflight.status(), 204);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-headers"], "content-type");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .expect("text")
        .contains("POST"));
}
