"""An analyst with a bug that one input meets: what isolation of failing documents is for."""

from __future__ import annotations

from agent.analyst import OfflineAnalyst
from agent.models import Alert, Assessment, Incident


class PoisonedAnalyst:
    """Raises (not a typed error: a bug) for any incident holding alert `poison`, or for
    every incident when `poison` is None (a bug every input meets)."""

    name = "offline"

    def __init__(self, poison: str | None) -> None:
        self.poison = poison

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        if self.poison is None or self.poison in incident.alert_ids:
            raise KeyError("nobody foresaw this")
        return OfflineAnalyst().assess(incident, alerts)
