//! The Redis adapter (feature `redis`), over the `redis` crate
//! (redis-rs) with its tokio runtime support: the most used Redis client in
//! Rust, maintained under the redis-rs organisation, with multiplexed
//! connections (one socket shared by every command of a node, which keeps
//! their order) and a split pub/sub connection whose stream ends when the
//! socket does. Its reconnecting `ConnectionManager` is not used: a node
//! must know when it was cut off, to serve alone and then resynchronise.
//!
//! One task per app owns two connections: a multiplexed one for commands
//! and scripts (also cloned for the HTTP API's queries) and one
//! subscribed to the app's bus. It sends the hub's queue in pipelines, in
//! order; applies what the bus brings; heartbeats, sweeps and pops due
//! leaves; and on any error drops both connections, marks the cluster down
//! and reconnects with back-off.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisWrite, ToRedisArgs};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::envelope::{self, BusMessage, Control};
use super::scripts::{outcomes, Outcome, Script};
use super::{Cluster, ClusterSettings};
use crate::broker::channel::{ChannelKind, SERVER_TO_USER_PREFIX};
use crate::broker::cluster_port::{ClusterLink, ClusterState, Op};
use crate::broker::hub::ChannelInfo;
use crate::broker::protocol::Frame;
use crate::broker::webhook::{HookEvent, LEAVE_DELAY};
use crate::broker::{App, Broker};
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Operations sent in one pipeline.
const BATCH: usize = 512;
/// How long Redis keeps a cache channel's last event (as one node does).
const CACHE_TTL_MS: u64 = 30 * 60 * 1000;
/// Keys read per SCAN step when resynchronising.
const SCAN_COUNT: usize = 1000;

/// Starts one adapter task per app.
pub(super) fn start(
    broker: &Broker,
    settings: ClusterSettings,
    handle: &tokio::runtime::Handle,
    node_id: String,
) -> Result<Cluster> {
    let client = Client::open(settings.url.as_str()).map_err(|e| {
        Error::Config(format!(
            "cluster URL {:?}: {e} (expected redis://[:PASSWORD@]HOST[:PORT][/DB])",
            crate::store::redact_url(&settings.url)
        ))
    })?;
    let node: Arc<str> = node_id.into();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut links = Vec::new();
    for app in broker.apps.iter() {
        let (link, queue) = ClusterLink::new(node.clone());
        links.push(link.clone());
        let prefix = format!("tidings:{{{}}}", app.config.id);
        let state = Arc::new(RedisState {
            prefix: prefix.clone(),
            conn: std::sync::Mutex::new(None),
        });
        link.set_state(state.clone());
        app.hub.join_cluster(link.clone());
        let adapter = Adapter {
            app: Arc::downgrade(app),
            app_id: app.config.id.clone(),
            counted: app.hub.subscription_count_events(),
            link,
            client: client.clone(),
            target: crate::store::redact_url(&settings.url),
            settings: settings.clone(),
            node: node.clone(),
            bus: format!("{prefix}:bus"),
            prefix,
            state,
            shas: HashMap::new(),
            next_confirm: None,
            seq: 0,
            pending: VecDeque::new(),
        };
        tasks.push(handle.spawn(adapter.run(queue, stopped.clone())));
    }
    Ok(Cluster {
        node_id: node,
        links,
        stop,
        tasks: std::sync::Mutex::new(tasks),
    })
}

/// Why a session with Redis ended.
enum Ended {
    /// Asked to stop (the node's share was taken out).
    Stopped,
    /// Redis failed or went away.
    Lost(String),
}

struct Adapter {
    app: Weak<App>,
    app_id: String,
    counted: bool,
    link: Arc<ClusterLink>,
    client: Client,
    /// The URL without password, for messages.
    target: String,
    settings: ClusterSettings,
    node: Arc<str>,
    prefix: String,
    bus: String,
    state: Arc<RedisState>,
    shas: HashMap<Script, String>,
    /// When the next delayed leave is due (this node's clock).
    next_confirm: Option<Instant>,
    /// The last sequence number given to one of this node's events.
    seq: u64,
    /// This node's events sent to Redis and not yet back: fanned out here
    /// when they come back, in Redis's order (or at once if Redis is lost).
    pending: VecDeque<PendingEvent>,
}

