"""Analysts write the assessment of an incident. The offline analyst needs no network at all.

Every analyst implements `Analyst.assess`; the graph falls back to the offline analyst whenever
another one fails, so a run always completes.
"""

from __future__ import annotations

from typing import Protocol

from agent.attack import TACTIC_NAMES
from agent.models import SEVERITY_RANK, Alert, Assessment, EntityLink, Incident, span_text

MAX_CITED = 12
MAX_LINKS_SAID = 3  # the summary names the first links; the explanation holds them all


class Analyst(Protocol):
    name: str

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        """An assessment whose cited ids all belong to the incident."""
        ...


class OfflineAnalyst:
    """Deterministic assessment from the incident's own evidence and priority breakdown."""

    name = "offline"

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        groups = sorted(incident.groups, key=lambda g: (-SEVERITY_RANK[g.severity], g.first_seen))
        cited = [g.sample_alert_id for g in groups][:MAX_CITED]
        verdict, confidence = _verdict(incident)
        lines = [
            f"{len(incident.alert_ids)} alert(s) from {len({g.rule_id for g in groups})} rule(s) "
            f"on {', '.join(incident.hosts[:5]) or 'no named host'}, "
            f"{incident.first_seen:%Y-%m-%d %H:%M} to {incident.last_seen:%Y-%m-%d %H:%M} UTC."
        ]
        for g in groups[:5]:
            times = f"x{g.count}" if g.count > 1 else "once"
            if g.suppressed:
                times += f", and {g.suppressed} repeat(s) the SIEM folded in"
            lines.append(
                f"{g.severity.value}: {g.rule_name} on {g.host} ({times}) [{g.sample_alert_id}]."
            )
        if incident.tactics:
            names = " -> ".join(TACTIC_NAMES.get(t, t) for t in incident.tactics)
            lines.append(f"ATT&CK tactics: {names}.")
        lines.append(_together(incident))
        factors = sorted(incident.explanation.priority_factors, key=lambda f: -f.points)[:3]
        lines.append(
            "Priority driven by "
            + "; ".join(f"{f.name} (+{f.points:g}): {f.detail}" for f in factors)
            + "."
        )
        return Assessment(
            analyst="offline",
            verdict=verdict,
            confidence=confidence,
            title=incident.title,
            summary=" ".join(lines),
            cited_alert_ids=[c for c in cited if c in alerts or c in incident.alert_ids],
            tactics=list(incident.tactics),
            techniques=list(incident.techniques),
        )


def _together(incident: Incident) -> str:
    """Why the incident's alerts belong together, in a sentence: its first links, or the
    routine a background stream continues, or one rule on one host."""
    ex = incident.explanation
    if not ex.links:
        routine = f", {ex.routine}" if ex.routine else ""
        return f"Together as one rule on one host{routine}."
    said = "; ".join(map(link_text, ex.links[:MAX_LINKS_SAID]))
    more = len(ex.links) - MAX_LINKS_SAID + ex.more_links
    return f"Linked by {said}" + (f"; and {more} more link(s)." if more > 0 else ".")


def link_text(link: EntityLink) -> str:
    """One reason the alerts belong together, in words (the summary and `vigie incidents show`)."""
    if link.kind == "rule":
        what = f"one rule sweeping hosts ({link.value})"
    elif link.kind == "sequence":
        what = f"one sequence its detection rule matched ({link.value})"
    elif link.kind == "process tree":
        what = f"one process and its descendants ({link.value})"
    elif link.kind == "progression":
        stages = " then ".join(TACTIC_NAMES.get(t, t) for t in link.tactics)
        what = f"ATT&CK progression on {link.value} ({stages})"
    else:
        what = f"shared {link.kind} {link.value}"
    return what + (f", up to {span_text(link.gap_seconds)} apart" if link.gap_seconds else "")


def _verdict(incident: Incident) -> tuple[str, float]:
    """A cautious reading: the offline analyst never calls anything benign on its own."""
    multi_stage = len(incident.tactics) >= 2 or len(incident.explanation.sensors) >= 2
    if incident.priority >= 60 and multi_stage:
        return "true_positive", 0.7
    if incident.priority >= 35:
        return "needs_investigation", 0.5
    return "needs_investigation", 0.3
