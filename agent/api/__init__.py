"""The HTTP side of Vigie: SIEM webhooks, the analyst API, health and metrics."""

from agent.errors import BadInput, Conflict, Forbidden, NotFound

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
