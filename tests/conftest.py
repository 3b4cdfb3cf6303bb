from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.models import Alert
from agent.normalize import normalize

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def ecs(
    i: int | str,
    minutes: float,
    rule: str,
    host: str = "h1",
    *,
    severity: str | None = None,
    tactic: str | None = None,
    technique: str | None = None,
    module: str = "endpoint",
    **extra: Any,
) -> dict[str, Any]:
    """A small generic-ECS alert document for tests."""
    doc: dict[str, Any] = {
        "@timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "event": {"id": f"a{i}", "kind": "alert", "module": module},
        "rule": {"name": rule, "id": rule.lower().replace(" ", "-")},
        "host": {"name": host},
        "message": f"{rule} on {host}",
    }
    if severity:
        doc["rule"]["severity"] = severity
    if tactic or technique:
        doc["threat"] = [
            {"tactic": {"id": tactic}, "technique": [{"id": technique}] if technique else []}
        ]
    doc.update(extra)
    return doc


def wazuh_alert(
    i: int | str,
    minutes: float,
    host: str,
    rule_id: int,
    level: int,
    description: str,
    groups: list[str],
    agent_id: str = "001",
    **data: Any,
) -> dict[str, Any]:
    """A Wazuh alert as its manager writes it, with decoder fields under `data` (agent `000`:
    what the manager decoded itself)."""
    at = T0 + timedelta(minutes=minutes)
    return {
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "rule": {"level": level, "id": str(rule_id), "description": description, "groups": groups},
        "agent": {"id": agent_id, "name": host},
        "data": data,
        "id": f"w{i}",
    }


def vulnerability_scan(hosts: list[str], minutes: float, per_host: int = 3) -> list[dict[str, Any]]:
    """Wazuh's vulnerability detector on these hosts within a minute: CVEs of an installed
    package, critical ones at level 13 (its rule 23506), as a scan after a feed update does."""
    return [
        wazuh_alert(
            f"{host}-cve{k}",
            minutes + n * 0.1 + k * 0.01,
            host,
            23506,
            13,
            f"CVE-2024-{3000 + k} affects openssl",
            ["vulnerability-detector", "pci_dss_11.2.1"],
            vulnerability={
                "cve": f"CVE-2024-{3000 + k}",
                "severity": "Critical",
                "status": "Active",
            },
        )
        for n, host in enumerate(hosts)
        for k in range(per_host)
    ]


def brute_force(i: int | str = 1, minutes: float = 0, host: str = "web") -> dict[str, Any]:
    """An SSH brute force from one outside address: how most test intrusions begin."""
    return ecs(
        i,
        minutes,
        "SSH brute force",
        host,
        severity="high",
        technique="T1110",
        source={"ip": "203.0.113.9"},
    )


def eql_sequence_alerts(group: str | None) -> list[dict[str, Any]]:
    """An Elastic EQL sequence `by user.name` (a logon on one host, two hours later a process
    on another), as Kibana writes it: an alert for each event (a building block, its event's
    time in `original_time`) and the sequence's own alert, written once the sequence closed,
    holding only the fields they share: no host."""
    rule = {
        "kibana.alert.rule.name": "Logon then remote tool by one account",
        "kibana.alert.rule.rule_id": "eql-logon-then-tool",
        "kibana.alert.severity": "high",
        "kibana.alert.risk_score": 73,
    }
    grouped = {"kibana.alert.group.id": group} if group else {}

    def event(uuid: str, at: str, host: str | None, **more: object) -> dict[str, Any]:
        return {
            **rule,
            **grouped,
            "@timestamp": "2026-12-07T12:05:00Z",
            "kibana.alert.uuid": uuid,
            "kibana.alert.original_time": at,
            "user": {"name": "jdoe"},
            **({"host": {"name": host}} if host else {}),
            **more,
        }

    def block(n: int) -> dict[str, Any]:
        return {"kibana.alert.building_block_type": "default", "kibana.alert.group.index": n}

    return [
        event("bb-1", "2026-12-07T10:00:00Z", "ws-07", **block(0)),
        event("bb-2", "2026-12-07T12:00:00Z", "srv-db", **block(1)),
        {**event("shell", "", None), "kibana.alert.original_time": None},
    ]


def alert(*args: Any, **kwargs: Any) -> Alert:
    return normalize(ecs(*args, **kwargs))


def same_alert_as_validated(doc: dict[str, Any]) -> None:
    """The parallel reader builds alerts from the normaliser's fields without validating them
    again: they must already be exactly what the model's validation makes of them."""
    from agent.errors import BadInput
    from agent.normalize import alert_parts
    from agent.parallel_read import Packing, built

    try:
        want = normalize(doc)
    except BadInput:
        return
    packing = Packing()
    spans = [("alerts.ndjson", 0, 10, 1), ("alerts.ndjson", 10, 10, 2)]  # documents left there
    packed = [packing.pack(7 + k, alert_parts(doc), span) for k, span in enumerate(spans)]
    (first, second), _ = built((packing.shared, packed, 2))
    assert first[0] == 7 and second[0] == 8
    assert [first[1].raw_json, second[1].raw_json] == spans
    for _, got in (first, second):  # the second a repeat: the memo's shared part
        assert got.model_copy(update={"raw_json": want.raw_json}) == want
        for name, value in want.__dict__.items():
            if name != "raw_json":
                assert type(got.__dict__[name]) is type(value), name


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not present at {SHARED_DATA}")
    return SHARED_DATA


