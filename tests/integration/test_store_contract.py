"""The Store contract, run against every implementation (SQLite, and Redis on a real server):
compare-and-swap transitions, the audit chain, and at-most-once execution on top of them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from agent import approvals
from agent.errors import ApprovalError, Transient
from agent.execution import execute_proposal, expire_pending, reap_stale
from agent.models import ActionProposal, DeadLetter, Disposition, Incident, ProposalState, args_hash
from agent.playbooks import proposal_id_for
from agent.queue import ApprovalQueue
from agent.store import RunHistory, Store
from agent.store.redis import RedisStore
from agent.store.sqlite import SqliteStore
from tests.unit.test_approvals import proposal


class CountingRunner:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def run(self, p: ActionProposal) -> tuple[bool, dict]:
        self.calls.append(p.proposal_id)
        if self.fail:
            raise self.fail
        return True, {"dry_run": True}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "v.db")
    else:
        s = RedisStore(request.getfixturevalue("redis_url"))
    yield s
    s.close()


def fresh(store: Store, p: ActionProposal) -> ActionProposal:
    store.save_triage([], [], [p], [], actor="vigie")
    got = store.get_proposal(p.proposal_id)
    assert got is not None
    return got


def test_transition_is_compare_and_swap(store: Store) -> None:
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    a = approvals.approve(p, "alice", now, seen_hash=p.args_hash)
    b = approvals.reject(p, "bob", now, reason="no")
    assert store.transition(p, a, actor="alice")
    assert not store.transition(p, b, actor="bob")  # stale version: loses, writes nothing
    assert store.get_proposal(p.proposal_id).state is ProposalState.approved


def test_saving_the_same_proposal_twice_keeps_one(store: Store) -> None:
    p = proposal()
    store.save_triage([], [], [p], [], actor="vigie")
    store.save_triage([], [], [p], [], actor="vigie")
    assert len(store.list_proposals()) == 1
    assert [e.kind for e in store.audit(p.proposal_id)] == ["proposal.created"]


def test_a_proposal_is_recorded_as_created_by_the_run_that_proposed_it(store: Store) -> None:
    """The audit names who asked (VIGIE_REQUESTER, as the proposal's `requested_by`), on
    every store."""
    now = datetime.now(UTC)
    p = proposal(created_at=now, expires_at=now + timedelta(hours=1))
    store.save_triage([], [], [p], [], actor="sweeper-eu1")
    (created,) = store.audit(p.proposal_id)
    assert (created.kind, created.actor) == ("proposal.created", "sweeper-eu1")
    assert created.data["args_hash"] == p.args_hash and created.data["args"] == p.args


def test_audit_chain_verifies_and_detects_tampering(tmp_path: Path, store: Store) -> None:
    for i in range(5):
        store.append_audit("alice", "note", f"s{i}", {"i": i})
    assert store.verify_audit() == (True, None)
    assert [e.seq for e in store.audit("s3")] == [4]
    if isinstance(store, SqliteStore):
        db = sqlite3.connect(tmp_path / "v.db")
        db.execute("UPDATE audit SET data=? WHERE seq=3", (b'{"i": 99}',))
        db.commit()
    else:
        import redis

        r = redis.Redis.from_url(store_url(store))
        raw = json.loads(r.lindex("vigie:audit", 2))
        raw["data"] = {"i": 99}
        r.lset("vigie:audit", 2, json.dumps(raw))
    assert store.verify_audit() == (False, 3)


def test_audit_reads_only_what_comes_after_a_seq(store: Store) -> None:
    for i in range(5):
        store.append_audit("alice", "note", "same" if i % 2 else f"s{i}", {"i": i})
    assert [e.seq for e in store.audit(after=3)] == [4, 5]
    assert [e.seq for e in store.audit(after=5)] == []
    assert [e.seq for e in store.audit("same", after=2)] == [4]
    # A page, not the whole trail: `vigie audit show` read every event to show fifty.
    assert [e.seq for e in store.audit(after=1, limit=2)] == [2, 3]
    assert [e.seq for e in store.audit("same", limit=1)] == [2]
    assert [e.seq for e in store.audit(after=4, limit=9)] == [5]


def store_url(store: RedisStore) -> str:
    kw = store._r.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_triage_results_round_trip(store: Store) -> None:
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.incidents import build_incident
    from agent.models import DeadLetter
    from tests.conftest import alert

    alerts = [alert(1, 0, "Web shell", "web", severity="high"), alert(2, 900, "Port scan", "fw")]
    clusters = correlate(alerts)
    baseline = Baseline()
    baseline.observe(clusters)
    incidents = [build_incident(c, baseline) for c in clusters]
    dead = [DeadLetter(source="f", line=3, reason="invalid JSON")]
    store.save_triage(incidents, alerts, [], dead, actor="v")
    store.save_triage(incidents, alerts, [], [], actor="v")  # idempotent re-save
    listed = store.list_incidents()
    assert store.count_incidents() == len(incidents) == len(listed)
    assert [i.incident_id for i in listed] == [
        i.incident_id for i in sorted(incidents, key=lambda i: -i.priority)
    ]
    first = listed[0]
    assert store.get_incident(first.incident_id) == first
    assert [a.id for a in store.alerts_of(first.incident_id)] == first.alert_ids
    assert [(d.source, d.line, d.reason) for d in store.dead_letters()] == [
        ("f", 3, "invalid JSON")
    ]
    assert store.verify_audit() == (True, None)


def test_incident_lists_are_filtered_and_paged_by_the_store(store: Store) -> None:
    """Status and a lowest priority filter the list and its count, highest priority first,
    a page at a time: a list view never reads every incident."""
    from agent.dispositions import dispose
    from agent.models import Incident

    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    incidents = [
        Incident(
            incident_id=f"INC-{n:03d}",
            alert_ids=[f"a{n}"],
            priority=float(10 * (n % 10)),
            title=f"incident {n}",
            first_seen=t0,
            last_seen=t0 + timedelta(minutes=n),
        )
        for n in range(30)
    ]
    store.save_triage(incidents, [], [], [], actor="vigie")
    for n in (9, 19, 5):  # two at priority 90, one at 50
        dispose(store, f"INC-{n:03d}", "benign", "lab", "alice")

    def ids(**kw: object) -> list[str]:
        return [i.incident_id for i in store.list_incidents(**kw)]  # type: ignore[arg-type]

    everything = ids(limit=100)
    assert [store.get_incident(i).priority for i in everything] == sorted(  # type: ignore[union-attr]
        (i.priority for i in incidents), reverse=True
    )
    assert ids(limit=5, offset=5) == everything[5:10]
    assert set(ids(status="closed")) == {"INC-009", "INC-019", "INC-005"}
    assert ids(status="closed", min_priority=60) == [
        i for i in everything if i in ("INC-009", "INC-019")
    ]
    closed = ids(status="closed", limit=100)
    assert [ids(status="closed", limit=1, offset=k) for k in range(4)] == [
        [closed[0]],
        [closed[1]],
        [closed[2]],
        [],
    ]
    opened = ids(status="open", limit=100)
    assert opened == [i for i in everything if i not in ("INC-009", "INC-019", "INC-005")]
    assert (
        ids(status="open", min_priority=80, limit=2, offset=1)
        == [
            i
            for i in opened
            if store.get_incident(i).priority >= 80  # type: ignore[union-attr]
        ][1:3]
    )
    assert store.count_incidents() == 30
    assert store.count_incidents(status="open") == 27
    assert store.count_incidents(status="closed", min_priority=60) == 2
    assert store.count_incidents(min_priority=80) == 6
    assert ids(min_priority=100) == [] and store.count_incidents(min_priority=100) == 0


def test_incidents_are_found_by_a_host_user_or_address_they_involve(
    store: Store, tmp_path: Path, redis_url: str
) -> None:
    """An analyst pivots from one host (or account, or address) to every incident holding
    it, whatever case the sensors spelled it in; a store from before the entity index finds
    its incidents too."""
    from agent.dispositions import dispose

    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def incident(
        n: int, hosts: list[str], users: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> Incident:
        return Incident(
            incident_id=f"INC-{n:03d}",
            alert_ids=[f"a{n}"],
            priority=float(n),
            title="t",
            first_seen=t0,
            last_seen=t0,
            hosts=hosts,
            users=list(users),
            ips=list(ips),
        )

    store.save_triage(
        [
            incident(10, ["WEB-01"], ("alice",)),
            incident(20, ["db-02"], (), ("203.0.113.9",)),
            incident(30, ["web-01", "db-02"], ("root",), ("203.0.113.9",)),
            incident(40, ["mail"], ("john.smith",)),
        ],
        [],
        [],
        [],
        actor="vigie",
    )
    dispose(store, "INC-030", "benign", "lab", "alice")
    store.save_triage([incident(50, ["web-01"])], [], [], [], actor="vigie")

    def ids(**kw: object) -> list[str]:
        return [i.incident_id for i in store.list_incidents(**kw)]  # type: ignore[arg-type]

    assert ids(involving="web-01") == ["INC-050", "INC-030", "INC-010"]
    assert ids(involving=" Web-01 ", status="open") == ["INC-050", "INC-010"]
    assert ids(involving="web-01", status="closed") == ["INC-030"]
    assert ids(involving="web-01", min_priority=20, limit=1, offset=1) == ["INC-030"]
    assert ids(involving="203.0.113.9") == ["INC-030", "INC-020"]
    assert ids(involving="alice") == ["INC-010"] and ids(involving="nobody") == []
    # Hosts are read by machine name: one typed with its DNS domain is found; a dotted
    # account is found as typed.
    assert ids(involving="Web-01.corp.example") == ["INC-050", "INC-030", "INC-010"]
    assert store.count_incidents(involving="db-02.corp.example", status="open") == 1
    assert ids(involving="John.Smith") == ["INC-040"] and ids(involving="john") == []
    assert ids(involving="CORP\\alice") == ["INC-010"]  # as accounts are read
    assert store.count_incidents(involving="web-01") == 3
    assert store.count_incidents(involving="db-02", status="open") == 1
    assert store.count_incidents(involving="db-02", status="closed", min_priority=40) == 0

    # A store whose incidents were saved before the index: found all the same.
    if isinstance(store, SqliteStore):
        store._db.execute("DROP TABLE incident_entities")  # as a store made before it
        store.close()
        store = SqliteStore(tmp_path / "v.db")
    else:
        raw = redis.Redis.from_url(redis_url)
        raw.delete(*raw.keys("vigie:incidents:involving*"))
    assert ids(involving="WEB-01") == ["INC-050", "INC-030", "INC-010"]
    store.close()


def test_a_redis_status_list_sends_a_page_not_every_incidents_id(redis_url: str) -> None:
    """A year of closed incidents must not cross the network for each page of open ones."""
    store = RedisStore(redis_url)
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    older = [
        Incident(
            incident_id=f"INC-OLD-{n:05d}",
            alert_ids=[f"old{n}"],
            priority=float(n % 100),
            title="old",
            first_seen=t0,
            last_seen=t0,
            status="closed",
        )
        for n in range(5000)
    ]
    today = [
        Incident(
            incident_id=f"INC-NEW-{n}",
            alert_ids=[f"new{n}"],
            priority=float(n),
            title="new",
            first_seen=t0,
            last_seen=t0 + timedelta(days=1),
        )
        for n in range(40, 46)
    ]
    store.save_triage(older + today, [], [], [], actor="vigie")
    raw = redis.Redis.from_url(redis_url)

    def sent(read: Callable[[], object]) -> tuple[object, int]:
        before = int(raw.info("stats")["total_net_output_bytes"])
        got = read()
        return got, int(raw.info("stats")["total_net_output_bytes"]) - before

    opened, opened_bytes = sent(lambda: store.list_incidents(status="open", limit=3))
    assert [i.incident_id for i in opened] == ["INC-NEW-45", "INC-NEW-44", "INC-NEW-43"]
    counted, counted_bytes = sent(lambda: store.count_incidents(status="closed", min_priority=50))
    assert counted == sum(1 for i in older if i.priority >= 50)
    closed, closed_bytes = sent(lambda: store.list_incidents(status="closed", limit=2, offset=1))
    assert [i.incident_id for i in closed] == sorted(
        (i.incident_id for i in older if i.priority == 99), reverse=True
    )[1:3]
    # 5,000 ids would be some 90 kB; a page of documents and the open ids are a few kB.
    assert max(opened_bytes, counted_bytes, closed_bytes) < 10_000
    deep, deep_bytes = sent(lambda: store.list_incidents(status="closed", limit=2, offset=4990))
    by_priority = sorted(older, key=lambda i: (-i.priority, [-ord(c) for c in i.incident_id]))
    assert [i.incident_id for i in deep] == [i.incident_id for i in by_priority[4990:4992]]
    assert deep_bytes < 10_000  # the 100th page reads its own ids, not the 4,990 before them
    # A store from before the set of closed incidents: it is made at the first read of them.
    raw.delete("vigie:incidents:closed", "vigie:incidents:closed-indexed")
    again = store.list_incidents(status="closed", limit=2, offset=4990)
    assert [i.incident_id for i in again] == [i.incident_id for i in deep]
    assert store.count_incidents(status="closed") == 5000
    assert raw.zcard("vigie:incidents:closed") == 5000  # the open ones left out
    store.close()


def test_a_redis_refusing_writes_fails_every_write_as_transient(redis_url: str) -> None:
    """Out of memory (or a failed disk write, or a read-only replica), Redis refuses writes:
    each write path says "not now" (Transient: retried or reported), none half-writes."""
    store = RedisStore(redis_url)
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    inc = Incident(
        incident_id="INC-x", alert_ids=["a1"], priority=5.0, title="t", first_seen=t0, last_seen=t0
    )
    store.save_triage([inc], [], [], [], actor="vigie")
    raw = redis.Redis.from_url(redis_url)
    written = raw.llen("vigie:audit")
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", 1)
    try:
        writes: dict[str, Callable[[], object]] = {
            "audit": lambda: store.append_audit("alice", "note", "x", {}),
            "webhook batch": lambda: store.save_intake("b1", "generic", [{"id": "a1"}], []),
            "triage": lambda: store.save_triage([inc], [], [], [], actor="vigie"),
            "closing": lambda: store.dispose(
                "INC-x", Disposition(verdict="benign", reason="r", actor="alice", at=now)
            ),
            "approval": lambda: store.transition(
                p, approvals.approve(p, "alice", now, seen_hash=p.args_hash), actor="alice"
            ),
        }
        for what, write in writes.items():
            with pytest.raises(Transient, match="refusing writes"):
                write()
                pytest.fail(f"{what} was not refused")
    finally:
        raw.config_set("maxmemory", 0)
    assert raw.llen("vigie:audit") == written
    assert store.claim_intake(10) == []
    assert store.get_incident("INC-x").disposition is None  # type: ignore[union-attr]
    assert store.verify_audit() == (True, None)
    store.close()


def test_redis_writers_racing_for_the_audit_chain_each_retry_and_none_is_lost(
    redis_url: str,
) -> None:
    """Every write watches the audit chain's head: writers racing for it lose EXEC and must
    read again and retry (never drop their event or fork the chain)."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    incidents = [
        Incident(
            incident_id=f"INC-{n}",
            alert_ids=[f"a{n}"],
            priority=1,
            title="t",
            first_seen=t0,
            last_seen=t0,
        )
        for n in range(40)
    ]
    RedisStore(redis_url).save_triage(incidents, [], [], [], actor="vigie")

    def writer(k: int) -> None:
        store = RedisStore(redis_url)  # a connection of its own, as each worker has
        for n in range(k, 40, 8):
            store.append_audit(f"w{k}", "note", f"x{n}", {})
            closing = Disposition(verdict="benign", reason="r", actor=f"w{k}", at=t0)
            assert store.dispose(f"INC-{n}", closing)
        store.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    store = RedisStore(redis_url)
    events = store.audit()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == "note" for e in events) == 40
    assert sum(e.kind == "incident.disposed" for e in events) == 40
    assert store.verify_audit() == (True, None)
    assert store.count_incidents(status="closed") == 40
    store.close()


