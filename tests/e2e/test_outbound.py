"""Outbound webhooks: a SOAR-like receiver that verifies Standard Webhooks signatures sees
incidents, approval decisions and execution results, and a 503 is retried."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from agent.store.sqlite import SqliteStore
from tests.conftest import brute_force
from tests.e2e.conftest import api_settings, serve, signed

OUT_SECRET = "whsec_" + "b3V0Ym91bmQtb3V0Ym91bmQtb3V0Ym91bmQ="


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.events: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.attempts += 1
                if outer.attempts <= fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.events.append(Webhook(OUT_SECRET).verify(body, headers))  # raises if bad
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, kind: str, within: float = 20) -> dict:
        """The first event of that type, waited for (deliveries are queued)."""
        deadline = time.monotonic() + within
        while not any(e["type"] == kind for e in self.events):
            assert time.monotonic() < deadline, self.events
            time.sleep(0.05)
        return next(e for e in self.events if e["type"] == kind)


def test_incidents_decisions_and_results_are_sent_signed_and_retried(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=1)
    settings = api_settings(
        tmp_path, outbound_webhooks=[{"url": receiver.url, "secret": OUT_SECRET}]
    )
    with serve(settings, SqliteStore(tmp_path / "v.db")) as api:
        body = json.dumps([brute_force()]).encode()
        assert (
            api["client"]
            .post("/webhooks/generic", content=body, headers=signed(body, "o1"))
            .status_code
            == 202
        )
        created = receiver.first("incident.created")
        stored = api["store"].get_incident(created["data"]["incident_id"])
        assert created["data"]["why"] == [f.model_dump() for f in stored.leading_factors()]
        assert created["data"]["why"]  # what ranks it, for the SOAR's ticket
        block = next(p for p in api["store"].list_proposals() if p.action == "block_ip")
        r = api["client"].post(
            f"/api/approvals/{block.proposal_id}/approve",
            json={"args_hash": block.args_hash},
            headers={"authorization": "Bearer tok-bob"},
        )
        assert r.status_code == 200
        types = [e["type"] for e in receiver.events]
        assert types.count("incident.created") == 1
        assert "approval.decided" in types and "action.executed" in types
        executed = next(e for e in receiver.events if e["type"] == "action.executed")
        assert (
            executed["data"]["state"] == "succeeded"
            and executed["data"]["args"]["ip"] == "203.0.113.9"
        )
        assert receiver.attempts == len(receiver.events) + 1  # the 503 was retried
        r = api["client"].post(
            f"/api/incidents/{block.incident_id}/disposition",
            json={"verdict": "false_positive", "reason": "pentest", "tune": True},
            headers={"authorization": "Bearer tok-bob"},
        )
        assert r.status_code == 200, r.text
        closed = receiver.first("incident.closed")
        assert closed["data"]["incident_id"] == block.incident_id
        assert (closed["data"]["verdict"], closed["data"]["by"]) == ("false_positive", "bob")
        assert closed["data"]["tuned"] and closed["data"]["reason"] == "pentest"
        r = api["client"].post(
            f"/api/incidents/{block.incident_id}/reopen",
            json={"reason": "the pentest was next week"},
            headers={"authorization": "Bearer tok-bob"},
        )
        assert r.status_code == 200, r.text
        reopened = receiver.first("incident.reopened")
        assert reopened["data"] == {
            "incident_id": block.incident_id,
            "by": "bob",
            "reason": "the pentest was next week",
        }
