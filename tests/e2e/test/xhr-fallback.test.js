'use strict';
// pusher-js's HTTP fallback against tidings serve: the real pusher-js 8
// with only its `xhr_streaming` or `xhr_polling` transport enabled (the
// SockJS-like wire format of the Pusher protocol), so no WebSocket is
// involved. pusher-js's Node build ships both XHR transports (over the
// `xmlhttprequest` package it bundles); the last test runs the web build in
// Debian's chromium, from another origin (CORS preflight included).
//
// Channels are authorized by the server's own POST /pusher/auth (--demo
// mode, `X-Tidings-User`), events come from the `pusher` Node SDK.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('../lib/server');
const {
  APP,
  client,
  collect,
  disconnectAll,
  request,
  serverSdk,
  subscribed,
  unique,
  until,
  waitEvent,
  waitState,
} = require('../lib/clients');

const TRANSPORTS = ['xhr_streaming', 'xhr_polling'];
// A session nobody polls is cleaned up after this long (XhrSettings default).
const DISCONNECT_DELAY_MS = 10000;
const CHROMIUM = process.env.TIDINGS_E2E_CHROMIUM || '/usr/bin/chromium';

let server;
let sdk;
const clients = [];
before(async () => {
  server = await startServer({ args: ['--demo'] });
  sdk = serverSdk(server);
});
after(async () => {
  disconnectAll(clients);
  const { code } = await server.stop();
  server.cleanup();
  assert.equal(code, 0, `tidings should exit 0 on SIGTERM:\n${server.stderr}`);
});

/**
 * A pusher-js client that may use only `transports`, pointed at the server
 * with httpHost/httpPort (httpPath stays pusher-js's default `/pusher`),
 * authorizing through POST /pusher/auth as `user`.
 */
function httpClient(transports, { user = 'alice', ...options } = {}) {
  const pusher = client(server, {
    enabledTransports: transports,
    httpHost: '127.0.0.1',
    httpPort: server.port,
    channelAuthorization: {
      endpoint: `${server.url}/pusher/auth`,
      transport: 'ajax',
      headers: { 'X-Tidings-User': user },
    },
    ...options,
  });
  clients.push(pusher);
  return pusher;
}

/** The name of the transport a connected pusher-js uses. */
function transportOf(pusher) {
  return pusher.connection.connection.transport.name;
}

for (const transport of TRANSPORTS) {
  test(`${transport}: connects, subscribes (public, private, presence) and receives events`, async () => {
    const alice = httpClient([transport], { user: 'alice' });
    await waitState(alice, 'connected', { timeout: 15000 });
    assert.equal(transportOf(alice), transport);
    assert.match(alice.connection.socket_id, /^\d+\.\d+$/);

    const conv = `conversation-alice-${unique('b')}`;
    const peer = conv.slice('conversation-alice-'.length);
    const news = await subscribed(alice, unique('news-'));
    const priv = await subscribed(alice, `private-${conv}`);
    const pres = await subscribed(alice, `presence-${conv}`);
    assert.equal(pres.members.me.id, 'alice');

    // Events triggered by the pusher SDK, in order, JSON decoded.
    const got = collect(priv, 'new-message');
    await sdk.trigger(news.name, 'headline', { text: 'on the wire' });
    for (let n = 0; n < 5; n++) await sdk.trigger(priv.name, 'new-message', { n, body: `hi "${n}" \u2028 é` });
    await until(() => got.length === 5, { what: '5 messages' });
    assert.deepEqual(got.map((e) => e.data.n), [0, 1, 2, 3, 4]);
    assert.equal(got[3].data.body, 'hi "3" \u2028 é');

    // A WebSocket client of the same conversation: presence and client
    // events cross between the two kinds of connection.
    const ws = client(server, { presence: { user_id: peer, user_info: { via: 'ws' } } });
    clients.push(ws);
    const joined = waitEvent(pres, 'pusher:member_added');
    const wsPres = await subscribed(ws, pres.name);
    assert.equal((await joined).id, peer);
    assert.equal(wsPres.members.count, 2);
    const wsPriv = await subscribed(ws, priv.name);
    const typing = waitEvent(wsPriv, 'client-typing');
    assert.equal(priv.trigger('client-typing', { from: 'alice' }), true);
    assert.deepEqual(await typing, { from: 'alice' });
    const reply = waitEvent(priv, 'client-typing');
    wsPriv.trigger('client-typing', { from: peer });
    assert.deepEqual(await reply, { from: peer });
    assert.equal(transportOf(alice), transport, 'still on the same transport');
    assert.deepEqual(alice.stateLog.filter((s) => s !== 'connecting'), ['connected'], 'no reconnection');

    // pusher-js says nothing when it disconnects an HTTP session: the
    // server cleans it up once no request has held it for a while, exactly
    // like a closed WebSocket (presence member_removed).
    const left = waitEvent(wsPres, 'pusher:member_removed', { timeout: DISCONNECT_DELAY_MS + 10000 });
    alice.disconnect();
    assert.equal((await left).id, 'alice');
  });
}

