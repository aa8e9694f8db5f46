"""The compiled module, the ABI check, and the helpers every call uses:
arguments to C, owned strings back, statuses to exceptions."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Optional

from ._errors import AbiMismatch, InvalidArgument, InvalidUtf8, ShutDown, error_for_status

try:
    from ._native import ffi as ffi, lib as lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "tidings: the compiled module tidings._native is missing or does not load "
        f"({exc}); reinstall the package (pip install ./bindings/python)"
    ) from exc

#: The major version of the C ABI these bindings are written for.
ABI_MAJOR = 1

NULL = ffi.NULL
OK = 0
TIMEOUT = 1
CLOSED = 2

_U32_MAX = 2**32 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64_MAX = 2**64 - 1


def check_abi(runtime: int, expected_major: int = ABI_MAJOR) -> None:
    """Refuses a library of another ABI major (``runtime`` is what
    ``tidings_abi_version()`` returned)."""
    major, minor = runtime >> 16, runtime & 0xFFFF
    if major != expected_major:
        raise AbiMismatch(
            f"tidings: the loaded library speaks C ABI {major}.{minor} but these Python "
            f"bindings need ABI major {expected_major}; rebuild and reinstall the package "
            "from the same checkout as the library (pip install ./bindings/python)"
        )


def _check_at_import() -> None:
    header_major = int(lib.TIDINGS_ABI_VERSION_MAJOR)
    if header_major != ABI_MAJOR:
        raise AbiMismatch(
            f"tidings: the package was compiled against a header of C ABI major {header_major}, "
            f"but these Python bindings need ABI major {ABI_MAJOR}"
        )
    check_abi(int(lib.tidings_abi_version()))


_check_at_import()


def status_name(status: int) -> str:
    return str(ffi.string(lib.tidings_status_name(status)).decode("ascii"))


def take_bytes(ptr: Any) -> bytes:
    """The bytes of an owned C string, which is then freed."""
    try:
        return ffi.string(ptr)  # type: ignore[no-any-return]
    finally:
        lib.tidings_string_free(ptr)


def take_str(ptr: Any) -> str:
    return take_bytes(ptr).decode("utf-8")


def raise_status(status: int, err: Any) -> None:
    """Raises the exception for a failed call; ``err`` is its ``char **``."""
    message = take_str(err[0]) if err[0] != NULL else status_name(status)
    raise error_for_status(status, message, status_name(status))


def cstr(value: str, name: str) -> bytes:
    """A ``str`` argument as NUL-terminated UTF-8. Refuses what C cannot
    carry (an embedded NUL) or what is not UTF-8 (a lone surrogate)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidUtf8(
            f"{name} is not valid UTF-8 ({exc.reason} at offset {exc.start})"
        ) from None
    if b"\0" in data:
        raise InvalidArgument(f"{name} contains a NUL character")
    return data


def _int(value: int, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def u32(value: int, name: str) -> int:
    return _int(value, name, 0, _U32_MAX)


def i64(value: int, name: str) -> int:
    return _int(value, name, _I64_MIN, _I64_MAX)


def u64(value: int, name: str) -> int:
    return _int(value, name, 0, _U64_MAX)


def config_json(config: Any, name: str = "config") -> bytes:
    """An engine or server config: a mapping (serialized), a JSON string, or
    ``None`` for every default."""
    if config is None:
        return b"{}"
    if isinstance(config, (str, bytes)):
        text = config.decode("utf-8") if isinstance(config, bytes) else config
        return cstr(text, name)
    try:
        return cstr(json.dumps(config, ensure_ascii=False), name)
    except TypeError as exc:
        raise TypeError(f"{name} must be a dict, a JSON string or None: {exc}") from None


def to_json(value: Any, name: str) -> bytes:
    return cstr(json.dumps(value, ensure_ascii=False), name)


def call_str(func: Callable[..., int], *args: Any) -> str:
    """Calls a function whose last two parameters are ``char **out,
    char **error_out`` and returns ``out`` as a str."""
    out = ffi.new("char **")
    err = ffi.new("char **")
    status = func(*args, out, err)
    if status != OK:
        raise_status(status, err)
    return take_str(out[0])


def call_json(func: Callable[..., int], *args: Any) -> Any:
    """As :func:`call_str`, parsing ``out`` as JSON."""
    out = ffi.new("char **")
    err = ffi.new("char **")
    status = func(*args, out, err)
    if status != OK:
        raise_status(status, err)
    return json.loads(take_bytes(out[0]))


def call_void(func: Callable[..., int], *args: Any) -> None:
    """Calls a function whose last parameter is ``char **error_out``."""
    err = ffi.new("char **")
    status = func(*args, err)
    if status != OK:
        raise_status(status, err)


class Handle:
    """One C handle (``ffi.gc``-owned) and the calls in flight on it, so that
    ``close`` frees it only once none is: the C ABI forbids freeing a handle
    while a call on it runs. New calls after ``close`` raise :class:`ShutDown`."""

    __slots__ = ("_ptr", "_cond", "_calls", "_closed", "_what", "__weakref__")

    def __init__(self, ptr: Any, free: Callable[[Any], None], what: str):
        self._ptr = ffi.gc(ptr, free)
        self._cond = threading.Condition(threading.Lock())
        self._calls = 0
        self._closed = False
        self._what = what

    @property
    def closed(self) -> bool:
        return self._closed

    def enter(self) -> Any:
        """Registers a call in flight and returns the pointer; pair with
        :meth:`leave` in a ``finally``."""
        with self._cond:
            if self._closed:
                raise ShutDown(f"this {self._what} is closed", 112, "shut_down")
            self._calls += 1
            return self._ptr

    def leave(self) -> None:
        with self._cond:
            self._calls -= 1
            if self._calls == 0 and self._closed:
                self._cond.notify_all()

    def close(self, wake: Optional[Callable[[Any], None]] = None) -> bool:
        """Refuses new calls, runs ``wake(ptr)`` (something that makes calls
        in flight return soon, safe to run concurrently with them), waits for
        the calls in flight and frees the handle. ``False`` when it was
        already closed."""
        with self._cond:
            if self._closed:
                return False
            self._closed = True
            ptr = self._ptr
        if wake is not None:
            wake(ptr)
        with self._cond:
            while self._calls:
                self._cond.wait()
        ffi.release(ptr)
        return True
