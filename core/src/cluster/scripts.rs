//! The Lua scripts that decide every cluster-wide transition atomically in
//! Redis, and what they answer, without I/O.
//!
//! Keys of an app, under the prefix `tidings:{APP_ID}` (one hash tag, so an
//! app's keys live in one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:bus` | pub/sub channel | events and control messages ([`super::envelope`]) |
//! | `P:occ` | hash | channel → subscriptions on all nodes |
//! | `P:pres:CHANNEL` | hash | user → connections on all nodes |
//! | `P:info:CHANNEL` | hash | user → `user_info` JSON |
//! | `P:n:NODE:occ` | hash | channel → subscriptions on NODE |
//! | `P:n:NODE:pres` | hash | `CHANNEL\nUSER` → connections on NODE |
//! | `P:nodes` | set | nodes that may hold a share |
//! | `P:alive:NODE` | string with TTL | NODE's heartbeat |
//! | `P:swept:NODE` | string, 1 day | NODE was swept (it must resync) |
//! | `P:pending` | sorted set | delayed `channel_vacated` (`v\nCHANNEL`) and `member_removed` (`m\nCHANNEL\nUSER`) webhooks, by due time |
//! | `P:cache:CHANNEL` | string with TTL | the last event of a cache channel |
//!
//! Every script takes the prefix as `ARGV[1]` and answers a flat list of
//! (kind, a, b) triples, read by [`outcomes`]. Times come from Redis
//! (`TIME`), so the nodes' clocks never matter.

