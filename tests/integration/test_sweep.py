"""Sweeps against a real search server (osmem-server, OpenSearch-compatible, started by the
pytest plugin), through the official elasticsearch client and through opensearch-py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.analyst import OfflineAnalyst
from agent.errors import BadInput, NotFound, RateLimited, Transient
from agent.graph import TriageContext
from agent.store.sqlite import SqliteStore
from agent.sweep import SweepConfig, sweep
from connectors.elasticsearch import (
    INCIDENT_MAPPINGS,
    ElasticsearchBackend,
    Hit,
    OpenSearchBackend,
    bulk_failure,
)
from tests.conftest import free_port
from tests.fakes.es_compat import OsmemNode

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
INDEX = ".alerts-security.alerts-default"
ALERT_MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "kibana.alert.uuid": {"type": "keyword"},
        "kibana.alert.workflow_status": {"type": "keyword"},
        "kibana.alert.workflow_tags": {"type": "keyword"},
    }
}


def elastic_alert(i: int, minutes: float, host: str, rule: str, status: str = "open") -> dict:
    return {
        "@timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "kibana.alert.uuid": f"u{i:06d}",
        "kibana.alert.rule.name": rule,
        "kibana.alert.rule.rule_id": rule.lower().replace(" ", "-"),
        "kibana.alert.severity": "medium",
        "kibana.alert.risk_score": 47,
        "kibana.alert.workflow_status": status,
        "host": {"name": host},
    }


def seed(es: ElasticsearchBackend, docs: list[dict], index: str = INDEX) -> None:
    es.client.indices.create(index=index, mappings=ALERT_MAPPINGS)
    ops: list[dict[str, Any]] = []
    for d in docs:
        ops += [{"index": {"_index": index, "_id": d.get("kibana.alert.uuid") or d["id"]}}, d]
    for i in range(0, len(ops), 2000):
        es.bulk(ops[i : i + 2000])
    es.client.indices.refresh(index=index)


def scenario(n: int) -> list[dict]:
    """n alerts over a day on 40 hosts, plus closed ones the sweep must not read."""
    docs = [elastic_alert(i, i * 1440 / n, f"host{i % 40}", f"Rule {i % 7}") for i in range(n)]
    docs += [elastic_alert(n + i, i, "hostX", "Closed rule", status="closed") for i in range(10)]
    return docs


@pytest.fixture(params=[True, False], ids=["point-in-time", "search-after-only"])
def es(osmem_url: str, request: pytest.FixtureRequest) -> Iterator[ElasticsearchBackend]:
    """Every sweep test runs both ways: from a point in time, and with search_after alone."""
    backend = ElasticsearchBackend(
        osmem_url, node_class=OsmemNode, retries=0, point_in_time=request.param
    )
    yield backend
    backend.close()


def open_pits(es: ElasticsearchBackend) -> int:
    """Points in time the server holds (OpenSearch's list endpoint, which osmem serves)."""
    res = es.client.transport.perform_request("GET", "/_search/point_in_time/_all")
    return len(res.body.get("pits", []))


@pytest.fixture
def ctx(tmp_path: Path) -> TriageContext:
    return TriageContext(
        store=SqliteStore(tmp_path / "v.db"), analyst=OfflineAnalyst(), playbooks=[]
    )


def placed(store: SqliteStore) -> list[str]:
    return sorted(a for inc in store.list_incidents(limit=100_000) for a in inc.alert_ids)


def test_a_pattern_no_index_matches_yet_is_an_empty_sweep_and_a_missing_index_an_error(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """On a new cluster the alerts pattern matches no index yet. A point in time on it is
    refused (400), and every sweep stopped with that error; a plain search finds nothing, so
    there is nothing to read. A named index that does not exist is still an error."""
    cfg = SweepConfig(alerts_index=".alerts-security.alerts-*")
    r = sweep(es, ctx.store, ctx, cfg)
    assert (r.pages, r.alerts_read, r.checkpoint) == (0, 0, None)
    with pytest.raises(NotFound):
        sweep(es, ctx.store, ctx, SweepConfig(alerts_index="no-such-index"))


def test_sweep_pages_through_everything_and_writes_back(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    docs = scenario(1200)
    seed(es, docs)
    cfg = SweepConfig(page_size=100)
    held: list[int] = []
    r = sweep(es, ctx.store, ctx, cfg, progress=lambda _: held.append(open_pits(es)))
    assert (r.pages, r.alerts_read, r.alerts_new) == (12, 1200, 1200)
    assert held == [1 if es.point_in_time else 0] * 12 and open_pits(es) == 0
    assert placed(ctx.store) == sorted(d["kibana.alert.uuid"] for d in docs[:1200])
    assert ctx.store.get_checkpoint(cfg.checkpoint_name) == r.checkpoint
    got = es.client.get(index=INDEX, id="u000005")["_source"]
    inc_id = ctx.store.incident_of_alerts(["u000005"])["u000005"]
    assert got["kibana.alert.workflow_status"] == "acknowledged"
    assert got["kibana.alert.workflow_tags"] == [f"vigie:{inc_id}"]
    closed = es.client.get(index=INDEX, id="u001201")["_source"]
    assert (
        closed["kibana.alert.workflow_status"] == "closed"
        and "kibana.alert.workflow_tags" not in closed
    )
    inc_doc = es.client.get(index="vigie-incidents", id=inc_id)["_source"]
    assert inc_doc["incident_id"] == inc_id and "u000005" in inc_doc["alert_ids"]
    assert inc_doc["priority"] == ctx.store.get_incident(inc_id).priority
    es.client.indices.refresh(index="vigie-audit")
    audit = es.client.search(index="vigie-audit", size=0)["hits"]["total"]["value"]
    assert audit == len(ctx.store.audit()) > 0
    again = sweep(es, ctx.store, ctx, cfg)  # nothing new: nothing read, nothing duplicated
    assert (again.alerts_read, again.alerts_new) == (0, 0)


def index_now(es: ElasticsearchBackend, *docs: dict) -> None:
    for d in docs:
        es.bulk([{"index": {"_index": INDEX, "_id": d["kibana.alert.uuid"]}}, d])
    es.client.indices.refresh(index=INDEX)


def test_an_alert_indexed_late_is_still_read(es: ElasticsearchBackend, ctx: TriageContext) -> None:
    """A sweep resumed after the last alert it read, in `@timestamp` order: one indexed later
    with an earlier time (an agent back online, a slow pipeline) was never read. Each sweep
    now reads again from `lookback_seconds` before; what it read before is known by id."""
    seed(es, scenario(200))  # the newest open alert at 23:52:48
    cfg = SweepConfig(page_size=100)
    assert sweep(es, ctx.store, ctx, cfg).alerts_new == 200
    index_now(es, elastic_alert(900, 1430, "host3", "Rule 3"))  # 23:50, indexed now
    r = sweep(es, ctx.store, ctx, cfg)
    assert (r.alerts_read, r.alerts_new) == (1, 1) and "u000900" in placed(ctx.store)
    index_now(es, elastic_alert(901, 1372, "host3", "Rule 3"))  # an hour late
    assert sweep(es, ctx.store, ctx, cfg).alerts_new == 0  # past the lookback
    wider = SweepConfig(page_size=100, lookback_seconds=2 * 3600)
    assert sweep(es, ctx.store, ctx, wider).alerts_new == 1


def test_an_alert_dated_a_year_ahead_does_not_hide_the_ones_after_it(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """The checkpoint was the last alert's time: one from a sensor whose clock ran a year
    ahead put it there, and no alert of the year between would have been read."""
    now = datetime.now(UTC)
    ahead = {
        **elastic_alert(1, 0, "printer", "Odd"),
        "@timestamp": (now + timedelta(days=365)).isoformat(),
    }
    seed(es, [ahead])
    cfg = SweepConfig(page_size=100, only_open=False)  # the one ahead is read again, and known
    assert sweep(es, ctx.store, ctx, cfg).alerts_new == 1
    index_now(es, {**elastic_alert(2, 0, "web", "Web shell"), "@timestamp": now.isoformat()})
    counted = CrashAfter(es, 0)  # counts the write-backs, dies at none
    r = sweep(counted, ctx.store, ctx, cfg)  # type: ignore[arg-type]
    assert (r.alerts_read, r.alerts_new) == (2, 1) and placed(ctx.store) == ["u000001", "u000002"]
    assert counted.updated == ["u000002"]  # the one read again already says where it went


class CrashAfter:
    """Wraps a backend; the write-back of page `n` dies as if the process were killed."""

    def __init__(self, inner: ElasticsearchBackend, n: int) -> None:
        self.inner, self.n, self.bulks = inner, n, 0
        self.updated: list[str] = []

    def pages(self, *args: Any) -> Iterator[list[Hit]]:
        return self.inner.pages(*args)

    def ensure_template(self, *args: Any) -> None:
        self.inner.ensure_template(*args)

    def bulk(self, ops: list[dict[str, Any]]) -> None:
        self.updated += [op["update"]["_id"] for op in ops if "update" in op]
        if any("update" in op for op in ops):
            self.bulks += 1
            if self.bulks == self.n:
                raise Transient("killed mid-sweep")
        self.inner.bulk(ops)


def test_crash_mid_sweep_resumes_without_loss_or_duplicates(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    docs = scenario(500)
    seed(es, docs)
    cfg = SweepConfig(page_size=100)
    with pytest.raises(Transient):
        sweep(CrashAfter(es, 3), ctx.store, ctx, cfg)  # type: ignore[arg-type]
    checkpoint = ctx.store.get_checkpoint(cfg.checkpoint_name)
    assert checkpoint is not None and checkpoint[1] == "u000199"  # after page 2, not page 3
    r = sweep(es, ctx.store, ctx, cfg)
    assert r.alerts_read == 300  # page 3 again, then 4 and 5
    assert r.alerts_new == 200  # page 3's alerts were stored before the crash
    assert placed(ctx.store) == sorted(d["kibana.alert.uuid"] for d in docs[:500])
    page3 = es.client.get(index=INDEX, id="u000250")["_source"]
    assert page3["kibana.alert.workflow_status"] == "acknowledged"  # written back on resume
    ctx.store.set_checkpoint(cfg.checkpoint_name, None)  # even a full re-sweep...
    sweep(es, ctx.store, ctx, SweepConfig(page_size=100, only_open=False))
    assert placed(ctx.store) == sorted(d["kibana.alert.uuid"] for d in docs)  # ...adds only new


def test_server_down_is_a_typed_error_and_keeps_the_checkpoint(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    seed(es, scenario(200))
    cfg = SweepConfig(page_size=100)
    dead = ElasticsearchBackend(
        f"http://127.0.0.1:{free_port()}", node_class=OsmemNode, retries=0, timeout=2
    )
    with pytest.raises(Transient):
        sweep(dead, ctx.store, ctx, cfg)
    assert ctx.store.get_checkpoint(cfg.checkpoint_name) is None
    assert sweep(es, ctx.store, ctx, cfg).alerts_new == 200  # and then it resumes


@pytest.mark.parametrize("point_in_time", [True, False])
def test_wazuh_indices_through_the_opensearch_backend(
    osmem_url: str, ctx: TriageContext, point_in_time: bool
) -> None:
    index = "wazuh-alerts-4.x-2026.01.05"
    wazuh = [
        {
            "timestamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "@timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "id": f"1736067600.{i:05d}",
            "rule": {"level": 10, "description": "sshd: brute force", "id": "5712"},
            "agent": {"id": "001", "name": "web"},
            "data": {"srcip": "203.0.113.9"},
        }
        for i in range(150)
    ]
    os_backend = OpenSearchBackend(osmem_url, point_in_time=point_in_time)
    os_backend.client.indices.create(
        index=index,
        body={
            "mappings": {"properties": {"@timestamp": {"type": "date"}, "id": {"type": "keyword"}}}
        },
    )
    ops: list[dict[str, Any]] = []
    for d in wazuh:
        ops += [{"index": {"_index": index, "_id": d["id"]}}, d]
    os_backend.bulk(ops)
    os_backend.client.indices.refresh(index=index)
    cfg = SweepConfig(
        alerts_index="wazuh-alerts-*",
        tiebreaker="id",
        page_size=40,
        only_open=False,
        kibana_writeback=False,
    )
    r = sweep(os_backend, ctx.store, ctx, cfg)
    assert (r.pages, r.alerts_new) == (4, 150)
    assert placed(ctx.store) == sorted(d["id"] for d in wazuh)
    doc = os_backend.client.get(index=index, id=wazuh[0]["id"])["_source"]
    assert doc["vigie"]["incident_id"].startswith("INC-")
    os_backend.close()


def test_incidents_left_unmirrored_by_a_crash_are_mirrored_by_the_next_sweep(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    seed(es, scenario(500))
    cfg = SweepConfig(page_size=100, incident_flush_pages=100)  # no flush before the end
    with pytest.raises(Transient):
        sweep(CrashAfter(es, 3), ctx.store, ctx, cfg)  # type: ignore[arg-type]
    waiting = ctx.store.get_checkpoint(cfg.pending_name)
    stored = {i.incident_id for i in ctx.store.list_incidents(limit=1000)}
    assert waiting and set(waiting) <= stored  # pages 1-3 touched them; none mirrored yet
    assert not es.client.indices.exists(index="vigie-incidents")  # nothing mirrored yet
    sweep(es, ctx.store, ctx, cfg)
    es.client.indices.refresh(index="vigie-incidents")
    mirrored = es.client.search(index="vigie-incidents", size=1000)["hits"]["hits"]
    stored = {i.incident_id for i in ctx.store.list_incidents(limit=1000)}
    assert {h["_id"] for h in mirrored} == stored  # every incident, in its final state
    for h in mirrored:
        inc = ctx.store.get_incident(h["_id"])
        assert h["_source"]["alert_count"] == len(inc.alert_ids)
    assert ctx.store.get_checkpoint(cfg.pending_name) == []


def test_poisoned_alerts_in_the_index_become_dead_letters_and_the_sweep_goes_on(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """An alert dated the year 1, or holding a lone surrogate (the client's stdlib parser
    decodes "\\ud800"), failed every sweep at its page: the checkpoint never moved again."""
    docs = scenario(30)[:30]
    docs[4]["kibana.alert.rule.name"] = "lone \ud800 rule"
    docs[9]["@timestamp"] = "0001-01-01T00:00:00Z"
    seed(es, docs)
    cfg = SweepConfig(page_size=10)
    r = sweep(es, ctx.store, ctx, cfg)
    assert (r.alerts_read, r.dead_letters) == (30, 2)
    assert placed(ctx.store) == sorted(
        d["kibana.alert.uuid"] for i, d in enumerate(docs) if i not in (4, 9)
    )
    assert sorted(d.reason.split(":")[0] for d in ctx.store.dead_letters()) == [
        "@timestamp out of range",
        "invalid Unicode",
    ]
    assert ctx.store.get_checkpoint(cfg.checkpoint_name) == r.checkpoint


def test_a_rejected_alert_read_again_within_the_lookback_is_not_rejected_twice(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """Each sweep reads the last `lookback_seconds` again; an alert it rejected stays open,
    so it came back in each, and was listed once more each time."""
    docs = scenario(30)[:30]
    docs[29]["kibana.alert.rule.name"] = "lone \ud800 rule"  # the newest: read again
    seed(es, docs)
    cfg = SweepConfig(page_size=10)
    assert sweep(es, ctx.store, ctx, cfg).dead_letters == 1
    late = elastic_alert(900, 1390, "host3", "Rule 3")  # 2 min before the newest, indexed late
    index_now(es, late)
    again = sweep(es, ctx.store, ctx, cfg)
    assert (again.alerts_read, again.alerts_new, again.dead_letters) == (2, 1, 0)
    assert len(ctx.store.dead_letters()) == 1


def test_an_alert_triage_fails_on_does_not_stop_every_sweep_at_its_page(
    es: ElasticsearchBackend, tmp_path: Path
) -> None:
    """A bug one alert meets failed its page in every sweep: the checkpoint never moved again.
    The alert is now a dead letter holding it whole, and the sweep goes on."""
    from tests.fakes.poisoned_analyst import PoisonedAnalyst

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=PoisonedAnalyst("u000003"), playbooks=[])  # type: ignore[arg-type]
    docs = scenario(10)[:10]
    seed(es, docs)
    r = sweep(es, store, ctx, SweepConfig(page_size=5))
    assert (r.pages, r.alerts_read, r.dead_letters) == (2, 10, 1)
    assert placed(store) == sorted(d["kibana.alert.uuid"] for i, d in enumerate(docs) if i != 3)
    (dead,) = store.dead_letters()
    assert "KeyError" in dead.reason and '"u000003"' in dead.excerpt
    assert store.get_checkpoint(SweepConfig().checkpoint_name) == r.checkpoint
    # A failure every alert meets is no alert's: a typed error, the checkpoint left where it was
    # (`vigie sweep` says so and sweeps again; it ended in a traceback for an untyped one).
    from agent.errors import SystemicFailure, VigieError

    index_now(es, *(elastic_alert(50 + i, 1430 + i, "host9", "Odd") for i in range(3)))
    broken = TriageContext(store=store, analyst=PoisonedAnalyst(None), playbooks=[])  # type: ignore[arg-type]
    with pytest.raises(SystemicFailure) as failed:
        sweep(es, store, broken, SweepConfig(page_size=5))
    assert isinstance(failed.value, VigieError)
    assert store.get_checkpoint(SweepConfig().checkpoint_name) == r.checkpoint


def test_a_person_s_closing_reaches_the_incidents_index_in_the_next_sweep(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """No alert needs to come: the sweep mirrors the incidents people closed or reopened since
    the audit events it last mirrored, with the verdict Kibana filters on."""
    from agent.dispositions import dispose, reopen

    seed(es, scenario(200))
    cfg = SweepConfig(page_size=100)
    sweep(es, ctx.store, ctx, cfg)
    target = ctx.store.list_incidents(limit=1)[0].incident_id

    def mirrored() -> dict:
        es.client.indices.refresh(index="vigie-incidents")
        return es.client.get(index="vigie-incidents", id=target)["_source"]

    assert mirrored()["status"] == "open" and mirrored()["disposition"] is None
    dispose(ctx.store, target, "false_positive", "backup job", "alice")
    assert sweep(es, ctx.store, ctx, cfg).alerts_read == 0
    doc = mirrored()
    assert doc["status"] == "closed"
    assert (doc["disposition"]["verdict"], doc["disposition"]["actor"]) == (
        "false_positive",
        "alice",
    )
    hits = es.client.search(
        index="vigie-incidents", query={"term": {"disposition.verdict": "false_positive"}}
    )["hits"]["hits"]
    assert [h["_id"] for h in hits] == [target]
    reopen(ctx.store, target, "it was not", "bob")
    sweep(es, ctx.store, ctx, cfg)
    assert mirrored()["status"] == "open" and mirrored()["disposition"] is None
    assert ctx.store.get_checkpoint(cfg.pending_name) == []


def test_repeats_elastic_folds_into_an_alert_after_a_sweep_read_it_reach_its_incident(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """Kibana writes one alert for a suppressed rule's matches and counts later ones in it, in
    place (`docs_count`, `suppression.end`, `last_detected`; `@timestamp` stays). A sweep read
    it once, by `@timestamp`: its incident counted the 2 repeats of that moment, never the 58
    after, and was last seen an hour early. The next sweep reads the later count, whatever
    the alert's workflow status (the first sweep acknowledged it)."""
    from agent.prioritise import volume_factor

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    folding = elastic_alert(1, 0, "ws-07", "Repeated logon failure")
    folding |= {
        "@timestamp": at.isoformat(),
        "kibana.alert.suppression.docs_count": 2,
        "kibana.alert.suppression.start": at.isoformat(),
        "kibana.alert.suppression.end": (at + timedelta(minutes=5)).isoformat(),
        "kibana.alert.last_detected": (at + timedelta(minutes=5)).isoformat(),
    }
    mappings = {
        "properties": {
            **ALERT_MAPPINGS["properties"],
            "kibana.alert.last_detected": {"type": "date"},
            "kibana.alert.suppression.docs_count": {"type": "long"},
        }
    }
    es.client.indices.create(index=INDEX, mappings=mappings)
    index_now(es, folding, elastic_alert(2, 0, "ws-08", "Other rule"))  # one folds none
    cfg = SweepConfig(page_size=100)
    first = sweep(es, ctx.store, ctx, cfg)
    assert (first.alerts_new, first.incidents_refolded) == (2, 0)
    inc_id = ctx.store.incident_of_alerts(["u000001"])["u000001"]
    before = ctx.store.get_incident(inc_id)
    assert before is not None and before.folding == {"u000001": 2}
    assert [g.suppressed for g in before.groups] == [2]
    end = at + timedelta(hours=1)
    later = {  # Kibana folds 58 more into the acknowledged alert
        "kibana.alert.suppression.docs_count": 60,
        "kibana.alert.suppression.end": end.isoformat(),
        "kibana.alert.last_detected": datetime.now(UTC).isoformat(),
    }
    es.client.update(index=INDEX, id="u000001", doc=later, refresh=True)
    unread = sweep(es, ctx.store, ctx, SweepConfig(page_size=100, refold=False))
    assert unread.alerts_read == 0  # acknowledged, and read again by @timestamp only
    assert ctx.store.get_incident(inc_id) == before
    second = sweep(es, ctx.store, ctx, cfg)
    assert (second.alerts_read, second.alerts_new, second.incidents_refolded) == (0, 0, 1)
    after = ctx.store.get_incident(inc_id)
    assert after is not None and after.folding == {"u000001": 60}
    (group,) = after.groups
    assert (group.suppressed, group.last_seen, after.last_seen) == (60, end, end)
    factors = {f.name: f for f in after.explanation.priority_factors}
    assert factors["volume"] == volume_factor(1, 60)
    assert (
        factors["volume"].points
        > {f.name: f for f in before.explanation.priority_factors}["volume"].points
    )
    assert after.priority == round(sum(f.points for f in factors.values()), 2)
    es.client.indices.refresh(index="vigie-incidents")
    mirrored = es.client.get(index="vigie-incidents", id=inc_id)["_source"]
    assert (mirrored["last_seen"], mirrored["priority"]) == (end.isoformat(), after.priority)
    assert sweep(es, ctx.store, ctx, cfg).incidents_refolded == 0  # the same count: nothing


def backend_of(kind: str, url: str) -> ElasticsearchBackend | OpenSearchBackend:
    if kind == "elasticsearch":
        return ElasticsearchBackend(url, node_class=OsmemNode, retries=0)
    return OpenSearchBackend(url, retries=0)


def create_index(
    backend: ElasticsearchBackend | OpenSearchBackend, name: str, mappings: dict
) -> None:
    if isinstance(backend, ElasticsearchBackend):
        backend.client.indices.create(index=name, mappings=mappings)
    else:
        backend.client.indices.create(index=name, body={"mappings": mappings})


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
def test_an_incidents_index_made_by_an_earlier_version_gains_the_fields_it_lacks(
    osmem_url: str, ctx: TriageContext, kind: str
) -> None:
    """An index created before incidents carried a disposition is not rebuilt: the sweep adds
    the mapping, so Kibana can filter on the verdict."""
    from agent.dispositions import dispose

    backend = backend_of(kind, osmem_url)
    older = {k: v for k, v in INCIDENT_MAPPINGS["properties"].items() if k != "disposition"}
    create_index(backend, "vigie-incidents", {"dynamic": False, "properties": older})
    create_index(backend, INDEX, ALERT_MAPPINGS)
    ops: list[dict[str, Any]] = []
    for d in scenario(50):
        ops += [{"index": {"_index": INDEX, "_id": d["kibana.alert.uuid"]}}, d]
    backend.bulk(ops)
    backend.client.indices.refresh(index=INDEX)
    cfg = SweepConfig(page_size=100, kibana_writeback=False)
    sweep(backend, ctx.store, ctx, cfg)
    target = ctx.store.list_incidents(limit=1)[0].incident_id
    dispose(ctx.store, target, "benign", "the nightly backup", "alice")
    sweep(backend, ctx.store, ctx, cfg)
    backend.client.indices.refresh(index="vigie-incidents")
    query = {"query": {"term": {"disposition.verdict": "benign"}}}
    if isinstance(backend, ElasticsearchBackend):
        hits = backend.client.search(index="vigie-incidents", **query)["hits"]["hits"]
    else:
        hits = backend.client.search(index="vigie-incidents", body=query)["hits"]["hits"]
    assert [h["_id"] for h in hits] == [target]
    backend.close()


def test_an_index_mapping_a_field_otherwise_keeps_it_and_the_sweep_goes_on(
    es: ElasticsearchBackend, ctx: TriageContext, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's own mapping of a field is theirs: the sweep warns and still mirrors."""
    mine = {**INCIDENT_MAPPINGS["properties"], "priority": {"type": "keyword"}}
    es.client.indices.create(
        index="vigie-incidents", mappings={"dynamic": False, "properties": mine}
    )
    seed(es, scenario(50))
    with caplog.at_level("WARNING", logger="connectors.elasticsearch"):
        result = sweep(es, ctx.store, ctx, SweepConfig(page_size=100))
    assert result.alerts_new == 50
    assert any("keep their mapping" in r.getMessage() for r in caplog.records)
    es.client.indices.refresh(index="vigie-incidents")
    mapped = es.client.indices.get_mapping(index="vigie-incidents")["vigie-incidents"]
    assert mapped["mappings"]["properties"]["priority"] == {"type": "keyword"}
    assert es.client.count(index="vigie-incidents")["count"] == len(ctx.store.list_incidents())


def test_a_bulk_item_refused_for_its_content_is_bad_input_and_one_refused_for_load_is_not(
    osmem_url: str,
) -> None:
    """A mapping conflict fails again on every try (BadInput: an operator must look); a busy
    cluster's rejected items (429) or a shard's failure (5xx) go through on a later sweep."""
    backend = backend_of("elasticsearch", osmem_url)
    backend.client.indices.create(index="typed", mappings={"properties": {"n": {"type": "long"}}})
    with pytest.raises(BadInput, match="1 operation"):
        backend.bulk([{"index": {"_index": "typed", "_id": "x"}}, {"n": "not a number"}])
    # What Elasticsearch answers for items a full write queue rejected (bulk API reference).
    rejected = {
        "status": 429,
        "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"},
    }
    shard = {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "x"}}
    conflict = {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "x"}}
    assert isinstance(bulk_failure([rejected, rejected]), RateLimited)
    assert type(bulk_failure([rejected, shard])) is Transient
    assert isinstance(bulk_failure([rejected, conflict]), BadInput)


def test_alerts_in_an_index_that_keeps_no_source_are_dead_letters_with_the_reason(
    es: ElasticsearchBackend, ctx: TriageContext
) -> None:
    """An index mapped with `"_source": {"enabled": false}` answers hits without `_source`.
    Each failed the sweep with a KeyError at its page, so the checkpoint never moved; each
    is now a dead letter saying so, the alerts of the other index are triaged, and the
    source-less hits are left open (nothing written back to them)."""
    seed(es, scenario(20)[:20])
    es.client.indices.create(
        index=INDEX + "-nosource", mappings={"_source": {"enabled": False}, **ALERT_MAPPINGS}
    )
    es.bulk(
        [
            op
            for i in range(3)
            for op in (
                {"index": {"_index": INDEX + "-nosource", "_id": f"n{i}"}},
                elastic_alert(100 + i, 3 + i, "hostN", "Rule N"),
            )
        ]
    )
    es.client.indices.refresh(index=INDEX + "-nosource")
    cfg = SweepConfig(alerts_index=INDEX + "*", page_size=7)
    r = sweep(es, ctx.store, ctx, cfg)
    assert (r.alerts_read, r.dead_letters) == (23, 3)
    assert placed(ctx.store) == sorted(f"u{i:06d}" for i in range(20))
    reasons = {d.reason for d in ctx.store.dead_letters()}
    assert len(reasons) == 1 and reasons.pop().startswith("a search hit without its _source")
    assert ctx.store.get_checkpoint(cfg.checkpoint_name) == r.checkpoint
    left = es.client.search(index=INDEX + "-nosource", query={"match_all": {}}, source=False)
    assert len(left["hits"]["hits"]) == 3


def test_where_a_sweep_resumes() -> None:
    """After the checkpoint; from `lookback` before it; from no later than now; a `date_nanos`
    sort value counted in nanoseconds; a sort value that is no date's (a keyword, a number
    field's seconds) as it is."""
    from agent.sweep import _resume

    now = 1_800_000_000_000.0
    assert _resume(None, 300, now) == (None, None)
    assert _resume([1_700_000_000_000, "u1"], 0, now) == ([1_700_000_000_000, "u1"], None)
    assert _resume([1_700_000_000_000, "u1"], 300, now) == (None, 1_700_000_000_000 - 300_000)
    assert _resume([1_900_000_000_000, "u1"], 0, now) == (None, now)  # a year ahead
    assert _resume([1_700_000_000_000_000_000, "u1"], 60, now) == (None, 1_700_000_000_000 - 60_000)
    assert _resume(["2026-01-05", "u1"], 300, now) == (["2026-01-05", "u1"], None)
    assert _resume([1_700_000_000, "u1"], 300, now) == ([1_700_000_000, "u1"], None)  # seconds
