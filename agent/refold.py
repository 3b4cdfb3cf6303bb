"""Later counts of the alerts a SIEM folds repeats into, for incidents that already hold them.

Elastic's alert suppression writes one alert for a rule's matches on the same values within its
window and updates it in place as more come (`kibana.alert.suppression.docs_count`, `.end`,
`kibana.alert.last_detected`; its `@timestamp` stays). A sweep reads alerts by `@timestamp`, so
it read such an alert once, with the count of that moment (often none yet). An incident
remembers its folding alerts and their counts (`Incident.folding`); read again later, an alert
whose count grew adds the difference to its group's repeats, moves the group's and the
incident's last seen to the last repeat, and the volume factor and the priority follow. Nothing
else is recomputed: the alert is the one already placed, with nothing new but its count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agent.correlate import host_of
from agent.models import Alert, AlertGroup, Incident
from agent.prioritise import priority_of, volume_factor


def refolded(incident: Incident, alerts: Iterable[Alert]) -> Incident | None:
    """The incident with these alerts' later counts (alerts it holds, read again); None when
    no count it remembers grew. An alert it does not remember (stored by an earlier version,
    or past the latest it keeps) changes nothing."""
    folding = dict(incident.folding)
    groups = {(g.rule_id, g.host): g for g in incident.groups}
    grew = False
    for alert in alerts:
        now, before = alert.suppressed, folding.get(alert.id)
        if now is None or before is None or now.count <= before:
            continue
        key = (alert.rule_id, host_of(alert))
        group = groups.get(key)
        if group is None:
            continue
        groups[key] = _grown(group, now.count - before, now.last_seen or alert.timestamp)
        folding[alert.id] = now.count
        grew = True
    if not grew:
        return None
    # in the incident's order still: a group's first seen and rule do not change
    return _rescored(incident, list(groups.values()), folding)


def _grown(group: AlertGroup, more: int, last: datetime) -> AlertGroup:
    return group.model_copy(
        update={"suppressed": group.suppressed + more, "last_seen": max(group.last_seen, last)}
    )


def _rescored(incident: Incident, groups: list[AlertGroup], folding: dict[str, int]) -> Incident:
    """Its volume factor counted again, and the priority its factors sum to."""
    volume = volume_factor(len(incident.alert_ids), sum(g.suppressed for g in groups))
    factors = [
        volume if f.name == volume.name else f for f in incident.explanation.priority_factors
    ]
    return incident.model_copy(
        update={
            "groups": groups,
            "folding": folding,
            "last_seen": max(incident.last_seen, *(g.last_seen for g in groups)),
            "priority": priority_of(factors),
            "explanation": incident.explanation.model_copy(update={"priority_factors": factors}),
        }
    )
