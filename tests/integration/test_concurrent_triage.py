"""Two triage runs at once (two workers: a webhook batch and a sweep page) that both extend one
open incident. Without the shared lock the later save overwrites the earlier one's alerts."""

from __future__ import annotations

import threading
import time

from agent.analyst import OfflineAnalyst
from agent.graph import TriageContext, run_triage_documents
from agent.models import Alert, Assessment, Incident
from agent.service import triage_lock
from agent.store.redis import RedisStore
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
