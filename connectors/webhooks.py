"""Inbound SIEM webhook bodies -> alert documents that `agent.normalize` understands.

Each parser is lenient about the envelope (SIEM authors write these bodies by hand) and strict
about what comes out: a list of JSON objects, and `NotAnAlert` for each item of a list that holds
none (it becomes a dead letter; the rest of the batch is kept). A body that yields nothing at
all raises `BadInput`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.errors import BadInput
from agent.normalize import severity_word


@dataclass(frozen=True, slots=True)
class NotAnAlert:
    """An item of a body's list that holds no alert, and why."""

    value: Any
    reason: str


Item = dict[str, Any] | NotAnAlert
Parser = Callable[[Any], list[Item]]


def _objects(items: Iterable[Any]) -> list[Item]:
    """A list's items: its objects, and what else it holds as `NotAnAlert`."""
    return [_object(d) for d in items]


def _object(value: Any) -> Item:
    if isinstance(value, dict):
        return value
    return NotAnAlert(value, f"expected a JSON object, got {type(value).__name__}")


def _looks_like_alert(d: Any) -> bool:
    if not isinstance(d, dict):
        return False
    return any(k.startswith("kibana.alert") or k in ("@timestamp", "kibana") for k in d) or (
        isinstance(d.get("rule"), dict) and "level" in d["rule"]
    )


def _search_hits(body: dict[str, Any]) -> list[Any] | None:
    """A search response's hits: what a Watcher webhook action posts as `ctx.payload`, or a
    script as the search's answer. Each is a hit wrapping its alert (`_index`, `_id`,
    `_source`), which triage reads as such."""
    hits = body.get("hits")
    inner = hits.get("hits") if isinstance(hits, dict) else None
    return inner if isinstance(inner, list) else None


