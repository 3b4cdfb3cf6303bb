"""Across runs: a new batch extends the open incident it belongs to instead of opening another.

A cluster joins an open incident when they share a host or a user and the incident's last alert
is within the link window of the cluster's first; a routine rule's background stream only
extends the background incident of the same rule and host. Addresses do not link across runs:
without the whole history, a shared server address is too likely to be infrastructure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.correlate import Cluster, CorrelationConfig
from agent.incidents import build_incident
from agent.models import Alert, Incident
from agent.prioritise import Baseline, PriorityConfig
from agent.store import Store


def build_incidents(
    clusters: list[Cluster],
    baseline: Baseline,
    store: Store | None,
    corr: CorrelationConfig,
    prio: PriorityConfig | None = None,
) -> list[Incident]:
    """Incidents for this batch: extended open ones (same id) and new ones."""
    if store is None or not clusters:
        return [build_incident(c, baseline, prio) for c in clusters]
    first = min(c.runs[0].first for c in clusters)
    since = datetime.fromtimestamp(first, tz=UTC) - timedelta(seconds=corr.link_window)
    open_incidents = store.open_incidents(since)
    taken: dict[str, Incident] = {}
    added: dict[str, list[Alert]] = {}  # alerts this batch already put in an extended incident
    out: list[Incident] = []
    for cluster in clusters:
        match = _match(cluster, open_incidents, corr)
        if match is None:
            out.append(build_incident(cluster, baseline, prio))
            continue
        current = taken.get(match.incident_id, match)
        prior = [*store.alerts_of(current.incident_id), *added.get(match.incident_id, [])]
        grown = build_incident(cluster, baseline, prio, extends=current, prior=prior)
        taken[match.incident_id] = grown
        added.setdefault(match.incident_id, []).extend(cluster.alerts)
    return out + list(taken.values())


def _match(
    cluster: Cluster, candidates: list[Incident], corr: CorrelationConfig
) -> Incident | None:
    background = all(r.background for r in cluster.runs)
    start = datetime.fromtimestamp(cluster.runs[0].first, tz=UTC)
    alerts = cluster.alerts
    hosts = {h for a in alerts for h in a.entities.hosts}
    users = {u for a in alerts for u in a.entities.users}
    streams = {(r.rule_id, r.host) for r in cluster.runs}
    best: Incident | None = None
    for inc in candidates:
        if (start - inc.last_seen).total_seconds() > corr.link_window:
            continue
        if background or inc.explanation.background:
            same = {(g.rule_id, g.host) for g in inc.groups}
            if not (background and inc.explanation.background and streams <= same):
                continue
        elif not (hosts & set(inc.hosts) or users & set(inc.users)):
            continue
        if best is None or inc.last_seen > best.last_seen:
            best = inc
    return best
