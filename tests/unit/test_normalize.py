from __future__ import annotations

import json
import re
import tracemalloc

import hypothesis
import pytest
from hypothesis import strategies as st

from agent.models import DeadLetter, Severity, raw_json
from agent.normalize import BY_VALUES_MAX_KEY, ECS_ENTITIES, NormalizeError, normalize, rejected
from connectors.files import read_documents
from tests.conftest import ecs, wazuh_alert


def elastic_doc(**over: object) -> dict:
    doc = {
        "@timestamp": "2024-06-09T13:56:03.205Z",
        "kibana.alert.original_time": "2024-06-09T13:55:00.000Z",
        "kibana.alert.uuid": "uuid-1",
        "kibana.alert.rule.name": "Empire Stager Execution",
        "kibana.alert.rule.rule_id": "rule-1",
        "kibana.alert.rule.severity": "medium",
        "kibana.alert.rule.risk_score": 47,
        "kibana.alert.severity": "high",
        "kibana.alert.risk_score": 73,
        "kibana.alert.rule.threat": [],
        "threat": [
            {
                "tactic": {"id": "TA0002", "name": "Execution"},
                "technique": [{"id": "T1059", "subtechnique": [{"id": "T1059.004"}]}],
            }
        ],
        "host": {"name": "web-01", "ip": ["127.0.0.1", "::1", "89.160.20.156"]},
        "user": {"name": "admin"},
        "process": {"name": "python3", "executable": "/usr/bin/python3"},
        "event.module": "endpoint",
    }
    doc.update(over)
    return doc


def test_elastic_uses_effective_severity_and_original_time() -> None:
    a = normalize(elastic_doc())
    assert a.source == "elastic"
    assert a.severity is Severity.high and a.risk_score == 73
    assert a.timestamp.isoformat() == "2024-06-09T13:55:00+00:00"
    assert a.tactics == ("TA0002",)
    assert a.techniques == ("T1059", "T1059.004")
    assert a.entities.hosts == ("web-01",)
    assert a.entities.ips == ("89.160.20.156",)  # loopback dropped
    assert a.entities.users == ("admin",)
    assert a.id == "uuid-1"
    assert a.raw["kibana.alert.rule.rule_id"] == "rule-1"  # raw kept untouched


def test_a_threshold_alert_stands_for_the_events_that_crossed_it() -> None:
    """A threshold rule writes one alert for 412 failed logons from one address: it is read as
    the alert and 411 more events, the first at the threshold's `from`. A count of one is a
    plain alert; a count that is no whole number says which field. A threshold rule that also
    suppresses adds the alerts it folded in, over both spans."""
    from datetime import datetime

    from agent.models import Suppressed
    from tests.conftest import threshold_alert

    start, end = "2026-12-07T10:05:01Z", "2026-12-07T10:14:59Z"
    a = normalize(threshold_alert("t-1", 412, start, end))
    assert a.suppressed == Suppressed(
        count=411, first_seen=datetime.fromisoformat(start), in_place=False
    )
    assert a.timestamp == datetime.fromisoformat(end)
    assert (a.entities.hosts, a.entities.source_ips) == (("bastion",), ("203.0.113.7",))
    assert normalize(threshold_alert("t-2", 1, start, end)).suppressed is None
    assert normalize(threshold_alert("t-3", "412", start, end)).suppressed == a.suppressed
    field = "kibana.alert.threshold_result.count"
    with pytest.raises(NormalizeError, match=re.escape(f"{field} must be a whole number")):
        normalize(threshold_alert("t-4", 41.5, start, end))  # type: ignore[arg-type]
    both = threshold_alert(
        "t-5",
        412,
        start,
        end,
        **{
            "kibana.alert.suppression.docs_count": 6,
            "kibana.alert.suppression.start": end,
            "kibana.alert.suppression.end": "2026-12-07T11:00:00Z",
        },
    )
    assert normalize(both).suppressed == Suppressed(
        count=417,
        first_seen=datetime.fromisoformat(start),
        last_seen=datetime.fromisoformat("2026-12-07T11:00:00Z"),
    )


def test_a_machine_learning_alert_is_the_anomaly_detectors() -> None:
    """A machine learning rule's alert is its job's anomaly record, which names no module:
    its sensor is the anomaly detector, not "elastic" as any other alert naming none is, and
    its influencers (lists of values) are its entities."""
    from tests.conftest import ml_alert, threshold_alert

    ml = normalize(ml_alert("m-1", "2026-12-07T10:15:00Z"))
    assert ml.sensor == "ml"
    assert (ml.entities.hosts, ml.entities.source_ips) == (("bastion",), ("203.0.113.7",))
    t = "2026-12-07T10:14:59Z"
    assert normalize(threshold_alert("t-1", 412, t, t)).sensor == "elastic"
    assert normalize(elastic_doc()).sensor == "endpoint"