def test_an_sqlite_status_list_walks_an_index_in_priority_order(tmp_path: Path) -> None:
    """A page of closed incidents must not sort a year of them on each read: the store's own
    query, as SQLite plans it."""
    store = SqliteStore(tmp_path / "v.db")
    for status in ("open", "closed"):
        sent: list[str] = []
        store._db.set_trace_callback(sent.append)  # the statements, values bound
        store.list_incidents(status=status, min_priority=10, limit=50)
        store._db.set_trace_callback(None)
        (query,) = [q for q in sent if q.lstrip().upper().startswith("SELECT")]
        plan = " ".join(row[-1] for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "USING INDEX incidents_status_priority" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    store.close()


def queue_for(store: Store, runner: CountingRunner) -> ApprovalQueue:
    return ApprovalQueue(
        store, lambda pid: execute_proposal(store, runner, pid), timedelta(hours=1)
    )


def test_approved_action_runs_exactly_once_even_when_delivered_twice(store: Store) -> None:
    runner = CountingRunner()
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    done = queue_for(store, runner).approve(p.proposal_id, "alice")
    assert done.state is ProposalState.approved
    execute_proposal(store, runner, p.proposal_id)  # a duplicate delivery
    assert runner.calls == [p.proposal_id]
    assert store.get_proposal(p.proposal_id).state is ProposalState.succeeded
    kinds = [e.kind for e in store.audit(p.proposal_id)]
    assert kinds == [
        "proposal.created",
        "proposal.approved",
        "proposal.executing",
        "proposal.succeeded",
    ]


def test_transient_failure_means_outcome_unknown_not_retry(store: Store) -> None:
    runner = CountingRunner(fail=Transient("timed out"))
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    queue_for(store, runner).approve(p.proposal_id, "alice")
    execute_proposal(store, runner, p.proposal_id)
    assert runner.calls == [p.proposal_id]
    assert store.get_proposal(p.proposal_id).state is ProposalState.outcome_unknown


def test_crash_mid_run_is_reaped_to_outcome_unknown(store: Store) -> None:
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    approved = approvals.approve(p, "alice", now, seen_hash=p.args_hash)
    store.transition(p, approved, actor="alice")
    running = approvals.start(approved, now)
    store.transition(approved, running, actor="worker")  # ...and the worker dies here
    assert reap_stale(store, timedelta(minutes=5), now + timedelta(minutes=1)) == []
    assert reap_stale(store, timedelta(minutes=5), now + timedelta(minutes=6)) == [p.proposal_id]
    runner = CountingRunner()
    execute_proposal(store, runner, p.proposal_id)
    assert (
        runner.calls == []
        and store.get_proposal(p.proposal_id).state is ProposalState.outcome_unknown
    )


def test_an_unknown_outcome_is_settled_by_a_person_and_never_run_again(store: Store) -> None:
    """outcome_unknown was the end: the analyst who checked the firewall could record what
    they found nowhere, and the proposal stayed unknown in every list."""
    runner = CountingRunner(fail=Transient("timed out"))
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    queue = queue_for(store, runner)
    with pytest.raises(ApprovalError, match="not outcome_unknown"):
        queue.settle(p.proposal_id, "bob", ran=True, reason="in the firewall")  # pending
    queue.approve(p.proposal_id, "alice")
    execute_proposal(store, runner, p.proposal_id)
    for who, reason, refused in (
        ("vigie", "seen", "system identity"),
        ("bob", "  ", "needs what was found"),
    ):
        with pytest.raises(ApprovalError, match=refused):
            queue.settle(p.proposal_id, who, ran=True, reason=reason)
    settled = queue.settle(p.proposal_id, "bob", ran=True, reason="the block is in the firewall")
    assert settled.state is ProposalState.succeeded
    assert store.get_proposal(p.proposal_id) == settled
    assert settled.result["settled"]["by"] == "bob" and settled.result["settled"]["ran"] is True
    with pytest.raises(ApprovalError, match="not outcome_unknown"):
        queue.settle(p.proposal_id, "carol", ran=False, reason="changed my mind")
    execute_proposal(store, runner, p.proposal_id)  # a late delivery
    assert runner.calls == [p.proposal_id]  # never run again
    events = [(e.actor, e.kind) for e in store.audit(p.proposal_id)]
    assert events[-2:] == [("worker", "proposal.outcome_unknown"), ("bob", "proposal.succeeded")]


def test_an_approved_action_whose_approval_lapsed_never_runs(store: Store) -> None:
    """Approved two hours ago, with an hour's validity, and the workers were down since: the
    delivery that finally comes expires it instead of running it, and so does the sweep."""
    now = datetime.now(UTC)
    then = now - timedelta(hours=2)
    runner = CountingRunner()
    ids = []
    for ip in ("203.0.113.9", "203.0.113.10"):
        args = {"ip": ip, "target": "firewall"}
        made = proposal(
            proposal_id=f"P-{ip}",
            args=args,
            args_hash=args_hash("block_ip", args),
            created_at=then,
            expires_at=then + timedelta(hours=1),
        )
        p = fresh(store, made)
        approved = approvals.approve(p, "alice", then, seen_hash=p.args_hash)
        store.transition(p, approved, actor="alice")
        ids.append(p.proposal_id)
    delivered = execute_proposal(store, runner, ids[0])
    assert not delivered.ran and runner.calls == []
    assert store.get_proposal(ids[0]).state is ProposalState.expired
    assert expire_pending(store, now) == [ids[1]]
    assert store.get_proposal(ids[1]).state is ProposalState.expired


def test_pending_proposals_expire_in_a_sweep(store: Store) -> None:
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(minutes=1)))
    assert expire_pending(store, now) == []
    assert expire_pending(store, now + timedelta(minutes=2)) == [p.proposal_id]
    assert store.get_proposal(p.proposal_id).state is ProposalState.expired


