"""The values calls return, parsed from the engine's JSON. Unknown fields
(added by a newer engine) are ignored; ``to_dict()`` gives the JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = [
    "Reaction",
    "Message",
    "Sent",
    "Page",
    "ReadState",
    "Unread",
    "InboxEntry",
    "Event",
    "AppInfo",
    "ServerInfo",
    "TokenClaims",
    "ChannelConversation",
]


class _Value:
    def to_dict(self) -> Dict[str, Any]:
        """The JSON form (plain dicts, lists and scalars)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True)
class Reaction(_Value):
    user_id: str
    emoji: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Reaction":
        return cls(user_id=d["user_id"], emoji=d["emoji"])


@dataclass(frozen=True)
class Message(_Value):
    """A stored message. Times are Unix milliseconds."""

    id: int
    conversation_id: str
    seq: int
    sender_id: str
    #: Empty once deleted.
    body: str
    client_msg_id: Optional[str]
    created_at: int
    edited_at: Optional[int]
    deleted_at: Optional[int]
    #: One per user, oldest first.
    reactions: Tuple[Reaction, ...] = ()

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Message":
        return cls(
            id=d["id"],
            conversation_id=d["conversation_id"],
            seq=d["seq"],
            sender_id=d["sender_id"],
            body=d["body"],
            client_msg_id=d.get("client_msg_id"),
            created_at=d["created_at"],
            edited_at=d.get("edited_at"),
            deleted_at=d.get("deleted_at"),
            reactions=tuple(Reaction.from_dict(r) for r in d.get("reactions") or ()),
        )


def _messages(items: Any) -> List[Message]:
    return [Message.from_dict(m) for m in items]


@dataclass(frozen=True)
class Sent(_Value):
    """What ``Engine.send`` returns: the stored message, and whether this
    call stored it (``False`` for a retry with a known ``client_msg_id``)."""

    message: Message
    created: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Sent":
        return cls(message=Message.from_dict(d["message"]), created=bool(d["created"]))


@dataclass(frozen=True)
class Page(_Value):
    """A page of history, newest first; ``next_before`` is the ``before`` of
    the next (older) page, ``None`` on the last one."""

    items: List[Message]
    next_before: Optional[int]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Page":
        return cls(items=_messages(d["items"]), next_before=d.get("next_before"))


@dataclass(frozen=True)
class ReadState(_Value):
    """How far one user has read one conversation (``seq`` 0: nothing)."""

    conversation_id: str
    user_id: str
    seq: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReadState":
        return cls(conversation_id=d["conversation_id"], user_id=d["user_id"], seq=d["seq"])


@dataclass(frozen=True)
class Unread(_Value):
    read_state: ReadState
    unread_count: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Unread":
        return cls(read_state=ReadState.from_dict(d["read_state"]), unread_count=d["unread_count"])


@dataclass(frozen=True)
class InboxEntry(_Value):
    """One conversation of a user's inbox."""

    conversation_id: str
    #: The other member.
    peer_id: str
    last_message: Message
    #: Messages from the peer after ``last_read_seq``, deleted ones excluded.
    unread_count: int
    last_read_seq: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InboxEntry":
        return cls(
            conversation_id=d["conversation_id"],
            peer_id=d["peer_id"],
            last_message=Message.from_dict(d["last_message"]),
            unread_count=d["unread_count"],
            last_read_seq=d["last_read_seq"],
        )


_MESSAGE_EVENTS = frozenset({"new-message", "message-edited", "message-deleted"})


@dataclass(frozen=True)
class Event(_Value):
    """One event as transports deliver it: ``event`` is its name
    (``new-message``, ``messages-read``, ``typing``, ``message-edited``,
    ``message-deleted``, ``reaction``, or ``lagged`` after the stream fell
    behind), ``channel`` the conversation channel (``None`` for ``lagged``),
    ``data`` the JSON payload."""

    event: str
    channel: Optional[str]
    data: Any

    @property
    def name(self) -> str:
        return self.event

    @property
    def message(self) -> Optional[Message]:
        """The message of a ``new-message``, ``message-edited`` or
        ``message-deleted`` event; ``None`` for other events."""
        if self.event in _MESSAGE_EVENTS and isinstance(self.data, dict):
            return Message.from_dict(self.data)
        return None

    @property
    def lagged(self) -> bool:
        """Whether this is the notice that events were dropped
        (``data["dropped"]`` of them: catch up with ``messages_after``)."""
        return self.event == "lagged"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Event":
        return cls(event=d["event"], channel=d.get("channel"), data=d.get("data"))


@dataclass(frozen=True)
class AppInfo(_Value):
    id: str
    key: str
    #: Kept out of ``repr`` so that it does not end up in logs.
    secret: str = dataclasses.field(repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AppInfo":
        return cls(id=d["id"], key=d["key"], secret=d["secret"])


@dataclass(frozen=True)
class ServerInfo(_Value):
    """Where an in-process server listens and the app clients sign for."""

    address: str
    running: bool
    app: AppInfo

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ServerInfo":
        return cls(address=d["address"], running=bool(d["running"]), app=AppInfo.from_dict(d["app"]))


@dataclass(frozen=True)
class TokenClaims(_Value):
    """A verified user token: its user and expiry (Unix seconds)."""

    user: str
    exp: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TokenClaims":
        return cls(user=d["user"], exp=d["exp"])


@dataclass(frozen=True)
class ChannelConversation(_Value):
    """The conversation a ``private-``/``presence-conversation-…`` channel
    belongs to."""

    conversation_id: str
    members: Tuple[str, str]
    presence: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ChannelConversation":
        a, b = d["members"]
        return cls(conversation_id=d["conversation_id"], members=(a, b), presence=bool(d["presence"]))
