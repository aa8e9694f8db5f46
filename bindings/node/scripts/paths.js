'use strict';
// Where the tidings C ABI is: the header and the static library that the
// addon links. Used by scripts/build.js and binding.gyp.
//
//   TIDINGS_FFI_LIB_DIR      a directory holding libtidings_ffi.a (a prebuilt
//                            library: no cargo build then)
//   TIDINGS_FFI_INCLUDE_DIR  a directory holding tidings.h
//   CARGO_TARGET_DIR         cargo's target directory (default: <repo>/target)
const fs = require('node:fs');
const path = require('node:path');

const packageDir = path.resolve(__dirname, '..');
const repoRoot = path.resolve(packageDir, '..', '..');

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
  return fs.existsSync(path.join(repoRoot, 'ffi', 'Cargo.toml'));
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
