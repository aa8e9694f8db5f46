#!/usr/bin/env bash
# Builds and tests the Python bindings from a clean clone: the static
# library (cargo --release --locked), a venv at bindings/python/.venv with
# cffi, setuptools and pytest from PyPI, the package, then pytest -q.
#
#   bindings/python/test.sh [pytest args...]
#
# PYTHON picks the interpreter (default python3). TIDINGS_TEST_POSTGRES_URL
# adds the PostgreSQL runs (required when CI=true). Exits non-zero on any
# failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"

step() { printf '\n==> python: %s\n' "$*" >&2; }

step "cargo build --release --locked -p tidings-ffi"
(cd "$root" && cargo build --release --locked -p tidings-ffi)
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
lib_dir="$target/release"
if [ ! -f "$lib_dir/libtidings_ffi.a" ]; then
  echo "error: $lib_dir/libtidings_ffi.a is missing after the build" >&2
  exit 1
fi

step "venv at bindings/python/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "cffi>=1.15" "setuptools>=64" "wheel" "pytest>=7"

step "pip install bindings/python"
# No build isolation: the build uses the venv's cffi and setuptools, so
# nothing is downloaded twice. The library built above is linked in.
TIDINGS_FFI_LIB_DIR="$lib_dir" "$venv/bin/python" -m pip install --quiet \
  --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall "$here"

step "pytest"
cd "$here"
# From the tests folder's parent, so `import tidings` is the installed package.
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
