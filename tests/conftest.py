from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.models import Alert
from agent.normalize import normalize

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def ecs(
    i: int | str,
    minutes: float,
    rule: str,
    host: str = "h1",
    *,
    severity: str | None = None,
    tactic: str | None = None,
    technique: str | None = None,
    module: str = "endpoint",
    **extra: Any,
) -> dict[str, Any]:
    """A small generic-ECS alert document for tests."""
    doc: dict[str, Any] = {
        "@timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "event": {"id": f"a{i}", "kind": "alert", "module": module},
        "rule": {"name": rule, "id": rule.lower().replace(" ", "-")},
        "host": {"name": host},
        "message": f"{rule} on {host}",
    }
    if severity:
        doc["rule"]["severity"] = severity
    if tactic or technique:
        doc["threat"] = [
            {"tactic": {"id": tactic}, "technique": [{"id": technique}] if technique else []}
        ]
    doc.update(extra)
    return doc


def alert(*args: Any, **kwargs: Any) -> Alert:
    return normalize(ecs(*args, **kwargs))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not present at {SHARED_DATA}")
    return SHARED_DATA
