"""Signatures, conversation ids and tokens (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

import tidings

KEY, SECRET, SOCKET = "app-key", "app-secret-1", "123.456"


def sign(text: str) -> str:
    return f"{KEY}:" + hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_channel_auth_is_pusher_hmac() -> None:
    channel = "private-conversation-1-18"
    assert tidings.channel_auth(KEY, SECRET, SOCKET, channel) == sign(f"{SOCKET}:{channel}")
    with pytest.raises(tidings.InvalidArgument, match="socket_id"):
        tidings.channel_auth(KEY, SECRET, "nope", channel)
    with pytest.raises(tidings.InvalidArgument, match="channel"):
        tidings.channel_auth(KEY, SECRET, SOCKET, "bad channel")


def test_presence_auth() -> None:
    channel = "presence-conversation-1-18"
    data = '{"user_id":"1","user_info":{"name":"Ana"}}'
    assert tidings.presence_auth(KEY, SECRET, SOCKET, channel, data) == sign(f"{SOCKET}:{channel}:{data}")
    response = tidings.presence_auth_response(KEY, SECRET, SOCKET, channel, "1", {"name": "Ana"})
    assert json.loads(response["channel_data"]) == {"user_id": "1", "user_info": {"name": "Ana"}}
    assert response["auth"] == sign(f"{SOCKET}:{channel}:{response['channel_data']}")
    with pytest.raises(tidings.InvalidJson):
        tidings.presence_auth(KEY, SECRET, SOCKET, channel, "{not json")
    with pytest.raises(tidings.InvalidArgument, match="object"):
        tidings.presence_auth(KEY, SECRET, SOCKET, channel, "[1]")


def test_user_auth() -> None:
    data = '{"id":"17"}'
    assert tidings.user_auth(KEY, SECRET, SOCKET, data) == sign(f"{SOCKET}::user::{data}")
    response = tidings.user_auth_response(KEY, SECRET, SOCKET, {"id": "17", "name": "Bo"})
    assert response["auth"] == sign(f"{SOCKET}::user::{response['user_data']}")


def test_conversation_id() -> None:
    assert tidings.conversation_id("18", "1") == "1-18"
    assert tidings.conversation_id("9", "10") == "9-10"
    with pytest.raises(tidings.InvalidArgument):
        tidings.conversation_id("a b", "1")
    with pytest.raises(tidings.InvalidArgument):
        tidings.conversation_id("1", "1")


def test_conversation_of_channel() -> None:
    info = tidings.conversation_of_channel("private-conversation-1-18")
    assert info == tidings.ChannelConversation("1-18", ("1", "18"), False)
    assert tidings.conversation_of_channel("presence-conversation-1-18").presence
    with pytest.raises(tidings.InvalidArgument, match="not a conversation channel"):
        tidings.conversation_of_channel("private-other")


def test_tokens() -> None:
    token = tidings.mint_token(SECRET, "17", ttl_seconds=60)
    claims = tidings.verify_token(SECRET, token)
    assert claims.user == "17"
    assert time.time() + 30 < claims.exp <= time.time() + 61
    day = tidings.verify_token(SECRET, tidings.token_mint(SECRET, "17"))
    assert day.exp > time.time() + 23 * 3600
    assert tidings.token_verify is tidings.verify_token
    with pytest.raises(tidings.Unauthorized):
        tidings.verify_token("wrong-secret", token)
    with pytest.raises(tidings.InvalidArgument):
        tidings.mint_token(SECRET, "17", ttl_seconds=-1)
