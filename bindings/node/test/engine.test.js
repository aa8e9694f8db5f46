'use strict';
// Every Engine method against a memory engine, and an SQLite engine that
// keeps its messages across a reopen.
const assert = require('node:assert/strict');
const path = require('node:path');
const { test, before, after } = require('node:test');
const { Engine, Status, abiVersion, version, ABI_VERSION_MAJOR } = require('..');
const { rejectsWith, scratch } = require('./lib/helpers');

let engine;
before(async () => {
  engine = await Engine.open({ store: 'memory:' });
});
after(async () => {
  await engine.close();
});

test('versions: the loaded library speaks this major', () => {
  assert.equal(abiVersion() >>> 16, ABI_VERSION_MAJOR);
  assert.equal(ABI_VERSION_MAJOR, 1);
  assert.match(version(), /^\d+\.\d+\.\d+/);
  assert.equal(Status.INVALID_ARGUMENT, 105);
});

test('send stores a message and returns it in full', async () => {
  const sent = await engine.send({ from: '1', to: '18', body: 'Hello' });
  assert.equal(sent.created, true);
  const m = sent.message;
  assert.equal(m.conversation_id, '1-18');
  assert.equal(m.seq, 1);
  assert.equal(m.sender_id, '1');
  assert.equal(m.body, 'Hello');
  assert.equal(m.client_msg_id, null);
  assert.equal(typeof m.id, 'number');
  assert.ok(Math.abs(m.created_at - Date.now()) < 60_000, 'created_at is Unix ms');
  assert.equal(m.edited_at, null);
  assert.equal(m.deleted_at, null);
  assert.deepEqual(m.reactions, []);
});

test('send: numeric ids, conversation_id instead of to, camelCase aliases, JSON strings', async () => {
  const a = await engine.send({ from: 18, conversationId: '1-18', body: 'by conversation' });
  assert.equal(a.message.sender_id, '18');
  assert.equal(a.message.conversation_id, '1-18');
  const b = await engine.send(JSON.stringify({ from: '1', conversation_id: '1-18', body: 'as JSON' }));
  assert.equal(b.message.seq, a.message.seq + 1);
});

test('send is idempotent on client_msg_id', async () => {
  const first = await engine.send({ from: '2', to: '3', body: 'once', clientMsgId: 'k-1' });
  const again = await engine.send({ from: '2', to: '3', body: 'once', client_msg_id: 'k-1' });
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.message.id, first.message.id);
  assert.equal(again.message.client_msg_id, 'k-1');
  const page = await engine.history('2-3');
  assert.equal(page.items.length, 1);
});

test('history pages newest first with next_before', async () => {
  for (let i = 1; i <= 5; i++) await engine.send({ from: '4', to: '5', body: `m${i}` });
  const first = await engine.history('4-5', { limit: 2 });
  assert.deepEqual(first.items.map((m) => m.body), ['m5', 'm4']);
  assert.equal(first.next_before, 4);
  const second = await engine.history('4-5', { before: first.next_before, limit: 2 });
  assert.deepEqual(second.items.map((m) => m.body), ['m3', 'm2']);
  const last = await engine.history('4-5', { before: 2, limit: 10 });
  assert.deepEqual(last.items.map((m) => m.body), ['m1']);
  assert.equal(last.next_before, null);
  const all = await engine.history('4-5');
  assert.equal(all.items.length, 5);
});

test('messagesAfter returns what a client missed, oldest first', async () => {
  const after2 = await engine.messagesAfter('4-5', 2);
  assert.deepEqual(after2.map((m) => m.seq), [3, 4, 5]);
  const capped = await engine.messagesAfter('4-5', 0, { max: 2 });
  assert.deepEqual(capped.map((m) => m.seq), [1, 2]);
  assert.deepEqual(await engine.messagesAfter('4-5', 5), []);
});

test('message by id (number, bigint or string)', async () => {
  const { message } = await engine.send({ from: '6', to: '7', body: 'find me' });
  assert.equal((await engine.message(message.id)).body, 'find me');
  assert.equal((await engine.message(BigInt(message.id))).id, message.id);
  assert.equal((await engine.message(String(message.id))).id, message.id);
  await rejectsWith(assert, engine.message(999999), 'TIDINGS_NOT_FOUND', '999999');
});