def test_edit_creates_a_new_proposal_needing_fresh_approval(store: Store) -> None:
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    q = queue_for(store, CountingRunner())
    new = q.edit(p.proposal_id, "carol", {"ip": "203.0.113.10", "target": "firewall"})
    assert store.get_proposal(p.proposal_id).state is ProposalState.superseded
    assert (
        new.state is ProposalState.pending
        and new.approvals == []
        and new.supersedes == p.proposal_id
    )
    with pytest.raises(Exception, match="requested"):
        q.approve(new.proposal_id, "carol")
    with pytest.raises(ApprovalError, match="target cannot be edited"):
        q.edit(new.proposal_id, "dave", {"ip": "1.2.3.4", "target": "other"})


def test_an_edit_back_to_earlier_arguments_is_a_new_proposal_and_a_no_op_edit_is_refused(
    store: Store,
) -> None:
    """An edit's proposal id came from the incident, step and arguments alone: editing back to
    the first arguments (A -> B -> A) or to the same ones collided with an existing proposal.
    SQLite failed with an IntegrityError; Redis overwrote the superseded record."""
    now = datetime.now(UTC)
    made = proposal(created_at=now, expires_at=now + timedelta(hours=1))
    pid = proposal_id_for(made.incident_id, made.step, made.args_hash)  # as triage names it
    first = fresh(store, made.model_copy(update={"proposal_id": pid}))
    q = queue_for(store, CountingRunner())
    with pytest.raises(ApprovalError, match="changes no argument"):
        q.edit(first.proposal_id, "carol", dict(first.args))
    assert store.get_proposal(first.proposal_id) == first  # untouched
    other = q.edit(first.proposal_id, "carol", {"ip": "203.0.113.10", "target": "firewall"})
    back = q.edit(other.proposal_id, "dave", dict(first.args))
    assert len({first.proposal_id, other.proposal_id, back.proposal_id}) == 3
    assert back.args_hash == first.args_hash and back.supersedes == other.proposal_id
    states = {p.proposal_id: p.state for p in store.list_proposals()}
    assert states == {
        first.proposal_id: ProposalState.superseded,
        other.proposal_id: ProposalState.superseded,
        back.proposal_id: ProposalState.pending,
    }
    assert store.get_proposal(first.proposal_id).requested_by == first.requested_by


