"""tidings: an embeddable real-time messaging engine, from Python.

>>> import tidings
>>> with tidings.Engine({"store": "memory:"}) as engine:
...     sent = engine.send("1", "18", "Hello teacher")
...     engine.history("1-18").items[0].body
'Hello teacher'

The bindings call the C ABI (``ffi/include/tidings.h``) through cffi; the
Rust library is linked into the compiled module ``tidings._native``.
"""

from __future__ import annotations

from typing import Tuple

from ._errors import (
    AbiMismatch,
    Config,
    Conflict,
    Forbidden,
    InvalidArgument,
    InvalidJson,
    InvalidUtf8,
    NotFound,
    NullArgument,
    Panic,
    Reentrant,
    ShutDown,
    Storage,
    TidingsError,
    Transport,
    Unauthorized,
    Unknown,
    error_for_status,
)
from ._ffi import ABI_MAJOR, ffi as _cffi, lib as _lib  # checks the ABI version at import
from ._types import (
    AppInfo,
    ChannelConversation,
    Event,
    InboxEntry,
    Message,
    Page,
    Reaction,
    ReadState,
    Sent,
    ServerInfo,
    TokenClaims,
    Unread,
)
from ._engine import ConfigLike, Engine, Events, Subscription
from ._server import Server
from ._auth import (
    channel_auth,
    conversation_id,
    conversation_of_channel,
    mint_token,
    presence_auth,
    presence_auth_response,
    token_mint,
    token_verify,
    user_auth,
    user_auth_response,
    verify_token,
)
from ._log import TRACE, disable_logging, enable_logging


def version() -> str:
    """The version of the linked tidings library, such as ``"0.1.0"``."""
    return str(_cffi.string(_lib.tidings_version()).decode("ascii"))


def abi_version() -> Tuple[int, int]:
    """The C ABI version of the linked library, ``(major, minor)``."""
    raw = int(_lib.tidings_abi_version())
    return raw >> 16, raw & 0xFFFF


__version__ = version()

__all__ = [
    "__version__",
    "version",
    "abi_version",
    "ABI_MAJOR",
    # engine, events, server
    "Engine",
    "ConfigLike",
    "Events",
    "Subscription",
    "Server",
    # values
    "AppInfo",
    "ChannelConversation",
    "Event",
    "InboxEntry",
    "Message",
    "Page",
    "Reaction",
    "ReadState",
    "Sent",
    "ServerInfo",
    "TokenClaims",
    "Unread",
    # auth and tokens
    "channel_auth",
    "presence_auth",
    "presence_auth_response",
    "user_auth",
    "user_auth_response",
    "conversation_id",
    "conversation_of_channel",
    "mint_token",
    "verify_token",
    "token_mint",
    "token_verify",
    # logging
    "enable_logging",
    "disable_logging",
    "TRACE",
    # errors
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
