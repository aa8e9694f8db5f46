'use strict';
// Client events (`client-*`) between pusher-js clients: private/presence
// only, never echoed, `user_id` on presence, 10 per second per connection.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
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

function pusherErrors(pusher) {
  const errors = [];
  pusher.connection.bind('error', (e) => {
    if (e.type === 'PusherError') errors.push(e.data);
  });
  return errors;
}

test('private channel: a client event reaches the other subscribers, not the sender', async () => {
  const name = unique('private-chat-');
  const a = await open();
  const b = await open();
  const c = await open();
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const cc = await subscribed(c, name);
  const echoed = collect(ca, 'client-typing');
  const atB = waitEvent(cb, 'client-typing', { withMetadata: true });
  const atC = waitEvent(cc, 'client-typing');
  assert.equal(ca.trigger('client-typing', { typing: true }), true);
  const { data, metadata } = await atB;
  assert.deepEqual(data, { typing: true });
  assert.equal(metadata.user_id, undefined, 'no user_id on private channels');
  assert.deepEqual(await atC, { typing: true });
  // The HTTP marker follows the client event on a's queue, if it were there.
  await barrier(sdk, ca);
  assert.deepEqual(echoed, [], 'a client event is never echoed to its sender');
});

test('presence channel: a client event carries the sender\'s user_id as metadata', async () => {
  const name = unique('presence-chat-');
  const a = await open({ presence: { user_id: '1', user_info: { name: 'One' } } });
  const b = await open({ presence: { user_id: '18' } });
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const got = waitEvent(cb, 'client-typing', { withMetadata: true });
  ca.trigger('client-typing', { typing: true });
  const { data, metadata } = await got;
  assert.deepEqual(data, { typing: true });
  assert.equal(metadata.user_id, '1');
  // And the other way round.
  const back = waitEvent(ca, 'client-typing', { withMetadata: true });
  cb.trigger('client-typing', 'string data');
  const reply = await back;
  assert.equal(reply.data, 'string data');
  assert.equal(reply.metadata.user_id, '18');
});

test('public channel: client events are rejected with pusher:error and not delivered', async () => {
  const name = unique('public-');
  const a = await open();
  const b = await open();
  const errors = pusherErrors(a);
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const seen = collect(cb, 'client-hello');
  ca.trigger('client-hello', { hi: 1 });
  await until(() => errors.length > 0, { what: 'pusher:error for a client event on a public channel' });
  assert.match(errors[0].message, /client event/i);
  await barrier(sdk, cb);
  assert.deepEqual(seen, []);
  assert.equal(a.connection.state, 'connected');
});

test('a client event on a channel the sender did not subscribe to is rejected', async () => {
  const name = unique('private-chat-');
  const a = await open();
  const b = await open();
  const errors = pusherErrors(a);
  const cb = await subscribed(b, name);
  const seen = collect(cb, 'client-sneak');
  a.send_event('client-sneak', { x: 1 }, name);
  await until(() => errors.length > 0, { what: 'pusher:error for an unsubscribed sender' });
  await barrier(sdk, cb);
  assert.deepEqual(seen, []);
});

test('the 11th client event in a second gets pusher:error 4301, and the connection stays up', async () => {
  const name = unique('private-burst-');
  const a = await open();
  const b = await open();
  const errors = pusherErrors(a);
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const seen = collect(cb, 'client-n');
  const states = [];
  a.connection.bind('state_change', ({ current }) => states.push(current));
  // All 11 leave in one go, well inside one second.
  for (let i = 1; i <= 11; i++) ca.trigger('client-n', { i });
  await until(() => errors.length > 0, { what: 'pusher:error 4301' });
  assert.equal(errors[0].code, 4301);
  assert.equal(errors.length, 1, `only the 11th is refused: ${JSON.stringify(errors)}`);
  await until(() => seen.length >= 10, { what: 'the first 10 client events' });
  // After the one-second window a client event goes through again, and
  // nothing of the 11th arrived before it.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  ca.trigger('client-n', { i: 'after' });
  await until(() => seen.length >= 11, { what: 'the client event after the window' });
  assert.deepEqual(
    seen.map((s) => s.data.i),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 'after'],
  );
  assert.equal(a.connection.state, 'connected');
  assert.deepEqual(states, [], 'the rate limit must not close or reconnect the connection');
});

test('client events of one connection do not use up another\'s limit', async () => {
  const name = unique('private-shared-');
  const a = await open();
  const b = await open();
  const c = await open();
  const errorsA = pusherErrors(a);
  const errorsB = pusherErrors(b);
  const ca = await subscribed(a, name);
  const cb = await subscribed(b, name);
  const cc = await subscribed(c, name);
  const seen = collect(cc, 'client-n');
  for (let i = 0; i < 10; i++) ca.trigger('client-n', { from: 'a', i });
  for (let i = 0; i < 10; i++) cb.trigger('client-n', { from: 'b', i });
  await until(() => seen.length === 20, { what: '20 client events from two senders' });
  await barrier(sdk, ca);
  await barrier(sdk, cb);
  assert.deepEqual(errorsA, []);
  assert.deepEqual(errorsB, []);
});
