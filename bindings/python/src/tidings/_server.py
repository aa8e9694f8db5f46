"""``Server``: ``tidings serve`` started in process (``tidings_server``)."""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any, Mapping, Optional, Type, Union

from . import _ffi
from ._engine import Engine, _registry_lock
from ._ffi import ffi, lib
from ._types import ServerInfo

__all__ = ["Server"]


class Server:
    """The tidings server (Pusher-protocol WebSocket broker, Pusher HTTP
    API, chat API and auth endpoints) running in this process.

    ``config`` (a dict, a JSON string or ``None``), every field optional:
    ``{"listen": "127.0.0.1:6001", "data_dir": "./tidings-data", "store":
    "sqlite://./tidings-data/tidings.db", "apps": [{"id": "1", "key":
    "tidings-key", "secret": "at least 32 bytes"}], "demo": False,
    "allowed_origins": [], "transports": [...], "plugins": [...]}``.
    ``"listen": "127.0.0.1:0"`` picks a free port (see :attr:`address`).
    Without ``apps``, the default app gets a secret generated once and kept
    in ``data_dir``; a shorter secret is refused. ``"demo": True`` lets
    anyone act as any user (and logs a warning). ``allowed_origins`` lists
    the browser origins whose pages may call the chat API (default: the
    server's own only).

    Starts in the constructor; use it as a context manager, or call
    :meth:`stop` / :meth:`close`. Thread-safe.
    """

    __slots__ = ("_handle", "address", "_engines", "_stopped", "__weakref__")

    def __init__(self, config: Union[Mapping[str, Any], str, None] = None):
        raw = _ffi.config_json(config)
        out = ffi.new("tidings_server **")
        address = ffi.new("char **")
        err = ffi.new("char **")
        status = lib.tidings_server_start(raw, out, address, err)
        if status != _ffi.OK:
            _ffi.raise_status(status, err)
        self._handle = _ffi.Handle(out[0], lib.tidings_server_free, "server")
        #: The address it listens on, such as ``"127.0.0.1:43615"``.
        self.address: str = _ffi.take_str(address[0])
        self._engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def info(self) -> ServerInfo:
        """Its address, whether it runs, and its (first) app's id, key and
        secret, for pointing clients at it and signing for them."""
        ptr = self._handle.enter()
        try:
            return ServerInfo.from_dict(_ffi.call_json(lib.tidings_server_info, ptr))
        finally:
            self._handle.leave()

    def engine(self) -> Engine:
        """A handle to the server's engine: messages sent through it reach
        the server's WebSocket clients. Closing it does not stop the server's
        engine (:meth:`stop` does)."""
        ptr = self._handle.enter()
        try:
            out = ffi.new("tidings_engine **")
            err = ffi.new("char **")
            status = lib.tidings_server_engine(ptr, out, err)
            if status != _ffi.OK:
                _ffi.raise_status(status, err)
            engine = Engine._from_ptr(out[0], self)
            with _registry_lock:
                self._engines.add(engine)
            return engine
        finally:
            self._handle.leave()

    def stop(self) -> None:
        """Stops the server gracefully and waits for it: no new connections,
        WebSockets closed with code 4200, in-flight requests finished,
        pending events delivered, the engine shut down. Idempotent; the
        server can still answer :meth:`info` (``running`` false)."""
        ptr = self._handle.enter()
        try:
            _ffi.call_void(lib.tidings_server_stop, ptr)
        finally:
            self._handle.leave()
        self._engine_stopped()

    def _engine_stopped(self) -> None:
        with _registry_lock:
            self._stopped = True
            engines = list(self._engines)
        for engine in engines:
            engine._engine_stopped()

    def close(self) -> None:
        """Stops the server if it runs and releases it. Idempotent."""
        if self._handle.close():
            self._engine_stopped()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> "Server":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidings.Server {self.address}{' closed' if self.closed else ''}>"
