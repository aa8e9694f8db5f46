'use strict';
// Errors: a TidingsError with a stable code (from the status name) and the
// engine's message, as a rejected Promise for engine calls.
const assert = require('node:assert/strict');
const { test, before, after } = require('node:test');
const { Engine, Server, TidingsError, Status } = require('..');
const { rejectsWith, throwsWith, scratch } = require('./lib/helpers');

let engine;
before(async () => {
  engine = await Engine.open({ store: 'memory:' });
});
after(async () => {
  await engine.close();
});

test('a bad user id', async () => {
  await rejectsWith(assert, engine.send({ from: 'a b', to: '2', body: 'x' }), 'TIDINGS_INVALID_ARGUMENT', 'a b');
  await rejectsWith(assert, engine.inbox('a b'), 'TIDINGS_INVALID_ARGUMENT', 'a b');
  await rejectsWith(assert, engine.send({ from: '', to: '2', body: 'x' }), 'TIDINGS_INVALID_ARGUMENT');
});

test('an empty body', async () => {
  await rejectsWith(assert, engine.send({ from: '1', to: '2', body: '   ' }), 'TIDINGS_INVALID_ARGUMENT', 'empty');
  await rejectsWith(assert, engine.send({ from: '1', to: '2', body: '' }), 'TIDINGS_INVALID_ARGUMENT', 'empty');
});

test('not the sender: edit and delete are FORBIDDEN', async () => {
  const { message } = await engine.send({ from: '1', to: '2', body: 'mine' });
  await rejectsWith(assert, engine.edit('2', message.id, 'yours now'), 'TIDINGS_FORBIDDEN');
  await rejectsWith(assert, engine.delete('2', message.id), 'TIDINGS_FORBIDDEN');
  assert.equal((await engine.message(message.id)).body, 'mine');
});

test('not a member of the conversation', async () => {
  await rejectsWith(
    assert,
    engine.send({ from: '3', conversation_id: '1-2', body: 'x' }),
    'TIDINGS_FORBIDDEN',
    'not in conversation',
  );
  await rejectsWith(assert, engine.markRead('3', '1-2', 1), 'TIDINGS_FORBIDDEN');
});

test('an invalid engine config', async () => {
  await rejectsWith(assert, Engine.open({ stor: 'memory:' }), 'TIDINGS_CONFIG', 'stor');
  await rejectsWith(assert, Engine.open({ store: 'nosuchscheme://x' }), 'TIDINGS_CONFIG');
  await rejectsWith(assert, Engine.open({ store: 'memory:', transports: [{ kind: 'carrier-pigeon' }] }), 'TIDINGS_CONFIG', 'carrier-pigeon');
  await rejectsWith(assert, Engine.open('{"store":'), 'TIDINGS_INVALID_JSON', 'config_json');
  await rejectsWith(assert, Engine.open(42), 'TIDINGS_CONFIG', 'config');
  await rejectsWith(assert, Engine.open([]), 'TIDINGS_CONFIG', 'config');
});

test('an invalid server config', async () => {
  await rejectsWith(assert, Server.start({ lisen: 'x' }), 'TIDINGS_CONFIG', 'lisen');
  await rejectsWith(assert, Server.start({ listen: 'nowhere', data_dir: scratch() }), 'TIDINGS_CONFIG', 'listen');
  await rejectsWith(assert, Server.start('{'), 'TIDINGS_INVALID_JSON');
});

test('unknown request fields, bad conversation ids, limits out of range', async () => {
  await rejectsWith(assert, engine.send({ from: '1', to: '2', bdy: 'x' }), 'TIDINGS_INVALID_ARGUMENT', 'bdy');
  await rejectsWith(assert, engine.send('{"from": 1,'), 'TIDINGS_INVALID_JSON', 'request_json');
  await rejectsWith(assert, engine.history('2-1'), 'TIDINGS_INVALID_ARGUMENT', 'conversation id');
  await rejectsWith(assert, engine.history('1-2', { limit: 0 }), 'TIDINGS_INVALID_ARGUMENT', 'limit');
  await rejectsWith(assert, engine.history('1-2', { limit: -1 }), 'TIDINGS_INVALID_ARGUMENT', 'limit');
  await rejectsWith(assert, engine.messagesAfter('1-2', 0, { max: 1.5 }), 'TIDINGS_INVALID_ARGUMENT', 'max');
  await rejectsWith(assert, engine.message(1.5), 'TIDINGS_INVALID_ARGUMENT', 'messageId');
  await rejectsWith(assert, engine.message(2n ** 64n), 'TIDINGS_INVALID_ARGUMENT', 'range');
  await rejectsWith(assert, engine.message(424242), 'TIDINGS_NOT_FOUND', '424242');
});

test('arguments JavaScript cannot hand to C unchanged are refused, never repaired', async () => {
  await rejectsWith(assert, engine.inbox({}), 'TIDINGS_INVALID_ARGUMENT', 'userId');
  await rejectsWith(assert, engine.inbox(undefined), 'TIDINGS_INVALID_ARGUMENT', 'userId');
  await rejectsWith(assert, engine.typing('1', 'a\0b'), 'TIDINGS_INVALID_ARGUMENT', 'NUL');
  await rejectsWith(assert, engine.send({ from: '1', to: '2', body: 'half \ud800 pair' }), 'TIDINGS_INVALID_UTF8', 'request');
  await rejectsWith(assert, engine.react('1', 1, '\udfff'), 'TIDINGS_INVALID_UTF8', 'emoji');
  await rejectsWith(assert, engine.send(null), 'TIDINGS_INVALID_ARGUMENT', 'request');
  await rejectsWith(assert, engine.send({ from: '1', to: '2', body: 'x', clientMsgId: 'a', client_msg_id: 'b' }), 'TIDINGS_INVALID_ARGUMENT', 'both');
});

test('errors are TidingsError instances with code, status and message', async () => {
  const err = await engine.send({ from: 'a b', to: '2', body: 'x' }).catch((e) => e);
  assert.ok(err instanceof TidingsError);
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'TidingsError');
  assert.equal(err.code, 'TIDINGS_INVALID_ARGUMENT');
  assert.equal(err.status, Status.INVALID_ARGUMENT);
  assert.ok(err.message.length > 0);
  assert.match(String(err.stack), /TidingsError/);
});

test('synchronous helpers throw', () => {
  const { conversationId, channelAuth } = require('..');
  throwsWith(assert, () => conversationId('a b', '1'), 'TIDINGS_INVALID_ARGUMENT', 'a b');
  throwsWith(assert, () => channelAuth('k', 'secret', '1234:1', 'private-x'), 'TIDINGS_INVALID_ARGUMENT', 'socket_id');
  throwsWith(assert, () => channelAuth('k', null, '1.1', 'private-x'), 'TIDINGS_INVALID_ARGUMENT', 'appSecret');
});
