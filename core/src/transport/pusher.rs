//! Delivery through the Pusher HTTP API (feature `pusher`): to Pusher itself
//! or any compatible server (a `tidings serve` elsewhere, soketi, ...).
//!
//! Events are sent in `batch_events` calls of at most 10, in order, over
//! kept-alive connections, each request signed
//! and bounded by a timeout. Timeouts, connection errors, 5xx and 429 are
//! retried with exponential backoff and jitter; other 4xx answers refuse the
//! event for good (the outbox keeps it with the reason). Event data over
//! 10 KB is refused before sending, except `new-message`: it goes out
//! without its body, marked `"truncated": true`, and clients fetch the
//! message by id.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use super::{HeldBack, Transport};
use crate::error::{Error, Result};
use crate::event::{self, Event};
use crate::signature;

/// Pusher's limit on an event's `data`.
pub const MAX_EVENT_DATA: usize = 10 * 1024;
/// Pusher's limit on events per `batch_events` call.
pub const MAX_BATCH: usize = 10;

/// How to reach a Pusher HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherEndpoint {
    /// `http://host:port` or `https://host`.
    pub base: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl PusherEndpoint {
    /// Parses the URL form the official SDKs accept:
    /// `http(s)://KEY:SECRET@HOST[:PORT]/apps/APP_ID`.
    pub fn from_url(url: &str) -> Result<PusherEndpoint> {
        let bad = |why: &str| {
            Error::Config(format!(
                "Pusher URL {:?}: {why}; expected http(s)://KEY:SECRET@HOST[:PORT]/apps/APP_ID",
                crate::store::redact_url(url)
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /apps/APP_ID path"))?;
        let (userinfo, host) = authority
            .rsplit_once('@')
            .ok_or_else(|| bad("no KEY:SECRET@ before the host"))?;
        let (key, secret) = userinfo
            .split_once(':')
            .ok_or_else(|| bad("no KEY:SECRET before the host"))?;
        let app_id = path
            .trim_end_matches('/')
            .strip_prefix("apps/")
            .ok_or_else(|| bad("the path must be /apps/APP_ID"))?;
        if key.is_empty() || secret.is_empty() || host.is_empty() || app_id.is_empty() {
            return Err(bad("a part is empty"));
        }
        Ok(PusherEndpoint {
            base: format!("{scheme}://{host}"),
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// Retry and timeout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Per request.
    pub timeout: Duration,
    /// Attempts per call before the outbox takes over.
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(5),
            attempts: 3,
            first_backoff: Duration::from_millis(100),
        }
    }
}

pub struct PusherTransport {
    endpoint: PusherEndpoint,
    policy: RetryPolicy,
    client: reqwest::Client,
    name: String,
}

#[derive(Serialize)]
struct BatchItem<'a> {
    channel: &'a str,
    name: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
struct Batch<'a> {
    batch: Vec<BatchItem<'a>>,
}

impl PusherTransport {
    pub fn new(endpoint: PusherEndpoint, policy: RetryPolicy) -> Result<PusherTransport> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("building the Pusher HTTP client: {e}")))?;
        let name = format!("pusher {}", endpoint.base);
        Ok(PusherTransport {
            endpoint,
            policy,
            client,
            name,
        })
    }

    pub fn from_url(url: &str, policy: RetryPolicy) -> Result<PusherTransport> {
        PusherTransport::new(PusherEndpoint::from_url(url)?, policy)
    }

    /// One signed POST with retries; `Ok` on 2xx.
    async fn post(&self, path_tail: &str, body: Vec<u8>) -> Result<()> {
        let path = format!("/apps/{}{path_tail}", self.endpoint.app_id);
        let mut backoff = self.policy.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.attempts.max(1) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let params = signature::sign_request(
                &self.endpoint.key,
                &self.endpoint.secret,
                "POST",
                &path,
                &body,
                now,
                &[],
            );
            let sent = self
                .client
                .post(format!("{}{path}", self.endpoint.base))
                .query(&params)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let text = text.trim();
                    last = format!("HTTP {status}: {text}");
                    if status.is_client_error() && status.as_u16() != 429 {
                        return Err(Error::transport_refused(&self.name, last));
                    }
                }
                Err(e) if e.is_timeout() => {
                    last = format!("no answer within {:?}", self.policy.timeout)
                }
                Err(e) => last = format!("cannot reach the server: {}", describe(e)),
            }
            if attempt < self.policy.attempts {
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff *= 2;
            }
        }
        Err(Error::transport(&self.name, last))
    }

    async fn send_chunk(&self, chunk: &[(&Event, String)]) -> Result<()> {
        let body = batch_body(chunk)
            .map_err(|e| Error::transport(&self.name, format!("encoding a batch: {e}")))?;
        self.post("/batch_events", body).await
    }
}

