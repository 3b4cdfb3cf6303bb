"""Reading incidents by status from a store that has kept a long history: a page of the open
ones (the analyst's list, the incident page's rank line) and pages of the closed ones.

    .venv/bin/python benchmarks/incident_list_bench.py [N] [OPEN]    # default 100,000 and 1,000

Fills a real redis-server, and an SQLite file, with N incidents of which OPEN are open (the
store's own `save_triage`, in runs of 5,000), then times each read (the mean of 20) and counts
the bytes Redis sent for it.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from agent.models import Incident
from agent.store import Store
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.conftest import RedisServer

RUN = 5_000
READS: dict[str, Callable[[Store], object]] = {
    "a page of 50 open": lambda s: s.list_incidents(status="open", limit=50),
    "how many open at 50 or more": lambda s: s.count_incidents(status="open", min_priority=50),
    "a page of 50 closed": lambda s: s.list_incidents(status="closed", limit=50),
    "the 1,000th page of 50 closed": lambda s: s.list_incidents(
        status="closed", limit=50, offset=49_950
    ),
    "how many closed at 80 or more": lambda s: s.count_incidents(status="closed", min_priority=80),
    "a page of 50, any status": lambda s: s.list_incidents(limit=50),
}


def history(n: int, opened: int) -> list[Incident]:
    """N incidents over a year, the latest OPEN still open."""
    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Incident(
            incident_id=f"INC-{k:012d}",
            alert_ids=[f"a{k}"],
            priority=round(rng.uniform(0, 100), 2),
            title=f"incident {k}",
            first_seen=t0 + timedelta(minutes=5 * k),
            last_seen=t0 + timedelta(minutes=5 * k + 1),
            status="open" if k >= n - opened else "closed",
        )
        for k in range(n)
    ]


def fill(store: Store, incidents: list[Incident]) -> None:
    for start in range(0, len(incidents), RUN):
        store.save_triage(incidents[start : start + RUN], [], [], [], actor="bench")


def timed(read: Callable[[], object], reps: int = 20) -> float:
    read()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.mean(times) * 1000


def main(n: int, opened: int) -> None:
    incidents = history(n, opened)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        try:
            stores: dict[str, Store] = {
                "redis": RedisStore(server.url(0)),
                "sqlite": SqliteStore(Path(tmp) / "bench.db"),
            }
            raw = redis.Redis.from_url(server.url(0))
            for store in stores.values():
                fill(store, incidents)
            print(f"{n:,} incidents, {opened:,} open")
            for what, read in READS.items():
                before = int(raw.info("stats")["total_net_output_bytes"])
                read(stores["redis"])
                sent = int(raw.info("stats")["total_net_output_bytes"]) - before
                ms = {name: timed(lambda s=s, r=read: r(s)) for name, s in stores.items()}
                print(
                    f"  {what:30} redis {ms['redis']:7.2f} ms ({sent:,} bytes sent)   "
                    f"sqlite {ms['sqlite']:7.2f} ms"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 1_000,
    )
