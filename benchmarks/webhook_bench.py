"""Webhook intake benchmark: signed Standard Webhooks requests against `vigie serve` (real
uvicorn, one process, embedded SQLite store, triage inline in the background), from 8
concurrent clients in a separate process.

    .venv/bin/python benchmarks/webhook_bench.py [SECONDS]     # default 20
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2g="
CLIENTS = 8


def body(i: int) -> bytes:
    return json.dumps(
        {
            "@timestamp": datetime.now(UTC).isoformat(),
            "event": {"id": f"bench-{uuid.uuid4().hex}", "kind": "alert", "module": "ids"},
            "rule": {"name": f"Rule {i % 13}", "id": f"r{i % 13}"},
            "host": {"name": f"host{i % 50}"},
            "source": {"ip": f"198.51.100.{i % 200}"},
        }
    ).encode()


def wait_healthy(url: str, seconds: float = 30.0) -> None:
    """Until `vigie serve` answers /healthz (or give up: the benchmark cannot run)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            sys.exit("server did not start")
        time.sleep(0.1)


def client_loop(url: str, until: float, out: list[tuple[float, int]]) -> None:
    signer = Webhook(SECRET)
    with httpx.Client(base_url=url, timeout=10) as c:
        i = 0
        while time.monotonic() < until:
            b = body(i)
            msg = uuid.uuid4().hex
            headers = {
                "webhook-id": msg,
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": signer.sign(msg, datetime.now(UTC), b.decode()),
                "content-type": "application/json",
            }
            t0 = time.perf_counter()
            r = c.post("/webhooks/generic", content=b, headers=headers)
            out.append((time.perf_counter() - t0, r.status_code))
            i += 1


def main(seconds: float) -> None:
    if len(sys.argv) > 2 and sys.argv[2] == "--clients":  # the load generator process
        results: list[tuple[float, int]] = []
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=client_loop, args=(sys.argv[3], until, results))
            for _ in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps(results))
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = 18000 + os.getpid() % 1000
        env = {
            **os.environ,
            "VIGIE_STORE_URL": f"sqlite:///{tmp}/v.db",
            "VIGIE_WEBHOOK_SECRETS": f"generic:{SECRET}",
            "VIGIE_API_PORT": str(port),
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "vigie"), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url)
            load = subprocess.run(
                [sys.executable, __file__, str(seconds), "--clients", url],
                capture_output=True,
                text=True,
                check=True,
            )
            results = json.loads(load.stdout)
            ok = [lat for lat, status in results if status == 202]
            lat = sorted(ok)
            print(
                f"{len(results):,} signed requests in {seconds:.0f}s from {CLIENTS} clients: "
                f"{len(ok) / seconds:,.0f} accepted/s; p50 {statistics.median(lat) * 1000:.1f} ms, "
                f"p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.1f} ms; "
                f"non-202: {len(results) - len(ok)}"
            )
            time.sleep(3)  # let the background triage catch up
            incidents = httpx.get(url + "/metrics").text
            line = next(x for x in incidents.splitlines() if x.startswith("vigie_alerts_in_total{"))
            print(f"server counted: {line}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
