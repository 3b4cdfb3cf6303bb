"""The HTTP side of Vigie: SIEM webhooks, the analyst API, health and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.errors import BadInput, Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from agent.models import Incident
    from agent.store import Store

#: A refusal's HTTP status, by the error's type (the first that matches: Forbidden before
#: its base ApprovalError, which the approval routes map themselves).
REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (BadInput, 400),
)
REFUSED = tuple(kind for kind, _ in REFUSALS)


def refusal_status(exc: Exception) -> int:
    """The HTTP status for one of `REFUSED`."""
    return next(status for kind, status in REFUSALS if isinstance(exc, kind))


#: What an incident list may show: one status, or both.
STATUSES = ("open", "closed", "any")


def ranked_incidents(store: Store, status: str = "any", min_priority: float = 0) -> list[Incident]:
    """The incidents an analyst reads, highest priority first, filtered (`status` one of
    STATUSES, else BadInput). The store is walked in pages, stopping once the priorities fall
    below `min_priority` (it returns them in that order)."""
    if status not in STATUSES:
        raise BadInput(f"unknown status {status!r}: {', '.join(STATUSES)}")
    items: list[Incident] = []
    start, chunk = 0, 1000
    while True:
        batch = store.list_incidents(limit=chunk, offset=start)
        items += [i for i in batch if status in ("any", i.status) and i.priority >= min_priority]
        if len(batch) < chunk or batch[-1].priority < min_priority:
            return items
        start += chunk
