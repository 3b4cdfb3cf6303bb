"""What is usual on this network: how often each rule fires, in which hours, and which
quarter hours stand out (the rarity, novelty and burst factors of `agent.prioritise` read it).

A baseline is the store's recent history (`Baseline.from_history`) plus the batch being
triaged (`Baseline.observe`): a rule is rare against the last week, not against its batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import NamedTuple

from agent.correlate import Cluster
from agent.models import Tuning
from agent.routine import per_period
from agent.store import WINDOW_HISTORY_SECONDS, RuleHistory, RunHistory

RARE = 0.5
HISTORY_DAYS = 7  # rarity and novelty are judged against this many days before a batch
BURST_WINDOW = 900  # seconds: the time windows in which rare rule-host pairs are counted
BURST_MIN_WINDOWS = 8  # a batch spanning fewer windows has no "usual" to compare with
BURST_MIN_STANDOUT = 5  # the top window must hold this many more rare pairs than the median
DAY = 86400
DAY_WINDOWS = DAY // BURST_WINDOW  # windows that show the daily cycle (knows_a_day)
HOUR_WINDOWS = 3600 // BURST_WINDOW  # windows in an hour (Baseline.hours_fired)
BURST_YOUNG_FULL = 30  # rare pairs above the median for full points, with less than a day known
#: Hours the windows must span before rarity counts the hours a rule fired in, as a young store
#: judges what is routine (`CorrelationConfig.background_min_watched`); fewer show no rhythm.
HOURS_MIN_WATCHED = 6
BURST_TAIL = 4  # windows after an unusual one that share its burst (see Bursts)
BURST_LEAD = 2  # windows before an unusual one that share its burst (see Bursts)
#: A window at least this share of full burst points is part of an episode (see Bursts).
BURST_EPISODE_SHARE = 0.25


def windows_of(times: Sequence[float]) -> set[int]:
    """The burst windows (numbered from the epoch) that these times, in order, fall in; found
    a step per window, not per time (`per_period`): a routine rule's run holds 100,000 times in
    200 windows, and three steps of every run ask for its windows."""
    return set(per_period(times, BURST_WINDOW))


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
        Hours count once the windows span `HOURS_MIN_WATCHED` hours: a store younger than a day
        judged by count alone gave its first day's detector reports the rarity of an intrusion's
        steps, and they kept it after the store knew better."""
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
        fired, watched = self.hours_fired(rule_id)
        if watched < HOURS_MIN_WATCHED or fired <= 0:
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
    counts as the most unusual of itself, the BURST_LEAD after it and the BURST_TAIL before it:
    an intrusion's later steps (cracking the passwords it took, escalating, exfiltrating) follow
    its noisy start within the hour, and each may leave a single quiet alert; and its loudest
    window is not always its first (a quiet web shell and password cracking, then an escalation
    that trips many rules), so the half hour before it shares its burst too.

    A window's share is its standout over the median, against the peak's. A window in the
    store's first day of watching (or in windows spanning less than a day) has not been seen
    against the daily cycle: the first sight of the day's routine jobs, and anomaly detectors
    learning what they watch, make the loudest windows there are. So there full points also
    need BURST_YOUNG_FULL rare pairs above the median, and such a window is the peak that later
    ones are measured against only if it has them: a file judges its first day as the store
    would have, fed it batch by batch, and a quiet intrusion on the fourth day is not measured
    against the detectors' first morning.

    An intrusion can also be slow: a careful scan spreads its rare pairs over an hour or more,
    each window less unusual than its first, and its later steps come after the tail of that
    first. Consecutive windows each worth at least BURST_EPISODE_SHARE of full points are one
    episode, and all of them (with the lead before and the tail after) share its most unusual
    window's burst.
    """

    rare_pairs: dict[int, int]
    median: int
    peak: int
    full: float = 1.0  # the standout over the median that gets full points
    young_until: int = 0  # windows before this one are in the first day of watching
    young_full: float = 1.0  # `full` for them
    #: Windows in or near an episode of several unusual windows, with its most unusual's share.
    episodes: dict[int, Share] = field(default_factory=dict)

    @classmethod
    def of(cls, baseline: Baseline) -> Bursts:
        rules = {rule for pairs in baseline.window_pairs.values() for rule, _ in pairs}
        rare = {r for r in rules if baseline.rarity(r) >= RARE}  # once per rule, not per pair
        raw = {
            w: sum(1 for rule, _ in pairs if rule in rare)
            for w, pairs in baseline.window_pairs.items()
        }
        values = sorted(raw.values())
        if len(values) < BURST_MIN_WINDOWS:
            return cls({}, 0, 0)
        median = values[len(values) // 2]
        if values[-1] - median < BURST_MIN_STANDOUT:
            return cls({}, median, values[-1])
        young_until = _young_until(baseline, raw)
        peak = max(
            (
                n
                for w, n in raw.items()
                if w >= young_until or n - median >= BURST_YOUNG_FULL  # a first day's, if loud
            ),
            default=median,
        )
        full = peak - median if peak - median >= BURST_MIN_STANDOUT else math.inf
        young_full = max(peak - median, BURST_YOUNG_FULL)
        bursts = cls(raw, median, peak, full, young_until, young_full)
        return replace(bursts, episodes=_episodes(bursts))

    def share(self, window: int) -> Share:
        """0-1: the most unusual of this window, the BURST_LEAD after it, the BURST_TAIL
        before it and the episode it is in or near; with that window's rare pairs, and whether
        it is in the first day of watching."""
        near = max(map(self.own, range(window - BURST_TAIL, window + BURST_LEAD + 1)))
        return max(near, self.episodes.get(window, _NO_SHARE))

    def own(self, window: int) -> Share:
        """How far this window's rare pairs stand above the median, relative to its `full`."""
        n = self.rare_pairs.get(window, 0)
        if n <= self.median:
            return _NO_SHARE
        young = window < self.young_until
        full = self.young_full if young else self.full
        return Share(min(1.0, (n - self.median) / full), n, young)


