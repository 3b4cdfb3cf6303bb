"""Deterministic priority (0-100) from evidence, not volume, with the points of every factor.

A flood of one benign rule scores little beyond its severity: volume is worth at most 5 points,
while rarity, rule diversity, tactic progression and sensor corroboration carry the rest. A burst
factor lifts whatever fired in the batch's most unusual time window, in the half hour before it
or in the hour after it: an intrusion is many rare rules on several hosts at once, and its quiet
side effects and other steps (a CPU spike from password cracking, one odd DNS record) are worth
reading next to it even when they score little on their own.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.attack import TACTIC_NAMES, ordered, tactic_rank
from agent.baseline import BURST_WINDOW, DAY, RARE, Baseline
from agent.bursts import BURST_EPISODE_PAUSE, BURST_LEAD, BURST_TAIL
from agent.models import PriorityFactor
from agent.streams import Stream

BURST_POINTS = 40.0  # for the most unusual window; others get less, quadratically
MOMENT = 300  # seconds: rare rules first seen within this of one another's start are one event
CRITICALITY_POINTS = 10.0  # a critical host involved, or a critical identity; both: 15
CRITICALITY_POINTS_MAX = 15.0
THREAT_INTEL_POINTS = 10.0  # a value a threat-intelligence source lists
#: Burst points (a window at least half as far above the median as the most unusual) from
#: which tunings are set aside: see `prioritise`.
TUNING_SET_ASIDE_POINTS = BURST_POINTS * 0.5**2
_TAIL_MINUTES = (BURST_TAIL + 1) * BURST_WINDOW // 60  # from the unusual window's start
_LEAD_MINUTES = BURST_LEAD * BURST_WINDOW // 60
_PAUSE_MINUTES = BURST_EPISODE_PAUSE * BURST_WINDOW // 60  # quiet windows within an episode

_risk = operator.attrgetter("risk_score")


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
    def parse(cls, text: str, fold: Callable[[str], str] | None = None) -> Watchlist:
        """From a comma-separated setting; blanks ignored; each pattern through `fold`, as the
        names it is matched against were (hosts by their machine name)."""
        patterns = (p.strip().lower() for p in text.split(",") if p.strip())
        return cls(tuple(map(fold, patterns)) if fold else tuple(patterns))

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
    suppressed: int = 0,
    hosts: Iterable[str] = (),
    users: Iterable[str] = (),
    background: bool = False,
) -> tuple[float, list[PriorityFactor]]:
    """The incident's priority and the factors that make it up (they sum to the priority).

    An extended incident passes the streams of its stored sample (a few alerts per rule and
    host, which keeps every rule, tactic, sensor and rule-host pair) joined with the new
    alerts'; `count` is then its true size. `suppressed`: events its SIEM folded into its
    alerts beyond that (volume counts them). `hosts` and `users`: all the incident's so far
    (the criticality factor reads them).
    `background`: the incident is a routine rule's stream (see `agent.correlate`); it gets no
    burst factor, since firing all day it fires in every window, the unusual one included.
    An incident of findings only (`Stream.posture`: a vulnerability or configuration scan's)
    ranks by its volume alone, with a factor saying why."""
    cfg = cfg or PriorityConfig()
    total_count = count if count is not None else sum(s.count for s in streams)
    if streams and all(s.posture for s in streams):
        factors = [_posture(streams, total_count), volume_factor(total_count, suppressed)]
        return priority_of(factors), factors
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
    intel = _threat_intel(counted)  # a building block's match too: the SIEM's evidence
    blocks = [s for s in counted if s.building_blocks]
    if blocks:  # inputs to other rules: evidence, not a rare detection of their own
        counted = [s for s in counted if not s.building_blocks]
        # An EQL sequence's event alerts are building blocks of its rule, which counts through
        # the sequence's own alert.
        rules = {s.rule_id for s in counted}
        blocks = [s for s in blocks if s.rule_id not in rules]
    starts = _starts(counted)
    rarity = {rule: baseline.rarity(rule) for rule in starts}
    factors = [
        _severity(streams),
        _rarity(counted, baseline, starts, rarity),
        _diversity(starts, rarity),
        _tactics(streams),
        _sensors(streams),
        volume_factor(total_count, suppressed),
    ]
    if burst is not None:
        factors.append(burst)
    novelty = _novelty(counted, baseline)
    if novelty is not None:
        factors.append(novelty)
    if tuned:
        factors.append(_tuning(tuned, baseline, set_aside))
    if blocks:
        factors.append(_building_blocks(blocks))
    if intel is not None:
        factors.append(intel)
    rated = frozenset().union(*(s.critical for s in streams))
    critical = _criticality(cfg, hosts, users, rated)
    if critical is not None:
        factors.append(critical)
    return priority_of(factors), factors


def priority_of(factors: list[PriorityFactor]) -> float:
    """What the factors sum to, at most 100: an incident's priority."""
    return round(min(100.0, sum(f.points for f in factors)), 2)


#: Rarity's and diversity's detail when no rule counts.
NOTHING_COUNTED = "no rule here counts: each is tuned as noise on its host or a building block"


def _severity(streams: list[Stream]) -> PriorityFactor:
    top = max((s.top for s in streams), key=_risk)
    return PriorityFactor(
        name="severity",
        points=round(top.risk_score * 0.25, 2),
        detail=f"highest risk {top.risk_score:g} ({top.severity.value}) on alert {top.id}",
    )


def _rarity(
    streams: list[Stream], baseline: Baseline, starts: dict[str, float], rarity: dict[str, float]
) -> PriorityFactor:
    """The rarest rule counts most; a second rare rule corroborates it if it starts apart
    from it (more than `MOMENT`): starting with it, it is the same event seen again. `starts`:
    each rule's first time (`_starts`); `rarity`: each rule's, from the baseline."""
    if not streams:
        return PriorityFactor(name="rarity", points=0.0, detail=NOTHING_COUNTED)
    rules = {s.rule_id: s.first.rule_name for s in reversed(streams)}  # each rule's first name
    # Equally rare, the earliest counts as the rarest: which rules start apart from it must
    # not hang on names.
    scored = sorted(
        ((rarity[r], n, r) for r, n in rules.items()),
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


def _diversity(starts: dict[str, float], rarity: dict[str, float]) -> PriorityFactor:
    """Distinct *rare* rules, counted by the moments they start at: many routine rules together
    are still routine, and rules that start together are one event seen by several detectors
    (a package update makes an audit detector report a new syscall, path and service
    combination at once), where an intrusion's steps start one after another."""
    if not starts:
        return PriorityFactor(
            name="rule_diversity",
            points=0.0,
            detail=NOTHING_COUNTED,
        )
    rare = [start for rule, start in starts.items() if rarity[rule] >= RARE]
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


def volume_factor(count: int, suppressed: int) -> PriorityFactor:
    """Alerts, and the repeats their SIEM folded into them: evidence of little weight."""
    folded = f" and {suppressed} repeat(s) the SIEM folded into them" if suppressed else ""
    return PriorityFactor(
        name="volume",
        points=round(min(5.0, math.log10(max(1, count + suppressed))), 2),
        detail=f"{count} alert(s){folded}; volume is capped at 5 points",
    )


def _burst(streams: list[Stream], baseline: Baseline) -> PriorityFactor | None:
    bursts = baseline.bursts()
    if not bursts.rare_pairs:
        return None
    windows = set().union(*(s.windows for s in streams))
    found = max(bursts.share(w) for w in windows)
    if found.share <= 0:
        return None
    when = (
        f"fired between {_LEAD_MINUTES} min before the first and {_TAIL_MINUTES} min after the "
        f"start of the last of {found.windows} unusual windows in one episode (pausing at most "
        f"{_PAUSE_MINUTES} min), the most unusual holding"
        if found.windows > 1
        else f"fired between {_LEAD_MINUTES} min before and {_TAIL_MINUTES} min after the start "
        "of a window holding"
    )
    scale = (
        f"in the first day watched, full points need {bursts.young_full:g} above it"
        if found.young
        else f"peak {bursts.peak}"
    )
    return PriorityFactor(
        name="burst",
        points=round(BURST_POINTS * found.share**2, 2),
        detail=(
            f"{when} {found.pairs} rare rule-host pair(s), against {bursts.median} in the "
            f"median window ({scale})"
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


def _building_blocks(blocks: list[Stream]) -> PriorityFactor:
    """No points: which rules are building blocks, whose rarity and novelty do not count."""
    rules = sorted({s.first.rule_name for s in blocks})
    names = ", ".join(repr(r) for r in rules[:3]) + (
        f" and {len(rules) - 3} more" if len(rules) > 3 else ""
    )
    return PriorityFactor(
        name="building_blocks",
        points=0.0,
        detail=(
            f"{len(rules)} rule(s) here are building blocks ({names}): Elastic marks their alerts"
            " as inputs to other rules and hides them from its alerts table by default; their"
            " rarity and novelty are not counted"
        ),
    )


def _posture(streams: list[Stream], count: int) -> PriorityFactor:
    """Findings of a vulnerability or configuration scan: facts about hosts to fix, which a
    vulnerability team reads, not events a SOC must answer. A critical CVE on forty hosts
    ranked second in a day's queue, as a rare critical detection on forty hosts would."""
    hosts = sorted({s.host for s in streams})
    shown = ", ".join(hosts[:5]) + (f" (+{len(hosts) - 5})" if len(hosts) > 5 else "")
    return PriorityFactor(
        name="posture",
        points=0.0,
        detail=(
            f"{count} finding(s) of vulnerability detection or "
            f"configuration assessment on {shown}: facts about the hosts' state, not "
            "detections; only their volume counts (at most 5 points), not their severity, "
            "rarity or novelty"
        ),
    )


def _threat_intel(streams: list[Stream]) -> PriorityFactor | None:
    """Values of the incident's alerts a threat-intelligence source lists (an indicator match
    rule's matches, a file VirusTotal engines flag): known-bad evidence, whatever the rule's
    own rarity. A pair tuned as noise does not count, as for rarity."""
    found = sorted(frozenset().union(*(s.intel for s in streams)))
    if not found:
        return None
    more = f" (+{len(found) - 5})" if len(found) > 5 else ""
    return PriorityFactor(
        name="threat_intel",
        points=THREAT_INTEL_POINTS,
        detail="known to threat intelligence: " + "; ".join(found[:5]) + more,
    )


def _criticality(
    cfg: PriorityConfig, hosts: Iterable[str], users: Iterable[str], rated: frozenset[str]
) -> PriorityFactor | None:
    """The site's crown jewels: a critical host or identity involved is worth reading, whatever
    else the incident shows. Listed in the settings, or rated so by the SIEM (`rated`:
    `host:name`, `user:name`). The detail names what matched, never the patterns."""
    parts = []
    for what, kind, names, listed in (
        ("host", "host", list(hosts), cfg.critical_assets),
        ("identity", "user", list(users), cfg.critical_identities),
    ):
        by_siem = sorted({n for n in names if f"{kind}:{n}" in rated})
        hit = sorted({*listed.hits(names), *by_siem})
        if hit:
            parts.append((what, hit, by_siem))
    if not parts:
        return None
    return PriorityFactor(
        name="criticality",
        points=float(min(CRITICALITY_POINTS_MAX, CRITICALITY_POINTS * len(parts))),
        detail="; ".join(
            f"critical {what}(s): {', '.join(hit[:5])}"
            + (f" (+{len(hit) - 5})" if len(hit) > 5 else "")
            + (
                f" (rated so by the SIEM's asset criticality: {', '.join(by_siem[:5])})"
                if by_siem
                else ""
            )
            for what, hit, by_siem in parts
        ),
    )
