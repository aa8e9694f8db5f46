'use strict';
// Event streams: an EventEmitter and an async iterable fed by one pump
// thread per subscription; close() joins it; engine shutdown ends it.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { Engine } = require('..');
const { nextEvent, collect, deadline } = require('./lib/helpers');

test('a subscription sees every kind of event', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const seen = collect(sub, (events) => events.length === 7, 5000, 'seven events');
  const { message } = await engine.send({ from: '1', to: '18', body: 'Hello' });
  await engine.typing('18', '1-18');
  await engine.markRead('18', '1-18', message.seq);
  await engine.edit('1', message.id, 'Hello!');
  await engine.react('18', message.id, '👍');
  await engine.unreact('18', message.id);
  await engine.delete('1', message.id);
  const events = await seen;
  // new-message may come after calls that returned later: it goes through the outbox.
  const byName = Object.fromEntries(events.map((e) => [e.event, e]));
  assert.deepEqual(Object.keys(byName).sort(), [
    'message-deleted',
    'message-edited',
    'messages-read',
    'new-message',
    'reaction',
    'typing',
  ]);
  for (const e of events) assert.equal(e.channel, 'private-conversation-1-18');
  assert.equal(byName['new-message'].data.body, 'Hello');
  assert.equal(byName['new-message'].data.id, message.id);
  assert.deepEqual(byName.typing.data, { conversation_id: '1-18', user_id: '18' });
  assert.deepEqual(byName['messages-read'].data, { conversation_id: '1-18', user_id: '18', seq: 1 });
  assert.equal(byName['message-edited'].data.body, 'Hello!');
  assert.equal(events.filter((e) => e.event === 'reaction').at(-1).data.emoji, null);
  await engine.close();
  assert.equal(sub.closed, true);
});

test('events keep their order and none is lost across many sends', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const n = 2000;
  const seen = collect(sub, (events) => events.filter((e) => e.event === 'new-message').length === n, 20000, `${n} events`);
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => engine.send({ from: '1', to: '2', body: `m${i + j}` })));
  }
  const seqs = (await seen).filter((e) => e.event === 'new-message').map((e) => e.data.seq);
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
  await engine.close();
});

test('several subscriptions each get every event', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const subs = [engine.events(), engine.events(), engine.events()];
  const got = subs.map((s) => nextEvent(s, (e) => e.event === 'new-message'));
  await engine.send({ from: '1', to: '2', body: 'to all' });
  for (const e of await Promise.all(got)) assert.equal(e.data.body, 'to all');
  // Closing one leaves the others running.
  await subs[0].close();
  assert.equal(subs[0].closed, true);
  const later = nextEvent(subs[1], (e) => e.event === 'typing');
  await engine.typing('1', '1-2');
  assert.equal((await later).data.user_id, '1');
  await engine.close();
  assert.ok(subs.every((s) => s.closed));
});

test('close() ends the stream: end event, closed, no more events', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const ended = new Promise((resolve) => sub.once('end', resolve));
  const late = [];
  await sub.close();
  assert.equal(await deadline(ended, 1000, 'end'), null);
  assert.equal(sub.closed, true);
  sub.on('event', (e) => late.push(e));
  await engine.send({ from: '1', to: '2', body: 'after close' });
  // A new subscription proves the event went out; the closed one saw nothing.
  const other = engine.events();
  const marker = nextEvent(other, (e) => e.event === 'typing');
  await engine.typing('1', '1-2');
  await marker;
  assert.deepEqual(late, []);
  await sub.close(); // idempotent
  await engine.close();
});

test('engine shutdown ends the stream by itself', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const ended = new Promise((resolve) => sub.once('end', resolve));
  await engine.shutdown();
  assert.equal(await deadline(ended, 5000, 'the end of the stream'), null);
  assert.equal(sub.closed, true);
  await engine.close();
});

test('async iteration, and breaking out closes the subscription', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const sends = (async () => {
    for (let i = 1; i <= 3; i++) await engine.send({ from: '1', to: '2', body: `it${i}` });
  })();
  const bodies = [];
  await deadline(
    (async () => {
      for await (const event of sub) {
        if (event.event !== 'new-message') continue;
        bodies.push(event.data.body);
        if (bodies.length === 3) break;
      }
    })(),
    5000,
    'three iterated events',
  );
  await sends;
  assert.deepEqual(bodies, ['it1', 'it2', 'it3']);
  assert.equal(sub.closed, true);
  await engine.close();
});

test('an iterator that falls behind its capacity gets one lagged event', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events({ capacity: 2 });
  const it = sub[Symbol.asyncIterator]();
  const all = collect(sub, (events) => events.length === 5, 5000, 'five typing events');
  for (let i = 0; i < 5; i++) await engine.typing('1', `1-${i + 2}`);
  await all;
  const first = await it.next();
  const second = await it.next();
  const third = await it.next();
  assert.deepEqual([first.value.data.conversation_id, second.value.data.conversation_id], ['1-2', '1-3']);
  assert.deepEqual(third.value, { event: 'lagged', channel: null, data: { dropped: 3 } });
  // The stream goes on after the gap.
  const fourth = it.next();
  await engine.typing('7', '1-7');
  assert.equal((await deadline(fourth, 5000, 'the next event')).value.data.user_id, '7');
  await it.return();
  assert.equal(sub.closed, true);
  await engine.close();
});

test('iteration ends when the engine closes', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  const done = (async () => {
    const seen = [];
    for await (const event of sub) seen.push(event.event);
    return seen;
  })();
  await engine.typing('1', '1-2');
  await nextEvent(sub, (e) => e.event === 'typing');
  await engine.close();
  assert.deepEqual(await deadline(done, 5000, 'the end of iteration'), ['typing']);
});

test('ref() and unref() are callable any time', async () => {
  const engine = await Engine.open({ store: 'memory:' });
  const sub = engine.events();
  assert.equal(sub.ref(), sub);
  assert.equal(sub.unref(), sub);
  await sub.close();
  sub.ref();
  sub.unref();
  await engine.close();
});

test('setLogger receives tidings log lines', async () => {
  const { setLogger } = require('..');
  const lines = [];
  let resolve;
  const opened = new Promise((r) => {
    resolve = r;
  });
  setLogger((level, target, message) => {
    lines.push({ level, target, message });
    if (/engine opened/.test(message)) resolve();
  }, 'debug');
  try {
    const engine = await Engine.open({ store: 'memory:' });
    await deadline(opened, 5000, 'the "engine opened" log line');
    const line = lines.find((l) => /engine opened/.test(l.message));
    assert.equal(line.level, 'debug');
    assert.match(line.target, /tidings/);
    await engine.close();
  } finally {
    setLogger(null);
  }
  assert.throws(() => setLogger('nope'), { code: 'TIDINGS_INVALID_ARGUMENT' });
  assert.throws(() => setLogger(() => {}, 'loud'), { code: 'TIDINGS_INVALID_ARGUMENT' });
});
