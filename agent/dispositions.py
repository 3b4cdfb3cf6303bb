"""A person closes an incident with a verdict, and may tune its noise out of later rankings.

A SOC's first days with a new detector are its learning noise: the same rules on the same
hosts, each rare, each ranked high. An analyst who closes such an incident as a false positive
(or benign) can tune it: its rule-host pairs then stop counting as rare or new for
`tuning_days` (see `agent.prioritise`). The rest of an incident still counts (tactics,
severity, sensors, the burst of its time window), so an attack that trips a tuned rule is still
ranked by what it does and when; in an unusual window the tuning is set aside, as the pair may
be the intrusion's side effect; and an incident without a tuned pair is ranked as before.

Tuning lowers what later incidents are worth, so it is a lead's call over the API; the CLI is
the operator's own shell. Nothing here is reachable from an LLM: no tool, no prompt output,
closes or tunes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agent.approvals import SYSTEM_IDENTITIES, person, visible
from agent.errors import ApprovalError, BadInput, Conflict, Forbidden, NotFound
from agent.models import Disposal, Disposition, Incident, ProposalState, Tuning
from agent.normalize import read_host
from agent.store import Store

if TYPE_CHECKING:
    from agent.queue import ApprovalQueue

#: The verdicts a person may close an incident with.
VERDICTS: tuple[Disposal, ...] = ("true_positive", "benign", "false_positive")
#: Verdicts that say the incident was noise: only these may tune.
TUNABLE: frozenset[str] = frozenset({"benign", "false_positive"})
#: Roles that may tune over the API (recording a verdict is every analyst's).
TUNING_ROLES: frozenset[str] = frozenset({"lead", "admin"})
MAX_REASON = 500


def verdict_of(text: str) -> Disposal:
    """A verdict as a form or a command line gives it; BadInput for any other word."""
    for verdict in VERDICTS:
        if text == verdict:
            return verdict
    raise BadInput(f"unknown verdict {text!r}: {', '.join(VERDICTS)}")


@dataclass(frozen=True)
class Closing:
    """An incident closed, and what became of its pending proposals."""

    incident: Incident
    #: Pending proposals rejected in the closer's name: an incident closed as noise must leave
    #: nothing waiting for someone to approve (isolating a host over a false positive).
    withdrawn: list[str] = field(default_factory=list)
    #: Those that could not be (decided, expired or moved meanwhile): left for a person.
    left: list[str] = field(default_factory=list)


def dispose(
    store: Store,
    incident_id: str,
    verdict: Disposal,
    reason: str,
    actor: str,
    *,
    tune: bool = False,
    role: str | None = None,
    tuning_for: timedelta = timedelta(days=30),
    queue: ApprovalQueue | None = None,
    now: datetime | None = None,
) -> Closing:
    """Close the incident with the person's verdict; with `tune`, its rule-host pairs are tuned;
    with `queue` and a noise verdict, its pending proposals are rejected in the person's name.
    `role`: the caller's API role (None: a local operator, who may tune).

    Raises BadInput (no reason, or tuning a true positive), Forbidden (tuning without the role),
    NotFound, or Conflict (someone disposed of it first)."""
    reason, actor = _reason(reason), _named(actor)
    if tune and verdict not in TUNABLE:
        raise BadInput(f"only an incident closed as {' or '.join(sorted(TUNABLE))} can tune")
    if tune and role is not None and role not in TUNING_ROLES:
        raise Forbidden(f"tuning needs the {' or '.join(sorted(TUNING_ROLES))} role")
    incident = store.get_incident(incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    if incident.disposition is not None:
        raise Conflict(_already(incident))
    at = now or datetime.now(UTC)
    disposition = Disposition(
        verdict=verdict,
        reason=reason,
        actor=actor,
        at=at,
        tuned=tunings_of(incident, verdict, reason, actor, at, at + tuning_for) if tune else [],
    )
    if not store.dispose(incident_id, disposition):
        again = store.get_incident(incident_id)
        raise Conflict(_already(again) if again is not None else f"no incident {incident_id}")
    closed = incident.model_copy(update={"status": "closed", "disposition": disposition})
    if queue is None or verdict not in TUNABLE:
        return Closing(closed)
    return withdraw(store, queue, closed, f"incident closed as {verdict}: {reason}", actor)


#: The most incidents one closing may name: a page of the incident list, with room.
MAX_CLOSED_AT_ONCE = 200


@dataclass(frozen=True)
class Closings:
    """What closing several incidents at once did: each closed, or refused and why."""

    done: list[Closing]
    refused: dict[str, NotFound | Conflict]


def dispose_each(incident_ids: list[str], close: Callable[[str], Closing]) -> Closings:
    """Several incidents closed with one verdict and reason (`close`: `dispose` with them, for
    one id): a new detector's learning noise spans dozens. Each is closed and audited on its
    own; one closed meanwhile or unknown is refused and the others still close. What would
    refuse them all (no reason, a true positive tuned, no role to tune) is raised by the
    first, before anything is written."""
    ids = list(dict.fromkeys(incident_ids))
    if not ids or len(ids) > MAX_CLOSED_AT_ONCE:
        raise BadInput(f"name 1 to {MAX_CLOSED_AT_ONCE} incidents")
    done: list[Closing] = []
    refused: dict[str, NotFound | Conflict] = {}
    for incident_id in ids:
        try:
            done.append(close(incident_id))
        except (NotFound, Conflict) as exc:
            refused[incident_id] = exc
    return Closings(done, refused)


def withdraw(
    store: Store, queue: ApprovalQueue, incident: Incident, reason: str, actor: str
) -> Closing:
    """Reject the incident's pending proposals in the closer's name. After the closing is
    stored, not with it: a proposal someone approved meanwhile is theirs, and stays."""
    withdrawn, left = [], []
    for p in store.list_proposals(states=[ProposalState.pending], incident_id=incident.incident_id):
        try:
            queue.reject(p.proposal_id, actor, reason=reason)
            withdrawn.append(p.proposal_id)
        except ApprovalError:
            left.append(p.proposal_id)
    return Closing(incident, withdrawn, left)


def tunings_of(
    incident: Incident,
    verdict: Disposal,
    reason: str,
    actor: str,
    at: datetime,
    expires_at: datetime,
) -> list[Tuning]:
    """One tuning per rule-host pair of the incident's alert groups."""
    pairs = sorted({(g.rule_id, g.host) for g in incident.groups})
    return [
        Tuning(
            rule_id=rule,
            host=host,
            verdict=verdict,
            incident_id=incident.incident_id,
            actor=actor,
            at=at,
            expires_at=expires_at,
            reason=reason,
        )
        for rule, host in pairs
    ]


