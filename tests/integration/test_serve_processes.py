"""`vigie serve --workers 2`, as the compose file runs it: two real API processes on one port,
Redis as store and broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REPO, RedisServer, free_port


@pytest.fixture
def two_processes(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    redis.Redis(port=redis_server.port).flushall()
    port = free_port()
    env = {
        **os.environ,
        "VIGIE_STORE_URL": redis_server.url(2),
        "VIGIE_BROKER_URL": redis_server.url(0),
        "VIGIE_API_TOKENS": "bob:lead:tok-bob",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--workers", "2", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        time.sleep(0.1)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()


def health_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r'vigie_http_requests_total\{route="/healthz",status="200"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_every_scrape_counts_the_requests_of_every_process(two_processes: str) -> None:
    """Each process counted its own requests and /metrics showed whichever answered: a
    counter read 23, then 17, then 23 again, which Prometheus takes for restarts."""
    before = health_count(two_processes)
    for _ in range(40):  # a connection each: the two processes share them out
        assert httpx.get(f"{two_processes}/healthz", timeout=5).status_code == 200
    scrapes = [health_count(two_processes) for _ in range(8)]
    assert scrapes == [before + 40] * 8


def test_a_login_holds_whichever_process_answers(two_processes: str) -> None:
    """A login was kept in the memory of the process that answered it: the next page, from
    the other process, sent the analyst back to the login page."""
    login = httpx.post(f"{two_processes}/login", data={"token": "tok-bob"}, timeout=5)
    assert login.status_code == 303
    cookie = login.cookies["vigie_session"]
    pages = [
        httpx.get(f"{two_processes}/", cookies={"vigie_session": cookie}, timeout=5).status_code
        for _ in range(20)  # a connection each
    ]
    assert pages == [200] * 20
