'use strict';
// The real client libraries pointed at a test server, and waiting helpers
// with deadlines (never bare sleeps).
const crypto = require('node:crypto');
const PusherJS = require('pusher-js');
const PusherServer = require('pusher');
const WebSocket = require('ws');
const { APP } = require('./server');

const DEFAULT_TIMEOUT_MS = 5000;

// pusher-js logs warnings through console by default; keep test output readable.
PusherJS.logToConsole = false;
PusherJS.log = () => {};

// The WebSocket client bundled in pusher-js's Node build (faye-websocket)
// arms a 30 s timer on every close() call, even on a socket the server has
// already closed (as after a 4009 termination): it would keep each test
// process alive 30 s past its last test. Unref that timer; nothing else
// changes.
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

/** A `pusher` (Node SDK) client for the server, as an app backend would build it. */
function serverSdk(server, overrides = {}) {
  return new PusherServer({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    port: String(server.port),
    useTLS: false,
    ...overrides,
  });
}

/**
 * A pusher-js client for the server. Private/presence channels are
 * authorized like an app's auth endpoint would, with the SDK's
 * `authorizeChannel` (`presence` is the member for presence channels); a
 * `user` enables `pusher.signin()` signed with `authenticateUser`.
 */
function client(server, { key = APP.key, presence, user, sdk, authorize, port, ...options } = {}) {
  const signer = sdk || serverSdk(server);
  const pusher = new PusherJS(key, {
    cluster: 'local',
    wsHost: '127.0.0.1',
    wsPort: port || server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          if (authorize) return authorize({ socketId, channelName }, callback);
          const data = channelName.startsWith('presence-')
            ? signer.authorizeChannel(socketId, channelName, presence)
            : signer.authorizeChannel(socketId, channelName);
          callback(null, data);
        } catch (e) {
          callback(e, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          if (!user) throw new Error('this test client has no user');
          callback(null, signer.authenticateUser(socketId, user));
        } catch (e) {
          callback(e, null);
        }
      },
    },
    ...options,
  });
  pusher.stateLog = [];
  pusher.connection.bind('state_change', ({ current }) => pusher.stateLog.push(current));
  return pusher;
}

/**
 * Resolves with the data of the first `event` of `target` (anything with
 * bind/unbind; `{data, metadata}` with `withMetadata`), or rejects at the deadline.
 */
function waitEvent(target, event, { timeout = DEFAULT_TIMEOUT_MS, filter = () => true, what, withMetadata = false } = {}) {
  let cancel;
  const promise = new Promise((resolve, reject) => {
    const handler = (data, metadata) => {
      if (!filter(data, metadata)) return;
      cancel();
      resolve(withMetadata ? { data, metadata } : data);
    };
    const timer = setTimeout(() => {
      cancel();
      reject(new Error(`timed out after ${timeout} ms waiting for ${what || event}`));
    }, timeout);
    cancel = () => {
      clearTimeout(timer);
      target.unbind(event, handler);
    };
    target.bind(event, handler);
  });
  // Stops waiting (the promise then never settles).
  promise.cancel = cancel;
  return promise;
}

/** Waits until a pusher-js client's connection is in `state`. */
function waitState(pusher, state, opts = {}) {
  if (pusher.connection.state === state) return Promise.resolve();
  return waitEvent(pusher.connection, 'state_change', {
    ...opts,
    filter: ({ current }) => current === state,
    what: `connection state ${state} (now ${pusher.connection.state})`,
  });
}

/** Connects a client and waits for `connected`. */
async function connected(server, opts) {
  const pusher = client(server, opts);
  await waitState(pusher, 'connected');
  return pusher;
}

