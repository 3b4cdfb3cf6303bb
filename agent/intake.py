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
    Vector's newline-delimited framing post them) as the list of its lines' documents; either
    repaired where a byte is not UTF-8 or a string holds a raw tab (`repaired_json`)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        not_json = BadInput(f"body is not valid JSON: {exc}")
    lines = [line for line in body.split(b"\n") if line.strip()]
    docs = [_line_value(lines[0])] if len(lines) > 1 else []
    if not docs or isinstance(docs[0], orjson.JSONDecodeError):  # one document, not NDJSON
        repaired = repaired_json(body)
        if repaired is None:
            raise not_json
        return repaired
    for n, line in enumerate(lines[1:], 2):
        value = _line_value(line)
        if isinstance(value, orjson.JSONDecodeError):
            raise BadInput(f"body is neither JSON nor NDJSON: line {n}: {value}") from value
        docs.append(value)
    return docs


def _line_value(line: bytes) -> Any:
    """An NDJSON line's document, repaired if need be; else orjson's error (no document is)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        repaired = repaired_json(line)
        return exc if repaired is None else repaired


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
