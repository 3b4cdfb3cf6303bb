"""Deterministic correlation: alerts -> clusters of alerts that tell one story.

1. Repeats of one rule on one host collapse into a *run* (count, first and last seen).
2. A rule that fires on a host through most of the period is *background*: all its runs there
   collapse into one run that links to nothing, so a noisy rule cannot glue a host's day together.
3. Other runs link when they share an entity within a time window. Entities seen with many hosts
   (a DNS server, a proxy) are *hubs* and link nothing.
4. Runs of one rule starting on several hosts within a couple of minutes link too: that is one
   *sweep* (a scan, a password spray, a worm), not one story per host.
5. Linked runs form a cluster; each cluster records what linked which alerts.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.models import Alert, Entities, EntityKind, EntityLink

MAX_LINK_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    repeat_gap: float = 1800.0
    link_window: float = 3600.0
    hub_min_hosts: int = 8
    background_min_hours: int = 12
    background_hour_share: float = 0.25
    burst_factor: float = 5.0
    burst_min: int = 20
    sweep_window: float = 120.0  # seconds between the first and last host a sweep reaches
    sweep_min_hosts: int = 3


@dataclass(slots=True)
class Run:
    """Consecutive alerts of one rule on one host."""

    rule_id: str
    host: str
    alerts: list[Alert]
    first: float
    last: float
    background: bool = False
    #: Its alerts' distinct entity sets (alerts of one host mostly share one `Entities`).
    entities: dict[int, Entities] = field(default_factory=dict)
    #: Its alerts' times as numbers, converted once here for every later reader.
    times: list[float] = field(default_factory=list)

    def add(self, alert: Alert, ts: float) -> None:
        self.alerts.append(alert)
        self.times.append(ts)
        self.last = ts
        self.entities.setdefault(id(alert.entities), alert.entities)


@dataclass(slots=True)
class Cluster:
    runs: list[Run]
    alerts: list[Alert]  # in time order
    times: list[float]  # the alerts' times as numbers
    links: list[EntityLink] = field(default_factory=list)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def host_of(alert: Alert) -> str:
    hosts = alert.entities.hosts
    return hosts[0] if hosts else "-"


def build_runs(
    alerts: Iterable[Alert], cfg: CorrelationConfig
) -> tuple[list[Run], list[tuple[float, Alert, int]]]:
    """Collapse repeats, then fold background rules into one run per rule and host. Returns the
    runs, and every alert in time order with its time and the index of its run.

    A burst of a background rule (an hour far above its usual rate) is not background: a
    scanner hammering a web server trips the same rule as the daily noise, only much harder.
    """
    # Each alert's time as a number, once: the loops below would otherwise convert it 3 times.
    ordered = sorted(((a.timestamp.timestamp(), a.id, a) for a in alerts), key=_TIME_THEN_ID)
    if not ordered:
        return [], []
    t0, t1 = ordered[0][0], ordered[-1][0]
    span_hours = max(1, math.ceil((t1 - t0) / 3600))
    per_hour: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for ts, _, a in ordered:
        per_hour[(a.rule_id, host_of(a))][int(ts // 3600)] += 1
    background: dict[tuple[str, str], set[int]] = {}  # key -> its burst hours
    for key, hours in per_hour.items():
        if (
            span_hours >= cfg.background_min_hours
            and len(hours) >= cfg.background_hour_share * span_hours
        ):
            usual = statistics.median(hours.values())
            background[key] = {
                h for h, n in hours.items() if n > max(cfg.burst_min, cfg.burst_factor * usual)
            }
    runs: list[Run] = []
    placed: list[tuple[float, Alert, int]] = []
    open_runs: dict[tuple[str, str, bool], int] = {}
    for ts, _, a in ordered:
        key = (a.rule_id, host_of(a))
        bursts = background.get(key)
        quiet = bursts is not None and int(ts // 3600) not in bursts
        i = open_runs.get((*key, quiet))
        if i is None or not (quiet or ts - runs[i].last <= cfg.repeat_gap):
            i = len(runs)
            runs.append(Run(a.rule_id, key[1], [], ts, ts, background=quiet))
            open_runs[(*key, quiet)] = i
        runs[i].add(a, ts)
        placed.append((ts, a, i))
    return runs, placed


_TIME_THEN_ID = operator.itemgetter(0, 1)


def _hubs(runs: list[Run], cfg: CorrelationConfig) -> set[tuple[EntityKind, str]]:
    """Entities that co-occur with many hosts: infrastructure, not evidence of one story."""
    hosts_of: dict[tuple[EntityKind, str], set[str]] = defaultdict(set)
    for run in runs:
        for entities in run.entities.values():
            for pair in entities.pairs():
                if pair[0] is not EntityKind.host:
                    hosts_of[pair].add(run.host)
    return {pair for pair, hosts in hosts_of.items() if len(hosts) >= cfg.hub_min_hosts}


def _sweeps(runs: list[Run], cfg: CorrelationConfig) -> list[list[int]]:
    """Runs of one rule whose first alerts fall within `sweep_window` of each other on at least
    `sweep_min_hosts` hosts. Background runs never sweep: a rule that fires everywhere all day
    is noise, not a campaign."""
    by_rule: dict[str, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):  # runs come in the order of their first alert
        if not run.background:
            by_rule[run.rule_id].append(i)
    found: list[list[int]] = []
    for members in by_rule.values():
        start = 0
        for k in range(1, len(members) + 1):
            if k < len(members) and runs[members[k]].first - runs[members[start]].first <= (
                cfg.sweep_window
            ):
                continue
            group = members[start:k]
            if len({runs[i].host for i in group}) >= cfg.sweep_min_hosts:
                found.append(group)
            start = k
    return found


def _run_entities(run: Run) -> dict[tuple[EntityKind, str], None]:
    """The run's distinct entities in first-seen order (a set's order would change with the
    process's string hashing, and with it the order of an incident's links)."""
    keys: dict[tuple[EntityKind, str], None] = {}
    for entities in run.entities.values():
        keys.update(dict.fromkeys(entities.pairs()))
    return keys


def correlate(alerts: Iterable[Alert], cfg: CorrelationConfig | None = None) -> list[Cluster]:
    """Group alerts into clusters; every alert lands in exactly one cluster."""
    cfg = cfg or CorrelationConfig()
    runs, placed = build_runs(alerts, cfg)
    hubs = _hubs(runs, cfg)
    uf = _UnionFind(len(runs))
    by_entity: dict[tuple[EntityKind, str], list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        if run.background:
            continue
        for key in _run_entities(run):
            if key not in hubs:
                by_entity[key].append(i)
    link_hits: dict[tuple[EntityKind, str], list[int]] = {}
    for key, members in by_entity.items():
        members.sort(key=lambda i: runs[i].first)
        reach = runs[members[0]].last
        linked = [members[0]]
        for prev, cur in itertools.pairwise(members):
            if runs[cur].first - reach <= cfg.link_window:
                uf.union(prev, cur)
                linked.append(cur)
            reach = max(reach, runs[cur].last)
        if len(linked) > 1:
            link_hits[key] = linked
    sweeps = _sweeps(runs, cfg)
    for members in sweeps:
        for i in members[1:]:
            uf.union(members[0], i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(runs)):
        groups[uf.find(i)].append(i)
    clusters: dict[int, Cluster] = {
        root: Cluster([runs[i] for i in members], [], []) for root, members in groups.items()
    }
    bucket = [clusters[uf.find(i)] for i in range(len(runs))]
    for ts, a, i in placed:  # each cluster's alerts in time order, without sorting them again
        cluster = bucket[i]
        cluster.alerts.append(a)
        cluster.times.append(ts)
    for (kind, value), members in link_hits.items():
        cluster = clusters[uf.find(members[0])]
        ids = [runs[i].alerts[0].id for i in members]
        if len({runs[i].rule_id for i in members}) > 1 or len(ids) > 1:
            cluster.links.append(
                EntityLink(kind=kind, value=value, alert_ids=ids[:MAX_LINK_SAMPLE])
            )
    for members in sweeps:
        ids = [runs[i].alerts[0].id for i in members]
        clusters[uf.find(members[0])].links.append(
            EntityLink(kind="rule", value=runs[members[0]].rule_id, alert_ids=ids[:MAX_LINK_SAMPLE])
        )
    return sorted(clusters.values(), key=lambda c: (c.runs[0].first, c.runs[0].alerts[0].id))