def test_an_edit_is_checked_like_a_decision_and_leaves_a_refused_proposal_alone(
    store: Store,
) -> None:
    """An edit ends a proposal, so only a known approver may make one, and it may only bind
    values an action can take: a network where one address belongs is refused, as is a
    different incident for an incident-bound action."""
    now = datetime.now(UTC)
    p = fresh(store, proposal(created_at=now, expires_at=now + timedelta(hours=1)))
    q = ApprovalQueue(store, lambda pid: None, timedelta(hours=1), roles={"carol": "lead"})
    with pytest.raises(ApprovalError, match="not a known approver"):
        q.edit(p.proposal_id, "mallory", {**p.args, "ip": "198.51.100.7"})
    for bad, why in (("0.0.0.0/0", "one IP address"), ("127.0.0.1", "loopback")):
        with pytest.raises(ApprovalError, match=why):
            q.edit(p.proposal_id, "carol", {**p.args, "ip": bad})
    assert store.get_proposal(p.proposal_id) == p and len(store.list_proposals()) == 1
    assert q.edit(p.proposal_id, "carol", {**p.args, "ip": "198.51.100.7"}).args["ip"] == (
        "198.51.100.7"
    )


def test_intake_records_the_replay_key_with_the_batch(store: Store) -> None:
    docs = [{"id": "a1"}]
    assert store.save_intake("b1", "generic", docs, [], replay_key="webhook:generic:m1")
    assert not store.save_intake("b2", "generic", docs, [], replay_key="webhook:generic:m1")
    assert store.save_intake("b3", "generic", docs, [], replay_key="webhook:generic:m2")
    assert store.save_intake("b4", "generic", docs, [])  # token-authenticated: no key
    assert sorted(b for b, _ in store.claim_intake(10)) == ["b1", "b3", "b4"]  # b2: nothing


