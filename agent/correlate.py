"""Deterministic correlation: alerts -> clusters of alerts that tell one story.

1. Repeats of one rule on one host collapse into a *run* (count, first and last seen).
2. A rule that fires on a host through most of the period is *background* (`agent.routine`):
   all its runs there collapse into one run that links to nothing, so a noisy rule cannot glue a
   host's day together.
3. Other runs link when they share an entity within a time window. Entities seen with many hosts
   (a DNS server, a proxy) are *hubs* and link nothing.
4. Runs of one rule starting on several hosts within a couple of minutes link too: that is one
   *sweep* (a scan, a password spray, a worm), not one story per host.
   When the linked runs come from several sensors (a network IDS, a host IDS, an anomaly
   detector), the link names them: that is corroboration.
5. Runs on one host or of one user link across hours when their ATT&CK tactics move on to a
   later stage (initial access, then privilege escalation): a *progression*. Only rules seen on
   few hosts count: a mapped rule that fires everywhere is nobody's next step.
6. Linked runs form a cluster; each cluster records what linked which alerts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from agent.attack import TACTIC_ORDER, stage_of
from agent.models import (
    Alert,
    Entities,
    EntityKind,
    EntityLink,
    all_fields_set,
    distinct,
    distinct_entities,
)
from agent.normalize import clean_ips
from agent.routine import RecentHours, Routine, background_of, watched_hours

MAX_LINK_SAMPLE = 20
#: Accounts every machine has its own of (Linux's root and the service users its packages
#: create, Windows' service principals, built-in and virtual accounts): `root` on two hosts is
#: two accounts, and linking by it glued unrelated hosts' alerts minutes apart. Their alerts
#: still link on their host. A person's or a domain's account (`administrator` of the
#: domain, `svc-backup`) links hosts.
LOCAL_ACCOUNTS = frozenset(
    {
        # Linux: Debian's and Red Hat's base system users, and those of common services
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
        "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nfsnobody",
        "operator", "adm", "ftp", "sshd", "_apt", "syslog", "messagebus", "dbus", "polkitd",
        "rpc", "rpcuser", "chrony", "ntp", "postfix", "apache", "nginx", "mysql", "postgres",
        # Windows: service principals, built-in local accounts
        "system", "local service", "network service", "anonymous logon", "guest",
        "defaultaccount", "wdagutilityaccount",
    }
)  # fmt: skip
#: And those numbered per machine or per session: systemd's (`systemd-network`), Windows'
#: Desktop Window Manager and font driver sessions (`dwm-1`, `umfd-0`).
LOCAL_ACCOUNT_PREFIXES = ("systemd-", "dwm-", "umfd-")


def local_account(name: str) -> bool:
    """Whether every machine has its own account of this name (`LOCAL_ACCOUNTS`)."""
    return name in LOCAL_ACCOUNTS or name.startswith(LOCAL_ACCOUNT_PREFIXES)


def linking_users(users: Iterable[str]) -> set[str]:
    """The accounts that can link alerts across hosts: not the machine-local ones."""
    return {u for u in users if not local_account(u)}


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    repeat_gap: float = 1800.0
    link_window: float = 3600.0
    hub_min_hosts: int = 8
    background_min_hours: int = 12  # a batch judged on its own must span this many hours
    background_min_watched: int = 6  # hours a store must have watched to judge with them
    background_min_alerts: int = 24  # a young store judging: one an hour of the day it stands for
    background_hour_share: float = 0.25
    burst_factor: float = 5.0
    burst_min: int = 20
    sweep_window: float = 120.0  # seconds between the first and last host a sweep reaches
    sweep_min_hosts: int = 3
    background_lookback_hours: int = 24  # what a shorter batch is judged with (RecentHours)
    progression_window: float = 86400.0  # seconds from a stage's last alert to the next stage
    #: Rules on one process instance and its descendants beyond which it is a hub (a
    #: service manager, a user's desktop shell: the parent of everything) and links nothing.
    tree_max_rules: int = 8


@dataclass(slots=True)
class Run:
    """Consecutive alerts of one rule on one host."""

    rule_id: str
    host: str
    alerts: list[Alert]
    #: Its alerts' times as numbers, converted once here for every later reader.
    times: list[float]
    #: Set when the rule is routine on the host: the run is then its background stream.
    routine: Routine | None = None
    #: Its ATT&CK tactics' first and last places in the kill chain, when it can be a step of
    #: a progression (set by `correlate`).
    stage: tuple[int, int] | None = None
    #: For a network sensor's alerts placed on the machine they saw, the sensor: where its
    #: rule's routine is judged, and what the window history counts it under.
    judged: str = ""
    #: Its alerts' distinct entity sets (alerts of one host mostly share one `Entities`).
    entities: list[Entities] = field(init=False)

    def __post_init__(self) -> None:
        self.entities = distinct(list(map(_entities_of, self.alerts)))  # in C, for every alert

    @property
    def background(self) -> bool:
        return self.routine is not None

    @property
    def judged_pair(self) -> tuple[str, str]:
        """The rule-host pair its routine is judged under (`judged`, else its host)."""
        return (self.rule_id, self.judged or self.host)

    @property
    def posture(self) -> bool:
        """Findings about the host's state (`Alert.posture`): a rule's alerts all are or none."""
        return self.alerts[0].posture

    @property
    def users(self) -> set[str]:
        """The run's accounts that can link it to another host's runs (`linking_users`)."""
        return linking_users(u for e in self.entities for u in e.users)

    @property
    def first(self) -> float:
        return self.times[0]

    @property
    def last(self) -> float:
        return self.times[-1]


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


def claimed_addresses(sets: Iterable[Entities]) -> Iterator[tuple[str, str]]:
    """(address, host) for each machine naming an address its own (Elastic's `host.ip`,
    Wazuh's `agent.ip`), a machine named by an address aside."""
    for e in sets:
        if e.host_ips and e.hosts and not clean_ips([e.hosts[0]]):
            for address in e.host_ips:
                yield address, e.hosts[0]


def address_book(sets: list[Entities], known: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Each address one machine names its own, in the run's entity sets or in an open
    incident (`known`, as `claimed_addresses` gives them), and that machine: where a network
    alert on the address is placed. An address two machines name (a DHCP lease changing
    hands) names neither."""
    names: dict[str, set[str]] = defaultdict(set)
    for address, host in itertools.chain(known, claimed_addresses(sets)):
        names[address].add(host)
    return {address: next(iter(hosts)) for address, hosts in names.items() if len(hosts) == 1}


def build_runs(
    alerts: Iterable[Alert],
    cfg: CorrelationConfig,
    recent: RecentHours | None = None,
    book: Mapping[str, str] | None = None,
) -> list[Run]:
    """Collapse repeats, then fold background rules into one run per rule and host. The runs
    come in the order of their first alert (time, then id).

    A burst of a background rule (an hour far above its usual rate) is not background: a
    scanner hammering a web server trips the same rule as the daily noise, only much harder.
    A daily job's busy hour is, though: as busy at that time on another day (`agent.routine`).
    `recent`: what earlier runs saw of each rule and host, hour by hour (see
    `agent.routine.background_of`). A network sensor's alerts are judged on the sensor, and
    those not routine there go to the machines they saw (`_placed`), by name where `book`
    knows the address; with no `book`, the run holds none to place.
    """
    recent = recent or {}
    split = _split if book is None else partial(_placed, book=book)
    # Each alert's time as a number, once: every later step reads the runs' times.
    alerts = list(alerts)
    stamps = map(datetime.timestamp, map(_timestamp, alerts))
    ordered = sorted(zip(stamps, map(_id, alerts), alerts, strict=True), key=_TIME_THEN_ID)
    if not ordered:
        return []
    span_hours = max(1, math.ceil((ordered[-1][0] - ordered[0][0]) / 3600))
    watched = watched_hours(recent, ordered[-1][0])
    by_key: dict[tuple[str, str], list[tuple[float, str, Alert]]] = {}
    for item in ordered:
        by_key.setdefault((item[2].rule_id, host_of(item[2])), []).append(item)
    runs: list[Run] = []
    for (rule_id, host), items in by_key.items():
        times = list(map(_first, items))
        judged = background_of(times, span_hours, cfg, recent.get((rule_id, host)), watched)
        if judged is None:
            runs += split(rule_id, host, items, times, cfg.repeat_gap)
            continue
        bursts, routine = judged
        loud, calm = _parted(items, times, bursts)
        if calm:
            calm_times = list(map(_first, calm))
            runs.append(Run(rule_id, host, list(map(_third, calm)), calm_times, routine))
        runs += split(rule_id, host, loud, list(map(_first, loud)), cfg.repeat_gap)
    runs.sort(key=lambda r: (r.first, r.alerts[0].id))
    return runs


def _parted(
    items: list[_Item], times: list[float], hours: set[int]
) -> tuple[list[_Item], list[_Item]]:
    """The items (in time order) that fall in these hours, and the others, each in order; cut
    by bisecting at the hours' bounds, not item by item."""
    inside: list[_Item] = []
    outside: list[_Item] = []
    start = 0
    for hour in sorted(hours):
        lo = bisect.bisect_left(times, hour * 3600, start)
        hi = bisect.bisect_left(times, (hour + 1) * 3600, lo)
        outside += items[start:lo]
        inside += items[lo:hi]
        start = hi
    outside += items[start:]
    return inside, outside


def _placed(
    rule_id: str,
    host: str,
    items: list[_Item],
    times: list[float],
    gap: float,
    book: Mapping[str, str],
) -> list[Run]:
    """`_split`, with a network sensor's alerts (`Entities.watched`) on the machines they saw:
    by name where one machine names the address its own (`address_book`), else the address.
    Each such run remembers the sensor it was judged on (`Run.judged`)."""
    sets = distinct(list(map(_entities_of, map(_third, items))))
    if not any(e.watched for e in sets):
        return _split(rule_id, host, items, times, gap)
    moved = {id(e): _moved(e, book) for e in sets}
    by_host: dict[str, list[_Item]] = {}
    for item in items:
        entities = moved[id(item[2].entities)]
        if entities is None:
            by_host.setdefault(host, []).append(item)
        else:
            alert = all_fields_set(item[2].model_copy(update={"entities": entities}))
            by_host.setdefault(entities.hosts[0], []).append((item[0], item[1], alert))
    runs: list[Run] = []
    for to, part in by_host.items():
        runs += _split(rule_id, to, part, list(map(_first, part)), gap, host if to != host else "")
    return runs


def _moved(entities: Entities, book: Mapping[str, str]) -> Entities | None:
    """These entities on the machine a network sensor saw, or None when it saw none."""
    if not entities.watched:
        return None
    machine = book.get(entities.watched[0], entities.watched[0])
    return all_fields_set(entities.model_copy(update={"hosts": (machine,)}))


def _split(
    rule_id: str, host: str, items: list[_Item], times: list[float], gap: float, judged: str = ""
) -> list[Run]:
    """One rule's alerts on one host (in time order) as runs, cut where they pause for longer
    than `gap`."""
    if not times:
        return []
    pauses = map(gap.__lt__, map(operator.sub, itertools.islice(times, 1, None), times))
    cuts = itertools.compress(range(1, len(times)), pauses)
    return [
        Run(rule_id, host, list(map(_third, items[a:b])), times[a:b], judged=judged)
        for a, b in itertools.pairwise([0, *cuts, len(times)])
    ]


#: A run's item while runs are built: (time, id, alert).
_Item = tuple[float, str, Alert]
_TIME_THEN_ID = operator.itemgetter(0, 1)
_first = operator.itemgetter(0)
_third = operator.itemgetter(2)
_timestamp = operator.attrgetter("timestamp")
_id = operator.attrgetter("id")
_entities_of = operator.attrgetter("entities")
_tactics_of = operator.attrgetter("tactics")
_process_id = operator.attrgetter("process_id")
_ancestry = operator.attrgetter("ancestry")


def _hubs(runs: list[Run], cfg: CorrelationConfig) -> set[tuple[EntityKind, str]]:
    """Entities that co-occur with many hosts: infrastructure, not evidence of one story."""
    hosts_of: dict[tuple[EntityKind, str], set[str]] = defaultdict(set)
    for run in runs:
        for entities in run.entities:
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


@dataclass(frozen=True, slots=True)
class Progression:
    """A later run on the same host, or of the same user, whose ATT&CK tactics all come after
    an earlier run's: one story, even hours apart."""

    earlier: int  # indexes into the runs
    later: int
    kind: EntityKind
    value: str

    def link(self, runs: list[Run]) -> EntityLink:
        first, then = runs[self.earlier], runs[self.later]
        assert first.stage is not None and then.stage is not None
        ids = [first.alerts[0].id, then.alerts[0].id]
        gap = then.first - first.last
        return progression_link(self.value, ids, first.stage[1], then.stage[0], gap)


def progression_link(
    value: str, alert_ids: list[str], ends: int, starts: int, gap: float
) -> EntityLink:
    """The link of a progression on host or user `value`: from the earlier alerts' last
    kill-chain place (`ends`) to the later ones' first (`starts`), `gap` seconds on."""
    return EntityLink(
        kind="progression",
        value=value,
        alert_ids=alert_ids,
        tactics=[TACTIC_ORDER[ends], TACTIC_ORDER[starts]],
        gap_seconds=max(0.0, gap),
    )


MAX_STEPS_BACK = 64  # earlier runs of one host or user a run is compared with


def _progressions(runs: list[Run], cfg: CorrelationConfig) -> list[Progression]:
    """Each staged run (`stage_runs`) linked to the latest earlier staged run of its host or
    user whose last stage comes before its first, within `progression_window`."""
    by_key: dict[tuple[EntityKind, str], list[tuple[int, tuple[int, int]]]] = defaultdict(list)
    for i, run in enumerate(runs):  # in the order of their first alert
        if run.stage is not None:
            by_key[EntityKind.host, run.host].append((i, run.stage))
            for user in run.users:
                by_key[EntityKind.user, user].append((i, run.stage))
    found: list[Progression] = []
    for (kind, value), members in by_key.items():
        for k, (later, (starts, _)) in enumerate(members):
            for earlier, (_, ends) in reversed(members[max(0, k - MAX_STEPS_BACK) : k]):
                gap = runs[later].first - runs[earlier].last
                if ends < starts and gap <= cfg.progression_window:
                    found.append(Progression(earlier, later, kind, value))
                    break
    return found


def stage_runs(runs: list[Run], cfg: CorrelationConfig) -> None:
    """Set the stage of every run that can be a step: not background, its tactics mapped, and
    its rule seen on fewer hosts than a hub entity reaches."""
    hosts_of: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        hosts_of[run.rule_id].add(run.host)
    for run in runs:
        if run.background or len(hosts_of[run.rule_id]) >= cfg.hub_min_hosts:
            continue
        run.stage = stage_of(t for tactics in set(map(_tactics_of, run.alerts)) for t in tactics)


def _sequences(runs: list[Run]) -> dict[str, list[int]]:
    """The runs holding each detection-engine sequence's alerts, where two runs or more do
    (Elastic's EQL sequence: an alert for each event and the sequence's own share a group id).
    Its rule matched them as one story however far apart in time or across hosts, so they link
    whatever the window; background runs link nothing, as ever."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):  # runs come in the order of their first alert
        if not run.background:
            for group in dict.fromkeys(g for e in run.entities for g in e.sequences):
                by_group[group].append(i)
    return {group: members for group, members in by_group.items() if len(members) > 1}


def _sequence_link(group: str, members: list[int], runs: list[Run]) -> EntityLink:
    """The link of one sequence's runs: named by its rule, sampling its own alerts."""
    grouped = (a.id for i in members for a in runs[i].alerts if group in a.entities.sequences)
    firsts = [runs[i].first for i in members]
    return EntityLink(
        kind="sequence",
        value=runs[members[0]].alerts[0].rule_name,
        alert_ids=list(itertools.islice(grouped, MAX_LINK_SAMPLE)),
        gap_seconds=max(map(operator.sub, firsts[1:], firsts), default=0.0),
    )


def process_instances(run: Run) -> tuple[set[str], set[str]]:
    """The process instances a run's alerts are on, and those their ancestors are (none for a
    background run: it links nothing), gathered in sets in C: an endpoint's feed names one in
    every alert."""
    if run.background:
        return set(), set()
    own = set(filter(None, map(_process_id, run.alerts)))
    return own, set(itertools.chain.from_iterable(map(_ancestry, run.alerts)))


def on_tree(alert: Alert, pid: str) -> bool:
    """Whether the alert is on this process instance or on one of its descendants."""
    return alert.process_id == pid or pid in alert.ancestry


def _trees(runs: list[Run], cfg: CorrelationConfig) -> dict[tuple[str, str], list[int]]:
    """The runs holding alerts on one process instance and on the processes it started (its
    host and id: `Alert.process_id`, `ancestry`), where two runs or more do. One program's
    run and what it launched, and they, are one story however far apart, as a sequence is.
    Processes that share only a parent do not link: a desktop shell starts everything a user
    runs. An instance whose tree holds `tree_max_rules` rules or more is a hub.
    An endpoint's feed names a process instance in every alert and several ancestors: the
    instances are gathered in sets (in C), and only those another run also names (few) are
    followed one by one."""
    own: list[set[str]] = []
    above: list[set[str]] = []
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    ancestors: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        mine, theirs = process_instances(run)
        own.append(mine)
        above.append(theirs)
        if mine:
            counts[run.host].update(mine)
            ancestors[run.host] |= theirs
    followed = {host: _named_twice(counted, ancestors[host]) for host, counted in counts.items()}
    about: dict[tuple[str, str], list[int]] = defaultdict(list)
    started: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, run in enumerate(runs):  # runs come in the order of their first alert
        wanted = followed.get(run.host)
        if wanted:
            for pid in own[i] & wanted:
                about[run.host, pid].append(i)
            for pid in above[i] & wanted:
                started[run.host, pid].append(i)
    trees: dict[tuple[str, str], list[int]] = {}
    for key, members in about.items():
        tree = sorted({*members, *started.get(key, ())})
        if len(tree) > 1 and len({runs[i].rule_id for i in tree}) < cfg.tree_max_rules:
            trees[key] = tree
    return trees


def _named_twice(counted: Counter[str], ancestors: set[str]) -> set[str]:
    """One host's process instances that alerts are on and that another alert names: as an
    ancestor, or as its own in a run of another rule."""
    wanted = counted.keys() & ancestors
    if sum(counted.values()) > len(counted):  # some instance is in two runs
        wanted |= {pid for pid, n in counted.items() if n > 1}
    return wanted


def _tree_link(key: tuple[str, str], members: list[int], runs: list[Run]) -> EntityLink:
    """The link of one process tree: named by the process (its id when no name was read),
    sampling each run's first alert on it or on a process it started (or they did)."""
    pid = key[1]
    own = next(a for i in members for a in runs[i].alerts if a.process_id == pid)
    ids = [next(a.id for a in runs[i].alerts if on_tree(a, pid)) for i in members]
    firsts = [runs[i].first for i in members]
    return EntityLink(
        kind="process tree",
        value=own.entities.processes[0] if own.entities.processes else pid,
        alert_ids=ids[:MAX_LINK_SAMPLE],
        gap_seconds=max(map(operator.sub, firsts[1:], firsts), default=0.0),
    )


@dataclass(slots=True)
class _Chain:
    """Runs one entity links, each within the link window of the ones before it: one link."""

    key: tuple[EntityKind, str]
    runs: list[int]
    gap: float = 0.0  # the longest step from the runs before to the next one's first alert


def _chains(
    key: tuple[EntityKind, str], members: list[int], runs: list[Run], window: float, uf: _UnionFind
) -> list[_Chain]:
    """One entity's runs in time order, cut where one starts more than `window` after all the
    runs before it have ended: the runs of each piece are linked (joined in `uf`), and each
    piece is its own story, with its own link on its own cluster."""
    members.sort(key=lambda i: runs[i].first)
    reach = runs[members[0]].last
    chains = [_Chain(key, [members[0]])]
    for prev, cur in itertools.pairwise(members):
        wait = runs[cur].first - reach
        if wait <= window:
            uf.union(prev, cur)
            chains[-1].runs.append(cur)
            chains[-1].gap = max(chains[-1].gap, wait)
        else:
            chains.append(_Chain(key, [cur]))
        reach = max(reach, runs[cur].last)
    return chains


def _run_entities(run: Run) -> dict[tuple[EntityKind, str], None]:
    """The run's distinct entities in first-seen order (a set's order would change with the
    process's string hashing, and with it the order of an incident's links)."""
    keys: dict[tuple[EntityKind, str], None] = {}
    for entities in run.entities:
        keys.update(dict.fromkeys(p for p in entities.pairs() if not _local_account(p)))
    return keys


def _local_account(pair: tuple[EntityKind, str]) -> bool:
    return pair[0] is EntityKind.user and local_account(pair[1])


def _cluster(runs: list[Run]) -> Cluster:
    """Linked runs as a cluster, its alerts in time order (then by id, as runs are built)."""
    if len(runs) == 1:  # most alerts: background runs link to nothing
        return Cluster(runs, list(runs[0].alerts), list(runs[0].times))
    merged = sorted(
        ((t, a.id, a) for run in runs for a, t in zip(run.alerts, run.times, strict=True)),
        key=_TIME_THEN_ID,
    )
    return Cluster(runs, [m[2] for m in merged], [m[0] for m in merged])


def correlate(
    alerts: Iterable[Alert],
    cfg: CorrelationConfig | None = None,
    recent: RecentHours | None = None,
    addresses: Iterable[tuple[str, str]] = (),
) -> list[Cluster]:
    """Group alerts into clusters; every alert lands in exactly one cluster. `recent`: what
    earlier runs saw of each rule and host, hour by hour (see `build_runs`); `addresses`:
    the open incidents' hosts' own (see `address_book`)."""
    cfg = cfg or CorrelationConfig()
    alerts = list(alerts)
    sets = distinct_entities(alerts)  # a batch without a network alert to place skips it all
    book = address_book(sets, addresses) if any(e.watched for e in sets) else None
    runs = build_runs(alerts, cfg, recent, book)
    posture = [r for r in runs if r.posture]
    if not posture:
        return _correlated(runs, cfg)
    # A scan's findings on every host link among themselves (one scan, one incident), never
    # with detections: a vulnerability scan during an intrusion made one incident of both.
    detections = [r for r in runs if not r.posture]
    clusters = _correlated(detections, cfg) + _correlated(posture, cfg)
    return sorted(clusters, key=_cluster_order)


def _cluster_order(c: Cluster) -> tuple[float, str]:
    return (c.runs[0].first, c.runs[0].alerts[0].id)


def _correlated(runs: list[Run], cfg: CorrelationConfig) -> list[Cluster]:
    """`correlate`, on runs that may link."""
    hubs = _hubs(runs, cfg)
    uf = _UnionFind(len(runs))
    by_entity: dict[tuple[EntityKind, str], list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        if run.background:
            continue
        for key in _run_entities(run):
            if key not in hubs:
                by_entity[key].append(i)
    link_hits = [
        chain
        for key, members in by_entity.items()
        for chain in _chains(key, members, runs, cfg.link_window, uf)
        if len(chain.runs) > 1
    ]
    sweeps = _sweeps(runs, cfg)
    sequences = _sequences(runs)
    trees = _trees(runs, cfg)
    for members in (*sweeps, *sequences.values(), *trees.values()):
        for i in members[1:]:
            uf.union(members[0], i)
    stage_runs(runs, cfg)
    progressions = _progressions(runs, cfg)
    for step in progressions:
        uf.union(step.earlier, step.later)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(runs)):
        groups[uf.find(i)].append(i)
    clusters = {root: _cluster([runs[i] for i in members]) for root, members in groups.items()}
    for chain in link_hits:
        members = chain.runs
        ids = [runs[i].alerts[0].id for i in members]
        sensors = sorted({runs[i].alerts[0].sensor for i in members})
        clusters[uf.find(members[0])].links.append(
            EntityLink(
                kind=chain.key[0],
                value=chain.key[1],
                alert_ids=ids[:MAX_LINK_SAMPLE],
                sensors=sensors if len(sensors) > 1 else [],
                gap_seconds=chain.gap,
            )
        )
    for members in sweeps:
        ids = [runs[i].alerts[0].id for i in members]
        firsts = [runs[i].first for i in members]
        clusters[uf.find(members[0])].links.append(
            EntityLink(
                kind="rule",
                value=runs[members[0]].rule_id,
                alert_ids=ids[:MAX_LINK_SAMPLE],
                gap_seconds=max(map(operator.sub, firsts[1:], firsts), default=0.0),
            )
        )
    for group, members in sequences.items():
        clusters[uf.find(members[0])].links.append(_sequence_link(group, members, runs))
    for process, members in trees.items():
        clusters[uf.find(members[0])].links.append(_tree_link(process, members, runs))
    for step in progressions:
        clusters[uf.find(step.earlier)].links.append(step.link(runs))
    return sorted(clusters.values(), key=_cluster_order)
