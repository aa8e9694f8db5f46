'use strict';
// A subscriber that stops reading: the others keep getting everything at
// full speed, and the server disconnects the stalled one (4100) instead of
// keeping it (and its presence membership) forever.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const { collect, connected, disconnectAll, rawSocket, serverSdk, subscribed, unique, until } = require('../lib/clients');

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

async function presenceUsers(name) {
  const res = await sdk.get({ path: `/channels/${name}/users` });
  return (await res.json()).users.map((u) => u.id).sort();
}

test(
  'a presence subscriber that stops reading is dropped (4100) while the others get every event',
  async () => {
    const name = unique('presence-firehose-');
    const stalled = rawSocket(server);
    const hello = await stalled.next((f) => f.event === 'pusher:connection_established');
    stalled.sendJson({
      event: 'pusher:subscribe',
      data: { channel: name, ...sdk.authorizeChannel(hello.parsed.socket_id, name, { user_id: 'stalled' }) },
    });
    await stalled.next((f) => f.event === 'pusher_internal:subscription_succeeded');
    // Stop reading from the TCP socket: the server's writes back up.
    stalled._socket.pause();

    const reader = await connected(server, { presence: { user_id: 'reader' } });
    clients.push(reader);
    const channel = await subscribed(reader, name);
    const seen = collect(channel, 'blob');
    assert.deepEqual(await presenceUsers(name), ['reader', 'stalled']);

    // 2,000 events of 10 KB (20 MB): more than the per-connection queue
    // (1,024 frames) and the loopback socket buffers together.
    const data = 'x'.repeat(10 * 1024 - 16);
    const started = Date.now();
    for (let i = 0; i < 200; i++) {
      await sdk.triggerBatch(
        Array.from({ length: 10 }, (_, j) => ({ channel: name, name: 'blob', data: `${i * 10 + j}:${data}` })),
      );
    }
    await until(() => seen.length === 2000, { timeout: 20000, what: 'all 2,000 events at the reading subscriber' });
    const order = seen.map((s) => Number(s.data.slice(0, s.data.indexOf(':'))));
    assert.deepEqual(order, [...order].sort((a, b) => a - b), 'in order');
    console.log(`# 2,000 x 10 KB delivered to the reading subscriber in ${Date.now() - started} ms`);

    // The stalled one is gone from the server's view within a deadline...
    await until(async () => (await presenceUsers(name)).length === 1, {
      timeout: 10000,
      interval: 200,
      what: 'the stalled subscriber to be dropped',
    });
    assert.deepEqual(await presenceUsers(name), ['reader']);
    // ...and when it reads again it finds a 4100 close.
    stalled._socket.resume();
    assert.equal((await stalled.closed).code, 4100);
  },
);
