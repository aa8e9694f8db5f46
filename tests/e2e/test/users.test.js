'use strict';
// User authentication: pusher.signin(), sendToUser to #server-to-user-{id},
// terminateUserConnections, presence as the signed-in user.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/server');
const {
  barrier,
  collect,
  connected,
  disconnectAll,
  rawSocket,
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
  server = await startServer();
  sdk = serverSdk(server);
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

/** A pusher-js client signed in as `id`, subscribed to its server-to-user channel. */
async function signedIn(id, userInfo) {
  const user = userInfo ? { id, user_info: userInfo } : { id };
  const pusher = await connected(server, { user });
  clients.push(pusher);
  pusher.signin();
  await until(() => pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed, {
    what: `signin of ${id} and its #server-to-user-${id} subscription`,
  });
  assert.equal(pusher.user.user_data.id, id);
  return pusher;
}

function codes(pusher) {
  const seen = [];
  pusher.connection.bind('error', (e) => {
    const data = e.data || (e.error && e.error.data);
    if (data && data.code) seen.push(data.code);
  });
  return seen;
}

test('signin, then sendToUser from the pusher SDK reaches pusher.user on every connection of that user', async () => {
  const tab1 = await signedIn('17', { name: 'Seventeen' });
  const tab2 = await signedIn('17');
  const other = await signedIn('18');
  const otherSeen = collect(other.user, 'notice');
  const at1 = waitEvent(tab1.user, 'notice');
  const at2 = waitEvent(tab2.user, 'notice');
  await sdk.sendToUser('17', 'notice', { text: 'hi 17' });
  assert.deepEqual(await at1, { text: 'hi 17' });
  assert.deepEqual(await at2, { text: 'hi 17' });
  // A later message to 18 is the barrier for 18's connection.
  const at18 = waitEvent(other.user, 'notice');
  await sdk.sendToUser('18', 'notice', { text: 'hi 18' });
  assert.deepEqual(await at18, { text: 'hi 18' });
  assert.deepEqual(otherSeen.map((s) => s.data.text), ['hi 18'], '18 never gets what was sent to 17');
});

test('#server-to-user-{id} is refused to a connection that is not signed in as {id}', async () => {
  const ws = rawSocket(server);
  try {
    const hello = await ws.next((f) => f.event === 'pusher:connection_established');
    const socketId = hello.parsed.socket_id;
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: '#server-to-user-18' } });
    await ws.next((f) => f.event === 'pusher:subscription_error' || f.event === 'pusher:error', {
      what: 'refusal of #server-to-user-18 before signin',
    });
    const { auth, user_data } = sdk.authenticateUser(socketId, { id: '17' });
    ws.sendJson({ event: 'pusher:signin', data: { auth, user_data } });
    const ok = await ws.next((f) => f.event === 'pusher:signin_success', { what: 'signin_success' });
    assert.equal(JSON.parse(ok.parsed.user_data).id, '17');
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: '#server-to-user-18' } });
    await ws.next((f) => f.event === 'pusher:subscription_error' || f.event === 'pusher:error', {
      what: 'refusal of #server-to-user-18 for user 17',
    });
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: '#server-to-user-17' } });
    await ws.next(
      (f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === '#server-to-user-17',
      { what: 'subscription to #server-to-user-17' },
    );
    await sdk.sendToUser('18', 'nope', {});
    await sdk.sendToUser('17', 'yes', { ok: true });
    const got = await ws.next((f) => f.channel && f.channel.startsWith('#server-to-user-'), { what: 'a user event' });
    assert.equal(got.event, 'yes');
    assert.equal(got.channel, '#server-to-user-17');
  } finally {
    ws.terminate();
  }
});

test('a bad signin signature is refused with 4009', async () => {
  const wrong = serverSdk(server, { secret: 'wrong-secret-wrong-secret' });
  const pusher = await connected(server, { user: { id: '17' }, sdk: wrong });
  clients.push(pusher);
  const seen = codes(pusher);
  pusher.signin();
  await waitState(pusher, 'disconnected', { timeout: 5000 });
  assert.ok(seen.includes(4009), `codes seen: ${seen}`);
  assert.equal(pusher.user.user_data, null);
});

test('terminateUserConnections closes every connection of that user (4009) and no one else\'s', async () => {
  const tab1 = await signedIn('30');
  const tab2 = await signedIn('30');
  const bystander = await signedIn('31');
  const anonymous = await connected(server);
  clients.push(anonymous);
  const codes1 = codes(tab1);
  const codes2 = codes(tab2);
  const name = unique('news-');
  const bystanderChannel = await subscribed(bystander, name);
  const anonymousChannel = await subscribed(anonymous, name);

  const res = await sdk.terminateUserConnections('30');
  assert.equal(res.status, 200);
  await Promise.all([waitState(tab1, 'disconnected'), waitState(tab2, 'disconnected')]);
  assert.ok(codes1.includes(4009), `tab1 codes: ${codes1}`);
  assert.ok(codes2.includes(4009), `tab2 codes: ${codes2}`);
  // pusher-js must not reconnect on its own after a termination.
  assert.equal(tab1.stateLog.filter((s) => s === 'connected').length, 1);

  await barrier(sdk, bystanderChannel);
  await barrier(sdk, anonymousChannel);
  assert.equal(bystander.connection.state, 'connected');
  assert.equal(anonymous.connection.state, 'connected');
});

test('terminating a user with no connections answers 200', async () => {
  const res = await sdk.terminateUserConnections('nobody-here');
  assert.equal(res.status, 200);
});

test('presence after signin: the auth endpoint may omit channel_data and the user is the member', async () => {
  const name = unique('presence-signed-');
  const watcher = await connected(server, { presence: { user_id: 'watcher' } });
  clients.push(watcher);
  const watcherChannel = await subscribed(watcher, name);
  const added = waitEvent(watcherChannel, 'pusher:member_added');

  const pusher = await signedIn('42', { name: 'Forty-two' });
  // Like an auth endpoint for a signed-in user: sign socket_id:channel only.
  pusher.config.channelAuthorizer = ({ socketId, channelName }, callback) =>
    callback(null, sdk.authorizeChannel(socketId, channelName));
  const channel = await subscribed(pusher, name);
  assert.equal(channel.members.count, 2);
  assert.deepEqual(await added, { id: '42', info: { name: 'Forty-two' } });
});

test('a connection signed in as one user cannot sign in as another', async () => {
  const ws = rawSocket(server);
  try {
    const hello = await ws.next((f) => f.event === 'pusher:connection_established');
    const socketId = hello.parsed.socket_id;
    ws.sendJson({ event: 'pusher:signin', data: sdk.authenticateUser(socketId, { id: '17' }) });
    await ws.next((f) => f.event === 'pusher:signin_success');
    ws.sendJson({ event: 'pusher:signin', data: sdk.authenticateUser(socketId, { id: '18' }) });
    const error = await ws.next((f) => f.event === 'pusher:error', { what: 'refusal of a second identity' });
    // Still 17: 17's channel works, 18's does not.
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: '#server-to-user-17' } });
    await ws.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === '#server-to-user-17');
    ws.sendJson({ event: 'pusher:subscribe', data: { auth: '', channel: '#server-to-user-18' } });
    await ws.next((f) => f.event === 'pusher:subscription_error' && f.channel === '#server-to-user-18');
  } finally {
    ws.terminate();
  }
});
