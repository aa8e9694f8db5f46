"""The in-process server: start on a free port, its info, its engine's
events, its HTTP chat API with a minted token, and a clean stop."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

import tidings
from conftest import on_channel, wait_for

APP = {"id": "1", "key": "test-key", "secret": "test-secret-0123456789abcdef0123456789"}


@pytest.fixture
def config(tmp_path):
    return {"listen": "127.0.0.1:0", "store": "memory:", "data_dir": str(tmp_path), "apps": [APP]}


def http(server: tidings.Server, method: str, path: str, token: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{server.address}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    # Loopback only; no proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read())


def test_server_round_trip(config) -> None:
    with tidings.Server(config) as server:
        host, port = server.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0 and server.port == int(port)
        info = server.info()
        assert isinstance(info, tidings.ServerInfo)
        assert info.address == server.address and info.running and info.port == server.port
        assert info.app == tidings.AppInfo(**APP)

        # It listens.
        with socket.create_connection((host, int(port)), timeout=5):
            pass

        engine = server.engine()
        with engine.events() as events:
            sent = engine.send("1", "18", "via server").message
            ev = wait_for(events, on_channel("1-18", "new-message"))
            assert ev.channel == "private-conversation-1-18" and ev.message == sent

            # The chat API with a token minted for the server's app.
            token = tidings.mint_token(info.app.secret, "18")
            assert http(server, "GET", "/v1/me", token) == {"user_id": "18"}
            reply = http(server, "POST", "/v1/messages", token, {"to": "1", "body": "over HTTP"})
            assert reply["message"]["seq"] == 2
            ev = wait_for(events, lambda e: e.event == "new-message" and e.data["body"] == "over HTTP")
            assert ev.message.sender_id == "18"
            assert [m.body for m in engine.history("1-18").items] == ["over HTTP", "via server"]

        # Closing an engine handle leaves the server's engine running.
        engine.close()
        again = server.engine()
        assert again.send("1", "18", "still").message.seq == 3

        server.stop()
        server.stop()  # idempotent
        assert not server.info().running
        with pytest.raises(tidings.ShutDown):
            again.send("1", "18", "late")
        again.close()
    assert server.closed
    server.close()
    with pytest.raises(tidings.ShutDown):
        server.info()


def test_server_events_end_on_stop(config) -> None:
    server = tidings.Server(config)
    events = server.engine().events()
    server.stop()
    assert events.next(timeout=10) is None and events.closed
    events.close()
    late = server.engine().events()  # a stream of the stopped engine ends too
    assert late.next(timeout=10) is None and late.closed
    server.close()


def test_server_config_errors(tmp_path) -> None:
    with pytest.raises(tidings.InvalidJson):
        tidings.Server("{")
    with pytest.raises(tidings.Config, match="lisen"):
        tidings.Server({"lisen": "x"})
    with pytest.raises(tidings.Config, match="listen"):
        tidings.Server({"listen": "nowhere"})


def test_port_in_use_is_an_error(config) -> None:
    with tidings.Server(config) as first:
        clash = dict(config, listen=first.address)
        with pytest.raises(tidings.TidingsError):
            tidings.Server(clash)


def test_default_app_secret_is_generated(tmp_path) -> None:
    config = {"listen": "127.0.0.1:0", "store": "memory:", "data_dir": str(tmp_path)}
    with tidings.Server(config) as server:
        app = server.info().app
        assert app.id == "1" and app.key == "tidings-key" and len(app.secret) >= 32
    with tidings.Server(config) as server:
        assert server.info().app.secret == app.secret  # kept in data_dir
