'use strict';
// Where the tidings C ABI is: the header and the static library that the
// addon links. Used by scripts/build.js and binding.gyp.
//
//   TIDINGS_FFI_LIB_DIR      a directory holding libtidings_ffi.a (a prebuilt
//                            library: no cargo build then)
//   TIDINGS_FFI_INCLUDE_DIR  a directory holding tidings.h
//   CARGO_TARGET_DIR         cargo's target directory (default: <repo>/target)
//   TIDINGS_REPO_ROOT        the tidings checkout (default: found from here)
const fs = require('node:fs');
const path = require('node:path');

const packageDir = path.resolve(__dirname, '..');

// The tidings checkout: this package's own (bindings/node), or, for a copy
// installed into an app's node_modules from the checkout (npm's
// install-links), the first ancestor of the app holding ffi/Cargo.toml.
function findRepoRoot() {
  const own = path.resolve(packageDir, '..', '..');
  if (isRepo(own)) return own;
  for (const start of [process.env.INIT_CWD, packageDir]) {
    for (let dir = start && path.resolve(start); dir; ) {
      if (isRepo(dir)) return dir;
      const parent = path.dirname(dir);
      dir = parent === dir ? null : parent;
    }
  }
  return own;
}

function isRepo(dir) {
  return fs.existsSync(path.join(dir, 'ffi', 'Cargo.toml')) && fs.existsSync(path.join(dir, 'ffi', 'include', 'tidings.h'));
}

const repoRoot = process.env.TIDINGS_REPO_ROOT ? path.resolve(process.env.TIDINGS_REPO_ROOT) : findRepoRoot();

function includeDir() {
  return process.env.TIDINGS_FFI_INCLUDE_DIR || path.join(repoRoot, 'ffi', 'include');
}

function cargoLibDir() {
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target');
  return path.join(target, 'release');
}

function libDir() {
  return process.env.TIDINGS_FFI_LIB_DIR || cargoLibDir();
}

// The copy of the library that the addon links, taken right after cargo
// built it, so that another build in the shared target directory cannot
// swap it underneath the link step.
function linkedLib() {
  return path.join(packageDir, 'build', 'tidings-ffi', 'libtidings_ffi.a');
}

function hasRepo() {
  return isRepo(repoRoot);
}

module.exports = { packageDir, repoRoot, includeDir, libDir, linkedLib, hasRepo };

if (require.main === module) {
  const what = process.argv[2];
  const value = { include: includeDir(), lib: linkedLib(), libdir: libDir(), root: repoRoot }[what];
  if (!value) {
    console.error('usage: node scripts/paths.js include|lib|libdir|root');
    process.exit(2);
  }
  process.stdout.write(value);
}
