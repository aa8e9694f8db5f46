"""tidings' log lines into Python's :mod:`logging` (``tidings_log_set_callback``)."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any, Union

from . import _ffi
from ._ffi import ffi, lib

__all__ = ["enable_logging", "disable_logging", "TRACE"]

#: The level of tidings' trace lines in :mod:`logging` (below DEBUG).
TRACE = 5

_FROM_TIDINGS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: TRACE}
_lock = threading.Lock()
_atexit_registered = False


def _on_log(userdata: Any, level: int, target: Any, message: Any) -> None:
    # Runs on engine threads (cffi takes the GIL); never raise into Rust.
    try:
        name = ffi.string(target).decode("utf-8", "replace").replace("::", ".")
        if name != "tidings" and not name.startswith("tidings."):
            name = "tidings." + name
        logging.getLogger(name).log(
            _FROM_TIDINGS.get(level, logging.INFO), "%s", ffi.string(message).decode("utf-8", "replace")
        )
    except Exception:  # noqa: BLE001
        pass


ffi.def_extern(name="_tidings_on_log")(_on_log)


def _to_tidings(level: Union[int, str]) -> int:
    if isinstance(level, str):
        if level.upper() == "TRACE":
            return 5
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"unknown log level {level!r}")
        level = resolved
    if level <= TRACE:
        return 5
    if level <= logging.DEBUG:
        return 4
    if level <= logging.INFO:
        return 3
    if level <= logging.WARNING:
        return 2
    return 1


def enable_logging(level: Union[int, str] = logging.INFO) -> None:
    """Sends tidings' log lines at ``level`` and above (a :mod:`logging`
    level or its name; ``"TRACE"`` for everything) to the loggers named
    after their Rust module (``tidings.outbox``...). Log handlers run on
    engine threads: keep them quick, and make no tidings calls from them
    (those raise :class:`tidings.Reentrant`). Raises :class:`tidings.Config`
    when other Rust code in the process already installed a ``tracing``
    subscriber."""
    global _atexit_registered
    with _lock:
        _ffi.call_void(lib.tidings_log_set_callback, lib._tidings_on_log, _to_tidings(level), ffi.NULL, ffi.NULL)
        if not _atexit_registered:
            # No callback into an interpreter that is finalizing.
            atexit.register(disable_logging)
            _atexit_registered = True


def disable_logging() -> None:
    """Stops sending log lines to Python."""
    with _lock:
        _ffi.call_void(lib.tidings_log_set_callback, ffi.NULL, 0, ffi.NULL, ffi.NULL)
