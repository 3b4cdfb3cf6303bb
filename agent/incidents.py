"""Turn a correlated cluster into an `Incident` with its explanation and priority."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict

from agent.attack import ordered
from agent.correlate import Cluster, host_of
from agent.models import Alert, AlertGroup, EntityLink, Explanation, Incident, distinct_entities
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
    cluster: Cluster,
    baseline: Baseline,
    cfg: PriorityConfig | None = None,
    *,
    extends: Incident | None = None,
    prior: list[Alert] | None = None,
) -> Incident:
    """A new incident from a cluster, or `extends` grown by it (`prior`: its stored alerts)."""
    new_alerts = cluster.alerts
    alerts = (  # a cluster's alerts come in time order already
        sorted([*prior, *new_alerts], key=lambda a: (a.timestamp, a.id)) if prior else new_alerts
    )
    old = extends
    priority, factors = prioritise(
        alerts,
        baseline,
        cfg,
        count=len(old.alert_ids) + len(new_alerts) if old else None,
        entities=[*old.hosts, *old.users] if old else (),
    )
    gaps = _gaps(new_alerts, old)
    links, more_links = _capped_links(old, cluster.links)
    groups = _merge_groups(extends.groups if extends else [], groups_of(new_alerts))
    # Alerts of one run share their entities, tactics and techniques objects: reading those once
    # each instead of once per alert is most of building an incident of 100,000 alerts.
    entities = distinct_entities(alerts)
    marks = {(a.tactics, a.techniques) for a in alerts}
    tactics = ordered([t for ts, _ in marks for t in ts] + (extends.tactics if extends else []))
    top = max(groups, key=lambda g: (g.severity != "low", baseline.rarity(g.rule_id), g.count))
    title = f"{top.rule_name} on {top.host}"
    if len({g.rule_id for g in groups}) > 1:
        title += f" (+{len({g.rule_id for g in groups}) - 1} related rule(s))"
    return Incident(
        incident_id=old.incident_id if old else incident_id_for(alerts[0].id),
        alert_ids=[*(old.alert_ids if old else []), *(a.id for a in new_alerts)],
        priority=priority,
        title=title[:200],
        first_seen=min(alerts[0].timestamp, old.first_seen) if old else alerts[0].timestamp,
        last_seen=max(alerts[-1].timestamp, old.last_seen) if old else alerts[-1].timestamp,
        hosts=_unique([*(old.hosts if old else []), *(h for e in entities for h in e.hosts)]),
        users=_unique([*(old.users if old else []), *(u for e in entities for u in e.users)]),
        ips=_unique([*(old.ips if old else []), *(i for e in entities for i in e.ips)]),
        tactics=tactics,
        techniques=_unique(sorted({t for _, ts in marks for t in ts})),
        groups=groups,
        explanation=Explanation(
            links=links,
            more_links=more_links,
            max_gap_seconds=max(gaps, default=0.0),
            tactic_progression=tactics,
            sensors=sorted({a.sensor for a in alerts}),
            priority_factors=factors,
            background=all(r.background for r in cluster.runs)
            and (old.explanation.background if old else True),
        ),
        proposal_ids=list(old.proposal_ids) if old else [],
    )


MAX_LINKS = 40


def _capped_links(old: Incident | None, new: list[EntityLink]) -> tuple[list[EntityLink], int]:
    """The first links (how the incident began) and the latest, with a count of the rest: an
    incident extended all day would otherwise carry every pair of alerts that ever linked."""
    links = [*(old.explanation.links if old else []), *new]
    more = old.explanation.more_links if old else 0
    if len(links) <= MAX_LINKS:
        return links, more
    half = MAX_LINKS // 2
    return [*links[:half], *links[-half:]], more + len(links) - MAX_LINKS


def _gaps(new_alerts: list[Alert], old: Incident | None) -> list[float]:
    """Time gaps between consecutive alerts. An extension keeps the old incident's largest gap
    and adds the new alerts' own, and the step from its last alert to them (the stored sample
    is too sparse to measure gaps on)."""
    times = [a.timestamp for a in new_alerts]  # a cluster's alerts are in time order
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    if old is not None:
        gaps.append(old.explanation.max_gap_seconds)
        if times and times[0] > old.last_seen:
            gaps.append((times[0] - old.last_seen).total_seconds())
    return gaps


def _merge_groups(old: list[AlertGroup], new: list[AlertGroup]) -> list[AlertGroup]:
    """Counts of one rule on one host add up across batches."""
    by_key = {(g.rule_id, g.host): g for g in old}
    for g in new:
        prev = by_key.get((g.rule_id, g.host))
        if prev is None:
            by_key[(g.rule_id, g.host)] = g
        else:
            by_key[(g.rule_id, g.host)] = prev.model_copy(
                update={
                    "count": prev.count + g.count,
                    "first_seen": min(prev.first_seen, g.first_seen),
                    "last_seen": max(prev.last_seen, g.last_seen),
                }
            )
    return sorted(by_key.values(), key=lambda g: (g.first_seen, g.rule_id))