def test_rejected_documents_are_read_back_newest_first_a_page_at_a_time(store: Store) -> None:
    """A webhook's or a sweep's rejections had no run summary to show them: the store kept
    them, and nothing read them but the tests."""
    assert store.recent_dead_letters(10) == (0, [])
    before = datetime.now(UTC)
    store.save_intake("b1", "webhook:generic", [], [DeadLetter(source="webhook:generic",
                      line=i, reason=f"r{i}", excerpt="{") for i in (1, 2)])  # fmt: skip
    store.save_triage([], [], [], [DeadLetter(source="f.ndjson", line=i, reason=f"r{i}")
                      for i in (3, 4, 5)], actor="vigie")  # fmt: skip
    total, page = store.recent_dead_letters(2)
    assert total == 5 and [(d.source, d.reason) for d in page] == [
        ("f.ndjson", "r5"),
        ("f.ndjson", "r4"),
    ]
    assert all(d.at is not None and before <= d.at <= datetime.now(UTC) for d in page)
    total, page = store.recent_dead_letters(2, offset=3)
    assert total == 5 and [(d.line, d.excerpt) for d in page] == [(2, "{"), (1, "{")]
    assert store.recent_dead_letters(2, offset=5) == (5, [])
    total, page = store.recent_dead_letters(10, offset=3)  # fewer left than asked for
    assert total == 5 and [d.line for d in page] == [2, 1]


def test_replay_key_expires_after_its_window(store: Store) -> None:
    assert store.save_intake("b1", "generic", [], [], replay_key="k", replay_ttl=0.05)
    time.sleep(0.1)
    assert store.save_intake("b2", "generic", [], [], replay_key="k", replay_ttl=0.05)


def test_open_incidents_come_without_their_alert_ids(store: Store) -> None:
    """What each run reads to find the incident it extends stays small as incidents grow."""
    from agent.baseline import Baseline
    from agent.correlate import Cluster, CorrelationConfig, correlate
    from agent.incidents import build_incident
    from tests.conftest import alert

    alerts = [alert(i, i, "Web shell", "web1", severity="high") for i in range(30)]
    clusters: list[Cluster] = correlate(alerts, CorrelationConfig())
    incidents = [build_incident(c, Baseline()) for c in clusters]
    store.save_triage(incidents, alerts, [], [], actor="v")
    since = datetime(2000, 1, 1, tzinfo=UTC)
    light = store.open_incidents(since)
    assert {i.incident_id for i in light} == {i.incident_id for i in incidents}
    assert all(i.alert_ids == [] and i.hosts == ["web1"] for i in light)
    full = store.get_incident(incidents[0].incident_id)
    assert full is not None and len(full.alert_ids) == len(incidents[0].alert_ids) > 0


