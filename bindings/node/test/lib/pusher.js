'use strict';
// A pusher-js (Node build) client pointed at a test server.
const PusherJS = require('pusher-js');
const { deadline } = require('./helpers');

PusherJS.logToConsole = false;
PusherJS.log = () => {};

// pusher-js's bundled WebSocket client arms a 30 s timer on close(); unref
// it so that a finished test process exits at once.
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

/** A connected client; `authorize({socketId, channelName})` returns the auth answer. */
async function connect(port, key, authorize) {
  const pusher = new PusherJS(key, {
    cluster: 'local',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: {
      customHandler: (params, callback) => {
        Promise.resolve()
          .then(() => authorize(params))
          .then((data) => callback(null, data), (err) => callback(err, null));
      },
    },
  });
  await deadline(
    new Promise((resolve, reject) => {
      pusher.connection.bind('connected', resolve);
      pusher.connection.bind('failed', () => reject(new Error('connection failed')));
    }),
    5000,
    'the pusher-js connection',
  );
  return pusher;
}

/** Subscribes and waits for pusher:subscription_succeeded. */
async function subscribe(pusher, name) {
  const channel = pusher.subscribe(name);
  await deadline(
    new Promise((resolve, reject) => {
      channel.bind('pusher:subscription_succeeded', resolve);
      channel.bind('pusher:subscription_error', (e) => reject(new Error(`subscription failed: ${JSON.stringify(e)}`)));
    }),
    5000,
    `the subscription to ${name}`,
  );
  return channel;
}

/** The data of the next `event` on `channel`. */
function nextOn(channel, event, ms = 5000) {
  return deadline(new Promise((resolve) => channel.bind(event, resolve)), ms, `${event} on ${channel.name}`);
}

module.exports = { connect, subscribe, nextOn };
