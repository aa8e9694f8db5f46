#!/usr/bin/env bash
# Sets up and runs the end-to-end suites against a real `tidings serve`:
# the real pusher-js 8 / pusher 5 from npm (Node's test runner), the
# official Python `pusher` SDK (venv in tests/e2e/.venv), and a browser test
# driving Debian's chromium with playwright-core.
#
#   tests/e2e/run.sh            set up (npm ci, venv, chromium, cargo build), then run everything
#   tests/e2e/run.sh --no-setup run only (expects the setup to be there)
#   tests/e2e/run.sh test/x.test.js ...   run only these files
#
# Installs what is missing as root (apt-get); fails loudly otherwise, never
# skips a suite silently.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/services.sh"

say() { printf -- '--> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

setup=1
if [ "${1:-}" = "--no-setup" ]; then setup=0; shift; fi

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$setup" = 1 ]; then
  say "Node.js and npm"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || die "Node.js 20+ and npm are needed for tests/e2e"
  fi
  [ "$(node_major)" -ge 20 ] || die "Node.js 20+ is needed (node --test), found $(node --version)"

  say "npm ci in tests/e2e"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

  say "Python venv with the pusher SDK (tests/e2e/.venv)"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv || die "python3-venv is needed for the Python SDK test"
  fi
  venv="$here/.venv"
  stamp="$venv/.requirements.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
  fi
  "$venv/bin/python" -c 'import pusher' || die "the pusher SDK does not import in $venv"

  say "chromium for the browser test"
  if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium || die "Debian's chromium (/usr/bin/chromium) is needed for the browser test"
  fi
  /usr/bin/chromium --version >/dev/null 2>&1 || die "/usr/bin/chromium does not run"

  say "cargo build (target/debug/tidings)"
  (cd "$repo" && cargo build --workspace --all-features --locked)
fi

[ -x "$repo/target/debug/tidings" ] || die "target/debug/tidings is missing: run cargo build"
[ -d "$here/node_modules/pusher-js" ] || die "tests/e2e/node_modules is missing: run npm ci in tests/e2e"

cd "$here"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(test/*.test.js)
fi
say "node --test ${files[*]}"
# Each file starts its own server on a free port; two files at a time.
exec node --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
