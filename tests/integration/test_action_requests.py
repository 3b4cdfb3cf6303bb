"""What each action of the vocabulary sends to a live target: a local HTTP server records
the requests as a firewall, a directory, a chat webhook or Kibana would receive them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from agent.actions import ACTIONS
from agent.models import ActionProposal, Risk, args_hash
from agent.settings import Target as TargetSettings
from connectors.actions.http import HttpActionRunner
from tests.fakes.action_target import Target

ARGS = {
    "block_ip": {"ip": "203.0.113.7", "duration_hours": 24},
    "isolate_host": {"host": "ws-7", "agent_id": "3f1c-agent"},
    "disable_user": {"user": "jdoe"},
    "revoke_sessions": {"user": "jdoe"},
    "open_ticket": {"incident_id": "INC-1", "queue": "soc-l2"},
    "notify": {"incident_id": "INC-1", "channel": "soc"},
    "close_alerts": {"incident_id": "INC-1", "reason": "false_positive"},
}


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def proposal(action: str) -> ActionProposal:
    now = datetime.now(UTC)
    args = {**ARGS[action], "target": "live"}
    return ActionProposal(
        proposal_id=f"P-{action}",
        incident_id="INC-1",
        playbook="pb",
        step="s",
        action=action,
        args=args,
        args_hash=args_hash(action, args),
        risk=Risk.high,
        required_approvals=2,
        requested_by="vigie",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )


def test_every_action_reaches_its_target_with_the_headers_it_needs(target: Target) -> None:
    """`close_alerts` went to Kibana without `kbn-xsrf`, which Kibana refuses (400) on every
    POST: the action could not close a single alert. Each request also carries the target's
    token and the proposal id as its idempotency key."""
    assert set(ARGS) == set(ACTIONS)  # a new action gets its row here
    runner = HttpActionRunner({"live": TargetSettings(url=target.url, token="s3cret")})
    try:
        for action in ARGS:
            ok, result = runner.run(proposal(action))
            assert ok and result["dry_run"] is False, (action, result)
    finally:
        runner.close()
    sent = dict(zip(ARGS, zip(target.calls, target.headers, strict=True), strict=True))
    for action, ((path, _), headers) in sent.items():
        assert headers["authorization"] == "Bearer s3cret", action
        assert headers["idempotency-key"] == f"P-{action}", action
        kibana = path.startswith("/api/")
        assert ("kbn-xsrf" in headers) == kibana, (action, path)
    assert sent["close_alerts"][0] == (
        "/api/detection_engine/signals/status",
        {
            "query": {"term": {"kibana.alert.workflow_tags": "vigie:INC-1"}},
            "status": "closed",
            "reason": "false_positive",
        },
    )
    assert sent["isolate_host"][0][0] == "/api/endpoint/action/isolate"
    assert sent["isolate_host"][0][1]["endpoint_ids"] == ["3f1c-agent"]
    assert sent["block_ip"][0] == (
        "/block_ip",
        {"action": "block_ip", "incident_id": "INC-1", "ip": "203.0.113.7", "duration_hours": 24},
    )
