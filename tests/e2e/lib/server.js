'use strict';
// Starts a real `tidings serve` for a test file and stops it with SIGTERM.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.TIDINGS_BIN || path.join(REPO, 'target', 'debug', 'tidings');

// Fixed credentials of the default app (the Python SDK wants a numeric id).
const APP = Object.freeze({
  id: '4242',
  key: 'e2e-app-key',
  secret: 'e2e-app-secret-0123456789abcdef0123456789',
});

const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 15000;

class TidingsServer {
  constructor({ port, dataDir, proc, args, env }) {
    this.port = port;
    this.host = '127.0.0.1';
    this.url = `http://127.0.0.1:${port}`;
    this.dataDir = dataDir;
    this.proc = proc;
    this.args = args;
    this.env = env;
    this.stderr = '';
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      this.stderr += chunk;
    });
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** SIGTERM, then waits for the exit; returns `{code, signal}`. */
  async stop() {
    if (!this.running) return this.exit;
    this.proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        reject(new Error(`tidings did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n${this.stderr}`));
      }, STOP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a new process on the same port and data directory. */
  restart() {
    if (this.running) throw new Error('restart() needs the server stopped first');
    return startServer({ port: this.port, dataDir: this.dataDir, keepDataDir: true, args: this.args, env: this.env });
  }

  /** Removes the data directory (after the last stop). */
  cleanup() {
    if (this.dataDir && !this.keepDataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Spawns `tidings serve --listen 127.0.0.1:PORT --data-dir DIR` (port 0 by
 * default) and resolves once it prints its address on stderr.
 */
function startServer({ port = 0, dataDir, args = [], env = {}, keepDataDir = false } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} does not exist: run \`cargo build\` first (or set TIDINGS_BIN)`);
  }
  const dir = dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-'));
  const fullEnv = {
    ...process.env,
    TIDINGS_APP_ID: APP.id,
    TIDINGS_APP_KEY: APP.key,
    TIDINGS_APP_SECRET: APP.secret,
    RUST_LOG: process.env.RUST_LOG || 'warn',
    ...env,
  };
  // Settings that would change what we test.
  for (const name of ['TIDINGS_LISTEN', 'TIDINGS_DATA_DIR', 'TIDINGS_CONFIG', 'TIDINGS_STORE']) {
    if (!(name in env)) delete fullEnv[name];
  }
  const proc = spawn(
    BIN,
    ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, ...args],
    { env: fullEnv, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let stderr = '';
    const onData = (chunk) => {
      stderr += chunk;
      const m = /tidings serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        done();
        const server = new TidingsServer({ port: Number(m[1]), dataDir: dir, proc, args, env });
        server.stderr = stderr;
        server.keepDataDir = keepDataDir;
        resolve(server);
      }
    };
    const onExit = (code, signal) => {
      done();
      reject(new Error(`tidings serve exited (${code ?? signal}) before listening:\n${stderr}`));
    };
    const timer = setTimeout(() => {
      done();
      proc.kill('SIGKILL');
      reject(new Error(`tidings serve did not print its address within ${START_TIMEOUT_MS} ms:\n${stderr}`));
    }, START_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      proc.stderr.off('data', onData);
      proc.off('exit', onExit);
    }
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', onData);
    proc.once('exit', onExit);
  });
}

module.exports = { APP, BIN, REPO, startServer };
