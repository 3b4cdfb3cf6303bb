"""Faults injected into real components: Redis restarted or killed mid-run with AOF on, the
store gone or its disk full during webhook intake."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import uvicorn

from agent import approvals
from agent.errors import Transient
from agent.models import ProposalState, Risk
from agent.queue import ApprovalQueue
from agent.service import make_api
from agent.settings import Settings
from agent.store import Store
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.conftest import RedisServer, ecs, free_port
from tests.e2e.conftest import SECRET, serve, signed
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


def _full(server: RedisServer, maxmemory: int) -> None:
    raw = redis.Redis(port=server.port)
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", maxmemory)


#: How the store fails (it is down; it is full: Redis refuses writes but answers), and how it
#: comes back.
STORE_FAULTS: dict[str, tuple[Callable[[RedisServer], None], Callable[[RedisServer], None]]] = {
    "down": (RedisServer.stop, RedisServer.start),
    "out of memory": (lambda s: _full(s, 1), lambda s: _full(s, 0)),
}


@pytest.mark.parametrize("fault", STORE_FAULTS)
def test_webhook_intake_answers_503_while_the_store_cannot_write(
    tmp_path: Path, fault: str
) -> None:
    """The sender is told to retry (not that its batch broke the server), and its retry is
    stored once."""
    fail, mend = STORE_FAULTS[fault]
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
        fail(server)
        r = httpx.post(url, content=body, timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"]
        if fault == "down":  # a full store still reads: the API stays ready for the rest
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
            # What the API counted is still scraped, with the store said to be down (the
            # whole scrape was a 503).
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert scraped.status_code == 200 and "vigie_store_up 0.0" in scraped.text
            assert 'vigie_http_requests_total{route="/webhooks/{source}",status="503"} 1.0' in (
                scraped.text
            )
        mend(server)
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


# --- a full disk under the store during webhook intake ---------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs) that the test can fill to the last byte."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"filling a disk needs a tmpfs mount (root): {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem refuses (ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def burst(n: int) -> bytes:
    """A body bigger than anything the store has written before, so no free page absorbs it."""
    return orjson.dumps(
        [ecs(i, i / 10, "Web shell", f"web{i % 9}", severity="high") for i in range(n)]
    )


def open_store(kind: str, disk: Path) -> tuple[Store, str, RedisServer | None]:
    if kind == "sqlite":
        return SqliteStore(disk / "v.db"), f"sqlite:///{disk}/v.db", None
    server = RedisServer(disk, appendonly=True)  # the AOF lives on the small disk
    return RedisStore(server.url(2)), server.url(2), server


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_full_disk_during_intake_is_503_then_the_retry_is_stored_once(
    small_disk: Path, kind: str
) -> None:
    store, url, redis_server = open_store(kind, small_disk)
    settings = Settings(store_url=url, webhook_secrets=f"generic:{SECRET}")
    body = burst(600)
    headers = signed(body, msg_id="msg_full_disk")
    try:
        with serve(settings, store) as api:  # type: ignore[arg-type]
            filler = fill(small_disk)
            if redis_server is not None:  # Redis notices on its next AOF write
                with contextlib.suppress(redis.ResponseError):
                    redis.Redis(port=redis_server.port, db=3).set("probe", "x" * 100_000)
                time.sleep(0.2)
            r = api["client"].post("/webhooks/generic", content=body, headers=headers)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            filler.unlink()  # space again; Redis retries its AOF write within a second
            deadline = time.monotonic() + 10
            post = lambda: api["client"].post("/webhooks/generic", content=body, headers=headers)  # noqa: E731
            while (r := post()).status_code == 503:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.2)
            assert r.status_code == 202 and r.json()["accepted"] == 600  # the id was kept free
            again = api["client"].post("/webhooks/generic", content=body, headers=headers)
            assert again.status_code == 401  # and is taken now
            deadline = time.monotonic() + 30
            while len(placed := [a for i in store.list_incidents() for a in i.alert_ids]) < 600:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert sorted(placed) == sorted(f"a{i}" for i in range(600))  # each once
    finally:
        if redis_server is not None:
            redis_server.stop()
