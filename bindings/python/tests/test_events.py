"""Event streams: iteration, timeouts, closing from another thread, lag,
and the subscription thread."""

from __future__ import annotations

import threading
import time

import pytest

import tidings
from conftest import on_channel, wait_for


@pytest.fixture
def engine():
    with tidings.Engine({"store": "memory:"}) as e:
        yield e


def test_next_times_out_with_none(engine) -> None:
    with engine.events() as events:
        start = time.monotonic()
        assert events.next(timeout=0.3) is None
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 3.0
        assert events.next(timeout=0) is None
        assert not events.closed


def test_iteration_with_a_timeout_stops_when_quiet(engine) -> None:
    with engine.events(timeout=0.5) as events:
        for i in range(3):
            engine.typing("1", "1-2")
        names = [ev.event for ev in events]
        assert names == ["typing", "typing", "typing"]
        # Iterating again resumes.
        engine.typing("2", "1-2")
        assert [ev.data["user_id"] for ev in events] == ["2"]


def test_iteration_ends_when_closed_from_another_thread(engine) -> None:
    events = engine.events()
    seen = []
    started = threading.Event()
    got_one = threading.Event()

    def read() -> None:
        started.set()
        for ev in events:  # no timeout: waits until closed
            seen.append(ev)
            got_one.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(5)
    engine.send("1", "2", "one")
    assert got_one.wait(10)
    assert seen[0].message and seen[0].message.body == "one"
    start = time.monotonic()
    events.close()
    reader.join(5)
    assert not reader.is_alive()
    assert time.monotonic() - start < 4
    assert events.closed
    assert events.next(timeout=1) is None
    events.close()  # idempotent


def test_events_end_when_the_engine_shuts_down() -> None:
    engine = tidings.Engine({"store": "memory:"})
    events = engine.events()
    engine.send("1", "2", "before shutdown")
    engine.close()
    bodies = [ev.message.body for ev in events if ev.message]
    assert bodies == ["before shutdown"]
    assert events.closed
    events.close()


def test_stream_keeps_its_engine_alive() -> None:
    events = tidings.Engine({"store": "memory:"}).events()
    # The Engine object has no other reference; the stream keeps it open.
    events._engine.typing("1", "1-2")
    assert events.next(timeout=5).event == "typing"
    events.close()


def test_a_slow_reader_gets_one_lagged_event() -> None:
    with tidings.Engine({"store": "memory:", "event_capacity": 2}) as engine:
        with engine.events() as events:
            for _ in range(5):
                engine.typing("1", "1-2")  # delivered before the call returns
            lagged = events.next(timeout=5)
            assert lagged is not None and lagged.lagged
            assert lagged.channel is None and lagged.data == {"dropped": 3}
            assert [events.next(timeout=5).event for _ in range(2)] == ["typing", "typing"]
            assert events.next(timeout=0) is None


def test_several_streams_each_see_every_event(engine) -> None:
    with engine.events() as one, engine.events() as two:
        sent = engine.send("1", "2", "to both").message
        for stream in (one, two):
            assert wait_for(stream, on_channel("1-2", "new-message")).message == sent


def test_subscribe_runs_a_callback_thread(engine) -> None:
    got = []
    arrived = threading.Event()

    def on_event(ev: tidings.Event) -> None:
        got.append(ev)
        if len(got) == 3:
            arrived.set()

    with engine.subscribe(on_event) as sub:
        assert sub.running
        for i in range(3):
            engine.send("1", "2", f"m{i}")
        assert arrived.wait(10)
    assert not sub.running and sub.error is None
    assert [ev.message.seq for ev in got if ev.message] == [1, 2, 3]


def test_subscribe_reports_callback_errors(engine) -> None:
    def boom(ev: tidings.Event) -> None:
        raise RuntimeError("callback failed")

    sub = engine.subscribe(boom)
    engine.typing("1", "1-2")
    sub._thread.join(10)
    assert not sub.running
    assert isinstance(sub.error, RuntimeError)
    assert sub.events.closed
    sub.close()


def test_subscription_can_close_itself(engine) -> None:
    holder = {}

    def once(ev: tidings.Event) -> None:
        holder["sub"].close()

    holder["sub"] = sub = engine.subscribe(once)
    engine.typing("1", "1-2")
    sub._thread.join(10)
    assert not sub.running and sub.error is None


def test_events_of_a_closed_engine_raise_shut_down() -> None:
    engine = tidings.Engine({"store": "memory:"})
    engine.close()
    with pytest.raises(tidings.ShutDown):
        engine.events()
    with pytest.raises(ValueError):
        tidings.Engine({"store": "memory:"}).events().next(timeout=-1)
