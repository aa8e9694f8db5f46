'use strict';
// tidings for Node.js: an engine, its event streams, the in-process server
// and the auth helpers, over the tidings C ABI (see src/addon.cc).
//
// Values cross as the engine's JSON documents (snake_case keys, as pusher-js
// clients receive them); arguments are checked here, so that the addon only
// ever sees strings and integers.
const { EventEmitter } = require('node:events');
const path = require('node:path');

/** An error from tidings: `code` is stable (`TIDINGS_NOT_FOUND`), `status` the C status number. */
class TidingsError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'TidingsError';
    this.code = code;
    this.status = status;
  }
}

// The numbers of the C ABI's tidings_status, by stable name.
const Status = Object.freeze({
  OK: 0,
  TIMEOUT: 1,
  CLOSED: 2,
  NULL_ARGUMENT: 100,
  INVALID_UTF8: 101,
  INVALID_JSON: 102,
  REENTRANT: 103,
  PANIC: 104,
  INVALID_ARGUMENT: 105,
  NOT_FOUND: 106,
  FORBIDDEN: 107,
  CONFLICT: 108,
  STORAGE: 109,
  TRANSPORT: 110,
  CONFIG: 111,
  SHUT_DOWN: 112,
  UNAUTHORIZED: 113,
  UNKNOWN: 199,
});

function loadAddon() {
  const file = process.env.TIDINGS_NODE_ADDON || path.join(__dirname, 'build', 'Release', 'tidings.node');
  try {
    return require(file);
  } catch (e) {
    if (e && e.code === 'TIDINGS_ABI_MISMATCH') throw e;
    const err = new Error(
      `tidings: cannot load the native addon ${file} (${e && e.message}); ` +
        'build it with `npm install` or `npm run build` in the tidings package',
    );
    err.code = 'TIDINGS_ADDON_MISSING';
    err.cause = e;
    throw err;
  }
}

const native = loadAddon();
native.init(TidingsError);

/** The C ABI major version this package speaks; the addon refuses any other at load. */
const ABI_VERSION_MAJOR = native.abiVersionMajor;

function error(status, message) {
  const name = Object.keys(Status).find((k) => Status[k] === status) || 'UNKNOWN';
  return new TidingsError(message, `TIDINGS_${name}`, status);
}

function invalid(message) {
  return error(Status.INVALID_ARGUMENT, message);
}

// A string for the C ABI: no NUL (C would cut it short), no lone surrogate
// (UTF-8 cannot carry one; tidings never repairs text).
function str(value, name) {
  if (typeof value !== 'string') throw invalid(`${name} must be a string, not ${describe(value)}`);
  if (value.includes('\0')) throw invalid(`${name} contains a NUL character`);
  if (!value.isWellFormed()) throw error(Status.INVALID_UTF8, `${name} is not valid Unicode (a lone surrogate)`);
  return value;
}

// A user id: a string, or an integer number taken as its decimal string.
function userId(value, name = 'userId') {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return str(value, name);
}

function int64(value, name) {
  if (typeof value === 'bigint') {
    if (value < -(2n ** 63n) || value >= 2n ** 63n) throw invalid(`${name} is out of range`);
    return value;
  }
  if (typeof value === 'string' && /^-?\d{1,19}$/.test(value)) return int64(BigInt(value), name);
  if (!Number.isSafeInteger(value)) throw invalid(`${name} must be an integer, not ${describe(value)}`);
  return value;
}

function uint32(value, name) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw invalid(`${name} must be an integer from 0 to 4294967295, not ${describe(value)}`);
  }
  return value;
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return typeof value;
}

// A JSON document argument: an object (stringified here) or a JSON string.
function json(value, name, status = Status.INVALID_ARGUMENT) {
  if (typeof value === 'string') return str(value, name);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw error(status, `${name} must be an object or a JSON string, not ${describe(value)}`);
  }
  let text;
  try {
    text = JSON.stringify(value, (key, v) => {
      // JSON.stringify would escape a lone surrogate as \udXXX, which is not UTF-8 either.
      if (!key.isWellFormed() || (typeof v === 'string' && !v.isWellFormed())) {
        throw error(Status.INVALID_UTF8, `${name} is not valid Unicode (a lone surrogate in ${key || 'a value'})`);
      }
      return typeof v === 'bigint' ? Number(v) : v;
    });
  } catch (e) {
    if (e instanceof TidingsError) throw e;
    throw error(Status.INVALID_JSON, `${name} cannot be written as JSON: ${e.message}`);
  }
  return str(text, name);
}

