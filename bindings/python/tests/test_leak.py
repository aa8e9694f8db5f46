"""Leak/load: 100,000 sends in one process keep resident memory flat (within
10% after warm-up).

The SQLite store keeps messages on disk, but its writer connection has a
page cache of up to 16 MiB (``PRAGMA cache_size = -16384``), which fills as
the database grows. The test first stores a few thousand large messages in
another conversation, so the database outgrows that cache before the
warm-up ends; what grows after that would be the bindings' or the engine's
memory."""

from __future__ import annotations

import os

import pytest

import tidings

TOTAL = 100_000
WARM_UP = 20_000
STEP = 10_000
# 3,000 messages of ~9 KiB: a database larger than the writer's page cache.
PREFILL = 3_000
PREFILL_BODY = " ".join(f"w{i}" for i in range(1500))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_100k_sends_keep_rss_flat(tmp_path, capsys) -> None:
    samples = []
    with tidings.Engine({"store": f"sqlite://{tmp_path / 'load.db'}"}) as engine:
        for _ in range(PREFILL):
            engine.send("5", "6", PREFILL_BODY)
        with engine.events() as events:
            for n in range(1, TOTAL + 1):
                sender, peer = ("1", "18") if n % 2 else ("18", "1")
                sent = engine.send(sender, peer, f"message number {n}")
                assert sent.message.seq == n
                if n % 10 == 0:
                    # Drain the stream (it holds up to 4096 events).
                    while events.next(timeout=0) is not None:
                        pass
                if n % 100 == 0:
                    # The other paths too: a read, an error, a typing event.
                    assert engine.history("1-18", limit=3).items[0].seq == n
                    with pytest.raises(tidings.NotFound):
                        engine.message(10**12 + n)
                    engine.typing("1", "1-18")
                if n % STEP == 0:
                    samples.append((n, rss_bytes()))
    warm = next(rss for n, rss in samples if n == WARM_UP)
    final = samples[-1][1]
    peak = max(rss for n, rss in samples if n >= WARM_UP)
    with capsys.disabled():
        print("\nRSS after N sends (MiB): " + ", ".join(f"{n // 1000}k={rss / 2**20:.1f}" for n, rss in samples))
        print(
            f"RSS warm-up ({WARM_UP}) {warm / 2**20:.1f} MiB, final ({TOTAL}) {final / 2**20:.1f} MiB, "
            f"peak after warm-up {peak / 2**20:.1f} MiB, growth {100 * (final - warm) / warm:+.1f}%"
        )
    assert peak <= warm * 1.10, samples