// A second `tidings serve` whose engine delivers through the Pusher HTTP
// transport (`[[transport]] kind = "pusher"`) to this one: a message sent
// through its chat API reaches pusher-js clients here, over each XHR
// transport, on a private channel authorized by this server's endpoint.
test('xhr_streaming and xhr_polling receive messages relayed by another server\'s Pusher HTTP transport', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-relay-'));
  const config = path.join(dir, 'relay.toml');
  const target = `http://${APP.key}:${APP.secret}@127.0.0.1:${server.port}/apps/${APP.id}`;
  fs.writeFileSync(config, `[[transport]]\nkind = "pusher"\nurl = "${target}"\n`);
  const relay = await startServer({ args: ['--demo', '--config', config] });
  try {
    for (const [i, transport] of TRANSPORTS.entries()) {
      const [lo, hi] = [String(8100 + 2 * i), String(8101 + 2 * i)];
      const reader = httpClient([transport], { user: hi });
      await waitState(reader, 'connected', { timeout: 15000 });
      assert.equal(transportOf(reader), transport);
      const channel = await subscribed(reader, `private-conversation-${lo}-${hi}`);
      const got = collect(channel, 'new-message');
      for (let n = 1; n <= 3; n++) {
        const sent = await request(`${relay.url}/v1/messages`, {
          method: 'POST',
          headers: { 'x-tidings-user': lo, 'content-type': 'application/json' },
          body: JSON.stringify({ to: hi, body: `relayed ${n} over ${transport}` }),
        });
        assert.equal(sent.status, 201, sent.body);
      }
      await until(() => got.length === 3, { timeout: 15000, what: `3 relayed messages over ${transport}` });
      assert.deepEqual(got.map((e) => e.data.seq), [1, 2, 3]);
      assert.deepEqual(got.map((e) => e.data.body), [1, 2, 3].map((n) => `relayed ${n} over ${transport}`));
      reader.disconnect();
    }
  } finally {
    const { code } = await relay.stop();
    relay.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, `the relay should exit 0 on SIGTERM:\n${relay.stderr}`);
  }
});

test('xhr_streaming: pusher-js re-opens a stream past 256 KB on the same session, losing nothing', async () => {
  const pusher = httpClient(['xhr_streaming']);
  await waitState(pusher, 'connected', { timeout: 15000 });
  const socketId = pusher.connection.socket_id;
  const channel = await subscribed(pusher, unique('bulk-'));
  const got = collect(channel, 'chunk');
  const filler = 'x'.repeat(8000);
  const count = 48; // ~390 KB: at least one re-open
  for (let n = 0; n < count; n++) await sdk.trigger(channel.name, 'chunk', { n, filler });
  await until(() => got.length === count, { timeout: 15000, what: `${count} events (got ${got.length})` });
  assert.deepEqual(got.map((e) => e.data.n), [...Array(count).keys()]);
  assert.equal(pusher.connection.socket_id, socketId, 'the same session');
  assert.deepEqual(pusher.stateLog.filter((s) => s !== 'connecting'), ['connected'], 'no reconnection');
});