function options(value, name) {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object') throw invalid(`${name} must be an object, not ${describe(value)}`);
  return value;
}

const SEND_ALIASES = { clientMsgId: 'client_msg_id', conversationId: 'conversation_id' };

// The engine's send request, with camelCase aliases and numeric user ids accepted.
function sendRequest(request) {
  if (typeof request === 'string') return str(request, 'request');
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw invalid(`request must be an object such as {from, to, body}, not ${describe(request)}`);
  }
  const out = {};
  for (const [key, value] of Object.entries(request)) {
    const name = SEND_ALIASES[key] || key;
    if (name in out) throw invalid(`request has both ${key} and ${name}`);
    out[name] = (name === 'from' || name === 'to') && typeof value === 'number' ? userId(value, name) : value;
  }
  return json(out, 'request');
}

function configJson(config, name) {
  return json(config === undefined ? {} : config, name, Status.CONFIG);
}

// Runs a listener called from the addon: an exception it throws becomes an
// uncaught exception on the next tick (as for any emitter) instead of
// unwinding into native code.
function guarded(fn) {
  try {
    fn();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

const kCreate = Symbol('tidings.create');
const kEndStreams = Symbol('tidings.endStreams');

/** An engine: a store, the outbox worker and the transports. */
class Engine {
  #handle;
  #closing = null;
  #subscriptions = new Set();
  #onClose;

  /** @internal Use `Engine.open(config)` or `server.engine()`. */
  constructor(token, handle, onClose) {
    if (token !== kCreate) throw new TypeError('use Engine.open(config) or server.engine()');
    this.#handle = handle;
    this.#onClose = onClose;
  }

  /** Opens an engine from an `EngineConfig` (object or JSON string). */
  static async open(config) {
    const text = configJson(config, 'config');
    return new Engine(kCreate, await native.engineOpen(text));
  }

  /** Whether `close()` was called. */
  get closed() {
    return this.#closing !== null;
  }

  #live() {
    if (this.#closing !== null) throw error(Status.SHUT_DOWN, 'the engine is closed');
    return this.#handle;
  }

  async send(request) {
    return native.engineSend(this.#live(), sendRequest(request));
  }

  async history(conversationId, opts) {
    const { before = 0, limit = 50 } = options(opts, 'options');
    return native.engineHistory(
      this.#live(),
      str(conversationId, 'conversationId'),
      int64(before, 'before'),
      uint32(limit, 'limit'),
    );
  }

  async messagesAfter(conversationId, after = 0, opts) {
    const { max = 100 } = options(opts, 'options');
    return native.engineMessagesAfter(
      this.#live(),
      str(conversationId, 'conversationId'),
      int64(after, 'after'),
      uint32(max, 'max'),
    );
  }

  async message(messageId) {
    return native.engineMessage(this.#live(), int64(messageId, 'messageId'));
  }

  async markRead(user, conversationId, upTo) {
    return native.engineMarkRead(this.#live(), userId(user), str(conversationId, 'conversationId'), int64(upTo, 'upTo'));
  }

  async unread(user, conversationId) {
    return native.engineUnread(this.#live(), userId(user), str(conversationId, 'conversationId'));
  }

  async inbox(user, opts) {
    const { limit = 50 } = options(opts, 'options');
    return native.engineInbox(this.#live(), userId(user), uint32(limit, 'limit'));
  }

  async search(user, query, opts) {
    const { max = 50 } = options(opts, 'options');
    return native.engineSearch(this.#live(), userId(user), str(query, 'query'), uint32(max, 'max'));
  }

  async typing(user, conversationId) {
    await native.engineTyping(this.#live(), userId(user), str(conversationId, 'conversationId'));
  }

  async edit(user, messageId, body) {
    return native.engineEdit(this.#live(), userId(user), int64(messageId, 'messageId'), str(body, 'body'));
  }

  async delete(user, messageId) {
    return native.engineDelete(this.#live(), userId(user), int64(messageId, 'messageId'));
  }

  async react(user, messageId, emoji) {
    return native.engineReact(this.#live(), userId(user), int64(messageId, 'messageId'), str(emoji, 'emoji'));
  }

  async unreact(user, messageId) {
    return native.engineUnreact(this.#live(), userId(user), int64(messageId, 'messageId'));
  }

  /** Shuts the engine down (calls then fail with TIDINGS_SHUT_DOWN, streams end); `close()` still frees it. */
  async shutdown() {
    await native.engineShutdown(this.#live());
    await this[kEndStreams]();
  }

  // The C ABI ends a stream once the engine is freed, not when it is shut
  // down: end them here, as the header documents.
  async [kEndStreams]() {
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
  }

  /** Subscribes to every event the engine delivers from now on. */
  events(opts) {
    const handle = this.#live();
    const sub = new Subscription(kCreate, handle, options(opts, 'options'), () => this.#subscriptions.delete(sub));
    this.#subscriptions.add(sub);
    return sub;
  }

  /**
   * Closes every subscription, waits for the calls in flight, then frees the
   * engine (an engine opened here is shut down, delivering pending events).
   */
  close() {
    if (this.#closing === null) {
      const subs = [...this.#subscriptions];
      this.#closing = (async () => {
        await Promise.all(subs.map((s) => s.close()));
        await native.engineClose(this.#handle);
        if (this.#onClose) this.#onClose(this);
      })();
    }
    return this.#closing;
  }
}

/**
 * One stream of engine events: an EventEmitter (`'event'`, `'end'`,
 * `'error'`) and an async iterable. Its pump thread never keeps the process
 * alive (see `ref()`).
 */
class Subscription extends EventEmitter {
  #handle;
  #closing = false;
  #ended = false;
  #done;
  #resolveDone;
  #onEnd;
  #capacity;

  /** @internal Use `engine.events()`. */
  constructor(token, engineHandle, opts, onEnd) {
    if (token !== kCreate) throw new TypeError('use engine.events()');
    super();
    const { capacity = 1024 } = opts;
    if (!Number.isInteger(capacity) || capacity < 1) throw invalid('capacity must be a positive integer');
    this.#capacity = capacity;
    this.#onEnd = onEnd;
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    this.#handle = native.engineSubscribe(
      engineHandle,
      (text) => this.#deliver(text),
      (err) => this.#finish(err),
    );
  }

  /** Whether the stream has ended (closed, or its engine shut down). */
  get closed() {
    return this.#ended;
  }

  #deliver(text) {
    if (this.#closing) return;
    const event = JSON.parse(text);
    guarded(() => this.emit('event', event));
  }

  #finish(err) {
    this.#ended = true;
    this.#onEnd();
    this.#resolveDone(err || null);
    if (err && this.listenerCount('error') > 0) guarded(() => this.emit('error', err));
    guarded(() => this.emit('end', err || null));
  }

  /** Stops the stream; resolves once its pump thread is joined and the stream freed. */
  async close() {
    if (!this.#closing && !this.#ended) {
      this.#closing = true;
      // Keep the loop alive until the pump has wound down, so that awaiting
      // close() at the very end of a program still resolves.
      native.subscriptionRef(this.#handle, true);
      native.subscriptionClose(this.#handle);
    }
    this.#closing = true;
    await this.#done;
  }

  /** Keeps the process alive while the stream is open (like a socket). */
  ref() {
    if (!this.#ended) native.subscriptionRef(this.#handle, true);
    return this;
  }

  /** The default: the stream does not keep the process alive. */
  unref() {
    if (!this.#ended && !this.#closing) native.subscriptionRef(this.#handle, false);
    return this;
  }

  /**
   * Iterates events until the stream ends. At most `capacity` events wait
   * unread; past that they are dropped and one `lagged` event says how many.
   */
  [Symbol.asyncIterator]() {
    const queue = [];
    let dropped = 0;
    let waiter = null;
    let finished = this.#ended;
    let failure = null;
    const lagged = () => {
      queue.push({ event: 'lagged', channel: null, data: { dropped } });
      dropped = 0;
    };
    const wake = () => {
      if (!waiter) return;
      const w = waiter;
      waiter = null;
      if (queue.length > 0) w.resolve({ value: queue.shift(), done: false });
      else if (failure) w.reject(failure);
      else w.resolve({ value: undefined, done: true });
    };
    const onEvent = (event) => {
      if (queue.length >= this.#capacity) {
        dropped++;
        return;
      }
      if (dropped > 0) lagged();
      queue.push(event);
      wake();
    };
    const onEnd = (err) => {
      finished = true;
      failure = err;
      if (dropped > 0) lagged();
      detach();
      wake();
    };
    const detach = () => {
      this.off('event', onEvent);
      this.off('end', onEnd);
    };
    this.on('event', onEvent);
    this.on('end', onEnd);
    return {
      next: () => {
        if (queue.length === 0 && dropped > 0) lagged();
        if (queue.length > 0) return Promise.resolve({ value: queue.shift(), done: false });
        if (finished) {
          if (failure) {
            const f = failure;
            failure = null;
            return Promise.reject(f);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiter = { resolve, reject };
        });
      },
      return: async () => {
        detach();
        finished = true;
        queue.length = 0;
        await this.close();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

/** `tidings serve` started in this process. A running server keeps the process alive (see `unref()`). */
class Server {
  #handle;
  #address;
  #engines = new Set();
  #keepAlive;
  #stopping = null;
  #closing = null;

  /** @internal Use `Server.start(config)`. */
  constructor(token, handle, address) {
    if (token !== kCreate) throw new TypeError('use Server.start(config)');
    this.#handle = handle;
    this.#address = address;
    // Keeps the process alive while the server runs, and keeps this object
    // reachable (so never collected, which would free the server).
    const self = this;
    this.#keepAlive = setInterval(() => self, 1 << 30);
  }

  /** Starts a server; `{"listen": "127.0.0.1:0"}` picks a free port. */
  static async start(config) {
    const { server, address } = await native.serverStart(configJson(config, 'config'));
    return new Server(kCreate, server, address);
  }

  /** The address it listens on, such as `127.0.0.1:43615`. */
  get address() {
    return this.#address;
  }

  /** The port it listens on. */
  get port() {
    return Number(this.#address.slice(this.#address.lastIndexOf(':') + 1));
  }

  /** `{address, running, app: {id, key, secret}}`. */
  info() {
    if (this.#closing !== null) throw error(Status.SHUT_DOWN, 'the server is closed');
    return native.serverInfo(this.#handle);
  }

  /** A handle to the server's engine: its sends reach the server's WebSocket clients. */
  engine() {
    if (this.#closing !== null) throw error(Status.SHUT_DOWN, 'the server is closed');
    const engine = new Engine(kCreate, native.serverEngine(this.#handle), (e) => this.#engines.delete(e));
    this.#engines.add(engine);
    return engine;
  }

  /** Stops gracefully (WebSockets closed with 4200, pending events delivered, the engine shut down). */
  stop() {
    if (this.#stopping === null) {
      this.#stopping = native
        .serverStop(this.#handle)
        .then(() => Promise.all([...this.#engines].map((e) => e[kEndStreams]())))
        .then(() => undefined)
        .finally(() => clearInterval(this.#keepAlive));
    }
    return this.#stopping;
  }

  /** Frees the engine handles it gave out, stops the server and frees it. */
  close() {
    if (this.#closing === null) {
      this.#closing = (async () => {
        try {
          await Promise.all([...this.#engines].map((e) => e.close()));
          await this.stop();
        } finally {
          clearInterval(this.#keepAlive);
          await native.serverClose(this.#handle);
        }
      })();
    }
    return this.#closing;
  }

  ref() {
    this.#keepAlive.ref();
    return this;
  }

  unref() {
    this.#keepAlive.unref();
    return this;
  }
}

if (typeof Symbol.asyncDispose === 'symbol') {
  for (const C of [Engine, Subscription, Server]) {
    Object.defineProperty(C.prototype, Symbol.asyncDispose, {
      value() {
        return this.close();
      },
      configurable: true,
      writable: true,
    });
  }
}

/** The `auth` value for a private channel: answer pusher-js with `{auth}`. */
function channelAuth(appKey, appSecret, socketId, channel) {
  return native.channelAuth(str(appKey, 'appKey'), str(appSecret, 'appSecret'), str(socketId, 'socketId'), str(channel, 'channel'));
}

/** Signs a presence subscription; answer pusher-js with the returned `{auth, channel_data}` as is. */
function presenceAuth(appKey, appSecret, socketId, channel, channelData) {
  const data = json(channelData, 'channelData');
  const auth = native.presenceAuth(
    str(appKey, 'appKey'),
    str(appSecret, 'appSecret'),
    str(socketId, 'socketId'),
    str(channel, 'channel'),
    data,
  );
  return { auth, channel_data: data };
}

/** Signs a `pusher:signin`; answer pusher-js with the returned `{auth, user_data}` as is. */
function userAuth(appKey, appSecret, socketId, userData) {
  const data = json(userData, 'userData');
  const auth = native.userAuth(str(appKey, 'appKey'), str(appSecret, 'appSecret'), str(socketId, 'socketId'), data);
  return { auth, user_data: data };
}

/** The conversation id of two users (`"1-18"`), whichever order they come in. */
function conversationId(a, b) {
  return native.conversationId(userId(a, 'userA'), userId(b, 'userB'));
}

/** `{conversation_id, members, presence}` for `private-`/`presence-conversation-{a}-{b}`. */
function conversationOfChannel(channel) {
  return JSON.parse(native.conversationOfChannel(str(channel, 'channel')));
}

/** A user token for `tidings serve`'s chat API and auth endpoints (0: one day). */
function tokenMint(appSecret, user, ttlSeconds = 0) {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) throw invalid('ttlSeconds must be a non-negative integer');
  return native.tokenMint(str(appSecret, 'appSecret'), userId(user), ttlSeconds);
}

/** `{user, exp}` of a valid token; a bad one throws TIDINGS_UNAUTHORIZED. */
function tokenVerify(appSecret, token) {
  return JSON.parse(native.tokenVerify(str(appSecret, 'appSecret'), str(token, 'token')));
}

const LOG_LEVELS = Object.freeze({ off: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 });
const LEVEL_NAMES = Object.keys(LOG_LEVELS);

/**
 * Sends tidings' log lines up to `level` to `sink(level, target, message)`
 * (never blocking the engine: lines are dropped when JavaScript falls far
 * behind); `null` stops them. Process-wide.
 */
function setLogger(sink, level = 'info') {
  if (sink !== null && typeof sink !== 'function') throw invalid('sink must be a function or null');
  const n = typeof level === 'number' ? level : LOG_LEVELS[level];
  if (!Number.isInteger(n) || n < 0 || n > 5) throw invalid(`level must be one of ${LEVEL_NAMES.join(', ')}`);
  if (sink === null || n === 0) {
    native.setLogger(null, 0);
    return;
  }
  native.setLogger((lvl, target, message) => guarded(() => sink(LEVEL_NAMES[lvl] || String(lvl), target, message)), n);
}

/** The loaded library's C ABI version, `(major << 16) | minor`. */
function abiVersion() {
  return native.abiVersion;
}

/** The loaded library's version, such as `"0.1.0"`. */
function version() {
  return native.version;
}

module.exports = {
  Engine,
  Subscription,
  Server,
  TidingsError,
  Status,
  ABI_VERSION_MAJOR,
  channelAuth,
  presenceAuth,
  userAuth,
  conversationId,
  conversationOfChannel,
  tokenMint,
  tokenVerify,
  setLogger,
  abiVersion,
  version,
};