def test_the_process_instance_and_its_parent_are_read_in_one_spelling() -> None:
    """Elastic Defend's entity ids as written; Sysmon's GUIDs through Wazuh in lower case
    without braces, as Winlogbeat's copy may write them; Sysmon's null GUID (a parent it did
    not see) and `-` name no process. Where Sysmon names a source and a target process (event
    10, an access to lsass), the source acted: it is the alert's process. Elastic Defend
    writes each process's ancestors (`process.Ext.ancestry`, the parent first)."""
    from tests.conftest import process_alert, wazuh_alert

    defend = normalize(process_alert("p", 0, "Shell", "web", "cmd.exe", "ZmQ0/ZTk=", "Nzc1"))
    assert (defend.process_id, defend.ancestry) == ("ZmQ0/ZTk=", ("Nzc1",))
    # Elastic Defend's ancestry, the parent first again: the nearest five, each once
    lineage = {"Ext": {"ancestry": ["Nzc1", "A2", "A3", "", "A4", "A5", "A6", "A7"]}}
    doc = process_alert("p", 0, "Shell", "web", "cmd.exe", "ZmQ0/ZTk=", "Nzc1")
    doc["process"] |= lineage
    assert normalize(doc).ancestry == ("Nzc1", "A2", "A3", "A4", "A5")
    sysmon = {
        "processGuid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
        "parentProcessGuid": "{00000000-0000-0000-0000-000000000000}",
        "image": "C:\\Windows\\System32\\cmd.exe",
    }
    doc = wazuh_alert(
        "w", 0, "ws-07", 92052, 12, "cmd by Office", ["sysmon"], win={"eventdata": sysmon}
    )
    a = normalize(doc)
    assert (a.process_id, a.ancestry) == ("5770385f-c22a-43e0-bf4c-06f5698ffbd9", ())
    winlogbeat = process_alert(
        "b", 0, "Shell", "ws-07", "cmd.exe", "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}", "-"
    )
    b = normalize(winlogbeat)
    assert (b.process_id, b.ancestry) == (a.process_id, ())
    assert normalize(ecs(1, 0, "No process", "web")).process_id is None
    access = {  # Sysmon's event 10: the acting process is the source, lsass the target
        "sourceProcessGUID": "{79579F2B-FC0C-5B89-0000-001097EB6F00}",
        "sourceImage": "C:\\Windows\\System32\\rundll32.exe",
        "targetProcessGUID": "{79579f2b-f5fa-5b89-0000-00105a9c0000}",
        "targetImage": "C:\\Windows\\system32\\lsass.exe",
    }
    dump = normalize(
        wazuh_alert("d", 0, "ws-07", 92900, 12, "lsass read", [], win={"eventdata": access})
    )
    assert (dump.process_id, dump.ancestry) == ("79579f2b-fc0c-5b89-0000-001097eb6f00", ())
    assert dump.entities.processes == ("C:\\Windows\\System32\\rundll32.exe",)


def test_elastic_alert_suppression_counts_the_matches_it_folded_in() -> None:
    """Kibana's alert suppression writes one alert for a rule's matches on the same values
    within its window and counts the rest: the count and its span are read. Folding none (0)
    is a plain alert; a count that is no whole number is bad input, and says which field."""
    from datetime import datetime

    from agent.models import Suppressed
    from tests.conftest import suppressed_alerts

    plain, window, _ = [normalize(d) for d in suppressed_alerts()]
    assert plain.suppressed is None
    assert window.suppressed == Suppressed(
        count=57,
        first_seen=datetime.fromisoformat("2026-12-07T10:00:00Z"),
        last_seen=datetime.fromisoformat("2026-12-07T10:40:00Z"),
    )
    field = "kibana.alert.suppression.docs_count"
    assert normalize(elastic_doc(**{field: 0})).suppressed is None
    assert normalize(elastic_doc(**{field: 4})).suppressed == Suppressed(count=4)  # no span
    assert normalize(elastic_doc(**{field: "12"})).suppressed == Suppressed(count=12)
    assert normalize(elastic_doc(**{field: 12.0})).suppressed == Suppressed(count=12)
    for bad in (-1, 2.5, "many", True, {"n": 3}):
        with pytest.raises(NormalizeError, match=re.escape(f"{field} must be a whole number")):
            normalize(elastic_doc(**{field: bad}))
    with pytest.raises(NormalizeError, match=r"kibana\.alert\.suppression\.end is not an ISO"):
        normalize(elastic_doc(**{field: 3, "kibana.alert.suppression.end": "soon"}))


def test_elastic_asset_criticality_rates_the_alert_s_host_and_account() -> None:
    """Elastic's entity analytics writes the criticality a SOC gave a host or account into
    its alerts (`host.asset.criticality`; Kibana 8.13 wrote `kibana.alert.host.criticality_level`):
    high and extreme impact make it critical here, named as read."""
    assert normalize(elastic_doc()).critical == ()
    rated = elastic_doc(
        **{"host.asset.criticality": "extreme_impact", "user.asset.criticality": "high_impact"}
    )
    rated["host"] = {"name": "WEB-01.corp.example"}
    rated["user"] = {"name": "CORP\\Admin"}
    assert normalize(rated).critical == ("host:web-01", "user:admin")
    for level in ("medium_impact", "low_impact", "unassigned"):
        assert normalize(elastic_doc(**{"host.asset.criticality": level})).critical == ()
    legacy = elastic_doc(**{"kibana.alert.user.criticality_level": "High Impact"})
    assert normalize(legacy).critical == ("user:admin",)
    ecs_rated = ecs("e1", 0, "Login", "db-01", **{"host.asset.criticality": "high_impact"})
    assert normalize(ecs_rated).critical == ("host:db-01",)


