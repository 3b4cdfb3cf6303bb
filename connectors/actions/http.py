"""Runs actions as HTTP requests: firewall/directory/ticketing APIs, chat webhooks, Kibana.

Each action of the closed vocabulary has one request shape, built here from the approved
arguments and the target's settings (URL, token). Without a configured target the request is
built but not sent: a dry-run that shows exactly what would have gone out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from agent.actions import ACTIONS
from agent.errors import AuthError, BadInput, RateLimited, Transient
from agent.models import ActionProposal
from agent.settings import Target

#: The connectors whose requests go to Kibana's API: it refuses a POST without `kbn-xsrf`.
KIBANA = frozenset({"elastic_defend", "kibana_alerts"})


def build_request(p: ActionProposal, target: Target | None) -> dict[str, Any]:
    """method, url, json body for this proposal; secrets are added only when sending."""
    spec = ACTIONS[p.action]
    base = (target.url if target else f"dry-run://{p.args.get('target', 'unset')}").rstrip("/")
    args = {k: v for k, v in p.args.items() if k != "target"}
    if spec.connector == "elastic_defend":
        if target is not None and not args.get("agent_id"):
            raise BadInput(f"no Elastic agent id for host {args['host']!r}: cannot isolate it")
        return {
            "method": "POST",
            "url": f"{base}/api/endpoint/action/isolate",
            "json": {
                "endpoint_ids": [args.get("agent_id") or args["host"]],
                "comment": f"Vigie {p.incident_id} proposal {p.proposal_id}",
            },
        }
    if spec.connector == "kibana_alerts":
        return {
            "method": "POST",
            "url": f"{base}/api/detection_engine/signals/status",
            "json": {
                "query": {"term": {"kibana.alert.workflow_tags": f"vigie:{p.incident_id}"}},
                "status": "closed",
                "reason": args.get("reason", "other"),
            },
        }
    if spec.connector == "notify":
        return {
            "method": "POST",
            "url": base,
            "json": {
                "text": f"Vigie: incident {p.incident_id} ({p.playbook})",
                "channel": args.get("channel", ""),
            },
        }
    return {
        "method": "POST",
        "url": f"{base}/{p.action}",
        "json": {"action": p.action, "incident_id": p.incident_id, **args},
    }


class HttpActionRunner:
    """Sends the request for live targets; records a dry-run for unconfigured ones."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        transport: httpx.BaseTransport | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._targets = targets
        self._client = httpx.Client(transport=transport, timeout=timeout)

    def run(self, p: ActionProposal) -> tuple[bool, dict[str, Any]]:
        target = self._targets.get(str(p.args.get("target", "")))
        request = build_request(p, target)
        if target is None:
            return True, {"dry_run": True, "request": request}
        # The proposal id as idempotency key: a target that honours it can refuse a repeat even
        # if one ever got past the state machine.
        headers = {
            "content-type": "application/json",
            "idempotency-key": p.proposal_id,
            **target.headers,
        }
        if target.token is not None:
            headers["authorization"] = f"Bearer {target.token.get_secret_value()}"
        if ACTIONS[p.action].connector in KIBANA:  # Kibana refuses a POST without it (400)
            headers["kbn-xsrf"] = "vigie"
        try:
            resp = self._client.request(
                request["method"], request["url"], json=request["json"], headers=headers
            )
        except httpx.TimeoutException as exc:
            raise Transient(f"{p.action}: target timed out") from exc
        except httpx.HTTPError as exc:
            raise Transient(f"{p.action}: {type(exc).__name__}") from exc
        answer = {"status": resp.status_code, "body": resp.text[:2000]}
        if resp.status_code in (401, 403):
            raise AuthError(f"{p.action}: target refused credentials ({resp.status_code})")
        if resp.status_code == 429:
            raise RateLimited(f"{p.action}: target rate-limited us")
        if resp.status_code == 400:
            raise BadInput(f"{p.action}: target rejected the request: {resp.text[:200]}")
        return resp.is_success, {"dry_run": False, "request": request, "response": answer}

    def close(self) -> None:
        self._client.close()
