"""Sustained mixed load on the production topology, all on this machine: `vigie serve`,
`vigie worker --queues triage` (Celery, 2 processes), `vigie worker --queues actions` (1
process), `vigie beat` sweeping osmem-server every 5 s, redis-server (AOF) as broker and store,
and an action target that counts calls.

    .venv/bin/python benchmarks/soak_bench.py [SECONDS]     # default 300

For SECONDS, at once: signed webhooks from 4 clients (each 5 alerts, paced), new alerts written
to the search index for the sweeps, and two approvers approving every pending proposal through
the API. Every 10 s it samples the processes' memory and the queues. Then it stops the load,
waits for the queues to drain, and checks: every accepted or swept alert sits in exactly one
incident, and every approved action reached the target exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console
from rich.table import Table
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osmem_server import OsmemServer

from agent.models import ProposalState
from agent.store.redis import RedisStore
from connectors.elasticsearch import OpenSearchBackend
from tests.conftest import RedisServer, free_port
from tests.integration.test_sweep import ALERT_MAPPINGS
from tests.integration.test_worker import Target

SECRET = "whsec_" + "c29hay1zZWNyZXQtc29hay1zZWNyZXQtc29haw=="
INDEX = ".alerts-security.alerts-soak"
WEBHOOK_RATE = 40.0  # requests/s over all clients (5 alerts each)
SWEEP_RATE = 100.0  # alerts/s written to the index
console = Console()


class Episode:
    """What SIEMs send: mostly routine alerts on 50 hosts; every 40th request, a small intrusion
    on a fresh host (brute force, then the account used), which opens an incident with
    proposals. Fresh hosts keep new incidents coming for the whole run."""

    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def alerts(self, k: int) -> list[dict[str, Any]]:
        with self.lock:
            self.n += 1
            n = self.n
        now = datetime.now(UTC).isoformat()
        if n % 40:
            return [
                {
                    "@timestamp": now,
                    "event": {"id": f"wh-{n}-{j}", "kind": "alert", "module": "suricata"},
                    "rule": {"name": f"Routine signature {(n + j) % 20}", "severity": "low"},
                    "host": {"name": f"office{(n * 5 + j) % 50}"},
                    "message": "routine",
                }
                for j in range(5)
            ]
        host, user, ip = f"srv{k:05d}", f"svc{k:05d}", f"198.51.{k // 250 % 250}.{k % 250 + 1}"
        steps = [
            ("SSH brute force", "TA0006", "T1110", "high"),
            ("SSH brute force", "TA0006", "T1110", "high"),
            ("Multiple failed logon", "TA0006", "T1110", "medium"),
            ("Valid account logon after failures", "TA0001", "T1078", "high"),
            ("Sudo to root", "TA0004", "T1548", "high"),
        ]
        return [
            {
                "@timestamp": now,
                "event": {"id": f"wh-{n}-{j}", "kind": "alert", "module": "auditd"},
                "rule": {"name": rule, "id": rule.lower().replace(" ", "-"), "severity": sev},
                "threat": [{"tactic": {"id": tactic}, "technique": [{"id": tech}]}],
                "host": {"name": host},
                "user": {"name": user},
                "source": {"ip": ip},
                "message": f"{rule} on {host}",
            }
            for j, (rule, tactic, tech, sev) in enumerate(steps)
        ]


def kibana_alert(i: int) -> dict[str, Any]:
    """A routine Elastic Security alert for the sweeps: background noise on 200 hosts."""
    return {
        "@timestamp": datetime.now(UTC).isoformat(),
        "kibana.alert.uuid": f"sw{i:08d}",
        "kibana.alert.rule.name": f"Routine rule {i % 13}",
        "kibana.alert.rule.rule_id": f"routine-{i % 13}",
        "kibana.alert.severity": "low",
        "kibana.alert.risk_score": 21,
        "kibana.alert.workflow_status": "open",
        "host": {"name": f"desk{i % 200}"},
    }


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (a Celery worker and its children)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


class Load:
    def __init__(self, api: str, osmem: OpenSearchBackend) -> None:
        self.api, self.osmem = api, osmem
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.episode = Episode()
        self.alert_ids: set[str] = set()
        self.lock = threading.Lock()

    def webhooks(self, client_no: int) -> None:
        signer = Webhook(SECRET)
        period = 4 / WEBHOOK_RATE
        with httpx.Client(base_url=self.api, timeout=30) as http:
            k = client_no
            while not self.stop.is_set():
                t0 = time.perf_counter()
                docs = self.episode.alerts(k)
                k += 4
                body = json.dumps(docs)
                msg = f"msg_{client_no}_{k}"
                headers = {
                    "webhook-id": msg,
                    "webhook-timestamp": str(int(time.time())),
                    "webhook-signature": signer.sign(msg, datetime.now(UTC), body),
                    "content-type": "application/json",
                }
                r = http.post("/webhooks/generic", content=body, headers=headers)
                took = time.perf_counter() - t0
                with self.lock:
                    self.latencies.append(took)
                    if r.status_code == 202:
                        self.counts["webhook_alerts"] += r.json()["accepted"]
                        self.alert_ids.update(d["event"]["id"] for d in docs)
                    else:
                        self.counts[f"webhook_{r.status_code}"] += 1
                self.stop.wait(max(0.0, period - took))

    def index_writer(self) -> None:
        i = 0
        while not self.stop.is_set():
            batch = [kibana_alert(i + j) for j in range(int(SWEEP_RATE))]
            i += len(batch)
            ops: list[dict[str, Any]] = []
            for d in batch:
                ops += [{"index": {"_index": INDEX, "_id": d["kibana.alert.uuid"]}}, d]
            self.osmem.bulk(ops)
            self.osmem.client.indices.refresh(index=INDEX)
            with self.lock:
                self.counts["indexed_alerts"] += len(batch)
                self.alert_ids.update(d["kibana.alert.uuid"] for d in batch)
            self.stop.wait(1.0)

    def approver(self) -> None:
        alice = {"authorization": "Bearer tok-alice"}
        bob = {"authorization": "Bearer tok-bob"}
        with httpx.Client(base_url=self.api, timeout=30) as http:
            while not self.stop.is_set():
                for p in http.get("/api/approvals", headers=alice).json():
                    body = {"args_hash": p["args_hash"]}
                    pid = p["proposal_id"]
                    for who in (alice, bob) if p["risk"] == "high" else (alice,):
                        r = http.post(f"/api/approvals/{pid}/approve", json=body, headers=who)
                        with self.lock:
                            self.counts[f"approve_{r.status_code}"] += 1
                self.stop.wait(2.0)


def spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("vigie")), *args],
        env=env,
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def main(seconds: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vigie-soak-"))
    redis_server = RedisServer(tmp, appendonly=True)
    search = OsmemServer.start(seed=[], freeze=False, japanese=False)
    osmem = OpenSearchBackend(search.url, timeout=60)
    osmem.client.indices.create(index=INDEX, body={"mappings": ALERT_MAPPINGS})
    target = Target()
    port = free_port()
    env = {
        **os.environ,
        "VIGIE_BROKER_URL": redis_server.url(0),
        "VIGIE_STORE_URL": redis_server.url(2),
        "VIGIE_API_TOKENS": "alice:lead:tok-alice,bob:lead:tok-bob",
        "VIGIE_APPROVERS": "alice:lead,bob:lead",
        "VIGIE_WEBHOOK_SECRETS": f"generic:{SECRET}",
        "VIGIE_ES_BACKEND": "opensearch",
        "VIGIE_ES_URL": search.url,
        "VIGIE_ES_ALERTS_INDEX": INDEX,
        "VIGIE_SWEEP_INTERVAL": "5",
        "VIGIE_TARGETS": json.dumps(
            {name: {"url": target.url} for name in ("firewall", "directory", "ticketing", "chat")}
        ),
    }
    procs = {
        "api": spawn(["serve", "--port", str(port)], env, tmp, tmp / "api.log"),
        "worker": spawn(
            ["worker", "--queues", "triage", "--concurrency", "2"], env, tmp, tmp / "worker.log"
        ),
        "actions": spawn(
            ["worker", "--queues", "actions", "--concurrency", "1"], env, tmp, tmp / "actions.log"
        ),
        "beat": spawn(["beat"], env, tmp, tmp / "beat.log"),
    }
    api = f"http://127.0.0.1:{port}"
    broker = redis.Redis.from_url(env["VIGIE_BROKER_URL"])
    store_redis = redis.Redis.from_url(env["VIGIE_STORE_URL"])
    store = RedisStore(env["VIGIE_STORE_URL"])
    try:
        wait_until(lambda: _up(api), 30, "the API")
        wait_until(
            lambda: "ready" in (tmp / "worker.log").read_text(errors="replace"), 60, "worker"
        )
        load = Load(api, osmem)
        threads = [threading.Thread(target=load.webhooks, args=(c,), daemon=True) for c in range(4)]
        threads += [
            threading.Thread(target=load.index_writer),
            threading.Thread(target=load.approver),
        ]
        for t in threads:
            t.start()
        samples = run_and_sample(seconds, procs, broker, store_redis, store)
        load.stop.set()
        for t in threads:
            t.join(30)
        drain(load, store, broker, store_redis, api)
        return report(load, samples, store, target, seconds)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        target.close()
        search.close()
        redis_server.stop()
        console.print(f"logs in {tmp}")


def _up(api: str) -> bool:
    try:
        return httpx.get(f"{api}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run_and_sample(
    seconds: float,
    procs: dict[str, subprocess.Popen[bytes]],
    broker: redis.Redis,
    store_redis: redis.Redis,
    store: RedisStore,
) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        time.sleep(min(10.0, max(0.0, seconds - elapsed)))
        sample = {"t": time.monotonic() - start}
        for name, p in procs.items():
            sample[f"{name}_mb"] = group_rss_mb(p.pid)
        sample["redis_mb"] = float(store_redis.info("memory")["used_memory"]) / 2**20
        sample["celery_queue"] = float(broker.llen("actions") + broker.llen("triage"))
        sample["intake_pending"] = float(store_redis.llen("vigie:intake:pending"))
        sample["approvals_pending"] = float(
            len(store.list_proposals(states=[ProposalState.pending]))
        )
        samples.append(sample)
        queued = Counter(
            json.loads(raw)["headers"]["task"]
            for queue in ("actions", "triage")
            for raw in broker.lrange(queue, 0, -1)
        )
        console.print(
            f"t={sample['t']:5.0f}s api {sample['api_mb']:5.0f} MB, worker "
            f"{sample['worker_mb']:5.0f} MB, actions {sample['actions_mb']:4.0f} MB, beat "
            f"{sample['beat_mb']:4.0f} MB, redis "
            f"{sample['redis_mb']:5.1f} MB, celery queue {sample['celery_queue']:.0f}, intake "
            f"pending {sample['intake_pending']:.0f}, approvals pending "
            f"{sample['approvals_pending']:.0f}; queued: {dict(queued)}"
        )
    return samples


def drain(
    load: Load, store: RedisStore, broker: redis.Redis, store_redis: redis.Redis, api: str
) -> None:
    """Let the worker and the next sweeps finish what was accepted, approve the last proposals."""
    expected = len(load.alert_ids)

    def placed() -> int:
        return int(store_redis.hlen("vigie:alert_index"))

    wait_until(lambda: placed() >= expected, 180, f"{expected} alerts placed")
    wait_until(lambda: broker.llen("actions") + broker.llen("triage") == 0, 120, "queues to drain")
    load.stop.clear()
    t = threading.Thread(target=load.approver)
    t.start()
    time.sleep(5)
    load.stop.set()
    t.join(30)
    wait_until(
        lambda: not store.list_proposals(states=[ProposalState.approved, ProposalState.executing]),
        120,
        "approved actions to finish",
    )


def report(
    load: Load, samples: list[dict[str, float]], store: RedisStore, target: Target, seconds: float
) -> int:
    incidents = store.list_incidents(limit=1_000_000)
    placed = [a for inc in incidents for a in inc.alert_ids]
    lost = load.alert_ids - set(placed)
    doubled = len(placed) - len(set(placed))
    proposals = store.list_proposals()
    ran = [p for p in proposals if p.state is ProposalState.succeeded]
    live = [k for k in target.keys if k]
    repeats = sum(n - 1 for n in Counter(live).values())
    lat = sorted(load.latencies)
    table = Table(title=f"soak: {seconds:.0f} s of mixed load")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "webhook requests (alerts accepted)", f"{len(lat):,} ({load.counts['webhook_alerts']:,})"
    )
    table.add_row(
        "webhook p50 / p99",
        f"{lat[len(lat) // 2] * 1000:.0f} / {lat[int(len(lat) * 0.99)] * 1000:.0f} ms",
    )
    table.add_row(
        "webhook non-202",
        str(
            {
                k: v
                for k, v in load.counts.items()
                if k.startswith("webhook_") and k != "webhook_alerts"
            }
        ),
    )
    table.add_row("alerts indexed for sweeps", f"{load.counts['indexed_alerts']:,}")
    table.add_row("incidents", f"{len(incidents):,}")
    table.add_row("proposals (executed)", f"{len(proposals):,} ({len(ran):,})")
    table.add_row(
        "approvals posted", str({k: v for k, v in load.counts.items() if k.startswith("approve_")})
    )
    table.add_row("target calls (repeats)", f"{len(live):,} ({repeats})")
    table.add_row("alerts lost / in two incidents", f"{len(lost)} / {doubled}")
    third = max(1, len(samples) // 3)
    for key in (
        "api_mb",
        "worker_mb",
        "actions_mb",
        "beat_mb",
        "redis_mb",
        "celery_queue",
        "intake_pending",
        "approvals_pending",
    ):
        first = max(s[key] for s in samples[:third])
        last = max(s[key] for s in samples[-third:])
        table.add_row(f"{key}: max first third -> last third", f"{first:,.1f} -> {last:,.1f}")
    console.print(table)
    ok = not lost and not doubled and repeats == 0 and len(live) >= len(ran) > 0
    console.print("[green]OK[/]" if ok else "[red]FAILED[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 300.0))