def _already(incident: Incident) -> str:
    d = incident.disposition
    if d is None:
        return f"incident {incident.incident_id} changed meanwhile; try again"
    return (
        f"incident {incident.incident_id} was already closed as {d.verdict} by {d.actor} "
        f"at {d.at:%Y-%m-%d %H:%M} UTC"
    )


def reopen(store: Store, incident_id: str, reason: str, actor: str) -> Incident:
    """Undo a closing made in error: the incident is open again and may be closed anew. Its
    tunings and the proposals its closing rejected stay as they are (ended or proposed anew
    on their own). Raises BadInput (no reason), NotFound, or Conflict (not closed by anyone)."""
    reason, actor = _reason(reason), _named(actor)
    if store.get_incident(incident_id) is None:
        raise NotFound(f"no incident {incident_id}")
    if not store.reopen(incident_id, actor, reason, datetime.now(UTC)):
        raise Conflict(f"incident {incident_id} was not closed by a person")
    opened = store.get_incident(incident_id)
    if opened is None:  # deleted meanwhile: stores never delete incidents
        raise NotFound(f"no incident {incident_id}")
    return opened


def _named(actor: str) -> str:
    """The person acting: a closing, a reopening or a tuning ended is theirs in the audit trail
    and on the incident, so nobody's name and the system's own are refused, as for approvals."""
    name = actor.strip()
    if not name:
        raise BadInput("the person acting must be named")
    if not visible(name):
        raise BadInput(f"{name!r}: a person's name holds no control or invisible character")
    if person(name) in SYSTEM_IDENTITIES:
        raise BadInput(f"{name!r} is a system identity: a person must act")
    return name


def _reason(text: str) -> str:
    reason = text.strip()
    if not reason or len(reason) > MAX_REASON:
        raise BadInput(f"a reason of 1 to {MAX_REASON} characters is required")
    return reason


def revoke(
    store: Store, rule_id: str, host: str, reason: str, actor: str, *, role: str | None = None
) -> None:
    """End a tuning early (a lead's call over the API, as tuning is). Raises BadInput (no
    reason), Forbidden, or NotFound (no tuning in force for the pair)."""
    reason, actor = _reason(reason), _named(actor)
    if role is not None and role not in TUNING_ROLES:
        raise Forbidden(f"revoking a tuning needs the {' or '.join(sorted(TUNING_ROLES))} role")
    # Hosts are read by machine name in lower case, as tunings record them; one made before
    # keeps its spelling.
    spellings = dict.fromkeys((read_host(host), host.lower(), host))
    if not any(store.revoke_tuning(rule_id, h, actor, reason) for h in spellings):
        raise NotFound(f"no tuning of {rule_id!r} on {host!r}")