def test_what_a_threat_intelligence_source_lists_is_read_with_who_lists_it(shared_data) -> None:
    """Elastic's indicator match rules record each match (`threat.enrichments`: the value,
    its field, the indicator and its feed); Wazuh's VirusTotal integration a file its engines
    flag. Neither was read: the shared indicator-match alert's match on its own host name
    included."""
    from tests.conftest import same_alert_as_validated, wazuh_alert

    path = shared_data / "elastic/kibana_es_archive_threat_match_alert_8.1.0.json"
    (archived,) = [d.value for d in read_documents(path) if not isinstance(d, DeadLetter)]
    assert normalize(archived).intel == ("security-linux-1 in host.name, listed by a feed",)
    assert normalize(elastic_doc()).intel == ()
    listed = elastic_doc(
        threat={
            "enrichments": [
                {
                    "matched": {"atomic": "203.0.113.9", "field": "source.ip"},
                    "indicator": {"type": "ipv4-addr", "confidence": "High"},
                    "feed": {"name": "AbuseCH Feodo"},
                },
                {"matched.atomic": "evil.example", "indicator.provider": "MISP"},
                {"indicator": {"type": "url"}},  # no value matched: nothing to say
            ]
        }
    )
    assert normalize(listed).intel == (
        "203.0.113.9 in source.ip, listed by AbuseCH Feodo (confidence High)",
        "evil.example in a field, listed by MISP",
    )
    same_alert_as_validated(listed)
    flagged = wazuh_alert(
        9, 0, "ws-07", 87105, 12, "VirusTotal: Alert - 51 engines", ["virustotal"],
        integration="virustotal",
        virustotal={
            "found": "1",
            "malicious": "1",
            "positives": "51",
            "total": "60",
            "sha1": "3395856ce81f2b7382dee72602f798b642f14140",
            "source": {"file": "/tmp/eicar.com", "sha1": "3395856c"},
        },
    )  # fmt: skip
    assert normalize(flagged).intel == (
        "3395856ce81f2b7382dee72602f798b642f14140 (/tmp/eicar.com), "
        "flagged by 51 of 60 VirusTotal engines",
    )
    same_alert_as_validated(flagged)
    flagged["data"]["virustotal"]["malicious"] = "0"
    assert normalize(flagged).intel == ()


def test_a_wazuh_scan_s_findings_are_posture_not_detections() -> None:
    """Wazuh's vulnerability detector and configuration assessment report a host's state (a
    critical CVE of an installed package at level 13, a CIS check failed): findings, marked
    so; an sshd alert is not, nor a check that passed before and fails now (a change on the
    host, as an intruder turning auditd off makes)."""
    from tests.conftest import same_alert_as_validated, vulnerability_scan, wazuh_alert

    (cve,) = vulnerability_scan(["srv-01"], 0, per_host=1)
    sca = wazuh_alert(
        "s1", 0, "srv-01", 19007, 7, "CIS Ubuntu 22.04: Ensure auditd is enabled (failed)",
        ["sca"], sca={"check": {"id": "28500", "result": "failed"}},
    )  # fmt: skip
    sshd = wazuh_alert(
        "x1", 0, "srv-01", 5712, 10, "sshd: brute force", ["syslog", "sshd"], srcip="203.0.113.5"
    )
    assert [normalize(d).posture for d in (cve, sca, sshd)] == [True, True, False]
    sca["data"]["sca"]["check"]["previous_result"] = "passed"  # auditd turned off since
    assert not normalize(sca).posture
    sca["data"]["sca"]["check"]["result"] = "passed"  # fixed: a finding again
    assert normalize(sca).posture
    assert normalize(cve).severity == Severity.critical  # as the SIEM rated it
    for doc in (cve, sshd):
        same_alert_as_validated(doc)


def test_alert_id_precedence() -> None:
    assert normalize(elastic_doc(event={"id": "ev-9"})).id == "ev-9"
    doc = elastic_doc()
    del doc["kibana.alert.uuid"]
    doc["_id"] = "es-id"
    assert normalize(doc).id == "es-id"
    del doc["_id"]
    first = normalize(doc).id
    assert first.startswith("sha256-") and normalize(dict(doc)).id == first


@pytest.mark.parametrize(
    ("level", "severity", "risk"),
    [
        (0, "low", 10),
        (3, "low", 31),
        (4, "medium", 40),
        (7, "medium", 61),
        (8, "high", 70),
        (11, "high", 85),
        (12, "critical", 90),
        (15, "critical", 99),
    ],
)
def test_wazuh_level_maps_onto_one_scale(level: int, severity: str, risk: float) -> None:
    a = normalize(
        {
            "timestamp": "2025-09-22T11:13:22.359+0000",
            "rule": {
                "level": level,
                "description": "First time user executed sudo.",
                "id": "5403",
                "mitre": {
                    "id": ["T1548.003"],
                    "tactic": ["Privilege Escalation", "Defense Evasion"],
                },
            },
            "agent": {"id": "001", "name": "videoserver", "ip": "192.168.1.5"},
            "data": {
                "srcuser": "webadmin",
                "srcip": "10.1.2.3",
                "command": "/usr/bin/cat /etc/shadow",
            },
            "id": "1758528088.1",
        }
    )
    assert (a.source, a.severity.value, a.risk_score) == ("wazuh", severity, risk)
    assert a.tactics == ("TA0004", "TA0005")
    assert a.entities.users == ("webadmin",) and a.entities.source_ips == ("10.1.2.3",)
    assert a.id == "1758528088.1"


def test_real_wazuh_and_elastic_samples_normalise(shared_data) -> None:
    docs = []
    for path in (shared_data / "wazuh").glob("*.alerts.json"):
        docs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    docs.append(
        json.loads(
            (shared_data / "elastic/endpoint_promoted_alert_empire_stager.trimmed.json").read_text()
        )
    )
    alerts = [normalize(d) for d in docs]
    assert len(alerts) == len(docs) >= 10
    suricata = [a for a in alerts if a.sensor == "suricata"]
    assert suricata and all(a.entities.ips for a in suricata)
    empire = alerts[-1]
    assert (
        empire.source == "elastic"
        and empire.severity is Severity.high
        and "TA0002" in empire.tactics
    )
    # Elastic Defend's process instance and the one that started it, as written
    assert empire.process_id == empire.raw["process"]["entity_id"]
    assert empire.ancestry == (empire.raw["process"]["parent"]["entity_id"],)
    assert empire.process_id not in empire.ancestry