def _maybe_json(value: Any) -> Any:
    """`{{context.alerts}}` wrapped in quotes arrives as a JSON string: decode it."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def parse_elastic(body: Any) -> list[Item]:
    """Kibana webhook connector: find the alert documents wherever the author put them."""
    body = _maybe_json(body)
    if isinstance(body, list):
        return _objects(body)
    if _looks_like_alert(body):
        return [body]
    if isinstance(body, dict):
        hits = _search_hits(body)
        if hits is not None:
            return _objects(hits)
        for key in ("alerts", "context.alerts", "signals", "body", "payload"):
            found = _maybe_json(body.get(key))
            if isinstance(found, list):
                return _objects(found)
            if isinstance(found, dict):
                return parse_elastic(found)
        context = body.get("context")
        if isinstance(context, dict):
            return parse_elastic(context)
    raise BadInput("no alert documents found in the Kibana webhook body")


def parse_wazuh(body: Any) -> list[Item]:
    """A raw Wazuh alert, or the integration envelope (`payload.all_fields`); or a list of them."""
    if isinstance(body, list):
        return [_wazuh_item(item) for item in body]
    return [_wazuh_alert(body)]


def _wazuh_item(item: Any) -> Item:
    try:
        return _wazuh_alert(item)
    except BadInput as exc:
        return NotAnAlert(item, str(exc))


def _wazuh_alert(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("a Wazuh webhook body must be a JSON object")
    if isinstance(body.get("rule"), dict):
        return body
    for path in (("payload", "all_fields"), ("all_fields",), ("payload",)):
        node: Any = body
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("rule"), dict):
            return node
    raise BadInput("no Wazuh alert (rule.level) found in the body")


def _stable_id(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def parse_splunk(body: Any) -> list[Item]:
    """Splunk's webhook alert action: one result row plus the search's name and link."""
    if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        raise BadInput("a Splunk webhook body needs a 'result' object")
    r = body["result"]
    when = r.get("_time")
    # Epoch seconds, as Splunk sends them: the normaliser reads and bounds them (a time out of
    # range becomes a dead letter, not an error of the whole batch).
    stamp: float | str = (
        float(when)
        if isinstance(when, int | float)
        or (isinstance(when, str) and when.replace(".", "", 1).isdigit())
        else datetime.now(UTC).isoformat()
    )
    doc: dict[str, Any] = {
        "@timestamp": stamp,
        "event": {
            "id": f"splunk-{_stable_id(body.get('sid'), r)}",
            "kind": "alert",
            "module": "splunk",
        },
        "rule": {
            "name": body.get("search_name") or f"Splunk alert ({body.get('sid', '?')})",
            "id": str(body.get("search_name") or body.get("sid") or "splunk"),
        },
        "message": str(body.get("results_link") or ""),
    }
    for src, dst, key in SPLUNK_FIELDS:
        value = r.get(src)
        if isinstance(value, str) and value.strip():
            if key == "ip" and not _is_ip(value):
                key = "domain"  # CIM's src and dest are often host names
            doc.setdefault(dst, {}).setdefault(key, value.strip())
    severity = r.get("urgency") or r.get("severity")  # Splunk ES notables; CIM
    if isinstance(severity, str) and severity_word(severity) is not None:
        doc["rule"]["severity"] = severity.strip()  # a word of its own is left out, not refused
    return [doc]


#: A result's CIM fields and where they go in the alert (the first present wins).
SPLUNK_FIELDS = (
    ("host", "host", "name"),
    ("src_ip", "source", "ip"),
    ("src", "source", "ip"),
    ("dest_ip", "destination", "ip"),
    ("dest", "destination", "ip"),
    ("user", "user", "name"),
    ("src_user", "user", "name"),
)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def parse_grafana(body: Any) -> list[Item]:
    """Grafana alerting: one document per firing alert."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise BadInput("a Grafana webhook body needs an 'alerts' list")
    docs: list[Item] = []
    for a in body["alerts"]:
        if not isinstance(a, dict):
            docs.append(_object(a))
            continue
        raw_labels, raw_notes = a.get("labels"), a.get("annotations")
        labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        notes: dict[str, Any] = raw_notes if isinstance(raw_notes, dict) else {}
        name = str(labels.get("alertname") or "Grafana alert")
        doc: dict[str, Any] = {
            "@timestamp": a.get("startsAt") or datetime.now(UTC).isoformat(),
            "event": {
                "id": f"grafana-{a.get('fingerprint') or _stable_id(labels)}-{a.get('startsAt')}",
                "kind": "alert",
                "module": "grafana",
            },
            "rule": {"name": name, "id": name},
            "message": str(notes.get("summary") or notes.get("description") or ""),
        }
        severity = str(labels.get("severity", "")).lower()
        if severity in ("low", "medium", "high", "critical"):
            doc["rule"]["severity"] = severity
        host = labels.get("host") or labels.get("instance")
        name = _without_port(host) if isinstance(host, str) else ""
        if name:
            doc["host"] = {"name": name}
        docs.append(doc)
    if not docs:
        raise BadInput("the Grafana body holds no alert")
    return docs


def _without_port(instance: str) -> str:
    """Prometheus' `instance` label is the scraped target, `node1:9100` or `[::1]:9100`: the
    host is the name other sensors give it, without the exporter's port."""
    text = instance.strip()
    if text.startswith("[") and "]" in text:
        return text[1 : text.index("]")]
    name, sep, port = text.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else text


def parse_generic(body: Any) -> list[Item]:
    """One ECS alert, or a list of them, or a search response's hits."""
    if isinstance(body, dict):
        hits = _search_hits(body)
        return [body] if hits is None else _objects(hits)
    if isinstance(body, list):
        return _objects(body)
    raise BadInput("expected an ECS alert object or a list of them")


PARSERS: dict[str, Parser] = {
    "elastic": parse_elastic,
    "wazuh": parse_wazuh,
    "splunk": parse_splunk,
    "grafana": parse_grafana,
    "generic": parse_generic,
}
