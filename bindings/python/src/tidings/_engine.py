"""``Engine`` (``tidings_engine``) and its event streams (``tidings_events``)."""

from __future__ import annotations

import json
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Type, Union

from . import _ffi
from ._errors import ShutDown
from ._ffi import ffi, lib
from ._types import Event, InboxEntry, Message, Page, ReadState, Sent, Unread

__all__ = ["Engine", "Events", "Subscription", "ConfigLike"]

#: An engine config: the ``EngineConfig`` JSON form as a dict or a JSON
#: string, or ``None`` for every default.
ConfigLike = Union[Mapping[str, Any], str, None]

# Guards the registries of streams and engines (weak sets).
_registry_lock = threading.Lock()

# How long one tidings_events_next call waits at most, so that a Python
# signal (Ctrl-C) is handled soon even while waiting for a long time.
_WAIT_SLICE = 0.25


class Engine:
    """An engine: a store, the outbox worker and the transports.

    ``config`` is the ``EngineConfig`` JSON form as a dict or a JSON string
    (``{"store": "memory:"}``, ``{"store": "sqlite:///path/tidings.db"}``,
    ``{"store": "postgres://user@host/db", "event_capacity": 4096,
    "transports": [...], "plugins": [...]}``); ``None`` takes every default
    (an SQLite file under ``./tidings-data``). Unknown fields raise
    :class:`tidings.Config`.

    Thread-safe: any thread may call any method, concurrently; each call
    blocks its thread (not the others: the GIL is released) until the
    engine answers. Use it as a context manager, or call :meth:`close`.
    """

    __slots__ = ("_handle", "_owner", "_streams", "__weakref__")

    def __init__(self, config: ConfigLike = None):
        raw = _ffi.config_json(config)
        out = ffi.new("tidings_engine **")
        err = ffi.new("char **")
        status = lib.tidings_engine_new(raw, out, err)
        if status != _ffi.OK:
            _ffi.raise_status(status, err)
        self._handle = _ffi.Handle(out[0], lib.tidings_engine_free, "engine")
        self._owner: Any = None
        self._streams: "weakref.WeakSet[Events]" = weakref.WeakSet()

    @classmethod
    def _from_ptr(cls, ptr: Any, owner: Any) -> "Engine":
        engine = cls.__new__(cls)
        engine._handle = _ffi.Handle(ptr, lib.tidings_engine_free, "engine")
        # Keeps the server alive while its engine is used.
        engine._owner = owner
        engine._streams = weakref.WeakSet()
        return engine

    def _engine_stopped(self) -> None:
        """The engine was shut down by its server: its streams hand out what
        they hold, then end. (tidings_server_stop does not end the streams
        while handles to the engine live; see the README.)"""
        with _registry_lock:
            streams = list(self._streams)
        for stream in streams:
            stream._ending = True

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Shuts the engine down (pending events are delivered, for a few
        seconds at most; its event streams end) and releases it. Waits for
        calls in flight on other threads; later calls raise
        :class:`tidings.ShutDown`. Idempotent. An engine obtained from
        :meth:`tidings.Server.engine` is only released: the server's engine
        keeps running until the server stops."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidings.Engine {'closed' if self.closed else 'open'}>"

    # -- calls ------------------------------------------------------------

    def _json(self, func: Callable[..., int], *args: Any) -> Any:
        ptr = self._handle.enter()
        try:
            return _ffi.call_json(func, ptr, *args)
        finally:
            self._handle.leave()

    def send(
        self,
        sender: str,
        to: Optional[str] = None,
        body: Optional[str] = None,
        *,
        conversation_id: Optional[str] = None,
        client_msg_id: Optional[str] = None,
    ) -> Sent:
        """Stores a message from ``sender`` to ``to`` (or into
        ``conversation_id``) and returns it once durable; its ``new-message``
        event follows. A retry with a known ``client_msg_id`` stores nothing
        new and returns ``created=False``.

        ``engine.send("1", "18", "Hello")``,
        ``engine.send("1", body="Hi", conversation_id="1-18")``.
        """
        request: Dict[str, Any] = {"from": sender}
        if to is not None:
            request["to"] = to
        if conversation_id is not None:
            request["conversation_id"] = conversation_id
        if body is not None:
            request["body"] = body
        if client_msg_id is not None:
            request["client_msg_id"] = client_msg_id
        return Sent.from_dict(self._json(lib.tidings_engine_send, _ffi.to_json(request, "request")))

    def history(self, conversation_id: str, before: Optional[int] = None, limit: int = 50) -> Page:
        """A page of history, newest first: up to ``limit`` (1-100) messages
        with a seq below ``before``, or the newest when ``before`` is
        ``None``. Pass ``page.next_before`` to get the next (older) page."""
        return Page.from_dict(
            self._json(
                lib.tidings_engine_history,
                _ffi.cstr(conversation_id, "conversation_id"),
                _ffi.i64(0 if before is None else before, "before"),
                _ffi.u32(limit, "limit"),
            )
        )

    def messages_after(self, conversation_id: str, after: int = 0, limit: int = 100) -> List[Message]:
        """Messages with a seq above ``after``, oldest first, at most
        ``limit`` (1-1000): what a client missed."""
        return [
            Message.from_dict(m)
            for m in self._json(
                lib.tidings_engine_messages_after,
                _ffi.cstr(conversation_id, "conversation_id"),
                _ffi.i64(after, "after"),
                _ffi.u32(limit, "limit"),
            )
        ]

    def message(self, message_id: int) -> Message:
        """One message by id; :class:`tidings.NotFound` when there is none."""
        return Message.from_dict(self._json(lib.tidings_engine_message, _ffi.i64(message_id, "message_id")))

    def mark_read(self, user_id: str, conversation_id: str, up_to: int) -> ReadState:
        """Marks the conversation read by ``user_id`` up to seq ``up_to`` (a
        mark never moves back; ``messages-read`` is emitted when it moved)."""
        return ReadState.from_dict(
            self._json(
                lib.tidings_engine_mark_read,
                _ffi.cstr(user_id, "user_id"),
                _ffi.cstr(conversation_id, "conversation_id"),
                _ffi.i64(up_to, "up_to"),
            )
        )

    def unread(self, user_id: str, conversation_id: str) -> Unread:
        """The user's read mark and unread count in a conversation."""
        return Unread.from_dict(
            self._json(
                lib.tidings_engine_unread,
                _ffi.cstr(user_id, "user_id"),
                _ffi.cstr(conversation_id, "conversation_id"),
            )
        )

    def inbox(self, user_id: str, limit: int = 50) -> List[InboxEntry]:
        """The user's conversations, newest activity first, at most ``limit``."""
        return [
            InboxEntry.from_dict(e)
            for e in self._json(lib.tidings_engine_inbox, _ffi.cstr(user_id, "user_id"), _ffi.u32(limit, "limit"))
        ]

    def search(self, user_id: str, query: str, limit: int = 50) -> List[Message]:
        """Messages in the user's conversations containing every word of
        ``query``, at most ``limit``."""
        return [
            Message.from_dict(m)
            for m in self._json(
                lib.tidings_engine_search,
                _ffi.cstr(user_id, "user_id"),
                _ffi.cstr(query, "query"),
                _ffi.u32(limit, "limit"),
            )
        ]

    def typing(self, user_id: str, conversation_id: str) -> None:
        """Tells the conversation that ``user_id`` is typing (a ``typing``
        event; never stored)."""
        ptr = self._handle.enter()
        try:
            _ffi.call_void(
                lib.tidings_engine_typing,
                ptr,
                _ffi.cstr(user_id, "user_id"),
                _ffi.cstr(conversation_id, "conversation_id"),
            )
        finally:
            self._handle.leave()

    def edit(self, user_id: str, message_id: int, body: str) -> Message:
        """Replaces the body of a message; only its sender may
        (:class:`tidings.Forbidden` otherwise)."""
        return Message.from_dict(
            self._json(
                lib.tidings_engine_edit,
                _ffi.cstr(user_id, "user_id"),
                _ffi.i64(message_id, "message_id"),
                _ffi.cstr(body, "body"),
            )
        )

    def delete(self, user_id: str, message_id: int) -> Message:
        """Soft-deletes a message (body cleared, seq kept); only its sender may."""
        return Message.from_dict(
            self._json(lib.tidings_engine_delete, _ffi.cstr(user_id, "user_id"), _ffi.i64(message_id, "message_id"))
        )

    def react(self, user_id: str, message_id: int, emoji: str) -> Message:
        """Sets the user's one reaction on a message, replacing an earlier one."""
        return Message.from_dict(
            self._json(
                lib.tidings_engine_react,
                _ffi.cstr(user_id, "user_id"),
                _ffi.i64(message_id, "message_id"),
                _ffi.cstr(emoji, "emoji"),
            )
        )

    def unreact(self, user_id: str, message_id: int) -> Message:
        """Takes the user's reaction back (a ``reaction`` event with
        ``emoji`` ``None``)."""
        return Message.from_dict(
            self._json(lib.tidings_engine_unreact, _ffi.cstr(user_id, "user_id"), _ffi.i64(message_id, "message_id"))
        )

    # -- events -----------------------------------------------------------

    def events(self, timeout: Optional[float] = None) -> "Events":
        """Subscribes to every event the engine delivers from now on.

        ``for ev in engine.events(): ...`` waits for events until the stream
        is closed (:meth:`Events.close`, from any thread) or the engine shuts
        down; with ``timeout`` (seconds), iteration also stops when no event
        came within it. ``events.next(timeout=1.0)`` returns one event or
        ``None``. The stream holds at most ``event_capacity`` events: a
        reader further behind gets one ``lagged`` event instead."""
        ptr = self._handle.enter()
        try:
            out = ffi.new("tidings_events **")
            err = ffi.new("char **")
            status = lib.tidings_events_new(ptr, out, err)
            if status != _ffi.OK:
                _ffi.raise_status(status, err)
            events = Events(out[0], self, timeout)
            with _registry_lock:
                self._streams.add(events)
                if getattr(self._owner, "_stopped", False):
                    events._ending = True
            return events
        finally:
            self._handle.leave()

    def subscribe(self, callback: Callable[[Event], Any], *, name: Optional[str] = None) -> "Subscription":
        """Runs ``callback(event)`` for every event on a thread of its own
        (started now, so no event sent after this returns is missed) until
        the returned :class:`Subscription` is closed or the engine shuts
        down. An exception from ``callback`` is kept in
        ``subscription.error`` and ends the subscription."""
        return Subscription(self.events(), callback, name)