struct PendingEvent {
    seq: u64,
    channel: String,
    frame: Frame,
    except: Option<Arc<str>>,
}

fn lost(what: &str, e: impl std::fmt::Display) -> Ended {
    Ended::Lost(format!("{what}: {e}"))
}

fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Adapter {
    fn heartbeat_every(&self) -> Duration {
        (self.settings.node_ttl / 3).clamp(Duration::from_millis(50), Duration::from_secs(3600))
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Op>, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let began = Instant::now();
            let ended = self.session(&mut queue, &mut stop).await;
            self.link.set_up(false);
            self.state.set(None);
            self.deliver_pending_here();
            self.drain_offline(&mut queue);
            let reason = match ended {
                Ended::Stopped => break,
                Ended::Lost(_) if *stop.borrow() => break,
                Ended::Lost(reason) => reason,
            };
            if began.elapsed() > Duration::from_secs(30) {
                backoff = FIRST_BACKOFF;
            }
            let wait = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tracing::warn!(
                app = %self.app_id,
                node = %self.node,
                redis = %self.target,
                retry_in_ms = wait.as_millis() as u64,
                "cluster: {reason}; serving this node's subscribers alone until Redis is back"
            );
            let retry_at = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => break,
                    _ = stop.changed() => break,
                    op = queue.recv() => match op {
                        Some(op) => self.offline(op),
                        None => break,
                    },
                }
            }
            if *stop.borrow() {
                break;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if self.app.strong_count() == 0 {
                break;
            }
        }
        self.link.set_up(false);
        self.deliver_pending_here();
        // Nothing waits on a stopped adapter.
        queue.close();
        self.drain_offline(&mut queue);
    }

    /// What an operation comes to while Redis is away: events go to this
    /// node's subscribers (the other nodes cannot be reached), state waits
    /// for the resync, flushes are dropped unanswered (nothing reached
    /// Redis).
    fn offline(&self, op: Op) {
        if let Op::Publish {
            channel,
            frame,
            except,
            here: true,
            ..
        } = op
        {
            if let Some(app) = self.app.upgrade() {
                app.hub.publish_local(&channel, &frame, except.as_deref());
            }
        }
    }

    fn drain_offline(&self, queue: &mut mpsc::Receiver<Op>) {
        while let Ok(op) = queue.try_recv() {
            self.offline(op);
        }
    }

    /// This node's events that did not come back (Redis went away): they
    /// go to this node's subscribers now, once.
    fn deliver_pending_here(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if let Some(app) = self.app.upgrade() {
            for e in pending {
                app.hub
                    .publish_local(&e.channel, &e.frame, e.except.as_deref());
            }
        }
    }

    async fn connect(
        &mut self,
    ) -> std::result::Result<(MultiplexedConnection, redis::aio::PubSubStream), Ended> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| lost(&format!("cannot connect to Redis at {}", self.target), e))?;
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| Ended::Lost(format!("Redis at {} did not answer in time", self.target)))?
            .map_err(|e| lost(&format!("cannot subscribe at Redis {}", self.target), e))?;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(&self.bus))
            .await
            .map_err(|_| Ended::Lost(format!("SUBSCRIBE {} timed out", self.bus)))?
            .map_err(|e| lost(&format!("SUBSCRIBE {}", self.bus), e))?;
        for script in Script::ALL {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script.source())
                .query_async(&mut conn)
                .await
                .map_err(|e| lost(&format!("loading the {script:?} script"), e))?;
            self.shas.insert(script, sha);
        }
        Ok((conn, stream))
    }

    async fn session(
        &mut self,
        queue: &mut mpsc::Receiver<Op>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut conn, mut stream) = match self.connect().await {
            Ok(connected) => connected,
            Err(ended) => return ended,
        };
        self.state.set(Some(conn.clone()));
        if let Err(ended) = self.resync(&mut conn, queue).await {
            return ended;
        }
        tracing::info!(
            app = %self.app_id,
            node = %self.node,
            redis = %self.target,
            "cluster: connected and synchronised"
        );
        let link = self.link.clone();
        let beat = self.heartbeat_every();
        let mut heartbeat = tokio::time::interval_at(Instant::now() + beat, beat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sweep_every = self
            .settings
            .sweep_interval
            .clamp(Duration::from_millis(50), Duration::from_secs(3600));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard_own_heartbeat = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let confirm_at = self.next_confirm;
            // Unbiased: a busy bus must not starve this node's own queue.
            let step: std::result::Result<(), Ended> = tokio::select! {
                _ = stop.changed() => return self.leave(&mut conn, queue).await,
                message = stream.next() => {
                    // This message and whatever else already arrived (up to
                    // BATCH), without another select.
                    let mut next = message;
                    let mut left = BATCH;
                    let mut own = false;
                    let step = loop {
                        let Some(message) = next else {
                            break Err(Ended::Lost("the Redis subscription connection closed".into()));
                        };
                        own |= self.on_bus(message.get_payload_bytes());
                        left -= 1;
                        match (left > 0).then(|| stream.next().now_or_never()).flatten() {
                            Some(more) => next = more,
                            None => break Ok(()),
                        }
                    };
                    if own {
                        heard_own_heartbeat = Instant::now();
                    }
                    step
                },
                n = queue.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return Ended::Stopped;
                    }
                    self.execute(&mut conn, &mut batch).await
                }
                _ = heartbeat.tick() => {
                    if heard_own_heartbeat.elapsed() > beat * 3 + RESPONSE_TIMEOUT {
                        Err(Ended::Lost("this node no longer hears its own heartbeats on the Redis bus".into()))
                    } else {
                        self.heartbeat(&mut conn, queue).await
                    }
                }
                _ = sweep.tick() => self.sweep(&mut conn).await,
                _ = sleep_until(confirm_at) => {
                    self.next_confirm = None;
                    self.confirm(&mut conn, false).await
                }
                _ = link.resync_requested() => {
                    if link.take_resync() {
                        self.resync(&mut conn, queue).await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    fn script(&self, script: Script) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.shas.get(&script).map_or("", String::as_str))
            .arg(0)
            .arg(&self.prefix);
        cmd
    }

    async fn run_script(
        &mut self,
        conn: &mut MultiplexedConnection,
        script: Script,
        cmd: redis::Cmd,
    ) -> std::result::Result<(), Ended> {
        let flat: Vec<String> = cmd
            .query_async(conn)
            .await
            .map_err(|e| lost(&format!("the {script:?} script failed"), e))?;
        self.handle(flat);
        Ok(())
    }

    /// Drops the stale queue, marks the cluster up and puts this node's
    /// whole share into Redis, then re-reads every node's members.
    async fn resync(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut mpsc::Receiver<Op>,
    ) -> std::result::Result<(), Ended> {
        let Some(app) = self.app.upgrade() else {
            return Err(Ended::Stopped);
        };
        let link = self.link.clone();
        let mut queued = Vec::new();
        let share = app.hub.cluster_snapshot(|| {
            // Queued before this point: state is part of the share; events
            // and terminations still go out, after it.
            while let Ok(op) = queue.try_recv() {
                if !op.is_state() {
                    queued.push(op);
                }
            }
            let _ = link.take_resync();
            link.set_up(true);
        });
        let mut cmd = self.script(Script::Replace);
        cmd.arg(&*self.node)
            .arg(flag(self.counted))
            .arg(ms(LEAVE_DELAY))
            .arg(ms(self.settings.node_ttl))
            .arg("join")
            .arg(share.subscriptions.len());
        for (channel, n) in &share.subscriptions {
            cmd.arg(channel).arg(*n);
        }
        cmd.arg(share.members.len());
        for (channel, user, info, n) in &share.members {
            cmd.arg(channel).arg(user).arg(info).arg(*n);
        }
        self.run_script(conn, Script::Replace, cmd).await?;
        let (members, cached) = self.read_cluster(conn).await?;
        app.hub.cluster_resync(members, cached);
        self.execute(conn, &mut queued).await
    }

    /// Every presence channel's members and every cache channel's event.
    async fn read_cluster(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> std::result::Result<
        (
            HashMap<String, HashMap<String, String>>,
            Vec<(String, Frame, Duration)>,
        ),
        Ended,
    > {
        let info_prefix = format!("{}:info:", self.prefix);
        let mut members = HashMap::new();
        for chunk in scan(conn, &format!("{info_prefix}*")).await?.chunks(100) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HGETALL").arg(key);
            }
            let found: Vec<HashMap<String, String>> = pipe
                .query_async(conn)
                .await
                .map_err(|e| lost("reading presence members", e))?;
            for (key, users) in chunk.iter().zip(found) {
                if let Some(channel) = key.strip_prefix(&info_prefix) {
                    members.insert(channel.to_owned(), users);
                }
            }
        }
        let cache_prefix = format!("{}:cache:", self.prefix);
        let mut cached = Vec::new();
        for chunk in scan(conn, &format!("{cache_prefix}*")).await?.chunks(100) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
            }
            let found: Vec<(Option<Vec<u8>>, i64)> = pipe
                .query_async(conn)
                .await
                .map_err(|e| lost("reading cache channels", e))?;
            for (key, (frame, ttl)) in chunk.iter().zip(found) {
                let (Some(channel), Some(frame)) = (key.strip_prefix(&cache_prefix), frame) else {
                    continue;
                };
                let Ok(frame) = Frame::try_from(Bytes::from(frame)) else {
                    continue;
                };
                let left = u64::try_from(ttl).unwrap_or(0).min(CACHE_TTL_MS);
                let age = Duration::from_millis(CACHE_TTL_MS - left);
                cached.push((channel.to_owned(), frame, age));
            }
        }
        Ok((members, cached))
    }

    /// Sends a batch of queued operations in one pipeline, in order.
    async fn execute(
        &mut self,
        conn: &mut MultiplexedConnection,
        batch: &mut Vec<Op>,
    ) -> std::result::Result<(), Ended> {
        let mut pipe = redis::pipe();
        let mut flushes = Vec::new();
        let delay = ms(LEAVE_DELAY);
        for op in batch.drain(..) {
            match op {
                Op::Publish {
                    channel,
                    frame,
                    except,
                    cache,
                    here,
                } => {
                    self.seq += 1;
                    let header = envelope::event_header(
                        &self.node,
                        self.seq,
                        &channel,
                        except.as_deref(),
                        cache,
                    );
                    if cache {
                        // Before the event, so a node resynchronising between
                        // the two still ends with this one.
                        pipe.cmd("SET")
                            .arg(format!("{}:cache:{channel}", self.prefix))
                            .arg(frame.as_bytes())
                            .arg("PX")
                            .arg(CACHE_TTL_MS)
                            .ignore();
                    }
                    pipe.cmd("PUBLISH")
                        .arg(&self.bus)
                        .arg(Envelope {
                            header: &header,
                            frame: frame.as_bytes(),
                        })
                        .ignore();
                    // A retry this node's subscribers had already is
                    // not fanned out here when it comes back.
                    if here {
                        self.pending.push_back(PendingEvent {
                            seq: self.seq,
                            channel,
                            frame,
                            except,
                        });
                    }
                }
                Op::Subscribed { channel, counted } => {
                    let mut cmd = self.script(Script::Subscribe);
                    cmd.arg(&*self.node).arg(channel).arg(flag(counted));
                    pipe.add_command(cmd);
                }
                Op::Unsubscribed { channel, counted } => {
                    let mut cmd = self.script(Script::Unsubscribe);
                    cmd.arg(&*self.node)
                        .arg(channel)
                        .arg(flag(counted))
                        .arg(delay);
                    pipe.add_command(cmd);
                }
                Op::Joined {
                    channel,
                    user,
                    info,
                    socket,
                } => {
                    let mut cmd = self.script(Script::Join);
                    cmd.arg(&*self.node)
                        .arg(channel)
                        .arg(user)
                        .arg(info)
                        .arg(&*socket);
                    pipe.add_command(cmd);
                }
                Op::Left { channel, user } => {
                    let mut cmd = self.script(Script::Leave);
                    cmd.arg(&*self.node).arg(channel).arg(user).arg(delay);
                    pipe.add_command(cmd);
                }
                Op::Terminate { user } => {
                    let message = envelope::control(&Control::Term {
                        u: user,
                        n: self.node.to_string(),
                    });
                    pipe.cmd("PUBLISH").arg(&self.bus).arg(message).ignore();
                }
                Op::Flush(done) => flushes.push(done),
            }
        }
        if !pipe.is_empty() {
            let answers: Vec<Vec<String>> = pipe
                .query_async(conn)
                .await
                .map_err(|e| lost("sending to Redis", e))?;
            for flat in answers {
                self.handle(flat);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        Ok(())
    }

    async fn heartbeat(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut mpsc::Receiver<Op>,
    ) -> std::result::Result<(), Ended> {
        let mut cmd = self.script(Script::Heartbeat);
        cmd.arg(&*self.node).arg(ms(self.settings.node_ttl));
        let flat: Vec<String> = cmd
            .query_async(conn)
            .await
            .map_err(|e| lost("the heartbeat failed", e))?;
        let (answers, _) = outcomes(flat);
        if answers.contains(&Outcome::Swept(self.node.to_string())) {
            tracing::warn!(
                app = %self.app_id,
                node = %self.node,
                "cluster: this node was taken for dead (its heartbeat expired); putting its state back"
            );
            self.resync(conn, queue).await?;
        }
        Ok(())
    }

    async fn sweep(&mut self, conn: &mut MultiplexedConnection) -> std::result::Result<(), Ended> {
        let mut cmd = self.script(Script::Sweep);
        cmd.arg(flag(self.counted)).arg(ms(LEAVE_DELAY));
        self.run_script(conn, Script::Sweep, cmd).await?;
        self.confirm(conn, false).await
    }

    async fn confirm(
        &mut self,
        conn: &mut MultiplexedConnection,
        force: bool,
    ) -> std::result::Result<(), Ended> {
        let mut cmd = self.script(Script::Confirm);
        cmd.arg(flag(force));
        self.run_script(conn, Script::Confirm, cmd).await
    }

    /// A clean stop: sends what is queued, takes this node's share out and,
    /// when it was the last node, sends the leaves' webhooks now.
    async fn leave(
        &mut self,
        conn: &mut MultiplexedConnection,
        queue: &mut mpsc::Receiver<Op>,
    ) -> Ended {
        let mut batch = Vec::new();
        while let Ok(op) = queue.try_recv() {
            batch.push(op);
        }
        if let Err(Ended::Lost(reason)) = self.execute(conn, &mut batch).await {
            tracing::warn!(app = %self.app_id, "cluster: sending the last operations failed: {reason}");
        }
        self.link.set_up(false);
        let mut cmd = self.script(Script::Replace);
        cmd.arg(&*self.node)
            .arg(flag(self.counted))
            .arg(ms(LEAVE_DELAY))
            .arg(ms(self.settings.node_ttl))
            .arg("leave")
            .arg(0)
            .arg(0);
        let left = cmd.query_async::<Vec<String>>(conn).await;
        match left {
            Ok(flat) => {
                let last = outcomes(flat.clone()).0.contains(&Outcome::Nodes(0));
                self.handle(flat);
                if last {
                    let _ = self.confirm(conn, true).await;
                }
                tracing::info!(app = %self.app_id, node = %self.node, "cluster: left");
            }
            Err(e) => tracing::warn!(
                app = %self.app_id,
                node = %self.node,
                "cluster: could not take this node's state out of Redis ({e}); the others sweep it after its TTL"
            ),
        }
        Ended::Stopped
    }

    /// Applies one bus message; `true` when it is this node's own heartbeat.
    fn on_bus(&mut self, payload: &[u8]) -> bool {
        let Some(app) = self.app.upgrade() else {
            return false;
        };
        match envelope::parse(payload) {
            Err(reason) => {
                tracing::warn!(app = %self.app_id, "cluster: skipped a bus message: {reason}");
            }
            Ok(BusMessage::Event {
                node,
                seq,
                channel,
                except,
                frame,
                ..
            }) => {
                if node == &*self.node {
                    // One of ours: fan out the frame kept, nothing decoded.
                    while let Some(front) = self.pending.front() {
                        if front.seq > seq {
                            break;
                        }
                        if let Some(e) = self.pending.pop_front() {
                            app.hub
                                .publish_local(&e.channel, &e.frame, e.except.as_deref());
                        }
                    }
                    return false;
                }
                match Frame::try_from(Bytes::copy_from_slice(frame)) {
                    Ok(frame) => {
                        app.hub.publish_local(channel, &frame, except);
                    }
                    Err(_) => tracing::warn!(
                        app = %self.app_id,
                        channel = %channel,
                        "cluster: skipped an event whose frame is not UTF-8"
                    ),
                }
            }
            Ok(BusMessage::Control(control)) => match control {
                Control::Add { c, u, i, s } => app.hub.cluster_member_added(&c, &u, &i, &s),
                Control::Rm { c, u } => app.hub.cluster_member_removed(&c, &u),
                Control::Count { c, n } => app.hub.cluster_subscription_count(&c, n),
                Control::Term { u, n } => {
                    if n != *self.node {
                        app.hub.terminate_user(&u);
                    }
                }
                Control::Hb { n } => return n == *self.node,
            },
        }
        false
    }

    /// What this node's scripts decided: its webhooks, and when to look
    /// for due leaves.
    fn handle(&mut self, flat: Vec<String>) {
        let (answers, skipped) = outcomes(flat);
        for reason in skipped {
            tracing::warn!(app = %self.app_id, "cluster: {reason}");
        }
        let app = self.app.upgrade();
        let hook = |event: HookEvent| {
            if let Some(app) = &app {
                app.hub.hook(event);
            }
        };
        for answer in answers {
            match answer {
                Outcome::Occupied(channel) => hook(HookEvent::ChannelOccupied { channel }),
                Outcome::Added { channel, user } => hook(HookEvent::MemberAdded {
                    channel,
                    user_id: user,
                }),
                Outcome::Count { channel, count } => hook(HookEvent::SubscriptionCount {
                    channel,
                    subscription_count: usize::try_from(count).unwrap_or(usize::MAX),
                }),
                Outcome::Vacated(channel) => hook(HookEvent::ChannelVacated { channel }),
                Outcome::Removed { channel, user } => hook(HookEvent::MemberRemoved {
                    channel,
                    user_id: user,
                }),
                Outcome::Pending { delay_ms } | Outcome::Next(delay_ms) => {
                    let wait = Duration::from_millis(delay_ms.saturating_add(20).min(3_600_000));
                    let at = Instant::now() + wait;
                    self.next_confirm = Some(self.next_confirm.map_or(at, |t| t.min(at)));
                }
                Outcome::Swept(node) => {
                    if node != *self.node {
                        tracing::info!(
                            app = %self.app_id,
                            dead = %node,
                            "cluster: swept a node whose heartbeat expired; its members left"
                        );
                    }
                }
                Outcome::Nodes(_) => {}
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Every key matching `pattern` (SCAN, so Redis is never blocked).
async fn scan(
    conn: &mut MultiplexedConnection,
    pattern: &str,
) -> std::result::Result<Vec<String>, Ended> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await
            .map_err(|e| lost(&format!("SCAN {pattern}"), e))?;
        keys.extend(found);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// An event envelope written straight into the command: header and frame
/// are copied once, into the pipeline's buffer.
struct Envelope<'a> {
    header: &'a str,
    frame: &'a [u8],
}

impl ToRedisArgs for Envelope<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.header.as_bytes());
        let _ = arg.write_all(self.frame);
    }
}

/// The cluster-wide queries of the HTTP API, on a clone of the adapter's
/// command connection.
struct RedisState {
    prefix: String,
    conn: std::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisState {
    fn set(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    fn conn(&self) -> Result<MultiplexedConnection> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::transport("cluster", "Redis is not connected"))
    }
}

fn query_error(what: &str, e: redis::RedisError) -> Error {
    Error::transport("cluster", format!("{what}: {e}"))
}

fn is_presence(channel: &str) -> bool {
    ChannelKind::of(channel) == ChannelKind::Presence && !channel.starts_with(SERVER_TO_USER_PREFIX)
}

#[async_trait]
impl ClusterState for RedisState {
    async fn channel(&self, channel: &str) -> Result<Option<ChannelInfo>> {
        let mut conn = self.conn()?;
        let (subscriptions, users): (Option<i64>, i64) = redis::pipe()
            .cmd("HGET")
            .arg(format!("{}:occ", self.prefix))
            .arg(channel)
            .cmd("HLEN")
            .arg(format!("{}:pres:{channel}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| query_error(&format!("reading channel {channel}"), e))?;
        let subscriptions = usize::try_from(subscriptions.unwrap_or(0)).unwrap_or(0);
        if subscriptions == 0 {
            return Ok(None);
        }
        Ok(Some(ChannelInfo {
            subscription_count: subscriptions,
            user_count: is_presence(channel).then(|| usize::try_from(users).unwrap_or(0)),
        }))
    }

    async fn channels(&self, prefix: &str) -> Result<Vec<(String, ChannelInfo)>> {
        let mut conn = self.conn()?;
        let all: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(format!("{}:occ", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| query_error("listing channels", e))?;
        let mut list: Vec<(String, usize)> = all
            .into_iter()
            .filter(|(name, n)| *n > 0 && name.starts_with(prefix))
            .map(|(name, n)| (name, usize::try_from(n).unwrap_or(0)))
            .collect();
        list.sort();
        let presence: Vec<&str> = list
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| is_presence(name))
            .collect();
        let mut user_counts: HashMap<String, usize> = HashMap::new();
        for chunk in presence.chunks(100) {
            let mut pipe = redis::pipe();
            for name in chunk {
                pipe.cmd("HLEN").arg(format!("{}:pres:{name}", self.prefix));
            }
            let counts: Vec<i64> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| query_error("counting presence users", e))?;
            for (name, n) in chunk.iter().zip(counts) {
                user_counts.insert((*name).to_owned(), usize::try_from(n).unwrap_or(0));
            }
        }
        Ok(list
            .into_iter()
            .map(|(name, subscription_count)| {
                let user_count =
                    is_presence(&name).then(|| user_counts.get(&name).copied().unwrap_or(0));
                (
                    name,
                    ChannelInfo {
                        subscription_count,
                        user_count,
                    },
                )
            })
            .collect())
    }

    async fn users(&self, channel: &str) -> Result<Vec<String>> {
        let mut conn = self.conn()?;
        let mut users: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("{}:pres:{channel}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| query_error(&format!("listing the users of {channel}"), e))?;
        users.sort();
        Ok(users)
    }
}
