'use strict';
// `npm install` (and `npm run build`): builds the tidings C ABI library with
// cargo when this package sits in the tidings repository, then compiles the
// addon with node-gyp against it. Works offline when the Node headers are on
// the machine (they ship with Node in <prefix>/include/node).
//
//   TIDINGS_FFI_LIB_DIR=dir     link dir/libtidings_ffi.a as is (no cargo)
//   TIDINGS_FFI_SKIP_CARGO=1    no cargo build when the library exists
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const paths = require('./paths');

const LIB = 'libtidings_ffi.a';
// The pusher transport (`"kind": "pusher"` in the engine config) is a cargo
// feature of the core crate that tidings-ffi does not turn on by itself.
const CARGO_ARGS = ['build', '--release', '--locked', '-p', 'tidings-ffi', '--features', 'tidings/pusher'];

function say(message) {
  process.stderr.write(`tidings: ${message}\n`);
}

function fail(message) {
  say(message);
  process.exit(1);
}

function run(command, args, cwd) {
  say(`${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd, stdio: 'inherit' });
  if (result.error) fail(`${command}: ${result.error.message}`);
  if (result.status !== 0) fail(`${command} exited with ${result.status ?? result.signal}`);
}

function library() {
  if (process.env.TIDINGS_FFI_LIB_DIR) {
    const lib = path.join(process.env.TIDINGS_FFI_LIB_DIR, LIB);
    if (!fs.existsSync(lib)) fail(`TIDINGS_FFI_LIB_DIR has no ${LIB}: ${lib}`);
    return lib;
  }
  const lib = path.join(paths.libDir(), LIB);
  const skip = process.env.TIDINGS_FFI_SKIP_CARGO === '1' && fs.existsSync(lib);
  if (!skip) {
    if (!paths.hasRepo()) {
      if (fs.existsSync(lib)) return lib;
      fail(`no ${LIB}: set TIDINGS_FFI_LIB_DIR, or install from a tidings checkout (cargo builds it)`);
    }
    // Cargo finds nothing to do when the library is up to date.
    run('cargo', CARGO_ARGS, paths.repoRoot);
  }
  if (!fs.existsSync(lib)) fail(`cargo did not produce ${lib}`);
  return lib;
}

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
    fail('node-gyp is not installed (npm install installs it)');
  }
}

// Node's own headers when they came with this Node: no download needed.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const headers = path.join(prefix, 'include', 'node');
  if (fs.existsSync(path.join(headers, 'node_api.h')) && fs.existsSync(path.join(headers, 'common.gypi'))) {
    return [`--nodedir=${prefix}`];
  }
  return [];
}

const header = path.join(paths.includeDir(), 'tidings.h');
if (!fs.existsSync(header)) fail(`no tidings.h in ${paths.includeDir()} (set TIDINGS_FFI_INCLUDE_DIR)`);
const lib = library();
const linked = paths.linkedLib();
fs.mkdirSync(path.dirname(linked), { recursive: true });
fs.copyFileSync(lib, linked);
// The library is no make dependency of the addon: drop the old link so
// that make links the addon against this copy again.
for (const stale of ['Release/tidings.node', 'Release/obj.target/tidings.node']) {
  fs.rmSync(path.join(paths.packageDir, 'build', stale), { force: true });
}
const gyp = nodeGyp();
const extra = nodedirArgs();
// configure + build, not rebuild: rebuild would delete the copied library.
run(process.execPath, [gyp, 'configure', ...extra], paths.packageDir);
run(process.execPath, [gyp, 'build', `--jobs=${Math.max(1, require('node:os').availableParallelism())}`, ...extra], paths.packageDir);
say(`built ${path.join('build', 'Release', 'tidings.node')}`);
