"""Repeats of a document are normalised once, and exactly as if they had been normalised fully."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent import repeats
from agent.models import raw_json
from agent.normalize import NormalizeError, alert_id, normalise_fully
from agent.repeats import Repeats, mask_volatile
from tests.conftest import ecs
from tests.unit.test_normalize import elastic_doc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def counted() -> tuple[Repeats, list[dict[str, Any]]]:
    """A memo whose full normalisations are recorded."""
    calls: list[dict[str, Any]] = []

    def normalise(doc: dict[str, Any], raw: bytes | None) -> Any:
        calls.append(doc)
        return normalise_fully(doc, raw)

    return Repeats(normalise, alert_id, raw_json), calls


def example_docs() -> list[dict[str, Any]]:
    """The demo's documents, its deliberately broken lines included (they must fail alike)."""
    elastic = [parsed(line) for line in (EXAMPLES / "demo-elastic.ndjson").open()]
    wazuh = json.loads((EXAMPLES / "demo-wazuh.json").read_text())
    docs = [d for d in elastic + wazuh[:300] if isinstance(d, dict)]
    return [*docs, elastic_doc(), ecs(1, 0, "Port scan"), named_by_message(1)]


def named_by_message(i: int, text: str = "Port scan from 203.0.113.9") -> dict[str, Any]:
    """An ECS alert with no rule name or action: its message names its rule."""
    doc = ecs(i, 0, "unused")
    del doc["rule"]
    return {**doc, "message": text}


def wazuh_line(i: int, syslog_time: str, fired: int) -> dict[str, Any]:
    """A Wazuh sshd alert as the manager writes each one: its own id, time, counter and line."""
    return {
        "timestamp": f"2026-01-05T10:00:0{i}.000+0000",
        "id": f"1767607200.{i}",
        "rule": {"level": 5, "description": "sshd: authentication failed.", "id": "5716"},
        "agent": {"id": "001", "name": "web-01", "ip": "10.0.0.5"},
        "rule.firedtimes": fired,
        "predecoder": {"program_name": "sshd", "timestamp": syslog_time},
        "full_log": f"{syslog_time} web-01 sshd[81{i}]: Failed password for root from 203.0.113.9",
        "data": {"srcip": "203.0.113.9", "dstuser": "root"},
        "decoder": {"name": "sshd"},
    }


