"""The LangGraph run end to end in-process: results and dead letters reach the store."""

from __future__ import annotations

import json
from pathlib import Path

from agent.analyst import OfflineAnalyst
from agent.errors import Transient
from agent.graph import TriageContext, run_triage
from agent.models import Alert, Assessment, Incident
from agent.playbooks import load_playbooks
from agent.settings import REPO_ROOT
from agent.store.sqlite import SqliteStore
from tests.conftest import ecs


class BrokenAnalyst:
    name = "mistral"

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        raise Transient("endpoint unreachable")


def test_only_bad_input_still_stores_its_dead_letters(tmp_path: Path) -> None:
    f = tmp_path / "bad.ndjson"
    f.write_text("nope\n{}\n")
    store = SqliteStore(tmp_path / "v.db")
    state = run_triage([str(f)], TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[]))
    assert state.get("incidents", []) == []
    assert [(d.line, d.reason.split(":")[0]) for d in store.dead_letters()] == [
        (1, "invalid JSON"),
        (2, "unrecognised document"),
    ]


def test_failed_analyst_falls_back_to_offline_and_says_so(tmp_path: Path) -> None:
    f = tmp_path / "a.ndjson"
    docs = [ecs(1, 0, "Web shell", "web", severity="high"), ecs(2, 1, "Port scan", "fw")]
    f.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(
        store=store, analyst=BrokenAnalyst(), playbooks=load_playbooks(REPO_ROOT / "playbooks")
    )
    state = run_triage([str(f)], ctx)
    incidents = state["incidents"]
    assert len(incidents) == 2
    for inc in incidents:
        assert inc.assessment is not None and inc.assessment.analyst == "offline"
        assert any("offline fallback" in n for n in inc.assessment.notes)
        stored = store.get_incident(inc.incident_id)
        assert stored is not None and stored.alert_ids == inc.alert_ids