def test_rule_history_adds_up_by_day_and_keeps_each_pairs_latest_day(store: Store) -> None:
    from datetime import date

    d1, d2, d3 = date(2026, 3, 1), date(2026, 3, 5), date(2026, 3, 9)

    def save(history: RunHistory) -> None:  # a run's rule history is stored with its results
        store.save_triage([], [], [], [], actor="v", history=history)

    save(RunHistory({(d1, "ssh"): 10, (d2, "ssh"): 5, (d2, "scan"): 1}, {("ssh", "web"): d2}))
    save(RunHistory({(d2, "ssh"): 2, (d3, "dns"): 7}, {("ssh", "web"): d1, ("dns", "fw"): d3}))
    everything = store.rule_history(d1)
    assert everything.counts == {"ssh": 17, "scan": 1, "dns": 7}
    assert everything.pairs == {("ssh", "web"), ("dns", "fw")}
    recent = store.rule_history(d2)
    assert recent.counts == {"ssh": 7, "scan": 1, "dns": 7}
    # an older batch arriving late does not make a pair look older than it is
    assert store.rule_history(date(2026, 3, 4)).pairs == {("ssh", "web"), ("dns", "fw")}
    assert store.rule_history(d3).pairs == {("dns", "fw")}
    assert store.rule_history(date(2026, 4, 1)).counts == {}

    # since when the store has watched, within the days asked for (novelty waits a day): the
    # start of a day counted without times, else that day's earliest alert time, whichever run
    # brought it
    def start(d: date, hours: float = 0) -> float:
        return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() + hours * 3600

    assert (everything.watched_from, recent.watched_from) == (start(d1), start(d2))
    assert store.rule_history(date(2026, 3, 3)).watched_from == start(d2)
    assert store.rule_history(date(2026, 4, 1)).watched_from is None
    d0 = date(2026, 2, 27)
    save(RunHistory({(d0, "ssh"): 1}, {}, first_seen={d0: start(d0, 23)}))
    save(RunHistory({(d0, "ssh"): 1}, {}, first_seen={d0: start(d0, 23.5)}))
    assert store.rule_history(d0).watched_from == start(d0, 23)
    save(RunHistory({(d0, "ssh"): 1}, {}, first_seen={d0: start(d0, 22)}))
    assert store.rule_history(d0).watched_from == start(d0, 22)
    assert store.rule_history(d1).watched_from == start(d1)


def test_a_day_from_a_clock_years_ahead_does_not_age_out_the_rule_history(store: Store) -> None:
    """Redis forgets days past retention counted back from a run's newest day: one alert dated
    a year ahead made it forget every real one, and each rule looked rare and new again."""
    from datetime import timedelta

    today = datetime.now(UTC).date()
    store.save_triage([], [], [], [], actor="v", history=RunHistory({(today, "ssh"): 4}, {}))
    ahead = today + timedelta(days=400)
    store.save_triage([], [], [], [], actor="v", history=RunHistory({(ahead, "scan"): 1}, {}))
    kept = store.rule_history(today - timedelta(days=7))
    assert kept.counts == {"ssh": 4, "scan": 1}
    assert kept.watched_from == datetime.combine(today, datetime.min.time(), UTC).timestamp()


def test_a_runs_rule_history_is_stored_with_its_results_or_not_at_all(tmp_path) -> None:
    from datetime import date

    from agent.models import DeadLetter

    store = SqliteStore(tmp_path / "s.db")
    day = date(2026, 3, 1)
    unstorable = DeadLetter(source="f", line=2**70, reason="x")  # beyond SQLite's integers
    with pytest.raises(OverflowError):
        store.save_triage(
            [],
            [],
            [],
            [unstorable],
            actor="v",
            history=RunHistory({(day, "ssh"): 3}, {("ssh", "web"): day}),
        )
    assert store.rule_history(day).counts == {}  # the failed run left no statistics behind
    store.save_triage([], [], [], [], actor="v", history=RunHistory({(day, "ssh"): 3}, {}))
    assert store.rule_history(day).counts == {"ssh": 3}


def test_rule_history_keeps_recent_windows_pairs_and_their_counts(store: Store) -> None:
    from datetime import date

    day = date(2026, 3, 1)
    t0 = 1_772_323_200  # 2026-03-01T00:00:00Z
    store.save_triage(
        [],
        [],
        [],
        [],
        actor="v",
        history=RunHistory(
            {(day, "ssh"): 3},
            {("ssh", "web"): day},
            {t0: {("ssh", "web"): 2, ("scan", "fw"): 1}, t0 + 900: {("ssh", "web"): 1}},
        ),
    )
    store.save_triage(
        [],
        [],
        [],
        [],
        actor="v",
        history=RunHistory({}, {}, {t0 + 900: {("dns", "fw"): 4, ("ssh", "web"): 5}}),
    )
    assert store.rule_history(day, windows_from=t0).windows == {
        t0: {("ssh", "web"): 2, ("scan", "fw"): 1},
        t0 + 900: {("ssh", "web"): 6, ("dns", "fw"): 4},  # two runs' counts added up
    }
    assert store.rule_history(day, windows_from=t0 + 900).windows == {
        t0 + 900: {("ssh", "web"): 6, ("dns", "fw"): 4}
    }
    assert store.rule_history(day).windows == {}  # only asked for
    three_days_on = t0 + 3 * 86400
    store.save_triage(
        [], [], [], [], actor="v", history=RunHistory({}, {}, {three_days_on: {("x", "y"): 1}})
    )
    assert set(store.rule_history(day, windows_from=0).windows) == {three_days_on}  # kept 2 days


