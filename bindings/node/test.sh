#!/usr/bin/env bash
# Builds and tests the Node.js bindings and the Next.js example from a clean
# clone: the C ABI library (cargo), npm ci in bindings/node (which compiles
# the addon) and examples/nextjs, then node --test for both. Exits non-zero
# on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
step() { printf '\n==> %s\n' "$*" >&2; }

step "C ABI library (cargo build --release -p tidings-ffi, with the pusher transport)"
(cd "$root" && cargo build --release --locked -p tidings-ffi --features tidings/pusher)

step "bindings/node: npm ci (builds the addon)"
# The library was just built: the install script need not run cargo again.
(cd "$here" && TIDINGS_FFI_SKIP_CARGO=1 npm ci --no-audit --no-fund)

step "bindings/node: node --test"
(cd "$here" && npm test)

step "examples/nextjs: npm ci"
(cd "$root/examples/nextjs" && TIDINGS_FFI_SKIP_CARGO=1 npm ci --no-audit --no-fund)

step "examples/nextjs: node --test"
(cd "$root/examples/nextjs" && npm test)
