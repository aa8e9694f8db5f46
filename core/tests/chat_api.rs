//! The chat HTTP API, the channel-auth endpoints, user tokens and the chat
//! page of `tidings serve`, driven over HTTP (and one WebSocket client).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidings::api::token;
use tidings::api::{ServeConfig, Server};
use tidings::broker::AppConfig;
use tidings::signature;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const KEY: &str = "chat-test-key";
const SECRET: &str = "chat-test-secret";
/// How long anything may take on a loaded machine before a test fails.
const DEADLINE: Duration = Duration::from_secs(15);

struct TestServer {
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(demo: bool) -> TestServer {
    start_with(|config| ServeConfig { demo, ..config }).await
}

/// A server with the default test settings changed by `change`.
async fn start_with(change: impl FnOnce(ServeConfig) -> ServeConfig) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::bind(change(config(dir.path())))
        .await
        .expect("bind");
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

fn config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        dir,
        "memory:",
        vec![AppConfig::new("1", KEY, SECRET)],
    )
}

fn bearer(user: &str) -> String {
    let token = token::mint(SECRET, user, Duration::from_secs(300)).expect("mint");
    format!("Bearer {token}")
}

/// How a request says who it is.
#[derive(Clone, Copy)]
enum As<'a> {
    User(&'a str),
    Demo(&'a str),
    Nobody,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A JSON call; answers the status and the JSON body (`Null` if none).
    async fn call(
        &self,
        who: As<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        request = match who {
            As::User(user) => request.header("authorization", bearer(user)),
            As::Demo(user) => request.header("x-tidings-user", user),
            As::Nobody => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("answer within the deadline")
            .expect("request");
        status_and_json(response).await
    }

    async fn get(&self, user: &str, path: &str) -> (StatusCode, Value) {
        self.call(As::User(user), Method::GET, path, None).await
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(As::User(user), Method::POST, path, Some(body))
            .await
    }

    /// A request signed like the Pusher HTTP API; `query` is signed too.
    async fn signed(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        key: &str,
        secret: &str,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let extra: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let params = signature::sign_request(
            key,
            secret,
            method.as_str(),
            path,
            body.as_bytes(),
            token::unix_now(),
            &extra,
        );
        let mut request = self
            .http
            .request(method, self.url(path))
            .query(&params)
            .body(body.clone());
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        status_and_json(request.send().await.expect("request")).await
    }

    async fn form(&self, who: As<'_>, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).form(form);
        request = match who {
            As::User(user) => request.header("authorization", bearer(user)),
            As::Demo(user) => request.header("x-tidings-user", user),
            As::Nobody => request,
        };
        status_and_json(request.send().await.expect("request")).await
    }
}

async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, value)
}

/// Checks an error answer: status and `error.kind`.
#[track_caller]
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["kind"], kind, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

