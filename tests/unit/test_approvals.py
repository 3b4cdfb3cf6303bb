"""The approval state machine, exhaustively: every refusal is a typed error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent import approvals
from agent.errors import ApprovalError
from agent.models import ActionProposal, ProposalState, Risk, args_hash

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def proposal(risk: Risk = Risk.medium, **over) -> ActionProposal:
    args = {"ip": "203.0.113.9", "target": "firewall"}
    base = dict(
        proposal_id="P-1",
        incident_id="INC-1",
        playbook="pb",
        step="s",
        action="block_ip",
        args=args,
        args_hash=args_hash("block_ip", args),
        risk=risk,
        required_approvals=2 if risk is Risk.high else 1,
        requested_by="vigie",
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )
    return ActionProposal(**(base | over))


def test_one_approval_suffices_for_medium_risk() -> None:
    p = proposal()
    new = approvals.approve(p, "alice", NOW, seen_hash=p.args_hash, comment="ok")
    assert new.state is ProposalState.approved and new.version == p.version + 1
    assert (new.approvals[0].approver, new.approvals[0].args_hash) == ("alice", p.args_hash)


def test_high_risk_needs_two_distinct_approvers() -> None:
    p = proposal(Risk.high)
    once = approvals.approve(p, "alice", NOW, seen_hash=p.args_hash)
    assert once.state is ProposalState.pending
    with pytest.raises(ApprovalError, match="second person"):
        approvals.approve(once, "alice", NOW, seen_hash=p.args_hash)
    twice = approvals.approve(once, "bob", NOW, seen_hash=p.args_hash)
    assert twice.state is ProposalState.approved


@pytest.mark.parametrize("who", ["vigie", "system", "LLM", "  "])
def test_requester_system_and_nobody_cannot_approve(who: str) -> None:
    p = proposal()
    with pytest.raises(ApprovalError):
        approvals.approve(p, who, NOW, seen_hash=p.args_hash)


def test_editor_cannot_approve_own_request() -> None:
    p = proposal(requested_by="carol")
    with pytest.raises(ApprovalError, match="requested"):
        approvals.approve(p, "carol", NOW, seen_hash=p.args_hash)


def test_tampered_arguments_are_detected() -> None:
    p = proposal()
    tampered = p.model_copy(update={"args": {"ip": "8.8.8.8", "target": "firewall"}})
    with pytest.raises(ApprovalError, match="hash mismatch"):
        approvals.approve(tampered, "alice", NOW, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError, match="other arguments"):
        approvals.approve(p, "alice", NOW, seen_hash=args_hash("block_ip", {"ip": "8.8.8.8"}))
    approved = approvals.approve(p, "alice", NOW, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError, match="hash mismatch"):
        approvals.start(
            approved.model_copy(update={"args": {"ip": "1.1.1.1", "target": "firewall"}}), NOW
        )


def test_expiry() -> None:
    p = proposal()
    late = NOW + timedelta(hours=2)
    with pytest.raises(ApprovalError, match="expired"):
        approvals.approve(p, "alice", late, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError):
        approvals.expire(p, NOW)  # not yet
    assert approvals.expire(p, late).state is ProposalState.expired


def test_reject_needs_a_reason_and_ends_the_proposal() -> None:
    p = proposal()
    with pytest.raises(ApprovalError, match="reason"):
        approvals.reject(p, "alice", NOW, reason=" ")
    r = approvals.reject(p, "alice", NOW, reason="false positive")
    assert r.state is ProposalState.rejected
    with pytest.raises(ApprovalError, match="not pending"):
        approvals.approve(r, "bob", NOW, seen_hash=p.args_hash)


def test_execution_path_and_terminal_states() -> None:
    p = approvals.approve(proposal(), "alice", NOW, seen_hash=proposal().args_hash)
    running = approvals.start(p, NOW)
    assert running.state is ProposalState.executing and approvals.started_at(running) == NOW
    with pytest.raises(ApprovalError):
        approvals.start(running, NOW)  # never twice
    assert approvals.finish(running, ok=True, result={}).state is ProposalState.succeeded
    assert approvals.finish(running, ok=False, result={}).state is ProposalState.failed
    unknown = approvals.outcome_unknown(running, NOW, "worker lost")
    assert unknown.state is ProposalState.outcome_unknown
    for state in approvals.TERMINAL:
        with pytest.raises(ApprovalError):
            approvals.approve(proposal(state=state), "alice", NOW, seen_hash=p.args_hash)
        with pytest.raises(ApprovalError):
            approvals.start(proposal(state=state), NOW)
