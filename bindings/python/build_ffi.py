"""The cffi builder of ``tidings._native`` (API mode, out of line).

It compiles a small C module against the committed header
``ffi/include/tidings.h`` and links the static library ``libtidings_ffi.a``
into it, so the installed package needs no shared library at run time.

Where the pieces come from:

* ``TIDINGS_FFI_LIB_DIR``: a folder holding ``libtidings_ffi.a``; when set,
  cargo is never run.
* otherwise, inside a clone of the repository, ``cargo build --release
  --locked -p tidings-ffi`` runs in the repository root (cargo does nothing
  when the library is up to date) and the library is taken from
  ``$CARGO_TARGET_DIR/release`` (default ``target/release``).
  ``TIDINGS_FFI_NO_CARGO=1`` skips cargo and uses the library found there.
* ``TIDINGS_FFI_INCLUDE_DIR``: a folder holding ``tidings.h``; default
  ``ffi/include`` of the repository.
* ``TIDINGS_FFI_LINK_ARGS``: extra linker arguments (space separated), for
  platforms whose system libraries differ from the defaults below.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB_NAME = "libtidings_ffi.a"


class BuildError(RuntimeError):
    pass


def header_path() -> Path:
    include = os.environ.get("TIDINGS_FFI_INCLUDE_DIR")
    path = Path(include) / "tidings.h" if include else REPO / "ffi" / "include" / "tidings.h"
    if not path.is_file():
        raise BuildError(
            f"tidings.h not found at {path}; set TIDINGS_FFI_INCLUDE_DIR to the folder "
            "holding the header (ffi/include in the tidings repository)"
        )
    return path


def _in_repo() -> bool:
    return (REPO / "Cargo.toml").is_file() and (REPO / "ffi" / "Cargo.toml").is_file()


def _target_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    if not target:
        return REPO / "target"
    path = Path(target)
    return path if path.is_absolute() else REPO / path


def library_path(build: bool = False) -> Path:
    """Where ``libtidings_ffi.a`` is; with ``build``, first brings it up to
    date with cargo (inside the repository, unless TIDINGS_FFI_LIB_DIR or
    TIDINGS_FFI_NO_CARGO says otherwise)."""
    lib_dir = os.environ.get("TIDINGS_FFI_LIB_DIR")
    if lib_dir:
        path = Path(lib_dir) / LIB_NAME
        if not path.is_file():
            raise BuildError(f"TIDINGS_FFI_LIB_DIR is set but {path} does not exist")
        return path
    if not _in_repo():
        raise BuildError(
            f"{LIB_NAME} not found: this is not a clone of the tidings repository, so set "
            "TIDINGS_FFI_LIB_DIR to the folder holding it (built with "
            "`cargo build --release -p tidings-ffi`) and TIDINGS_FFI_INCLUDE_DIR to ffi/include"
        )
    path = _target_dir() / "release" / LIB_NAME
    if not build:
        return path
    if os.environ.get("TIDINGS_FFI_NO_CARGO") != "1":
        cargo = shutil.which(os.environ.get("CARGO", "cargo"))
        if cargo is None:
            if not path.is_file():
                raise BuildError(
                    f"{path} does not exist and cargo is not on PATH: install Rust "
                    "(https://rustup.rs) or set TIDINGS_FFI_LIB_DIR"
                )
            print(f"tidings: cargo not found, using the existing {path}", file=sys.stderr)
        else:
            command = [cargo, "build", "--release", "--locked", "-p", "tidings-ffi"]
            print(f"tidings: running {' '.join(command)} in {REPO}", file=sys.stderr)
            result = subprocess.run(command, cwd=REPO)
            if result.returncode != 0:
                raise BuildError(f"`{' '.join(command)}` failed with {result.returncode}")
    if not path.is_file():
        raise BuildError(f"{path} does not exist after building tidings-ffi")
    return path


def cdef_from_header(text: str) -> str:
    """The header as cffi's ``cdef`` takes it: no comments, no preprocessor
    lines, no C++ guards; each ``#define NAME value`` becomes
    ``#define NAME ...`` so the C compiler supplies (and checks) the value."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    skipping_cpp = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped.startswith("#ifdef __cplusplus"):
                skipping_cpp = True
            elif stripped.startswith("#endif") and skipping_cpp:
                skipping_cpp = False
            else:
                match = re.match(r"#define\s+(TIDINGS_[A-Z0-9_]+)\s+\S", stripped)
                if match:
                    out.append(f"#define {match.group(1)} ...")
            continue
        if skipping_cpp:
            continue
        out.append(line)
    return "\n".join(out)


# A Rust static library needs these system libraries at link time
# (`rustc --print native-static-libs`).
_LIBRARIES = {
    "linux": ["pthread", "dl", "m", "rt", "util", "gcc_s"],
    "darwin": ["iconv"],
}
_LINK_ARGS = {
    # Keep the Rust symbols private to the module (two Rust extensions in one
    # process must not clash), drop unused sections and the debug info.
    "linux": ["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections", "-Wl,--strip-debug"],
    "darwin": [
        "-framework", "CoreFoundation",
        "-framework", "Security",
        "-framework", "SystemConfiguration",
        "-Wl,-dead_strip",
    ],
}


def _platform() -> str:
    return "darwin" if sys.platform == "darwin" else "linux" if sys.platform.startswith("linux") else sys.platform


def make_builder(build: bool = False) -> FFI:
    header = header_path()
    library = library_path(build)
    platform = _platform()
    link_args = list(_LINK_ARGS.get(platform, []))
    link_args += shlex.split(os.environ.get("TIDINGS_FFI_LINK_ARGS", ""))

    builder = FFI()
    builder.cdef(cdef_from_header(header.read_text(encoding="utf-8")))
    builder.cdef(
        """
        extern "Python" void _tidings_on_log(void *, tidings_log_level, const char *, const char *);
        """
    )
    builder.set_source(
        "tidings._native",
        '#include "tidings.h"\n',
        include_dirs=[str(header.parent)],
        extra_objects=[str(library)],
        libraries=_LIBRARIES.get(platform, []),
        extra_link_args=link_args,
    )
    return builder


# setup.py's build_ext runs cargo (library_path(build=True)) before compiling.
ffibuilder = make_builder()

if __name__ == "__main__":
    make_builder(build=True).compile(tmpdir=str(HERE / "build" / "cffi"), verbose=True)
