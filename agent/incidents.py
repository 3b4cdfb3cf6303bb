"""Turn a correlated cluster into an `Incident` with its explanation and priority."""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from typing import NamedTuple

from agent.attack import ordered
from agent.baseline import Baseline
from agent.correlate import Cluster, claimed_addresses, host_of
from agent.models import (
    SEVERITY_RANK,
    Alert,
    AlertGroup,
    Entities,
    EntityKind,
    EntityLink,
    Explanation,
    Incident,
    Severity,
    all_fields_set,
    distinct,
    distinct_entities,
)
from agent.prioritise import PriorityConfig, prioritise, tactics_first_seen
from agent.streams import Stream, joined, streams_of_alerts, streams_of_runs

_id = operator.attrgetter("id")
_process_id = operator.attrgetter("process_id")
#: What playbook conditions read from each alert, as a row.
_evidence = operator.attrgetter("entities", "severity", "techniques")
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_third = operator.itemgetter(2)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What playbook conditions read from an incident's alerts: gathered while the incident is
    built, from its streams and entity sets, so proposing reads no alert again (a day's
    incidents hold hundreds of thousands) unless a playbook matches."""

    top_severity: int
    kinds: frozenset[str]
    techniques: frozenset[str]

    @classmethod
    def of(cls, alerts: list[Alert]) -> Evidence:
        """From the alerts themselves (an incident not built in this run)."""
        rows = list(map(_evidence, alerts))  # each alert read once: the passes are over memory
        return cls.made(
            distinct(list(map(_first, rows))),
            set(map(_second, rows)),
            {t for ts in set(map(_third, rows)) for t in ts},
        )

    @classmethod
    def of_streams(cls, streams: list[Stream], entities: list[Entities]) -> Evidence:
        """From what building the incident read: its streams and its distinct entity sets."""
        return cls.made(
            entities,
            set().union(*(s.severities for s in streams)),
            {t for s in streams for _, ts in s.marks for t in ts},
        )

    @classmethod
    def made(
        cls, entities: list[Entities], severities: set[Severity], techniques: set[str]
    ) -> Evidence:
        """From the distinct entity sets, severities and techniques, however gathered."""
        return cls(
            top_severity=max((SEVERITY_RANK[s] for s in severities), default=0),
            kinds=frozenset(k for k in EntityKind if any(e.of(k) for e in entities))
            | ({"source_ip"} if any(e.source_ips for e in entities) else set()),
            techniques=frozenset(techniques),
        )


class Assembled(NamedTuple):
    incident: Incident
    evidence: Evidence


def incident_id_for(first_alert_id: str) -> str:
    """Stable across runs: the same first alert always names the same incident."""
    return "INC-" + hashlib.sha256(first_alert_id.encode()).hexdigest()[:12]


def groups_of(streams: list[Stream]) -> list[AlertGroup]:
    """Repeats of one rule on one host, collapsed into counts with first and last seen."""
    groups = [
        all_fields_set(  # one a stream: one an alert where each alert has a host of its own
            AlertGroup(
                rule_id=s.rule_id,
                rule_name=s.first.rule_name,
                host=s.host,
                count=s.count,
                suppressed=s.suppressed,
                first_seen=s.first_seen,
                last_seen=s.last_seen,
                sample_alert_id=s.first.id,
                severity=s.top.severity,
                sensor=s.first.sensor,
            )
        )
        for s in streams
    ]
    return sorted(groups, key=lambda g: (g.first_seen, g.rule_id))


#: The sequences an incident remembers for later batches: the latest (a sequence's alerts are
#: written together, when it closes).
MAX_SEQUENCES = 50


#: The folding alerts an incident remembers (`Incident.folding`): the latest, as a SIEM folds
#: repeats into its latest alert of a rule and values.
MAX_FOLDING = 200


def _folding(old: Incident | None, new: list[Stream]) -> dict[str, int]:
    folding = dict(old.folding) if old else {}
    for s in new:
        folding.update(s.folding)
    if len(folding) > MAX_FOLDING:
        folding = dict(list(folding.items())[-MAX_FOLDING:])
    return folding


#: The process instances an incident remembers (`Incident.processes`): the latest.
MAX_PROCESSES = 200


def _processes(old: Incident | None, cluster: Cluster) -> list[tuple[str, str, str]]:
    """The process instances of the incident's alerts, the latest last: the cluster's, read
    back from its last alert until enough are found (an endpoint's feed names one in every
    alert), after the incident's. A background run links nothing: its alerts' are not kept."""
    if all(r.background for r in cluster.runs):
        return list(old.processes) if old else []
    latest: dict[tuple[str, str], str] = {}
    for alert in compress(reversed(cluster.alerts), map(_process_id, reversed(cluster.alerts))):
        key = (host_of(alert), alert.process_id or "")
        if key not in latest:
            names = alert.entities.processes
            latest[key] = names[0] if names else ""
            if len(latest) == MAX_PROCESSES:
                break
    found = {(p[0], p[1]): p[2] for p in old.processes} if old else {}
    for key in latest:  # moved after the incident's own
        found.pop(key, None)
    found.update(reversed(latest.items()))
    return [(host, pid, name) for (host, pid), name in list(found.items())[-MAX_PROCESSES:]]


#: The addresses an incident remembers its hosts by (`Incident.addresses`): the latest.
MAX_ADDRESSES = 64


def _addresses(old: Incident | None, cluster: Cluster) -> list[tuple[str, str]]:
    """Its hosts' own addresses (`correlate.claimed_addresses`), the latest last, after the
    incident's: a later batch's network alert on one is on that host."""
    found = {(a, h): None for a, h in old.addresses} if old else {}
    for pair in claimed_addresses(distinct_entities(cluster.alerts)):
        found.pop(pair, None)
        found[pair] = None
    return list(found)[-MAX_ADDRESSES:]


def _unique(values: Iterable[str], limit: int = 50) -> list[str]:
    return list(dict.fromkeys(values))[:limit]


def _latest(values: Iterable[str], limit: int) -> list[str]:
    """`_unique`, keeping the last ones."""
    return list(dict.fromkeys(values))[-limit:]


class Prior:
    """What an extended incident already holds, as `assemble` reads it: its stored alerts, then
    what earlier clusters of the batch added. Kept up to date cluster by cluster: re-reading all
    of them for each cluster made a batch that adds many clusters to one incident quadratic (a
    55-day file triaged into a store holding its last day: 70 s of priority instead of 2)."""

    def __init__(self, alerts: list[Alert]) -> None:
        self.streams: dict[tuple[str, str], Stream] = {}
        self.entities: list[Entities] = []  # distinct objects, in first-seen order
        self._seen: set[int] = set()
        self.add(alerts)

    def add(self, alerts: list[Alert]) -> None:
        """These alerts too, whenever they fired: as if all were read in one list sorted by time
        (`Stream.merged`)."""
        for s in streams_of_alerts(alerts):
            key = (s.rule_id, s.host)
            held = self.streams.get(key)
            self.streams[key] = s if held is None else held.merged(s)
        for e in distinct_entities(alerts):
            if id(e) not in self._seen:
                self._seen.add(id(e))
                self.entities.append(e)


def build_incident(
    cluster: Cluster,
    baseline: Baseline,
    cfg: PriorityConfig | None = None,
    *,
    extends: Incident | None = None,
    prior: list[Alert] | Prior | None = None,
) -> Incident:
    """A new incident from a cluster, or `extends` grown by it (`prior`: its stored alerts)."""
    return assemble(cluster, baseline, cfg, extends=extends, prior=prior).incident


def assemble(
    cluster: Cluster,
    baseline: Baseline,
    cfg: PriorityConfig | None = None,
    *,
    extends: Incident | None = None,
    prior: list[Alert] | Prior | None = None,
) -> Assembled:
    """`build_incident`, with the evidence playbooks read from all its alerts (`prior` and the
    cluster's)."""
    if isinstance(prior, list):
        prior = Prior(prior) if prior else None
    new_alerts = cluster.alerts  # in time order
    new = streams_of_runs(cluster.runs)
    streams = joined(list(prior.streams.values()), new) if prior else new
    old = extends
    # Alerts of one run share their entities objects: reading those once each instead of once
    # per alert is most of building an incident of 100,000 alerts.
    entities = [*(prior.entities if prior else []), *_cluster_entities(cluster)]
    hosts = [*(old.hosts if old else []), *(h for e in entities for h in e.hosts)]
    users = [*(old.users if old else []), *(u for e in entities for u in e.users)]
    background = all(r.background for r in cluster.runs) and (
        old.explanation.background if old else True
    )
    groups = _merge_groups(extends.groups if extends else [], groups_of(new))
    priority, factors = prioritise(
        streams,
        baseline,
        cfg,
        count=len(old.alert_ids) + len(new_alerts) if old else None,
        suppressed=sum(g.suppressed for g in groups),
        hosts=hosts,
        users=users,
        background=background,
    )
    links, more_links = _capped_links(old, cluster.links)
    marks = {mark for s in streams for mark in s.marks}
    tactics = ordered(list(tactics_first_seen(streams)) + (extends.tactics if extends else []))
    top = max(groups, key=lambda g: (g.severity != "low", baseline.rarity(g.rule_id), g.count))
    title = f"{top.rule_name} on {top.host}"
    if len({g.rule_id for g in groups}) > 1:
        title += f" (+{len({g.rule_id for g in groups}) - 1} related rule(s))"
    first_seen = min(s.first_seen for s in streams)
    last_seen = max(s.last_seen for s in streams)
    incident = Incident(
        incident_id=old.incident_id if old else incident_id_for(new_alerts[0].id),
        alert_ids=[*(old.alert_ids if old else []), *map(_id, new_alerts)],
        priority=priority,
        title=title[:200],
        first_seen=min(first_seen, old.first_seen) if old else first_seen,
        last_seen=max(last_seen, old.last_seen) if old else last_seen,
        hosts=_unique(hosts),
        users=_unique(users),
        ips=_unique([*(old.ips if old else []), *(i for e in entities for i in e.ips)]),
        sequences=_latest(
            [*(old.sequences if old else []), *(q for e in entities for q in e.sequences)],
            MAX_SEQUENCES,
        ),
        folding=_folding(old, new),
        processes=_processes(old, cluster),
        addresses=_addresses(old, cluster),
        tactics=tactics,
        techniques=_unique(sorted({t for _, ts in marks for t in ts})),
        groups=groups,
        explanation=Explanation(
            links=links,
            more_links=more_links,
            max_gap_seconds=_max_gap(cluster.times, old),
            tactic_progression=tactics,
            sensors=sorted(set().union(*(s.sensors for s in streams))),
            priority_factors=factors,
            background=background,
            routine=_routine(cluster) if background else None,
            posture=all(s.posture for s in streams),
        ),
        proposal_ids=list(old.proposal_ids) if old else [],
        reopened=old.reopened if old else None,  # still held open by that person
    )
    return Assembled(incident, Evidence.of_streams(streams, entities))


def _routine(cluster: Cluster) -> str | None:
    """The latest judgement of why its rule is routine (a background cluster is one run)."""
    reasons = [r.routine.reason() for r in cluster.runs if r.routine is not None]
    return "; ".join(reasons) or None


SAMPLE_PER_GROUP = 5


def sample_of(cluster: Cluster, extends: Incident | None) -> list[Alert]:
    """The cluster's alerts to store with its incident: the first few per rule and host (the
    UI's timeline, an extension's evidence), counting those the incident already holds, so the
    stored sample stays bounded however often it is extended."""
    held = {(g.rule_id, g.host): g.count for g in extends.groups} if extends else {}
    out: list[Alert] = []
    for run in cluster.runs:  # in time order
        key = (run.rule_id, run.host)
        room = SAMPLE_PER_GROUP - held.get(key, 0)
        if room > 0:
            out += run.alerts[:room]
            held[key] = held.get(key, 0) + min(room, len(run.alerts))
    return out


def _cluster_entities(cluster: Cluster) -> list[Entities]:
    """The cluster's distinct entity sets, from its runs' (each already distinct)."""
    return distinct([e for run in cluster.runs for e in run.entities])


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


def _max_gap(times: list[float], old: Incident | None) -> float:
    """The largest time gap between consecutive alerts. An extension keeps the old incident's
    largest gap and adds the new alerts' own, and the step from its last alert to them, or from
    them to its first when they are older (the stored sample is too sparse to measure gaps on)."""
    gaps = [max(map(operator.sub, times[1:], times), default=0.0)]  # times are in order
    if old is not None:
        gaps.append(old.explanation.max_gap_seconds)
        if times:
            gaps.append(step_to(times, old))
    return max(gaps, default=0.0)


def step_to(times: list[float], incident: Incident) -> float:
    """From the incident's last alert to the first of these times, or from the last of them to
    its first when they are older: negative when they overlap it."""
    return max(
        times[0] - incident.last_seen.timestamp(), incident.first_seen.timestamp() - times[-1]
    )


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
                    "suppressed": prev.suppressed + g.suppressed,
                    "first_seen": min(prev.first_seen, g.first_seen),
                    "last_seen": max(prev.last_seen, g.last_seen),
                }
            )
    return sorted(by_key.values(), key=lambda g: (g.first_seen, g.rule_id))