def test_a_store_from_before_window_counts_counts_each_pair_once(tmp_path: Path) -> None:
    from datetime import date

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE rule_windows (start INTEGER NOT NULL, rule_id TEXT NOT NULL, "
        "host TEXT NOT NULL, PRIMARY KEY (start, rule_id, host)) WITHOUT ROWID"
    )
    old.execute("INSERT INTO rule_windows VALUES (900, 'ssh', 'web')")
    old.commit()
    old.close()
    store = SqliteStore(path)
    store.save_triage(
        [], [], [], [], actor="v", history=RunHistory({}, {}, {900: {("ssh", "web"): 2}})
    )
    assert store.rule_history(date(1970, 1, 1), windows_from=0).windows == {
        900: {("ssh", "web"): 3}
    }


def test_a_disposal_closes_once_tunes_its_pairs_and_is_audited(store: Store) -> None:
    """A person's closing is written once (a second one is refused, nothing changed), takes the
    incident out of what runs extend, keeps its alerts, and its tunings lapse when they expire."""
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.dispositions import dispose
    from agent.errors import Conflict
    from agent.incidents import build_incident
    from tests.conftest import alert

    alerts = [alert(1, 0, "New event type", "mail"), alert(2, 1, "ClamAV update", "mail")]
    (incident,) = [build_incident(c, Baseline()) for c in correlate(alerts)]
    store.save_triage([incident], alerts, [], [], actor="vigie")
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    closed = dispose(
        store,
        incident.incident_id,
        "false_positive",
        " learning noise ",
        "alice",
        tune=True,
        tuning_for=timedelta(days=30),
        now=at,
    ).incident
    stored = store.get_incident(incident.incident_id)
    assert stored is not None and stored.status == "closed"
    assert stored.disposition == closed.disposition
    assert stored.alert_ids == incident.alert_ids  # only status and disposition were written
    assert stored.disposition is not None and stored.disposition.reason == "learning noise"
    assert store.open_incidents(datetime(2000, 1, 1, tzinfo=UTC)) == []
    pairs = [(t.rule_id, t.host, t.actor) for t in store.tunings(at)]
    assert pairs == [("clamav-update", "mail", "alice"), ("new-event-type", "mail", "alice")]
    assert store.tunings(at + timedelta(days=30, seconds=1)) == []  # lapsed
    with pytest.raises(Conflict, match="already closed as false_positive by alice"):
        dispose(store, incident.incident_id, "true_positive", "no, real", "bob")
    events = store.audit(incident.incident_id)
    assert [(e.kind, e.actor) for e in events] == [("incident.disposed", "alice")]
    assert events[0].data["tuned"] == [["clamav-update", "mail"], ["new-event-type", "mail"]]
    assert store.verify_audit() == (True, None)
    assert not store.dispose(closed.incident_id, closed.disposition)  # refuses a second one
    assert store.revoke_tuning("new-event-type", "mail", "bob", "the detector is tuned now")
    assert not store.revoke_tuning("new-event-type", "mail", "bob", "again")
    assert [(t.rule_id, t.host) for t in store.tunings(at)] == [("clamav-update", "mail")]
    (revoked,) = store.audit("new-event-type@mail")
    assert (revoked.kind, revoked.actor, revoked.data["reason"]) == (
        "tuning.revoked",
        "bob",
        "the detector is tuned now",
    )
    assert store.verify_audit() == (True, None)


