"""What is routine on a host: a rule firing there through most of the hours judged is its
*background*, whose alerts link nothing (`agent.correlate` folds them into one run), so a noisy
rule cannot glue a host's day together.

A batch shorter than a day (a sweep's page, a webhook batch) is judged with the hours before it
(`RecentHours`, from the store's window history); a store younger than a day, on the hours it
has watched. An hour far above the rule's usual rate bursts out of the background (a scanner
hammering a web server trips the daily noise's rule, only much harder), unless it was as busy
at that time on another day (a daily job).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.correlate import CorrelationConfig

#: Each rule-host pair's alert count per hour (numbered from the epoch), from earlier runs.
RecentHours = Mapping[tuple[str, str], Mapping[int, int]]


@dataclass(frozen=True, slots=True)
class Routine:
    """Why a rule on a host is background: the hours it fired in, of the hours judged."""

    hours: int
    span: int
    usual: float  # its median alerts in an hour it fired in
    earlier: bool  # the store's hours before the batch were judged too
    daily: int = 0  # busy hours kept routine: as busy at that time on another day

    def reason(self) -> str:
        judged = "the batch's and the store's before it" if self.earlier else "the batch's"
        busy = (
            f"; {self.daily} busy hour(s) as busy at that time on another day" if self.daily else ""
        )
        return (
            f"routine: fired in {self.hours} of {self.span} hours ({judged}), "
            f"a median {self.usual:g} alert(s) an hour{busy}"
        )


def recent_hours(windows: Mapping[int, Mapping[tuple[str, str], int]]) -> RecentHours:
    """The store's window history (window start -> rule-host pair -> alerts) by hour."""
    by_pair: dict[tuple[str, str], dict[int, int]] = {}
    for start, pairs in windows.items():
        hour = start // 3600
        for pair, n in pairs.items():
            counts = by_pair.setdefault(pair, {})
            counts[hour] = counts.get(hour, 0) + n
    return by_pair


def background_of(
    times: list[float],
    span_hours: int,
    cfg: CorrelationConfig,
    before: Mapping[int, int] | None = None,
    watched: int = 0,
) -> tuple[set[int], Routine] | None:
    """None for a rule and host that are not background; else the hours of the batch it bursts
    in, and why it is routine. Hours are counted by bisecting the times, not alert by alert.

    `before`: its counts per hour in earlier runs. A batch shorter than the lookback is then
    judged on the lookback's hours, the batch's added to the earlier ones: a rule that fired in
    most hours of the last day is routine in this quarter hour too, unless it bursts. A store
    that has `watched` fewer hours than the lookback (a new deployment) judges on those: a
    login rule firing every hour since it started is routine at 10:00 of its first day, and
    must not glue every mail server's logins to an incident on them. Judged on fewer hours, a
    rule also needs `background_min_alerts`, one an hour of the day those hours stand in for,
    or to have fired in every hour since its first, six or more (`_steady`): an hourly job's
    one alert an hour is a habit, a detector's five lone anomalies in its first hours are not."""
    young = False
    if before:
        young = watched < cfg.background_lookback_hours
        span_hours = max(span_hours, min(cfg.background_lookback_hours, watched))
        if span_hours < cfg.background_min_watched:
            return None
    elif span_hours < cfg.background_min_hours:
        return None
    hours = per_period(times, 3600)
    counts = _with_earlier(hours, before, span_hours) if before else hours
    if len(counts) < cfg.background_hour_share * span_hours:
        return None
    if (
        young
        and sum(counts.values()) < cfg.background_min_alerts
        and not _steady(counts, cfg.background_min_watched)
    ):
        return None
    usual = statistics.median(counts.values())
    loud = max(cfg.burst_min, cfg.burst_factor * usual)
    bursts = {h for h in hours if counts[h] > loud}
    known = {**before, **counts} if before and bursts else counts  # only a burst asks
    daily = _daily(bursts, known, loud, cfg.burst_factor)
    routine = Routine(len(counts), span_hours, usual, bool(before), len(daily))
    return bursts - daily, routine


def _steady(counts: Mapping[int, int], min_hours: int) -> bool:
    """Whether a rule fired in every hour from its first to its last, `min_hours` or more: a
    heartbeat (an antivirus update every hour), which would otherwise carry whatever incident
    holds its host from hour to hour until the store has watched a day."""
    first, last = min(counts), max(counts)
    return last - first + 1 >= min_hours and len(counts) == last - first + 1


#: Other days (before and after) whose same hour shows a daily job's busy hour (`_daily`).
_OTHER_DAYS = [24 * k + d for k in (-2, -1, 1, 2) for d in (-1, 0, 1)]


def _daily(bursts: set[int], known: Mapping[int, int], loud: float, factor: float) -> set[int]:
    """The burst hours whose time of day (within an hour) was loud on another day too, and
    about as loud (within `factor`): a daily job's busy hour, which is routine, not a flood
    an intrusion causes. A flood `factor` times louder than that day's stays a burst."""
    return {
        h
        for h in bursts
        if any(
            loud < (n := known.get(h + step, 0)) and n * factor >= known[h] for step in _OTHER_DAYS
        )
    }


def watched_hours(recent: RecentHours, last: float) -> int:
    """The hours from the first the store's history holds to the batch's last (0 without)."""
    first = min((min(hours) for hours in recent.values() if hours), default=None)
    return 0 if first is None else int(last // 3600) - first + 1


def _with_earlier(hours: dict[int, int], before: Mapping[int, int], span: int) -> dict[int, int]:
    """The batch's counts per hour added to the earlier ones of the `span` hours up to its
    last."""
    last = max(hours)
    counts = {h: n for h, n in before.items() if last - span < h <= last}
    for h, n in hours.items():
        counts[h] = counts.get(h, 0) + n
    return counts


def per_period(times: Sequence[float], seconds: int) -> dict[int, int]:
    """How many of these times (in order) fall in each period (hour, day) they reach, numbered
    from the epoch; found by bisecting, a step per period rather than per time."""
    counts: dict[int, int] = {}
    start = 0
    while start < len(times):
        period = int(times[start] // seconds)
        end = bisect.bisect_left(times, (period + 1) * seconds, start)
        counts[period] = end - start
        start = end
    return counts