def test_a_search_hit_is_read_as_the_alert_it_holds(shared_data) -> None:
    """Alerts exported from Elasticsearch or the Wazuh indexer (elasticdump, a scroll saved
    hit by hit) come wrapped: `_index`, `_id`, `_source`. They were "unrecognised documents".
    A hit is now its `_source`, identified by the hit's `_id` as a sweep identifies it, and
    its raw document is that alert (a playbook reads the Wazuh agent's id from it)."""
    lines = (shared_data / "wazuh").glob("*.alerts.json")
    wazuh = next(
        doc
        for path in sorted(lines)
        for doc in map(json.loads, filter(str.strip, path.read_text().splitlines()))
        if doc.get("agent", {}).get("id")
    )
    hit = {"_index": "wazuh-alerts-4.x-2026.12.07", "_id": "AZ3x", "_score": 1.0, "_source": wazuh}
    for raw in (None, json.dumps(hit).encode()):  # as a webhook passes it, as a file line
        alert = normalize(hit, raw=raw)
        assert alert.id == "AZ3x" and alert.source == "wazuh"
        assert alert.raw["agent"]["id"] == wazuh["agent"]["id"]
        same = normalize({**wazuh, "_id": "AZ3x"})  # what a sweep makes of the same hit
        assert alert.model_dump(exclude={"raw"}) == same.model_dump(exclude={"raw"})
    with pytest.raises(NormalizeError, match="a search response, not an alert"):
        normalize({"took": 3, "hits": {"total": {"value": 1}, "hits": [hit]}})
    bare = {k: v for k, v in hit.items() if k != "_source"}  # an index that keeps no source
    with pytest.raises(NormalizeError, match="a search hit without its _source"):
        normalize(bare)  # was "unrecognised document", as if the format were unknown
    doc = ecs(1, 0, "r") | {"_source": {"not": "a hit"}}  # no _id or _index: its own document
    assert normalize(doc).rule_name == "r"


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("informational", "low"),  # Sigma's, Splunk's and Defender's lowest
        ("Info", "low"),
        ("moderate", "medium"),
        ("warning", "medium"),
        ("error", "high"),
        ("emergency", "critical"),
    ],
)
def test_other_tools_words_for_a_severity_are_read(word: str, severity: str) -> None:
    """An ECS alert whose rule said `informational` was a dead letter, lost to its incident."""
    assert normalize(ecs(1, 0, "r") | {"rule": {"name": "r", "severity": word}}).severity == (
        severity
    )
    with pytest.raises(NormalizeError, match="is not low/medium/high/critical: 'P1'"):
        normalize(ecs(1, 0, "r") | {"rule": {"name": "r", "severity": "P1"}})


def test_kibana_es_archiver_documents_are_read_as_the_alert_they_hold(shared_data) -> None:
    """Kibana's `esArchiver` keeps an index's documents as pretty-printed objects, each
    `{"type": "doc", "value": {"index", "id", "source"}}`: the shared indicator-match alert
    was an "unrecognised document". It is its `source`, identified by the document's id."""
    path = shared_data / "elastic/kibana_es_archive_threat_match_alert_8.1.0.json"
    docs = [d for d in read_documents(path) if not isinstance(d, DeadLetter)]
    assert len(docs) == 1
    archived = docs[0].value
    alert = normalize(archived)
    assert (alert.source, alert.rule_name) == ("elastic", "threat-match-rule")
    assert alert.id == archived["value"]["id"]
    assert alert.entities.hosts == ("security-linux-1",)
    assert alert.raw == {**archived["value"]["source"], "_id": archived["value"]["id"]}
    not_archived = ecs(1, 0, "r") | {"type": "doc", "value": {"source": {"x": 1}}}  # no index
    assert normalize(not_archived).rule_name == "r"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"rule": {"name": "x"}}, "unrecognised document"),
        (ecs(1, 0, "r") | {"@timestamp": "yesterday"}, "not an ISO 8601"),
        (ecs(1, 0, "r") | {"@timestamp": {"nested": 1}}, "must be a string or a number"),
        (ecs(1, 0, "r") | {"event": {"id": "x", "risk_score": "high"}}, "not a number"),
        (ecs(1, 0, "r") | {"event": {"id": "x", "risk_score": 400}}, "within 0-100"),
        ({"timestamp": "2025-01-01T00:00:00Z", "rule": {"level": 99}}, "within 0-15"),
        (["not", "an", "object"], "expected a JSON object"),
        (ecs(1, 0, "r") | {"@timestamp": "0001-01-01T00:00:00Z"}, "out of range"),
        (ecs(1, 0, "r") | {"@timestamp": "0001-01-01T00:00:00+14:00"}, "out of range"),
        (ecs(1, 0, "r") | {"@timestamp": "9999-12-31T23:59:59Z"}, "out of range"),
        (ecs(1, 0, "r") | {"@timestamp": "1970-01-01T00:00:00Z"}, "out of range"),
        (ecs(1, 0, "r") | {"@timestamp": 1e20}, "out of range"),
        (ecs(1, 0, "r") | {"@timestamp": -1}, "out of range"),
        (ecs(1, 0, "lone \ud800 surrogate"), "lone surrogate"),
        (ecs(1, 0, "r") | {"extra": ["x\udfff"]}, "lone surrogate"),
    ],
)
def test_bad_documents_raise_typed_errors(doc: object, reason: str) -> None:
    with pytest.raises(NormalizeError, match=reason):
        normalize(doc)


def test_epoch_seconds_and_milliseconds_are_told_apart_by_size() -> None:
    """A number is seconds or milliseconds: the two ranges of plausible alert times (1990 to
    2200) do not overlap."""
    iso = normalize(ecs(1, 0, "r") | {"@timestamp": "2022-01-21T00:00:09.5Z"}).timestamp
    for number in (1642723209.5, 1642723209500):
        assert normalize(ecs(1, 0, "r") | {"@timestamp": number}).timestamp == iso


