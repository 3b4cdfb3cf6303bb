"""What is usual on this network: how often each rule fires, in which hours, and which rule-host
pairs each quarter hour holds (the rarity, novelty and burst factors of `agent.prioritise` read
it; `agent.bursts` finds the quarter hours that stand out).

A baseline is the store's recent history (`Baseline.from_history`) plus the batch being
triaged (`Baseline.observe`): a rule is rare against the last week, not against its batch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from agent.correlate import Cluster
from agent.models import Tuning
from agent.normalize import read_host
from agent.routine import per_period
from agent.store import WINDOW_HISTORY_SECONDS, RuleHistory, RunHistory

if TYPE_CHECKING:
    from agent.bursts import Bursts

RARE = 0.5
HISTORY_DAYS = 7  # rarity and novelty are judged against this many days before a batch
BURST_WINDOW = 900  # seconds: the time windows in which rare rule-host pairs are counted
DAY = 86400
DAY_WINDOWS = DAY // BURST_WINDOW  # windows that show the daily cycle (knows_a_day)
HOUR_WINDOWS = 3600 // BURST_WINDOW  # windows in an hour (Baseline.hours_fired)
#: Hours the windows must span before rarity counts the hours a rule fired in, as a young store
#: judges what is routine (`CorrelationConfig.background_min_watched`); fewer show no rhythm.
HOURS_MIN_WATCHED = 6


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
                if run.posture:  # a scheduled scan's findings: no window is unusual for them
                    continue
                judged = run.judged_pair  # a network alert's: its sensor's, as its routine
                for w in windows_of(run.times):
                    self.window_pairs.setdefault(w, set()).add(judged)
        self._bursts = None
        self._total = None
        self._knows_a_day = None
        self._hours = None

    def tune(self, tunings: Iterable[Tuning]) -> None:
        """Take the tunings in force: their pairs count in no incident's rarity, rule diversity
        or novelty, but in an unusual window (see `prioritise`). Windows are left as they are:
        how unusual a quarter hour was is a fact of the network, and an intrusion's side
        effects often trip routine rules; so a tuning lowers only the incidents holding a
        tuned pair, and raises none. A tuning stored before hosts were read in lower case and
        by machine name holds the host as written then: it is taken as hosts are read now."""
        self.tuned = {(t.rule_id, read_host(t.host)): t for t in tunings}

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
        from agent.bursts import Bursts  # it reads this module's windows and rarity

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
            if run.last >= kept_from and not run.posture:  # as `Baseline.observe`
                judged = run.judged_pair  # a later batch judges a network rule on its sensor
                for w, n in per_period(run.times, BURST_WINDOW).items():
                    start = w * BURST_WINDOW
                    if start >= kept_from:
                        in_window = windows.setdefault(start, {})
                        in_window[judged] = in_window.get(judged, 0) + n
    return RunHistory(counts, pairs, windows, first_seen)


_EPOCH = date(1970, 1, 1)