/// Shared by every script: the prefix, the clock, control messages, answers.
const PRELUDE: &str = r#"
local P = ARGV[1]
local out = {}
local function emit(kind, a, b)
  out[#out + 1] = kind
  out[#out + 1] = a or ''
  out[#out + 1] = b or ''
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ctl(message)
  redis.call('PUBLISH', P .. ':bus', 'j\n' .. cjson.encode(message))
end
local function is_presence(channel)
  return string.sub(channel, 1, 9) == 'presence-'
end
local function split_field(field)
  local nl = string.find(field, '\n', 1, true)
  return string.sub(field, 1, nl - 1), string.sub(field, nl + 1)
end
local function count_changed(channel, total)
  ctl({k = 'count', c = channel, n = total})
  emit('count', channel, tostring(total))
end
-- Moves NODE's share to the given one; only the differences become events.
-- new_occ: channel -> n; new_pres: field -> {n, info}
local function apply(node, new_occ, new_pres, counted, delay)
  local now = now_ms()
  local occ_key = P .. ':n:' .. node .. ':occ'
  local old = redis.call('HGETALL', occ_key)
  local old_occ, channels = {}, {}
  for i = 1, #old, 2 do
    old_occ[old[i]] = tonumber(old[i + 1])
    channels[old[i]] = true
  end
  for channel in pairs(new_occ) do channels[channel] = true end
  for channel in pairs(channels) do
    local d = (new_occ[channel] or 0) - (old_occ[channel] or 0)
    if d ~= 0 then
      local total = redis.call('HINCRBY', P .. ':occ', channel, d)
      local before = total - d
      if total <= 0 then
        redis.call('HDEL', P .. ':occ', channel)
        total = 0
        if before > 0 then
          redis.call('ZADD', P .. ':pending', now + delay, 'v\n' .. channel)
          emit('pending', channel, tostring(delay))
        end
      elseif before <= 0 then
        if redis.call('ZREM', P .. ':pending', 'v\n' .. channel) == 0 then
          emit('occupied', channel)
        end
      end
      if counted and not is_presence(channel) then count_changed(channel, total) end
    end
  end
  redis.call('DEL', occ_key)
  for channel, n in pairs(new_occ) do
    if n > 0 then redis.call('HSET', occ_key, channel, n) end
  end

  local pres_key = P .. ':n:' .. node .. ':pres'
  old = redis.call('HGETALL', pres_key)
  local old_pres, fields = {}, {}
  for i = 1, #old, 2 do
    old_pres[old[i]] = tonumber(old[i + 1])
    fields[old[i]] = true
  end
  for field in pairs(new_pres) do fields[field] = true end
  for field in pairs(fields) do
    local entry = new_pres[field]
    local d = (entry and entry[1] or 0) - (old_pres[field] or 0)
    if d ~= 0 then
      local channel, user = split_field(field)
      local n = redis.call('HINCRBY', P .. ':pres:' .. channel, user, d)
      local before = n - d
      if n <= 0 then
        redis.call('HDEL', P .. ':pres:' .. channel, user)
        redis.call('HDEL', P .. ':info:' .. channel, user)
        if before > 0 then
          ctl({k = 'rm', c = channel, u = user})
          redis.call('ZADD', P .. ':pending', now + delay, 'm\n' .. field)
          emit('pending', channel, tostring(delay))
        end
      elseif before <= 0 then
        redis.call('HSET', P .. ':info:' .. channel, user, entry[2])
        ctl({k = 'add', c = channel, u = user, i = entry[2], s = ''})
        if redis.call('ZREM', P .. ':pending', 'm\n' .. field) == 0 then
          emit('added', channel, user)
        end
      end
    end
  end
  redis.call('DEL', pres_key)
  for field, entry in pairs(new_pres) do
    if entry[1] > 0 then redis.call('HSET', pres_key, field, entry[1]) end
  end
end
"#;

/// One more subscription on a node.
/// ARGV: prefix, node, channel, counted (`1`/`0`).
const SUBSCRIBE: &str = r#"
local node, channel = ARGV[2], ARGV[3]
redis.call('SADD', P .. ':nodes', node)
redis.call('HINCRBY', P .. ':n:' .. node .. ':occ', channel, 1)
local total = redis.call('HINCRBY', P .. ':occ', channel, 1)
if total == 1 then
  if redis.call('ZREM', P .. ':pending', 'v\n' .. channel) == 0 then emit('occupied', channel) end
end
if ARGV[4] == '1' then count_changed(channel, total) end
return out
"#;

/// One subscription less on a node (nothing when the node holds none).
/// ARGV: prefix, node, channel, counted, leave delay ms.
const UNSUBSCRIBE: &str = r#"
local node, channel, delay = ARGV[2], ARGV[3], tonumber(ARGV[5])
local mine_key = P .. ':n:' .. node .. ':occ'
local mine = tonumber(redis.call('HGET', mine_key, channel) or '0')
if mine <= 0 then return out end
if mine == 1 then redis.call('HDEL', mine_key, channel) else redis.call('HINCRBY', mine_key, channel, -1) end
local total = redis.call('HINCRBY', P .. ':occ', channel, -1)
if total <= 0 then
  redis.call('HDEL', P .. ':occ', channel)
  total = 0
  redis.call('ZADD', P .. ':pending', now_ms() + delay, 'v\n' .. channel)
  emit('pending', channel, tostring(delay))
end
if ARGV[4] == '1' then count_changed(channel, total) end
return out
"#;

/// A user's first connection to a presence channel on a node.
/// ARGV: prefix, node, channel, user, user_info JSON, socket id.
const JOIN: &str = r#"
local node, channel, user = ARGV[2], ARGV[3], ARGV[4]
local field = channel .. '\n' .. user
redis.call('SADD', P .. ':nodes', node)
redis.call('HINCRBY', P .. ':n:' .. node .. ':pres', field, 1)
local n = redis.call('HINCRBY', P .. ':pres:' .. channel, user, 1)
if n == 1 then
  redis.call('HSET', P .. ':info:' .. channel, user, ARGV[5])
  ctl({k = 'add', c = channel, u = user, i = ARGV[5], s = ARGV[6]})
  if redis.call('ZREM', P .. ':pending', 'm\n' .. field) == 0 then emit('added', channel, user) end
end
return out
"#;

/// A user's last connection to a presence channel on a node left.
/// ARGV: prefix, node, channel, user, leave delay ms.
const LEAVE: &str = r#"
local node, channel, user, delay = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local field = channel .. '\n' .. user
local mine_key = P .. ':n:' .. node .. ':pres'
local mine = tonumber(redis.call('HGET', mine_key, field) or '0')
if mine <= 0 then return out end
if mine == 1 then redis.call('HDEL', mine_key, field) else redis.call('HINCRBY', mine_key, field, -1) end
local n = redis.call('HINCRBY', P .. ':pres:' .. channel, user, -1)
if n <= 0 then
  redis.call('HDEL', P .. ':pres:' .. channel, user)
  redis.call('HDEL', P .. ':info:' .. channel, user)
  ctl({k = 'rm', c = channel, u = user})
  redis.call('ZADD', P .. ':pending', now_ms() + delay, 'm\n' .. field)
  emit('pending', channel, tostring(delay))
end
return out
"#;

/// A node's whole share, replacing what Redis holds for it: on every
/// (re)connect (`join`) and on a clean stop (`leave`, with nothing).
/// ARGV: prefix, node, counted (app sends subscription counts), leave delay
/// ms, node TTL ms, `join`|`leave`, N, N × (channel, count), M,
/// M × (channel, user, user_info, count).
const REPLACE: &str = r#"
local node, counted, delay, ttl, mode = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]), ARGV[5], ARGV[6]
local i = 7
local new_occ = {}
local n_occ = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_occ do
  new_occ[ARGV[i]] = tonumber(ARGV[i + 1]); i = i + 2
end
local new_pres = {}
local n_pres = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_pres do
  new_pres[ARGV[i] .. '\n' .. ARGV[i + 1]] = {tonumber(ARGV[i + 3]), ARGV[i + 2]}; i = i + 4
end
apply(node, new_occ, new_pres, counted, delay)
if mode == 'join' then
  redis.call('SADD', P .. ':nodes', node)
  redis.call('SET', P .. ':alive:' .. node, '1', 'PX', ttl)
  redis.call('DEL', P .. ':swept:' .. node)
else
  redis.call('SREM', P .. ':nodes', node)
  redis.call('DEL', P .. ':alive:' .. node)
  emit('nodes', tostring(redis.call('SCARD', P .. ':nodes')))
end
return out
"#;

/// Refreshes a node's liveness and reads it back through the bus.
/// ARGV: prefix, node, TTL ms. Answers `swept` when the node's share was
/// taken (it must resync).
const HEARTBEAT: &str = r#"
local node = ARGV[2]
if redis.call('DEL', P .. ':swept:' .. node) == 1 then emit('swept', node) end
redis.call('SET', P .. ':alive:' .. node, '1', 'PX', ARGV[3])
redis.call('SADD', P .. ':nodes', node)
ctl({k = 'hb', n = node})
return out
"#;

/// Takes back the share of every node whose heartbeat expired.
/// ARGV: prefix, counted, leave delay ms.
const SWEEP: &str = r#"
local counted, delay = ARGV[2] == '1', tonumber(ARGV[3])
for _, node in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if redis.call('EXISTS', P .. ':alive:' .. node) == 0 then
    apply(node, {}, {}, counted, delay)
    redis.call('SREM', P .. ':nodes', node)
    redis.call('SET', P .. ':swept:' .. node, '1', 'EX', 86400)
    emit('swept', node)
  end
end
return out
"#;

/// Pops the delayed leaves that are due (all of them with `force`), and
/// says when the next one is.
/// ARGV: prefix, force (`1`/`0`).
const CONFIRM: &str = r#"
local now = now_ms()
local upto = now
if ARGV[2] == '1' then upto = '+inf' end
local due = redis.call('ZRANGEBYSCORE', P .. ':pending', '-inf', upto, 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  redis.call('ZREM', P .. ':pending', m)
  local rest = string.sub(m, 3)
  if string.sub(m, 1, 1) == 'v' then
    emit('vacated', rest)
  else
    local channel, user = split_field(rest)
    emit('removed', channel, user)
  end
end
local first = redis.call('ZRANGE', P .. ':pending', 0, 0, 'WITHSCORES')
if first[2] then emit('next', tostring(math.max(0, tonumber(first[2]) - now))) end
return out
"#;

/// The scripts, by what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    Subscribe,
    Unsubscribe,
    Join,
    Leave,
    Replace,
    Heartbeat,
    Sweep,
    Confirm,
}

impl Script {
    pub const ALL: [Script; 8] = [
        Script::Subscribe,
        Script::Unsubscribe,
        Script::Join,
        Script::Leave,
        Script::Replace,
        Script::Heartbeat,
        Script::Sweep,
        Script::Confirm,
    ];

    /// The full source (prelude and body).
    pub fn source(self) -> String {
        let body = match self {
            Script::Subscribe => SUBSCRIBE,
            Script::Unsubscribe => UNSUBSCRIBE,
            Script::Join => JOIN,
            Script::Leave => LEAVE,
            Script::Replace => REPLACE,
            Script::Heartbeat => HEARTBEAT,
            Script::Sweep => SWEEP,
            Script::Confirm => CONFIRM,
        };
        format!("{PRELUDE}{body}")
    }
}

/// What a script decided, for the node that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This node's script occupied the channel: it sends the webhook.
    Occupied(String),
    /// A user's first connection cluster-wide (webhook from this node).
    Added {
        channel: String,
        user: String,
    },
    /// A channel's new subscription count (webhook from this node).
    Count {
        channel: String,
        count: u64,
    },
    /// A delayed leave was recorded, due in `delay_ms`.
    Pending {
        delay_ms: u64,
    },
    /// A delayed leave came due and this node popped it: it sends it.
    Vacated(String),
    Removed {
        channel: String,
        user: String,
    },
    /// The next delayed leave is due in this many ms.
    Next(u64),
    /// A node's share was taken back (by a sweep), or this node's was.
    Swept(String),
    /// Nodes left after this one left.
    Nodes(u64),
}

