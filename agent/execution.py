"""Running an approved proposal at most once, and reaping runs whose worker died.

`execute_proposal` takes the proposal from approved to executing by compare-and-swap before any
side effect, so two workers (or a redelivered task) cannot both run it. If the process dies
after that, the proposal stays `executing`; `reap_stale` later marks it `outcome_unknown` for a
human. Nothing here ever retries an action.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import httpx

from agent import approvals
from agent.errors import ApprovalError, RateLimited, Transient, VigieError
from agent.models import ActionProposal, ProposalState
from agent.settings import Target
from agent.store import Store


class ActionRunner(Protocol):
    def run(self, p: ActionProposal) -> tuple[bool, dict[str, Any]]:
        """(succeeded?, what was sent and answered). Raises typed errors on transport failure."""
        ...


class Execution(NamedTuple):
    proposal: ActionProposal | None
    ran: bool  # True only for the one call that claimed the proposal and ran its action


def execute_proposal(
    store: Store, runner: ActionRunner, proposal_id: str, actor: str = "worker"
) -> Execution:
    """Run the proposal if it is approved and nobody else has claimed it; else do nothing."""
    p = store.get_proposal(proposal_id)
    if p is None or p.state is not ProposalState.approved:
        return Execution(p, False)
    now = datetime.now(UTC)
    if approvals.lapsed(p, now):  # it waited too long for a worker: a human decides again
        expired = approvals.expire(p, now)
        store.transition(p, expired, actor=actor, data={"why": "approval lapsed before the run"})
        return Execution(store.get_proposal(proposal_id), False)
    try:
        claimed = approvals.start(p, now)
    except ApprovalError as exc:
        store.append_audit(actor, "execution.refused", proposal_id, {"why": str(exc)})
        return Execution(p, False)
    if not store.transition(p, claimed, actor=actor, data={"args_hash": p.args_hash}):
        return Execution(store.get_proposal(proposal_id), False)  # another worker claimed it
    try:
        ok, result = runner.run(claimed)
    except RateLimited as exc:  # refused before anything was done: a clean failure
        ok, result = False, {"error": type(exc).__name__, "detail": str(exc)}
    except Transient as exc:  # it may have landed: a human must check, never a blind retry
        unknown = approvals.outcome_unknown(
            claimed, datetime.now(UTC), f"{type(exc).__name__}: {exc}"
        )
        store.transition(claimed, unknown, actor=actor, data={"error": str(exc)})
        return Execution(unknown, True)
    except VigieError as exc:
        ok, result = False, {"error": type(exc).__name__, "detail": str(exc)}
    done = approvals.finish(claimed, ok=ok, result=result)
    store.transition(claimed, done, actor=actor, data={"result": result})
    return Execution(done, True)


def reap_stale(store: Store, lease: timedelta, now: datetime | None = None) -> list[str]:
    """Executions older than the lease never reported back: mark them outcome_unknown."""
    now = now or datetime.now(UTC)
    reaped = []
    for p in store.list_proposals(states=[ProposalState.executing]):
        began = approvals.started_at(p)
        if began is not None and now - began > lease:
            new = approvals.outcome_unknown(p, now, f"no result within {lease.total_seconds():g}s")
            if store.transition(p, new, actor="reaper"):
                reaped.append(p.proposal_id)
    return reaped


def expire_pending(store: Store, now: datetime | None = None) -> list[str]:
    """Pending proposals past their expiry, and approved ones whose approval lapsed unrun."""
    now = now or datetime.now(UTC)
    expired = []
    for p in store.list_proposals(states=[ProposalState.pending, ProposalState.approved]):
        if not approvals.overdue(p, now):
            continue
        if store.transition(p, approvals.expire(p, now), actor="expiry"):
            expired.append(p.proposal_id)
    return expired


def stranded(store: Store, now: datetime, grace: timedelta) -> list[str]:
    """Approved proposals whose run should have started by now and has not: the approval is
    stored before its run is queued, so a broker unreachable at that moment strands it. Queueing
    one again is safe (a run claims its proposal first). Lapsed approvals are the expiry's, and
    tampered arguments stay refused rather than being retried every minute."""
    out = []
    for p in store.list_proposals(states=[ProposalState.approved]):
        at = approvals.approved_at(p)
        if at is None or at > now - grace or approvals.lapsed(p, now):
            continue
        try:
            approvals.verify_integrity(p)
        except ApprovalError:
            continue
        out.append(p.proposal_id)
    return out


def notify_execution(store: Store, target: Target | None, p: ActionProposal) -> str:
    """Post the outcome to a chat webhook (Slack/Mattermost/Teams `text`); audit what was sent."""
    text = (
        f"Vigie: {p.action} {p.args} for {p.incident_id} ended {p.state.value} "
        f"(approved by {', '.join(a.approver for a in p.approvals)})"
    )
    if target is None:
        store.append_audit("notifier", "notification.dry_run", p.proposal_id, {"text": text})
        return "dry_run"
    headers = {"authorization": f"Bearer {target.token.get_secret_value()}"} if target.token else {}
    try:
        resp = httpx.post(target.url, json={"text": text}, headers=headers, timeout=10)
        outcome = f"http {resp.status_code}"
    except httpx.HTTPError as exc:
        outcome = f"error {type(exc).__name__}"
    store.append_audit(
        "notifier", "notification.sent", p.proposal_id, {"text": text, "outcome": outcome}
    )
    return outcome
