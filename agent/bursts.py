"""Which quarter hours stand out: the burst factor of `agent.prioritise` lifts what fired in or
near them, however little it scores on its own (an intrusion's quiet side effects and later
steps). Found once per batch from the baseline's windows (`Baseline.bursts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

from agent.baseline import BURST_WINDOW, DAY, RARE

if TYPE_CHECKING:
    from agent.baseline import Baseline

BURST_MIN_WINDOWS = 8  # a batch spanning fewer windows has no "usual" to compare with
BURST_MIN_STANDOUT = 5  # the top window must hold this many more rare pairs than the median
BURST_YOUNG_FULL = 30  # rare pairs above the median for full points, in a store's first day
BURST_TAIL = 4  # windows after an unusual one that share its burst (see Bursts)
BURST_LEAD = 2  # windows before an unusual one that share its burst (see Bursts)
#: A window at least this share of full burst points is part of an episode (see Bursts).
BURST_EPISODE_SHARE = 0.25
#: Quiet windows an episode may pause for between two unusual ones (see Bursts).
BURST_EPISODE_PAUSE = 1


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
    window's burst. An intruder runs one tool after another (a service scan, a directory scan,
    a CMS scan), and a few minutes' pause between two leaves a quiet quarter hour: an episode
    bridges up to BURST_EPISODE_PAUSE such windows.
    """

    rare_pairs: dict[int, int]
    median: int
    peak: int
    full: float = 1.0  # the standout over the median that gets full points
    young_until: int = 0  # windows before this one are in the first day of watching
    young_full: float = 1.0  # `full` for them
    #: Each window's burst, found once per batch (`_spread`); windows without one are absent.
    shares: dict[int, Share] = field(default_factory=dict)

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
        return replace(bursts, shares=_spread(bursts))

    def share(self, window: int) -> Share:
        """The most unusual of this window, the BURST_LEAD after it, the BURST_TAIL before it
        and the episode it is in or near."""
        return self.shares.get(window, _NO_SHARE)

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
    windows: int = 1  # unusual windows of the episode it stands for (see Bursts)


_NO_SHARE = Share(0.0, 0, False)


def _spread(bursts: Bursts) -> dict[int, Share]:
    """Each window's burst: the most unusual share among the windows whose reach covers it.
    A window reaches from BURST_LEAD before it to BURST_TAIL after it; a run of consecutive
    windows each worth BURST_EPISODE_SHARE or more (an episode, pausing for at most
    BURST_EPISODE_PAUSE quiet windows) reaches as one, from the lead before its first to the
    tail after its last, with its most unusual window's share."""
    shared: dict[int, Share] = {}
    unusual = []
    for window in sorted(bursts.rare_pairs):
        own = bursts.own(window)
        if own.share > 0:
            _reach(shared, window, window, own)
        if own.share >= BURST_EPISODE_SHARE:
            unusual.append(window)
    for run in _episodes(unusual):
        if len(run) > 1:  # a lone window reaches on its own, above
            best = max(map(bursts.own, run))._replace(windows=len(run))
            _reach(shared, run[0], run[-1], best)
    return shared


def _reach(shared: dict[int, Share], first: int, last: int, share: Share) -> None:
    for window in range(first - BURST_LEAD, last + BURST_TAIL + 1):
        shared[window] = max(share, shared.get(window, _NO_SHARE))


def _episodes(windows: list[int]) -> list[list[int]]:
    """Sorted windows in runs where each follows the last after at most BURST_EPISODE_PAUSE
    windows not in the list."""
    runs: list[list[int]] = []
    for window in windows:
        if runs and window - runs[-1][-1] <= 1 + BURST_EPISODE_PAUSE:
            runs[-1].append(window)
        else:
            runs.append([window])
    return runs


def _young_until(baseline: Baseline, raw: dict[int, int]) -> int:
    """The first window after the store's first day of watching; every window, while the
    windows known span less than a day."""
    if not baseline.knows_a_day() or not math.isfinite(baseline.watched_from):
        return max(raw) + 1
    return math.ceil((baseline.watched_from + DAY) / BURST_WINDOW)
