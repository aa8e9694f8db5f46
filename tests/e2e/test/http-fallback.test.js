'use strict';
// pusher-js's HTTP fallback transports (xhr_streaming, xhr_polling) against
// tidings, as an unmodified pusher-js uses them when WebSockets are blocked:
// handshake, private/presence subscriptions, events both ways, cleanup.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const {
  barrier,
  client,
  collect,
  connected,
  disconnectAll,
  serverSdk,
  subscribed,
  subscriptionCount,
  unique,
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

async function overHttp(transport, opts = {}) {
  const pusher = client(server, {
    enabledTransports: [transport],
    httpHost: '127.0.0.1',
    httpPort: server.port,
    httpPath: '',
    ...opts,
  });
  clients.push(pusher);
  await waitState(pusher, 'connected', { timeout: 10000 });
  return pusher;
}

// Both transports at once: each waits for the server to notice that an HTTP
// session ended, which pusher-js does not announce (the session times out).
describe('HTTP fallback transports', { concurrency: 2 }, () => {
  for (const transport of ['xhr_streaming', 'xhr_polling']) {
    test(`${transport}: connect, subscribe, and exchange events with a WebSocket client`, async () => {
      const name = unique('presence-http-');
      const pusher = await overHttp(transport, { presence: { user_id: `http-${transport}` } });
      assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
      const ws = await connected(server, { presence: { user_id: 'ws-user' } });
      clients.push(ws);
      const viaHttp = await subscribed(pusher, name, { timeout: 10000 });
      const viaWs = await subscribed(ws, name);
      assert.equal(viaWs.members.count, 2);
      assert.ok(viaWs.members.get(`http-${transport}`), 'the HTTP client is a member');

      // Server → HTTP client.
      const got = waitEvent(viaHttp, 'news', { timeout: 10000 });
      await sdk.trigger(name, 'news', { via: transport });
      assert.deepEqual(await got, { via: transport });

      // HTTP client → WebSocket client (client event, with user_id), never echoed.
      const echoed = collect(viaHttp, 'client-hello');
      const atWs = waitEvent(viaWs, 'client-hello', { withMetadata: true, timeout: 10000 });
      viaHttp.trigger('client-hello', { from: transport });
      const { data, metadata } = await atWs;
      assert.deepEqual(data, { from: transport });
      assert.equal(metadata.user_id, `http-${transport}`);

      // WebSocket client → HTTP client.
      const back = waitEvent(viaHttp, 'client-hello', { timeout: 10000 });
      viaWs.trigger('client-hello', { from: 'ws' });
      assert.deepEqual(await back, { from: 'ws' });
      await barrier(sdk, viaHttp);
      assert.deepEqual(echoed.map((e) => e.data), [{ from: 'ws' }]);

      // Leaving over HTTP is seen by the server.
      const removed = waitEvent(viaWs, 'pusher:member_removed', { timeout: 30000 });
      const left = Date.now();
      pusher.disconnect();
      assert.equal((await removed).id, `http-${transport}`);
      console.log(`# ${transport}: member_removed ${Date.now() - left} ms after pusher-js disconnected`);
      await subscriptionCount(sdk, name, 1);
    });
  }
});
