'use strict';
// Public, private, presence, encrypted and cache channels with pusher-js,
// authorized the way an app's auth endpoint does it (the `pusher` SDK).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startServer } = require('../lib/server');
const {
  client,
  collect,
  connected,
  barrier,
  disconnectAll,
  rawSocket,
  serverSdk,
  subscriptionCount,
  subscribed,
  unique,
  until,
  waitEvent,
  waitState,
} = require('../lib/clients');

let server;
let sdk;
const clients = [];
before(async () => {
  server = await startServer();
  sdk = serverSdk(server);
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

async function open(opts) {
  const pusher = await connected(server, opts);
  clients.push(pusher);
  return pusher;
}

test('public channel: subscribe, then receive an event triggered by the pusher SDK', async () => {
  const pusher = await open();
  const name = unique('news-');
  const channel = await subscribed(pusher, name);
  const got = waitEvent(channel, 'headline');
  await sdk.trigger(name, 'headline', { title: 'hello', n: 1 });
  assert.deepEqual(await got, { title: 'hello', n: 1 });
});

test('private channel: subscribe with a signature from authorizeChannel', async () => {
  const pusher = await open();
  const name = unique('private-room-');
  const channel = await subscribed(pusher, name);
  const got = waitEvent(channel, 'secret');
  await sdk.trigger(name, 'secret', 'plain string data');
  assert.equal(await got, 'plain string data');
});

test('private channel: a bad signature gives pusher:subscription_error and no subscription', async () => {
  const wrong = serverSdk(server, { secret: 'not-the-secret-at-all' });
  const pusher = await open({ sdk: wrong });
  const errors = [];
  pusher.connection.bind('error', (e) => errors.push(e));
  const name = unique('private-room-');
  const channel = pusher.subscribe(name);
  const succeeded = collect(channel, 'pusher:subscription_succeeded');
  const error = await waitEvent(channel, 'pusher:subscription_error');
  assert.equal(error.type, 'AuthError');
  assert.equal(error.status, 401);
  assert.match(error.error, /signature/i);
  assert.equal(channel.subscribed, false);
  assert.equal(succeeded.length, 0);
  // Pusher's own pusher:error (code null) also reaches the connection.
  await until(() => errors.some((e) => e.type === 'PusherError' && /signature/i.test(e.data.message)), {
    what: 'the connection-level pusher:error',
  });
  // The connection survives a failed subscription.
  assert.equal(pusher.connection.state, 'connected');
  const other = await subscribed(pusher, unique('public-after-error-'));
  assert.ok(other.subscribed);
});

test('private channel: a signature for another socket is refused', async () => {
  const pusher = await open({
    authorize: ({ channelName }, callback) => callback(null, sdk.authorizeChannel('1234.5678', channelName)),
  });
  const channel = pusher.subscribe(unique('private-stolen-'));
  const error = await waitEvent(channel, 'pusher:subscription_error');
  assert.equal(error.status, 401);
});

test('presence channel: members list, and member_added/removed per user, not per connection', async () => {
  const name = unique('presence-room-');
  const alice = await open({ presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const aliceChannel = await subscribed(alice, name);
  assert.equal(aliceChannel.members.count, 1);
  assert.deepEqual(aliceChannel.members.me, { id: 'alice', info: { name: 'Alice' } });

  const added = collect(aliceChannel, 'pusher:member_added');
  const removed = collect(aliceChannel, 'pusher:member_removed');

  // Bob joins from two connections (two tabs): one member_added.
  const bob1 = await open({ presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const bob1Channel = await subscribed(bob1, name);
  await until(() => added.length === 1, { what: 'member_added for bob' });
  assert.deepEqual(added[0].data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(bob1Channel.members.count, 2);
  const ids = [];
  bob1Channel.members.each((m) => ids.push(m.id));
  assert.deepEqual(ids.sort(), ['alice', 'bob']);
  assert.deepEqual(bob1Channel.members.get('alice').info, { name: 'Alice' });

  const bob1Added = collect(bob1Channel, 'pusher:member_added');
  const bob2 = await open({ presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const bob2Channel = await subscribed(bob2, name);
  assert.equal(bob2Channel.members.count, 2, 'bob counts once');

  // Carol's join is a barrier: everything about bob's second tab was sent before it.
  const carol = await open({ presence: { user_id: 'carol' } });
  await subscribed(carol, name);
  await until(() => added.length === 2, { what: 'member_added for carol' });
  await until(() => bob1Added.length === 1, { what: 'member_added for carol on bob\'s first tab' });
  assert.deepEqual(added.map((a) => a.data.id), ['bob', 'carol'], 'no member_added for bob\'s second connection');
  assert.deepEqual(bob1Added.map((a) => a.data.id), ['carol'], 'bob\'s first tab is not told that bob joined');
  assert.equal(aliceChannel.members.count, 3);

  // One of bob's tabs leaves: bob is still there.
  bob2.disconnect();
  await subscriptionCount(sdk, name, 3);
  await barrier(sdk, aliceChannel);
  assert.deepEqual(removed, [], 'no member_removed while bob has a connection');
  assert.ok(aliceChannel.members.get('bob'));
  assert.equal(aliceChannel.members.count, 3);
  carol.unsubscribe(name);
  await until(() => removed.length === 1, { what: 'member_removed for carol' });
  assert.equal(removed[0].data.id, 'carol');

  // Bob's last connection leaves: now he is removed.
  bob1.disconnect();
  await until(() => removed.length === 2, { what: 'member_removed for bob' });
  assert.equal(removed[1].data.id, 'bob');
  assert.equal(aliceChannel.members.count, 1);
});

test('presence channel: a bad channel_data signature is refused', async () => {
  const pusher = await open({
    authorize: ({ socketId, channelName }, callback) => {
      const good = sdk.authorizeChannel(socketId, channelName, { user_id: 'mallory' });
      // Claim to be someone else with mallory's signature.
      callback(null, { auth: good.auth, channel_data: JSON.stringify({ user_id: 'admin' }) });
    },
  });
  const channel = pusher.subscribe(unique('presence-room-'));
  const error = await waitEvent(channel, 'pusher:subscription_error');
  assert.equal(error.status, 401);
});

test('presence channel: numeric user ids are members too', async () => {
  const name = unique('presence-numeric-');
  const a = await open({ presence: { user_id: 17 } });
  const ca = await subscribed(a, name);
  assert.equal(ca.members.count, 1);
  assert.equal(String(ca.members.me.id), '17');
});

test('private-encrypted channel: the SDK encrypts, the server passes through, pusher-js decrypts', async () => {
  const masterKey = crypto.randomBytes(32).toString('base64');
  const encSdk = serverSdk(server, { encryptionMasterKeyBase64: masterKey });
  const pusher = await open({ sdk: encSdk });
  const name = unique('private-encrypted-vault-');
  const channel = await subscribed(pusher, name);
  const got = waitEvent(channel, 'sealed');
  await encSdk.trigger(name, 'sealed', { text: 'for your eyes only' });
  assert.deepEqual(await got, { text: 'for your eyes only' });
});

test('cache channel: a new subscriber first gets the last event', async () => {
  const name = unique('cache-score-');
  await sdk.trigger(name, 'score', { home: 1, away: 0 });
  await sdk.trigger(name, 'score', { home: 2, away: 0 });
  const pusher = await open();
  const channel = pusher.subscribe(name);
  const misses = collect(channel, 'pusher:cache_miss');
  const got = waitEvent(channel, 'score', { what: 'the cached score' });
  assert.deepEqual(await got, { home: 2, away: 0 });
  assert.equal(misses.length, 0);
  // Live events follow.
  const live = waitEvent(channel, 'score', { what: 'a live score' });
  await sdk.trigger(name, 'score', { home: 2, away: 1 });
  assert.deepEqual(await live, { home: 2, away: 1 });
});

test('cache channel: pusher:cache_miss when nothing was triggered yet', async () => {
  const pusher = await open();
  const channel = pusher.subscribe(unique('cache-empty-'));
  const ok = waitEvent(channel, 'pusher:subscription_succeeded');
  await waitEvent(channel, 'pusher:cache_miss');
  await ok;
});

test('private cache channel: the last event is replayed to a later subscriber', async () => {
  const name = unique('private-cache-state-');
  const first = await open();
  // cache_miss follows subscription_succeeded in the same burst: listen
  // before subscribing, or it may be dispatched before anyone listens.
  const firstChannel = first.subscribe(name);
  const ok = waitEvent(firstChannel, 'pusher:subscription_succeeded');
  await waitEvent(firstChannel, 'pusher:cache_miss', { what: 'cache_miss for the first subscriber' });
  await ok;
  await sdk.trigger(name, 'state', { v: 42 });
  const second = await open();
  const channel = second.subscribe(name);
  assert.deepEqual(await waitEvent(channel, 'state'), { v: 42 });
});

test('unsubscribe stops delivery to that client only', async () => {
  const name = unique('news-');
  const a = await open();
  const b = await open();
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const seenA = collect(ca, 'tick');
  a.unsubscribe(name);
  // a's unsubscribe and b's ping travel different sockets: confirm the server
  // processed it by waiting until the channel has one subscriber.
  await subscriptionCount(sdk, name, 1);
  const gotB = waitEvent(cb, 'tick');
  await sdk.trigger(name, 'tick', { n: 1 });
  assert.deepEqual(await gotB, { n: 1 });
  await barrier(sdk, cb);
  assert.equal(seenA.length, 0);
});

test('presence limits: 100 members, then LimitReached; long user ids and large user_info are refused', async () => {
  const name = unique('presence-full-');
  const sockets = [];
  try {
    for (let i = 0; i < 100; i++) {
      const ws = rawSocket(server);
      sockets.push(ws);
      const hello = await ws.next((f) => f.event === 'pusher:connection_established');
      const auth = sdk.authorizeChannel(hello.parsed.socket_id, name, { user_id: `member-${i}` });
      ws.sendJson({ event: 'pusher:subscribe', data: { channel: name, ...auth } });
    }
    await Promise.all(
      sockets.map((ws) => ws.next((f) => f.event === 'pusher_internal:subscription_succeeded', { timeout: 10000 })),
    );
    // The 101st distinct user is refused...
    const late = await open({ presence: { user_id: 'one-too-many' } });
    const error = await waitEvent(late.subscribe(name), 'pusher:subscription_error');
    assert.equal(error.type, 'LimitReached');
    // ...but another connection of a member already there is fine.
    const again = await open({ presence: { user_id: 'member-7' } });
    const channel = await subscribed(again, name);
    assert.equal(channel.members.count, 100);
  } finally {
    for (const ws of sockets) ws.terminate();
  }

  // Pusher's limits: user_id up to 128 characters, user_info up to 1 KB.
  const longId = await open({ presence: { user_id: 'x'.repeat(129) } });
  const longError = await waitEvent(longId.subscribe(unique('presence-long-')), 'pusher:subscription_error');
  assert.match(longError.error, /user_id|128/);
  const bigInfo = await open({ presence: { user_id: 'big', user_info: { blob: 'y'.repeat(1100) } } });
  const bigError = await waitEvent(bigInfo.subscribe(unique('presence-big-')), 'pusher:subscription_error');
  assert.match(bigError.error, /user_info|1024|bytes/);
  const okInfo = await open({ presence: { user_id: 'x'.repeat(128), user_info: { blob: 'y'.repeat(900) } } });
  await subscribed(okInfo, unique('presence-ok-'));
});
