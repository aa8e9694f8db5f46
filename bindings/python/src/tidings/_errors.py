"""The exceptions: one class per ``tidings_status`` error code, all under
:class:`TidingsError`."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "TidingsError",
    "NullArgument",
    "InvalidUtf8",
    "InvalidJson",
    "Reentrant",
    "Panic",
    "InvalidArgument",
    "NotFound",
    "Forbidden",
    "Conflict",
    "Storage",
    "Transport",
    "Config",
    "ShutDown",
    "Unauthorized",
    "Unknown",
    "AbiMismatch",
    "error_for_status",
]


class TidingsError(Exception):
    """A call failed. ``status`` is the numeric ``tidings_status`` (stable
    forever), ``code`` its lower-case name (``"not_found"``) and ``message``
    what the engine said."""

    #: The ``tidings_status`` number of this class (``None`` for the base).
    STATUS: Optional[int] = None
    #: The stable lower-case name of the status.
    CODE: str = "unknown"

    status: int
    code: str
    message: str

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else (self.STATUS if self.STATUS is not None else 199)
        self.code = code if code is not None else self.CODE

    def __str__(self) -> str:
        return f"{self.message} [{self.code} ({self.status})]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status})"

    def __reduce__(self) -> Tuple[Any, Tuple[str, int, str]]:  # picklable across processes
        return (type(self), (self.message, self.status, self.code))


class NullArgument(TidingsError, ValueError):
    """A required argument was missing (NULL at the C boundary)."""

    STATUS, CODE = 100, "null_argument"


class InvalidUtf8(TidingsError, ValueError):
    """A string was not valid UTF-8 (a lone surrogate, for instance)."""

    STATUS, CODE = 101, "invalid_utf8"


class InvalidJson(TidingsError, ValueError):
    """A JSON argument did not parse as JSON."""

    STATUS, CODE = 102, "invalid_json"


class Reentrant(TidingsError):
    """A blocking call was made from a tidings callback (a log handler)."""

    STATUS, CODE = 103, "reentrant"


class Panic(TidingsError):
    """A bug inside tidings: a Rust panic was caught at the boundary."""

    STATUS, CODE = 104, "panic"


class InvalidArgument(TidingsError, ValueError):
    """A value that can never be valid: bad user id, empty body, unknown
    field, limit out of range..."""

    STATUS, CODE = 105, "invalid_argument"


class NotFound(TidingsError, LookupError):
    """The conversation or message does not exist."""

    STATUS, CODE = 106, "not_found"


class Forbidden(TidingsError, PermissionError):
    """The user may not do this (not the sender, not a member)."""

    STATUS, CODE = 107, "forbidden"


class Conflict(TidingsError):
    """The request clashes with stored state."""

    STATUS, CODE = 108, "conflict"


class Storage(TidingsError):
    """The store failed or cannot be reached; nothing was half-written."""

    STATUS, CODE = 109, "storage"


class Transport(TidingsError):
    """A transport refused or could not take an event."""

    STATUS, CODE = 110, "transport"


class Config(TidingsError, ValueError):
    """The configuration is invalid (engine config, server config)."""

    STATUS, CODE = 111, "config"


class ShutDown(TidingsError):
    """The engine or server is shut down (or this handle was closed)."""

    STATUS, CODE = 112, "shut_down"


class Unauthorized(TidingsError):
    """A user token was refused: malformed, forged or expired."""

    STATUS, CODE = 113, "unauthorized"


class Unknown(TidingsError):
    """An error this version of the bindings has no class for."""

    STATUS, CODE = 199, "unknown"


class AbiMismatch(ImportError):
    """The loaded library speaks another major version of the C ABI."""


_BY_STATUS: Dict[int, Type[TidingsError]] = {
    int(cls.STATUS or 199): cls
    for cls in (
        NullArgument,
        InvalidUtf8,
        InvalidJson,
        Reentrant,
        Panic,
        InvalidArgument,
        NotFound,
        Forbidden,
        Conflict,
        Storage,
        Transport,
        Config,
        ShutDown,
        Unauthorized,
        Unknown,
    )
}


def error_for_status(status: int, message: str, code: Optional[str] = None) -> TidingsError:
    """The exception for a ``tidings_status`` number; a number this version
    does not know (a newer library's) becomes :class:`Unknown` keeping it."""
    cls = _BY_STATUS.get(status, Unknown)
    return cls(message, status, code)
