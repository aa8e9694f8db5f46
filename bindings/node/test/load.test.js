'use strict';
// Leak and load: 100,000 sends through one engine (SQLite store, an event
// stream reading along) keep resident memory flat: RSS stays within 10% of
// its figure at the end of the warm-up. The figures are printed.
//
// The warm-up is what the SQLite store is allowed to grow into: its writer
// has a 16 MiB page cache, which fills as the database grows (and RSS takes
// one step when the file passes 65,536 pages), and it keeps up to 8 idle
// reader connections with a 2 MiB page cache each, opened as reads overlap.
// So the warm-up sends 75,000 messages of 1 KiB, with a burst of history
// reads in flight at once two thirds of the way. Samples are taken after a full garbage collection,
// so that they count what is retained, not garbage awaiting the collector.
const assert = require('node:assert/strict');
const path = require('node:path');
const v8 = require('node:v8');
const vm = require('node:vm');
const { test } = require('node:test');
const { Engine } = require('..');
const { scratch, deadline } = require('./lib/helpers');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const MEASURED = Number(process.env.TIDINGS_LOAD_SENDS || 100000);
const WARMUP = Number(process.env.TIDINGS_LOAD_WARMUP || 75000);
const READS_AT = Math.floor((WARMUP * 2) / 3); // the reads of the warm-up, then more sends
const SAMPLE_EVERY = 10000;
const WINDOW = 32; // sends in flight at once
const BODY = 1024;

const mib = (bytes) => (bytes / 1024 / 1024).toFixed(1);

test(`${MEASURED} sends after a warm-up keep resident memory flat`, { timeout: 15 * 60 * 1000 }, async (t) => {
  const engine = await Engine.open({ store: `sqlite://${path.join(scratch(), 'load.db')}` });
  // ref(): the stream keeps the process alive while the test waits on it.
  const sub = engine.events().ref();
  let events = 0;
  sub.on('event', () => events++);

  const total = WARMUP + MEASURED;
  const samples = [];
  let next = 0;
  let failed = null;
  const started = Date.now();
  let measuredStart = null;
  // Overlapping reads, each touching ~1 MiB of its own pages: every reader
  // connection the store keeps gets its cache filled.
  let warmed = null;
  function warmReaders() {
    if (!warmed) {
      warmed = (async () => {
        for (let round = 0; round < 4; round++) {
          await Promise.all(
            Array.from({ length: 16 }, (_, k) => {
              const a = 1 + ((k + round) % 20);
              const conversation = `${a}-${100 + (a - 1) % 5}`;
              return engine.messagesAfter(conversation, (round * 1000) % 3000, { max: 1000 });
            }),
          );
        }
      })();
    }
    return warmed;
  }
  async function sender() {
    while (next < total && !failed) {
      const i = next++;
      const body = `load message ${i} `.padEnd(BODY, 'x');
      try {
        await engine.send({ from: String(1 + (i % 20)), to: String(100 + (i % 5)), body });
      } catch (e) {
        failed = e;
        return;
      }
      const done = i + 1;
      if (done === READS_AT) await warmReaders();
      if (done === WARMUP) measuredStart = Date.now();
      if (done % SAMPLE_EVERY === 0 || done === WARMUP) {
        gc();
        samples.push({ sends: done, rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed });
      }
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, sender));
  if (failed) throw failed;
  const end = Date.now();

  // Every stored message reached the stream (events trail the sends a little).
  if (events < total) {
    await deadline(
      new Promise((resolve) => {
        const check = () => {
          if (events >= total) {
            sub.off('event', check);
            resolve();
          }
        };
        sub.on('event', check);
      }),
      30000,
      `all ${total} new-message events (${events} so far)`,
    ).catch(() => {});
  }
  assert.equal(events, total, 'new-message events seen');
  await engine.close();

  samples.sort((a, b) => a.sends - b.sends);
  const baseline = samples.find((s) => s.sends === WARMUP);
  const measured = samples.filter((s) => s.sends > WARMUP);
  const peak = Math.max(...measured.map((s) => s.rss));
  const growth = (peak - baseline.rss) / baseline.rss;
  const seconds = (end - measuredStart) / 1000;
  const lines = [
    `${total} sends of ${BODY} B in ${((end - started) / 1000).toFixed(1)} s; the measured ${MEASURED} in ${seconds.toFixed(1)} s (${Math.round(MEASURED / seconds)}/s, ${WINDOW} in flight)`,
    ...samples
      .filter((s) => s.sends < WARMUP)
      .map((s) => `warm-up, after ${s.sends} sends: RSS ${mib(s.rss)} MiB (heap ${mib(s.heap)} MiB)`),
    `end of warm-up, after ${baseline.sends} sends: RSS ${mib(baseline.rss)} MiB (heap ${mib(baseline.heap)} MiB)`,
    ...measured.map((s) => `after ${s.sends - WARMUP} measured sends: RSS ${mib(s.rss)} MiB (heap ${mib(s.heap)} MiB)`),
    `peak ${mib(peak)} MiB: ${(growth * 100).toFixed(1)}% over the end of the warm-up (limit 10%)`,
  ];
  for (const line of lines) {
    t.diagnostic(line);
    process.stdout.write(`# load: ${line}\n`);
  }
  assert.ok(growth <= 0.1, `RSS grew ${(growth * 100).toFixed(1)}% after the warm-up`);
});
