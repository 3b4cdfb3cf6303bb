"""The same alerts, fed in the same batches, make the same incidents and proposals whichever
store holds them: SQLite (embedded) and Redis (production) carry the same history between
runs, so a deployment's ranking does not hang on its store."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import service
from agent.settings import Settings
from agent.store import Store
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.conftest import REPO


def demo_hours(tmp_path: Path) -> list[Path]:
    """The demo day (both files) cut into hourly batches, in time order, as a SIEM's webhooks
    or a sweep's pages would bring it."""
    docs: list[dict[str, Any]] = []
    for line in (REPO / "examples/demo-elastic.ndjson").open():
        with contextlib.suppress(ValueError):  # the demo's two malformed lines
            docs.append(json.loads(line))
    docs += json.loads((REPO / "examples/demo-wazuh.json").read_text())
    hours: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        stamp = doc.get("@timestamp") or doc.get("timestamp")
        if not isinstance(stamp, str):
            continue
        hour = datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y%m%d%H")
        hours.setdefault(hour, []).append(doc)
    paths = []
    for hour in sorted(hours):
        path = tmp_path / f"{hour}.ndjson"
        path.write_text("".join(json.dumps(d) + "\n" for d in hours[hour]))
        paths.append(path)
    return paths


def fed(store: Store, batches: list[Path]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Each batch triaged in turn into the store: every incident's last version, and the
    proposals (id, arguments hash)."""
    settings = Settings(llm="offline")
    latest: dict[str, Any] = {}
    for batch in batches:
        for inc in service.triage_files(settings, store, [str(batch)]).get("incidents", []):
            latest[inc.incident_id] = (
                inc.priority,
                sorted(inc.alert_ids),
                inc.title,
                [(f.name, f.points) for f in inc.explanation.priority_factors],
            )
    proposals = sorted((p.proposal_id, p.args_hash) for p in store.list_proposals())
    return latest, proposals


def test_hourly_batches_make_the_same_incidents_on_sqlite_and_redis(
    tmp_path: Path, redis_url: str
) -> None:
    batches = demo_hours(tmp_path)
    assert len(batches) >= 20  # a day, hour by hour
    on_sqlite = fed(SqliteStore(tmp_path / "v.db"), batches)
    on_redis = fed(RedisStore(redis_url), batches)
    incidents, proposals = on_sqlite
    assert len(incidents) > 10 and proposals  # a day's worth, the attack's proposals among them
    assert on_redis[0] == incidents
    assert on_redis[1] == proposals