def parsed(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def outcome(normalise: Any, doc: dict[str, Any]) -> Any:
    try:
        return normalise(doc)
    except NormalizeError as exc:
        return f"rejected: {exc}"


def retimed(doc: dict[str, Any], k: int) -> dict[str, Any]:
    """The same document with every id and time field it holds set anew."""
    stamp = f"2026-01-0{1 + k % 9}T0{k % 10}:00:00Z"
    return revalued(
        doc,
        lambda path: (
            {"n": k}  # what no normaliser reads may even become an object
            if path in repeats.UNREAD_PATHS and k % 2
            else stamp
            if "time" in path
            else f"id-{k}"
        ),
    )


def revalued(doc: dict[str, Any], value_of: Any) -> dict[str, Any]:
    """A copy of the document with each field it holds that a repeat may change (as a dotted
    key, or nested key by key) set to `value_of(path)`."""
    out = copy.deepcopy(doc)
    for path in repeats.VOLATILE_PATHS + repeats.UNREAD_PATHS:
        node, *rest = path.split(".")
        holder: Any = out
        if path in holder:
            holder[path] = value_of(path)
            continue
        while rest and isinstance(holder.get(node), dict):
            holder, node = holder[node], rest.pop(0)
        if not rest and node in holder:
            holder[node] = value_of(path)
    return out


def test_every_format_normalises_the_same_through_the_memo() -> None:
    memo, calls = counted()
    docs = example_docs()
    for k in range(3):
        for doc in docs:
            doc = retimed(doc, k) if k else doc
            want = outcome(lambda d: normalise_fully(d, None)[0], doc)
            assert outcome(lambda d: memo.fields(d, None), doc) == want
    assert len(calls) < len(docs) * 3  # repeats were served from the memo


def test_a_repeat_is_served_without_normalising_and_keeps_its_own_id_time_and_raw() -> None:
    memo, calls = counted()
    first = ecs(1, 0, "Port scan")
    memo.fields(first, b"first")
    again = memo.fields(ecs(2, 30, "Port scan"), b"second")
    assert len(calls) == 1
    assert again["id"] == "a2" and again["raw_json"] == b"second"
    assert again["timestamp"] == normalise_fully(ecs(2, 30, "Port scan"), None)[0]["timestamp"]
    memo.fields(ecs(3, 0, "Port scan", host="other"), None)  # anything else differs: a miss
    assert len(calls) == 2


@pytest.mark.parametrize(
    "doc",
    [
        ecs(1, 0, "r", **{"event.id": "flat-and-nested"}),  # one path set in two places
        ecs(1, 0, "r", id={"nested": "object"}),  # an object where an id goes
        ecs(1, 0, "r", timestamp=["a", "list"]),
    ],
)
def test_ambiguous_ids_or_times_take_the_full_path(doc: dict[str, Any]) -> None:
    assert mask_volatile(doc) is None
    memo, calls = counted()
    assert memo.fields(doc, None) == normalise_fully(doc, None)[0]
    assert memo.fields(doc, None) == normalise_fully(doc, None)[0]
    assert len(calls) == 2


def test_ids_and_times_that_fall_through_read_as_without_the_memo() -> None:
    memo, _ = counted()
    wazuh = {"rule": {"level": 5, "description": "d", "id": "1"}, "agent": {"name": "h"}}
    cases = [
        elastic_doc(),
        elastic_doc(**{"kibana.alert.original_time": None}),  # Elastic falls back to @timestamp
        elastic_doc(**{"kibana.alert.uuid": "  "}),  # a blank id: the next one
        elastic_doc(**{"kibana.alert.uuid": None}),
        {**wazuh, "timestamp": "2026-01-01T00:00:00+0000", "id": "17"},
        {**wazuh, "timestamp": None, "@timestamp": "2026-01-02T00:00:00Z", "id": "18"},
        {**wazuh, "timestamp": "2026-01-03T00:00:00+0000"},  # no id: the content hash
        {**wazuh, "timestamp": "2026-01-04T00:00:00+0000"},
    ]
    for doc in cases * 2:
        assert memo.fields(doc, None) == normalise_fully(doc, None)[0]


def test_a_bad_time_on_a_repeat_fails_as_it_would_without_the_memo() -> None:
    memo, _ = counted()
    memo.fields(ecs(1, 0, "r"), None)
    bad = ecs(2, 0, "r") | {"@timestamp": "yesterday"}
    with pytest.raises(NormalizeError) as direct:
        normalise_fully(bad, None)
    with pytest.raises(NormalizeError) as memoised:
        memo.fields(bad, None)
    assert str(memoised.value) == str(direct.value)


def test_a_feed_without_repeats_stops_building_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    real = repeats.mask_volatile
    monkeypatch.setattr(repeats, "mask_volatile", lambda doc: built.append(1) or real(doc))
    memo, _ = counted()
    for i in range(repeats.WINDOW + 100):
        memo.fields(ecs(i, 0, f"rule {i}"), None)
    assert len(built) == repeats.WINDOW  # then paused


def test_the_memo_keeps_no_raw_document_and_bounds_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(repeats, "MAX_KEY_BYTES", 4000)
    memo, _ = counted()
    big = ecs(1, 0, "r", note="x" * 1500)
    memo.fields(big, b"raw of the first")
    assert memo.fields(ecs(2, 0, "r", note="x" * 1500), None)["raw_json"] != b"raw of the first"
    assert memo.entries() == 1
    kept = [entry[0] for entry in memo._entries.values()]
    assert not any({"id", "timestamp", "message", "raw_json"} & stable.keys() for stable in kept)
    memo.fields(ecs(3, 0, "r2", note="y" * 1500), None)
    assert memo.entries() == 2
    memo.fields(ecs(4, 0, "r3", note="z" * 1500), None)  # past 4,000 bytes of keys: started anew
    assert memo.entries() == 1


def test_a_repeat_with_its_own_syslog_line_and_counter_is_served_with_its_own_message() -> None:
    memo, calls = counted()
    lines = [wazuh_line(i, f"Jan  5 10:00:0{i}", fired=i + 1) for i in range(3)]
    got = [memo.fields(doc, None) for doc in lines]
    assert len(calls) == 1  # the second and third were recognised as repeats
    assert got == [normalise_fully(doc, None)[0] for doc in lines]
    assert [g["message"] for g in got] == [doc["full_log"] for doc in lines]
    assert len({g["message"] for g in got}) == 3


@pytest.mark.parametrize(
    "doc",
    [
        {**wazuh_line(1, "Jan  5 10:00:01", 1), "full_log": ""},  # empty: the description
        {**wazuh_line(1, "Jan  5 10:00:01", 1), "full_log": None},
        {**wazuh_line(1, "Jan  5 10:00:01", 1), "full_log": 404},  # a number: as text
        elastic_doc(**{"kibana.alert.reason": " "}),  # blank: the message field
        ecs(1, 0, "r", message="  padded  "),
        ecs(1, 0, "Scan::Port_Scan", message=" ") | {"rule": {"name": "s", "description": "15"}},
    ],
)
def test_a_repeat_s_message_falls_back_as_the_full_path_s_does(doc: dict[str, Any]) -> None:
    memo, calls = counted()
    first = copy.deepcopy(doc)  # the memo learns the document from one with text in its message
    for key in ("message", "full_log", "kibana.alert.reason"):
        if doc.get(key) is not None:  # a null is kept in the key: it tells formats apart
            first[key] = "seen first"
    memo.fields(first, None)
    assert memo.fields(doc, None) == normalise_fully(doc, None)[0]
    assert len(calls) == 1


def test_an_alert_named_by_its_message_is_never_taken_for_a_repeat() -> None:
    memo, calls = counted()
    docs = [named_by_message(i, f"Port scan from 203.0.113.{i}") for i in range(3)]
    got = [memo.fields(doc, None) for doc in docs]
    assert got == [normalise_fully(doc, None)[0] for doc in docs]
    assert len({g["rule_name"] for g in got}) == 3
    assert len(calls) == 3


def suricata_event(i: int, src_ip: str = "203.0.113.9") -> dict[str, Any]:
    """A Suricata alert through Wazuh: each connection has its own flow, ports and counters."""
    return {
        "timestamp": f"2026-01-05T10:00:0{i}.000+0000",
        "id": f"1767607200.{i}",
        "rule": {"level": 3, "description": "Suricata: Alert - ET SCAN", "id": "86601"},
        "agent": {"id": "001", "name": "inetfw", "ip": "10.0.0.1"},
        "decoder": {"name": "json"},
        "data": {
            "timestamp": f"2026-01-05T10:00:0{i}.123456+0000",
            "flow_id": f"14103191230083{i}",
            "src_ip": src_ip,
            "src_port": str(40000 + i),
            "dest_ip": "10.0.0.5",
            "dest_port": "22",
            "community_id": f"1:abc{i}=",
            "tx_id": i,
            "alert": {"signature": "ET SCAN Potential SSH Scan", "signature_id": "2001219"},
            "flow": {"pkts_toserver": str(i + 1), "start": f"2026-01-05T10:00:0{i}Z"},
        },
    }


def test_connections_of_one_suricata_alert_are_repeats_and_a_new_address_is_not() -> None:
    memo, calls = counted()
    events = [suricata_event(i) for i in range(3)]
    events[2]["data"]["flow"] = None  # nothing reads it, whatever it holds
    got = [memo.fields(doc, None) for doc in events]
    assert got == [normalise_fully(doc, None)[0] for doc in events]
    assert len(calls) == 1
    other = suricata_event(3, src_ip="198.51.100.7")  # a field read for an entity: not a repeat
    assert memo.fields(other, None) == normalise_fully(other, None)[0]
    assert "198.51.100.7" in memo.fields(other, None)["entities"].ips
    assert len(calls) == 2
