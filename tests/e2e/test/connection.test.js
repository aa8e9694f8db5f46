'use strict';
// Connecting with pusher-js: handshake, socket id, ping/pong, unknown keys.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const { APP, client, connected, disconnectAll, rawSocket, until, waitState } = require('../lib/clients');

let server;
const clients = [];
before(async () => {
  server = await startServer();
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

test('pusher-js connects and gets a socket id of the form \\d+.\\d+', async () => {
  const pusher = await connected(server);
  clients.push(pusher);
  assert.equal(pusher.connection.state, 'connected');
  assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
  assert.deepEqual(pusher.stateLog.filter((s) => s !== 'connecting'), ['connected']);
});

test('every connection gets its own socket id', async () => {
  const a = await connected(server);
  const b = await connected(server);
  clients.push(a, b);
  assert.notEqual(a.connection.socket_id, b.connection.socket_id);
});

test('the handshake carries a JSON-string data with a non-zero activity_timeout', async () => {
  const ws = rawSocket(server);
  try {
    const hello = await ws.next(() => true, { what: 'the handshake' });
    assert.equal(hello.event, 'pusher:connection_established');
    assert.equal(typeof hello.data, 'string', 'connection_established data is a JSON string');
    assert.match(hello.parsed.socket_id, /^\d+\.\d+$/);
    assert.ok(Number.isInteger(hello.parsed.activity_timeout) && hello.parsed.activity_timeout > 0);
  } finally {
    ws.terminate();
  }
});

test('pusher:ping is answered with pusher:pong and a WebSocket ping with a pong', async () => {
  const ws = rawSocket(server);
  try {
    await ws.next((f) => f.event === 'pusher:connection_established');
    ws.sendJson({ event: 'pusher:ping', data: {} });
    await ws.next((f) => f.event === 'pusher:pong', { what: 'pusher:pong' });
    const pong = new Promise((resolve) => ws.once('pong', (payload) => resolve(payload.toString())));
    ws.ping('are-you-there');
    assert.equal(
      await Promise.race([pong, new Promise((_, reject) => setTimeout(() => reject(new Error('no WebSocket pong')), 5000))]),
      'are-you-there',
    );
  } finally {
    ws.terminate();
  }
});

test('pusher-js answers the server and keeps the connection alive across its own ping', async () => {
  // A short client-side activity timeout makes pusher-js send pusher:ping
  // after 1 s of silence; the pong must keep it connected.
  const pusher = client(server, { activityTimeout: 1000, pongTimeout: 2000 });
  clients.push(pusher);
  await waitState(pusher, 'connected');
  let pongs = 0;
  pusher.connection.connection.bind('pong', () => pongs++);
  await until(() => pongs >= 2, { timeout: 8000, what: 'two pongs to pusher-js pings' });
  assert.equal(pusher.connection.state, 'connected');
  assert.deepEqual(pusher.stateLog.filter((s) => s !== 'connecting'), ['connected'], 'no reconnect while pinging');
});

test('an unknown app key is refused with 4001 and pusher-js stops in disconnected without retrying', async () => {
  const ws = rawSocket(server, 'no-such-key');
  const error = await ws.next((f) => f.event === 'pusher:error', { what: 'pusher:error for the unknown key' });
  assert.equal(error.parsed.code, 4001);
  assert.equal((await ws.closed).code, 4001);

  const pusher = client(server, { key: 'no-such-key' });
  clients.push(pusher);
  const errors = [];
  pusher.connection.bind('error', (e) => errors.push(e));
  await waitState(pusher, 'disconnected');
  assert.ok(
    errors.some((e) => (e.data || (e.error && e.error.data) || {}).code === 4001),
    `pusher-js should report code 4001, got ${JSON.stringify(errors)}`,
  );
  // pusher-js retries a recoverable close after 1 s; watch past that
  // window and make sure it never leaves `disconnected`.
  const log = pusher.stateLog.length;
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.deepEqual(pusher.stateLog.slice(log), [], 'no reconnect attempt after a refusal');
  assert.equal(pusher.connection.state, 'disconnected');
  assert.deepEqual(pusher.stateLog.filter((s) => s !== 'connecting'), ['disconnected']);
});

test('an unsupported protocol version is refused with a 4000-4099 close code', async () => {
  const ws = rawSocket(server, APP.key, '?protocol=3&client=js&version=1.0');
  const { code } = await ws.closed;
  assert.ok(code >= 4000 && code < 4100, `close code ${code}`);
});

test('a client that disconnects goes to disconnected and can connect again', async () => {
  const pusher = await connected(server);
  clients.push(pusher);
  const first = pusher.connection.socket_id;
  pusher.disconnect();
  await waitState(pusher, 'disconnected');
  pusher.connect();
  await waitState(pusher, 'connected');
  assert.notEqual(pusher.connection.socket_id, first);
});
