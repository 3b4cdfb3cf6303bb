"""The approval state machine, as pure functions over `ActionProposal` (no I/O here).

    pending -> approved (after the required number of distinct approvers) -> executing
            -> succeeded | failed | outcome_unknown
    outcome_unknown -> succeeded | failed (a person settles it, from what the target shows)
    pending -> rejected | expired | superseded
    approved -> expired (its run had not started when the approval lapsed)

Every decision is bound to the hash of the action and its exact arguments: an approver states
the hash they saw, and a proposal whose stored arguments no longer match its hash cannot move.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agent.actions import check_edit
from agent.errors import ApprovalError, Forbidden
from agent.models import ActionProposal, Approval, ProposalState, Risk, args_hash

#: Identities that can request but never approve: the agent and its playbooks.
SYSTEM_IDENTITIES = frozenset({"vigie", "system", "playbook", "agent", "llm"})

#: Which risks each role may approve. Unknown roles approve nothing.
MAY_APPROVE: dict[str, frozenset[Risk]] = {
    "analyst": frozenset({Risk.low, Risk.medium}),
    "lead": frozenset({Risk.low, Risk.medium, Risk.high}),
    "admin": frozenset({Risk.low, Risk.medium, Risk.high}),
}

#: Unicode categories of characters a name cannot hold: control, format (zero-width, bidi
#: overrides), line and paragraph separators, unassigned.
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})

#: A comment or a rejection's reason, in characters: it is kept in the proposal and the audit
#: trail of every later reader (the API refused longer ones; the command line took any).
MAX_COMMENT = 2000

TERMINAL = frozenset(
    {
        ProposalState.succeeded,
        ProposalState.failed,
        ProposalState.outcome_unknown,
        ProposalState.rejected,
        ProposalState.expired,
        ProposalState.superseded,
    }
)


def verify_integrity(p: ActionProposal) -> None:
    """The stored arguments must still hash to what was proposed and approved."""
    actual = args_hash(p.action, p.args)
    if actual != p.args_hash:
        raise ApprovalError(f"{p.proposal_id}: arguments changed since proposal (hash mismatch)")
    for a in p.approvals:
        if a.args_hash != p.args_hash:
            raise ApprovalError(f"{p.proposal_id}: an approval was given for other arguments")


def _require_pending(p: ActionProposal, now: datetime) -> None:
    if p.state is not ProposalState.pending:
        raise ApprovalError(f"{p.proposal_id} is {p.state.value}, not pending")
    if now >= p.expires_at:
        raise ApprovalError(f"{p.proposal_id} expired at {p.expires_at.isoformat()}")


def person(name: str) -> str:
    """How names are compared: " Alice", "alice" and "alice" in full-width letters (NFKC) are one
    person, who cannot be both the requester and an approver, or two approvers."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


def visible(name: str) -> bool:
    """No control or invisible character: "al\u200bice" prints as "alice" in the audit trail,
    and would count as a second person."""
    return not any(unicodedata.category(c) in _UNSEEN for c in name)


def _require_named(who: str) -> None:
    name = who.strip()
    if not name:
        raise ApprovalError("an approver must be named")
    if not visible(name):
        raise ApprovalError(f"{name!r}: a name holds no control or invisible character")
    if person(name) in SYSTEM_IDENTITIES:
        raise ApprovalError(f"{name!r} is a system identity and cannot decide")


def _require_short(text: str) -> None:
    if len(text) > MAX_COMMENT:
        raise ApprovalError(f"{len(text):,} characters: a comment or reason holds {MAX_COMMENT:,}")


def _require_person(p: ActionProposal, who: str) -> None:
    _require_named(who)
    if person(who) == person(p.requested_by):
        raise ApprovalError(f"{who.strip()!r} requested {p.proposal_id} and cannot approve it")


def approved_by(approvals: Iterable[Approval]) -> set[str]:
    """The distinct people among these decisions who approved, as `person` compares names."""
    return {person(a.approver) for a in approvals if a.decision == "approve"}


def _moved(p: ActionProposal, **changes: Any) -> ActionProposal:
    return p.model_copy(update={**changes, "version": p.version + 1})


def approve(
    p: ActionProposal,
    who: str,
    now: datetime,
    *,
    seen_hash: str,
    comment: str = "",
    role: str | None = None,
) -> ActionProposal:
    """Record one approval; the proposal becomes approved once enough distinct people agree.

    `role` None means roles are not enforced (embedded development); otherwise the role must be
    allowed to approve the proposal's risk."""
    _require_pending(p, now)
    _require_person(p, who)
    _require_short(comment)
    if role is not None and p.risk not in MAY_APPROVE.get(role, frozenset()):
        raise Forbidden(f"role {role!r} may not approve {p.risk.value}-risk actions")
    verify_integrity(p)
    if seen_hash != p.args_hash:
        raise ApprovalError(f"{p.proposal_id}: you approved other arguments than those proposed")
    if person(who) in approved_by(p.approvals):
        raise ApprovalError(f"{who!r} already approved {p.proposal_id}; a second person must")
    approvals = [
        *p.approvals,
        Approval(approver=who, decision="approve", at=now, comment=comment, args_hash=p.args_hash),
    ]
    done = len(approved_by(approvals)) >= p.required_approvals
    return _moved(p, approvals=approvals, state=ProposalState.approved if done else p.state)


