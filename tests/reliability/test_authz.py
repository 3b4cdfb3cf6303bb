"""Authorisation matrix: every analyst-API route x every role x every token state."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.conftest import brute_force, ecs
from tests.e2e.conftest import SECRET, TOKENS, signed

TOKEN_OF = {"analyst": "tok-alice", "lead": "tok-bob", "admin": "tok-carol"}
STATES = ["missing", "malformed", "forged", "analyst", "lead", "admin"]


def header(state: str) -> dict[str, str]:
    fixed = {
        "missing": {},
        "malformed": {"authorization": "tok-bob"},  # no scheme
        "forged": {"authorization": "Bearer tok-mallory"},
    }
    return fixed[state] if state in fixed else {"authorization": f"Bearer {TOKEN_OF[state]}"}


@pytest.fixture
def seeded(api: dict) -> dict:
    body = json.dumps(
        [
            brute_force(),
            ecs(2, 2, "Malicious Behavior: stager", "web", severity="critical", tactic="TA0002"),
        ]
    ).encode()
    assert (
        api["client"].post("/webhooks/generic", content=body, headers=signed(body, "z")).status_code
        == 202
    )
    deadline = time.monotonic() + 20
    while not api["store"].list_proposals():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return api


def expected(route: str, state: str, risk: str | None) -> set[int]:
    if state in ("missing", "malformed", "forged"):
        return {401}
    if route == "approve" and risk == "high" and state == "analyst":
        return {403}
    return {200}


@pytest.mark.parametrize("state", STATES)
def test_every_route_for_every_role_and_token_state(
    seeded: dict, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    c, store = seeded["client"], seeded["store"]
    caplog.set_level(logging.INFO, logger="vigie")
    incident = store.list_incidents()[0].incident_id
    h = header(state)
    reads = {
        "incidents": c.get("/api/incidents", headers=h),
        "incident": c.get(f"/api/incidents/{incident}", headers=h),
        "approvals": c.get("/api/approvals", headers=h),
        "rejected": c.get("/api/rejected", headers=h),
    }
    for route, r in reads.items():
        assert r.status_code in expected(route, state, None), (route, state, r.text)
    for p in store.list_proposals():
        if p.state.value != "pending":
            continue
        r = c.post(
            f"/api/approvals/{p.proposal_id}/approve", json={"args_hash": p.args_hash}, headers=h
        )
        assert r.status_code in expected("approve", state, p.risk.value), (p.action, state, r.text)
        r = c.post(f"/api/approvals/{p.proposal_id}/reject", json={"reason": "matrix"}, headers=h)
        got = store.get_proposal(p.proposal_id)
        if state in ("missing", "malformed", "forged"):
            assert r.status_code == 401 and got.approvals == []  # nothing recorded
        else:
            assert r.status_code in {200, 409}
    # Logs carry request ids and routes, never a token or a signing secret.
    text = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert caplog.records
    for secret in [*TOKEN_OF.values(), "tok-mallory", SECRET, *TOKENS.split(",")]:
        assert secret not in text
