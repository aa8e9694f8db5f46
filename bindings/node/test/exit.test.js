'use strict';
// The process exits by itself: neither a closed engine nor an open event
// stream (unref'd) keeps it alive. Each scenario runs in a child node.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const { scratch } = require('./lib/helpers');

const CHILD = path.join(__dirname, 'fixtures', 'exit-child.js');
const DEADLINE_MS = 10000;

function runChild(args) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child ${args[0]} still running after ${DEADLINE_MS} ms; stderr: ${stderr}`));
    }, DEADLINE_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

for (const [scenario, expected] of [
  ['close', 'closed'],
  ['close-subscription-last', 'closed'],
  ['no-close', 'left open'],
  ['ref-then-close', 'closed'],
  ['server', 'closed'],
]) {
  test(`a child process exits by itself: ${scenario}`, async (t) => {
    const args = scenario === 'server' ? [scenario, scratch()] : [scenario];
    const { code, signal, stdout, stderr, ms } = await runChild(args);
    assert.equal(signal, null, stderr);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), expected, stderr);
    t.diagnostic(`${scenario}: exited in ${ms} ms`);
  });
}

test('a throwing event listener is an uncaught exception, not a crash', async () => {
  const { code, signal, stderr } = await runChild(['throwing-listener']);
  assert.equal(signal, null, stderr);
  assert.equal(code, 1, stderr);
  assert.match(stderr, /listener boom/);
});
