"""Approval -> execution benchmark on real components: redis-server, a Celery worker process
(concurrency 2) and a local HTTP target that counts calls.

    .venv/bin/python benchmarks/approvals_bench.py [N]      # default N = 1000

Reports the latency from the approval being recorded to the action starting (both timestamps
come from the store), and checks every approved proposal ran exactly once.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import approvals
from agent.models import ProposalState, Risk
from agent.queue import ApprovalQueue
from agent.settings import Settings
from agent.store.redis import RedisStore
from agent.worker import create_app
from tests.conftest import RedisServer
from tests.integration.test_worker import Target, Worker, make_proposals, wait_for


def latency(store: RedisStore, pid: str) -> float:
    p = store.get_proposal(pid)
    assert p is not None
    began = approvals.started_at(p)
    assert began is not None
    approved_at: datetime = p.approvals[-1].at
    return (began - approved_at).total_seconds()


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp))
        target = Target()
        env = {
            **os.environ,
            "VIGIE_BROKER_URL": redis_server.url(0),
            "VIGIE_STORE_URL": redis_server.url(2),
            "VIGIE_TARGETS": json.dumps({"firewall": {"url": target.url}}),
        }
        app = create_app(Settings(broker_url=env["VIGIE_BROKER_URL"]))
        store = RedisStore(env["VIGIE_STORE_URL"])
        worker = Worker(env, Path(tmp) / "worker.log")
        try:
            queue = ApprovalQueue(
                store,
                lambda pid: app.send_task("vigie.execute_proposal", args=[pid]),
                timedelta(hours=1),
            )
            # 1. Latency with a warm, idle worker: one approval at a time.
            warm = make_proposals(store, 100, Risk.low)
            for pid in warm:
                queue.approve(pid, "alice")
                wait_for(
                    lambda pid=pid: store.get_proposal(pid).state is ProposalState.succeeded,
                    30,
                    "execution",
                )
            lat = sorted(latency(store, pid) for pid in warm)
            print(
                f"approval -> action start, warm idle worker, {len(lat)} sequential approvals: "
                f"p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p95 {lat[int(0.95 * (len(lat) - 1))] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
            )
            # 2. A burst: N approvals as fast as they come, each task also delivered twice.
            target.calls.clear()
            ids = make_proposals(store, n, Risk.medium)
            start = time.perf_counter()
            for pid in ids:
                queue.approve(pid, "alice")
                app.send_task("vigie.execute_proposal", args=[pid])  # a duplicate delivery each
            wait_for(
                lambda: (
                    all(store.get_proposal(p).state is ProposalState.succeeded for p in ids[-20:])
                    and len(target.calls) >= n
                ),
                600,
                "executions",
            )
            elapsed = time.perf_counter() - start
            time.sleep(2)
            states = Counter(store.get_proposal(p).state.value for p in ids)
            calls = Counter(body["ip"] for _, body in target.calls)
            burst = sorted(latency(store, pid) for pid in ids)
            print(
                f"burst: {n} approvals (+{n} duplicate deliveries) executed in {elapsed:.1f}s "
                f"({n / elapsed:.0f}/s); states {dict(states)}; queueing p95 "
                f"{burst[int(0.95 * (len(burst) - 1))]:.1f}s"
            )
            print(
                f"target calls: {sum(calls.values())}, distinct {len(calls)}, "
                f"duplicates {sum(c - 1 for c in calls.values())}, lost {n - len(calls)}"
            )
        finally:
            worker.stop()
            target.close()
            redis_server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
