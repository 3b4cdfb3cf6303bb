"""Webhook intake: parse, validate, store durably, then triage in batches.

`accept` answers only after the batch (and the documents it rejected) are stored, so a 202
means nothing will be lost. `process_pending` triages every stored batch at once, which is how
a burst of webhooks becomes one triage run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from agent.documents import excerpt
from agent.errors import AuthError, BadInput
from agent.graph import TriageContext, run_triage_isolating
from agent.models import DeadLetter
from agent.normalize import NormalizeError, normalize
from agent.store import Store
from connectors.files import BOM
from connectors.lenient import repaired_json
from connectors.webhooks import PARSERS, NotAnAlert

# How long a signed webhook-id is remembered: longer than the 5-minute timestamp tolerance,
# both ways, so a replay is refused for as long as its signature would still verify.
REPLAY_WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class Intake:
    batch_id: str
    accepted: int
    rejected: int


def _payload(body: bytes) -> Any:
    """One JSON document, or NDJSON (one alert a line, as Fluent Bit's `json_lines` format and
    Vector's newline-delimited framing post them) as the list of its lines' documents."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        not_json = BadInput(f"body is not valid JSON: {exc}")
    if (repaired := repaired_json(body)) is not None:  # a byte that is not UTF-8, a raw tab
        return repaired
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) < 2:
        raise not_json
    docs = []
    for n, line in enumerate(lines, 1):
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            if (repaired := repaired_json(line)) is not None:
                docs.append(repaired)
                continue
            # A first line that is not JSON: not NDJSON either, and the JSON error says more.
            ndjson = BadInput(f"body is neither JSON nor NDJSON: line {n}: {exc}")
            raise (not_json if n == 1 else ndjson) from exc
    return docs


def accept(store: Store, source: str, body: bytes, replay_key: str | None = None) -> Intake:
    """Parse and store one webhook body. `replay_key` (a signed request's id) is recorded with
    the batch; a key already seen raises AuthError and stores nothing."""
    parser = PARSERS.get(source)
    if parser is None:
        raise BadInput(f"unknown webhook source {source!r}; known: {sorted(PARSERS)}")
    docs = parser(_payload(body.removeprefix(BOM)))
    valid: list[dict[str, Any]] = []
    dead: list[DeadLetter] = []
    for n, doc in enumerate(docs, 1):
        if isinstance(doc, NotAnAlert):
            dead.append(_dead_letter(source, n, doc.value, doc.reason))
        elif (reason := _unreadable(doc)) is not None:
            dead.append(_dead_letter(source, n, doc, reason))
        else:
            valid.append(doc)
    batch_id = uuid.uuid4().hex
    if not store.save_intake(batch_id, source, valid, dead, replay_key, REPLAY_WINDOW_SECONDS):
        raise AuthError("replayed webhook-id")
    return Intake(batch_id, len(valid), len(dead))


def _dead_letter(source: str, n: int, value: Any, reason: str) -> DeadLetter:
    return DeadLetter(source=f"webhook:{source}", line=n, reason=reason, excerpt=excerpt(value))


def _unreadable(doc: dict[str, Any]) -> str | None:
    """Why the document is no alert Vigie can triage, or None: checked before the 202, so
    what is stored will triage."""
    try:
        normalize(doc)
    except NormalizeError as exc:
        return str(exc)
    return None


def process_pending(store: Store, ctx: TriageContext, limit: int = 500) -> dict[str, int]:
    """Triage every pending batch in one run; batches are done only once results are stored."""
    batches = store.claim_intake(limit)
    if not batches:
        return {"batches": 0, "alerts": 0, "incidents": 0}
    docs = [(f"webhook:{bid}", n, d) for bid, items in batches for n, d in enumerate(items, 1)]
    state = run_triage_isolating(docs, ctx)
    store.finish_intake([bid for bid, _ in batches])
    return {
        "batches": len(batches),
        "alerts": len(state.get("alerts", [])),
        "incidents": len(state.get("incidents", [])),
    }
