"""Typed errors. Connectors translate library exceptions into these once; callers branch on type."""

from __future__ import annotations


class VigieError(Exception):
    """Base of every error Vigie raises on purpose."""


class Transient(VigieError):
    """The other side may succeed if asked again later (timeouts, 5xx, connection resets)."""


class RateLimited(Transient):
    """The other side asked us to slow down (HTTP 429)."""


class AuthError(VigieError):
    """Credentials were refused; retrying will not help."""


class NotFound(VigieError):
    """The thing asked for does not exist."""


class BadInput(VigieError):
    """Input that cannot be used as given; the message says why, for a human."""


class InputChanged(BadInput):
    """A file read earlier in the run no longer holds the document an alert came from (rewritten
    or replaced while it was triaged): its document cannot be shown or stored as read."""


class Conflict(VigieError):
    """The thing changed since the request was made (an incident someone already closed)."""


class ApprovalError(VigieError):
    """A decision that the approval state machine refuses (wrong state, wrong person, ...)."""


class Forbidden(ApprovalError):
    """The person is known but their role does not allow this decision."""


class ConfigError(VigieError):
    """Settings that cannot work together, refused at start-up rather than mid-run."""


class SystemicFailure(VigieError):
    """Triage failed on every part of a lot, or on too many documents alone to blame them: a
    fault of the run (a store gone wrong, a bug every input meets), not of an input. The lot
    is left as it came, for a later try."""
