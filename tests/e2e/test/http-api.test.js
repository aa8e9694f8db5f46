'use strict';
// The Pusher HTTP API through the real `pusher` Node SDK (and hand-signed
// requests for what the SDK never sends): triggers, batches, channel
// queries, request signing and limits.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const {
  APP,
  barrier,
  collect,
  connected,
  disconnectAll,
  request,
  serverSdk,
  signedUrl,
  subscribed,
  subscriptionCount,
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

/** Expects the promise to reject with the SDK's RequestError of `status`; returns it. */
async function rejectsWith(promise, status) {
  let error;
  try {
    const res = await promise;
    assert.fail(`expected HTTP ${status}, got ${res.status}: ${await res.text()}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    error = e;
  }
  assert.equal(error.name, 'PusherRequestError', String(error));
  assert.equal(error.status, status, `status ${error.status}, body ${error.body}`);
  assert.ok(error.body && error.body.trim().length > 0, 'an error answer has a readable body');
  return error;
}

/** Posts a hand-made body to /apps/{id}/events, signed correctly. */
function postEvents(body, opts = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return request(signedUrl(server, 'POST', `/apps/${APP.id}/events`, { body: text, ...opts }), {
    method: 'POST',
    body: text,
  });
}

test('trigger to one channel answers {} and delivers the data string untouched', async () => {
  const pusher = await open();
  const name = unique('news-');
  const channel = await subscribed(pusher, name);
  const got = waitEvent(channel, 'update');
  const res = await sdk.trigger(name, 'update', { a: [1, 2, 3], s: 'ünïcødé ✓' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  assert.deepEqual(await got, { a: [1, 2, 3], s: 'ünïcødé ✓' });
});

test('trigger to several channels reaches each of them once', async () => {
  const names = [unique('multi-a-'), unique('multi-b-'), unique('private-multi-c-')];
  const pusher = await open();
  const channels = await Promise.all(names.map((n) => subscribed(pusher, n)));
  const seen = channels.map((c) => collect(c, 'ping'));
  const res = await sdk.trigger(names, 'ping', { n: 1 });
  assert.equal(res.status, 200);
  await until(() => seen.every((s) => s.length === 1), { what: 'the event on all three channels' });
  for (const c of channels) await barrier(sdk, c);
  assert.deepEqual(seen.map((s) => s.length), [1, 1, 1]);
});

test('socket_id excludes that connection only', async () => {
  const name = unique('private-excl-');
  const sender = await open();
  const other = await open();
  const cs = await subscribed(sender, name);
  const co = await subscribed(other, name);
  const atSender = collect(cs, 'msg');
  const atOther = waitEvent(co, 'msg');
  await sdk.trigger(name, 'msg', { text: 'not for the sender' }, { socket_id: sender.connection.socket_id });
  assert.deepEqual(await atOther, { text: 'not for the sender' });
  await barrier(sdk, cs);
  assert.deepEqual(atSender, []);
});

test('trigger with info returns user_count and subscription_count per channel', async () => {
  const name = unique('presence-info-');
  const a1 = await open({ presence: { user_id: 'a' } });
  const a2 = await open({ presence: { user_id: 'a' } });
  const b = await open({ presence: { user_id: 'b' } });
  for (const c of [a1, a2, b]) await subscribed(c, name);
  const res = await sdk.trigger(name, 'hello', {}, { info: 'user_count,subscription_count' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { channels: { [name]: { user_count: 2, subscription_count: 3 } } });
});

test('triggerBatch delivers every event, with per-event socket_id', async () => {
  const n1 = unique('batch-1-');
  const n2 = unique('private-batch-2-');
  const a = await open();
  const b = await open();
  const a1 = await subscribed(a, n1);
  const a2 = await subscribed(a, n2);
  const b2 = await subscribed(b, n2);
  const seenA2 = collect(a2, 'e');
  const gotA1 = waitEvent(a1, 'e');
  const gotB2 = waitEvent(b2, 'e');
  const res = await sdk.triggerBatch([
    { channel: n1, name: 'e', data: { i: 1 } },
    { channel: n2, name: 'e', data: { i: 2 }, socket_id: a.connection.socket_id },
  ]);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  assert.deepEqual(await gotA1, { i: 1 });
  assert.deepEqual(await gotB2, { i: 2 });
  await barrier(sdk, a2);
  assert.deepEqual(seenA2, [], 'socket_id of a batch event is excluded');
});

test('triggerBatch with info returns one entry per event', async () => {
  const name = unique('presence-batchinfo-');
  const a = await open({ presence: { user_id: 'u1' } });
  await subscribed(a, name);
  const pub = unique('batch-pub-');
  await subscribed(a, pub);
  const res = await sdk.triggerBatch([
    { channel: pub, name: 'e', data: {}, info: 'subscription_count' },
    { channel: name, name: 'e', data: {}, info: 'user_count,subscription_count' },
  ]);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {
    batch: [{ subscription_count: 1 }, { user_count: 1, subscription_count: 1 }],
  });
});

test('a batch of more than 10 events is refused with 400', async () => {
  const batch = Array.from({ length: 11 }, (_, i) => ({ channel: 'batch-big', name: 'e', data: { i } }));
  await rejectsWith(sdk.triggerBatch(batch), 400);
});

test('GET channels lists occupied channels, filtered by prefix, with user_count for presence', async () => {
  const prefix = unique('lst');
  const pub = `${prefix}-public`;
  const pres = `presence-${prefix}-room`;
  const a = await open({ presence: { user_id: 'x' } });
  const b = await open({ presence: { user_id: 'y' } });
  await subscribed(a, pub);
  await subscribed(a, pres);
  await subscribed(b, pres);

  let res = await sdk.get({ path: '/channels', params: { filter_by_prefix: prefix } });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { channels: { [pub]: {} } });

  res = await sdk.get({ path: '/channels', params: { filter_by_prefix: `presence-${prefix}`, info: 'user_count' } });
  assert.deepEqual(await res.json(), { channels: { [pres]: { user_count: 2 } } });

  res = await sdk.get({ path: '/channels' });
  const all = (await res.json()).channels;
  assert.ok(pub in all && pres in all, 'unfiltered list has both');

  // user_count is only for presence channels.
  await rejectsWith(sdk.get({ path: '/channels', params: { info: 'user_count' } }), 400);

  // A channel nobody is subscribed to is not listed.
  a.unsubscribe(pub);
  await until(async () => {
    const r = await sdk.get({ path: '/channels', params: { filter_by_prefix: prefix } });
    return Object.keys((await r.json()).channels).length === 0;
  }, { what: `${pub} to disappear from the list` });
});

test('GET channel info: occupied, user_count and subscription_count', async () => {
  const name = unique('presence-ci-');
  const a1 = await open({ presence: { user_id: 'a' } });
  const a2 = await open({ presence: { user_id: 'a' } });
  await subscribed(a1, name);
  await subscribed(a2, name);
  let res = await sdk.get({ path: `/channels/${name}`, params: { info: 'user_count,subscription_count' } });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { occupied: true, user_count: 1, subscription_count: 2 });

  res = await sdk.get({ path: `/channels/${name}` });
  assert.deepEqual(await res.json(), { occupied: true });

  res = await sdk.get({ path: `/channels/${unique('empty-')}` });
  assert.deepEqual(await res.json(), { occupied: false });

  // user_count on a non-presence channel is a bad request.
  await rejectsWith(sdk.get({ path: `/channels/${unique('public-')}`, params: { info: 'user_count' } }), 400);
});

test('GET users lists the distinct users of a presence channel', async () => {
  const name = unique('presence-users-');
  const conns = [];
  for (const id of ['1', '18', '18', '7']) conns.push(await open({ presence: { user_id: id } }));
  for (const c of conns) await subscribed(c, name);
  const res = await sdk.get({ path: `/channels/${name}/users` });
  assert.equal(res.status, 200);
  const { users } = await res.json();
  assert.deepEqual(users.map((u) => u.id).sort(), ['1', '18', '7']);
  // Users of a non-presence channel is a bad request.
  await rejectsWith(sdk.get({ path: `/channels/${unique('private-x-')}/users` }), 400);
});

test('a wrong secret gets 401 with an explanation, and nothing is delivered', async () => {
  const name = unique('news-');
  const pusher = await open();
  const channel = await subscribed(pusher, name);
  const seen = collect(channel, 'forged');
  const forger = serverSdk(server, { secret: 'definitely-not-the-secret' });
  const error = await rejectsWith(forger.trigger(name, 'forged', {}), 401);
  assert.match(error.body, /signature/i);
  await rejectsWith(forger.get({ path: '/channels' }), 401);
  await barrier(sdk, channel);
  assert.deepEqual(seen, []);
});

test('an unknown key gets 401', async () => {
  const stranger = serverSdk(server, { key: 'unknown-key' });
  await rejectsWith(stranger.trigger('news', 'e', {}), 401);
});

test('an unknown app id is refused', async () => {
  const other = serverSdk(server, { appId: '999999' });
  let error;
  try {
    await other.trigger('news', 'e', {});
  } catch (e) {
    error = e;
  }
  assert.ok(error, 'a trigger to an unknown app must fail');
  assert.ok([401, 403, 404].includes(error.status), `status ${error.status}: ${error.body}`);
  assert.ok(error.body.trim().length > 0);
});

test('an expired timestamp (over 600 s) gets 401, a recent one is fine', async () => {
  const body = JSON.stringify({ name: 'e', channels: ['news'], data: '{}' });
  let res = await postEvents(body, { timestamp: Math.floor(Date.now() / 1000) - 700 });
  assert.equal(res.status, 401, res.body);
  assert.match(res.body, /timestamp/i);
  res = await postEvents(body, { timestamp: Math.floor(Date.now() / 1000) + 700 });
  assert.equal(res.status, 401, res.body);
  res = await postEvents(body, { timestamp: Math.floor(Date.now() / 1000) - 60 });
  assert.equal(res.status, 200, res.body);
});

test('body_md5 is checked against the raw body', async () => {
  const signedFor = JSON.stringify({ name: 'e', channels: ['news'], data: '{"a":1}' });
  const sent = JSON.stringify({ name: 'e', channels: ['news'], data: '{"a":2}' });
  const url = signedUrl(server, 'POST', `/apps/${APP.id}/events`, { body: signedFor });
  const res = await request(url, { method: 'POST', body: sent });
  assert.equal(res.status, 401, res.body);
  // Python-style separators are hashed as sent, never re-serialised.
  const spaced = '{"name": "e", "channels": ["news"], "data": "{}"}';
  const ok = await postEvents(spaced);
  assert.equal(ok.status, 200, ok.body);
});

test('a missing signature gets 401', async () => {
  const res = await request(`${server.url}/apps/${APP.id}/channels`);
  assert.equal(res.status, 401, res.body);
  assert.ok(res.body.length > 0);
});

test('event data over 10 KB gets 413 and is not delivered', async () => {
  const name = unique('news-');
  const pusher = await open();
  const channel = await subscribed(pusher, name);
  const seen = collect(channel, 'big');
  await rejectsWith(sdk.trigger(name, 'big', 'x'.repeat(20 * 1024)), 413);
  await rejectsWith(sdk.triggerBatch([{ channel: name, name: 'big', data: 'y'.repeat(11 * 1024) }]), 413);
  // The limit is 10 KB of data: 10240 bytes pass, one more does not.
  const exact = await postEvents({ name: 'e', channels: [unique('edge-')], data: 'x'.repeat(10240) });
  assert.equal(exact.status, 200, exact.body);
  const over = await postEvents({ name: 'e', channels: [unique('edge-')], data: 'x'.repeat(10241) });
  assert.equal(over.status, 413, over.body);
  // 9 KB is fine.
  const got = waitEvent(channel, 'big');
  await sdk.trigger(name, 'big', 'z'.repeat(9 * 1024));
  assert.equal((await got).length, 9 * 1024);
  assert.equal(seen.length, 1);
});

test('more than 100 channels: the SDK refuses, and so does the server (400)', async () => {
  const names = Array.from({ length: 101 }, (_, i) => `many-${i}`);
  assert.throws(() => sdk.trigger(names, 'e', {}), /100 channels/);
  const res = await postEvents({ name: 'e', channels: names, data: '{}' });
  assert.equal(res.status, 400, res.body);
  assert.ok(res.body.length > 0);
  const hundred = await postEvents({ name: 'e', channels: names.slice(0, 100), data: '{}' });
  assert.equal(hundred.status, 200, hundred.body);
});

test('malformed trigger bodies get 400 with a readable body', async () => {
  for (const body of [
    '{not json',
    { channels: ['news'], data: '{}' }, // no name
    { name: 'e', channels: ['news'] }, // no data
    { name: 'e', channels: [], data: '{}' }, // no channel
    { name: 'e', channels: ['bad channel name'], data: '{}' },
    { name: 'e', channel: 'x'.repeat(201), data: '{}' },
    { name: 'x'.repeat(201), channels: ['news'], data: '{}' }, // event name over 200
    { name: 'e', channels: ['news'], data: '{}', socket_id: 'not-a-socket' },
  ]) {
    const res = await postEvents(body);
    assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${res.body}`);
    assert.ok(res.body.length > 0);
  }
  // The single `channel` form is accepted too.
  const res = await postEvents({ name: 'e', channel: 'news', data: '{}' });
  assert.equal(res.status, 200, res.body);
});

test('terminate_connections also works under /apps/{id}/users/{user}/ from a hand-signed request', async () => {
  const pusher = await open({ user: { id: '55' } });
  pusher.signin();
  await until(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, {
    what: 'signin of 55',
  });
  const path = `/apps/${APP.id}/users/55/terminate_connections`;
  const res = await request(signedUrl(server, 'POST', path, { body: '{}' }), { method: 'POST', body: '{}' });
  assert.equal(res.status, 200, res.body);
  await waitState(pusher, 'disconnected');
});

test('subscription counts follow subscribers (HTTP API view)', async () => {
  const name = unique('count-');
  const a = await open();
  const b = await open();
  await subscribed(a, name);
  await subscribed(b, name);
  await subscriptionCount(sdk, name, 2);
  b.disconnect();
  await subscriptionCount(sdk, name, 1);
});