test('markRead, unread and inbox', async () => {
  await engine.send({ from: '8', to: '9', body: 'one' });
  await engine.send({ from: '8', to: '9', body: 'two' });
  await engine.send({ from: '8', to: '9', body: 'three' });
  let unread = await engine.unread('9', '8-9');
  assert.equal(unread.unread_count, 3);
  assert.equal(unread.read_state.seq, 0);
  const state = await engine.markRead('9', '8-9', 2);
  assert.deepEqual(state, { conversation_id: '8-9', user_id: '9', seq: 2 });
  unread = await engine.unread(9, '8-9');
  assert.equal(unread.unread_count, 1);
  // A mark never moves back.
  assert.equal((await engine.markRead('9', '8-9', 1)).seq, 2);
  const inbox = await engine.inbox('9');
  assert.equal(inbox.length, 1);
  assert.equal(inbox[0].conversation_id, '8-9');
  assert.equal(inbox[0].peer_id, '8');
  assert.equal(inbox[0].last_message.body, 'three');
  assert.equal(inbox[0].unread_count, 1);
  assert.equal(inbox[0].last_read_seq, 2);
  await engine.send({ from: '9', to: '10', body: 'newer' });
  const two = await engine.inbox('9', { limit: 10 });
  assert.deepEqual(two.map((e) => e.conversation_id), ['9-10', '8-9']);
  assert.equal((await engine.inbox('9', { limit: 1 })).length, 1);
});

test('search finds messages with every word, only in the user\'s conversations', async () => {
  await engine.send({ from: '11', to: '12', body: 'the quick brown fox' });
  await engine.send({ from: '11', to: '12', body: 'a quick note' });
  await engine.send({ from: '13', to: '14', body: 'quick brown elsewhere' });
  const found = await engine.search('12', 'quick brown');
  assert.deepEqual(found.map((m) => m.body), ['the quick brown fox']);
  assert.equal((await engine.search('12', 'quick')).length, 2);
  assert.equal((await engine.search('12', 'quick', { max: 1 })).length, 1);
  assert.equal((await engine.search('99', 'quick')).length, 0);
});

test('typing resolves with nothing', async () => {
  assert.equal(await engine.typing('1', '1-18'), undefined);
});

test('edit, react, unreact and delete', async () => {
  const { message } = await engine.send({ from: '15', to: '16', body: 'draft' });
  const edited = await engine.edit('15', message.id, 'final');
  assert.equal(edited.body, 'final');
  assert.equal(typeof edited.edited_at, 'number');
  const reacted = await engine.react('16', message.id, '👍');
  assert.deepEqual(reacted.reactions, [{ user_id: '16', emoji: '👍' }]);
  const replaced = await engine.react('16', message.id, '🎉');
  assert.deepEqual(replaced.reactions, [{ user_id: '16', emoji: '🎉' }]);
  const unreacted = await engine.unreact('16', message.id);
  assert.deepEqual(unreacted.reactions, []);
  const deleted = await engine.delete('15', message.id);
  assert.equal(deleted.body, '');
  assert.equal(typeof deleted.deleted_at, 'number');
  assert.equal(deleted.seq, message.seq);
  assert.equal((await engine.message(message.id)).deleted_at, deleted.deleted_at);
});

test('shutdown, then calls fail with TIDINGS_SHUT_DOWN; close is idempotent', async () => {
  const e = await Engine.open({ store: 'memory:' });
  await e.send({ from: '1', to: '2', body: 'before' });
  await e.shutdown();
  await rejectsWith(assert, e.send({ from: '1', to: '2', body: 'after' }), 'TIDINGS_SHUT_DOWN');
  assert.equal(e.closed, false);
  const closing = e.close();
  assert.equal(e.closed, true);
  assert.equal(e.close(), closing);
  await closing;
  await rejectsWith(assert, e.history('1-2'), 'TIDINGS_SHUT_DOWN', 'closed');
  assert.throws(() => e.events(), { code: 'TIDINGS_SHUT_DOWN' });
});

test('an SQLite engine keeps its messages across a reopen', async () => {
  const dir = scratch();
  const store = `sqlite://${path.join(dir, 'chat.db')}`;
  const first = await Engine.open({ store });
  await first.send({ from: '1', to: '2', body: 'kept' });
  await first.close();
  const second = await Engine.open(JSON.stringify({ store }));
  const page = await second.history('1-2');
  assert.deepEqual(page.items.map((m) => m.body), ['kept']);
  const next = await second.send({ from: '2', to: '1', body: 'and on' });
  assert.equal(next.message.seq, 2);
  await second.close();
});

test('the constructor is not public', () => {
  assert.throws(() => new Engine(), TypeError);
});
