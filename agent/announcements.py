"""People's decisions, told to the outbound webhooks whichever way they were made (API, UI or
CLI): a SOAR following incidents must not miss a closing because it was typed in a terminal.

Each is sent once its record is stored; `agent.worker.emit` queues the delivery, which retries
and audits a failure (`outbound.failed`), and does nothing when no outbound webhook is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.worker import emit

if TYPE_CHECKING:
    from agent.dispositions import Closing
    from agent.models import ActionProposal, Incident


def decided(p: ActionProposal, who: str) -> None:
    """An approval decision (an approval, a rejection, a withdrawal by a closing)."""
    emit(
        "approval.decided",
        {
            "proposal_id": p.proposal_id,
            "incident_id": p.incident_id,
            "action": p.action,
            "args": p.args,
            "state": p.state.value,
            "by": who,
        },
    )


def closed(c: Closing) -> None:
    """A person's closing (the rejections it made are announced as decisions)."""
    d = c.incident.disposition
    if d is None:
        return
    emit(
        "incident.closed",
        {
            "incident_id": c.incident.incident_id,
            "verdict": d.verdict,
            "reason": d.reason,
            "by": d.actor,
            "tuned": [[t.rule_id, t.host] for t in d.tuned],
            "withdrawn_proposals": c.withdrawn,
        },
    )


def reopened(incident: Incident, who: str, reason: str) -> None:
    """A closing undone: the incident is open again, for runs and for people."""
    emit(
        "incident.reopened",
        {"incident_id": incident.incident_id, "by": who, "reason": reason},
    )
