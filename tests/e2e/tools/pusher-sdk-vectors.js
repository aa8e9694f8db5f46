'use strict';
// Signed requests exactly as the official `pusher` Node SDK sends them, for
// fixed inputs and a fixed clock: the test vectors of tidings' Pusher HTTP
// transport (core/tests/fixtures/pusher_sdk_vectors.json, read by the unit
// tests of core/src/transport/pusher.rs). The SDK talks to a local server
// that records path, query and body; nothing is computed here.
//
//   node tools/pusher-sdk-vectors.js > ../../core/tests/fixtures/pusher_sdk_vectors.json
//
// test/sdk-vectors.test.js checks that the committed file is what this prints.
const http = require('node:http');
const Pusher = require('pusher');

const CREDENTIALS = { appId: '9', key: 'vector-key', secret: 'vector-secret-7e1f' };
const TIMESTAMP = 1796100000; // the SDK's clock, in seconds

const message = (id, seq, body) =>
  JSON.stringify({ id, conversation_id: '1-18', seq, sender_id: '1', body, client_msg_id: null, created_at: 1796100000123, edited_at: null, deleted_at: null, reactions: [] });

const CASES = [
  {
    name: 'one new-message',
    batch: [{ channel: 'private-conversation-1-18', name: 'new-message', data: message(1, 1, 'Hello teacher') }],
  },
  {
    name: 'ten events with characters JSON escapes or keeps',
    batch: [
      { channel: 'private-conversation-1-18', name: 'new-message', data: message(2, 2, 'quotes " and \\ backslash') },
      { channel: 'private-conversation-1-18', name: 'new-message', data: message(3, 3, 'line\nbreak\ttab\r\u0001\u001f') },
      { channel: 'private-conversation-1-18', name: 'new-message', data: message(4, 4, 'é ü ß 中文 😀 \u2028 \u2029') },
      { channel: 'private-conversation-1-18', name: 'new-message', data: message(5, 5, '</script><b>&amp;</b> /slash') },
      { channel: 'private-conversation-1-18', name: 'typing', data: '{"user_id":"1","conversation_id":"1-18"}' },
      { channel: 'private-conversation-1-18', name: 'messages-read', data: '{"user_id":"18","seq":5}' },
      { channel: 'private-conversation-a=2Db-c', name: 'reaction', data: '{"message_id":5,"user_id":"18","emoji":"👍🏽"}' },
      { channel: 'presence-conversation-1-18', name: 'message-edited', data: message(5, 5, 'edited') },
      { channel: 'private-conversation-9-10', name: 'message-deleted', data: message(6, 1, '') },
      { channel: '#server-to-user-18', name: 'notice', data: 'plain text, not JSON' },
    ],
  },
  {
    name: 'data of exactly 10240 bytes',
    batch: [{ channel: 'private-conversation-1-18', name: 'new-message', data: 'x'.repeat(10240) }],
  },
  { name: 'trigger to two channels, excluding a socket', trigger: { channels: ['a', 'private-b'], event: 'ping', data: '{"n":1}', socket_id: '123.456' } },
  { name: 'channels query', get: { path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } } },
];

async function main() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      seen.push({ method: req.method, path: url.pathname, query: url.search.slice(1), body });
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const pusher = new Pusher({ ...CREDENTIALS, host: '127.0.0.1', port: server.address().port, useTLS: false });
  const realNow = Date.now;
  Date.now = () => TIMESTAMP * 1000;
  const vectors = [];
  try {
    for (const c of CASES) {
      seen.length = 0;
      if (c.batch) await pusher.triggerBatch(c.batch);
      else if (c.trigger) await pusher.trigger(c.trigger.channels, c.trigger.event, c.trigger.data, { socket_id: c.trigger.socket_id });
      else await pusher.get(c.get);
      const [request] = seen;
      vectors.push({ name: c.name, events: c.batch || null, timestamp: TIMESTAMP, ...request });
    }
  } finally {
    Date.now = realNow;
    server.close();
  }
  return {
    generated_by: `pusher ${require('pusher/package.json').version} (Node SDK) via tests/e2e/tools/pusher-sdk-vectors.js`,
    ...CREDENTIALS,
    vectors,
  };
}

module.exports = { main };
if (require.main === module) {
  main().then((out) => process.stdout.write(`${JSON.stringify(out, null, 2)}\n`), (err) => {
    console.error(err);
    process.exit(1);
  });
}
