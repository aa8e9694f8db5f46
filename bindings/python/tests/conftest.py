"""Shared fixtures: the stores a scenario runs against, unique user ids, and
waiting for events with a deadline (never a sleep)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

import tidings

POSTGRES_ENV = "TIDINGS_TEST_POSTGRES_URL"


def postgres_url() -> Optional[str]:
    """The PostgreSQL store of this run; fails under CI when it is missing,
    so a broken runner cannot pass by skipping."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{POSTGRES_ENV} is not set but CI=true: the PostgreSQL tests must run")
    pytest.skip(f"{POSTGRES_ENV} is not set")
    return None  # pragma: no cover


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store URL: each scenario using it runs on all three stores."""
    if request.param == "memory":
        return "memory:"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'tidings.db'}"
    url = postgres_url()
    assert url is not None
    return url


@pytest.fixture
def engine(store: str) -> Iterator[tidings.Engine]:
    with tidings.Engine({"store": store}) as e:
        yield e


@pytest.fixture
def memory_engine() -> Iterator[tidings.Engine]:
    with tidings.Engine({"store": "memory:"}) as e:
        yield e


@pytest.fixture
def users() -> Tuple[str, str, str]:
    """Two members and an outsider, unique per test so that a PostgreSQL
    database kept between runs never mixes conversations."""
    tag = uuid.uuid4().hex[:10]
    return f"a{tag}", f"b{tag}", f"c{tag}"


def wait_for(
    events: tidings.Events,
    predicate: Callable[[tidings.Event], bool],
    timeout: float = 10.0,
) -> tidings.Event:
    """The first event matching ``predicate``, skipping others; fails after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen: List[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no matching event within {timeout} s; saw {seen}")
        event = events.next(timeout=left)
        if event is None:
            if events.closed:
                pytest.fail(f"the stream closed before a matching event; saw {seen}")
            continue
        if predicate(event):
            return event
        seen.append(f"{event.event}@{event.channel}")


def on_channel(conversation_id: str, name: str) -> Callable[[tidings.Event], bool]:
    channel = f"private-conversation-{conversation_id}"
    return lambda ev: ev.channel == channel and ev.event == name
