"""Deterministic priority (0-100) from evidence, not volume, with the points of every factor.

A flood of one benign rule scores little beyond its severity: volume is worth at most 5 points,
while rarity, rule diversity, tactic progression and sensor corroboration carry the rest. A burst
factor lifts whatever fired in the batch's most unusual time window: an intrusion is many rare
rules on several hosts at once, and its quiet side effects (a CPU spike on another host, one odd
DNS record) are worth reading next to it even when they score little on their own.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from agent.attack import TACTIC_NAMES, ordered, tactic_rank
from agent.correlate import host_of
from agent.models import Alert, PriorityFactor, distinct_entities
from agent.store import RuleHistory

RARE = 0.5
HISTORY_DAYS = 7  # rarity and novelty are judged against this many days before a batch
BURST_WINDOW = 900  # seconds: the time windows in which rare rule-host pairs are counted
BURST_POINTS = 40.0  # for the most unusual window; others get less, quadratically
BURST_MIN_WINDOWS = 8  # a batch spanning fewer windows has no "usual" to compare with
BURST_MIN_STANDOUT = 5  # the top window must hold this many more rare pairs than the median


@dataclass(slots=True)
class Baseline:
    """How often each rule fires, and where it has fired before (for rarity and novelty)."""

    rule_counts: Counter[str] = field(default_factory=Counter)
    seen_rule_hosts: set[tuple[str, str]] = field(default_factory=set)
    has_history: bool = False
    window_pairs: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    _bursts: Bursts | None = None

    @classmethod
    def from_history(cls, history: RuleHistory) -> Baseline:
        """What earlier runs saw: a batch of five alerts is ranked against the last week, not
        against itself."""
        return cls(
            rule_counts=Counter(history.counts),
            seen_rule_hosts=set(history.pairs),
            has_history=bool(history.counts),
        )

    @property
    def total(self) -> int:
        return sum(self.rule_counts.values())

    def rarity(self, rule_id: str) -> float:
        """0 for the commonest rules, 1 for a rule seen once among everything."""
        total = self.total
        count = self.rule_counts.get(rule_id, 0)
        if total <= 1 or count <= 0:
            return 1.0
        return max(0.0, min(1.0, math.log(total / count) / math.log(total)))

    def observe(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            self.rule_counts[a.rule_id] += 1
            self.window_pairs.setdefault(window_of(a), set()).add((a.rule_id, host_of(a)))
        self._bursts = None

    def bursts(self) -> Bursts:
        """How unusual each observed time window is (computed once the batch is observed)."""
        if self._bursts is None:
            self._bursts = Bursts.of(self)
        return self._bursts


def window_of(alert: Alert) -> int:
    """The burst window an alert falls in."""
    return int(alert.timestamp.timestamp()) // BURST_WINDOW


def history_of(
    alerts: list[Alert],
) -> tuple[dict[tuple[date, str], int], dict[tuple[str, str], date]]:
    """What a run adds to the rule history: counts by (day, rule), each rule-host pair's
    latest day (the inverse of `Baseline.from_history`)."""
    counts: dict[tuple[date, str], int] = {}
    pairs: dict[tuple[str, str], date] = {}
    for a in alerts:
        day = a.timestamp.date()
        key = (day, a.rule_id)
        counts[key] = counts.get(key, 0) + 1
        pair = (a.rule_id, host_of(a))
        if pairs.get(pair, day) <= day:
            pairs[pair] = day
    return counts, pairs


@dataclass(frozen=True, slots=True)
class Bursts:
    """Rare rule-host pairs per time window, smoothed over the neighbouring windows (an attack's
    later steps spill into the next quarter hour), against the batch's median window."""

    rare_pairs: dict[int, int]
    median: int
    peak: int

    @classmethod
    def of(cls, baseline: Baseline) -> Bursts:
        raw = {
            w: sum(1 for rule, _ in pairs if baseline.rarity(rule) >= RARE)
            for w, pairs in baseline.window_pairs.items()
        }
        smooth = {w: max(raw.get(w - 1, 0), n, raw.get(w + 1, 0)) for w, n in raw.items()}
        values = sorted(raw.values())
        if len(values) < BURST_MIN_WINDOWS:
            return cls({}, 0, 0)
        median, peak = values[len(values) // 2], values[-1]
        if peak - median < BURST_MIN_STANDOUT:
            return cls({}, median, peak)
        return cls(smooth, median, peak)

    def share(self, window: int) -> tuple[float, int]:
        """0-1: how far this window's rare pairs stand above the median, relative to the peak."""
        n = self.rare_pairs.get(window, 0)
        if n <= self.median:
            return 0.0, n
        return (n - self.median) / (self.peak - self.median), n


@dataclass(frozen=True, slots=True)
class PriorityConfig:
    critical_assets: frozenset[str] = frozenset()


def prioritise(
    alerts: list[Alert],
    baseline: Baseline,
    cfg: PriorityConfig | None = None,
    *,
    count: int | None = None,
    entities: Iterable[str] = (),
) -> tuple[float, list[PriorityFactor]]:
    """The incident's priority and the factors that make it up (they sum to the priority).

    An extended incident passes its stored sample (a few alerts per rule and host, which keeps
    every rule, tactic, sensor and rule-host pair) plus the new alerts; `count` is then its
    true size and `entities` its hosts and users so far."""
    cfg = cfg or PriorityConfig()
    factors = [
        _severity(alerts),
        _rarity(alerts, baseline),
        _diversity(alerts, baseline),
        _tactics(alerts),
        _sensors(alerts),
        _volume(count if count is not None else len(alerts)),
    ]
    burst = _burst(alerts, baseline)
    if burst is not None:
        factors.append(burst)
    novelty = _novelty(alerts, baseline)
    if novelty is not None:
        factors.append(novelty)
    critical = _criticality(alerts, cfg, entities)
    if critical is not None:
        factors.append(critical)
    total = sum(f.points for f in factors)
    return round(min(100.0, total), 2), factors


def _severity(alerts: list[Alert]) -> PriorityFactor:
    top = max(alerts, key=lambda a: a.risk_score)
    return PriorityFactor(
        name="severity",
        points=round(top.risk_score * 0.25, 2),
        detail=f"highest risk {top.risk_score:g} ({top.severity.value}) on alert {top.id}",
    )


def _rarity(alerts: list[Alert], baseline: Baseline) -> PriorityFactor:
    """The rarest rule counts most; a second rare rule corroborates it."""
    rules = {a.rule_id: a.rule_name for a in alerts}
    scored = sorted(((baseline.rarity(r), n) for r, n in rules.items()), reverse=True)
    best, name = scored[0]
    second = scored[1][0] if len(scored) > 1 else 0.0
    points = 25 * best**2 + 10 * second**2
    rare = sum(1 for r, _ in scored if r >= RARE)
    return PriorityFactor(
        name="rarity",
        points=round(points, 2),
        detail=f"rarest rule {name!r} (rarity {best:.2f}); {rare} rare rule(s)",
    )


def _diversity(alerts: list[Alert], baseline: Baseline) -> PriorityFactor:
    """Distinct *rare* rules: many routine rules together are still routine."""
    rules = {a.rule_id for a in alerts}
    rare = sum(1 for r in rules if baseline.rarity(r) >= RARE)
    return PriorityFactor(
        name="rule_diversity",
        points=float(min(15, 3 * max(0, rare - 1))),
        detail=f"{len(rules)} distinct rule(s), {rare} of them rare",
    )


def _tactics(alerts: list[Alert]) -> PriorityFactor:
    first_seen: dict[str, float] = {}
    for a in alerts:
        for t in a.tactics:
            first_seen.setdefault(t, a.timestamp.timestamp())
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


def _sensors(alerts: list[Alert]) -> PriorityFactor:
    sensors = sorted({a.sensor for a in alerts})
    return PriorityFactor(
        name="sensors",
        points=float(min(10, 5 * (len(sensors) - 1))),
        detail=f"{len(sensors)} sensor(s): {', '.join(sensors)}",
    )


def _volume(count: int) -> PriorityFactor:
    return PriorityFactor(
        name="volume",
        points=round(min(5.0, math.log10(max(1, count))), 2),
        detail=f"{count} alert(s); volume is capped at 5 points",
    )


def _burst(alerts: list[Alert], baseline: Baseline) -> PriorityFactor | None:
    bursts = baseline.bursts()
    if not bursts.rare_pairs:
        return None
    windows = {window_of(a) for a in alerts}
    share, pairs = max(bursts.share(w) for w in windows)
    if share <= 0:
        return None
    return PriorityFactor(
        name="burst",
        points=round(BURST_POINTS * share**2, 2),
        detail=(
            f"fired within {BURST_WINDOW // 60} min of a window holding {pairs} rare rule-host "
            f"pair(s), against {bursts.median} in the batch's median window (peak {bursts.peak})"
        ),
    )


def _novelty(alerts: list[Alert], baseline: Baseline) -> PriorityFactor | None:
    if not baseline.has_history:
        return None
    new = {(a.rule_id, host_of(a)) for a in alerts} - baseline.seen_rule_hosts
    if not new:
        return None
    return PriorityFactor(
        name="novelty",
        points=float(min(10, 5 * len(new))),
        detail=f"{len(new)} rule(s) firing on a host for the first time",
    )


def _criticality(
    alerts: list[Alert], cfg: PriorityConfig, entities: Iterable[str]
) -> PriorityFactor | None:
    if not cfg.critical_assets:
        return None
    seen = {v for e in distinct_entities(alerts) for v in (*e.hosts, *e.users)} | set(entities)
    hit = sorted(seen & cfg.critical_assets)
    if not hit:
        return None
    return PriorityFactor(
        name="criticality", points=10.0, detail=f"critical asset(s): {', '.join(hit[:5])}"
    )