/// The `batch_events` body for events and their data: the bytes the
/// official SDKs send (`JSON.stringify({batch})`), so signatures match.
fn batch_body(chunk: &[(&Event, String)]) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Batch {
        batch: chunk
            .iter()
            .map(|(e, data)| BatchItem {
                channel: &e.channel,
                name: &e.name,
                data,
            })
            .collect(),
    })
}

/// The `data` Pusher will get for an event, or why it cannot go.
fn event_data(e: &Event) -> Result<String> {
    let data = std::str::from_utf8(&e.payload).map_err(|err| {
        Error::transport_refused("pusher", format!("payload is not UTF-8: {err}"))
    })?;
    if data.len() <= MAX_EVENT_DATA {
        return Ok(data.to_owned());
    }
    if e.name == event::NEW_MESSAGE {
        // Too big once JSON-escaped: send it without its body; clients
        // fetch the message by id.
        let mut value: serde_json::Value = serde_json::from_str(data).map_err(|err| {
            Error::transport_refused("pusher", format!("new-message payload is not JSON: {err}"))
        })?;
        if let Some(object) = value.as_object_mut() {
            object.remove("body");
            object.insert("truncated".into(), serde_json::Value::Bool(true));
        }
        let slim = value.to_string();
        if slim.len() <= MAX_EVENT_DATA {
            return Ok(slim);
        }
    }
    Err(Error::transport_refused(
        "pusher",
        format!(
            "event {} on {} has {} bytes of data; Pusher accepts at most {MAX_EVENT_DATA}",
            e.name,
            e.channel,
            data.len()
        ),
    ))
}

#[async_trait]
impl Transport for PusherTransport {
    fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint and app, never the secret.
    fn outbox_key(&self) -> Option<String> {
        Some(format!(
            "pusher:{}/apps/{}",
            self.endpoint.base, self.endpoint.app_id
        ))
    }

