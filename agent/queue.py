"""The approval queue as a service: what the CLI, the API and the UI call to decide.

Deciding is a compare-and-swap on the stored proposal; when a proposal becomes approved, only
its id is handed to the `enqueue` callback (a Celery task in production).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agent import approvals
from agent.errors import ApprovalError, NotFound, Transient
from agent.models import ActionProposal, ProposalState, args_hash
from agent.playbooks import proposal_id_for
from agent.store import Store

Enqueue = Callable[[str], None]


class ApprovalQueue:
    def __init__(
        self,
        store: Store,
        enqueue: Enqueue,
        ttl: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        roles: Mapping[str, str] | None = None,
        on_decision: Callable[[ActionProposal, str], None] | None = None,
    ) -> None:
        """`roles` maps approver name to role; None leaves roles unenforced (development).
        `on_decision` hears every recorded decision (outbound webhooks)."""
        self._roles = roles
        self._on_decision = on_decision or (lambda p, who: None)
        self._store = store
        self._enqueue = enqueue
        self._ttl = ttl
        self._clock = clock

    def list(self, states: Sequence[ProposalState] | None = None) -> list[ActionProposal]:
        return self._store.list_proposals(states=states)

    def get(self, proposal_id: str) -> ActionProposal:
        p = self._store.get_proposal(proposal_id)
        if p is None:
            raise NotFound(f"no proposal {proposal_id!r}")
        return p

    def approve(
        self, proposal_id: str, who: str, *, seen_hash: str | None = None, comment: str = ""
    ) -> ActionProposal:
        """Approve what the approver saw (`seen_hash`, a prefix of at least 8 hex digits)."""
        p = self.get(proposal_id)
        full = p.args_hash if seen_hash is None else _expand(p, seen_hash)
        new = approvals.approve(
            p, who, self._clock(), seen_hash=full, comment=comment, role=self._role(who)
        )
        self._commit(p, new, who, {"comment": comment, "args_hash": p.args_hash})
        if new.state is ProposalState.approved:  # if it fails, the expiry sweep queues the run
            self._after(who, "execution.queue_failed", new, lambda: self._enqueue(new.proposal_id))
        return new

    def _role(self, who: str) -> str | None:
        """The approver's role; refuses a name not on the approver list (when there is one)."""
        if self._roles is None:
            return None
        role = self._roles.get(who)
        if role is None:
            raise ApprovalError(f"{who!r} is not a known approver")
        return role

    def reject(self, proposal_id: str, who: str, *, reason: str) -> ActionProposal:
        p = self.get(proposal_id)
        self._role(who)
        new = approvals.reject(p, who, self._clock(), reason=reason)
        self._commit(p, new, who, {"reason": reason})
        return new

    def edit(self, proposal_id: str, who: str, new_args: dict[str, Any]) -> ActionProposal:
        """Changed arguments make a new proposal that needs fresh approvals; the old one ends."""
        return self._edit(self.get(proposal_id), who, new_args)

    def edit_values(self, proposal_id: str, who: str, changes: dict[str, Any]) -> ActionProposal:
        """`edit`, given only the arguments that change (the API's and the command line's)."""
        p = self.get(proposal_id)
        return self._edit(p, who, {**p.args, **changes})

    def _edit(self, p: ActionProposal, who: str, new_args: dict[str, Any]) -> ActionProposal:
        self._role(who)
        now = self._clock()
        old = approvals.supersede(p, who, now, new_args)
        digest = args_hash(p.action, new_args)
        if digest == p.args_hash:
            raise ApprovalError("the edit changes no argument: approve or reject it as it is")
        replacement = p.model_copy(
            update={
                # Named after the proposal it replaces as well: an edit back to earlier
                # arguments (A -> B -> A) is a new proposal, not the superseded one again.
                "proposal_id": proposal_id_for(p.incident_id, p.step, f"{digest}<{p.proposal_id}"),
                "args": new_args,
                "args_hash": digest,
                "requested_by": who,
                "created_at": now,
                "expires_at": now + self._ttl,
                "approvals": [],
                "state": ProposalState.pending,
                "supersedes": p.proposal_id,
                "version": 0,
            }
        )
        self._commit(
            p,
            old,
            who,
            {"replaced_by": replacement.proposal_id, "args": new_args},
            insert=replacement,
        )
        return replacement

    def settle(self, proposal_id: str, who: str, *, ran: bool, reason: str) -> ActionProposal:
        """A run whose outcome is unknown, settled by a person who checked the target."""
        p = self.get(proposal_id)
        self._role(who)
        new = approvals.settle(p, who, self._clock(), ran=ran, reason=reason)
        self._commit(p, new, who, {"ran": ran, "reason": reason})
        return new

    def _commit(
        self,
        old: ActionProposal,
        new: ActionProposal,
        who: str,
        data: dict[str, Any],
        insert: ActionProposal | None = None,
    ) -> None:
        if not self._store.transition(old, new, actor=who, data=data, insert=insert):
            raise ApprovalError(f"{old.proposal_id} changed meanwhile; look again and retry")
        self._after(who, "decision.event_failed", new, lambda: self._on_decision(new, who))

    def _after(self, who: str, failed: str, p: ActionProposal, call: Callable[[], None]) -> None:
        """Something that follows a stored decision (queueing its run, its outbound event): if
        the broker is unreachable, the decision stands and the audit says what did not happen."""
        try:
            call()
        except Transient as exc:
            self._store.append_audit(who, failed, p.proposal_id, {"why": str(exc)})


def _expand(p: ActionProposal, prefix: str) -> str:
    if len(prefix) < 8:
        raise ApprovalError("give at least 8 hex digits of the arguments hash you approve")
    return p.args_hash if p.args_hash.startswith(prefix.lower()) else prefix
