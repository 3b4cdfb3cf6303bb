"""What the inbound parsers make of SIEM bodies, before triage reads them."""

from __future__ import annotations

from agent.normalize import normalize
from connectors.webhooks import parse_grafana


def grafana(labels: dict[str, str]) -> dict:
    return {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Node exporter down", **labels},
                "annotations": {"summary": "down"},
                "startsAt": "2026-01-05T09:00:00Z",
                "fingerprint": "f1",
            }
        ],
    }


def test_a_grafana_instance_names_its_host_without_the_exporters_port() -> None:
    """Prometheus' `instance` is the scraped target, `db-01:9100`: the alert's host was
    `db-01:9100`, which no other sensor's alert on db-01 shares."""
    for instance, host in (
        ("db-01:9100", "db-01"),
        ("[2001:db8::7]:9100", "2001:db8::7"),
        ("10.0.0.5:9182", "10.0.0.5"),
        ("db-01", "db-01"),
    ):
        (doc,) = parse_grafana(grafana({"instance": instance}))
        assert normalize(doc).entities.hosts == (host,), instance
    (doc,) = parse_grafana(grafana({"instance": "10.0.0.5:9100", "host": "db-01"}))
    assert normalize(doc).entities.hosts == ("db-01",)  # a host label says it outright
