'use strict';
// pusher-js authorizing against the server's own endpoints (POST /pusher/auth
// and /pusher/user-auth, form-encoded, ajax transport) with user tokens
// from `tidings token --user N`, as the chat page and mobile apps do.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { BIN, startServer } = require('../lib/server');
const { APP, connected, disconnectAll, serverSdk, subscribed, until, waitEvent } = require('../lib/clients');

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

/** `tidings token --user N` with the server's app secret. */
function token(user) {
  const out = execFileSync(BIN, ['--json', 'token', '--user', String(user)], {
    env: { ...process.env, TIDINGS_APP_ID: APP.id, TIDINGS_APP_KEY: APP.key, TIDINGS_APP_SECRET: APP.secret },
  });
  return JSON.parse(out.toString()).token;
}

/** A pusher-js client whose auth goes to the server's endpoints with `headers`. */
async function withEndpoints(headers) {
  const auth = { transport: 'ajax', headers };
  const pusher = await connected(server, {
    channelAuthorization: { endpoint: `${server.url}/pusher/auth`, ...auth },
    userAuthentication: { endpoint: `${server.url}/pusher/user-auth`, ...auth },
  });
  clients.push(pusher);
  return pusher;
}

test('a user token authorizes its own conversation channels (private and presence)', async () => {
  const one = await withEndpoints({ Authorization: `Bearer ${token(1)}` });
  const eighteen = await withEndpoints({ Authorization: `Bearer ${token(18)}` });
  const priv1 = await subscribed(one, 'private-conversation-1-18');
  await subscribed(eighteen, 'private-conversation-1-18');
  const pres1 = await subscribed(one, 'presence-conversation-1-18');
  const joined = waitEvent(pres1, 'pusher:member_added');
  const pres18 = await subscribed(eighteen, 'presence-conversation-1-18');
  assert.equal(String((await joined).id), '18', 'the token\'s user is the member');
  assert.equal(String(pres18.members.me.id), '18');
  assert.equal(pres18.members.count, 2);
  // Client events between the two, as the page's typing indicator does.
  const typing = waitEvent(priv1, 'client-typing');
  eighteen.channel('private-conversation-1-18').trigger('client-typing', { user_id: '18' });
  assert.deepEqual(await typing, { user_id: '18' });
});

test('someone else\'s conversation is refused with 403', async () => {
  const five = await withEndpoints({ Authorization: `Bearer ${token(5)}` });
  for (const name of ['private-conversation-1-18', 'presence-conversation-1-18', 'private-news']) {
    const error = await waitEvent(five.subscribe(name), 'pusher:subscription_error', { what: `refusal of ${name}` });
    assert.equal(error.type, 'AuthError');
    assert.equal(error.status, 403, `${name}: ${JSON.stringify(error)}`);
  }
});

test('no token, or a forged one, is refused with 401', async () => {
  const anonymous = await withEndpoints({});
  const error = await waitEvent(anonymous.subscribe('private-conversation-1-18'), 'pusher:subscription_error');
  assert.equal(error.status, 401);
  const forged = token(1).replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  const mallory = await withEndpoints({ Authorization: `Bearer ${forged}` });
  const error2 = await waitEvent(mallory.subscribe('private-conversation-1-18'), 'pusher:subscription_error');
  assert.equal(error2.status, 401);
});

test('pusher.signin() through /pusher/user-auth, then sendToUser reaches the user', async () => {
  const pusher = await withEndpoints({ Authorization: `Bearer ${token(17)}` });
  pusher.signin();
  await until(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, {
    what: 'signin of 17 through /pusher/user-auth',
  });
  assert.equal(pusher.user.user_data.id, '17');
  const got = waitEvent(pusher.user, 'hello');
  await sdk.sendToUser('17', 'hello', { to: 17 });
  assert.deepEqual(await got, { to: 17 });
});

test('signin without a token fails with pusher:signin_error and the connection stays up', async () => {
  const pusher = await withEndpoints({});
  const failed = waitEvent(pusher.user, 'pusher:signin_error');
  pusher.signin();
  const error = await failed;
  assert.equal(error.type, 'AuthError');
  assert.equal(pusher.connection.state, 'connected');
});
