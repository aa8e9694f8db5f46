"""What a host's own auth endpoint needs: Pusher channel, presence and user
signatures, conversation ids, and user tokens. Pure functions, no engine."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from . import _ffi
from ._ffi import lib
from ._types import ChannelConversation, TokenClaims

__all__ = [
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
]


def channel_auth(app_key: str, app_secret: str, socket_id: str, channel: str) -> str:
    """The ``auth`` value of a private (or encrypted) channel subscription
    (``"key:hex"``). Answer the browser with ``{"auth": <this>}`` once you
    decided that its user may subscribe."""
    return _ffi.call_str(
        lib.tidings_channel_auth,
        _ffi.cstr(app_key, "app_key"),
        _ffi.cstr(app_secret, "app_secret"),
        _ffi.cstr(socket_id, "socket_id"),
        _ffi.cstr(channel, "channel"),
    )


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def presence_auth(app_key: str, app_secret: str, socket_id: str, channel: str, channel_data: str) -> str:
    """The ``auth`` value of a presence channel subscription; it signs
    ``channel_data`` (the JSON text ``{"user_id": ..., "user_info": ...}``),
    which must be sent back exactly as signed. See
    :func:`presence_auth_response` for both at once."""
    return _ffi.call_str(
        lib.tidings_presence_auth,
        _ffi.cstr(app_key, "app_key"),
        _ffi.cstr(app_secret, "app_secret"),
        _ffi.cstr(socket_id, "socket_id"),
        _ffi.cstr(channel, "channel"),
        _ffi.cstr(channel_data, "channel_data"),
    )


def presence_auth_response(
    app_key: str,
    app_secret: str,
    socket_id: str,
    channel: str,
    user_id: str,
    user_info: Optional[Mapping[str, Any]] = None,
) -> Dict[str, str]:
    """The whole answer to a presence subscription's auth request:
    ``{"auth": ..., "channel_data": ...}``, ready for ``json.dumps``."""
    data: Dict[str, Any] = {"user_id": user_id}
    if user_info is not None:
        data["user_info"] = dict(user_info)
    channel_data = _json_text(data)
    return {
        "auth": presence_auth(app_key, app_secret, socket_id, channel, channel_data),
        "channel_data": channel_data,
    }


def user_auth(app_key: str, app_secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` value of a ``pusher:signin``; it signs ``user_data``
    (the JSON text ``{"id": ..., ...}``), sent back exactly as signed. See
    :func:`user_auth_response`."""
    return _ffi.call_str(
        lib.tidings_user_auth,
        _ffi.cstr(app_key, "app_key"),
        _ffi.cstr(app_secret, "app_secret"),
        _ffi.cstr(socket_id, "socket_id"),
        _ffi.cstr(user_data, "user_data"),
    )


def user_auth_response(app_key: str, app_secret: str, socket_id: str, user: Mapping[str, Any]) -> Dict[str, str]:
    """The whole answer to a user-authentication request:
    ``{"auth": ..., "user_data": ...}``; ``user`` must have an ``"id"``."""
    user_data = _json_text(dict(user))
    return {"auth": user_auth(app_key, app_secret, socket_id, user_data), "user_data": user_data}


def conversation_id(user_a: str, user_b: str) -> str:
    """The id of the conversation between two users (``"1-18"``), the same
    whichever order they are given in."""
    return _ffi.call_str(lib.tidings_conversation_id, _ffi.cstr(user_a, "user_a"), _ffi.cstr(user_b, "user_b"))


def conversation_of_channel(channel: str) -> ChannelConversation:
    """The conversation of a ``private-conversation-{a}-{b}`` or
    ``presence-conversation-{a}-{b}`` channel, with its two members;
    :class:`tidings.InvalidArgument` for any other channel."""
    return ChannelConversation.from_dict(
        _ffi.call_json(lib.tidings_conversation_of_channel, _ffi.cstr(channel, "channel"))
    )


def mint_token(app_secret: str, user_id: str, ttl_seconds: int = 0) -> str:
    """A user token for ``user_id``, valid for ``ttl_seconds`` (0: one day;
    at most 366 days), which ``tidings serve`` accepts on its chat API and
    auth endpoints."""
    return _ffi.call_str(
        lib.tidings_token_mint,
        _ffi.cstr(app_secret, "app_secret"),
        _ffi.cstr(user_id, "user_id"),
        _ffi.u64(ttl_seconds, "ttl_seconds"),
    )


def verify_token(app_secret: str, token: str) -> TokenClaims:
    """The claims of a valid token; :class:`tidings.Unauthorized` for a
    malformed, forged or expired one."""
    return TokenClaims.from_dict(
        _ffi.call_json(lib.tidings_token_verify, _ffi.cstr(app_secret, "app_secret"), _ffi.cstr(token, "token"))
    )


#: The C ABI's names for :func:`mint_token` and :func:`verify_token`.
token_mint = mint_token
token_verify = verify_token
