"""An incident's alerts as streams, one per rule and host: what every priority factor and
the incident's groups read, so an incident of 100,000 alerts is walked once.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from agent.baseline import windows_of
from agent.correlate import Run, host_of
from agent.models import Alert, Severity, Suppressed

_time = operator.attrgetter("timestamp")
#: What a stream reads from each alert, as a row.
_profile = operator.attrgetter("tactics", "techniques", "risk_score", "sensor", "severity")
_pair = operator.itemgetter(0, 1)
_third = operator.itemgetter(2)
_fourth = operator.itemgetter(3)
_fifth = operator.itemgetter(4)
_suppressed = operator.attrgetter("suppressed")
_building_block = operator.attrgetter("building_block")
_critical = operator.attrgetter("critical")
_intel = operator.attrgetter("intel")
#: One empty set for every stream with nothing critical or listed: Python makes a new one
#: each time (216 bytes), and a fleet's endpoints make a stream each.
_NOTHING: frozenset[str] = frozenset()


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
    #: Events the SIEM folded into its alerts (`Alert.suppressed`), beyond `count`; with
    #: them, when the stream was first and last seen.
    suppressed: int
    first_seen: datetime
    last_seen: datetime
    #: Its alerts that folded repeats, with how many, as read (`agent.refold` reads their
    #: later counts); empty for most.
    folding: tuple[tuple[str, int], ...]
    #: Every alert of it is a building block (`Alert.building_block`): an input to other rules.
    building_blocks: bool
    #: Its rule's alerts are findings about the host's state (`Alert.posture`).
    posture: bool
    #: Its alerts' hosts and accounts their SIEM rates critical (`Alert.critical`).
    critical: frozenset[str]
    #: Its alerts' values a threat-intelligence source lists (`Alert.intel`).
    intel: frozenset[str]
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
        folded: list[Suppressed] = list(filter(None, map(_suppressed, alerts)))
        first, last = alerts[0].timestamp, alerts[-1].timestamp
        return cls(
            rule_id=rule_id,
            host=host,
            first=alerts[0],
            last=alerts[-1],
            top=alerts[risks.index(max(risks))],  # the earliest of the riskiest
            count=len(alerts),
            suppressed=sum(s.count for s in folded),
            first_seen=min([first, *_ends(folded, "first_seen")]) if folded else first,
            last_seen=max([last, *_ends(folded, "last_seen")]) if folded else last,
            folding=_folding(alerts) if folded else (),
            building_blocks=all(map(_building_block, alerts)),  # most stop at the first
            posture=alerts[0].posture,
            critical=frozenset(chain.from_iterable(map(_critical, alerts))) or _NOTHING,
            intel=frozenset(chain.from_iterable(map(_intel, alerts))) or _NOTHING,
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
            suppressed=self.suppressed + other.suppressed,
            first_seen=min(self.first_seen, other.first_seen),
            last_seen=max(self.last_seen, other.last_seen),
            folding=self.folding + other.folding if other.folding else self.folding,
            building_blocks=self.building_blocks and other.building_blocks,
            posture=self.posture and other.posture,
            critical=self.critical | other.critical if other.critical else self.critical,
            intel=self.intel | other.intel if other.intel else self.intel,
            windows=self.windows | other.windows,
            sensors=self.sensors | other.sensors,
            severities=self.severities | other.severities,
            marks=marks,
        )


def _folding(alerts: list[Alert]) -> tuple[tuple[str, int], ...]:
    """The alerts whose count the SIEM updates in place (not a threshold's), as read."""
    return tuple(
        (a.id, a.suppressed.count)
        for a in alerts
        if a.suppressed is not None and a.suppressed.in_place
    )


def _ends(folded: list[Suppressed], edge: str) -> list[datetime]:
    """The folded repeats' first or last times, where their alerts said."""
    return [t for t in map(operator.attrgetter(edge), folded) if t is not None]


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
