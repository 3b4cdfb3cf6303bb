"""Approvals through a real Celery worker process on a real Redis broker, acting on a local HTTP
target that counts its calls: exactly once per approved proposal, never a retry after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import ApprovalError
from agent.models import ActionProposal, ProposalState, Risk, args_hash
from agent.queue import ApprovalQueue
from agent.settings import Settings
from agent.store.redis import RedisStore
from agent.worker import create_app
from tests.conftest import REPO, RedisServer, free_port
from tests.fakes.action_target import Target


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.fh = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "agent.celery_app",
                "worker",
                "--concurrency=2",
                "--queues=actions,triage",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=REPO,
            env=env,
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: "ready" in log.read_text(errors="replace"), 30, "worker ready")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.fh.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.fh.close()


def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[dict]:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    target = Target()
    env = {
        **os.environ,
        "VIGIE_BROKER_URL": redis_server.url(0),
        "VIGIE_STORE_URL": redis_server.url(2),
        "VIGIE_TARGETS": json.dumps(
            {
                "firewall": {"url": target.url, "token": "t0k3n"},
                "hangs": {"url": target.url + "/hang"},
                "chat": {"url": target.url + "/chat"},
            }
        ),
        "VIGIE_BROKER_VISIBILITY_TIMEOUT": "2",
        "VIGIE_EXECUTION_LEASE_SECONDS": "1",
    }
    settings = Settings(broker_url=env["VIGIE_BROKER_URL"], store_url=env["VIGIE_STORE_URL"])
    app = create_app(settings)
    store = RedisStore(env["VIGIE_STORE_URL"])
    worker = Worker(env, tmp_path / "worker.log")
    state = {
        "target": target,
        "env": env,
        "app": app,
        "store": store,
        "worker": worker,
        "log": tmp_path / "worker.log",
    }
    yield state
    state["worker"].stop()  # the one running now: a test may have replaced the first
    target.close()
    store.close()


def make_proposals(store: RedisStore, n: int, risk: Risk, target: str = "firewall") -> list[str]:
    now = datetime.now(UTC)
    ps = []
    for i in range(n):
        args = {"ip": f"203.0.113.{i + 1}", "target": target}
        ps.append(
            ActionProposal(
                proposal_id=f"P-{risk.value}-{i}",
                incident_id="INC-1",
                playbook="pb",
                step="s",
                action="block_ip",
                args=args,
                args_hash=args_hash("block_ip", args),
                risk=risk,
                required_approvals=2 if risk is Risk.high else 1,
                requested_by="vigie",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    store.save_triage([], [], ps, [], actor="vigie")
    return [p.proposal_id for p in ps]


def send(app, pid: str) -> None:  # type: ignore[no-untyped-def]
    app.send_task("vigie.execute_proposal", args=[pid])


def test_exactly_one_call_under_concurrent_approvals_and_duplicate_deliveries(stack: dict) -> None:
    store, app, target = stack["store"], stack["app"], stack["target"]
    queue = ApprovalQueue(store, lambda pid: send(app, pid), timedelta(hours=1))
    ids = make_proposals(store, 6, Risk.medium) + make_proposals(store, 4, Risk.high)
    outcomes: list[str] = []

    def approve(pid: str, who: str) -> None:
        try:
            outcomes.append(queue.approve(pid, who).state.value)
        except ApprovalError as exc:
            outcomes.append(type(exc).__name__)

    threads = [
        threading.Thread(target=approve, args=(pid, f"analyst{k}")) for pid in ids for k in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for pid in ids:
        if store.get_proposal(pid).state is ProposalState.pending:  # high risk: one more person
            approve(pid, "lead-two")
        for _ in range(3):
            send(app, pid)  # duplicate deliveries of the same task
    wait_for(
        lambda: all(store.get_proposal(p).state is ProposalState.succeeded for p in ids),
        30,
        "all proposals executed",
    )
    time.sleep(1.0)  # let any stray duplicate run, if one could
    called = sorted(body["ip"] for path, body in target.calls if path == "/block_ip")
    assert called == sorted(store.get_proposal(p).args["ip"] for p in ids)  # one call each
    blocks = [
        k for (path, _), k in zip(target.calls, target.keys, strict=True) if path == "/block_ip"
    ]
    assert sorted(blocks) == sorted(ids)  # each carried its proposal id as idempotency key
    wait_for(lambda: sum(path == "/chat" for path, _ in target.calls) >= len(ids), 20, "notices")
    time.sleep(0.5)
    notices = [body["text"] for path, body in target.calls if path == "/chat"]
    assert len(notices) == len(ids) and all("ended succeeded" in t for t in notices)
    for pid in ids:
        kinds = [e.kind for e in store.audit(pid)]
        assert kinds.count("proposal.executing") == 1 and kinds.count("proposal.succeeded") == 1
        approvers = {a.approver for a in store.get_proposal(pid).approvals}
        assert len(approvers) == store.get_proposal(pid).required_approvals
    assert store.verify_audit() == (True, None)


def test_tampered_arguments_are_refused_by_the_worker(stack: dict) -> None:
    store, app, target = stack["store"], stack["app"], stack["target"]
    (pid,) = make_proposals(store, 1, Risk.medium)
    ApprovalQueue(store, lambda _: None, timedelta(hours=1)).approve(pid, "alice")
    import redis

    r = redis.Redis.from_url(stack["env"]["VIGIE_STORE_URL"])
    doc = json.loads(r.hget(f"vigie:proposal:{pid}", "doc"))
    doc["args"]["ip"] = "8.8.8.8"  # someone with store access changes the approved arguments
    r.hset(f"vigie:proposal:{pid}", "doc", json.dumps(doc))
    send(app, pid)
    wait_for(lambda: any(e.kind == "execution.refused" for e in store.audit(pid)), 20, "refusal")
    assert target.calls == []
    assert store.get_proposal(pid).state is ProposalState.approved


def test_expiry_runs_as_a_periodic_task_on_the_worker(stack: dict) -> None:
    store, app = stack["store"], stack["app"]
    (pid,) = make_proposals(store, 1, Risk.low)
    p = store.get_proposal(pid)
    past = p.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    store.transition(p, past.model_copy(update={"version": p.version + 1}), actor="test")
    app.send_task("vigie.expire_approvals")
    wait_for(lambda: store.get_proposal(pid).state is ProposalState.expired, 20, "expiry")
    with pytest.raises(ApprovalError, match="not pending"):
        ApprovalQueue(store, lambda _: None, timedelta(hours=1)).approve(pid, "alice")


def test_an_approval_whose_run_was_never_queued_runs_once_from_the_periodic_sweep(
    stack: dict,
) -> None:
    """The approval is stored, then its run queued: a broker unreachable in between left the
    proposal approved and never run. The periodic expiry sweep queues it again, once it has
    waited a minute; tampered arguments are not retried by it."""
    store, app, target = stack["store"], stack["app"], stack["target"]
    stranded_id, tampered_id, recent_id = make_proposals(store, 3, Risk.medium)
    lost = ApprovalQueue(store, lambda _: None, timedelta(hours=1))  # the dispatch is lost
    for pid in (stranded_id, tampered_id, recent_id):
        lost.approve(pid, "alice")
    for pid in (stranded_id, tampered_id):  # approved two minutes ago
        p = store.get_proposal(pid)
        earlier = [a.model_copy(update={"at": a.at - timedelta(minutes=2)}) for a in p.approvals]
        args = {**p.args, "ip": "8.8.8.8"} if pid == tampered_id else p.args
        changed = p.model_copy(
            update={"approvals": earlier, "args": args, "version": p.version + 1}
        )
        assert store.transition(p, changed, actor="test")
    app.send_task("vigie.expire_approvals")
    wait_for(
        lambda: store.get_proposal(stranded_id).state is ProposalState.succeeded, 20, "the run"
    )
    app.send_task("vigie.expire_approvals")  # nothing left to queue
    time.sleep(1.5)
    assert [body["ip"] for path, body in target.calls if path == "/block_ip"] == ["203.0.113.1"]
    assert store.get_proposal(tampered_id).state is ProposalState.approved
    assert not any(e.kind == "execution.refused" for e in store.audit(tampered_id))
    assert store.get_proposal(recent_id).state is ProposalState.approved  # within its minute


def test_an_unreachable_broker_leaves_the_approval_standing_for_the_sweep(tmp_path: Path) -> None:
    """Queueing the run failed after the approval was stored: the approver got an error (a 500
    through the API) for a decision that stood. It now stands without error, and the audit
    says the run is waiting for the sweep."""
    from agent import worker
    from agent.store.sqlite import SqliteStore

    kept = worker._apps[:]
    try:
        create_app(Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0"))
        store = SqliteStore(tmp_path / "v.db")
        (pid,) = make_proposals(store, 1, Risk.medium)  # type: ignore[arg-type]
        queue = ApprovalQueue(
            store,
            worker.enqueue_execution,
            timedelta(hours=1),
            on_decision=lambda p, who: worker._dispatch(worker.outbound_task, {"id": "e1"}),
        )
        assert queue.approve(pid, "alice").state is ProposalState.approved
        assert store.get_proposal(pid).state is ProposalState.approved
        for kind in ("decision.event_failed", "execution.queue_failed"):
            failed = [e for e in store.audit(pid) if e.kind == kind]
            assert len(failed) == 1 and "broker unreachable" in failed[0].data["why"]
    finally:
        worker._apps[:] = kept


def test_worker_killed_mid_action_leaves_outcome_unknown_and_no_second_call(stack: dict) -> None:
    store, app, target = stack["store"], stack["app"], stack["target"]
    (pid,) = make_proposals(store, 1, Risk.medium, target="hangs")
    ApprovalQueue(store, lambda p: send(app, p), timedelta(hours=1)).approve(pid, "alice")
    wait_for(lambda: len(target.calls) == 1, 20, "the action to reach the target")
    stack["worker"].kill()  # mid-request: the target got the call, the worker never reported
    assert store.get_proposal(pid).state is ProposalState.executing
    stack["worker"] = Worker(stack["env"], stack["log"])  # acks_late: the task comes back

    # Past the 2 s visibility timeout, Redis hands the unacknowledged task out again.
    def deliveries() -> int:
        lines = stack["log"].read_text(errors="replace").splitlines()
        return sum(1 for x in lines if "vigie.execute_proposal[" in x and x.endswith("received"))

    wait_for(lambda: deliveries() >= 2, 90, "the redelivery of the unacknowledged task")
    time.sleep(1)  # ...and the new worker has dealt with it (by doing nothing)
    app.send_task("vigie.reap_executions")
    wait_for(lambda: store.get_proposal(pid).state is ProposalState.outcome_unknown, 20, "reaper")
    target.release.set()
    assert [path for path, _ in target.calls if path.startswith("/hang")] == ["/hang/block_ip"]
    kinds = [e.kind for e in store.audit(pid)]
    assert kinds.count("proposal.executing") == 1 and "proposal.outcome_unknown" in kinds
    wait_for(lambda: any(p == "/chat" for p, _ in target.calls), 20, "the on-call notice")
    notice = next(body["text"] for p, body in target.calls if p == "/chat")
    assert "outcome_unknown" in notice


def test_triage_runs_on_the_worker_into_the_redis_store(stack: dict) -> None:
    store, app = stack["store"], stack["app"]
    demo = [str(REPO / "examples/demo-elastic.ndjson"), str(REPO / "examples/demo-wazuh.json")]
    result = app.send_task("vigie.triage_files", args=[demo])
    wait_for(lambda: len(store.list_incidents(limit=1000)) > 0, 60, "incidents stored")
    wait_for(lambda: any(e.kind == "triage.stored" for e in store.audit("run")), 60, "the run")
    incidents = store.list_incidents(limit=1000)
    assert incidents[0].priority == max(i.priority for i in incidents)
    assert sum(len(i.alert_ids) for i in incidents) == 1725  # every valid demo alert, once
    assert len(store.dead_letters()) == 2
    assert store.list_proposals(states=[ProposalState.pending])
    assert result.id


def test_sweep_task_never_overlaps_and_places_every_alert_once(
    redis_server: RedisServer, osmem_url: str, tmp_path: Path
) -> None:
    import redis
    from opensearchpy import OpenSearch

    redis.Redis(port=redis_server.port).flushall()
    client = OpenSearch(osmem_url)
    index = "wazuh-alerts-4.x-2026.01.05"
    client.indices.create(
        index=index,
        body={
            "mappings": {"properties": {"@timestamp": {"type": "date"}, "id": {"type": "keyword"}}}
        },
    )
    for i in range(120):
        ts = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(minutes=i)
        client.index(
            index=index,
            id=f"w{i:04d}",
            body={
                "@timestamp": ts.isoformat(),
                "timestamp": ts.isoformat(),
                "id": f"w{i:04d}",
                "rule": {"level": 5, "description": "sshd: authentication failed", "id": "5716"},
                "agent": {"name": f"srv{i % 3}"},
            },
        )
    client.indices.refresh(index=index)
    env = {
        **os.environ,
        "VIGIE_BROKER_URL": redis_server.url(0),
        "VIGIE_STORE_URL": redis_server.url(2),
        "VIGIE_ES_URL": osmem_url,
        "VIGIE_ES_BACKEND": "opensearch",
        "VIGIE_ES_ALERTS_INDEX": "wazuh-alerts-*",
        "VIGIE_ES_TIEBREAKER": "id",
        "VIGIE_ES_ONLY_OPEN": "false",
        "VIGIE_ES_PAGE_SIZE": "50",
    }
    app = create_app(Settings(broker_url=env["VIGIE_BROKER_URL"]))
    worker = Worker(env, tmp_path / "worker.log")
    store = RedisStore(env["VIGIE_STORE_URL"])
    try:
        lock = redis.Redis(port=redis_server.port).lock("vigie:sweep-lock", timeout=60)
        assert lock.acquire()  # a sweep is "running"
        assert app.send_task("vigie.sweep").id
        wait_for(
            lambda: "skipped: a sweep is running" in (tmp_path / "worker.log").read_text(),
            30,
            "the overlapping sweep to step aside",
        )
        assert store.list_incidents() == []
        lock.release()
        for _ in range(3):  # beat firing repeatedly: each sweep starts from the checkpoint
            app.send_task("vigie.sweep")
        wait_for(
            lambda: sum(len(i.alert_ids) for i in store.list_incidents(limit=1000)) == 120,
            60,
            "every alert in an incident",
        )
        time.sleep(1)
        placed = sorted(a for i in store.list_incidents(limit=1000) for a in i.alert_ids)
        assert placed == [f"w{i:04d}" for i in range(120)]
    finally:
        worker.stop()
        store.close()


def test_an_unreachable_broker_leaves_a_closing_standing_and_says_what_was_not_sent(
    tmp_path: Path,
) -> None:
    """A person's closing is stored before it is announced: a broker down at that moment (with
    outbound webhooks set) must not turn it into an error, and the incident's audit says which
    event was not sent."""
    from agent import announcements, worker
    from agent.analyst import OfflineAnalyst
    from agent.dispositions import dispose
    from agent.graph import TriageContext, run_triage_documents
    from agent.store.sqlite import SqliteStore
    from connectors.actions.http import HttpActionRunner
    from tests.conftest import ecs

    kept, overridden = worker._apps[:], dict(worker._override)
    try:
        settings = Settings(
            broker_url=f"redis://127.0.0.1:{free_port()}/0",
            outbound_webhooks=[{"url": "http://127.0.0.1:9/hook", "secret": "whsec_eA=="}],
        )
        create_app(settings)
        store = SqliteStore(tmp_path / "v.db")
        worker.use_services(settings, store, HttpActionRunner({}))
        ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
        (incident,) = run_triage_documents([("t", 1, ecs(1, 0, "Odd DNS", "srv1"))], ctx)[
            "incidents"
        ]
        incident_id = incident.incident_id
        closing = dispose(store, incident_id, "benign", "the nightly backup", "alice")
        announcements.closed(closing)
        assert store.get_incident(incident_id).status == "closed"
        (unsent,) = [e for e in store.audit(incident_id) if e.kind == "outbound.unqueued"]
        assert unsent.data["type"] == "incident.closed" and "broker" in unsent.data["why"]
    finally:
        worker._apps[:] = kept
        worker._override.clear()
        worker._override.update(overridden)
        worker._services.cache_clear()