# --- real servers, started by the tests themselves ---------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a free loopback port, in its own directory."""

    def __init__(self, workdir: Path, appendonly: bool = False, fsync: str = "everysec") -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
        self.port = free_port()
        self.workdir = workdir
        self.args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            fsync,
        ]
        self.start()

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    redis.Redis(port=redis_server.port).flushall()
    return redis_server.url(0)


# Fuzzing: random locally (to find new bugs), a fixed sequence in CI (so a landing is never
# blocked by a new random draw; what local runs find becomes a regression test).
try:
    import os as _os

    from hypothesis import settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, print_blob=True)
    if _os.environ.get("CI"):
        _hsettings.load_profile("ci")
except ImportError:  # hypothesis is a dev dependency
    pass


def process_alert(
    i: str, minutes: float, rule: str, host: str, name: str, pid: str, *ancestors: str
) -> dict[str, Any]:
    """An endpoint alert on one process instance (Elastic Defend's `process.entity_id`), naming
    the instance that started it and, given more, its ancestors (`process.Ext.ancestry`,
    the parent first)."""
    process: dict[str, Any] = {"name": name, "entity_id": pid}
    if ancestors:
        process["parent"] = {"entity_id": ancestors[0]}
    if len(ancestors) > 1:
        process["Ext"] = {"ancestry": list(ancestors)}
    return ecs(i, minutes, rule, host, process=process)


def threshold_alert(
    uuid: str, count: int, start: str, end: str, host: str = "bastion", **more: Any
) -> dict[str, Any]:
    """A threshold rule's alert as Kibana writes it: one for the `count` events of one group of
    values (here an address on a host) that reached the threshold, the group's values as the
    event's fields, the first event's time in `threshold_result.from` and the last's as the
    original time."""
    return {
        "@timestamp": end,
        "kibana.alert.original_time": end,
        "kibana.alert.uuid": uuid,
        "kibana.alert.rule.type": "threshold",
        "kibana.alert.rule.name": "Potential SSH brute force",
        "kibana.alert.rule.rule_id": "ssh-brute-force",
        "kibana.alert.rule.parameters": {
            "threshold": {"field": ["source.ip", "host.name"], "value": 100}
        },
        "kibana.alert.severity": "medium",
        "kibana.alert.risk_score": 47,
        "source.ip": "203.0.113.7",
        "host.name": host,
        "kibana.alert.threshold_result": {
            "terms": [
                {"field": "source.ip", "value": "203.0.113.7"},
                {"field": "host.name", "value": host},
            ],
            "count": count,
            "from": start,
        },
        **more,
    }


def ml_alert(uuid: str, at: str, host: str = "bastion") -> dict[str, Any]:
    """A machine learning rule's alert as Kibana writes it: the job's anomaly record, its
    influencers set as ECS fields (each a list of values), and no module or agent."""
    return {
        "@timestamp": at,
        "kibana.alert.original_time": at,
        "kibana.alert.uuid": uuid,
        "kibana.alert.rule.type": "machine_learning",
        "kibana.alert.rule.name": "Unusual Login Activity",
        "kibana.alert.rule.rule_id": "ml-unusual-login",
        "kibana.alert.severity": "low",
        "kibana.alert.risk_score": 21,
        "job_id": "auth_high_count_logon_fails",
        "result_type": "record",
        "record_score": 88.4,
        "function": "high_non_zero_count",
        "influencers": [
            {"influencer_field_name": "host.name", "influencer_field_values": [host]},
            {"influencer_field_name": "source.ip", "influencer_field_values": ["203.0.113.7"]},
        ],
        "host": {"name": [host]},
        "source": {"ip": ["203.0.113.7"]},
    }


def suppressed_alerts() -> list[dict[str, Any]]:
    """Elastic's alert suppression on one rule `by host.name`, as Kibana writes it: an alert
    for the first match in each window, counting the matches it folded in
    (`kibana.alert.suppression.docs_count`, the first and last in `start` and `end`), and
    the same rule's alert on that host before suppression was turned on."""
    rule = {
        "kibana.alert.rule.name": "LSASS memory read by unsigned process",
        "kibana.alert.rule.rule_id": "lsass-read",
        "kibana.alert.severity": "high",
        "kibana.alert.risk_score": 73,
        "host": {"name": "ws-07"},
    }

    def folding(uuid: str, start: str, end: str, count: int) -> dict[str, Any]:
        return {
            **rule,
            "@timestamp": start,
            "kibana.alert.uuid": uuid,
            "kibana.alert.original_time": start,
            "kibana.alert.suppression.terms": [{"field": "host.name", "value": ["ws-07"]}],
            "kibana.alert.suppression.docs_count": count,
            "kibana.alert.suppression.start": start,
            "kibana.alert.suppression.end": end,
        }

    return [
        {**rule, "@timestamp": "2026-12-07T09:50:00Z", "kibana.alert.uuid": "plain"},
        folding("window-1", "2026-12-07T10:00:00Z", "2026-12-07T10:40:00Z", 57),
        folding("window-2", "2026-12-07T11:00:00Z", "2026-12-07T11:20:00Z", 3),
    ]