def test_a_run_saving_an_incident_closed_meanwhile_keeps_the_closing(store: Store) -> None:
    """A run read the open incident, a person closed it, then the run saved its extension: the
    alerts join the incident, which stays closed with the person's disposition."""
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.dispositions import dispose
    from agent.incidents import build_incident
    from tests.conftest import alert

    first = [alert(1, 0, "Odd DNS", "srv3")]
    (incident,) = [build_incident(c, Baseline()) for c in correlate(first)]
    store.save_triage([incident], first, [], [], actor="vigie")
    read_by_the_run = store.get_incident(incident.incident_id)
    assert read_by_the_run is not None
    dispose(store, incident.incident_id, "benign", "resolver test", "alice")
    extended = read_by_the_run.model_copy(
        update={"alert_ids": ["a1", "a2"], "last_seen": read_by_the_run.last_seen}
    )
    store.save_triage([extended], [alert(2, 1, "Odd DNS", "srv3")], [], [], actor="vigie")
    stored = store.get_incident(incident.incident_id)
    assert stored is not None and stored.alert_ids == ["a1", "a2"]
    assert stored.status == "closed" and stored.disposition is not None
    assert (stored.disposition.actor, stored.disposition.reason) == ("alice", "resolver test")
    assert store.open_incidents(datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert [i.status for i in store.list_incidents()] == ["closed"]


def test_a_closing_made_in_error_is_undone_and_the_incident_can_be_closed_anew(
    store: Store,
) -> None:
    """Reopened, the incident is open for runs to extend, a later run's save leaves it open,
    and it may be closed again; the trail holds both closings and the reopening."""
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.dispositions import dispose, reopen
    from agent.errors import Conflict
    from agent.incidents import build_incident
    from tests.conftest import alert

    first = [alert(1, 0, "Odd DNS", "srv3")]
    (incident,) = [build_incident(c, Baseline()) for c in correlate(first)]
    store.save_triage([incident], first, [], [], actor="vigie")
    iid = incident.incident_id
    with pytest.raises(Conflict, match="not closed by a person"):
        reopen(store, iid, "nothing to undo", "bob")
    dispose(store, iid, "benign", "looked routine", "alice", tune=True)
    opened = reopen(store, iid, "it was the attacker's resolver", "bob")
    assert opened.status == "open" and opened.disposition is None
    assert [i.incident_id for i in store.open_incidents(datetime(2000, 1, 1, tzinfo=UTC))] == [iid]
    assert len(store.tunings(datetime.now(UTC))) == 1  # ended on its own, not by reopening
    store.save_triage([opened], first, [], [], actor="vigie")  # a later run's save
    assert store.get_incident(iid).status == "open"
    dispose(store, iid, "true_positive", "exfiltration", "bob")
    assert store.get_incident(iid).disposition.verdict == "true_positive"
    trail = [(e.kind, e.actor) for e in store.audit(iid)]
    assert trail == [
        ("incident.disposed", "alice"),
        ("incident.reopened", "bob"),
        ("incident.disposed", "bob"),
    ]
    assert store.audit(iid)[1].data == {"reason": "it was the attacker's resolver", "was": "benign"}
    assert store.verify_audit() == (True, None)


def test_an_incident_a_person_reopened_is_not_closed_by_a_quiet_period(store: Store) -> None:
    """A person reopened it: quiet periods close the others, not this one, even once a run has
    extended it; a person closes it, and the reopening stays on record."""
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.dispositions import dispose, reopen
    from agent.incidents import assemble
    from tests.conftest import alert

    alerts = [alert(1, 0, "Odd DNS", "srv3"), alert(2, 0, "Disk full", "db1")]
    held, other = (assemble(c, Baseline()).incident for c in correlate(alerts))
    store.save_triage([held, other], alerts, [], [], actor="vigie")

    def closed_ids() -> list[str]:
        return [i.incident_id for i in store.list_incidents(status="closed")]

    dispose(store, held.incident_id, "benign", "looked routine", "alice")
    assert closed_ids() == [held.incident_id]
    opened = reopen(store, held.incident_id, "it was the attacker's resolver", "bob")
    assert closed_ids() == [] and store.count_incidents(status="closed") == 0
    assert opened.reopened is not None
    assert (opened.reopened.actor, opened.reopened.was) == ("bob", "benign")
    days_later = held.last_seen + timedelta(days=3)
    assert store.close_quiet(days_later) == 1  # the other one
    assert closed_ids() == [other.incident_id]
    assert store.get_incident(other.incident_id).status == "closed"
    assert store.get_incident(held.incident_id).status == "open"
    more = [alert(3, 30, "Odd DNS", "srv3")]
    (cluster,) = correlate(more)
    extended = assemble(cluster, Baseline(), extends=opened).incident
    assert extended.reopened == opened.reopened  # a run's extension keeps it held
    store.save_triage([extended], more, [], [], actor="vigie")
    assert store.close_quiet(days_later) == 0
    assert [i.incident_id for i in store.open_incidents(datetime(2000, 1, 1, tzinfo=UTC))] == [
        held.incident_id
    ]
    dispose(store, held.incident_id, "true_positive", "exfiltration", "bob")
    closed = store.get_incident(held.incident_id)
    assert closed.status == "closed" and closed.disposition.verdict == "true_positive"
    assert closed.reopened == opened.reopened
    assert sorted(closed_ids()) == sorted([held.incident_id, other.incident_id])


def test_a_redis_quiet_closing_never_writes_over_a_person_s_closing_made_meanwhile(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quiet closing read the open incident; a person closed it (verdict and reason)
    before the closing wrote: it reads again, finds it closed, and leaves it as the person
    left it."""
    from agent.baseline import Baseline
    from agent.correlate import correlate
    from agent.incidents import build_incident
    from tests.conftest import alert

    store, person = RedisStore(redis_url), RedisStore(redis_url)
    alerts = [alert(1, 0, "Odd DNS", "srv3")]
    (incident,) = [build_incident(c, Baseline()) for c in correlate(alerts)]
    store.save_triage([incident], alerts, [], [], actor="vigie")
    closing = Disposition(
        verdict="true_positive", reason="exfiltration", actor="alice", at=datetime.now(UTC)
    )
    read = Incident.model_validate_json
    raced: list[str] = []

    def read_then_a_person_closes(raw: bytes) -> Incident:
        got = read(raw)
        if not raced:  # between the quiet closing's read and its write
            raced.append(got.incident_id)
            assert person.dispose(got.incident_id, closing)
        return got

    monkeypatch.setattr(Incident, "model_validate_json", read_then_a_person_closes)
    assert store.close_quiet(incident.last_seen + timedelta(days=3)) == 0
    monkeypatch.undo()
    assert raced == [incident.incident_id]
    stored = store.get_incident(incident.incident_id)
    assert stored is not None and stored.status == "closed"
    assert stored.disposition == closing


def test_web_sessions_are_kept_until_they_expire_or_end(store: Store) -> None:
    """Every API process reads sessions from the store: one held in a process's memory was
    unknown to the next request, served by another (`vigie serve --workers 2`)."""
    now = datetime.now(UTC)
    data = {"name": "alice", "role": "lead", "csrf": "c", "expires": 1.0}
    store.save_session("k1", data, now + timedelta(hours=1))
    store.save_session("k2", data, now + timedelta(milliseconds=300))
    assert store.get_session("k1", now) == data and store.get_session("k2", now) == data
    assert store.get_session("nobody", now) is None
    time.sleep(0.4)
    assert store.get_session("k2", datetime.now(UTC)) is None  # expired
    store.drop_session("k1")
    assert store.get_session("k1", datetime.now(UTC)) is None  # logged out
