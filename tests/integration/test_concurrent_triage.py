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
from agent.service import triage_context, triage_lock
from agent.settings import Settings
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.conftest import ecs


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
        c.exclusive = triage_lock(redis_url)
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


def test_runs_on_one_sqlite_file_extending_one_incident_lose_no_alert(tmp_path: Path) -> None:
    """Embedded, without a broker: a scheduled `vigie triage` and an analyst's, or the server's
    webhook intake and a file, each with its own connection to the file. Two such processes
    extending the same incidents lost 5,822 of 45,544 alerts from them (the alert index still
    placed them there). Each run here has its own store object on the file, as a process has,
    and its context from `triage_context`, as the command line builds it."""
    settings = Settings(store_url=f"sqlite:///{tmp_path}/v.db", llm="offline")

    def run(docs: list[tuple[str, int, dict]]) -> None:
        ctx = triage_context(settings, SqliteStore(tmp_path / "v.db"))
        ctx.analyst = SlowAnalyst()
        run_triage_documents(docs, ctx)

    run(batch(0, 0))  # the open incident
    runs = [threading.Thread(target=run, args=(batch(first, first),)) for first in (10, 20, 30)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    incidents = SqliteStore(tmp_path / "v.db").list_incidents()
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