def test_an_epoch_written_as_text_is_read_as_the_number() -> None:
    """Producers that send `@timestamp` as a string of epoch seconds or milliseconds (what an
    `epoch_millis` field takes) had every alert refused as "not an ISO 8601 timestamp". A
    string of digits that is no ISO date (as "20220121" is) is now read as its number."""
    iso = normalize(ecs(1, 0, "r") | {"@timestamp": "2022-01-21T00:00:09.5Z"}).timestamp
    for text in ("1642723209.5", "1642723209500", " 1642723209500 "):
        assert normalize(ecs(1, 0, "r") | {"@timestamp": text}).timestamp == iso
    day = normalize(ecs(1, 0, "r") | {"@timestamp": "20220121"}).timestamp  # ISO's basic date
    assert day.isoformat() == "2022-01-21T00:00:00+00:00"
    for bad in ("12", "1e9", "-1642723209", "1642723209500000"):
        with pytest.raises(NormalizeError, match="not an ISO 8601"):
            normalize(ecs(1, 0, "r") | {"@timestamp": bad})
    with pytest.raises(NormalizeError, match="out of range"):  # 1973: the bounds hold
        normalize(ecs(1, 0, "r") | {"@timestamp": "100000000"})


def test_absurd_nesting_is_refused() -> None:
    deep: dict = {"leaf": 1}
    for _ in range(100):
        deep = {"x": deep}
    with pytest.raises(NormalizeError, match="nesting deeper"):
        normalize(ecs(1, 0, "r") | {"extra": deep})


def test_generic_ecs_defaults_to_low() -> None:
    a = normalize(ecs(1, 0, "Port scan", host="fw", module="suricata"))
    assert (a.source, a.severity, a.risk_score, a.sensor) == ("ecs", Severity.low, 21.0, "suricata")


def test_entities_of_values_python_holds_equal_are_read_each_on_its_own() -> None:
    """Entities are remembered by the values at their paths; 1, 1.0 and true are equal in
    Python, yet one names a host "1", one "1.0" and one none (a flag is not a name)."""
    hosts = [
        normalize(ecs(i, 0, "Odd host", host=name)).entities.hosts  # type: ignore[arg-type]
        for i, name in enumerate([1, True, 1.0, 1])
    ]
    assert hosts == [("1",), (), ("1.0",), ("1",)]


def test_long_entity_values_are_read_but_not_remembered() -> None:
    """However long the values an attacker sends, what is remembered of them stays small."""
    name = "h" * (BY_VALUES_MAX_KEY + 1)
    assert normalize(ecs(1, 0, "Long host", host=name)).entities.hosts == (name,)
    assert max(map(len, ECS_ENTITIES.by_values), default=0) <= BY_VALUES_MAX_KEY


