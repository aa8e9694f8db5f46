#!/usr/bin/env sh
# Writes a pkg-config file for tidings' C library and prints its path:
#
#   ffi/pkg-config.sh LIBDIR INCLUDEDIR [VERSION]
#
# LIBDIR holds libtidings_ffi.a (cargo build --release -p tidings-ffi puts
# it in target/release), INCLUDEDIR holds tidings.h (ffi/include). The file
# goes to LIBDIR/pkgconfig/tidings.pc; then
#   PKG_CONFIG_PATH=LIBDIR/pkgconfig pkg-config --cflags --libs tidings
# gives what a C or C++ program needs to link the static library.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 LIBDIR INCLUDEDIR [VERSION]" >&2; exit 2; }
libdir=$(cd "$1" && pwd)
includedir=$(cd "$2" && pwd)
version=${3:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml" | head -n 1)}
[ -f "$libdir/libtidings_ffi.a" ] || { echo "$0: $libdir/libtidings_ffi.a is missing" >&2; exit 1; }
[ -f "$includedir/tidings.h" ] || { echo "$0: $includedir/tidings.h is missing" >&2; exit 1; }
mkdir -p "$libdir/pkgconfig"
out="$libdir/pkgconfig/tidings.pc"
# The static library, and the system libraries Rust's standard library
# needs (rustc --print native-static-libs).
cat >"$out" <<PC
libdir=$libdir
includedir=$includedir

Name: tidings
Description: embeddable real-time messaging engine (C ABI, static library)
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/libtidings_ffi.a -lpthread -ldl -lm -lrt -lutil
PC
echo "$out"
