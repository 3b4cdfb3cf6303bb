"""The HTTP side of Vigie: SIEM webhooks, the analyst API, health and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from agent.errors import BadInput, Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from agent.models import IncidentStatus

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


#: The longest host, user or address an incident list is filtered by (`involving`).
MAX_ENTITY = 256

#: What an incident list may show: one status, or both.
SHOWN = ("open", "closed", "any")


def status_shown(shown: str) -> IncidentStatus | None:
    """The status an incident list asks the store for ("any": none); BadInput for any other
    word."""
    if shown not in SHOWN:
        raise BadInput(f"unknown status {shown!r}: {', '.join(SHOWN)}")
    return None if shown == "any" else cast("IncidentStatus", shown)