fn seqs(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

#[test]
fn tokens_verify_until_they_expire() {
    let token = token::mint_until(SECRET, "17", 1_000).unwrap();
    assert_eq!(
        token::verify(SECRET, &token, 999).unwrap().user.as_str(),
        "17"
    );
    assert!(matches!(
        token::verify(SECRET, &token, 1_000),
        Err(token::TokenError::Expired { .. })
    ));
    assert_eq!(
        token::verify("another-secret", &token, 999),
        Err(token::TokenError::BadSignature)
    );
}

#[tokio::test]
async fn bad_tokens_are_401_with_the_reason() {
    let server = start(false).await;
    let expired = token::mint_until(SECRET, "17", token::unix_now() - 1).unwrap();
    let forged = token::mint("not-the-app-secret", "17", Duration::from_secs(60)).unwrap();
    for (header, reason) in [
        (format!("Bearer {expired}"), "expired"),
        (format!("Bearer {forged}"), "signature"),
        ("Bearer nonsense".to_owned(), "malformed"),
        ("Basic abc".to_owned(), "Bearer"),
    ] {
        let response = server
            .http
            .get(server.url("/v1/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        let answer = status_and_json(response).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    }
    let answer = server.call(As::Nobody, Method::GET, "/v1/me", None).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    // X-Tidings-User counts only in demo mode.
    let answer = server
        .call(As::Demo("17"), Method::GET, "/v1/me", None)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, me) = server.get("17", "/v1/me").await;
    assert_eq!((status, me), (StatusCode::OK, json!({"user_id": "17"})));
}

#[test]
fn the_token_command_signs_with_the_servers_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], secret: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
        command.current_dir(dir.path()).args(args);
        match secret {
            Some(s) => command.env("TIDINGS_APP_SECRET", s),
            None => command.env_remove("TIDINGS_APP_SECRET"),
        };
        let out = command
            .env_remove("TIDINGS_DATA_DIR")
            .output()
            .expect("run tidings");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    // The generated secret `serve` would use from ./tidings-data.
    let printed = run(&["token", "--user", "17"], None);
    let secret = std::fs::read_to_string(dir.path().join("tidings-data/app-secret")).unwrap();
    let claims = token::verify(secret.trim(), &printed, token::unix_now()).unwrap();
    assert_eq!(claims.user.as_str(), "17");
    let day = token::DEFAULT_TTL.as_secs() as i64;
    assert!((claims.exp - token::unix_now() - day).abs() < 60);
    // The same secret the second time; --ttl and --json.
    let json: Value = serde_json::from_str(&run(
        &["--json", "token", "--user", "18", "--ttl", "60"],
        None,
    ))
    .unwrap();
    let printed = json["token"].as_str().unwrap();
    let claims = token::verify(secret.trim(), printed, token::unix_now()).unwrap();
    assert_eq!(
        (json["user"].as_str(), claims.exp),
        (Some("18"), json["expires_at"].as_i64().unwrap())
    );
    assert!((claims.exp - token::unix_now() - 60).abs() < 30);
    // TIDINGS_APP_SECRET wins, as for serve.
    let env_secret = "from-the-environment-0123456789abcdef";
    let printed = run(&["token", "--user", "17"], Some(env_secret));
    assert!(token::verify(env_secret, &printed, token::unix_now()).is_ok());
    // A short one is refused, naming the app.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .current_dir(dir.path())
        .env("TIDINGS_APP_SECRET", "from-the-environment")
        .args(["token", "--user", "17"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret of app 1") && err.contains("TIDINGS_APP_SECRET"),
        "{err}"
    );
    // Bad users are refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .current_dir(dir.path())
        .args(["token", "--user", "no spaces"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn config_is_public() {
    let server = start(true).await;
    let (status, config) = server
        .call(As::Nobody, Method::GET, "/v1/config", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["app_key"], KEY);
    assert_eq!(config["cluster"], "local");
    assert_eq!(config["demo"], true);
    assert_eq!(config["channel_auth_endpoint"], "/pusher/auth");
    assert_eq!(config["user_auth_endpoint"], "/pusher/user-auth");
    assert!(config["pusher_js"].as_str().unwrap().starts_with("8."));
}

#[tokio::test]
async fn send_history_catch_up_read_inbox_search() {
    let server = start(false).await;
    // Send by recipient; a retry with the same client_msg_id stores nothing.
    let (status, sent) = server
        .post(
            "1",
            "/v1/messages",
            json!({"to": "18", "body": "Hello teacher", "client_msg_id": "c1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["created"], true);
    let first = &sent["message"];
    assert_eq!(
        (
            &first["seq"],
            &first["conversation_id"],
            &first["sender_id"],
            &first["body"]
        ),
        (
            &json!(1),
            &json!("1-18"),
            &json!("1"),
            &json!("Hello teacher")
        )
    );
    let (status, again) = server
        .post(
            "1",
            "/v1/messages",
            json!({"to": 18, "body": "Hello teacher", "client_msg_id": "c1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["created"].clone(), again["message"]["id"].clone()),
        (json!(false), first["id"].clone())
    );
    // Into the conversation by id, from the other side.
    for i in 2..=5 {
        let (status, sent) = server
            .post(
                "18",
                "/v1/messages",
                json!({"conversation_id": "1-18", "body": format!("reply {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{sent}");
        assert_eq!(sent["message"]["seq"], i);
    }

    // History, newest first, with the before cursor.
    let (status, page) = server
        .get("1", "/v1/conversations/1-18/messages?limit=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(seqs(&page["items"]), [5, 4]);
    assert_eq!(page["next_before"], 4);
    let (_, page) = server
        .get("1", "/v1/conversations/1-18/messages?before=4&limit=10")
        .await;
    assert_eq!(seqs(&page["items"]), [3, 2, 1]);
    assert_eq!(page["next_before"], Value::Null);
    let (_, page) = server.get("18", "/v1/conversations/1-18/messages").await;
    assert_eq!(seqs(&page["items"]), [5, 4, 3, 2, 1]);

    // Catch-up after a seq, oldest first.
    let (_, after) = server
        .get("1", "/v1/conversations/1-18/messages?after=2&limit=2")
        .await;
    assert_eq!(seqs(&after["items"]), [3, 4]);
    assert_eq!(
        (after["next_after"].clone(), after["has_more"].clone()),
        (json!(4), json!(true))
    );
    let (_, after) = server
        .get("1", "/v1/conversations/1-18/messages?after=4")
        .await;
    assert_eq!(seqs(&after["items"]), [5]);
    assert_eq!(
        (after["next_after"].clone(), after["has_more"].clone()),
        (json!(5), json!(false))
    );
    let answer = server
        .get("1", "/v1/conversations/1-18/messages?after=1&before=3")
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    let answer = server
        .get("1", "/v1/conversations/1-18/messages?limit=500")
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");

    // Unread counts, read marks and the inbox.
    let (_, summary) = server.get("1", "/v1/conversations/1-18").await;
    assert_eq!(
        summary,
        json!({"conversation_id": "1-18", "peer_id": "18", "read_seq": 0,
               "unread_count": 4, "peer_read_seq": 0})
    );
    let (_, inbox) = server.get("1", "/v1/inbox").await;
    assert_eq!(inbox["items"][0]["conversation_id"], "1-18");
    assert_eq!(inbox["items"][0]["peer_id"], "18");
    assert_eq!(inbox["items"][0]["unread_count"], 4);
    assert_eq!(inbox["items"][0]["last_message"]["seq"], 5);
    let (status, read) = server
        .post("1", "/v1/conversations/1-18/read", json!({"seq": 3}))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(
        read,
        json!({"conversation_id": "1-18", "user_id": "1", "seq": 3})
    );
    let (_, inbox) = server.get("1", "/v1/inbox?limit=10").await;
    assert_eq!(inbox["items"][0]["unread_count"], 2);
    // No seq: up to the newest message.
    let (_, read) = server
        .post("1", "/v1/conversations/1-18/read", json!({}))
        .await;
    assert_eq!(read["seq"], 5);
    let (_, summary) = server.get("18", "/v1/conversations/1-18").await;
    assert_eq!(
        (summary["peer_id"].clone(), summary["peer_read_seq"].clone()),
        (json!("1"), json!(5))
    );
    let (_, summary) = server.get("1", "/v1/conversations/with/18").await;
    assert_eq!(summary["unread_count"], 0);
    // A conversation without messages yet.
    let (status, empty) = server.get("1", "/v1/conversations/with/42").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        (
            empty["conversation_id"].clone(),
            empty["unread_count"].clone()
        ),
        (json!("1-42"), json!(0))
    );
    let answer = server.get("1", "/v1/conversations/with/1").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");

    // Search only finds the caller's conversations.
    let (_, found) = server.get("18", "/v1/search?q=teacher").await;
    assert_eq!(seqs(&found["items"]), [1]);
    let (_, found) = server.get("77", "/v1/search?q=teacher").await;
    assert_eq!(found["items"], json!([]));
    let answer = server.get("18", "/v1/search?q=").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");

    // Typing is accepted and never stored.
    let (status, body) = server
        .call(
            As::User("18"),
            Method::POST,
            "/v1/conversations/1-18/typing",
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
}

#[tokio::test]
async fn one_message_edit_delete_react() {
    let server = start(false).await;
    let (_, sent) = server
        .post(
            "1",
            "/v1/messages",
            json!({"to": "18", "body": "first draft"}),
        )
        .await;
    let id = sent["message"]["id"].as_i64().unwrap();
    let path = format!("/v1/messages/{id}");

    let (status, got) = server.get("18", &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["message"]["body"], "first draft");

    let (status, edited) = server
        .call(
            As::User("1"),
            Method::PATCH,
            &path,
            Some(json!({"body": "final"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["message"]["body"], "final");
    assert!(edited["message"]["edited_at"].is_i64());
    // Only the sender edits or deletes.
    let answer = server
        .call(
            As::User("18"),
            Method::PATCH,
            &path,
            Some(json!({"body": "mine now"})),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    let answer = server
        .call(As::User("18"), Method::DELETE, &path, None)
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");

    let reaction = format!("{path}/reaction");
    let (status, reacted) = server
        .call(
            As::User("18"),
            Method::PUT,
            &reaction,
            Some(json!({"emoji": "👍"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reacted}");
    assert_eq!(
        reacted["message"]["reactions"],
        json!([{"user_id": "18", "emoji": "👍"}])
    );
    let answer = server
        .call(
            As::User("18"),
            Method::PUT,
            &reaction,
            Some(json!({"emoji": "a b"})),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    let (status, unreacted) = server
        .call(As::User("18"), Method::DELETE, &reaction, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unreacted["message"]["reactions"], json!([]));

    let (status, deleted) = server
        .call(As::User("1"), Method::DELETE, &path, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["message"]["body"], "");
    assert!(deleted["message"]["deleted_at"].is_i64());
    let answer = server
        .call(
            As::User("1"),
            Method::PATCH,
            &path,
            Some(json!({"body": "again"})),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict");

    let answer = server.get("1", "/v1/messages/999").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    let answer = server.get("1", "/v1/messages/abc").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn outsiders_are_refused_everywhere() {
    let server = start(false).await;
    let (_, sent) = server
        .post("1", "/v1/messages", json!({"to": "18", "body": "private"}))
        .await;
    let id = sent["message"]["id"].as_i64().unwrap();
    let outsider = As::User("5");
    let message = format!("/v1/messages/{id}");
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/conversations/1-18".into(), None),
        (Method::GET, "/v1/conversations/1-18/messages".into(), None),
        (
            Method::GET,
            "/v1/conversations/1-18/messages?after=0".into(),
            None,
        ),
        (
            Method::GET,
            "/v1/conversations/1-18/events?after=0&wait=0".into(),
            None,
        ),
        (
            Method::POST,
            "/v1/conversations/1-18/read".into(),
            Some(json!({"seq": 1})),
        ),
        (Method::POST, "/v1/conversations/1-18/typing".into(), None),
        (
            Method::POST,
            "/v1/messages".into(),
            Some(json!({"conversation_id": "1-18", "body": "let me in"})),
        ),
    ];
    for (method, path, body) in calls {
        let answer = server
            .call(outsider, method.clone(), &path, body.clone())
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
        // And nobody at all is unauthenticated.
        let answer = server.call(As::Nobody, method, &path, body).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    // A message of other people's conversation is answered like a missing
    // one, so that ids do not tell who talks to whom.
    let missing_id = id + 1000;
    let missing = format!("/v1/messages/{missing_id}");
    let message_calls: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "", None),
        (Method::PATCH, "", Some(json!({"body": "x"}))),
        (Method::DELETE, "", None),
        (Method::PUT, "/reaction", Some(json!({"emoji": "👀"}))),
        (Method::DELETE, "/reaction", None),
    ];
    for (method, suffix, body) in message_calls {
        let theirs = server
            .call(
                outsider,
                method.clone(),
                &format!("{message}{suffix}"),
                body.clone(),
            )
            .await;
        let absent = server
            .call(
                outsider,
                method.clone(),
                &format!("{missing}{suffix}"),
                body.clone(),
            )
            .await;
        assert_error(&theirs, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(theirs.0, absent.0, "{method} {suffix}");
        assert_eq!(
            theirs.1["error"]["message"]
                .as_str()
                .map(|m| m.replace(&id.to_string(), "ID")),
            absent.1["error"]["message"]
                .as_str()
                .map(|m| m.replace(&missing_id.to_string(), "ID")),
            "{method} {suffix}"
        );
        let text = theirs.1.to_string();
        assert!(
            !text.contains("1-18") && !text.contains("conversation"),
            "{text}"
        );
        assert_eq!(
            theirs.1.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            absent.1.as_object().map(|o| o.keys().collect::<Vec<_>>())
        );
        let answer = server
            .call(As::Nobody, method, &format!("{message}{suffix}"), body)
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    // Acting for another user with one's own token.
    let answer = server
        .post(
            "5",
            "/v1/messages",
            json!({"to": "18", "body": "hi", "user_id": "1"}),
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    let answer = server.get("5", "/v1/inbox?user_id=1").await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    // Nothing was changed.
    let (_, page) = server.get("1", "/v1/conversations/1-18/messages").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["body"], "private");
}

#[tokio::test]
async fn bad_requests_are_clear_400s() {
    let server = start(false).await;
    let cases: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/conversations/18-1/messages", None),
        (Method::GET, "/v1/conversations/nonsense/messages", None),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"body": "to nobody"})),
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "18", "body": "  "})),
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "18", "body": "x", "colour": "red"})),
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "1", "body": "myself"})),
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "a b", "body": "x"})),
        ),
        (Method::GET, "/v1/conversations/1-18/events?wait=31", None),
        (
            Method::GET,
            "/v1/conversations/1-18/messages?limit=abc",
            None,
        ),
        (Method::GET, "/v1/inbox?limit=0", None),
    ];
    for (method, path, body) in cases {
        let answer = server.call(As::User("1"), method, path, body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    }
    let response = server
        .http
        .post(server.url("/v1/messages"))
        .header("authorization", bearer("1"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    // Bodies are limited.
    let huge = json!({"to": "18", "body": "x".repeat(100 * 1024)});
    let answer = server.post("1", "/v1/messages", huge).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let long = json!({"to": "18", "body": "x".repeat(11 * 1024)});
    let answer = server.post("1", "/v1/messages", long).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn demo_mode_takes_the_user_header() {
    let server = start(true).await;
    let (status, sent) = server
        .call(
            As::Demo("18"),
            Method::POST,
            "/v1/messages",
            Some(json!({"to": "1", "body": "demo"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["message"]["sender_id"], "18");
    let (_, me) = server
        .call(As::Demo("18"), Method::GET, "/v1/me", None)
        .await;
    assert_eq!(me["user_id"], "18");
    // Tokens work in demo mode too.
    let (_, inbox) = server.get("1", "/v1/inbox").await;
    assert_eq!(inbox["items"][0]["unread_count"], 1);
    let answer = server
        .call(As::Demo("a b"), Method::GET, "/v1/me", None)
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn server_to_server_calls_are_signed() {
    let server = start(false).await;
    let (status, sent) = server
        .signed(
            Method::POST,
            "/v1/messages",
            &[],
            Some(json!({"user_id": "1", "to": "18", "body": "from the backend"})),
            KEY,
            SECRET,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["message"]["sender_id"], "1");
    let (status, page) = server
        .signed(
            Method::GET,
            "/v1/conversations/1-18/messages",
            &[("user_id", "18"), ("limit", "5")],
            None,
            KEY,
            SECRET,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["body"], "from the backend");
    // The named user must still be a member.
    let answer = server
        .signed(
            Method::GET,
            "/v1/conversations/1-18/messages",
            &[("user_id", "5")],
            None,
            KEY,
            SECRET,
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    // Signed calls name the user.
    let answer = server
        .signed(Method::GET, "/v1/inbox", &[], None, KEY, SECRET)
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    // Wrong secret, unknown key, tampered body.
    let answer = server
        .signed(
            Method::GET,
            "/v1/inbox",
            &[("user_id", "1")],
            None,
            KEY,
            "wrong-secret",
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(answer.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid signature"));
    let answer = server
        .signed(
            Method::GET,
            "/v1/inbox",
            &[("user_id", "1")],
            None,
            "other-key",
            SECRET,
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    let body = json!({"user_id": "1", "to": "18", "body": "signed"}).to_string();
    let params = signature::sign_request(
        KEY,
        SECRET,
        "POST",
        "/v1/messages",
        body.as_bytes(),
        token::unix_now(),
        &[],
    );
    let tampered = body.replace("signed", "forged");
    let response = server
        .http
        .post(server.url("/v1/messages"))
        .query(&params)
        .header("content-type", "application/json")
        .body(tampered)
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn long_poll_answers_when_a_message_arrives() {
    let server = start(false).await;
    server
        .post("1", "/v1/messages", json!({"to": "18", "body": "one"}))
        .await;
    // Something newer exists: answered at once.
    let started = Instant::now();
    let (status, answer) = server
        .get("18", "/v1/conversations/1-18/events?after=0&wait=30")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(seqs(&answer["items"]), [1]);
    assert_eq!(answer["next_after"], 1);
    assert!(started.elapsed() < DEADLINE);

    // Nothing newer: the poll waits until the next message is stored.
    let poller = {
        let http = server.http.clone();
        let url = server.url("/v1/conversations/1-18/events?after=1&wait=30");
        tokio::spawn(async move {
            let response = http
                .get(url)
                .header("authorization", bearer("18"))
                .send()
                .await
                .expect("poll");
            (Instant::now(), status_and_json(response).await)
        })
    };
    // Whether the poll is already waiting or not, it must see message 2;
    // give it a head start so that the wake-up path is what usually runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !poller.is_finished(),
        "the poll answered without a new message"
    );
    let sent_at = Instant::now();
    server
        .post("1", "/v1/messages", json!({"to": "18", "body": "two"}))
        .await;
    let (answered_at, (status, answer)) = tokio::time::timeout(DEADLINE, poller)
        .await
        .expect("the poll answers within the deadline")
        .expect("poll task");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(seqs(&answer["items"]), [2]);
    assert_eq!(answer["items"][0]["body"], "two");
    assert_eq!(answer["next_after"], 2);
    assert!(answered_at.duration_since(sent_at) < DEADLINE);
}

#[tokio::test]
async fn long_poll_times_out_empty() {
    let server = start(false).await;
    // Activity elsewhere does not answer the poll.
    let other = {
        let http = server.http.clone();
        let url = server.url("/v1/messages");
        tokio::spawn(async move {
            http.post(url)
                .header("authorization", bearer("1"))
                .json(&json!({"to": "2", "body": "elsewhere"}))
                .send()
                .await
                .expect("send")
        })
    };
    let started = Instant::now();
    let (status, answer) = server
        .get("1", "/v1/conversations/1-18/events?after=0&wait=1")
        .await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"items": [], "next_after": 0, "has_more": false})
    );
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < DEADLINE, "{waited:?}");
    other.await.unwrap();
    // wait=0 answers at once.
    let (_, answer) = server
        .get("1", "/v1/conversations/1-18/events?after=5&wait=0")
        .await;
    assert_eq!(answer["next_after"], 5);
}

#[tokio::test]
async fn channel_auth_for_members_only() {
    let server = start(true).await;
    let socket = "1234.5678";
    // Private conversation channel: both members, nobody else.
    for user in ["1", "18"] {
        let (status, auth) = server
            .form(
                As::User(user),
                "/pusher/auth",
                &[
                    ("socket_id", socket),
                    ("channel_name", "private-conversation-1-18"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{auth}");
        assert_eq!(
            auth,
            json!({"auth": signature::channel_auth(KEY, SECRET, socket, "private-conversation-1-18")})
        );
    }
    let answer = server
        .form(
            As::User("5"),
            "/pusher/auth",
            &[
                ("socket_id", socket),
                ("channel_name", "private-conversation-1-18"),
            ],
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");

    // Presence: the caller is the member.
    let (status, auth) = server
        .form(
            As::Demo("18"),
            "/pusher/auth",
            &[
                ("socket_id", socket),
                ("channel_name", "presence-conversation-1-18"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    let channel_data = auth["channel_data"].as_str().unwrap();
    let member: Value = serde_json::from_str(channel_data).unwrap();
    assert_eq!(member["user_id"], "18");
    assert!(member["user_info"].is_object());
    assert_eq!(
        auth["auth"],
        signature::presence_auth(
            KEY,
            SECRET,
            socket,
            "presence-conversation-1-18",
            channel_data
        )
    );
    let answer = server
        .form(
            As::User("5"),
            "/pusher/auth",
            &[
                ("socket_id", socket),
                ("channel_name", "presence-conversation-1-18"),
            ],
        )
        .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");

    // Every other channel is refused.
    for channel in [
        "private-foo",
        "presence-room",
        "private-conversation-18-1",
        "private-encrypted-conversation-1-18",
        "public-conversation-1-18",
        "#server-to-user-1",
    ] {
        let answer = server
            .form(
                As::User("1"),
                "/pusher/auth",
                &[("socket_id", socket), ("channel_name", channel)],
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    }
    // Who is asking, and what, must be clear.
    let answer = server
        .form(
            As::Nobody,
            "/pusher/auth",
            &[
                ("socket_id", socket),
                ("channel_name", "private-conversation-1-18"),
            ],
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    let answer = server
        .form(
            As::User("1"),
            "/pusher/auth",
            &[
                ("socket_id", "abc"),
                ("channel_name", "private-conversation-1-18"),
            ],
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
    let answer = server
        .form(As::User("1"), "/pusher/auth", &[("socket_id", socket)])
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");

    let big = "x".repeat(16 * 1024);
    let answer = server
        .form(
            As::User("1"),
            "/pusher/auth",
            &[("socket_id", socket), ("channel_name", &big)],
        )
        .await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    // User authentication for pusher:signin.
    let (status, signin) = server
        .form(
            As::User("18"),
            "/pusher/user-auth",
            &[("socket_id", socket)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signin}");
    let user_data = signin["user_data"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(user_data).unwrap(),
        json!({"id": "18"})
    );
    assert_eq!(
        signin["auth"],
        signature::user_auth(KEY, SECRET, socket, user_data)
    );
    let answer = server
        .form(As::Nobody, "/pusher/user-auth", &[("socket_id", socket)])
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn the_page_and_pusher_js_are_served() {
    let server = start(true).await;
    for (path, content_type, needle) in [
        ("/", "text/html", "/assets/pusher.min.js"),
        ("/assets/app.js", "text/javascript", "data-testid"),
        ("/assets/style.css", "text/css", ".messages"),
        ("/assets/pusher.min.js", "text/javascript", "Pusher"),
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(header.starts_with(content_type), "{path}: {header}");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
    }
}

/// A CORS preflight from `origin` for `path`.
async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    server
        .http
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-tidings-user",
        )
        .send()
        .await
        .expect("preflight")
}

const PATHS: [&str; 3] = [
    "/v1/messages",
    "/v1/conversations/1-18/read",
    "/pusher/auth",
];

#[tokio::test]
async fn allowed_origins_may_call() {
    let server = start_with(|config| ServeConfig {
        allowed_origins: vec!["http://localhost:3000".into(), "https://app.example".into()],
        ..config
    })
    .await;
    for path in PATHS {
        let response = preflight(&server, path, "http://localhost:3000").await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "http://localhost:3000"
        );
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization"), "{allowed}");
        assert!(headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        // Another origin is refused, with no allow-origin header.
        let response = preflight(&server, path, "https://evil.example").await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(response
            .headers()
            .get("access-control-allow-origin")
            .is_none());
        let (_, body) = status_and_json(response).await;
        assert_eq!(body["error"]["kind"], "forbidden");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--allowed-origins"));
    }
    let response = server
        .http
        .get(server.url("/v1/inbox"))
        .header("origin", "https://app.example")
        .header("authorization", bearer("1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(response.headers()["vary"], "origin");
    // Errors too, so that the browser code can read them.
    let response = server
        .http
        .get(server.url("/v1/inbox"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // Other origins get their answer without the header: the browser keeps
    // it from the page.
    let response = server
        .http
        .get(server.url("/v1/inbox"))
        .header("origin", "https://evil.example")
        .header("authorization", bearer("1"))
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn by_default_only_the_same_origin_may_call() {
    for demo in [false, true] {
        let server = start(demo).await;
        for path in PATHS {
            for origin in ["https://evil.example", "http://localhost:3000"] {
                let response = preflight(&server, path, origin).await;
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
                assert!(
                    response
                        .headers()
                        .get("access-control-allow-origin")
                        .is_none(),
                    "{path} {origin}"
                );
            }
        }
        // The chat page's own calls (same origin) need no CORS and work.
        let who = if demo { As::Demo("1") } else { As::User("1") };
        let (status, _) = server.call(who, Method::GET, "/v1/inbox", None).await;
        assert_eq!(status, StatusCode::OK);
        let response = server
            .http
            .get(server.url("/v1/config"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert!(response
            .headers()
            .get("access-control-allow-origin")
            .is_none());
    }
}

#[tokio::test]
async fn any_origin_only_outside_demo_mode() {
    let server = start_with(|config| ServeConfig {
        allowed_origins: vec!["*".into()],
        ..config
    })
    .await;
    let response = preflight(&server, "/v1/messages", "https://elsewhere.example").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    let dir = tempfile::tempdir().unwrap();
    let refused = Server::bind(ServeConfig {
        demo: true,
        allowed_origins: vec!["*".into()],
        ..config(dir.path())
    })
    .await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("demo"), "{err}");
    let bad = Server::bind(ServeConfig {
        allowed_origins: vec!["https://app.example/chat".into()],
        ..config(dir.path())
    })
    .await;
    let err = bad.err().expect("refused").to_string();
    assert!(err.contains("https://app.example/chat"), "{err}");
}

#[tokio::test]
async fn unauthenticated_comes_before_a_bad_body() {
    let server = start(false).await;
    let response = server
        .http
        .post(server.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
}

/// A minimal Pusher protocol 7 client.
struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    socket_id: String,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> Ws {
        let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=js&version=8.6.0");
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut ws = Ws {
            stream,
            socket_id: String::new(),
        };
        let hello = ws.next_event("pusher:connection_established").await;
        let data: Value =
            serde_json::from_str(hello["data"].as_str().expect("data")).expect("JSON data");
        ws.socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        ws
    }

    async fn send(&mut self, frame: Value) {
        self.stream
            .send(WsMessage::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    /// The next frame with this event name (others are skipped).
    async fn next_event(&mut self, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no {event} within the deadline"))
                .expect("open socket")
                .expect("frame");
            if let WsMessage::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).expect("JSON frame");
                if value["event"] == event {
                    return value;
                }
                assert_ne!(
                    value["event"], "pusher:error",
                    "while waiting for {event}: {value}"
                );
            }
        }
    }
}

#[tokio::test]
async fn pusher_clients_authorized_here_get_the_engines_events() {
    let server = start(false).await;
    let mut ws = Ws::connect(server.addr).await;
    // Channel auth from this server, then subscribe.
    let (status, auth) = server
        .form(
            As::User("18"),
            "/pusher/auth",
            &[
                ("socket_id", &ws.socket_id),
                ("channel_name", "private-conversation-1-18"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    ws.send(json!({"event": "pusher:subscribe", "data": {
        "channel": "private-conversation-1-18", "auth": auth["auth"]}}))
        .await;
    ws.next_event("pusher_internal:subscription_succeeded")
        .await;
    // Sign in, for the user's own channel (the chat page's inbox).
    let (_, signin) = server
        .form(
            As::User("18"),
            "/pusher/user-auth",
            &[("socket_id", &ws.socket_id)],
        )
        .await;
    ws.send(json!({"event": "pusher:signin", "data": {
        "auth": signin["auth"], "user_data": signin["user_data"]}}))
        .await;
    ws.next_event("pusher:signin_success").await;
    ws.send(json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-18"}}))
        .await;
    ws.next_event("pusher_internal:subscription_succeeded")
        .await;

    let (_, sent) = server
        .post("1", "/v1/messages", json!({"to": "18", "body": "live"}))
        .await;
    // Both channels carry it; the frames may come in either order.
    let mut channels = Vec::new();
    for _ in 0..2 {
        let frame = ws.next_event("new-message").await;
        let message: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(message, sent["message"]);
        channels.push(frame["channel"].as_str().unwrap().to_owned());
    }
    channels.sort();
    assert_eq!(
        channels,
        ["#server-to-user-18", "private-conversation-1-18"]
    );

    // Read receipts reach the sender's side too.
    server
        .post("18", "/v1/conversations/1-18/read", json!({"seq": 1}))
        .await;
    let frame = ws.next_event("messages-read").await;
    let read: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        read,
        json!({"conversation_id": "1-18", "user_id": "18", "seq": 1})
    );
}
