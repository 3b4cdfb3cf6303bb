"""How Vigie prints incidents in a terminal: tables and lines built from alert content, which
is attacker-controlled, so every value is text (never rich markup) and control characters show
as `\\xNN`. The command line (`agent.cli`) prints what these build."""

from __future__ import annotations

import orjson
from rich.table import Table
from rich.text import Text

from agent.analyst import link_text
from agent.approvals import approved_by
from agent.attack import TACTIC_NAMES
from agent.models import ActionProposal, AuditEvent, DeadLetter, Incident, span_text

#: C0 and C1 control characters and DEL, shown as \xNN: an escape sequence in an alert could
#: clear the analyst's screen, retitle the window or hide what follows it.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def plain(value: str) -> str:
    """Untrusted text (alert content, input quoted in errors) as the terminal should show it."""
    return value.translate(_CONTROLS)


def text(value: str) -> Text:
    """Untrusted text for a table cell: its characters as they are, never rich markup."""
    return Text(plain(value))


def incidents_table(title: str, incidents: list[Incident]) -> Table:
    """Incidents in reading order, each with the factors that rank it there."""
    table = Table(title=title)
    for col in ("#", "priority", "incident", "alerts", "verdict", "proposals"):
        table.add_column(col, no_wrap=True)
    table.add_column("why it ranks here", overflow="fold", min_width=24)
    table.add_column("title", overflow="fold", min_width=30)
    for rank, inc in enumerate(incidents, 1):
        closed = inc.disposition.verdict if inc.disposition else None
        table.add_row(
            str(rank),
            f"{inc.priority:.0f}",
            inc.incident_id,
            str(len(inc.alert_ids)),
            closed or (inc.assessment.verdict if inc.assessment else "-"),
            str(len(inc.proposal_ids)),
            ", ".join(f"{f.name} +{f.points:.0f}" for f in inc.leading_factors()),
            text(inc.title),  # rule and host names are alert content
        )
    return table


def some(names: list[str], shown: int = 5) -> str:
    """The first few of a list, and how many more."""
    if not names:
        return "-"
    more = f" (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def factors_table(inc: Incident, open_above: int) -> Table:
    """Every priority factor, largest first: why the incident ranks where it does."""
    table = Table(
        title=f"Priority {inc.priority:.0f}: {open_above} open incident(s) at this priority "
        "or above",
        title_justify="left",
    )
    table.add_column("factor", no_wrap=True)
    table.add_column("points", justify="right", no_wrap=True)
    table.add_column("why", overflow="fold")
    for f in sorted(inc.explanation.priority_factors, key=lambda f: -f.points):
        table.add_row(f.name, f"+{f.points:.1f}", text(f.detail))
    return table


def belonging(inc: Incident, shown: int = 12) -> list[str]:
    """Why the alerts belong together, a link a line (the incident page's list)."""
    ex = inc.explanation
    tactics = ", ".join(f"{t} {TACTIC_NAMES.get(t, '')}".strip() for t in inc.tactics)
    lines = [f"ATT&CK: {tactics or 'none mapped'}", "Why these alerts belong together:"]
    for link in ex.links[:shown]:
        seen = f", seen by {', '.join(link.sensors)}" if link.sensors else ""
        lines.append(f"  - {link_text(link)} ({len(link.alert_ids)} alert(s){seen})")
    if not ex.links:
        lines.append("  - one rule on one host" + (f", {ex.routine}" if ex.routine else ""))
    more = max(0, len(ex.links) - shown) + ex.more_links
    if more:
        lines.append(f"  - and {more} more link(s)")
    if ex.max_gap_seconds:
        lines.append(f"  largest gap between two alerts: {span_text(ex.max_gap_seconds)}")
    return lines


def timeline_table(inc: Incident, shown: int = 30) -> Table:
    """Repeats of each rule on each host, collapsed, in time order."""
    groups = sorted(inc.groups, key=lambda g: g.first_seen)
    more = f" (the first {shown} of {len(groups)})" if len(groups) > shown else ""
    table = Table(title=f"Timeline{more}", title_justify="left")
    for col in ("first", "last", "count", "severity", "rule", "host", "sample"):
        table.add_column(col, overflow="fold")
    for g in groups[:shown]:
        table.add_row(
            f"{g.first_seen:%m-%d %H:%M:%S}",
            f"{g.last_seen:%m-%d %H:%M:%S}",
            f"{g.count} +{g.suppressed} folded" if g.suppressed else str(g.count),
            g.severity.value,
            text(g.rule_name),
            text(g.host),
            text(g.sample_alert_id),
        )
    return table


def assessed(inc: Incident) -> list[str]:
    """The analyst's (offline or model) assessment, then a person's closing if any."""
    a, d = inc.assessment, inc.disposition
    lines = (
        ["Assessment: none yet"]
        if a is None
        else [
            f"Assessment by the {a.analyst} analyst: {a.verdict}, confidence {a.confidence:.0%}",
            f"  {a.summary}",
            f"  cited: {', '.join(a.cited_alert_ids) or '-'}",
            *(f"  flag: {n}" for n in a.notes),
        ]
    )
    r = inc.reopened
    if r is not None:
        held = "" if d is not None else "; held open until a person closes it"
        lines.append(
            f"Reopened by {r.actor} on {r.at:%Y-%m-%d %H:%M} UTC (was {r.was}): {r.reason}{held}"
        )
    if d is not None:
        tuned = (
            f"; {len(d.tuned)} rule-host pair(s) tuned until {d.tuned[0].expires_at:%Y-%m-%d}"
            if d.tuned
            else ""
        )
        lines.append(
            f"Closed as {d.verdict} by {d.actor} on {d.at:%Y-%m-%d %H:%M} UTC: {d.reason}{tuned}"
        )
    return lines


def proposals_table(proposals: list[ActionProposal]) -> Table:
    """The incident's proposals, each with its state and the approvals it has of those it
    needs."""
    table = Table(title="Proposed actions", title_justify="left")
    for col in ("proposal", "action", "risk", "state", "approvals", "arguments"):
        table.add_column(col, overflow="fold")
    for p in proposals:
        table.add_row(
            p.proposal_id,
            p.action,
            p.risk.value,
            p.state.value,
            f"{len(approved_by(p.approvals))}/{p.required_approvals}",
            text(", ".join(f"{k}={v}" for k, v in p.args.items())),
        )
    return table


def rejected_table(title: str, rejected: list[DeadLetter]) -> Table:
    """Documents that became no alert, newest first: where each came from and why. The
    excerpt is the sender's text."""
    table = Table(title=title, title_justify="left")
    for col in ("stored", "from", "reason", "document began"):
        table.add_column(col, overflow="fold")
    for d in rejected:
        where = f"{d.source}:{d.line}" if d.line is not None else d.source
        table.add_row(
            d.at.strftime("%Y-%m-%d %H:%M:%S") if d.at else "",
            text(where),
            text(d.reason),
            text(d.excerpt[:120]),
        )
    return table


def audit_table(title: str, events: list[AuditEvent]) -> Table:
    """Audit events as recorded; subjects and data may quote alert content (a rule's name)."""
    table = Table(title=title, title_justify="left")
    for col in ("seq", "at (UTC)", "actor", "kind", "subject", "data"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(
            str(e.seq),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            text(e.actor),
            text(e.kind),
            text(e.subject),
            text(orjson.dumps(e.data).decode()[:300]),
        )
    return table
