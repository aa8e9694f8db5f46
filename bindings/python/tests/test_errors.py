"""Errors arrive as TidingsError subclasses with the engine's message and
the numeric status."""

from __future__ import annotations

import pickle

import pytest

import tidings


@pytest.fixture
def engine():
    with tidings.Engine({"store": "memory:"}) as e:
        yield e


def test_bad_user_id(engine) -> None:
    with pytest.raises(tidings.InvalidArgument) as info:
        engine.send("a b", "2", "x")
    err = info.value
    assert isinstance(err, tidings.TidingsError) and isinstance(err, ValueError)
    assert err.status == 105 and err.code == "invalid_argument"
    assert "a b" in err.message
    assert "invalid_argument (105)" in str(err)
    with pytest.raises(tidings.InvalidArgument):
        engine.inbox("")


def test_empty_body(engine) -> None:
    with pytest.raises(tidings.InvalidArgument, match="empty"):
        engine.send("1", "2", "   ")
    with pytest.raises(tidings.InvalidArgument, match="body"):
        engine.send("1", "2")  # no body at all
    sent = engine.send("1", "2", "x").message
    with pytest.raises(tidings.InvalidArgument, match="empty"):
        engine.edit("1", sent.id, "")


def test_not_the_sender(engine) -> None:
    sent = engine.send("1", "2", "mine").message
    with pytest.raises(tidings.Forbidden) as info:
        engine.edit("2", sent.id, "changed")
    assert info.value.status == 107 and isinstance(info.value, PermissionError)
    with pytest.raises(tidings.Forbidden):
        engine.delete("2", sent.id)
    with pytest.raises(tidings.Forbidden, match="not in conversation"):
        engine.send("3", body="x", conversation_id="1-2")
    with pytest.raises(tidings.Forbidden):
        engine.mark_read("3", "1-2", 1)
    assert engine.message(sent.id).body == "mine"


def test_not_found(engine) -> None:
    with pytest.raises(tidings.NotFound) as info:
        engine.message(999999)
    assert info.value.status == 106 and "999999" in info.value.message
    assert isinstance(info.value, LookupError)
    with pytest.raises(tidings.NotFound):
        engine.edit("1", 424242, "x")


def test_bad_conversation_id(engine) -> None:
    with pytest.raises(tidings.InvalidArgument, match="conversation id"):
        engine.history("2-1")


def test_invalid_json_config() -> None:
    with pytest.raises(tidings.InvalidJson) as info:
        tidings.Engine('{"store":')
    assert info.value.status == 102 and "config_json" in info.value.message


def test_unknown_config_field() -> None:
    with pytest.raises(tidings.Config) as info:
        tidings.Engine({"stor": "memory:"})
    assert info.value.status == 111 and "stor" in info.value.message
    with pytest.raises(tidings.Config, match="carrier-pigeon"):
        tidings.Engine({"store": "memory:", "transports": [{"kind": "carrier-pigeon"}]})
    with pytest.raises(tidings.Config):
        tidings.Engine({"store": "nosuchscheme://x"})
    with pytest.raises(TypeError):
        tidings.Engine({"store": object()})  # not JSON-serializable


def test_storage_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(tidings.TidingsError) as info:
        tidings.Engine({"store": f"sqlite://{blocker / 'sub' / 'x.db'}"})
    assert info.value.status in (109, 111)  # Storage or Config


def test_strings_c_cannot_carry(engine) -> None:
    with pytest.raises(tidings.InvalidArgument, match="NUL"):
        engine.inbox("1\x002")
    with pytest.raises(tidings.InvalidUtf8) as info:
        engine.inbox("\ud800")
    assert info.value.status == 101
    # In a JSON request a NUL is escaped, and the engine refuses it itself.
    with pytest.raises(tidings.InvalidArgument, match="NUL"):
        engine.send("1", "2", "a\x00b")


def test_unauthorized_token() -> None:
    token = tidings.mint_token("the-secret-123", "17")
    with pytest.raises(tidings.Unauthorized) as info:
        tidings.verify_token("another-secret", token)
    assert info.value.status == 113
    with pytest.raises(tidings.Unauthorized):
        tidings.verify_token("the-secret-123", "garbage")


def test_shut_down(engine) -> None:
    engine.close()
    with pytest.raises(tidings.ShutDown):
        engine.history("1-2")
    with pytest.raises(tidings.ShutDown):
        engine.events()


def test_status_table() -> None:
    expected = {
        100: tidings.NullArgument,
        101: tidings.InvalidUtf8,
        102: tidings.InvalidJson,
        103: tidings.Reentrant,
        104: tidings.Panic,
        105: tidings.InvalidArgument,
        106: tidings.NotFound,
        107: tidings.Forbidden,
        108: tidings.Conflict,
        109: tidings.Storage,
        110: tidings.Transport,
        111: tidings.Config,
        112: tidings.ShutDown,
        113: tidings.Unauthorized,
        199: tidings.Unknown,
    }
    from tidings._ffi import status_name

    for status, cls in expected.items():
        err = tidings.error_for_status(status, "m")
        assert type(err) is cls and err.status == status
        assert cls.STATUS == status
        # The class's code is the library's name for the number.
        assert cls.CODE == status_name(status)
    future = tidings.error_for_status(150, "from a newer library")
    assert type(future) is tidings.Unknown and future.status == 150
    err = tidings.NotFound("gone", 106, "not_found")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is tidings.NotFound and again.status == 106 and again.message == "gone"
