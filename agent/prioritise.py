"""Deterministic priority (0-100) from evidence, not volume, with the points of every factor.

A flood of one benign rule scores little beyond its severity: volume is worth at most 5 points,
while rarity, rule diversity, tactic progression and sensor corroboration carry the rest.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.attack import TACTIC_NAMES, ordered, tactic_rank
from agent.models import Alert, PriorityFactor

RARE = 0.5


@dataclass(slots=True)
class Baseline:
    """How often each rule fires, and where it has fired before (for rarity and novelty)."""

    rule_counts: Counter[str] = field(default_factory=Counter)
    seen_rule_hosts: set[tuple[str, str]] = field(default_factory=set)
    has_history: bool = False

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


def _novelty(alerts: list[Alert], baseline: Baseline) -> PriorityFactor | None:
    if not baseline.has_history:
        return None
    new = {
        (a.rule_id, a.entities.hosts[0] if a.entities.hosts else "-") for a in alerts
    } - baseline.seen_rule_hosts
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
    seen = {v for a in alerts for v in (*a.entities.hosts, *a.entities.users)} | set(entities)
    hit = sorted(seen & cfg.critical_assets)
    if not hit:
        return None
    return PriorityFactor(
        name="criticality", points=10.0, detail=f"critical asset(s): {', '.join(hit[:5])}"
    )
