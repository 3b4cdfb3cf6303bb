"""Shared e2e fixtures: Vigie's real app under real uvicorn on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook

from agent.service import make_api
from agent.settings import Settings
from agent.store.sqlite import SqliteStore
from tests.conftest import free_port

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
TOKENS = "alice:analyst:tok-alice,bob:lead:tok-bob,carol:admin:tok-carol"


@contextmanager
def serve(settings: Settings, store: SqliteStore) -> Iterator[dict]:
    """Vigie's app under real uvicorn on a free loopback port, for the length of the block."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            make_api(settings, store),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield {"client": client, "store": store, "url": f"http://127.0.0.1:{port}"}
    finally:
        server.should_exit = True
        thread.join(10)


def api_settings(tmp_path: Path, **over: object) -> Settings:
    return Settings(
        store_url=f"sqlite:///{tmp_path}/v.db",
        api_tokens=TOKENS,
        webhook_tokens="splunk:splunk-token,grafana:graf-token,generic:gen-token",
        webhook_secrets=f"elastic:{SECRET},generic:{SECRET},wazuh:{SECRET}",
        webhook_max_bytes=200_000,
        **over,
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[dict]:
    with serve(api_settings(tmp_path), SqliteStore(tmp_path / "v.db")) as running:
        yield running


def signed(body: bytes, msg_id: str = "msg_1", when: datetime | None = None) -> dict[str, str]:
    when = when or datetime.now(UTC)
    signature = Webhook(SECRET).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
