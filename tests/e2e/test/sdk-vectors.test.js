'use strict';
// The Pusher HTTP transport's signing vectors (core/tests/fixtures/
// pusher_sdk_vectors.json, checked by the Rust unit tests) are what the
// official `pusher` SDK sends today: regenerated here and compared.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { main } = require('../tools/pusher-sdk-vectors');

const FIXTURE = path.resolve(__dirname, '..', '..', '..', 'core', 'tests', 'fixtures', 'pusher_sdk_vectors.json');

test('the committed signing vectors are what the pusher SDK sends', async () => {
  const fresh = await main();
  const committed = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
  assert.deepEqual(
    committed,
    fresh,
    'stale vectors: run `node tools/pusher-sdk-vectors.js > ../../core/tests/fixtures/pusher_sdk_vectors.json` in tests/e2e',
  );
});
