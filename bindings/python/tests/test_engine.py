"""Every Engine method, on every store (memory, SQLite, and PostgreSQL when
TIDINGS_TEST_POSTGRES_URL is set): the core scenario."""

from __future__ import annotations

import pytest

import tidings
from conftest import on_channel, wait_for


def test_core_scenario(engine: tidings.Engine, users) -> None:
    a, b, outsider = users
    conv = tidings.conversation_id(a, b)
    assert conv == tidings.conversation_id(b, a)

    with engine.events() as events:
        # send: by recipient, then into the conversation, then a retry.
        first = engine.send(a, b, "Hello teacher, homework question")
        assert isinstance(first, tidings.Sent) and first.created
        m1 = first.message
        assert (m1.conversation_id, m1.seq, m1.sender_id) == (conv, 1, a)
        assert m1.body == "Hello teacher, homework question"
        assert m1.client_msg_id is None and m1.edited_at is None and not m1.deleted
        assert m1.created_at > 1_600_000_000_000 and m1.reactions == ()

        second = engine.send(b, body="  The homework is due Friday  ", conversation_id=conv, client_msg_id="k-1")
        m2 = second.message
        assert (m2.seq, m2.body, m2.client_msg_id) == (2, "The homework is due Friday", "k-1")
        retry = engine.send(b, body="The homework is due Friday", conversation_id=conv, client_msg_id="k-1")
        assert not retry.created and retry.message.id == m2.id

        third = engine.send(a, b, "Thanks!").message
        assert third.seq == 3

        # events: new-message for each stored message, in order.
        got = [wait_for(events, on_channel(conv, "new-message")).message for _ in range(3)]
        assert [m.seq for m in got if m] == [1, 2, 3]
        assert got[0] == m1

        # history: newest first, paged by seq.
        page = engine.history(conv, limit=2)
        assert [m.seq for m in page.items] == [3, 2]
        assert page.next_before == 2
        older = engine.history(conv, before=page.next_before, limit=2)
        assert [m.seq for m in older.items] == [1] and older.next_before is None

        # messages_after: oldest first.
        assert [m.seq for m in engine.messages_after(conv, 1)] == [2, 3]
        assert [m.seq for m in engine.messages_after(conv, 0, limit=1)] == [1]
        assert engine.messages_after(conv, 3) == []

        # message by id.
        assert engine.message(m2.id) == m2

        # unread / mark_read / inbox.
        unread = engine.unread(b, conv)
        assert isinstance(unread, tidings.Unread)
        assert unread.read_state == tidings.ReadState(conv, b, 0)
        assert unread.unread_count == 2  # 1 and 3 are from a
        state = engine.mark_read(b, conv, 1)
        assert state == tidings.ReadState(conversation_id=conv, user_id=b, seq=1)
        ev = wait_for(events, on_channel(conv, "messages-read"))
        assert ev.data["user_id"] == b and ev.data["seq"] == 1
        assert engine.mark_read(b, conv, 0).seq == 1  # never moves back
        assert engine.unread(b, conv).unread_count == 1

        inbox = engine.inbox(b)
        assert len(inbox) == 1
        entry = inbox[0]
        assert (entry.conversation_id, entry.peer_id, entry.unread_count, entry.last_read_seq) == (conv, a, 1, 1)
        assert entry.last_message.seq == 3
        assert engine.inbox(outsider) == []

        # search: every word, only the user's conversations.
        found = engine.search(a, "homework")
        assert sorted(m.seq for m in found) == [1, 2]
        assert [m.seq for m in engine.search(a, "homework friday")] == [2]
        assert engine.search(outsider, "homework") == []

        # typing: an event, never stored.
        engine.typing(a, conv)
        ev = wait_for(events, on_channel(conv, "typing"))
        assert ev.data["user_id"] == a
        assert len(engine.messages_after(conv, 0)) == 3

        # edit.
        edited = engine.edit(a, m1.id, "Hello teacher, a homework question")
        assert edited.body == "Hello teacher, a homework question" and edited.edited_at is not None
        assert wait_for(events, on_channel(conv, "message-edited")).message == edited

        # react / unreact.
        reacted = engine.react(b, m1.id, "👍")
        assert reacted.reactions == (tidings.Reaction(b, "👍"),)
        ev = wait_for(events, on_channel(conv, "reaction"))
        assert ev.data["emoji"] == "👍" and ev.data["message_id"] == m1.id
        assert engine.react(b, m1.id, "🎉").reactions == (tidings.Reaction(b, "🎉"),)
        wait_for(events, on_channel(conv, "reaction"))
        unreacted = engine.unreact(b, m1.id)
        assert unreacted.reactions == ()
        ev = wait_for(events, on_channel(conv, "reaction"))
        assert ev.data["emoji"] is None

        # delete: body cleared, seq kept.
        deleted = engine.delete(a, third.id)
        assert deleted.deleted and deleted.body == "" and deleted.seq == 3
        assert wait_for(events, on_channel(conv, "message-deleted")).message == deleted
        assert engine.message(third.id).deleted

        # values convert back to their JSON form.
        assert edited.to_dict()["body"] == edited.body
        assert tidings.Message.from_dict(reacted.to_dict()) == reacted


def test_config_forms(tmp_path) -> None:
    # A JSON string, a dict, and every field.
    with tidings.Engine('{"store": "memory:"}') as e:
        assert e.send("1", "2", "x").message.seq == 1
    config = {"store": f"sqlite://{tmp_path / 'a.db'}", "event_capacity": 16, "transports": [], "plugins": []}
    with tidings.Engine(config) as e:
        e.send("1", "2", "kept")
    with tidings.Engine(config) as e:  # the same file again
        assert [m.body for m in e.history("1-2").items] == ["kept"]
    with tidings.Engine({"store": "memory:", "transports": [{"kind": "polling"}]}) as e:
        e.send("1", "2", "x")


def test_default_config_uses_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with tidings.Engine() as e:
        e.send("1", "2", "default store")
    assert (tmp_path / "tidings-data" / "tidings.db").exists()


def test_close_is_idempotent_and_final() -> None:
    e = tidings.Engine({"store": "memory:"})
    assert not e.closed and "open" in repr(e)
    e.close()
    e.close()
    assert e.closed
    with pytest.raises(tidings.ShutDown) as info:
        e.send("1", "2", "late")
    assert info.value.status == 112


def test_collected_engines_are_released() -> None:
    import gc

    for _ in range(20):
        e = tidings.Engine({"store": "memory:"})
        e.send("1", "2", "x")
        del e
    gc.collect()


def test_limits_are_checked(memory_engine: tidings.Engine) -> None:
    memory_engine.send("1", "2", "x")
    with pytest.raises(tidings.InvalidArgument, match="limit"):
        memory_engine.history("1-2", limit=0)
    with pytest.raises(tidings.InvalidArgument, match="limit"):
        memory_engine.history("1-2", limit=-1)
    with pytest.raises(tidings.InvalidArgument, match="message_id"):
        memory_engine.message(2**63)
    with pytest.raises(TypeError):
        memory_engine.message("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        memory_engine.inbox(1)  # type: ignore[arg-type]