def reject(p: ActionProposal, who: str, now: datetime, *, reason: str) -> ActionProposal:
    _require_pending(p, now)
    _require_person(p, who)
    if not reason.strip():
        raise ApprovalError("a rejection needs a reason")
    _require_short(reason)
    approvals = [
        *p.approvals,
        Approval(approver=who, decision="reject", at=now, comment=reason, args_hash=p.args_hash),
    ]
    return _moved(p, approvals=approvals, state=ProposalState.rejected)


def overdue(p: ActionProposal, now: datetime) -> bool:
    """A pending proposal past its expiry, or an approved one whose approval lapsed unrun."""
    return (p.state is ProposalState.pending and now >= p.expires_at) or lapsed(p, now)


def expire(p: ActionProposal, now: datetime) -> ActionProposal:
    if not overdue(p, now):
        raise ApprovalError(f"{p.proposal_id} is not a proposal past its expiry")
    return _moved(p, state=ProposalState.expired)


def approved_at(p: ActionProposal) -> datetime | None:
    """When an approved proposal got the approval that completed it."""
    times = [a.at for a in p.approvals if a.decision == "approve"]
    return max(times) if p.state is ProposalState.approved and times else None


def approval_deadline(p: ActionProposal) -> datetime | None:
    """When an approved proposal's approval lapses unless its run has started: as long after
    the approval that completed it as proposals wait for approval. A block approved on Monday
    and run on Friday, after the workers were down, would act on what Monday knew."""
    at = approved_at(p)
    return None if at is None else at + (p.expires_at - p.created_at)


def lapsed(p: ActionProposal, now: datetime) -> bool:
    deadline = approval_deadline(p)
    return deadline is not None and now >= deadline


def supersede(
    p: ActionProposal, who: str, now: datetime, new_args: dict[str, Any]
) -> ActionProposal:
    """An edit ends the proposal; its replacement (made by the queue) needs fresh approvals.
    Only a person edits, only a pending proposal that has not expired, and only what
    `agent.actions.check_edit` allows."""
    _require_pending(p, now)
    _require_named(who)
    verify_integrity(p)
    check_edit(p.action, p.args, new_args)
    return _moved(p, state=ProposalState.superseded)


def start(p: ActionProposal, now: datetime) -> ActionProposal:
    """approved -> executing. The lease start lets a reaper spot a worker that died mid-run."""
    if p.state is not ProposalState.approved:
        raise ApprovalError(f"{p.proposal_id} is {p.state.value}, not approved")
    if lapsed(p, now):
        raise ApprovalError(f"{p.proposal_id}'s approval lapsed at {approval_deadline(p)}")
    verify_integrity(p)
    return _moved(p, state=ProposalState.executing, result={"started_at": now.isoformat()})


def finish(p: ActionProposal, *, ok: bool, result: dict[str, Any]) -> ActionProposal:
    if p.state is not ProposalState.executing:
        raise ApprovalError(f"{p.proposal_id} is {p.state.value}, not executing")
    state = ProposalState.succeeded if ok else ProposalState.failed
    return _moved(p, state=state, result={**(p.result or {}), **result})


def outcome_unknown(p: ActionProposal, now: datetime, why: str) -> ActionProposal:
    """A run that never reported back: a human must check the target, never a silent retry."""
    if p.state is not ProposalState.executing:
        raise ApprovalError(f"{p.proposal_id} is {p.state.value}, not executing")
    return _moved(
        p,
        state=ProposalState.outcome_unknown,
        result={**(p.result or {}), "unknown_since": now.isoformat(), "why": why},
    )


def settle(p: ActionProposal, who: str, now: datetime, *, ran: bool, reason: str) -> ActionProposal:
    """outcome_unknown -> succeeded | failed, as a person found it on the target (the block is
    in the firewall, or not): the run is never repeated, and what they saw is recorded."""
    if p.state is not ProposalState.outcome_unknown:
        raise ApprovalError(f"{p.proposal_id} is {p.state.value}, not outcome_unknown")
    _require_named(who)
    if not reason.strip():
        raise ApprovalError("settling an outcome needs what was found on the target")
    _require_short(reason)
    found = {"by": who.strip(), "at": now.isoformat(), "ran": ran, "reason": reason}
    return _moved(
        p,
        state=ProposalState.succeeded if ran else ProposalState.failed,
        result={**(p.result or {}), "settled": found},
    )


def started_at(p: ActionProposal) -> datetime | None:
    raw = (p.result or {}).get("started_at")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None
