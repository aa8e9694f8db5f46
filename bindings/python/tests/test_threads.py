"""Many threads on one engine: seqs stay 1..N without gaps or repeats, and a
reader thread sees every message."""

from __future__ import annotations

import threading
from typing import List

import tidings

THREADS = 16
PER_THREAD = 100


def test_sixteen_threads_one_engine(store: str, users) -> None:
    a, b, _ = users
    total = THREADS * PER_THREAD
    with tidings.Engine({"store": store, "event_capacity": total * 4}) as engine:
        conv = tidings.conversation_id(a, b)
        barrier = threading.Barrier(THREADS + 1)
        seqs: List[List[int]] = [[] for _ in range(THREADS)]
        errors: List[BaseException] = []
        with engine.events() as events:
            seen = set()
            all_seen = threading.Event()

            def read() -> None:
                channel = f"private-conversation-{conv}"
                for ev in events:
                    assert not ev.lagged, ev
                    if ev.channel == channel and ev.event == "new-message":
                        seen.add(ev.data["seq"])
                        if len(seen) == total:
                            all_seen.set()
                            return

            def send(i: int) -> None:
                try:
                    barrier.wait(30)
                    for n in range(PER_THREAD):
                        sender, peer = (a, b) if (i + n) % 2 else (b, a)
                        sent = engine.send(sender, peer, f"t{i} n{n}", client_msg_id=f"{i}-{n}")
                        assert sent.created
                        seqs[i].append(sent.message.seq)
                        if n % 25 == 0:  # reads interleaved with the writes
                            engine.history(conv, limit=5)
                            engine.unread(a, conv)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            workers = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
            for w in workers:
                w.start()
            barrier.wait(30)
            for w in workers:
                w.join(300)
            assert not errors, errors[:3]
            assert all(not w.is_alive() for w in workers)

            # Each thread saw its own seqs rise; together they are 1..N.
            for mine in seqs:
                assert mine == sorted(mine) and len(mine) == PER_THREAD
            assert sorted(s for mine in seqs for s in mine) == list(range(1, total + 1))

            # The store agrees, and so does the event stream.
            stored: List[int] = []
            after = 0
            while True:
                batch = engine.messages_after(conv, after, limit=1000)
                if not batch:
                    break
                stored += [m.seq for m in batch]
                after = batch[-1].seq
            assert stored == list(range(1, total + 1))
            assert all_seen.wait(60), f"reader saw {len(seen)} of {total}"
            reader.join(10)
        assert engine.unread(b, conv).unread_count == total // 2


def test_close_waits_for_calls_in_flight() -> None:
    engine = tidings.Engine({"store": "memory:"})
    results: List[object] = []
    barrier = threading.Barrier(5)

    def hammer() -> None:
        barrier.wait(10)
        while True:
            try:
                engine.send("1", "2", "x")
            except tidings.ShutDown as exc:
                results.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    barrier.wait(10)
    engine.send("1", "2", "main")
    engine.close()  # must not free the handle under the others
    for t in threads:
        t.join(30)
    assert len(results) == 4 and all(isinstance(r, tidings.ShutDown) for r in results)