    /// Every attempt with its backoff, plus a second: the retries are this
    /// transport's own.
    fn call_timeout(&self) -> Duration {
        let attempts = self.policy.attempts.max(1);
        let backoffs = (0..attempts).fold(Duration::ZERO, |sum, n| {
            sum + self.policy.first_backoff.saturating_mul(1 << n.min(16))
        });
        self.policy
            .timeout
            .saturating_mul(attempts)
            .saturating_add(backoffs)
            .saturating_add(Duration::from_secs(1))
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn deliver(&self, channel: &str, event: &str, payload: Bytes) -> Result<()> {
        let e = Arc::new(Event::new(channel, event, payload));
        self.deliver_batch(std::slice::from_ref(&e))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn deliver_batch(&self, events: &[Arc<Event>]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = events.iter().map(|_| None).collect();
        let mut ready: Vec<(usize, String)> = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            match event_data(e) {
                Ok(data) => ready.push((i, data)),
                Err(err) => results[i] = Some(Err(err)),
            }
        }
        let mut held = HeldBack::default();
        let mut pending = ready.into_iter().peekable();
        while pending.peek().is_some() {
            let mut chunk: Vec<(usize, String)> = Vec::with_capacity(MAX_BATCH);
            while chunk.len() < MAX_BATCH {
                let Some((i, data)) = pending.next() else {
                    break;
                };
                match held.check(&events[i].channel) {
                    Ok(()) => chunk.push((i, data)),
                    Err(err) => results[i] = Some(Err(err)),
                }
            }
            if chunk.is_empty() {
                continue;
            }
            let refs: Vec<(&Event, String)> = chunk
                .iter()
                .map(|(i, d)| (&*events[*i], d.clone()))
                .collect();
            match self.send_chunk(&refs).await {
                Err(err) if err.is_permanent() && chunk.len() > 1 => {
                    // One bad event must not sink its neighbours: resend one by one.
                    for (i, data) in chunk {
                        let result = self.send_chunk(&[(&*events[i], data)]).await;
                        held.record(&events[i].channel, &result);
                        results[i] = Some(result);
                    }
                }
                outcome => {
                    for (i, _) in &chunk {
                        let result = match &outcome {
                            Ok(()) => Ok(()),
                            Err(Error::TransportRefused { transport, message }) => {
                                Err(Error::transport_refused(transport, message))
                            }
                            Err(Error::Transport {
                                transport, message, ..
                            }) => Err(Error::transport(transport, message)),
                            Err(err) => Err(Error::transport(&self.name, err.to_string())),
                        };
                        held.record(&events[*i].channel, &result);
                        results[*i] = Some(result);
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
    }
}

/// A request error with its causes ("connection refused"), without the
/// URL: its query holds the request's signature and is noise in a log.
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests recorded from the official `pusher` Node SDK for fixed
    /// inputs (tests/e2e/tools/pusher-sdk-vectors.js makes the file, and a
    /// test there checks it is current).
    const SDK_VECTORS: &str = include_str!("../../tests/fixtures/pusher_sdk_vectors.json");

    fn query_pairs(query: &str) -> std::collections::BTreeMap<String, String> {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn requests_are_signed_byte_for_byte_like_the_node_sdk() {
        let file: serde_json::Value = serde_json::from_str(SDK_VECTORS).unwrap();
        let (key, secret) = (
            file["key"].as_str().unwrap(),
            file["secret"].as_str().unwrap(),
        );
        let vectors = file["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 5, "{} vectors", vectors.len());
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let sdk_body = v["body"].as_str().unwrap().as_bytes();
            let body = match v["events"].as_array() {
                // What this transport sends for the same events.
                Some(events) => {
                    let events: Vec<Event> = events
                        .iter()
                        .map(|e| {
                            Event::new(
                                e["channel"].as_str().unwrap(),
                                e["name"].as_str().unwrap(),
                                Bytes::from(e["data"].as_str().unwrap().to_owned()),
                            )
                        })
                        .collect();
                    let chunk: Vec<(&Event, String)> =
                        events.iter().map(|e| (e, event_data(e).unwrap())).collect();
                    let body = batch_body(&chunk).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&body),
                        String::from_utf8_lossy(sdk_body),
                        "{name}: body"
                    );
                    body
                }
                None => sdk_body.to_vec(),
            };
            let sdk_query = query_pairs(v["query"].as_str().unwrap());
            let reserved = [
                "auth_key",
                "auth_timestamp",
                "auth_version",
                "body_md5",
                "auth_signature",
            ];
            let extra: Vec<(String, String)> = sdk_query
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let signed = signature::sign_request(
                key,
                secret,
                v["method"].as_str().unwrap(),
                v["path"].as_str().unwrap(),
                &body,
                v["timestamp"].as_i64().unwrap(),
                &extra,
            );
            let ours: std::collections::BTreeMap<String, String> = signed.into_iter().collect();
            assert_eq!(ours, sdk_query, "{name}: query");
        }
    }

    #[test]
    fn sdk_urls_parse() {
        let e = PusherEndpoint::from_url("http://key:sec@127.0.0.1:6001/apps/42").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:6001");
        assert_eq!(
            (e.app_id.as_str(), e.key.as_str(), e.secret.as_str()),
            ("42", "key", "sec")
        );
        let e = PusherEndpoint::from_url("https://k:s@api-eu.pusher.com/apps/1/").unwrap();
        assert_eq!(e.base, "https://api-eu.pusher.com");
        for bad in [
            "ftp://k:s@h/apps/1",
            "http://h/apps/1",
            "http://k:s@h/1",
            "k:s@h/apps/1",
        ] {
            let err = PusherEndpoint::from_url(bad).unwrap_err().to_string();
            assert!(!err.contains(":s@"), "secret leaked: {err}");
        }
    }

    #[test]
    fn oversized_new_messages_go_out_truncated() {
        let body = "\"".repeat(6000); // 12000 bytes once escaped
        let payload = serde_json::json!({"id": 7, "seq": 3, "body": body}).to_string();
        let e = Event::new(
            "private-conversation-1-18",
            event::NEW_MESSAGE,
            Bytes::from(payload),
        );
        let data = event_data(&e).unwrap();
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["id"], 7);
        assert!(v.get("body").is_none());
        let other = Event::new(
            "private-conversation-1-18",
            "custom",
            Bytes::from("x".repeat(MAX_EVENT_DATA + 1)),
        );
        let err = event_data(&other).unwrap_err();
        assert!(err.is_permanent());
        assert!(err.to_string().contains("10240"), "{err}");
    }
}
