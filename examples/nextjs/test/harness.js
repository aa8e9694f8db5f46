'use strict';
// What the route tests share: an in-process `tidings serve` (the Pusher
// protocol server the browser connects to), the environment the app reads,
// the compiled route handlers, a minimal HTTP front that hands standard
// Request objects to them (as Next.js does), and pusher-js.
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Server } = require('tidings');
const PusherJS = require('pusher-js');

const APP = { id: '1', key: 'test-key', secret: 'test-secret-0123456789abcdef0123456789' };
const BUILD = path.join(__dirname, '..', 'build');

PusherJS.logToConsole = false;
PusherJS.log = () => {};
// pusher-js's bundled WebSocket client arms a 30 s timer on close(); unref
// it so that the test process exits when it is done.
{
  const runtime = PusherJS.Runtime;
  const create = runtime.createWebSocket;
  runtime.createWebSocket = function createWebSocket(url) {
    const socket = create.call(this, url);
    const close = socket.close;
    socket.close = function closeUnref(...args) {
      const result = close.apply(this, args);
      if (this._closeTimer && typeof this._closeTimer.unref === 'function') this._closeTimer.unref();
      return result;
    };
    return socket;
  };
}

/** Rejects if `promise` has not settled within `ms`. */
function deadline(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Starts tidings serve and points the app's environment at it. */
async function startBroker() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-next-'));
  const server = await Server.start({ listen: '127.0.0.1:0', store: 'memory:', data_dir: dataDir, apps: [APP] });
  Object.assign(process.env, {
    TIDINGS_APP_ID: APP.id,
    TIDINGS_APP_KEY: APP.key,
    TIDINGS_APP_SECRET: APP.secret,
    TIDINGS_HOST: '127.0.0.1',
    TIDINGS_PORT: String(server.port),
    TIDINGS_STORE: 'memory:',
  });
  return {
    server,
    async close() {
      await server.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The compiled app modules (tsc -p tsconfig.test.json). */
function app() {
  return {
    send: require(path.join(BUILD, 'app/api/messages/send/route.js')),
    auth: require(path.join(BUILD, 'app/api/pusher/auth/route.js')),
    tidingsServer: require(path.join(BUILD, 'lib/tidings-server.js')),
    pusherClient: require(path.join(BUILD, 'lib/pusher-client.js')),
  };
}

/** An HTTP server routing POSTs to the route handlers with standard Request objects. */
async function startFront(routes) {
  const front = http.createServer(async (req, res) => {
    try {
      const handler = routes[new URL(req.url, 'http://x').pathname];
      if (!handler || req.method !== 'POST') {
        res.writeHead(404).end();
        return;
      }
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      const request = new Request(new URL(req.url, `http://${req.headers.host}`), {
        method: req.method,
        headers,
        body: Buffer.concat(chunks),
      });
      const response = await handler(request);
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (err) {
      res.writeHead(500).end(String(err && err.stack));
    }
  });
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${front.address().port}`,
    close: () => new Promise((resolve) => front.close(resolve)),
  };
}

/** Waits for a pusher-js connection. */
function connected(pusher) {
  return deadline(
    new Promise((resolve, reject) => {
      pusher.connection.bind('connected', resolve);
      pusher.connection.bind('failed', () => reject(new Error('pusher-js could not connect')));
    }),
    5000,
    'the pusher-js connection',
  );
}

/** Subscribes; resolves with the channel, or rejects with the auth error status. */
function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  return deadline(
    new Promise((resolve, reject) => {
      channel.bind('pusher:subscription_succeeded', () => resolve(channel));
      channel.bind('pusher:subscription_error', (e) => {
        const err = new Error(`subscription to ${name} refused (${e && e.status})`);
        err.status = e && e.status;
        reject(err);
      });
    }),
    5000,
    `the subscription to ${name}`,
  );
}

module.exports = { APP, deadline, startBroker, app, startFront, connected, subscribed };