def test_a_document_is_kept_in_bytes_of_its_own_size() -> None:
    """orjson's bytes keep the 4 KiB buffer they were written in: every alert read from a JSON
    array, a webhook or a sweep (whose documents are encoded again) held 4 KiB for a document
    of 300 bytes, and 634,000 alerts of an array took 3.4 GB."""
    docs = [ecs(i, 0, "Rule", "h1") for i in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [raw_json(d) for d in docs]
        per_document = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert all(json.loads(b) == d for b, d in zip(kept, docs, strict=True))
    assert per_document < 2 * max(map(len, kept))
    assert normalize(docs[0]).raw_json == kept[0]  # what an alert keeps


def test_a_dead_letter_shows_the_start_of_its_document_as_json() -> None:
    """A sweep's or a webhook's rejected document was kept as Python writes a dict
    (`{'kibana.alert.rule.name': ...}`); one JSON cannot encode (a lone surrogate, which the
    search client's parser lets through) is still shown, as Python writes it."""
    doc = {"kibana.alert.rule.name": "No time", "n": 1}
    dead = rejected("sweep", 3, doc, NormalizeError("no usable timestamp"))
    assert json.loads(dead.excerpt) == doc
    lone = rejected("sweep", 4, {"rule": "\ud800"}, NormalizeError("invalid Unicode"))
    assert lone.excerpt == "{'rule': '\\ud800'}"
    long = rejected("sweep", 5, {"x": "y" * 500}, NormalizeError("r"))
    assert len(long.excerpt) == 200


def _by_ipaddress(values: tuple[str, ...]) -> tuple[str, ...]:
    """What the address cleaning kept when `ipaddress` parsed every value."""
    import ipaddress

    out: list[str] = []
    for v in values:
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # "::ffff:10.0.0.5" is the IPv4 host
        if not (ip.is_loopback or ip.is_unspecified or ip.is_link_local) and str(ip) not in out:
            out.append(str(ip))
    return tuple(out)


#: Octets near every edge the fast path decides on: zeros, leading zeros, 255, Arabic digits.
OCTETS = ["0", "00", "01", "1", "9", "10", "127", "169", "254", "255", "256", "999", "1000"]
OCTETS += ["\u0663", "+1", " 1", ""]


@hypothesis.settings(max_examples=3000, deadline=None)
@hypothesis.given(
    st.lists(
        st.one_of(
            st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(str),
            st.tuples(*[st.sampled_from(OCTETS)] * 4).map(".".join),
            st.text(alphabet="0123456789.:abcdef ", max_size=20),
        ),
        max_size=4,
    )
)
def test_plain_ipv4_addresses_are_kept_as_ipaddress_would_keep_them(values: list[str]) -> None:
    """The fast path for plain IPv4 text (a day of distinct source addresses spent most of
    its reading in `ipaddress`) keeps and drops exactly what `ipaddress` does."""
    from agent.normalize import _clean_ips

    assert _clean_ips(tuple(values)) == _by_ipaddress(tuple(values))


def test_an_account_is_one_entity_whether_or_not_pam_wrote_its_uid(shared_data) -> None:
    """Wazuh's PAM decoder keeps pam_unix's `(uid=0)` in `data.dstuser`: the shared samples'
    session alerts named `root(uid=0)`, their sudo alerts `root`, two accounts to link by,
    match playbooks on and hand to actions (`disable_account` of "jdoe(uid=1000)")."""
    docs = [
        json.loads(line)
        for path in sorted((shared_data / "wazuh").glob("*.alerts.json"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    sessions = [normalize(d) for d in docs if "(uid=" in str(d.get("data", {}).get("dstuser"))]
    assert sessions and all(a.entities.users == ("root",) for a in sessions)
    opened = {
        "timestamp": "2026-12-07T10:00:00.000+0000",
        "rule": {"level": 3, "id": "5501", "description": "PAM: Login session opened."},
        "agent": {"id": "001", "name": "web-01"},
        "data": {"dstuser": "jdoe(uid=1000)", "srcuser": "jdoe(uid=1000)", "uid": "0"},
        "full_log": "su: pam_unix(su:session): session opened for user jdoe(uid=1000) by (uid=0)",
        "id": "1765101600.1",
    }
    assert normalize(opened).entities.users == ("jdoe",)


def test_an_office_365_event_through_wazuh_names_its_account_and_client_address() -> None:
    """Wazuh's Office 365 module writes the account as its user principal name and the
    client's address with its port (`data.office365.UserId`, `ClientIP`): neither was read,
    so a mailbox rule set from an attacker's address linked to nothing."""
    from tests.conftest import wazuh_alert

    doc = wazuh_alert(
        7, 0, "wazuh-manager", 91532, 6, "Office 365: New-InboxRule", ["office365"],
        agent_id="000",  # what the manager's own module read
        integration="office365",
        office365={
            "UserId": "JDoe@Corp.Example",
            "ClientIP": "203.0.113.9:51234",
            "Operation": "New-InboxRule",
        },
    )  # fmt: skip
    doc["location"] = "office365"
    alert = normalize(doc)
    assert alert.entities.users == ("jdoe",)
    assert alert.entities.source_ips == ("203.0.113.9",)
    doc["data"]["office365"]["ClientIP"] = "[2001:db8::9]:443"
    assert normalize(doc).entities.source_ips == ("2001:db8::9",)


def test_syslog_the_wazuh_manager_decoded_is_the_sending_host_s() -> None:
    """What the manager decodes itself carries agent 000, the manager's name: the syslog of a
    firewall and of a relayed server (wazuh#6739) were all the manager's alerts, one host
    linking them and the host a playbook would isolate. The syslog header names the host."""

    def relayed(n: int, hostname: str | None) -> dict:
        doc = {
            "timestamp": "2026-12-07T10:00:00.000+0000",
            "rule": {"level": 5, "id": "5710", "description": "sshd: invalid user."},
            "agent": {"id": "000", "name": "wazuh-manager"},
            "manager": {"name": "wazuh-manager"},
            "full_log": f"Dec  7 10:00:0{n} {hostname} sshd[7]: Invalid user oracle from 1.2.3.4",
            "location": "192.168.7.67",
            "id": f"1765101600.{n}",
        }
        if hostname is not None:
            doc["predecoder"] = {"timestamp": f"Dec  7 10:00:0{n}", "hostname": hostname}
        return doc

    assert normalize(relayed(1, "FW-01")).entities.hosts == ("fw-01",)
    # The header is the sender's word: the address it came from stays beside it.
    assert "192.168.7.67" in normalize(relayed(1, "FW-01")).entities.ips
    local = {**relayed(5, "wazuh-manager"), "location": "/var/log/auth.log"}
    assert normalize(local).entities.ips == ()  # the manager's own file names no address
    assert normalize(relayed(2, "web-02")).entities.hosts == ("web-02",)
    assert normalize(relayed(3, None)).entities.hosts == ("wazuh-manager",)  # nothing better
    # Every machine's name for itself names none of them: two such devices are not one host.
    assert normalize(relayed(6, "localhost")).entities.hosts == ("wazuh-manager",)
    assert normalize(ecs(7, 0, "Odd process", "localhost")).entities.hosts == ()
    own = {**relayed(4, "web-02"), "agent": {"id": "007", "name": "app-07.corp.example"}}
    assert normalize(own).entities.hosts == ("app-07",)  # an agent's own name


def test_windows_events_forwarded_to_a_collector_are_their_own_machine_s() -> None:
    """A collector's agent reading the ForwardedEvents channel (Windows Event Forwarding,
    wazuh#2136) named itself as the host of every machine's events: one host linking them."""

    def logon(n: int, computer: str, agent: str) -> dict:
        return {
            "timestamp": "2026-12-07T10:00:00.000+0000",
            "rule": {"level": 5, "id": "60122", "description": "Logon failure."},
            "agent": {"id": "012", "name": agent},
            "data": {
                "win": {
                    "system": {"eventID": "4625", "channel": "Security", "computer": computer},
                    "eventdata": {"targetUserName": "jdoe", "ipAddress": "10.0.0.5"},
                }
            },
            "location": "EventChannel",
            "id": f"1765101600.{n}",
        }

    forwarded = [
        logon(1, "SERVER-01.corp.example", "wec-01"),
        logon(2, "WS-07.corp.example", "wec-01"),
    ]
    assert [normalize(d).entities.hosts for d in forwarded] == [("server-01",), ("ws-07",)]
    own = normalize(logon(3, "WS-FIN-07.corp.example", "WS-FIN-07"))
    assert own.entities.hosts == ("ws-fin-07",)  # its own agent: the agent's name, as before
    assert own.entities.users == ("jdoe",) and normalize(forwarded[0]).entities.users == ("jdoe",)


def test_a_host_is_its_machine_name_however_a_sensor_writes_its_dns_name() -> None:
    """Elastic Agent may name a host by its DNS name where its Wazuh agent, its syslog and
    Windows' logon events name the machine: one host. A host named by address stays whole;
    the DNS name of `localhost` names no host, as `localhost` does not."""
    named = {
        "WS-FIN-07.corp.example": ("ws-fin-07",),
        "ws-fin-07.corp.example.": ("ws-fin-07",),
        "ws-fin-07": ("ws-fin-07",),
        "10.0.0.5": ("10.0.0.5",),
        "2001:db8::5": ("2001:db8::5",),
        "123.corp.example": ("123.corp.example",),
        "ubuntu-22.04": ("ubuntu-22.04",),  # a version, not a domain: not `ubuntu-22`
        "Ubuntu-22.10": ("ubuntu-22.10",),
        "localhost.corp.example": (),
    }
    seen = {h: normalize(ecs(n, 0, "r", h)).entities.hosts for n, h in enumerate(named)}
    assert seen == named
    wazuh = {
        "timestamp": "2026-12-07T10:00:00.000+0000",
        "rule": {"level": 5, "id": "5710", "description": "sshd: invalid user"},
        "agent": {"id": "012", "name": "DB-02.corp.example"},
        "id": "1765101600.9",
    }
    assert normalize(wazuh).entities.hosts == ("db-02",)


def test_a_windows_event_winlogbeat_read_on_a_collector_is_its_own_machine_s() -> None:
    """The same with Winlogbeat or Elastic Agent on the collector: `host.name` is the
    collector's, `winlog.computer_name` the machine's whose event it is."""

    def event(n: int, computer: str, host: str) -> dict:
        return ecs(n, 0, "Logon failure", host, winlog={"computer_name": computer})

    assert normalize(event(1, "SERVER-01.corp.example", "wec-01")).entities.hosts == ("server-01",)
    assert normalize(event(2, "ws-fin-07.corp.example", "WS-FIN-07")).entities.hosts == (
        "ws-fin-07",
    )
    assert normalize(ecs(3, 0, "Logon failure", "wec-01")).entities.hosts == ("wec-01",)


def security_onion_suricata(sid: str, priority: int, **rule: object) -> dict:
    """A Suricata alert as Security Onion indexes it: its pipeline renames the EVE `alert` to
    `rule` (the priority number stays `rule.severity`) and writes its own inverted scale to
    `event.severity` (3 is high) and its word to `event.severity_label`."""
    label = {1: "high", 2: "medium", 3: "low"}[priority]
    return {
        "@timestamp": "2026-12-01T10:00:00Z",
        "event": {
            "module": "suricata",
            "dataset": "alert",
            "severity": 4 - priority,
            "severity_label": label,
        },
        "rule": {"name": f"ET rule {sid}", "uuid": sid, "severity": priority, **rule},
        "source": {"ip": "203.0.113.9"},
        "destination": {"ip": "10.0.0.5"},
        "observer": {"name": "so-sensor"},
        "host": {"name": "so-sensor"},
    }


@pytest.mark.parametrize(
    ("priority", "rule", "severity"),
    [
        (1, {}, "high"),
        (2, {}, "medium"),
        (3, {}, "low"),
        (1, {"metadata": {"signature_severity": ["Informational"]}}, "low"),
        (3, {"metadata": {"signature_severity": ["Critical"]}}, "critical"),
    ],
)
def test_security_onion_suricata_alerts_are_read_with_suricatas_rating(
    priority: int, rule: dict, severity: str
) -> None:
    """Its number in `rule.severity` made every one a dead letter ("must be a string")."""
    a = normalize(security_onion_suricata("2030000", priority, **rule))
    assert (a.sensor, a.severity.value) == ("suricata", severity)
    assert a.risk_score == {"low": 21, "medium": 47, "high": 73, "critical": 99}[severity]


@pytest.mark.parametrize(
    ("event_severity", "signature", "severity"),
    [(1, None, "high"), (2, None, "medium"), (4, None, "low"), (1, ["Minor"], "medium")],
)
def test_elastic_suricata_integration_priority_and_signature_rating_are_read(
    event_severity: int, signature: list[str] | None, severity: str
) -> None:
    """Elastic's Suricata integration moves the priority to `event.severity` and keeps the
    signature's metadata under `suricata.eve.alert.metadata`: both were ignored (all low)."""
    doc = ecs(1, 0, "ET MALWARE beacon", host="fw", module="suricata")
    doc["event"]["severity"] = event_severity
    if signature is not None:
        doc["suricata"] = {"eve": {"alert": {"metadata": {"signature_severity": signature}}}}
    assert normalize(doc).severity.value == severity


def test_another_sources_severity_number_is_no_rating_and_no_dead_letter() -> None:
    """`event.severity` is each source's own scale: only Suricata's is read. A number in
    `rule.severity` from another source is left, the label read if there is one."""
    doc = ecs(1, 0, "Suspicious logon", module="endpoint")
    doc["event"]["severity"] = 1
    doc["rule"]["severity"] = 3
    assert normalize(doc).severity == Severity.low
    doc["event"]["severity_label"] = "High"
    assert normalize(doc).severity == Severity.high
    doc["rule"]["severity"] = ["high"]
    with pytest.raises(NormalizeError, match=r"rule\.severity must be a string"):
        normalize(doc)


def wazuh_suricata(level: int, **alert: object) -> dict:
    return wazuh_alert(
        1, 0, "fw", 86601, level, "Suricata: Alert - ET x", ["ids", "suricata"], alert=alert
    )


@pytest.mark.parametrize(
    ("level", "alert", "severity", "risk"),
    [
        (3, {"severity": "1", "metadata": {"signature_severity": ["Major"]}}, "high", 73),
        (3, {"severity": "2"}, "medium", 47),
        (3, {"severity": "1", "metadata": {"signature_severity": ["Informational"]}}, "low", 31),
        (3, {"severity": "x"}, "low", 31),
        (10, {"severity": "1", "metadata": {"signature_severity": ["Minor"]}}, "high", 80),
        (3, {"metadata": {"signature_severity": ["Critical"]}}, "critical", 99),
    ],
)
def test_wazuh_suricata_alerts_take_suricatas_rating_when_above_the_rules(
    level: int, alert: dict, severity: str, risk: float
) -> None:
    """Wazuh's ruleset gives every Suricata alert level 3 (low); a local rule's level stays."""
    a = normalize(wazuh_suricata(level, **alert))
    assert (a.sensor, a.severity.value, a.risk_score) == ("suricata", severity, risk)


@pytest.mark.parametrize(
    ("source", "destination", "host"),
    [
        ("198.51.100.7", "10.0.0.5", "10.0.0.5"),  # inbound: the machine attacked
        ("192.168.1.20", "203.0.113.9", "192.168.1.20"),  # outbound: the machine calling out
        ("10.0.0.12", "10.0.0.2", "10.0.0.12"),  # both inside: the sender (a DNS query)
        ("fd00::12", "2001:db8::1", "fd00::12"),
        ("198.51.100.7", "203.0.113.9", ""),  # neither inside: none
    ],
)
def test_a_network_sensors_alert_names_the_machine_it_saw_beside_the_sensor(
    source: str, destination: str, host: str
) -> None:
    """As its only host, the sensor put every alert it raised in an hour into one incident;
    correlation places the alert on the machine (`Entities.watched`)."""
    doc = security_onion_suricata("2030000", 1)
    doc["source"]["ip"], doc["destination"]["ip"] = source, destination
    a = normalize(doc)
    assert (a.entities.hosts, a.entities.watched) == (("so-sensor",), (host,) if host else ())
    assert {source, destination} <= set(a.entities.ips)


def test_elastic_and_wazuh_suricata_alerts_name_the_machine_they_saw() -> None:
    promoted = elastic_doc(**{"event.module": "suricata"})
    promoted["source.ip"], promoted["destination.ip"] = "203.0.113.9", "172.16.4.2"
    assert normalize(promoted).entities.watched == ("172.16.4.2",)
    wazuh = wazuh_suricata(3, severity="1")
    wazuh["agent"]["ip"] = "192.168.7.254"  # the sensor's own: no address of the connection
    wazuh["data"] |= {"src_ip": "192.168.7.3", "dest_ip": "203.0.113.9"}
    seen = normalize(wazuh).entities
    assert (seen.watched, seen.ips) == (("192.168.7.3",), ("192.168.7.3", "203.0.113.9"))
    wazuh["rule"]["groups"] = ["sshd"]  # a host's own sensor: its host is what it saw
    assert normalize(wazuh).entities.watched == ()
    endpoint = ecs(1, 0, "Outbound connection", host="ws-1", module="endpoint")
    endpoint |= {"source": {"ip": "10.0.0.8"}, "destination": {"ip": "203.0.113.9"}}
    assert normalize(endpoint).entities.watched == ()


def test_a_hosts_own_addresses_are_known_apart_from_the_connections() -> None:
    """`host_ips`: where a network alert on an address finds the machine's name. A Windows
    event forwarded to a collector is another machine's: the collector's address is not its."""
    doc = ecs(1, 0, "Outbound connection", host="ws-1", module="endpoint")
    doc["host"]["ip"] = ["10.0.0.8", "fe80::1"]
    doc |= {"source": {"ip": "10.0.0.8"}, "destination": {"ip": "203.0.113.9"}}
    assert normalize(doc).entities.host_ips == ("10.0.0.8",)
    w = wazuh_alert(1, 0, "web-01", 31510, 12, "Web shell", ["web"])
    w["agent"]["ip"] = "10.0.0.5"
    assert normalize(w).entities.host_ips == ("10.0.0.5",)
    w["data"] = {"win": {"system": {"computer": "ws-fin-07.corp.example"}}}
    forwarded = normalize(w).entities
    assert (forwarded.hosts, forwarded.host_ips) == (("ws-fin-07",), ())


def test_a_zeek_notice_says_its_message_and_is_on_the_machine_it_saw() -> None:
    """Elastic's Zeek integration moves a notice's `msg` to `rule.description` and drops
    `message`: its alert said nothing of who scanned whom."""
    notice = {
        "@timestamp": "2026-12-01T10:00:00Z",
        "event": {"module": "zeek", "dataset": "zeek.notice", "kind": "alert"},
        "rule": {
            "name": "Scan::Port_Scan",
            "description": "10.0.0.23 scanned at least 15 unique ports of host 10.0.0.1 in 0m3s",
        },
        "source": {"ip": "10.0.0.23"},
        "destination": {"ip": "10.0.0.1"},
        "host": {"name": "zeek-sensor"},
    }
    a = normalize(notice)
    assert a.message == "10.0.0.23 scanned at least 15 unique ports of host 10.0.0.1 in 0m3s"
    assert (a.sensor, a.entities.watched) == ("zeek", ("10.0.0.23",))
    notice["message"] = "Port scan"
    assert normalize(notice).message == "Port scan"


def test_an_ids_alert_naming_no_connection_stays_where_it_was_put() -> None:
    """The AIT alert data set puts each Suricata alert on the machine it concerned, with that
    machine's address as `host.ip` and no connection: that address stays its own."""
    doc = ecs(1, 0, "ET POLICY apt User-Agent", host="webserver", module="suricata")
    doc["host"]["ip"] = ["172.19.130.68"]
    e = normalize(doc).entities
    assert (e.hosts, e.ips, e.host_ips, e.watched) == (
        ("webserver",),
        ("172.19.130.68",),
        ("172.19.130.68",),
        (),
    )
