'use strict';
// Waiting with deadlines (never bare sleeps) and scratch directories.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const DEFAULT_TIMEOUT_MS = 5000;


/** Rejects if `promise` has not settled within `ms`. */
function deadline(promise, ms = DEFAULT_TIMEOUT_MS, what = 'a result') {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The first event on `sub` that `filter` accepts, within the deadline. */
function nextEvent(sub, filter = () => true, ms = DEFAULT_TIMEOUT_MS, what = 'an event') {
  let listener;
  const got = new Promise((resolve) => {
    listener = (event) => {
      if (filter(event)) resolve(event);
    };
    sub.on('event', listener);
  });
  return deadline(got, ms, what).finally(() => sub.off('event', listener));
}

/** Collects events of `sub` until `done(events)` is true, within the deadline. */
function collect(sub, done, ms = DEFAULT_TIMEOUT_MS, what = 'events') {
  const events = [];
  let listener;
  const got = new Promise((resolve) => {
    listener = (event) => {
      events.push(event);
      if (done(events)) resolve(events);
    };
    sub.on('event', listener);
  });
  return deadline(got, ms, what).finally(() => sub.off('event', listener));
}

/** A fresh scratch directory, removed when the process exits. */
function scratch(prefix = 'tidings-node-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Asserts that `promise` rejects with a TidingsError of `code` whose message contains `needle`. */
async function rejectsWith(assert, promise, code, needle) {
  const { TidingsError } = require('../..');
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TidingsError, `not a TidingsError: ${err && err.stack}`);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code, `code of: ${err.message}`);
    if (needle) assert.match(err.message, needle instanceof RegExp ? needle : new RegExp(escape(needle)));
    return true;
  });
}

function throwsWith(assert, fn, code, needle) {
  const { TidingsError } = require('../..');
  assert.throws(fn, (err) => {
    assert.ok(err instanceof TidingsError, `not a TidingsError: ${err && err.stack}`);
    assert.equal(err.code, code, `code of: ${err.message}`);
    if (needle) assert.match(err.message, needle instanceof RegExp ? needle : new RegExp(escape(needle)));
    return true;
  });
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

module.exports = { deadline, nextEvent, collect, scratch, rejectsWith, throwsWith, DEFAULT_TIMEOUT_MS };
