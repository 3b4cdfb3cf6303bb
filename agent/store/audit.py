"""The audit trail's hash chain, shared by every store."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from agent.models import AuditEvent


def chain_hash(
    prev_hash: str, seq: int, at: str, actor: str, kind: str, subject: str, data: Any
) -> str:
    body = orjson.dumps(
        {"seq": seq, "at": at, "actor": actor, "kind": kind, "subject": subject, "data": data},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def first_broken(events: list[AuditEvent]) -> int | None:
    """The seq of the first event whose hash does not follow from its predecessor, if any."""
    prev = ""
    for e in events:
        expected = chain_hash(prev, e.seq, e.at.isoformat(), e.actor, e.kind, e.subject, e.data)
        if e.prev_hash != prev or e.hash != expected:
            return e.seq
        prev = e.hash
    return None