/** Subscribes and waits for `pusher:subscription_succeeded`; returns the channel. */
async function subscribed(pusher, name, opts = {}) {
  const channel = pusher.subscribe(name);
  const ok = waitEvent(channel, 'pusher:subscription_succeeded', { what: `subscription to ${name}`, ...opts });
  const error = waitEvent(channel, 'pusher:subscription_error', { timeout: 3600 * 1000 });
  const failed = error.then((e) => {
    throw new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`);
  });
  try {
    channel.subscribedData = await Promise.race([ok, failed]);
  } finally {
    ok.cancel();
    error.cancel();
  }
  return channel;
}

/** Collects every `event` on a channel (or other bindable) into an array. */
function collect(target, event) {
  const seen = [];
  target.bind(event, (data, metadata) => seen.push({ data, metadata }));
  return seen;
}

/**
 * Resolves with `predicate()`'s value once it is truthy (it may be async),
 * checking every `interval` ms, or rejects at the deadline.
 */
function until(predicate, { timeout = DEFAULT_TIMEOUT_MS, interval = 10, what = 'a condition' } = {}) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeout;
    const check = async () => {
      let value;
      try {
        value = await predicate();
      } catch (e) {
        return reject(e);
      }
      if (value) return resolve(value);
      if (Date.now() > deadline) return reject(new Error(`timed out after ${timeout} ms waiting for ${what}`));
      setTimeout(check, interval);
    };
    check();
  });
}

/**
 * Triggers a marker event on `channel` through the HTTP API and waits for
 * the client to receive it: everything the server queued for that client on
 * that channel before has been delivered by then.
 */
async function barrier(sdk, pusherChannel) {
  const marker = `barrier-${crypto.randomBytes(4).toString('hex')}`;
  const got = waitEvent(pusherChannel, marker, { what: `the ${marker} marker on ${pusherChannel.name}` });
  await sdk.trigger(pusherChannel.name, marker, {});
  await got;
}

/** Waits until the server counts `count` subscriptions to `name` (HTTP API). */
function subscriptionCount(sdk, name, count) {
  return until(
    async () => {
      const res = await sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
      const body = await res.json();
      return (body.subscription_count || 0) === count;
    },
    { interval: 20, what: `${count} subscriptions to ${name}` },
  );
}

/** Disconnects pusher-js clients, ignoring ones already gone. */
function disconnectAll(...clients) {
  for (const c of clients.flat()) {
    try {
      c.disconnect();
    } catch {
      /* already disconnected */
    }
  }
}

/** A unique channel name suffix so that tests in one file never share channels. */
function unique(prefix) {
  return `${prefix}${crypto.randomBytes(6).toString('hex')}`;
}

/**
 * A raw WebSocket to /app/{key}: frames are parsed JSON (with `data`
 * decoded when it is a JSON string), and `close` resolves `{code, reason}`.
 */
function rawSocket(server, key = APP.key, query = '?protocol=7&client=js&version=8.6.0&flash=false') {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/app/${key}${query}`);
  const frames = [];
  const waiters = [];
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => {});
  ws.on('message', (buf) => {
    const frame = JSON.parse(buf.toString());
    if (typeof frame.data === 'string') {
      try {
        frame.parsed = JSON.parse(frame.data);
      } catch {
        /* event data that is not JSON */
      }
    } else {
      frame.parsed = frame.data;
    }
    frames.push(frame);
    for (const w of [...waiters]) w();
  });
  ws.frames = frames;
  /** Next frame (from the start of the socket's life) matching `filter` that was not yet taken. */
  let taken = 0;
  ws.next = (filter = () => true, { timeout = DEFAULT_TIMEOUT_MS, what = 'a frame' } = {}) =>
    new Promise((resolve, reject) => {
      const look = () => {
        for (let i = taken; i < frames.length; i++) {
          if (filter(frames[i])) {
            taken = i + 1;
            cleanup();
            resolve(frames[i]);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}; frames: ${JSON.stringify(frames)}`));
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        const i = waiters.indexOf(look);
        if (i >= 0) waiters.splice(i, 1);
      };
      waiters.push(look);
      look();
    });
  ws.sendJson = (obj) => ws.send(JSON.stringify(obj));
  return ws;
}

/** Pusher HTTP API request signing (auth_version 1.0), for hand-made requests. */
function signedUrl(server, method, path, { body, params = {}, secret = APP.secret, key = APP.key, timestamp } = {}) {
  const query = {
    auth_key: key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...params,
  };
  if (body !== undefined && body !== '') {
    query.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  }
  const toSign = Object.keys(query)
    .map((k) => [k.toLowerCase(), query[k]])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const signature = crypto.createHmac('sha256', secret).update(`${method}\n${path}\n${toSign}`).digest('hex');
  const qs = new URLSearchParams({ ...query, auth_signature: signature });
  return `${server.url}${path}?${qs}`;
}

/** Sends a request to the server and returns `{status, body, json}`. */
async function request(url, { method = 'GET', body, headers = {} } = {}) {
  const res = await fetch(url, {
    method,
    body,
    headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: text, json, headers: res.headers };
}

module.exports = {
  APP,
  PusherJS,
  barrier,
  subscriptionCount,
  PusherServer,
  client,
  collect,
  connected,
  disconnectAll,
  rawSocket,
  request,
  serverSdk,
  signedUrl,
  subscribed,
  unique,
  until,
  waitEvent,
  waitState,
};
