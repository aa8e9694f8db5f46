'use strict';
// SIGTERM: sockets close with 4200, pusher-js goes back to `connecting` and
// reconnects (resubscribing, signing in again) to a server restarted on the
// same port.
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const {
  client,
  collect,
  disconnectAll,
  rawSocket,
  serverSdk,
  subscribed,
  unique,
  until,
  waitEvent,
  waitState,
} = require('../lib/clients');

const clients = [];
const servers = [];
after(async () => {
  disconnectAll(clients);
  for (const s of servers) {
    await s.stop();
  }
  servers[0] && servers[0].cleanup();
});

test('SIGTERM closes sockets with 4200, exits 0, and pusher-js reconnects to the restarted server', async () => {
  const first = await startServer();
  servers.push(first);
  const sdk = serverSdk(first);

  const raw = rawSocket(first);
  await raw.next((f) => f.event === 'pusher:connection_established');

  const pusher = client(first, { user: { id: '17' }, presence: { user_id: '17' } });
  clients.push(pusher);
  await waitState(pusher, 'connected');
  pusher.signin();
  const pub = unique('news-');
  const pres = unique('presence-room-');
  const channel = await subscribed(pusher, pub);
  const presence = await subscribed(pusher, pres);
  await until(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, { what: 'signin' });
  const firstSocket = pusher.connection.socket_id;
  const subscriptions = collect(channel, 'pusher:subscription_succeeded');
  const errors = [];
  pusher.connection.bind('error', (e) => errors.push(e.data || (e.error && e.error.data)));

  const { code, signal } = await first.stop();
  assert.equal(code, 0, `exit code ${code} (signal ${signal}):\n${first.stderr}`);
  assert.equal((await raw.closed).code, 4200, 'the raw socket is closed with 4200');

  await waitState(pusher, 'connecting');
  assert.ok(
    errors.some((e) => e && e.code === 4200),
    `pusher-js should see close code 4200: ${JSON.stringify(errors)}`,
  );
  assert.ok(!pusher.stateLog.includes('disconnected'), 'pusher-js must not give up');
  assert.equal(channel.subscribed, false);

  // Same port, same data directory.
  const second = await first.restart();
  servers.push(second);
  assert.equal(second.port, first.port);
  // pusher-js (Node) retries a refused connection after its 15 s transport timeout.
  await waitState(pusher, 'connected', { timeout: 40000 });
  assert.notEqual(pusher.connection.socket_id, firstSocket);

  // pusher-js resubscribes every channel and signs in again by itself.
  await until(() => subscriptions.length === 1 && presence.subscribed, { what: 'resubscription after reconnect' });
  await until(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, {
    what: 'signin after reconnect',
  });
  const sdk2 = serverSdk(second);
  const got = waitEvent(channel, 'after-restart');
  await sdk2.trigger(pub, 'after-restart', { ok: true });
  assert.deepEqual(await got, { ok: true });
  const toUser = waitEvent(pusher.user, 'hello');
  await sdk2.sendToUser('17', 'hello', { again: true });
  assert.deepEqual(await toUser, { again: true });
  const users = await (await sdk2.get({ path: `/channels/${pres}/users` })).json();
  assert.deepEqual(users, { users: [{ id: '17' }] });
  assert.ok(sdk); // the first server's SDK client is simply not used again

  const stopped = await second.stop();
  assert.equal(stopped.code, 0, second.stderr);
});
