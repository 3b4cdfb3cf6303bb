"""Inbound SIEM webhook bodies -> alert documents that `agent.normalize` understands.

Each parser is lenient about the envelope (SIEM authors write these bodies by hand) and strict
about what comes out: a list of JSON objects. A body that yields none raises `BadInput`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.errors import BadInput

Parser = Callable[[Any], list[dict[str, Any]]]


def _looks_like_alert(d: Any) -> bool:
    if not isinstance(d, dict):
        return False
    return any(k.startswith("kibana.alert") or k in ("@timestamp", "kibana") for k in d) or (
        isinstance(d.get("rule"), dict) and "level" in d["rule"]
    )


def _maybe_json(value: Any) -> Any:
    """`{{context.alerts}}` wrapped in quotes arrives as a JSON string: decode it."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def parse_elastic(body: Any) -> list[dict[str, Any]]:
    """Kibana webhook connector: find the alert documents wherever the author put them."""
    body = _maybe_json(body)
    if isinstance(body, list):
        return [d for d in body if isinstance(d, dict)]
    if _looks_like_alert(body):
        return [body]
    if isinstance(body, dict):
        for key in ("alerts", "context.alerts", "signals", "body"):
            found = _maybe_json(body.get(key))
            if isinstance(found, list):
                return [d for d in found if isinstance(d, dict)]
            if isinstance(found, dict):
                return parse_elastic(found)
        context = body.get("context")
        if isinstance(context, dict):
            return parse_elastic(context)
    raise BadInput("no alert documents found in the Kibana webhook body")


def parse_wazuh(body: Any) -> list[dict[str, Any]]:
    """A raw Wazuh alert, or the integration envelope (`payload.all_fields`)."""
    if isinstance(body, list):
        return [d for item in body for d in parse_wazuh(item)]
    if not isinstance(body, dict):
        raise BadInput("a Wazuh webhook body must be a JSON object")
    if isinstance(body.get("rule"), dict):
        return [body]
    for path in (("payload", "all_fields"), ("all_fields",), ("payload",)):
        node: Any = body
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("rule"), dict):
            return [node]
    raise BadInput("no Wazuh alert (rule.level) found in the body")


def _stable_id(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def parse_splunk(body: Any) -> list[dict[str, Any]]:
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
    for src, dst in (
        ("host", "host"),
        ("src", "source"),
        ("src_ip", "source"),
        ("dest", "destination"),
        ("user", "user"),
    ):
        value = r.get(src)
        if isinstance(value, str) and value:
            key = "name" if dst in ("host", "user") else "ip"
            doc.setdefault(dst, {})[key] = value
    return [doc]


def parse_grafana(body: Any) -> list[dict[str, Any]]:
    """Grafana alerting: one document per firing alert."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise BadInput("a Grafana webhook body needs an 'alerts' list")
    docs = []
    for a in body["alerts"]:
        if not isinstance(a, dict):
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
        host = labels.get("instance") or labels.get("host")
        if isinstance(host, str):
            doc["host"] = {"name": host}
        docs.append(doc)
    if not docs:
        raise BadInput("the Grafana body holds no alert")
    return docs


def parse_generic(body: Any) -> list[dict[str, Any]]:
    """One ECS alert, or a list of them."""
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return [d for d in body if isinstance(d, dict)]
    raise BadInput("expected an ECS alert object or a list of them")


PARSERS: dict[str, Parser] = {
    "elastic": parse_elastic,
    "wazuh": parse_wazuh,
    "splunk": parse_splunk,
    "grafana": parse_grafana,
    "generic": parse_generic,
}
