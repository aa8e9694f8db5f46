'use strict';
// The official Python `pusher` SDK against tidings, with pusher-js clients
// (Node) on the receiving end: trigger, batch, channel queries, users,
// terminate_user_connections (posted without /apps/{id}), send_to_user,
// channel authorization signed by Python, and its error classes.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const { checkPython, python: runPython } = require('../lib/python');
const {
  barrier,
  collect,
  connected,
  disconnectAll,
  serverSdk,
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
  checkPython();
  server = await startServer();
  sdk = serverSdk(server);
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

/** Runs SDK calls in Python against this file's server. */
const python = (calls, overrides) => runPython(server, calls, overrides);

async function open(opts) {
  const pusher = await connected(server, opts);
  clients.push(pusher);
  return pusher;
}

test('an event triggered by the Python SDK reaches a pusher-js client', async () => {
  const name = unique('py-news-');
  const pusher = await open();
  const channel = await subscribed(pusher, name);
  const got = waitEvent(channel, 'from-python', { timeout: 10000 });
  const [res] = await python([['trigger', { channels: name, event_name: 'from-python', data: { lang: 'py', n: 3 } }]]);
  assert.deepEqual(res, { ok: {} });
  assert.deepEqual(await got, { lang: 'py', n: 3 });
});

test('Python: multi-channel trigger, socket_id exclusion and trigger_batch', async () => {
  const a = unique('py-a-');
  const b = unique('private-py-b-');
  const sender = await open();
  const other = await open();
  const sa = await subscribed(sender, a);
  const sb = await subscribed(sender, b);
  const ob = await subscribed(other, b);
  const seenSa = collect(sa, 'multi');
  const seenSb = collect(sb, 'multi');
  const seenOb = collect(ob, 'multi');
  const batchA = waitEvent(sa, 'batched');
  const batchB = waitEvent(ob, 'batched');
  const results = await python([
    ['trigger', { channels: [a, b], event_name: 'multi', data: 'raw string', socket_id: sender.connection.socket_id }],
    [
      'trigger_batch',
      {
        batch: [
          { channel: a, name: 'batched', data: { i: 1 } },
          { channel: b, name: 'batched', data: { i: 2 } },
        ],
      },
    ],
  ]);
  assert.deepEqual(results, [{ ok: {} }, { ok: {} }]);
  await until(() => seenOb.length === 1, { what: 'the multi-channel event at the other client' });
  assert.equal(seenOb[0].data, 'raw string');
  assert.deepEqual(await batchA, { i: 1 });
  assert.deepEqual(await batchB, { i: 2 });
  await barrier(sdk, sa);
  await barrier(sdk, sb);
  assert.deepEqual(seenSa, [], 'socket_id excluded the sender on every channel');
  assert.deepEqual(seenSb, []);
});

test('Python: channels_info, channel_info and users_info (GETs signed with body_md5 of an empty body)', async () => {
  const prefix = unique('pyq');
  // Every character the SDKs allow in a channel name, sent raw in the path.
  const pres = `presence-${prefix}-a_b=c@d,e.f;g`;
  const pub = `${prefix}-public`;
  const u1 = await open({ presence: { user_id: '1' } });
  const u18a = await open({ presence: { user_id: '18' } });
  const u18b = await open({ presence: { user_id: '18' } });
  for (const c of [u1, u18a, u18b]) await subscribed(c, pres);
  await subscribed(u1, pub);
  const results = await python([
    ['channels_info', { prefix_filter: 'presence-' + prefix, attributes: ['user_count'] }],
    ['channels_info', { prefix_filter: prefix }],
    ['channel_info', { channel: pres, attributes: ['user_count', 'subscription_count'] }],
    ['channel_info', { channel: unique('py-empty-') }],
    ['users_info', { channel: pres }],
  ]);
  assert.deepEqual(results[0], { ok: { channels: { [pres]: { user_count: 2 } } } });
  assert.deepEqual(results[1], { ok: { channels: { [pub]: {} } } });
  assert.deepEqual(results[2], { ok: { occupied: true, user_count: 2, subscription_count: 3 } });
  assert.deepEqual(results[3], { ok: { occupied: false } });
  assert.deepEqual(results[4].ok.users.map((u) => u.id).sort(), ['1', '18']);
});

test('Python: terminate_user_connections (POST /users/{id}/terminate_connections without /apps/{id})', async () => {
  const victim = await open({ user: { id: '77' } });
  const bystander = await open({ user: { id: '78' } });
  for (const p of [victim, bystander]) {
    p.signin();
    await until(() => p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed, { what: 'signin' });
  }
  const errors = [];
  victim.connection.bind('error', (e) => errors.push(e.data || (e.error && e.error.data)));
  const [res] = await python([['terminate_user_connections', { user_id: '77' }]]);
  assert.ok('ok' in res, JSON.stringify(res));
  await waitState(victim, 'disconnected');
  assert.ok(errors.some((e) => e && e.code === 4009), JSON.stringify(errors));
  const toBystander = waitEvent(bystander.user, 'still-here');
  await python([['send_to_user', { user_id: '78', event_name: 'still-here', data: { ok: 1 } }]]);
  assert.deepEqual(await toBystander, { ok: 1 });
  assert.equal(bystander.connection.state, 'connected');
});

test('Python: channel authorization signed by the Python SDK is accepted by the broker', async () => {
  // pusher-js asks "the app" (here: Python's authenticate) for each signature.
  const name = unique('presence-py-auth-');
  const sign = (socketId, channelName, customData) =>
    python([['authenticate', { channel: channelName, socket_id: socketId, custom_data: customData }]]).then(([r]) => {
      if (!r.ok) throw new Error(JSON.stringify(r));
      return r.ok;
    });
  const pusher = await open({
    authorize: ({ socketId, channelName }, callback) => {
      const member = channelName.startsWith('presence-')
        ? { user_id: 'py-user', user_info: { lang: 'python' } }
        : undefined;
      sign(socketId, channelName, member).then(
        (data) => callback(null, data),
        (e) => callback(e, null),
      );
    },
  });
  const channel = await subscribed(pusher, name, { timeout: 10000 });
  assert.deepEqual(channel.members.me, { id: 'py-user', info: { lang: 'python' } });
  const priv = await subscribed(pusher, unique('private-py-'), { timeout: 10000 });
  assert.ok(priv.subscribed);
});

test('Python: errors surface as the SDK\'s exception classes', async () => {
  const tooBig = 'x'.repeat(20 * 1024);
  const good = await python([
    ['trigger', { channels: 'py-err', event_name: 'big', data: tooBig }],
    ['users_info', { channel: 'py-not-presence' }],
  ]);
  assert.equal(good[0].error, 'PusherBadStatus', JSON.stringify(good[0]));
  assert.match(good[0].message, /413/);
  assert.equal(good[1].error, 'PusherBadRequest', JSON.stringify(good[1]));
  const [bad] = await python([['trigger', { channels: 'py-err', event_name: 'e', data: {} }]], {
    secret: 'not-the-right-secret',
  });
  assert.equal(bad.error, 'PusherBadAuth', JSON.stringify(bad));
});
