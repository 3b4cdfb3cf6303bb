"""Across runs: a new batch extends the open incident it belongs to instead of opening another.

A cluster joins an open incident when they share a host or a user and the incident's last alert
is within the link window of the cluster's first; a routine rule's background stream only
extends the background incident of the same rule and host, however long it paused, while that
incident is open (a day's file makes one background stream of a rule that fires every working
day; batches must too). A cluster whose first ATT&CK stage follows an open incident's last, on
a host or user they share, joins it hours later too, as runs do within a batch (a
*progression*, see `agent.correlate`). Addresses do not link across runs: without the whole
history, a shared server address is too likely to be infrastructure. A cluster holding alerts
of a detection-engine sequence an open incident holds (Elastic's EQL group id) joins it
whatever the gap, as within a batch: a sweep's page may end between a sequence's alerts. So
does one on a process instance an open incident's alerts are on, or on a process it started
(a beacon's traffic the next hour). The join is recorded as a link in the incident's
explanation: the sequence, the process tree, the progression, or the host (else user) both
share.

Batches may come out of time order (a late delivery, an old file replayed into the live store): a
cluster older than an open incident joins it only if it ends within the same reach (the link
window, or the quiet period for a background stream) before the incident's first alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from agent.attack import stage_of
from agent.baseline import Baseline
from agent.correlate import (
    Cluster,
    CorrelationConfig,
    Run,
    linking_users,
    on_tree,
    process_instances,
    progression_link,
)
from agent.incidents import Assembled, Evidence, Prior, assemble, sample_of, step_to
from agent.models import Alert, EntityKind, EntityLink, Incident
from agent.normalize import read_account, read_host
from agent.prioritise import PriorityConfig
from agent.store import Store


class Built(NamedTuple):
    incidents: list[Incident]  # extended open ones (same id) and new ones
    samples: list[Alert]  # the batch's alerts to store with them (a few per rule and host)
    placed: dict[str, str]  # each of the batch's alert ids -> its incident's id
    evidence: dict[str, Evidence]  # what each incident's alerts show, for the playbooks


def build_incidents(
    clusters: list[Cluster],
    baseline: Baseline,
    store: Store | None,
    corr: CorrelationConfig,
    prio: PriorityConfig | None = None,
    quiet: timedelta = timedelta(hours=24),
    extendable: list[Incident] | None = None,
) -> Built:
    """Incidents for this batch, the alerts to store with them, and where each alert went.
    `quiet`: how long an incident stays open without alerts (the background streams' reach);
    `extendable`: the store's open incidents a batch may extend, when already read (from
    `open_since` the batch's first alert)."""
    built = Built([], [], {}, {})
    if store is None or not clusters:
        for cluster in clusters:
            _add(built, cluster, assemble(cluster, baseline, prio), None)
        return built
    if extendable is None:
        first = min(c.runs[0].first for c in clusters)
        extendable = store.open_incidents(open_since(first, corr, quiet))
    candidates = _Candidates(extendable)
    taken: dict[str, Incident] = {}
    held: dict[str, Prior] = {}  # what each extended incident holds so far
    for cluster in clusters:
        found = _match(cluster, candidates, corr, quiet.total_seconds())
        if found is None:
            _add(built, cluster, assemble(cluster, baseline, prio), None)
            continue
        match, progression = found
        current = taken.get(match.incident_id) or store.get_incident(match.incident_id) or match
        link = (
            _anchored(progression, current)
            if progression
            else _shared(cluster, current, corr.tree_max_rules)
        )
        if link is not None:
            cluster.links.append(link)
        prior = held.get(match.incident_id)
        if prior is None:
            prior = held[match.incident_id] = Prior(store.alerts_of(current.incident_id))
        grown = assemble(cluster, baseline, prio, extends=current, prior=prior)
        _add(built, cluster, grown, current)
        taken[match.incident_id] = grown.incident
        prior.add(cluster.alerts)
    built.incidents.extend(taken.values())
    return built


def _anchored(progression: EntityLink, incident: Incident) -> EntityLink:
    """A progression across runs cites the incident's latest alert too, as a join by a shared
    host does (it was found against the stored incident's summary, which holds no alert ids)."""
    ids = [*incident.alert_ids[-1:], *progression.alert_ids]
    return progression.model_copy(update={"alert_ids": ids})


def open_since(first: float, corr: CorrelationConfig, quiet: timedelta) -> datetime:
    """From when an open incident's last alert may be for a batch whose first alert is at
    `first` to extend it: the longest link's reach, or a background stream's quiet period."""
    reach = max(timedelta(seconds=max(corr.link_window, corr.progression_window)), quiet)
    return datetime.fromtimestamp(first, tz=UTC) - reach


def _shared(cluster: Cluster, incident: Incident, tree_max_rules: int) -> EntityLink | None:
    """What a cluster that joins an open incident shares with it, as the link that explains the
    join: a sequence of both, else a process tree of both, else a host (else a user) of both,
    from the incident's latest alert to the cluster's first.
    A background stream's join has none: its reason is the routine it continues."""
    if all(r.background for r in cluster.runs) or not incident.alert_ids:
        return None
    shared = _sequences_of(cluster).intersection(incident.sequences)
    if shared:
        first = next(a for a in cluster.alerts if not shared.isdisjoint(a.entities.sequences))
        return EntityLink(
            kind="sequence",
            value=first.rule_name,
            alert_ids=[incident.alert_ids[-1], first.id],
            gap_seconds=max(0.0, step_to(cluster.times, incident)),
        )
    tree = _in_tree(_trees_of(cluster, _processes_by_host([incident])), incident, tree_max_rules)
    if tree is not None:
        host, pid, name = tree
        first = next(
            a
            for r in cluster.runs
            if r.host == host and not r.background
            for a in r.alerts
            if on_tree(a, pid)
        )
        return EntityLink(
            kind="process tree",
            value=name or pid,
            alert_ids=[incident.alert_ids[-1], first.id],
            gap_seconds=max(0.0, step_to(cluster.times, incident)),
        )
    hosts, users = _hosts_and_users(cluster)
    for kind, theirs, ours in (
        (EntityKind.host, _hosts_as_read(incident.hosts), hosts),
        (EntityKind.user, _users_as_read(incident.users), users),
    ):
        both = sorted(ours.intersection(theirs))
        if kind is EntityKind.host:  # the host it joins on: the incident's latest alert there
            both.sort(key=lambda h: _last_on(incident, {h}, set()), reverse=True)
        if both:
            return EntityLink(
                kind=kind,
                value=both[0],
                alert_ids=[incident.alert_ids[-1], cluster.alerts[0].id],
                gap_seconds=max(0.0, step_to(cluster.times, incident)),
            )
    return None


def _hosts_as_read(stored: Iterable[str]) -> set[str]:
    """An incident's hosts as alerts name them now: one stored before hosts were read in lower
    case and by machine name holds `WS-FIN-07.corp.example` where later alerts say
    `ws-fin-07`, and they must extend it."""
    return set(map(read_host, stored))


def _users_as_read(stored: Iterable[str]) -> set[str]:
    """An incident's accounts as alerts name them now (`CORP\\JDoe` stored is `jdoe`)."""
    return set(map(read_account, stored))


def _hosts_and_users(cluster: Cluster) -> tuple[set[str], set[str]]:
    """The hosts and accounts a cluster may join an open incident by (not `root` of another
    machine: `linking_users`)."""
    entities = [e for run in cluster.runs for e in run.entities]
    hosts = {h for e in entities for h in e.hosts}
    return hosts, linking_users(u for e in entities for u in e.users)


def _add(built: Built, cluster: Cluster, made: Assembled, extended: Incident | None) -> None:
    """Record what the cluster made; an extension's incident is listed once, at the end (its
    evidence is the latest, from all its alerts so far)."""
    incident = made.incident
    built.evidence[incident.incident_id] = made.evidence
    if extended is None:
        built.incidents.append(incident)
    built.samples.extend(sample_of(cluster, extended))
    new_ids = incident.alert_ids[len(extended.alert_ids) :] if extended else incident.alert_ids
    built.placed.update(dict.fromkeys(new_ids, incident.incident_id))


class _Candidates:
    """Open incidents indexed by host and user, and the background ones apart: a cluster is
    compared only with incidents it could join, not with every open incident."""

    def __init__(self, incidents: list[Incident]) -> None:
        self.by_entity: dict[str, list[Incident]] = {}
        self.by_process: dict[tuple[str, str], list[Incident]] = {}
        #: The process instances open incidents hold, by host: what a cluster's are met with.
        self.processes = _processes_by_host(incidents)
        self.background: list[Incident] = []
        for inc in incidents:
            if inc.explanation.background:
                self.background.append(inc)
            hosts, users = _hosts_as_read(inc.hosts), _users_as_read(inc.users)
            for key in {*_keys(hosts, users), *(f"q:{q}" for q in inc.sequences)}:
                self.by_entity.setdefault(key, []).append(inc)
            for host, pid, _ in inc.processes:
                self.by_process.setdefault((host, pid), []).append(inc)
        self.streams = {
            inc.incident_id: {(g.rule_id, read_host(g.host)) for g in inc.groups}
            for inc in self.background
        }

    def sharing(
        self, hosts: set[str], users: set[str], sequences: set[str], trees: set[tuple[str, str]]
    ) -> list[Incident]:
        seen: dict[str, Incident] = {}
        for key in {*_keys(hosts, users), *(f"q:{q}" for q in sequences)}:
            for inc in self.by_entity.get(key, []):
                seen[inc.incident_id] = inc
        for process in trees:
            for inc in self.by_process.get(process, []):
                seen[inc.incident_id] = inc
        return list(seen.values())


def _keys(hosts: Iterable[str], users: Iterable[str]) -> set[str]:
    return {*(f"h:{h}" for h in hosts), *(f"u:{u}" for u in users)}


def _trees_of(cluster: Cluster, known: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The process instances the cluster's alerts are on or were started by, with their host
    (`Alert.process_id`, `ancestry`; not a background run's, as within a batch), of those
    `known` by host: an endpoint's cluster names thousands, met with them in sets (in C)."""
    found: set[tuple[str, str]] = set()
    for run in cluster.runs:
        wanted = known.get(run.host)
        if wanted:
            own, ancestors = process_instances(run)
            found.update((run.host, pid) for pid in (own | ancestors) & wanted)
    return found


def _processes_by_host(incidents: Iterable[Incident]) -> dict[str, set[str]]:
    """The process instances these incidents hold, by host."""
    known: dict[str, set[str]] = {}
    for inc in incidents:
        for host, pid, _ in inc.processes:
            known.setdefault(host, set()).add(pid)
    return known


def _in_tree(
    trees: set[tuple[str, str]], incident: Incident, max_rules: int
) -> tuple[str, str, str] | None:
    """The incident's process instance (host, id, name) the cluster's alerts are on or were
    started by, the latest if several; None if none, or if the incident holds `max_rules`
    rules or more on its host: as a tree of that many rules within a batch is a hub (a
    service manager's, a desktop shell's), an incident that grew so on one host takes no
    more by its processes alone."""
    found = next((p for p in reversed(incident.processes) if (p[0], p[1]) in trees), None)
    if found is None:
        return None
    rules = {g.rule_id for g in incident.groups if read_host(g.host) == found[0]}
    return found if len(rules) < max_rules else None


def _sequences_of(cluster: Cluster) -> set[str]:
    """The detection-engine sequences the cluster's alerts belong to (not a background run's:
    those link nothing, as within a batch)."""
    return {q for r in cluster.runs if not r.background for e in r.entities for q in e.sequences}


def _match(
    cluster: Cluster, candidates: _Candidates, corr: CorrelationConfig, quiet: float
) -> tuple[Incident, EntityLink | None] | None:
    """The most recently active open incident this cluster continues: a background cluster
    joins the open background incident holding all its rule-host streams; any other joins one
    that shares a host or user and is not background, within the link window of the
    incident's last alert on what they share (`_last_on`), or later when the cluster's ATT&CK
    stage follows the incident's (with the progression that links them), or at any time when
    they hold alerts of one sequence or of one process tree (preferred: their rule, or the
    process that ran, says they are one story).
    A cluster older than the incident (a late delivery, a file replayed into the live store)
    joins it only if it ends within the same reach before the incident's first alert: the
    link window, or `quiet` seconds for a background stream."""
    background = all(r.background for r in cluster.runs)
    posture = cluster.runs[0].posture  # a cluster holds findings only, or none (`correlate`)
    start = datetime.fromtimestamp(cluster.times[0], tz=UTC)
    end = datetime.fromtimestamp(cluster.times[-1], tz=UTC)
    reach_back = quiet if background else corr.link_window
    streams = {(r.rule_id, r.host) for r in cluster.runs}
    hosts: set[str] = set()
    users: set[str] = set()
    sequences: set[str] = set()
    trees: set[tuple[str, str]] = set()
    if background:
        pool = [i for i in candidates.background if streams <= candidates.streams[i.incident_id]]
    else:
        hosts, users = _hosts_and_users(cluster)
        sequences = _sequences_of(cluster)
        trees = _trees_of(cluster, candidates.processes)
        pool = [
            i
            for i in candidates.sharing(hosts, users, sequences, trees)
            if not i.explanation.background
        ]
    best: tuple[Incident, EntityLink | None] | None = None
    best_key: tuple[bool, datetime] | None = None
    for inc in pool:
        if inc.explanation.posture != posture:
            continue  # findings and detections apart, as within a batch
        # one sequence its rule matched, or one process tree: however far apart, as within a
        # batch
        in_sequence = not sequences.isdisjoint(inc.sequences) or (
            bool(trees) and _in_tree(trees, inc, corr.tree_max_rules) is not None
        )
        ahead = (inc.first_seen - end).total_seconds()  # > 0: the cluster ends before it
        if ahead > reach_back and not in_sequence:
            continue
        last = inc.last_seen if background else _last_on(inc, hosts, users)
        gap = (start - last).total_seconds()
        progression = None
        if not background and gap > corr.link_window and not in_sequence:
            progression = _progression(cluster, inc, gap, corr)
            if progression is None:
                continue
        key = (in_sequence, inc.last_seen)  # a shared sequence first, then the latest
        if best_key is None or key > best_key:
            best, best_key = (inc, progression), key
    return best


def _last_on(incident: Incident, hosts: set[str], users: set[str]) -> datetime:
    """The incident's last alert on what the cluster shares with it. A link is a shared entity
    within the link window: a service scan that touched every host at 04:00 leaves an
    incident holding them all, and its web-server alerts at 09:30 must not make the mail
    server's 10:00 logins its continuation. Per host, from its groups; a shared user (whose
    alerts are not kept per user) counts from the incident's last alert."""
    if not users.isdisjoint(_users_as_read(incident.users)):
        return incident.last_seen
    on = [g.last_seen for g in incident.groups if read_host(g.host) in hosts]
    return max(on) if on else incident.last_seen


def _progression(
    cluster: Cluster, incident: Incident, gap: float, corr: CorrelationConfig
) -> EntityLink | None:
    """How the cluster's first ATT&CK stage follows the incident's last, on a host or user
    they share, when it does within the progression window (see `agent.correlate`)."""
    staged = [r for r in cluster.runs if r.stage is not None]
    before = stage_of(incident.tactics)
    if not staged or before is None or gap > corr.progression_window:
        return None
    first = min(staged, key=_starts)  # the earliest stage's first run
    low, high = _starts(first), before[1]
    if high >= low:
        return None
    known = _hosts_as_read(incident.hosts) | _users_as_read(incident.users)
    shared = sorted(({first.host} | first.users) & known)
    if not shared:
        return None
    return progression_link(shared[0], [first.alerts[0].id], high, low, gap)


def _starts(run: Run) -> int:
    """A staged run's first kill-chain place."""
    assert run.stage is not None
    return run.stage[0]
