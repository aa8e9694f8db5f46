'use strict';
// The in-process server (tidings_server_start): its address and app, its
// engine reaching event streams and a real pusher-js client, and a clean stop.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { Server, channelAuth } = require('..');
const { rejectsWith, scratch, nextEvent } = require('./lib/helpers');
const { connect, subscribe, nextOn } = require('./lib/pusher');

const APP = { id: '1', key: 'test-key', secret: 'test-secret-0123456789abcdef0123456789' };

function config() {
  return { listen: '127.0.0.1:0', store: 'memory:', data_dir: scratch(), apps: [APP] };
}

test('start, info, engine, a pusher-js client receives the new-message, stop, close', async () => {
  const server = await Server.start(config());
  assert.match(server.address, /^127\.0\.0\.1:\d+$/);
  assert.ok(server.port > 0);
  const info = server.info();
  assert.equal(info.address, server.address);
  assert.equal(info.running, true);
  assert.deepEqual(info.app, { id: APP.id, key: APP.key, secret: APP.secret });

  const engine = server.engine();
  const sub = engine.events();
  const pusher = await connect(server.port, APP.key, ({ socketId, channelName }) => ({
    auth: channelAuth(APP.key, APP.secret, socketId, channelName),
  }));
  try {
    const channel = await subscribe(pusher, 'private-conversation-1-18');
    const received = nextOn(channel, 'new-message');
    const streamed = nextEvent(sub, (e) => e.event === 'new-message');
    const { message } = await engine.send({ from: '1', to: '18', body: 'via server' });
    const data = await received;
    assert.equal(data.id, message.id);
    assert.equal(data.body, 'via server');
    assert.equal((await streamed).channel, 'private-conversation-1-18');
  } finally {
    pusher.disconnect();
  }

  // Closing an engine handle leaves the server's engine running.
  await engine.close();
  const again = server.engine();
  assert.equal((await again.send({ from: '1', to: '18', body: 'still' })).message.seq, 2);
  const againSub = again.events();
  const ended = new Promise((resolve) => againSub.once('end', resolve));

  await server.stop();
  await server.stop(); // idempotent
  assert.equal(server.info().running, false);
  await ended; // streams of its engines end with it
  await rejectsWith(assert, again.send({ from: '1', to: '18', body: 'late' }), 'TIDINGS_SHUT_DOWN');
  await server.close();
  await server.close(); // idempotent
  assert.equal(again.closed, true);
  assert.throws(() => server.info(), { code: 'TIDINGS_SHUT_DOWN' });
  assert.throws(() => server.engine(), { code: 'TIDINGS_SHUT_DOWN' });
});

test('a server without apps gets the default app with a generated secret kept in data_dir', async () => {
  const dir = scratch();
  const first = await Server.start({ listen: '127.0.0.1:0', store: 'memory:', data_dir: dir });
  const app = first.info().app;
  assert.equal(app.id, '1');
  assert.equal(app.key, 'tidings-key');
  assert.ok(app.secret.length >= 32);
  await first.close();
  const second = await Server.start({ listen: '127.0.0.1:0', store: 'memory:', data_dir: dir });
  assert.equal(second.info().app.secret, app.secret);
  await second.close();
});

test('close() without stop() stops the server and frees what it gave out', async () => {
  const server = await Server.start(config());
  const engine = server.engine();
  const sub = engine.events();
  await engine.send({ from: '2', to: '3', body: 'x' });
  await server.close();
  assert.equal(sub.closed, true);
  assert.equal(engine.closed, true);
});

test('two servers on free ports at once', async () => {
  const [a, b] = await Promise.all([Server.start(config()), Server.start(config())]);
  assert.notEqual(a.port, b.port);
  await Promise.all([a.close(), b.close()]);
});

test('a running server nobody references is not collected (it would be stopped)', async () => {
  const v8 = require('node:v8');
  const vm = require('node:vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  let port;
  let weak;
  await (async () => {
    const server = await Server.start(config());
    port = server.port;
    weak = new WeakRef(server);
  })();
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const server = weak.deref();
  assert.ok(server, 'the server object was collected');
  const res = await fetch(`http://127.0.0.1:${port}/apps/1/channels`);
  assert.ok(res.status > 0);
  await res.arrayBuffer();
  await server.close();
});
