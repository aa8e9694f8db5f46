"""Builds ``tidings._native`` with cffi (see build_ffi.py): before compiling,
``build_ext`` brings ``libtidings_ffi.a`` up to date with cargo when this is
a clone of the repository and TIDINGS_FFI_LIB_DIR is not set."""

import re
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_ffi  # noqa: E402


class build_ext_with_cargo(build_ext):
    def run(self) -> None:
        library = str(build_ffi.library_path(build=True))
        for ext in self.extensions:
            if ext.name == "tidings._native":
                # Relink when the static library changed.
                ext.depends = list(ext.depends) + [library]
        super().run()


def version() -> str:
    header = build_ffi.header_path().read_text(encoding="utf-8")
    parts = [
        re.search(rf"#define TIDINGS_VERSION_{part} (\d+)", header).group(1)
        for part in ("MAJOR", "MINOR", "PATCH")
    ]
    return ".".join(parts)


setup(
    version=version(),
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": build_ext_with_cargo},
    zip_safe=False,
)
