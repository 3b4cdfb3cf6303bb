"""Deterministic priority (0-100) from evidence, not volume, with the points of every factor.

A flood of one benign rule scores little beyond its severity: volume is worth at most 5 points,
while rarity, rule diversity, tactic progression and sensor corroboration carry the rest. A burst
factor lifts whatever fired in the batch's most unusual time window, or in the hour after it: an
intrusion is many rare rules on several hosts at once, and its quiet side effects and later steps
(a CPU spike from password cracking, one odd DNS record) are worth reading next to it even when
they score little on their own.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from agent.attack import TACTIC_NAMES, ordered, tactic_rank
from agent.correlate import Cluster, Run, host_of, per_period
from agent.models import Alert, PriorityFactor, Severity, Tuning
from agent.store import WINDOW_HISTORY_SECONDS, RuleHistory, RunHistory

RARE = 0.5
HISTORY_DAYS = 7  # rarity and novelty are judged against this many days before a batch
BURST_WINDOW = 900  # seconds: the time windows in which rare rule-host pairs are counted
BURST_POINTS = 40.0  # for the most unusual window; others get less, quadratically
BURST_MIN_WINDOWS = 8  # a batch spanning fewer windows has no "usual" to compare with
BURST_MIN_STANDOUT = 5  # the top window must hold this many more rare pairs than the median
DAY = 86400
DAY_WINDOWS = DAY // BURST_WINDOW  # windows that show the daily cycle (knows_a_day)
HOUR_WINDOWS = 3600 // BURST_WINDOW  # windows in an hour (Baseline.hours_fired)
MOMENT = 300  # seconds: rare rules first seen within this of one another's start are one event
BURST_YOUNG_FULL = 30  # rare pairs above the median for full points, with less than a day known
CRITICALITY_POINTS = 10.0  # a critical host involved, or a critical identity; both: 15
CRITICALITY_POINTS_MAX = 15.0
BURST_TAIL = 4  # windows after an unusual one that share its burst (see Bursts)
#: Burst points (a window at least half as far above the median as the most unusual) from
#: which tunings are set aside: see `prioritise`.
TUNING_SET_ASIDE_POINTS = BURST_POINTS * 0.5**2
_TAIL_MINUTES = (BURST_TAIL + 1) * BURST_WINDOW // 60  # from the unusual window's start

_risk = operator.attrgetter("risk_score")
_time = operator.attrgetter("timestamp")
#: What a stream reads from each alert, as a row.
_profile = operator.attrgetter("tactics", "techniques", "risk_score", "sensor", "severity")
_pair = operator.itemgetter(0, 1)
_third = operator.itemgetter(2)
_fourth = operator.itemgetter(3)
_fifth = operator.itemgetter(4)


def windows_of(times: Sequence[float]) -> set[int]:
    """The burst windows (numbered from the epoch) that these times, in order, fall in; found
    a step per window, not per time (`per_period`): a routine rule's run holds 100,000 times in
    200 windows, and three steps of every run ask for its windows."""
    return set(per_period(times, BURST_WINDOW))


#: Distinct (tactics, techniques), each with the earliest time it was seen.
Marks = dict[tuple[tuple[str, ...], tuple[str, ...]], float]


@dataclass(slots=True)
class Stream:
    """One rule on one host within an incident, read once: every priority factor and the
    incident's groups need only these, so building an incident of 100,000 alerts walks its
    streams, not its alerts again and again."""

    rule_id: str
    host: str
    first: Alert
    last: Alert
    top: Alert  # the earliest of its highest-risk alerts
    count: int
    windows: set[int]  # burst windows it fired in
    sensors: set[str]
    severities: set[Severity]  # its alerts' distinct severities (playbooks read the highest)
    #: Its alerts' distinct (tactics, techniques), each with the earliest time it was seen.
    marks: Marks

    @classmethod
    def of(cls, rule_id: str, host: str, alerts: list[Alert], times: list[float]) -> Stream:
        """`alerts` in time order, with their times as numbers."""
        # One pass reads what every factor needs from each alert (this runs over every alert
        # of the batch, and each pass over them is a pass over memory); the rest walks those
        # rows. map and zip iterate in C.
        rows = list(map(_profile, alerts))
        risks = list(map(_third, rows))
        # Each distinct (tactics, techniques) with its earliest time, which is written last.
        marks = dict(zip(map(_pair, reversed(rows)), reversed(times), strict=True))
        return cls(
            rule_id=rule_id,
            host=host,
            first=alerts[0],
            last=alerts[-1],
            top=alerts[risks.index(max(risks))],  # the earliest of the riskiest
            count=len(alerts),
            windows=windows_of(times),
            sensors=set(map(_fourth, rows)),
            severities=set(map(_fifth, rows)),
            marks=marks,
        )

    def merged(self, other: Stream) -> Stream:
        """This stream and another of the same rule and host, in whatever order in time: what
        `Stream.of` makes of both streams' alerts in one list sorted by time, this stream's
        first (so on equal times, this stream's alerts come first)."""
        marks = dict(other.marks)
        for mark, seen in self.marks.items():
            if seen <= marks.get(mark, seen):
                marks[mark] = seen
        mine, theirs = self.top, other.top
        # the riskier; on equal risk the earlier, on equal times this one
        ahead = (mine.risk_score, theirs.timestamp) >= (theirs.risk_score, mine.timestamp)
        top = mine if ahead else theirs
        first = self.first if self.first.timestamp <= other.first.timestamp else other.first
        last = other.last if other.last.timestamp >= self.last.timestamp else self.last
        return self._with(other, first, last, top, marks)

    def _with(self, other: Stream, first: Alert, last: Alert, top: Alert, marks: Marks) -> Stream:
        """Both streams' alerts as one stream, with the ends, top alert and marks given."""
        return Stream(
            rule_id=self.rule_id,
            host=self.host,
            first=first,
            last=last,
            top=top,
            count=self.count + other.count,
            windows=self.windows | other.windows,
            sensors=self.sensors | other.sensors,
            severities=self.severities | other.severities,
            marks=marks,
        )


def streams_of_runs(runs: Iterable[Run]) -> list[Stream]:
    """A cluster's streams: its runs (in time order), joined by rule and host."""
    return _joined(Stream.of(r.rule_id, r.host, r.alerts, r.times) for r in runs)


def streams_of_alerts(alerts: list[Alert]) -> list[Stream]:
    """Streams of alerts that were never correlated (an incident's stored sample)."""
    by_key: dict[tuple[str, str], list[Alert]] = {}
    for a in sorted(alerts, key=_time):
        by_key.setdefault((a.rule_id, host_of(a)), []).append(a)
    return [
        Stream.of(rule, host, items, [a.timestamp.timestamp() for a in items])
        for (rule, host), items in by_key.items()
    ]


def joined(*parts: Iterable[Stream]) -> list[Stream]:
    """Streams of the same rule and host joined, whatever their order in time (an extended
    incident's alerts may be newer than the batch's), ordered by first alert."""
    return _joined(s for part in parts for s in part)


def _joined(streams: Iterable[Stream]) -> list[Stream]:
    by_key: dict[tuple[str, str], Stream] = {}
    for s in streams:
        key = (s.rule_id, s.host)
        prev = by_key.get(key)
        by_key[key] = s if prev is None else prev.merged(s)
    return sorted(by_key.values(), key=lambda s: (s.first.timestamp, s.rule_id))


@dataclass(slots=True)
class Baseline:
    """How often each rule fires, and where it has fired before (for rarity and novelty)."""

    rule_counts: Counter[str] = field(default_factory=Counter)
    seen_rule_hosts: set[tuple[str, str]] = field(default_factory=set)
    has_history: bool = False
    window_pairs: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    #: Each rule-host pair's earliest time in the batch: only the incident holding it is the
    #: pair's first firing (a day's file holds many incidents of one pair).
    first_fired: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Since when the store (or the batch, if older) has watched: the store's first alert time
    #: (`RuleHistory.watched_from`), or the batch's. A pair is new only a day after it.
    watched_from: float = math.inf
    #: Rule-host pairs a person closed as noise, still in force (see `agent.dispositions`).
    tuned: dict[tuple[str, str], Tuning] = field(default_factory=dict)
    _bursts: Bursts | None = None
    _total: int | None = None
    _knows_a_day: bool | None = None
    _hours: HoursFired | None = None

    @classmethod
    def from_history(cls, history: RuleHistory) -> Baseline:
        """What earlier runs saw: a batch of five alerts is ranked against the last week, not
        against itself, and its windows against every window the store keeps (two days): a
        quarter hour's batch is then as unusual as it would be in a file of those days, not
        merely the most unusual of the last day, which a quiet day always has."""
        return cls(
            rule_counts=Counter(history.counts),
            seen_rule_hosts=set(history.pairs),
            has_history=bool(history.counts),
            watched_from=(history.watched_from if history.watched_from is not None else math.inf),
            window_pairs={
                start // BURST_WINDOW: set(pairs) for start, pairs in history.windows.items()
            },
        )

    @property
    def total(self) -> int:
        if self._total is None:  # rarity asks for it once per rule of every incident
            self._total = sum(self.rule_counts.values())
        return self._total

    def rarity(self, rule_id: str) -> float:
        """0 for the commonest rules, 1 for a rule seen once among everything.

        A rule is common if it makes many of the alerts, or if it fires in many of the hours
        watched: a detector reporting one odd DNS frequency every hour or two makes few alerts,
        yet its tenth report is routine, and it is what buries a lone odd alert of a quiet rule.
        Hours count once the windows span a day (`knows_a_day`): until then, a rule firing
        through one busy morning may be that morning's rhythm."""
        return min(self._rarity_by_count(rule_id), self._rarity_by_hours(rule_id))

    def rarity_reason(self, rule_id: str) -> str:
        """What a rule's rarity stands on, for the explanation."""
        count = self.rule_counts.get(rule_id, 0)
        if self._rarity_by_hours(rule_id) < self._rarity_by_count(rule_id):
            fired, watched = self.hours_fired(rule_id)
            return f"fired in {fired} of the {watched} hours watched"
        return f"{count} of {self.total} alerts"

    def _rarity_by_count(self, rule_id: str) -> float:
        total = self.total
        count = self.rule_counts.get(rule_id, 0)
        if total <= 1 or count <= 0:
            return 1.0
        return max(0.0, min(1.0, math.log(total / count) / math.log(total)))

    def _rarity_by_hours(self, rule_id: str) -> float:
        if not self.knows_a_day():
            return 1.0
        fired, watched = self.hours_fired(rule_id)
        if fired <= 0:
            return 1.0
        return max(0.0, min(1.0, math.log(watched / fired) / math.log(watched)))

    def hours_fired(self, rule_id: str) -> tuple[int, int]:
        """In how many hours the rule fired (on any host), of the hours the windows span: the
        store's two days of windows and the batch's, or the whole file's."""
        if self._hours is None:  # once per batch: rarity asks for it per rule of every incident
            self._hours = HoursFired.of(self.window_pairs)
        return self._hours.by_rule.get(rule_id, 0), self._hours.watched

    def observe(self, clusters: Iterable[Cluster]) -> None:
        """Count a batch's alerts, and the rule-host pairs of each burst window."""
        first = self.first_fired
        for cluster in clusters:
            for run in cluster.runs:
                self.rule_counts[run.rule_id] += len(run.alerts)
                pair = (run.rule_id, run.host)
                if run.times[0] < first.get(pair, math.inf):
                    first[pair] = run.times[0]
                    self.watched_from = min(self.watched_from, run.times[0])
                for w in windows_of(run.times):
                    self.window_pairs.setdefault(w, set()).add(pair)
        self._bursts = None
        self._total = None
        self._knows_a_day = None
        self._hours = None

    def tune(self, tunings: Iterable[Tuning]) -> None:
        """Take the tunings in force: their pairs count in no incident's rarity, rule diversity
        or novelty, but in an unusual window (see `prioritise`). Windows are left as they are:
        how unusual a quarter hour was is a fact of the network, and an intrusion's side
        effects often trip routine rules; so a tuning lowers only the incidents holding a
        tuned pair, and raises none."""
        self.tuned = {(t.rule_id, t.host): t for t in tunings}

    def knows_a_day(self) -> bool:
        """Whether the windows known (the store's and the batch's) span a day: fewer have not
        seen the daily cycle, so what they have not seen yet may only be the day's routine.
        Asked once per incident, so found once per batch (a 55-day file has 5,000 windows)."""
        if self._knows_a_day is None:
            pairs = self.window_pairs
            self._knows_a_day = bool(pairs) and max(pairs) - min(pairs) + 1 >= DAY_WINDOWS
        return self._knows_a_day

    def bursts(self) -> Bursts:
        """How unusual each observed time window is (computed once the batch is observed)."""
        if self._bursts is None:
            self._bursts = Bursts.of(self)
        return self._bursts


@dataclass(frozen=True, slots=True)
class HoursFired:
    """How many hours each rule fired in, and how many hours the windows span."""

    by_rule: dict[str, int]
    watched: int

    @classmethod
    def of(cls, window_pairs: dict[int, set[tuple[str, str]]]) -> HoursFired:
        if not window_pairs:
            return cls({}, 0)
        hours: dict[str, set[int]] = {}
        for window, pairs in window_pairs.items():
            hour = window // HOUR_WINDOWS
            for rule, _ in pairs:
                hours.setdefault(rule, set()).add(hour)
        first, last = min(window_pairs) // HOUR_WINDOWS, max(window_pairs) // HOUR_WINDOWS
        return cls({rule: len(h) for rule, h in hours.items()}, last - first + 1)


def history_of(clusters: list[Cluster]) -> RunHistory:
    """A batch's contribution to the rule history (the inverse of `Baseline.from_history`);
    days are UTC days, as alert times are. Only the windows the stores keep are sent."""
    counts: dict[tuple[date, str], int] = {}
    pairs: dict[tuple[str, str], date] = {}
    windows: dict[int, dict[tuple[str, str], int]] = {}
    first_seen: dict[date, float] = {}
    newest = max((c.times[-1] for c in clusters), default=0.0)
    kept_from = int(newest) - WINDOW_HISTORY_SECONDS
    for cluster in clusters:
        for run in cluster.runs:
            days = per_period(run.times, DAY)
            for day, n in days.items():
                key = (_EPOCH + timedelta(days=day), run.rule_id)
                counts[key] = counts.get(key, 0) + n
            latest = _EPOCH + timedelta(days=max(days))
            first_day = _EPOCH + timedelta(days=min(days))
            first_seen[first_day] = min(first_seen.get(first_day, math.inf), run.times[0])
            pair = (run.rule_id, run.host)
            if pairs.get(pair, latest) <= latest:
                pairs[pair] = latest
            if run.last >= kept_from:
                for w, n in per_period(run.times, BURST_WINDOW).items():
                    start = w * BURST_WINDOW
                    if start >= kept_from:
                        in_window = windows.setdefault(start, {})
                        in_window[pair] = in_window.get(pair, 0) + n
    return RunHistory(counts, pairs, windows, first_seen)


_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Bursts:
    """Rare rule-host pairs per time window, against the batch's median window. Each window
    counts as the most unusual of itself, the one after it and the BURST_TAIL before it: an
    intrusion's later steps (cracking the passwords it took, escalating, exfiltrating) follow its
    noisy start within the hour, and each may leave a single quiet alert.

    A window's share is its standout over the median, against the peak's. Windows spanning less
    than a day have not seen the daily cycle: a new store's (or a short file's) first sight of
    the day's routine jobs is the loudest window it knows, and would take the full points. So until
    the windows span a day, full points also need BURST_YOUNG_FULL rare pairs above the median.
    """

    rare_pairs: dict[int, int]
    median: int
    peak: int
    full: int = 1  # the standout over the median that gets full points

    @classmethod
    def of(cls, baseline: Baseline) -> Bursts:
        rules = {rule for pairs in baseline.window_pairs.values() for rule, _ in pairs}
        rare = {r for r in rules if baseline.rarity(r) >= RARE}  # once per rule, not per pair
        raw = {
            w: sum(1 for rule, _ in pairs if rule in rare)
            for w, pairs in baseline.window_pairs.items()
        }
        smooth = {
            w: max(raw.get(w + 1, 0), *(raw.get(w - k, 0) for k in range(BURST_TAIL + 1)))
            for w in raw
        }
        values = sorted(raw.values())
        if len(values) < BURST_MIN_WINDOWS:
            return cls({}, 0, 0)
        median, peak = values[len(values) // 2], values[-1]
        if peak - median < BURST_MIN_STANDOUT:
            return cls({}, median, peak)
        floor = 0 if baseline.knows_a_day() else BURST_YOUNG_FULL
        return cls(smooth, median, peak, max(peak - median, floor))

    def share(self, window: int) -> tuple[float, int]:
        """0-1: how far this window's rare pairs stand above the median, relative to `full`."""
        n = self.rare_pairs.get(window, 0)
        if n <= self.median:
            return 0.0, n
        return min(1.0, (n - self.median) / self.full), n


@dataclass(frozen=True, slots=True)
class Watchlist:
    """Names that matter most (hosts or identities), each exact or a shell-style pattern
    ("dc*", "*-adm"), matched case-insensitively: inventories rarely spell names as the
    sensors do."""

    patterns: tuple[str, ...] = ()
    _match: Callable[[str], re.Match[str] | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.patterns:
            joined = "|".join(fnmatch.translate(p.lower()) for p in self.patterns)
            object.__setattr__(self, "_match", re.compile(joined).match)

    @classmethod
    def parse(cls, text: str) -> Watchlist:
        """From a comma-separated setting; blanks ignored."""
        return cls(tuple(p.strip() for p in text.split(",") if p.strip()))

    def hits(self, names: Iterable[str]) -> list[str]:
        """The names on the list, each once, sorted."""
        match = self._match
        if match is None:
            return []
        return sorted({n for n in set(names) if match(n.lower())})


@dataclass(frozen=True, slots=True)
class PriorityConfig:
    """What the site knows about itself: its critical hosts and identities."""

    critical_assets: Watchlist = Watchlist()
    critical_identities: Watchlist = Watchlist()


def prioritise(
    streams: list[Stream],
    baseline: Baseline,
    cfg: PriorityConfig | None = None,
    *,
    count: int | None = None,
    hosts: Iterable[str] = (),
    users: Iterable[str] = (),
    background: bool = False,
) -> tuple[float, list[PriorityFactor]]:
    """The incident's priority and the factors that make it up (they sum to the priority).

    An extended incident passes the streams of its stored sample (a few alerts per rule and
    host, which keeps every rule, tactic, sensor and rule-host pair) joined with the new
    alerts'; `count` is then its true size. `hosts` and `users`: all the incident's so far
    (the criticality factor reads them).
    `background`: the incident is a routine rule's stream (see `agent.correlate`); it gets no
    burst factor, since firing all day it fires in every window, the unusual one included."""
    cfg = cfg or PriorityConfig()
    noise = baseline.tuned
    burst = None if background else _burst(streams, baseline)
    tuned = [s for s in streams if (s.rule_id, s.host) in noise] if noise else []
    # A tuning judged the pair's routine; in an unusual window it may be an intrusion's side
    # effect (the cracking a tuned CPU alert shows), so there it counts in full.
    set_aside = bool(tuned) and burst is not None and burst.points >= TUNING_SET_ASIDE_POINTS
    counted = (
        [s for s in streams if (s.rule_id, s.host) not in noise]
        if tuned and not set_aside
        else streams
    )
    starts = _starts(counted)
    factors = [
        _severity(streams),
        _rarity(counted, baseline, starts),
        _diversity(counted, baseline, starts),
        _tactics(streams),
        _sensors(streams),
        _volume(count if count is not None else sum(s.count for s in streams)),
    ]
    if burst is not None:
        factors.append(burst)
    novelty = _novelty(counted, baseline)
    if novelty is not None:
        factors.append(novelty)
    if tuned:
        factors.append(_tuning(tuned, baseline, set_aside))
    critical = _criticality(cfg, hosts, users)
    if critical is not None:
        factors.append(critical)
    total = sum(f.points for f in factors)
    return round(min(100.0, total), 2), factors


def _severity(streams: list[Stream]) -> PriorityFactor:
    top = max((s.top for s in streams), key=_risk)
    return PriorityFactor(
        name="severity",
        points=round(top.risk_score * 0.25, 2),
        detail=f"highest risk {top.risk_score:g} ({top.severity.value}) on alert {top.id}",
    )


def _rarity(streams: list[Stream], baseline: Baseline, starts: dict[str, float]) -> PriorityFactor:
    """The rarest rule counts most; a second rare rule corroborates it if it starts apart
    from it (more than `MOMENT`): starting with it, it is the same event seen again. `starts`:
    each rule's first time (`_starts`)."""
    if not streams:
        return PriorityFactor(
            name="rarity", points=0.0, detail="every rule here is tuned as noise on its host"
        )
    rules = {s.rule_id: s.first.rule_name for s in reversed(streams)}  # each rule's first name
    # Equally rare, the earliest counts as the rarest: which rules start apart from it must
    # not hang on names.
    scored = sorted(
        ((baseline.rarity(r), n, r) for r, n in rules.items()),
        key=lambda x: (-x[0], starts[x[2]], x[1], x[2]),
    )
    best, name, rarest = scored[0]
    apart = next(
        ((r, n) for r, n, rule in scored[1:] if abs(starts[rule] - starts[rarest]) > MOMENT), None
    )
    second, second_name = apart or (0.0, "")
    points = 25 * best**2 + 10 * second**2
    rare = sum(1 for r, _, _ in scored if r >= RARE)
    corroboration = (
        f"the next rarest starting apart from it: {second_name!r} (rarity {second:.2f})"
        if apart
        else f"no other rule starting more than {MOMENT // 60} min apart from it"
    )
    return PriorityFactor(
        name="rarity",
        points=round(points, 2),
        detail=(
            f"rarest rule {name!r} (rarity {best:.2f}: {baseline.rarity_reason(rarest)}); "
            f"{rare} rare rule(s); {corroboration}"
        ),
    )


def _starts(streams: list[Stream]) -> dict[str, float]:
    """Each rule's first time in the incident, on any host."""
    starts: dict[str, float] = {}
    for s in streams:
        first = s.first.timestamp.timestamp()
        if first < starts.get(s.rule_id, math.inf):
            starts[s.rule_id] = first
    return starts


def _diversity(
    streams: list[Stream], baseline: Baseline, starts: dict[str, float]
) -> PriorityFactor:
    """Distinct *rare* rules, counted by the moments they start at: many routine rules together
    are still routine, and rules that start together are one event seen by several detectors
    (a package update makes an audit detector report a new syscall, path and service
    combination at once), where an intrusion's steps start one after another."""
    if not streams:
        return PriorityFactor(
            name="rule_diversity",
            points=0.0,
            detail="every rule here is tuned as noise on its host",
        )
    rare = [start for rule, start in starts.items() if baseline.rarity(rule) >= RARE]
    moments = _moments(sorted(rare))
    return PriorityFactor(
        name="rule_diversity",
        points=float(min(15, 3 * max(0, moments - 1))),
        detail=(
            f"{len(starts)} distinct rule(s), {len(rare)} of them rare, starting at {moments} "
            f"moment(s) (rules starting within {MOMENT // 60} min of a moment's first are one)"
        ),
    )


def _moments(times: list[float]) -> int:
    """How many moments these sorted times fall in, each `MOMENT` long from its first."""
    count, start = 0, -math.inf
    for t in times:
        if t - start > MOMENT:
            count, start = count + 1, t
    return count


def tactics_first_seen(streams: Iterable[Stream]) -> dict[str, float]:
    """Each ATT&CK tactic of the streams, with the earliest time it was seen."""
    first_seen: dict[str, float] = {}
    for s in streams:
        for (tactics, _), t in s.marks.items():
            for tactic in tactics:
                if t < first_seen.get(tactic, math.inf):
                    first_seen[tactic] = t
    return first_seen


def _tactics(streams: list[Stream]) -> PriorityFactor:
    first_seen = tactics_first_seen(streams)
    if not first_seen:
        return PriorityFactor(name="tactics", points=0.0, detail="no ATT&CK tactic mapped")
    chain = ordered(list(first_seen))
    by_time = sorted(first_seen, key=lambda t: first_seen[t])
    forward = sum(1 for x, y in itertools.pairwise(by_time) if tactic_rank(y) > tactic_rank(x))
    points = min(15.0, 4.0 * len(chain)) + min(5.0, 2.5 * forward)
    names = " -> ".join(TACTIC_NAMES.get(t, t) for t in chain)
    return PriorityFactor(
        name="tactics",
        points=round(points, 2),
        detail=f"{len(chain)} tactic(s): {names}; {forward} forward step(s) in time",
    )


def _sensors(streams: list[Stream]) -> PriorityFactor:
    """Sensors corroborate one another when they saw one host in the same window (a network
    IDS, a host IDS and an anomaly detector on one server at one time); sensors that each saw
    a different host, or the same host hours apart, are not one event seen twice."""
    sensors = sorted(set().union(*(s.sensors for s in streams)))
    together: dict[tuple[str, int], set[str]] = {}
    for s in streams:
        for window in s.windows:
            together.setdefault((s.host, window), set()).update(s.sensors)
    # The most sensors together; the earliest such window names them.
    (host, _), most = min(together.items(), key=lambda x: (-len(x[1]), x[0][1], x[0][0]))
    detail = f"{len(sensors)} sensor(s): {', '.join(sensors)}"
    if len(most) > 1:
        detail += f"; {', '.join(sorted(most))} on {host} in one {BURST_WINDOW // 60}-minute window"
    elif len(sensors) > 1:
        detail += f"; no two on one host in one {BURST_WINDOW // 60}-minute window"
    return PriorityFactor(name="sensors", points=float(min(10, 5 * (len(most) - 1))), detail=detail)


def _volume(count: int) -> PriorityFactor:
    return PriorityFactor(
        name="volume",
        points=round(min(5.0, math.log10(max(1, count))), 2),
        detail=f"{count} alert(s); volume is capped at 5 points",
    )


def _burst(streams: list[Stream], baseline: Baseline) -> PriorityFactor | None:
    bursts = baseline.bursts()
    if not bursts.rare_pairs:
        return None
    windows = set().union(*(s.windows for s in streams))
    share, pairs = max(bursts.share(w) for w in windows)
    if share <= 0:
        return None
    return PriorityFactor(
        name="burst",
        points=round(BURST_POINTS * share**2, 2),
        detail=(
            f"fired between {BURST_WINDOW // 60} min before and {_TAIL_MINUTES} min after the "
            f"start of a window holding {pairs} rare rule-host pair(s), against {bursts.median} "
            f"in the median window (peak {bursts.peak}"
            + (
                f"; less than a day of windows known, full points need {bursts.full} above it)"
                if bursts.full > bursts.peak - bursts.median
                else ")"
            )
        ),
    )


def _novelty(streams: list[Stream], baseline: Baseline) -> PriorityFactor | None:
    """Rule-host pairs the store's week has not seen, once it has seen a whole day, in the
    incident that holds the pair's first alert of the batch (its later ones are not new), when
    that alert came a day or more after the store (or the batch) started watching: else a
    week's file triaged into a store started this morning would call its first day's jobs new."""
    if not baseline.has_history or not baseline.knows_a_day():
        return None
    first, seen = baseline.first_fired, baseline.seen_rule_hosts
    since = baseline.watched_from + DAY
    new = {
        pair
        for s in streams
        if (pair := (s.rule_id, s.host)) not in seen
        and first.get(pair) == (t := s.first.timestamp.timestamp())
        and t >= since
    }
    if not new:
        return None
    return PriorityFactor(
        name="novelty",
        points=float(min(10, 5 * len(new))),
        detail=f"{len(new)} rule(s) firing on a host for the first time",
    )


def _tuning(tuned: list[Stream], baseline: Baseline, set_aside: bool) -> PriorityFactor:
    """No points: it says which points are missing, and on whose word; or, `set_aside`, that
    the tuned pairs count in full, the window being unusual."""
    notes = sorted(
        {
            (t.verdict, t.actor, f"{t.at:%Y-%m-%d}", t.incident_id)
            for t in (baseline.tuned[s.rule_id, s.host] for s in tuned)
        }
    )
    said = "; ".join(f"closed as {v} by {a} on {d} (incident {i})" for v, a, d, i in notes[:3])
    more = f"; and {len(notes) - 3} more" if len(notes) > 3 else ""
    pairs = len({(s.rule_id, s.host) for s in tuned})
    name, effect = (
        ("tuning_set_aside", "counted in full, since they fired in an unusual window (burst)")
        if set_aside
        else ("tuning", "their rarity and novelty are not counted")
    )
    return PriorityFactor(
        name=name,
        points=0.0,
        detail=f"{pairs} rule-host pair(s) tuned as noise, {said}{more}: {effect}",
    )


def _criticality(
    cfg: PriorityConfig, hosts: Iterable[str], users: Iterable[str]
) -> PriorityFactor | None:
    """The site's crown jewels: a critical host or identity involved is worth reading, whatever
    else the incident shows. The detail names what matched, never the patterns."""
    parts = [
        (what, hit)
        for what, hit in (
            ("host", cfg.critical_assets.hits(hosts)),
            ("identity", cfg.critical_identities.hits(users)),
        )
        if hit
    ]
    if not parts:
        return None
    return PriorityFactor(
        name="criticality",
        points=float(min(CRITICALITY_POINTS_MAX, CRITICALITY_POINTS * len(parts))),
        detail="; ".join(
            f"critical {what}(s): {', '.join(hit[:5])}"
            + (f" (+{len(hit) - 5})" if len(hit) > 5 else "")
            for what, hit in parts
        ),
    )