/// Reads a script's answer (a flat list of kind/a/b); unknown kinds and
/// malformed numbers are skipped with a reason.
pub fn outcomes(flat: Vec<String>) -> (Vec<Outcome>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut items = flat.into_iter();
    while let (Some(kind), Some(a), Some(b)) = (items.next(), items.next(), items.next()) {
        let number = |text: &str| text.parse::<u64>().ok();
        let outcome = match kind.as_str() {
            "occupied" => Some(Outcome::Occupied(a)),
            "added" => Some(Outcome::Added {
                channel: a,
                user: b,
            }),
            "count" => number(&b).map(|count| Outcome::Count { channel: a, count }),
            "pending" => number(&b).map(|delay_ms| Outcome::Pending { delay_ms }),
            "vacated" => Some(Outcome::Vacated(a)),
            "removed" => Some(Outcome::Removed {
                channel: a,
                user: b,
            }),
            "next" => number(&a).map(Outcome::Next),
            "swept" => Some(Outcome::Swept(a)),
            "nodes" => number(&a).map(Outcome::Nodes),
            _ => None,
        };
        match outcome {
            Some(o) => out.push(o),
            None => skipped.push(format!("unreadable script answer {kind:?}")),
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_in_triples() {
        let flat = [
            "occupied",
            "c",
            "",
            "added",
            "presence-x",
            "7",
            "count",
            "c",
            "3",
            "pending",
            "c",
            "3000",
            "next",
            "12",
            "",
            "bogus",
            "",
            "",
            "count",
            "c",
            "x",
        ]
        .map(String::from)
        .to_vec();
        let (out, skipped) = outcomes(flat);
        assert_eq!(
            out,
            [
                Outcome::Occupied("c".into()),
                Outcome::Added {
                    channel: "presence-x".into(),
                    user: "7".into()
                },
                Outcome::Count {
                    channel: "c".into(),
                    count: 3
                },
                Outcome::Pending { delay_ms: 3000 },
                Outcome::Next(12),
            ]
        );
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn every_script_has_the_prelude() {
        for s in Script::ALL {
            assert!(s.source().contains("local function apply"), "{s:?}");
            assert!(s.source().contains("return out"), "{s:?}");
        }
    }
}
