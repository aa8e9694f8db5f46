'use strict';
// Runs calls of the official Python `pusher` SDK (python/sdk.py in the
// tests/e2e/.venv venv) against a test server.
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { APP } = require('./server');

const PYTHON = process.env.TIDINGS_E2E_PYTHON || path.join(__dirname, '..', '.venv', 'bin', 'python');
const SCRIPT = path.join(__dirname, '..', 'python', 'sdk.py');

function checkPython() {
  if (!fs.existsSync(PYTHON)) {
    throw new Error(`${PYTHON} does not exist: create the venv (tests/e2e/run.sh does) or set TIDINGS_E2E_PYTHON`);
  }
}

/** Resolves with one `{ok}` or `{error, message}` per `[method, kwargs]` call. */
function python(server, calls, overrides = {}) {
  const spec = { port: server.port, app_id: APP.id, key: APP.key, secret: APP.secret, ...overrides, calls };
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, JSON.stringify(spec)], { timeout: 30000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`python failed: ${error.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout));
      } catch {
        reject(new Error(`python printed no JSON: ${stdout}\n${stderr}`));
      }
    });
  });
}

module.exports = { PYTHON, checkPython, python };