test('WebSockets blocked: default transports fall back to the HTTP ones by themselves', async () => {
  const closedPort = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  // All of pusher-js's transports allowed; ws/wss go to a port nobody
  // listens on, the way a proxy that blocks WebSockets leaves them.
  const pusher = httpClient(undefined, { port: closedPort, wssPort: closedPort });
  await waitState(pusher, 'connected', { timeout: 20000 });
  assert.ok(TRANSPORTS.includes(transportOf(pusher)), transportOf(pusher));
  const channel = await subscribed(pusher, 'private-conversation-alice-zed');
  const got = waitEvent(channel, 'new-message');
  await sdk.trigger(channel.name, 'new-message', { text: 'through the fallback' });
  assert.deepEqual(await got, { text: 'through the fallback' });
});

test('an unknown app key is refused with 4001 over HTTP too: pusher-js stops in disconnected', async () => {
  const pusher = httpClient(['xhr_polling'], { key: 'no-such-key' });
  const errors = collect(pusher.connection, 'error');
  await waitState(pusher, 'disconnected', { timeout: 15000 });
  assert.ok(
    errors.some(({ data: e }) => ((e && (e.data || (e.error && e.error.data))) || {}).code === 4001),
    `pusher-js should report code 4001, got ${JSON.stringify(errors)}`,
  );
  assert.deepEqual(pusher.stateLog.filter((s) => s !== 'connecting'), ['disconnected']);
});

test('chromium, web build, another origin: xhr_streaming and xhr_polling receive events', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} does not exist: apt-get install -y chromium (tests/e2e/run.sh does)`);
  }
  const { chromium } = require('playwright-core');
  // The page comes from its own little server, so every request to
  // tidings is cross-origin (and JSON posts need a CORS preflight).
  const pusherJs = fs.readFileSync(require.resolve('pusher-js/dist/web/pusher.min.js'));
  const origin = http.createServer((req, res) => {
    if (req.url === '/pusher.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(pusherJs);
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><script src="/pusher.min.js"></script>');
  });
  await new Promise((resolve) => origin.listen(0, '127.0.0.1', resolve));
  t.after(() => origin.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-xhr-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(async () => {
    await context.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15000);
  const requests = [];
  page.on('request', (r) => requests.push(`${r.method()} ${r.url()}`));
  // The app's auth endpoint, as the page's customHandler sees it.
  await page.exposeFunction('authorize', (socketId, channelName) => sdk.authorizeChannel(socketId, channelName));
  await page.goto(`http://127.0.0.1:${origin.address().port}/`);

  for (const transport of TRANSPORTS) {
    const channel = `private-conversation-alice-${unique('web')}`;
    await page.evaluate(({ key, port, transport, channel }) => {
      window.received = [];
      window.client = new Pusher(key, {
        cluster: 'local',
        forceTLS: false,
        enabledTransports: [transport],
        httpHost: '127.0.0.1',
        httpPort: port,
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, cb) =>
            window.authorize(socketId, channelName).then((d) => cb(null, d), (e) => cb(e, null)),
        },
      });
      const ch = window.client.subscribe(channel);
      ch.bind('pusher:subscription_succeeded', () => { window.subscribed = channel; });
      ch.bind('new-message', (data) => window.received.push(data));
    }, { key: APP.key, port: server.port, transport, channel });
    await page.waitForFunction((c) => window.subscribed === c, channel);
    assert.equal(await page.evaluate(() => window.client.connection.connection.transport.name), transport);
    for (let n = 0; n < 3; n++) await sdk.trigger(channel, 'new-message', { n });
    await page.waitForFunction(() => window.received.length === 3);
    assert.deepEqual(await page.evaluate(() => window.received.map((d) => d.n)), [0, 1, 2]);
    await page.evaluate(() => window.client.disconnect());
  }
  const path0 = `/pusher/app/${APP.key}/`;
  assert.ok(requests.some((r) => r.startsWith('POST') && r.includes(path0) && r.includes('/xhr_streaming?')), requests.join('\n'));
  assert.ok(requests.some((r) => r.startsWith('POST') && r.includes(path0) && r.includes('/xhr_send?')), requests.join('\n'));
});
