//! The Pusher HTTP API of `tidings serve`, driven like the server SDKs do
//! (signed requests) against WebSocket clients speaking Pusher protocol 7.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::signature;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// The credentials of the Pusher protocol's vectors; app id 3 as there.
const APP_ID: &str = "3";
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
const OTHER_ID: &str = "4";
const OTHER_KEY: &str = "other-key";
const OTHER_SECRET: &str = "other-secret";
/// How long anything may take on a loaded machine before a test fails.
const DEADLINE: Duration = Duration::from_secs(15);

struct TestServer {
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServeConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        dir.path(),
        "memory:",
        vec![
            AppConfig::new(APP_ID, KEY, SECRET),
            AppConfig::new(OTHER_ID, OTHER_KEY, OTHER_SECRET),
        ],
    );
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

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl TestServer {
    /// A request signed like the Node SDK signs it.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let params = signature::sign_request(
            KEY,
            SECRET,
            method,
            path,
            body.as_bytes(),
            now(),
            &owned(extra),
        );
        self.send(method, path, &params, body).await
    }

    /// Sends a request with exactly these query pairs.
    async fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
        body: &str,
    ) -> (u16, String) {
        let url = reqwest::Url::parse_with_params(&format!("http://{}{path}", self.addr), params)
            .expect("url");
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("answer in time")
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn ok(&self, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Value {
        let (status, text) = self.call(method, path, body, extra).await;
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).expect("200 bodies are JSON")
    }

    async fn trigger(&self, body: Value) -> Value {
        self.ok("POST", "/apps/3/events", &body.to_string(), &[])
            .await
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// A WebSocket client speaking Pusher protocol 7.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    socket_id: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=js&version=8.4.0");
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut client = Client {
            ws,
            socket_id: String::new(),
        };
        let hello = client.next().await;
        assert_eq!(hello["event"], "pusher:connection_established");
        let data: Value =
            serde_json::from_str(hello["data"].as_str().expect("data string")).expect("data JSON");
        client.socket_id = data["socket_id"].as_str().expect("socket id").to_owned();
        client
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// The next frame the server sends (a close is a failure here).
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("open socket")
                .expect("frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    async fn expect(&mut self, event: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["event"], event, "{frame}");
        frame
    }

    async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        self.succeeded(channel).await;
    }

    /// Waits for `subscription_succeeded`, skipping presence news.
    async fn succeeded(&mut self, channel: &str) {
        loop {
            let frame = self.next().await;
            match frame["event"].as_str() {
                Some("pusher_internal:subscription_succeeded") => {
                    assert_eq!(frame["channel"], channel);
                    return;
                }
                Some("pusher_internal:member_added" | "pusher_internal:member_removed") => {}
                _ => panic!("waiting for subscription_succeeded on {channel}, got {frame}"),
            }
        }
    }

    async fn subscribe_presence(&mut self, channel: &str, user_id: &str) {
        let channel_data = json!({"user_id": user_id, "user_info": {"name": user_id}}).to_string();
        let auth = signature::presence_auth(KEY, SECRET, &self.socket_id, channel, &channel_data);
        self.send(json!({"event":"pusher:subscribe","data":{
            "channel":channel,"auth":auth,"channel_data":channel_data}}))
            .await;
        self.succeeded(channel).await;
    }

    async fn unsubscribe(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:unsubscribe","data":{"channel":channel}}))
            .await;
        // No answer to an unsubscribe: a ping's pong shows it was handled.
        self.send(json!({"event":"pusher:ping","data":{}})).await;
        self.expect("pusher:pong").await;
    }

    async fn signin(&mut self, user_id: &str) {
        let user_data = json!({ "id": user_id }).to_string();
        let auth = signature::user_auth(KEY, SECRET, &self.socket_id, &user_data);
        self.send(json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}))
            .await;
        self.expect("pusher:signin_success").await;
    }

    /// Still connected and answering.
    async fn alive(&mut self) {
        self.send(json!({"event":"pusher:ping","data":{}})).await;
        self.expect("pusher:pong").await;
    }

    /// Waits for the server to close the socket; returns the close code.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("close in time");
            match message {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// `n` distinct channel names.
fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

fn event_data(frame: &Value) -> &str {
    frame["data"].as_str().expect("string data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_subscribers_except_the_excluded_socket() {
    let server = start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("news").await;
    b.subscribe("news").await;
    b.subscribe("sport").await;

    let answer = server
        .trigger(
            json!({"name":"flash","channels":["news","sport"],"data":"{\"n\":1}",
            "socket_id":a.socket_id}),
        )
        .await;
    assert_eq!(answer, json!({}));
    let first = b.next().await;
    let second = b.next().await;
    let mut got = [first["channel"].clone(), second["channel"].clone()];
    got.sort_by_key(|c| c.to_string());
    assert_eq!(got, [json!("news"), json!("sport")]);
    assert_eq!(first["event"], "flash");
    assert_eq!(event_data(&first), "{\"n\":1}");

    // A was excluded: the next thing it sees is the next event.
    server
        .trigger(json!({"name":"flash","channel":"news","data":"2"}))
        .await;
    let to_a = a.next().await;
    assert_eq!(event_data(&to_a), "2");
    assert_eq!(event_data(&b.next().await), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_signed_in_users() {
    let server = start().await;
    let mut a = server.client().await;
    a.signin("u7").await;
    a.subscribe("#server-to-user-u7").await;
    server
        .trigger(json!({"name":"note","channels":["#server-to-user-u7"],"data":"hi"}))
        .await;
    let frame = a.expect("note").await;
    assert_eq!(frame["channel"], "#server-to-user-u7");
    assert_eq!(event_data(&frame), "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_answer_info() {
    let server = start().await;
    let mut a = server.client().await;
    let mut a2 = server.client().await;
    let mut b = server.client().await;
    a.subscribe_presence("presence-room", "1").await;
    a2.subscribe_presence("presence-room", "1").await;
    b.subscribe_presence("presence-room", "2").await;
    a.subscribe("news").await;

    let answer = server
        .trigger(
            json!({"name":"e","channels":["presence-room","news","empty"],"data":"x",
            "info":"user_count,subscription_count"}),
        )
        .await;
    assert_eq!(
        answer,
        json!({"channels":{
            "presence-room":{"user_count":2,"subscription_count":3},
            "news":{"subscription_count":1},
            "empty":{"subscription_count":0}
        }})
    );
    let answer = server
        .trigger(json!({"name":"e","channel":"presence-room","data":"x","info":"user_count"}))
        .await;
    assert_eq!(
        answer,
        json!({"channels":{"presence-room":{"user_count":2}}})
    );

    let batch = json!({"batch":[
        {"channel":"news","name":"e","data":"1","info":"subscription_count"},
        {"channel":"presence-room","name":"e","data":"2","info":"user_count,subscription_count"},
        {"channel":"news","name":"e","data":"3"}
    ]});
    let answer = server
        .ok("POST", "/apps/3/batch_events", &batch.to_string(), &[])
        .await;
    assert_eq!(
        answer,
        json!({"batch":[
            {"subscription_count":1},
            {"user_count":2,"subscription_count":3},
            {}
        ]})
    );
    // The batch reached its subscribers in order.
    let seen: Vec<String> = {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let frame = b.next().await;
            if frame["event"] == "e" {
                seen.push(event_data(&frame).to_owned());
            }
        }
        seen
    };
    assert_eq!(seen, ["x", "x", "2"]);
    let plain = json!({"batch":[{"channel":"news","name":"e","data":"4"}]});
    let answer = server
        .ok("POST", "/apps/3/batch_events", &plain.to_string(), &[])
        .await;
    assert_eq!(answer, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_queries() {
    let server = start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe_presence("presence-room", "1").await;
    b.subscribe_presence("presence-room", "2").await;
    a.subscribe("news").await;
    b.subscribe("news").await;
    a.subscribe("gone").await;
    a.unsubscribe("gone").await;

    // Occupied channels only, empty attributes without info.
    let all = server.ok("GET", "/apps/3/channels", "", &[]).await;
    assert_eq!(all, json!({"channels":{"news":{},"presence-room":{}}}));
    let filtered = server
        .ok(
            "GET",
            "/apps/3/channels",
            "",
            &[("filter_by_prefix", "presence-")],
        )
        .await;
    assert_eq!(filtered, json!({"channels":{"presence-room":{}}}));
    let counted = server
        .ok(
            "GET",
            "/apps/3/channels",
            "",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        )
        .await;
    assert_eq!(
        counted,
        json!({"channels":{"presence-room":{"user_count":2}}})
    );
    let (status, text) = server
        .call("GET", "/apps/3/channels", "", &[("info", "user_count")])
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("presence-"), "{text}");
    // The other app has none of these channels.
    let params = signature::sign_request(
        OTHER_KEY,
        OTHER_SECRET,
        "GET",
        "/apps/4/channels",
        b"",
        now(),
        &[],
    );
    let (status, text) = server.send("GET", "/apps/4/channels", &params, "").await;
    assert_eq!((status, text.as_str()), (200, r#"{"channels":{}}"#));

    // One channel.
    let room = server
        .ok(
            "GET",
            "/apps/3/channels/presence-room",
            "",
            &[("info", "user_count,subscription_count")],
        )
        .await;
    assert_eq!(
        room,
        json!({"occupied":true,"user_count":2,"subscription_count":2})
    );
    let news = server.ok("GET", "/apps/3/channels/news", "", &[]).await;
    assert_eq!(news, json!({"occupied":true}));
    let gone = server
        .ok(
            "GET",
            "/apps/3/channels/gone",
            "",
            &[("info", "subscription_count")],
        )
        .await;
    assert_eq!(gone, json!({"occupied":false,"subscription_count":0}));
    let (status, text) = server
        .call(
            "GET",
            "/apps/3/channels/news",
            "",
            &[("info", "user_count")],
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"news\""), "{text}");
    let (status, text) = server
        .call("GET", "/apps/3/channels/news", "", &[("info", "colour")])
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"colour\""), "{text}");

    // Presence users.
    let users = server
        .ok("GET", "/apps/3/channels/presence-room/users", "", &[])
        .await;
    assert_eq!(users, json!({"users":[{"id":"1"},{"id":"2"}]}));
    let (status, text) = server
        .call("GET", "/apps/3/channels/news/users", "", &[])
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("presence"), "{text}");
    b.unsubscribe("presence-room").await;
    let users = server
        .ok("GET", "/apps/3/channels/presence-room/users", "", &[])
        .await;
    assert_eq!(users, json!({"users":[{"id":"1"}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_names_in_paths_may_be_escaped() {
    let server = start().await;
    let mut a = server.client().await;
    a.subscribe("a=b@c").await;
    // Signed as the SDKs do: the name unescaped, the URL escaped.
    let escaped = "/apps/3/channels/a%3Db%40c";
    let params = signature::sign_request(
        KEY,
        SECRET,
        "GET",
        "/apps/3/channels/a=b@c",
        b"",
        now(),
        &[],
    );
    let (status, text) = server.send("GET", escaped, &params, "").await;
    assert_eq!((status, text.as_str()), (200, r#"{"occupied":true}"#));
    // Signed with the escaped path as sent works as well.
    let (status, text) = server.call("GET", escaped, "", &[]).await;
    assert_eq!((status, text.as_str()), (200, r#"{"occupied":true}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_closes_signed_in_connections() {
    let server = start().await;
    let mut signed_in = server.client().await;
    signed_in.signin("u1").await;
    let mut also_u1 = server.client().await;
    also_u1.signin("u1").await;
    // Same user in presence but not signed in: not affected.
    let mut member = server.client().await;
    member.subscribe_presence("presence-room", "u1").await;
    let mut other = server.client().await;
    other.signin("u2").await;

    let answer = server
        .ok("POST", "/apps/3/users/u1/terminate_connections", "{}", &[])
        .await;
    assert_eq!(answer, json!({}));
    for client in [&mut signed_in, &mut also_u1] {
        let error = client.expect("pusher:error").await;
        assert_eq!(error["data"]["code"], 4009);
        assert_eq!(client.closed().await, Some(4009));
    }
    member.alive().await;
    other.alive().await;

    // The Python SDK's form: no /apps/{id}, the app is the auth_key's.
    let (status, text) = server
        .call("POST", "/users/u2/terminate_connections", "{}", &[])
        .await;
    assert_eq!((status, text.as_str()), (200, "{}"));
    other.expect("pusher:error").await;
    assert_eq!(other.closed().await, Some(4009));
    member.alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_reasons() {
    let server = start().await;
    let body = r#"{"name":"e","channel":"news","data":"x"}"#;
    let path = "/apps/3/events";

    // Wrong secret: 401 naming the string that should have been signed.
    let params = signature::sign_request(KEY, "wrong", "POST", path, body.as_bytes(), now(), &[]);
    let (status, text) = server.send("POST", path, &params, body).await;
    assert_eq!(status, 401, "{text}");
    let expected = signature::request_string_to_sign("POST", path, &params);
    assert!(
        text.starts_with(&format!(
            "Invalid signature: you should have sent HmacSHA256Hex({expected:?}, your_secret_key)"
        )),
        "{text}"
    );

    // Expired timestamp.
    let old = now() - 601;
    let params = signature::sign_request(KEY, SECRET, "POST", path, body.as_bytes(), old, &[]);
    let (status, text) = server.send("POST", path, &params, body).await;
    assert_eq!(status, 401, "{text}");
    assert!(
        text.starts_with(&format!("Timestamp expired: Given timestamp ({old})")),
        "{text}"
    );

    // The body is not the one signed (body_md5 mismatch).
    let params = signature::sign_request(KEY, SECRET, "POST", path, body.as_bytes(), now(), &[]);
    let tampered = r#"{"name":"e","channel":"news","data":"y"}"#;
    let (status, text) = server.send("POST", path, &params, tampered).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.starts_with("Invalid body_md5"), "{text}");
    // ...nor is body_md5 the signed one.
    let mut forged = params.clone();
    for (k, v) in &mut forged {
        if k == "body_md5" {
            *v = signature::body_md5(tampered.as_bytes());
        }
    }
    let (status, text) = server.send("POST", path, &forged, tampered).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.starts_with("Invalid signature"), "{text}");

    // Unsigned.
    let (status, text) = server.send("POST", path, &[], body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("auth_key"), "{text}");

    // Unknown app; another app's key.
    let params = signature::sign_request(
        KEY,
        SECRET,
        "POST",
        "/apps/99/events",
        body.as_bytes(),
        now(),
        &[],
    );
    let (status, text) = server.send("POST", "/apps/99/events", &params, body).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("\"99\""), "{text}");
    let params = signature::sign_request(
        OTHER_KEY,
        OTHER_SECRET,
        "POST",
        path,
        body.as_bytes(),
        now(),
        &[],
    );
    let (status, text) = server.send("POST", path, &params, body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains(OTHER_KEY), "{text}");

    // Bad input.
    let cases: Vec<(String, u16, &str)> = vec![
        ("not json".into(), 400, "not valid JSON"),
        (r#"{"name":"e","channel":"news"}"#.into(), 400, "data"),
        (r#"{"channel":"news","data":"x"}"#.into(), 400, "name"),
        (
            json!({"name":"e".repeat(201),"channel":"news","data":"x"}).to_string(),
            400,
            "201 characters",
        ),
        (
            r#"{"name":"e","channel":"news","data":{"a":1}}"#.into(),
            400,
            "must be a string",
        ),
        (
            r#"{"name":"e","channel":"bad name!","data":"x"}"#.into(),
            400,
            "Invalid channel name",
        ),
        (
            r#"{"name":"e","channel":"news","data":"x","socket_id":"12"}"#.into(),
            400,
            "\"12\"",
        ),
        (
            r#"{"name":"e","channels":[],"data":"x"}"#.into(),
            400,
            "0 were given",
        ),
        (
            json!({"name":"e","channels":names(101),"data":"x"}).to_string(),
            400,
            "101 were given",
        ),
        (
            json!({"name":"e","channel":"news","data":"x".repeat(10 * 1024 + 1)}).to_string(),
            413,
            "10241 bytes",
        ),
    ];
    for (body, want, needle) in cases {
        let (status, text) = server.call("POST", path, &body, &[]).await;
        assert_eq!(status, want, "{body:.80}: {text}");
        assert!(text.contains(needle), "{body:.80}: {text}");
    }
    // The limits themselves are fine.
    let answer = server
        .trigger(json!({"name":"e".repeat(200),"channels":names(100),"data":"x".repeat(10 * 1024)}))
        .await;
    assert_eq!(answer, json!({}));

    // Batches of more than 10, and a bad event inside one.
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"channel":"news","name":"e","data":i.to_string()}))
        .collect();
    let (status, text) = server
        .call(
            "POST",
            "/apps/3/batch_events",
            &json!({ "batch": eleven }).to_string(),
            &[],
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("11 events"), "{text}");
    let bad =
        json!({"batch":[{"channel":"news","name":"e","data":"1"},{"channel":"news","name":"e"}]});
    let (status, text) = server
        .call("POST", "/apps/3/batch_events", &bad.to_string(), &[])
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("batch[1]"), "{text}");

    // Bodies far over any limit are refused without being read whole.
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, _) = server.call("POST", path, &huge, &[]).await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_vectors_and_python_style_requests() {
    // The Pusher HTTP API documentation's worked POST vector.
    let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    let signed = signature::sign_request(
        KEY,
        SECRET,
        "POST",
        "/apps/3/events",
        body.as_bytes(),
        1353088179,
        &[],
    );
    assert_eq!(
        signed,
        owned(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
            ),
        ])
    );
    // The Python-style GET vector (body_md5 of the empty body).
    let get = owned(&[
        ("auth_key", KEY),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
        ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
        ("filter_by_prefix", "presence-"),
        ("info", "user_count"),
    ]);
    assert_eq!(
        signature::hmac_hex(
            SECRET,
            signature::request_string_to_sign("GET", "/apps/3/channels", &get).as_bytes()
        ),
        "f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba"
    );

    let server = start().await;
    // The vector itself is refused only for its age.
    let (status, text) = server.send("POST", "/apps/3/events", &signed, body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.starts_with("Timestamp expired"), "{text}");
    // The same request made now is accepted and delivered.
    let mut a = server.client().await;
    a.subscribe("project-3").await;
    let answer = server.ok("POST", "/apps/3/events", body, &[]).await;
    assert_eq!(answer, json!({}));
    let frame = a.expect("foo").await;
    assert_eq!(event_data(&frame), r#"{"some":"data"}"#);

    // Python: body_md5 on GETs too, json.dumps spacing in POST bodies.
    let empty_md5 = signature::body_md5(b"");
    let answer = server
        .ok(
            "GET",
            "/apps/3/channels",
            "",
            &[("body_md5", &empty_md5), ("filter_by_prefix", "project-")],
        )
        .await;
    assert_eq!(answer, json!({"channels":{"project-3":{}}}));
    let python_body = r#"{"name": "foo", "channels": ["project-3"], "data": "spaced"}"#;
    let answer = server.ok("POST", "/apps/3/events", python_body, &[]).await;
    assert_eq!(answer, json!({}));
    assert_eq!(event_data(&a.expect("foo").await), "spaced");
}

/// A connection may hold `max_subscriptions_per_connection` channels; past
/// it a subscribe is refused with Pusher's error and a `LimitReached`
/// subscription error, the connection stays, and others are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_limited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = AppConfig::new(APP_ID, KEY, SECRET);
    app.max_subscriptions_per_connection = 3;
    let server = Server::bind(ServeConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        dir.path(),
        "memory:",
        vec![app],
    ))
    .await
    .expect("bind");
    let addr = server.local_addr().expect("address");
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut flooder = Client::connect(addr).await;
    for channel in ["a", "b", "c"] {
        flooder.subscribe(channel).await;
    }
    flooder
        .send(json!({"event":"pusher:subscribe","data":{"channel":"d"}}))
        .await;
    let error = flooder.expect("pusher:error").await;
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 channels")),
        "{error}"
    );
    let refused = flooder.expect("pusher:subscription_error").await;
    assert_eq!(refused["channel"], "d");
    assert_eq!(refused["data"]["type"], "LimitReached");
    // Another connection is not affected; the first one may go on after an
    // unsubscribe.
    let mut other = Client::connect(addr).await;
    other.subscribe("d").await;
    flooder
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"a"}}))
        .await;
    flooder.subscribe("d").await;
}