class Events:
    """A stream of an engine's events (``tidings_events``).

    Iterate it (``for ev in events``), or poll it with :meth:`next`. Close
    it from any thread with :meth:`close` (a waiting reader wakes at once),
    or use it as a context manager. Reading from several threads at once is
    allowed; they are served one at a time."""

    __slots__ = ("_handle", "_engine", "timeout", "_closed_seen", "_ending", "__weakref__")

    def __init__(self, ptr: Any, engine: Any, timeout: Optional[float] = None):
        self._handle = _ffi.Handle(ptr, lib.tidings_events_free, "event stream")
        # Keeps the engine (and a server) alive while the stream is read.
        self._engine = engine
        #: The default timeout of iteration, in seconds (``None``: no timeout).
        self.timeout = timeout
        self._closed_seen = False
        # Set when the engine stopped: read what is queued, then end.
        self._ending = False

    @property
    def closed(self) -> bool:
        """Whether no more events will come: :meth:`close` was called or the
        engine shut down (seen by a read)."""
        return self._closed_seen or self._handle.closed

    def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting up to ``timeout`` seconds (``0``: do not
        wait; ``None``: until one comes or the stream closes). ``None`` when
        none came in time or the stream is closed (see :attr:`closed`)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            ptr = self._handle.enter()
        except ShutDown:
            return None
        try:
            out = ffi.new("char **")
            err = ffi.new("char **")
            while True:
                ending = self._ending
                if ending:
                    wait = 0.0
                elif deadline is None:
                    wait = _WAIT_SLICE
                else:
                    wait = min(_WAIT_SLICE, max(0.0, deadline - time.monotonic()))
                status = lib.tidings_events_next(ptr, int(wait * 1000), out, err)
                if status == _ffi.OK:
                    return Event.from_dict(json.loads(_ffi.take_bytes(out[0])))
                if status == _ffi.CLOSED or (status == _ffi.TIMEOUT and ending):
                    self._closed_seen = True
                    return None
                if status != _ffi.TIMEOUT:
                    _ffi.raise_status(status, err)
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        finally:
            self._handle.leave()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.next(self.timeout)
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Ends the stream: a reader waiting now or later gets no more
        events. Callable from any thread; idempotent."""
        self._handle.close(wake=lib.tidings_events_close)

    def __enter__(self) -> "Events":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidings.Events {'closed' if self.closed else 'open'}>"


class Subscription:
    """A thread draining an event stream into a callback (see
    :meth:`Engine.subscribe`)."""

    def __init__(self, events: Events, callback: Callable[[Event], Any], name: Optional[str] = None):
        self.events = events
        self.callback = callback
        #: The exception ``callback`` raised, which ended the subscription.
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name or "tidings-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                event = self.events.next(None)
                if event is None:
                    return
                self.callback(event)
        except BaseException as exc:  # noqa: BLE001 - reported through .error
            self.error = exc
        finally:
            self.events.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stops the thread (after the callback in progress returns) and
        releases the stream. Callable from the callback itself."""
        self.events.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