class Share(NamedTuple):
    """How unusual a window is, and why (compared as a tuple: the larger share first)."""

    share: float  # 0-1: the burst's share of full points
    pairs: int  # rare rule-host pairs in the window it comes from
    young: bool  # that window is in the store's first day of watching
    windows: int = 1  # consecutive unusual windows it stands for (an episode: see Bursts)


_NO_SHARE = Share(0.0, 0, False)


def _episodes(bursts: Bursts) -> dict[int, Share]:
    """Each window in or near a run of consecutive unusual windows (from BURST_LEAD before its
    first to BURST_TAIL after its last), with the run's most unusual window's share."""
    unusual = sorted(w for w in bursts.rare_pairs if bursts.own(w)[0] >= BURST_EPISODE_SHARE)
    shared: dict[int, Share] = {}
    start = 0
    for k in range(1, len(unusual) + 1):
        if k < len(unusual) and unusual[k] == unusual[k - 1] + 1:
            continue
        run = unusual[start:k]
        start = k
        if len(run) < 2:  # a lone window: `Bursts.share` already spreads it
            continue
        best = max(map(bursts.own, run))._replace(windows=len(run))
        for w in range(run[0] - BURST_LEAD, run[-1] + BURST_TAIL + 1):
            shared[w] = max(best, shared.get(w, _NO_SHARE))
    return shared


def _young_until(baseline: Baseline, raw: dict[int, int]) -> int:
    """The first window after the store's first day of watching; every window, while the
    windows known span less than a day."""
    if not baseline.knows_a_day() or not math.isfinite(baseline.watched_from):
        return max(raw) + 1
    return math.ceil((baseline.watched_from + DAY) / BURST_WINDOW)
