"""Faults injected into real components: Redis restarted or killed mid-run with AOF on, and the
store gone during webhook intake."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from agent import approvals
from agent.errors import Transient
from agent.models import ProposalState, Risk
from agent.queue import ApprovalQueue
from agent.service import make_api
from agent.settings import Settings
from agent.store.redis import RedisStore
from tests.conftest import RedisServer, ecs, free_port
from tests.integration.test_worker import make_proposals


def snapshot(store: RedisStore) -> tuple:
    return (
        sorted(
            (p.proposal_id, p.state.value, p.version, len(p.approvals))
            for p in store.list_proposals()
        ),
        [(e.seq, e.hash) for e in store.audit()],
    )


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_redis_restart_or_crash_with_aof_loses_no_record(tmp_path: Path, how: str) -> None:
    # A crash (SIGKILL) keeps everything only with appendfsync always; a clean restart with the
    # default everysec. Both are run: the first proves the AOF replays, the second the fsync.
    server = RedisServer(tmp_path, appendonly=True, fsync="always" if how == "kill" else "everysec")
    store = RedisStore(server.url(2))
    queue = ApprovalQueue(store, lambda pid: None, timedelta(hours=1))
    ids = make_proposals(store, 20, Risk.medium) + make_proposals(store, 10, Risk.high)
    for pid in ids[:15]:
        queue.approve(pid, "alice")
    for pid in ids[20:25]:
        queue.approve(pid, "alice")
        queue.approve(pid, "bob")
    p = store.get_proposal(ids[0])
    store.transition(p, approvals.start(p, datetime.now(UTC)), actor="worker")
    before = snapshot(store)
    server.stop(kill=(how == "kill"))
    with pytest.raises(Transient):  # while it is down: a typed error, not a crash
        store.get_proposal(ids[0])
    server.start()
    store2 = RedisStore(server.url(2))
    assert snapshot(store2) == before
    assert store2.verify_audit() == (True, None)
    assert store2.get_proposal(ids[0]).state is ProposalState.executing
    server.stop()


def test_webhook_intake_answers_503_while_the_store_is_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=True)
    settings = Settings(store_url=server.url(2), webhook_tokens="generic:tok")
    store = RedisStore(server.url(2))
    port = free_port()
    api = uvicorn.Server(
        uvicorn.Config(make_api(settings, store), host="127.0.0.1", port=port, log_config=None)
    )
    threading.Thread(target=api.run, daemon=True).start()
    while not api.started:
        time.sleep(0.02)
    body = json.dumps([ecs(1, 0, "Web shell", "web", severity="high")])
    url = f"http://127.0.0.1:{port}/webhooks/generic?token=tok"
    try:
        server.stop()
        r = httpx.post(url, content=body, timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        server.start()
        r = httpx.post(url, content=body, timeout=10)  # the sender retries
        assert r.status_code == 202 and r.json()["accepted"] == 1
        deadline = time.monotonic() + 20
        while not store.list_incidents():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        placed = [a for i in store.list_incidents() for a in i.alert_ids]
        assert placed == ["a1"]  # once, not half-stored then again
    finally:
        api.should_exit = True
        server.stop()
