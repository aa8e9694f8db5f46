'use strict';
// Many promises in flight on one engine: each call runs on a pool thread,
// the engine orders them, nothing is lost or doubled.
const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { Engine } = require('..');
const { collect, scratch, rejectsWith } = require('./lib/helpers');

test('1000 concurrent sends to one conversation get seq 1..1000 without a gap', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const n = 1000;
  const sent = await Promise.all(
    Array.from({ length: n }, (_, i) => engine.send({ from: i % 2 ? '1' : '2', to: i % 2 ? '2' : '1', body: `c${i}` })),
  );
  const seqs = sent.map((s) => s.message.seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
  assert.equal(new Set(sent.map((s) => s.message.id)).size, n);
  const stored = await engine.messagesAfter('1-2', 0, { max: 1000 });
  assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: n }, (_, i) => i + 1));
  await engine.close();
});

test('concurrent sends on SQLite, across conversations, with reads in between', async () => {
  const engine = await Engine.open({ store: `sqlite://${path.join(scratch(), 'c.db')}` });
  const conversations = 8;
  const each = 100;
  const sub = engine.events();
  const all = collect(sub, (events) => events.length === conversations * each, 10000, 'every new-message');
  const calls = [];
  for (let i = 0; i < each; i++) {
    for (let c = 0; c < conversations; c++) {
      calls.push(engine.send({ from: '100', to: String(200 + c), body: `m${i}` }));
      if (i % 25 === 0) calls.push(engine.history(`100-${200 + c}`, { limit: 5 }));
    }
  }
  await Promise.all(calls);
  for (let c = 0; c < conversations; c++) {
    const messages = await engine.messagesAfter(`100-${200 + c}`, 0, { max: 1000 });
    assert.deepEqual(messages.map((m) => m.seq), Array.from({ length: each }, (_, i) => i + 1));
  }
  const events = await all;
  for (let c = 0; c < conversations; c++) {
    const seqs = events.filter((e) => e.data.conversation_id === `100-${200 + c}`).map((e) => e.data.seq);
    assert.deepEqual(seqs, Array.from({ length: each }, (_, i) => i + 1), `events of conversation ${c}`);
  }
  await engine.close();
});

test('close() waits for the calls in flight and refuses new ones', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const inFlight = Array.from({ length: 200 }, (_, i) => engine.send({ from: '1', to: '2', body: `f${i}` }));
  const closed = engine.close();
  await rejectsWith(assert, engine.send({ from: '1', to: '2', body: 'too late' }), 'TIDINGS_SHUT_DOWN');
  const results = await Promise.allSettled(inFlight);
  await closed;
  // Calls already started finish (or fail cleanly); none is left hanging.
  assert.equal(results.length, 200);
  for (const r of results) {
    if (r.status === 'rejected') assert.equal(r.reason.code, 'TIDINGS_SHUT_DOWN');
  }
  assert.ok(results.some((r) => r.status === 'fulfilled'));
});

test('many engines open and close concurrently', async () => {
  const engines = await Promise.all(Array.from({ length: 10 }, () => Engine.open({ store: 'memory:' })));
  await Promise.all(engines.map((e, i) => e.send({ from: '1', to: '2', body: `e${i}` })));
  for (const e of engines) e.events();
  await Promise.all(engines.map((e) => e.close()));
});
