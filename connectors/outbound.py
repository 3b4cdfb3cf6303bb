"""Outbound webhooks, signed with the Standard Webhooks scheme, so a SIEM or SOAR can follow
incidents, approval decisions and execution results. Retried with backoff on 429, 5xx and
connection errors; a delivery that still fails is recorded, never silently dropped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from agent.errors import BadInput, Transient


@dataclass(frozen=True)
class Endpoint:
    url: str
    secret: str


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "at": datetime.now(UTC).isoformat(),
        "data": data,
    }


class OutboundWebhooks:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        transport: httpx.BaseTransport | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoints = list(endpoints)
        self._client = httpx.Client(transport=transport, timeout=10)
        self._attempts, self._backoff, self._sleep = attempts, backoff, sleep

    def deliver(self, evt: dict[str, Any]) -> list[str]:
        """Send to every endpoint; returns the URLs that still failed after all attempts."""
        body = orjson.dumps(evt).decode()
        failed = []
        for ep in self._endpoints:
            for attempt in range(self._attempts):
                try:
                    self._send(ep, evt["id"], body)
                    break
                except BadInput:
                    failed.append(ep.url)  # the receiver refused it: retrying will not help
                    break
                except Transient:
                    if attempt == self._attempts - 1:
                        failed.append(ep.url)
                    else:
                        self._sleep(self._backoff * 2**attempt)
        return failed

    def _send(self, ep: Endpoint, msg_id: str, body: str) -> None:
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(ep.secret).sign(msg_id, now, body),
        }
        try:
            r = self._client.post(ep.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Transient(f"outbound webhook unreachable: {type(exc).__name__}") from exc
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"outbound webhook answered {r.status_code}")
        if r.status_code >= 400:
            raise BadInput(f"outbound webhook refused the event ({r.status_code})")
