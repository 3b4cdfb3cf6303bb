"""Turn a correlated cluster into an `Incident` with its explanation and priority."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict

from agent.attack import ordered
from agent.correlate import Cluster, host_of
from agent.models import Alert, AlertGroup, Explanation, Incident
from agent.prioritise import Baseline, PriorityConfig, prioritise


def incident_id_for(first_alert_id: str) -> str:
    """Stable across runs: the same first alert always names the same incident."""
    return "INC-" + hashlib.sha256(first_alert_id.encode()).hexdigest()[:12]


def groups_of(alerts: list[Alert]) -> list[AlertGroup]:
    """Repeats of one rule on one host, collapsed into counts with first and last seen."""
    by_key: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for a in alerts:
        by_key[(a.rule_id, host_of(a))].append(a)
    groups = [
        AlertGroup(
            rule_id=rule_id,
            rule_name=items[0].rule_name,
            host=host,
            count=len(items),
            first_seen=items[0].timestamp,
            last_seen=items[-1].timestamp,
            sample_alert_id=items[0].id,
            severity=max(items, key=lambda a: a.risk_score).severity,
            sensor=items[0].sensor,
        )
        for (rule_id, host), items in by_key.items()
    ]
    return sorted(groups, key=lambda g: (g.first_seen, g.rule_id))


def _unique(values: list[str], limit: int = 50) -> list[str]:
    return list(dict.fromkeys(values))[:limit]


def build_incident(
    cluster: Cluster, baseline: Baseline, cfg: PriorityConfig | None = None
) -> Incident:
    alerts = cluster.alerts
    priority, factors = prioritise(alerts, baseline, cfg)
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(alerts)]
    groups = groups_of(alerts)
    tactics = ordered([t for a in alerts for t in a.tactics])
    top = max(groups, key=lambda g: (g.severity != "low", baseline.rarity(g.rule_id), g.count))
    hosts = _unique([h for a in alerts for h in a.entities.hosts])
    title = f"{top.rule_name} on {top.host}"
    if len(groups) > 1:
        title += f" (+{len({g.rule_id for g in groups}) - 1} related rule(s))"
    return Incident(
        incident_id=incident_id_for(alerts[0].id),
        alert_ids=[a.id for a in alerts],
        priority=priority,
        title=title[:200],
        first_seen=alerts[0].timestamp,
        last_seen=alerts[-1].timestamp,
        hosts=hosts,
        users=_unique([u for a in alerts for u in a.entities.users]),
        ips=_unique([i for a in alerts for i in a.entities.ips]),
        tactics=tactics,
        techniques=_unique(sorted({t for a in alerts for t in a.techniques})),
        groups=groups,
        explanation=Explanation(
            links=cluster.links,
            max_gap_seconds=max(gaps, default=0.0),
            tactic_progression=tactics,
            sensors=sorted({a.sensor for a in alerts}),
            priority_factors=factors,
        ),
    )
