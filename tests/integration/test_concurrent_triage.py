"""Two triage runs at once (two workers: a webhook batch and a sweep page; or two processes on
one SQLite file) that both extend one open incident. Without the shared lock the later save
overwrites the earlier one's alerts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.analyst import OfflineAnalyst
from agent.errors import Transient
from agent.graph import TriageContext, run_triage_documents
from agent.models import Alert, Assessment, Incident
from agent.service import triage_context
from agent.settings import Settings
from agent.store import open_store
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.conftest import ecs, free_port


class SlowAnalyst(OfflineAnalyst):
    """The offline analyst, taking as long as a model call would: runs overlap for sure."""

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        time.sleep(0.4)
        return super().assess(incident, alerts)


def batch(first: int, minutes: float) -> list[tuple[str, int, dict]]:
    return [
        ("batch", n, ecs(first + n, minutes + n, "Web shell", "web1", severity="high"))
        for n in range(5)
    ]


def test_concurrent_runs_extending_one_incident_lose_no_alert(redis_url: str) -> None:
    store = RedisStore(redis_url)

    def ctx() -> TriageContext:
        c = TriageContext(store=store, analyst=SlowAnalyst(), playbooks=[])
        c.exclusive = store.one_run_at_a_time
        return c

    run_triage_documents(batch(0, 0), ctx())  # the open incident
    runs = [
        threading.Thread(target=run_triage_documents, args=(batch(first, first), ctx()))
        for first in (10, 20, 30)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    incidents = store.list_incidents()
    placed = [a for inc in incidents for a in inc.alert_ids]
    expected = [f"a{first + n}" for first in (0, 10, 20, 30) for n in range(5)]
    assert len(incidents) == 1  # every run extended the same incident...
    assert sorted(placed) == sorted(expected)  # ...and none of their alerts was overwritten


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_runs_on_one_store_extending_one_incident_lose_no_alert(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Without a broker: a scheduled `vigie triage` and an analyst's, or the server's webhook
    intake and a file, each with its own connection to the store. Two such processes
    extending the same incidents lost 5,822 of 45,544 alerts from them (the alert index still
    placed them there). Each run here has its own store object, as a process has, and its
    context from `triage_context`, as the command line builds it. A Redis store was not
    locked at all without a broker (an analyst's `vigie triage` beside the workers), and the
    workers locked in the broker's database, not the store's."""
    url = f"sqlite:///{tmp_path}/v.db" if kind == "sqlite" else request.getfixturevalue("redis_url")
    settings = Settings(store_url=url, llm="offline")

    def run(docs: list[tuple[str, int, dict]]) -> None:
        ctx = triage_context(settings, open_store(url))
        ctx.analyst = SlowAnalyst()
        run_triage_documents(docs, ctx)

    run(batch(0, 0))  # the open incident
    runs = [threading.Thread(target=run, args=(batch(first, first),)) for first in (10, 20, 30)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    incidents = open_store(url).list_incidents()
    placed = [a for inc in incidents for a in inc.alert_ids]
    expected = [f"a{first + n}" for first in (0, 10, 20, 30) for n in range(5)]
    assert len(incidents) == 1
    assert sorted(placed) == sorted(expected)


def test_a_run_lock_that_cannot_be_opened_is_a_typed_error(tmp_path: Path) -> None:
    """A full or read-only disk beside the store: the run stops with `Transient` (a worker's
    task is retried, the command line says why), not an OSError traceback."""
    store = SqliteStore(tmp_path / "v.db")
    (tmp_path / "v.db.run-lock").mkdir()  # where the lock file goes: cannot be opened
    with pytest.raises(Transient, match="cannot open"), store.one_run_at_a_time():
        pass


def test_the_redis_run_lock_waits_then_is_a_typed_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run waits its turn, then gives up with `Transient` (a worker's task is retried);
    a store out of reach is `Transient` too, not a redis-py exception."""
    import agent.store.redis as redis_store

    monkeypatch.setattr(redis_store, "RUN_LOCK_WAIT_SECONDS", 0.3)
    holder, other = RedisStore(redis_url), RedisStore(redis_url)
    with holder.one_run_at_a_time():
        started = time.monotonic()
        with pytest.raises(Transient, match="another triage run"), other.one_run_at_a_time():
            pass
        assert time.monotonic() - started >= 0.15  # it waited (redis-py tries every 0.1 s)
    with other.one_run_at_a_time():  # released: the next run goes
        pass
    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(Transient, match="store unavailable"), down.one_run_at_a_time():
        pass


def test_a_run_longer_than_the_redis_lock_s_lifetime_keeps_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock expires so that a process dying with it blocks the others for a while only;
    a run lasting longer (a model slow to answer) lost it, and a second run could extend
    the incident the first was extending. It is renewed while the run lasts."""
    import agent.store.redis as redis_store

    monkeypatch.setattr(redis_store, "RUN_LOCK_SECONDS", 0.6)
    monkeypatch.setattr(redis_store, "RUN_LOCK_WAIT_SECONDS", 0.2)
    holder, other = RedisStore(redis_url), RedisStore(redis_url)
    with holder.one_run_at_a_time():
        time.sleep(1.5)  # two and a half lifetimes
        with pytest.raises(Transient, match="another triage run"), other.one_run_at_a_time():
            pass
    with other.one_run_at_a_time():
        pass


def test_a_thread_never_reads_another_thread_s_transaction_half_done(tmp_path: Path) -> None:
    """The SQLite store's one connection is shared by its threads (the API's and the embedded
    triage's): a read between a transaction's statements saw them uncommitted, as the web API
    once listed an incident before its proposals. A read waits for the transaction; this one
    is rolled back, so the read must see nothing of it."""
    store = SqliteStore(tmp_path / "v.db")
    written, seen = threading.Event(), threading.Event()
    read: list[object] = []

    def reader() -> None:
        written.wait(5)
        read.append(store.get_checkpoint("half-done"))
        seen.set()

    thread = threading.Thread(target=reader)
    thread.start()
    with pytest.raises(RuntimeError), store._tx() as db:
        db.execute("INSERT INTO checkpoints VALUES (?, ?)", ("half-done", b'"x"'))
        written.set()
        seen.wait(0.5)  # the read, had it not waited for the transaction
        raise RuntimeError("rolled back")
    thread.join(5)
    assert read == [None]
