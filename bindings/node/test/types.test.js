'use strict';
// index.d.ts declares exactly what index.js exports (a snapshot of the
// public names), and the classes' methods are all there.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const tidings = require('..');

const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');

test('every runtime export is declared, and every declared value exists', () => {
  const declared = [...dts.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(tidings).sort());
});

test('the declared methods of each class exist at run time', () => {
  for (const name of ['Engine', 'Subscription', 'Server']) {
    const body = dts.slice(dts.indexOf(`export declare class ${name}`)).split(/\n}\n/)[0];
    const methods = [...body.matchAll(/^ {2}(?:static )?(\w+)\(/gm)].map((m) => m[1]).filter((m) => m !== 'constructor');
    const statics = [...body.matchAll(/^ {2}static (\w+)\(/gm)].map((m) => m[1]);
    assert.ok(methods.length > 0, name);
    for (const method of methods) {
      const where = statics.includes(method) ? tidings[name] : tidings[name].prototype;
      assert.equal(typeof where[method], 'function', `${name}.${method}`);
    }
  }
});
