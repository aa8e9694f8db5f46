#!/usr/bin/env bash
# Builds the static library and the C host, runs the host on an SQLite file,
# then once more under valgrind: any leak or invalid access fails the run.
#
#   examples/c-host/run.sh [--no-valgrind]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
cargo build --release --locked -p tidings-ffi
ffi/pkg-config.sh target/release ffi/include >/dev/null
make -s -C "$here" -B c-host
dir=$(mktemp -d "${TMPDIR:-/tmp}/tidings-c-host.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$here/c-host" "sqlite://$dir/chat.db"
if [ "${1:-}" != "--no-valgrind" ]; then
  command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
  # Every memory error and every definite or indirect leak fails the run.
  # The process-wide runtime's threads are still alive at exit: their
  # stacks show as "possibly lost" (a few hundred bytes each) and their
  # state as "still reachable"; neither grows with use.
  valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    "$here/c-host" "sqlite://$dir/valgrind.db" >/dev/null
  echo "valgrind: no leaks, no invalid accesses" >&2
fi
