'use strict';
// Webhooks to a receiver that validates them with the `pusher` SDK: the
// seven event types, signing and headers, the 3-second delay (and its
// suppression when a member comes back), retries, and batching.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('../lib/server');
const { webhookReceiver } = require('../lib/webhooks');
const { checkPython, python } = require('../lib/python');
const {
  APP,
  connected,
  disconnectAll,
  serverSdk,
  subscribed,
  unique,
  until,
  waitEvent,
} = require('../lib/clients');

// A second app, from the config file: batched webhooks and subscription counts.
const BATCH_APP = Object.freeze({ id: '5151', key: 'e2e-batch-key', secret: 'e2e-batch-secret-fedcba9876543210' });

let server;
let receiver;
let sdk;
let batchSdk;
let configDir;
const clients = [];

before(async () => {
  checkPython();
  receiver = await webhookReceiver();
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-config-'));
  const config = path.join(configDir, 'tidings.toml');
  fs.writeFileSync(
    config,
    [
      '[[app]]',
      `id = "${BATCH_APP.id}"`,
      `key = "${BATCH_APP.key}"`,
      `secret = "${BATCH_APP.secret}"`,
      `webhooks = ["${receiver.url}/batched"]`,
      'webhook_batching = true',
      'subscription_count = true',
      '',
    ].join('\n'),
  );
  server = await startServer({ args: ['--webhook', `${receiver.url}/default`, '--config', config] });
  sdk = serverSdk(server);
  batchSdk = serverSdk(server, { appId: BATCH_APP.id, key: BATCH_APP.key, secret: BATCH_APP.secret });
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  await receiver.close();
  fs.rmSync(configDir, { recursive: true, force: true });
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

async function open(opts) {
  const pusher = await connected(server, opts);
  clients.push(pusher);
  return pusher;
}

/** Checks one received request the way an app's webhook endpoint would. */
function assertValid(request, app = APP) {
  assert.equal(request.method, 'POST');
  assert.equal(request.headers['content-type'], 'application/json', 'exactly application/json');
  assert.equal(request.headers['x-pusher-key'], app.key);
  const webhook = serverSdk(server, { appId: app.id, key: app.key, secret: app.secret }).webhook({
    headers: request.headers,
    rawBody: request.rawBody,
  });
  assert.equal(webhook.isValid(), true, `the pusher SDK accepts the signature of ${request.rawBody}`);
  const time = webhook.getTime().getTime();
  assert.ok(Math.abs(Date.now() - time) < 60000, `time_ms ${time} is recent`);
  return webhook.getEvents();
}

const on = (name, channel) => (e) => e.name === name && e.channel === channel;

test('channel_occupied and, 3 s after the last subscriber leaves, channel_vacated', async () => {
  const name = unique('hook-');
  const pusher = await open();
  await subscribed(pusher, name);
  const { request } = await receiver.waitFor(on('channel_occupied', name), { path: '/default' });
  const events = assertValid(request);
  assert.deepEqual(events, [{ name: 'channel_occupied', channel: name }], 'unbatched: one event per request');
  const left = Date.now();
  pusher.unsubscribe(name);
  const vacated = await receiver.waitFor(on('channel_vacated', name), { path: '/default' });
  assertValid(vacated.request);
  assert.ok(vacated.request.at - left >= 2500, `channel_vacated came ${vacated.request.at - left} ms after leaving`);

  // The Python SDK's validate_webhook accepts them too (it also checks time_ms).
  const results = await python(
    server,
    [request, vacated.request].map((r) => [
      'validate_webhook',
      { key: r.headers['x-pusher-key'], signature: r.headers['x-pusher-signature'], body: r.rawBody },
    ]),
  );
  assert.deepEqual(
    results.map((r) => r.ok && r.ok.events),
    [[{ name: 'channel_occupied', channel: name }], [{ name: 'channel_vacated', channel: name }]],
  );
});

test('member_added and a delayed member_removed, once per user', async () => {
  const name = unique('presence-hook-');
  const tab1 = await open({ presence: { user_id: 'u1' } });
  const tab2 = await open({ presence: { user_id: 'u1' } });
  await subscribed(tab1, name);
  await subscribed(tab2, name);
  const added = await receiver.waitFor((e) => e.name === 'member_added' && e.channel === name);
  assert.deepEqual(added.event, { name: 'member_added', channel: name, user_id: 'u1' });
  assertValid(added.request);
  const left = Date.now();
  tab1.disconnect();
  tab2.disconnect();
  const removed = await receiver.waitFor((e) => e.name === 'member_removed' && e.channel === name);
  assert.deepEqual(removed.event, { name: 'member_removed', channel: name, user_id: 'u1' });
  assert.ok(removed.request.at - left >= 2500, `member_removed came ${removed.request.at - left} ms after leaving`);
  await receiver.waitFor(on('channel_vacated', name));
  const count = (n) => receiver.events().filter(({ event }) => event.name === n && event.channel === name).length;
  assert.equal(count('member_added'), 1, 'two connections of one user: one member_added');
  assert.equal(count('member_removed'), 1);
});

test('a member who comes back within 3 s causes no member_removed or channel_vacated', async () => {
  const name = unique('presence-flap-');
  const first = await open({ presence: { user_id: 'flapper' } });
  await subscribed(first, name);
  await receiver.waitFor((e) => e.name === 'member_added' && e.channel === name);
  first.disconnect();
  // A page reload: the same user is back well inside the delay.
  const second = await open({ presence: { user_id: 'flapper' } });
  await subscribed(second, name);
  // Whatever the server would have sent about the departure is due 3 s
  // after it; a marker channel occupied after that point is the barrier.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const marker = unique('marker-');
  await subscribed(second, marker);
  await receiver.waitFor(on('channel_occupied', marker));
  const about = receiver.events().filter(({ event }) => event.channel === name).map(({ event }) => event.name);
  assert.deepEqual(about, ['channel_occupied', 'member_added']);
});

test('client_event webhooks carry event, data, socket_id, and user_id on presence', async () => {
  const name = unique('presence-ce-');
  const a = await open({ presence: { user_id: '1' } });
  const b = await open({ presence: { user_id: '18' } });
  const ca = await subscribed(a, name);
  await subscribed(b, name);
  ca.trigger('client-typing', { typing: true });
  const { event, request } = await receiver.waitFor((e) => e.name === 'client_event' && e.channel === name);
  assertValid(request);
  assert.deepEqual(event, {
    name: 'client_event',
    channel: name,
    event: 'client-typing',
    data: JSON.stringify({ typing: true }),
    socket_id: a.connection.socket_id,
    user_id: '1',
  });
  const priv = unique('private-ce-');
  const cpa = await subscribed(a, priv);
  await subscribed(b, priv);
  cpa.trigger('client-x', { n: [1, 2] });
  const onPrivate = await receiver.waitFor((e) => e.name === 'client_event' && e.channel === priv);
  assert.equal(onPrivate.event.user_id, undefined, 'no user_id outside presence');
  assert.equal(onPrivate.event.data, '{"n":[1,2]}');
});

test('cache_miss webhook', async () => {
  const name = unique('cache-hook-');
  const pusher = await open();
  const channel = pusher.subscribe(name);
  await waitEvent(channel, 'pusher:cache_miss');
  const { request } = await receiver.waitFor(on('cache_miss', name));
  assertValid(request);
});

test('a failed webhook request is retried', async () => {
  const name = unique('retry-');
  receiver.failFor(`"${name}"`, 1);
  const pusher = await open();
  await subscribed(pusher, name);
  await receiver.waitFor((e) => e.name === 'channel_occupied' && e.channel === name, { timeout: 15000 });
  const attempts = receiver.requests.filter((r) => r.rawBody.includes(`"${name}"`));
  assert.ok(attempts.length >= 2, `retried: ${attempts.length} attempts`);
  assert.equal(attempts[0].failed, true);
  assert.equal(attempts[attempts.length - 1].failed, false);
  assert.equal(attempts[0].rawBody, attempts[1].rawBody, 'the same signed body is sent again');
  assert.ok(attempts[1].at - attempts[0].at >= 500, 'retried after a back-off');
  assertValid(attempts[attempts.length - 1]);
});

test('batched app: several events in one signed request, and subscription_count', async () => {
  const names = [unique('batch-a-'), unique('batch-b-'), unique('batch-c-')];
  const pusher = await open({ key: BATCH_APP.key, sdk: batchSdk });
  // Subscribing in one go: the occupied events fall inside one batch window.
  const channels = names.map((n) => pusher.subscribe(n));
  await Promise.all(channels.map((c) => waitEvent(c, 'pusher:subscription_succeeded')));
  await until(
    () => names.every((n) => receiver.events('/batched').some(({ event }) => event.name === 'channel_occupied' && event.channel === n)),
    { timeout: 8000, what: 'channel_occupied for the three channels' },
  );
  const carrying = receiver.requests.filter(
    (r) => r.path === '/batched' && names.some((n) => r.rawBody.includes(n)) && !r.failed,
  );
  assert.ok(carrying.length < 3, `3 occupied events came in ${carrying.length} requests`);
  const events = carrying.flatMap((r) => assertValid(r, BATCH_APP));
  assert.ok(events.length > carrying.length || carrying.length === 1);

  // subscription_count: to subscribers (pusher-js event) and as a webhook.
  const second = await open({ key: BATCH_APP.key, sdk: batchSdk });
  const counted = waitEvent(channels[0], 'pusher:subscription_count', {
    filter: (d) => d.subscription_count === 2,
    what: 'subscription_count 2',
  });
  await subscribed(second, names[0]);
  assert.deepEqual(await counted, { subscription_count: 2 });
  await receiver.waitFor(
    (e) => e.name === 'subscription_count' && e.channel === names[0] && e.subscription_count === 2,
    { path: '/batched' },
  );
  // The default app's receiver got none of the batched app's events.
  assert.ok(!receiver.events('/default').some(({ event }) => names.includes(event.channel)));
});
