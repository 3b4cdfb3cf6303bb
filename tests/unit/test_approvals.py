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


@pytest.mark.parametrize(
    ("approver", "second"),
    [
        ("alice", "Alice"),
        ("alice", " alice "),
        ("ALICE", "alice"),
        ("alice", "\uff41\uff4c\uff49\uff43\uff45"),  # full-width letters: ran a high-risk action
        ("\uff21lice", "alice"),
    ],
)
def test_one_person_spelt_two_ways_is_still_one_approver(approver: str, second: str) -> None:
    p = proposal(Risk.high)
    once = approvals.approve(p, approver, NOW, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError, match="second person"):
        approvals.approve(once, second, NOW, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError, match="requested"):
        approvals.approve(proposal(requested_by="carol"), " Carol", NOW, seen_hash=p.args_hash)


def made(action: str, **args: object) -> ActionProposal:
    """A proposal for this action, its arguments as a playbook binds them."""
    full = {**args, "target": "t"}
    return proposal(action=action, args=full, args_hash=args_hash(action, full))


BLOCK = made("block_ip", ip="203.0.113.9", duration_hours=24)
ISOLATE = made("isolate_host", host="web-01", agent_id="agent-1")
TICKET = made("open_ticket", incident_id="INC-1", queue="soc-l2")
DISABLE = made("disable_user", user="jdoe")


@pytest.mark.parametrize(
    ("p", "change", "why"),
    [
        (BLOCK, {"ip": "10.0.0.0/8"}, "one IP address"),
        (BLOCK, {"ip": "evil.example"}, "one IP address"),
        (BLOCK, {"ip": " 203.0.113.7"}, "one IP address"),
        (BLOCK, {"ip": "0.0.0.0"}, "unspecified"),
        (BLOCK, {"ip": "127.0.0.1"}, "loopback"),
        (BLOCK, {"ip": "::"}, "unspecified"),
        (BLOCK, {"ip": 3405803783}, "text"),
        (BLOCK, {"duration_hours": 0}, "1 to 8760"),
        (BLOCK, {"duration_hours": 100_000}, "1 to 8760"),
        (BLOCK, {"duration_hours": "48"}, "whole number"),
        (BLOCK, {"duration_hours": True}, "whole number"),
        (BLOCK, {"target": "other-firewall"}, "target cannot be edited"),
        (ISOLATE, {"host": "dc-01"}, "host cannot be edited"),  # its agent id is web-01's
        (ISOLATE, {"agent_id": "agent-2"}, "agent_id cannot be edited"),
        (TICKET, {"incident_id": "INC-2"}, "incident_id cannot be edited"),
        (TICKET, {"queue": "soc\x1b[2J"}, "control characters"),
        (TICKET, {"queue": ""}, "non-empty"),
        (TICKET, {"queue": "x" * 257}, "at most 256"),
        (DISABLE, {"user": "jdoe\nroot"}, "control characters"),
        (DISABLE, {"user": ["jdoe", "root"]}, "text"),
    ],
)
def test_an_edit_changes_only_the_entity_and_options_each_to_a_value_of_its_kind(
    p: ActionProposal, change: dict, why: str
) -> None:
    """Approvers edit what the action acts on and how, never where it runs, which incident it
    is for, or what was read from the alerts for its entity (Kibana isolates by agent id)."""
    with pytest.raises(ApprovalError, match=why):
        approvals.supersede(p, "carol", NOW, {**p.args, **change})


@pytest.mark.parametrize(
    ("p", "change"),
    [
        (BLOCK, {"ip": "198.51.100.7", "duration_hours": 48}),
        (BLOCK, {"ip": "2001:db8::7"}),
        (TICKET, {"queue": "soc-l3"}),
        (DISABLE, {"user": "j.doe@example.org"}),
    ],
)
def test_an_edit_within_the_rules_ends_the_proposal(p: ActionProposal, change: dict) -> None:
    old = approvals.supersede(p, "carol", NOW, {**p.args, **change})
    assert old.state is ProposalState.superseded and old.version == p.version + 1


@pytest.mark.parametrize("name", ["al\u200bice", "alice\u202e", "ali\x1bce", "a\u2028lice"])
def test_a_name_with_an_invisible_character_is_refused(name: str) -> None:
    """It prints as another person's name in the audit trail, and counted as a second person."""
    p = approvals.approve(proposal(Risk.high), "alice", NOW, seen_hash=proposal().args_hash)
    with pytest.raises(ApprovalError, match="invisible"):
        approvals.approve(p, name, NOW, seen_hash=p.args_hash)
    with pytest.raises(ApprovalError, match="invisible"):
        approvals.reject(p, name, NOW, reason="no")


@pytest.mark.parametrize("who", ["vigie", "LLM", " ", "\uff56\uff49\uff47\uff49\uff45"])
def test_only_a_person_edits(who: str) -> None:
    with pytest.raises(ApprovalError, match=r"system identity|must be named"):
        approvals.supersede(BLOCK, who, NOW, {**BLOCK.args, "duration_hours": 48})


def test_an_expired_or_decided_proposal_cannot_be_edited() -> None:
    new_args = {**BLOCK.args, "duration_hours": 48}
    with pytest.raises(ApprovalError, match="expired"):
        approvals.supersede(BLOCK, "carol", NOW + timedelta(hours=2), new_args)
    rejected = approvals.reject(BLOCK, "bob", NOW, reason="no")
    with pytest.raises(ApprovalError, match="not pending"):
        approvals.supersede(rejected, "carol", NOW, new_args)


def test_an_approval_lapses_when_its_run_has_not_started_in_time() -> None:
    """As long after the approval that completed it as the proposal could wait for one: the
    second approval of a high-risk action starts the clock."""
    p = proposal(Risk.high)  # waits an hour for approval
    once = approvals.approve(p, "alice", NOW, seen_hash=p.args_hash)
    twice = approvals.approve(once, "bob", NOW + timedelta(minutes=50), seen_hash=p.args_hash)
    assert approvals.approval_deadline(twice) == NOW + timedelta(minutes=110)
    assert approvals.start(twice, NOW + timedelta(minutes=109)).state is ProposalState.executing
    late = NOW + timedelta(minutes=110)
    with pytest.raises(ApprovalError, match="lapsed"):
        approvals.start(twice, late)
    assert approvals.expire(twice, late).state is ProposalState.expired
    with pytest.raises(ApprovalError):
        approvals.expire(twice, late - timedelta(seconds=1))


def test_a_comment_or_reason_has_a_bound_whoever_sends_it() -> None:
    """The API refused a comment over 2,000 characters; the command line and the web form
    stored any, in the proposal and the audit trail every reader loads."""
    p = proposal(Risk.high)
    long = "x" * (approvals.MAX_COMMENT + 1)
    with pytest.raises(ApprovalError, match="holds 2,000"):
        approvals.approve(p, "alice", NOW, seen_hash=p.args_hash, comment=long)
    with pytest.raises(ApprovalError, match="holds 2,000"):
        approvals.reject(p, "alice", NOW, reason=long)
    done = approvals.approve(p, "alice", NOW, seen_hash=p.args_hash, comment=long[:-1])
    assert done.approvals[-1].comment == long[:-1]
