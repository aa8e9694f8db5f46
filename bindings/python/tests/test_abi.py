"""The ABI check at import, versions, the package's typing marker, logging."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import tidings
from tidings import _ffi


def test_versions() -> None:
    major, minor = tidings.abi_version()
    assert major == tidings.ABI_MAJOR == 1 and minor >= 0
    assert tidings.__version__ == tidings.version()
    assert tidings.version().count(".") == 2


def test_another_major_is_refused() -> None:
    _ffi.check_abi((1 << 16) | 7)  # a newer minor is fine
    with pytest.raises(tidings.AbiMismatch, match="ABI 2.0") as info:
        _ffi.check_abi(2 << 16)
    assert isinstance(info.value, ImportError)
    with pytest.raises(tidings.AbiMismatch, match="need ABI major 1"):
        _ffi.check_abi(0 << 16 | 3)


def test_import_fails_clearly_on_a_mismatch(tmp_path) -> None:
    # A fresh interpreter where the library claims ABI 2.0.
    script = (
        "import importlib.machinery, importlib.util, pathlib, sys\n"
        "pkg = importlib.util.find_spec('tidings').submodule_search_locations[0]\n"
        "path = str(next(pathlib.Path(pkg).glob('_native*.so')))\n"
        "loader = importlib.machinery.ExtensionFileLoader('tidings._native', path)\n"
        "spec = importlib.util.spec_from_file_location('tidings._native', path, loader=loader)\n"
        "native = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(native)\n"
        "real = native.lib\n"
        "class Lib:\n"
        "    def __getattr__(self, name): return getattr(real, name)\n"
        "    def tidings_abi_version(self): return 2 << 16\n"
        "native.lib = Lib()\n"
        "sys.modules['tidings._native'] = native\n"
        "try:\n"
        "    import tidings\n"
        "except ImportError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "refused: tidings: the loaded library speaks C ABI 2.0" in out.stdout, out


def test_package_is_typed() -> None:
    assert (Path(tidings.__file__).parent / "py.typed").exists()


def test_logging_reaches_python(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tidings")
    tidings.enable_logging(logging.DEBUG)
    try:
        with tidings.Engine({"store": "memory:"}):
            pass  # opening an engine logs a debug line
    finally:
        tidings.disable_logging()
    assert any(r.name.startswith("tidings") and "engine opened" in r.getMessage() for r in caplog.records)


def test_a_tidings_call_from_a_log_handler_is_reentrant() -> None:
    statuses = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                tidings.Engine({"store": "memory:"}).close()
            except tidings.Reentrant as exc:
                statuses.append(exc.status)

    logger = logging.getLogger("tidings")
    handler = Handler(logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    tidings.enable_logging("debug")
    try:
        with tidings.Engine({"store": "memory:"}):
            pass
    finally:
        tidings.disable_logging()
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert statuses and set(statuses) == {103}
