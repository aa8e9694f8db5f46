'use strict';
// The route handlers, called with standard Request objects, on a real
// engine whose pusher transport points at an in-process tidings serve; a
// pusher-js client subscribes through the auth route and receives the
// `new-message` that the send route triggers.
const assert = require('node:assert/strict');
const { test, before, after } = require('node:test');
const tidings = require('tidings');
const { APP, deadline, startBroker, app, startFront, connected, subscribed } = require('./harness');

let broker;
let routes;
let front;

before(async () => {
  broker = await startBroker();
  routes = app();
  front = await startFront({ '/api/pusher/auth': routes.auth.POST, '/api/messages/send': routes.send.POST });
});

after(async () => {
  await routes.tidingsServer.closeEngine();
  await front.close();
  await broker.close();
});

function sendRequest(body, headers = { 'x-user-id': '1' }) {
  return new Request('http://app.test/api/messages/send', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

// What pusher-js posts to its channel authorization endpoint.
function authRequest(fields, headers = {}) {
  return new Request('http://app.test/api/pusher/auth', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

test('send: stores the message and returns it in full (201), a retry with clientMsgId returns it again (200)', async () => {
  const res = await routes.send.POST(
    sendRequest({ senderId: '1', recipientId: '18', content: 'Hello teacher', clientMsgId: 'c-1' }),
  );
  assert.equal(res.status, 201);
  assert.match(res.headers.get('content-type'), /application\/json/);
  const message = await res.json();
  assert.equal(message.conversation_id, '1-18');
  assert.equal(message.sender_id, '1');
  assert.equal(message.body, 'Hello teacher');
  assert.equal(message.client_msg_id, 'c-1');
  assert.equal(typeof message.id, 'number');
  assert.equal(typeof message.seq, 'number');
  assert.equal(typeof message.created_at, 'number');
  assert.deepEqual(message.reactions, []);

  const retry = await routes.send.POST(
    sendRequest({ senderId: '1', recipientId: '18', content: 'Hello teacher', clientMsgId: 'c-1' }),
  );
  assert.equal(retry.status, 200);
  assert.equal((await retry.json()).id, message.id);

  const engine = await routes.tidingsServer.getEngine();
  const page = await engine.history('1-18');
  assert.ok(page.items.some((m) => m.id === message.id));
});

test('send: 401 without a user, 403 for another senderId, 400 for bad bodies', async () => {
  let res = await routes.send.POST(sendRequest({ recipientId: '18', content: 'x' }, {}));
  assert.equal(res.status, 401);
  res = await routes.send.POST(sendRequest({ senderId: '2', recipientId: '18', content: 'x' }));
  assert.equal(res.status, 403);
  res = await routes.send.POST(sendRequest('{not json'));
  assert.equal(res.status, 400);
  res = await routes.send.POST(sendRequest({ content: 'x' }));
  assert.equal(res.status, 400);
  res = await routes.send.POST(sendRequest({ recipientId: '18', content: 42 }));
  assert.equal(res.status, 400);
  res = await routes.send.POST(sendRequest({ recipientId: '18', content: '   ' }));
  assert.equal(res.status, 400);
  assert.equal((await res.json()).code, 'TIDINGS_INVALID_ARGUMENT');
  res = await routes.send.POST(sendRequest({ recipientId: 'a b', content: 'x' }));
  assert.equal(res.status, 400);
  // The user may also come from the cookie; numbers are user ids too.
  res = await routes.send.POST(sendRequest({ senderId: 5, recipientId: 6, content: 'by cookie' }, { cookie: 'theme=dark; tidings_user=5' }));
  assert.equal(res.status, 201);
  assert.equal((await res.json()).conversation_id, '5-6');
});

test('auth: signs for the two members of the conversation only', async () => {
  const fields = { socket_id: '1234.5678', channel_name: 'private-conversation-1-18' };
  for (const user of ['1', '18']) {
    const res = await routes.auth.POST(authRequest(fields, { 'x-user-id': user }));
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      auth: tidings.channelAuth(APP.key, APP.secret, fields.socket_id, fields.channel_name),
    });
  }
  const stranger = await routes.auth.POST(authRequest(fields, { 'x-user-id': '3' }));
  assert.equal(stranger.status, 403);
  const nobody = await routes.auth.POST(authRequest(fields));
  assert.equal(nobody.status, 403);
  const other = await routes.auth.POST(
    authRequest({ socket_id: '1.2', channel_name: 'private-admin' }, { 'x-user-id': '1' }),
  );
  assert.equal(other.status, 403);
  const reversed = await routes.auth.POST(
    authRequest({ socket_id: '1.2', channel_name: 'private-conversation-18-1' }, { 'x-user-id': '1' }),
  );
  assert.equal(reversed.status, 403);
  const missing = await routes.auth.POST(authRequest({ channel_name: fields.channel_name }, { 'x-user-id': '1' }));
  assert.equal(missing.status, 400);
  const badSocket = await routes.auth.POST(
    authRequest({ socket_id: '1:2', channel_name: fields.channel_name }, { 'x-user-id': '1' }),
  );
  assert.equal(badSocket.status, 400);
  const byCookie = await routes.auth.POST(authRequest(fields, { cookie: 'tidings_user=18' }));
  assert.equal(byCookie.status, 200);
});

test('auth: presence channels get channel_data signed with the member', async () => {
  const fields = { socket_id: '1.1', channel_name: 'presence-conversation-1-18' };
  const res = await routes.auth.POST(authRequest(fields, { 'x-user-id': '18' }));
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(JSON.parse(body.channel_data).user_id, '18');
  const expected = tidings.presenceAuth(APP.key, APP.secret, fields.socket_id, fields.channel_name, body.channel_data);
  assert.equal(body.auth, expected.auth);
});

test('end to end: pusher-js subscribes through the auth route and receives the new-message the send route triggers', async () => {
  const { createPusherClient } = routes.pusherClient;
  const client = (userId) =>
    createPusherClient({
      key: APP.key,
      wsHost: '127.0.0.1',
      wsPort: broker.server.port,
      userId,
      authEndpoint: `${front.url}/api/pusher/auth`,
    });
  const teacher = client('18');
  const stranger = client('3');
  try {
    await Promise.all([connected(teacher), connected(stranger)]);
    const channel = await subscribed(teacher, 'private-conversation-1-18');
    await assert.rejects(subscribed(stranger, 'private-conversation-1-18'), (err) => err.status === 403);

    const got = deadline(new Promise((resolve) => channel.bind('new-message', resolve)), 5000, 'new-message');
    const res = await fetch(`${front.url}/api/messages/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': '1' },
      body: JSON.stringify({ senderId: '1', recipientId: '18', content: 'Are you there?' }),
    });
    assert.equal(res.status, 201);
    const message = await res.json();
    const delivered = await got;
    assert.deepEqual(delivered, message);
  } finally {
    teacher.disconnect();
    stranger.disconnect();
  }
});

test('one engine per process, kept on globalThis', async () => {
  const { getEngine } = routes.tidingsServer;
  const a = await getEngine();
  const b = await getEngine();
  assert.equal(a, b);
  assert.equal(await globalThis.tidingsEngine, a);
  // A module evaluated again (a hot reload) finds the same engine.
  const file = require.resolve('../build/lib/tidings-server.js');
  delete require.cache[file];
  const reloaded = require(file);
  assert.equal(await reloaded.getEngine(), a);
});

test('lib/tidings-server: config from the environment', () => {
  const { engineConfig, tidingsApp } = routes.tidingsServer;
  const env = { TIDINGS_APP_SECRET: 's3cret-xyz', TIDINGS_PORT: '7000', TIDINGS_STORE: 'memory:' };
  assert.deepEqual(engineConfig(env), {
    store: 'memory:',
    transports: [{ kind: 'pusher', url: 'http://tidings-key:s3cret-xyz@127.0.0.1:7000/apps/1' }],
  });
  assert.equal(tidingsApp(env).port, 7000);
  assert.throws(() => tidingsApp({}), /TIDINGS_APP_SECRET/);
});
