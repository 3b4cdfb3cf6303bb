"""ATT&CK tactics: ids, names (old and new), and kill-chain order for progression scoring.

Match on ids; names drift between ATT&CK versions (TA0005 is "Defense Evasion" in Wazuh and
Elastic rules, "Stealth" in ATT&CK v18), so every known name maps to its id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

#: Tactic ids in kill-chain order: an incident that moves forward along it tells a story.
TACTIC_ORDER: tuple[str, ...] = (
    "TA0043",  # Reconnaissance
    "TA0042",  # Resource Development
    "TA0001",  # Initial Access
    "TA0002",  # Execution
    "TA0003",  # Persistence
    "TA0004",  # Privilege Escalation
    "TA0005",  # Defense Evasion / Stealth
    "TA0006",  # Credential Access
    "TA0007",  # Discovery
    "TA0008",  # Lateral Movement
    "TA0009",  # Collection
    "TA0011",  # Command and Control
    "TA0010",  # Exfiltration
    "TA0040",  # Impact
)

TACTIC_NAMES: dict[str, str] = {
    "TA0043": "Reconnaissance",
    "TA0042": "Resource Development",
    "TA0001": "Initial Access",
    "TA0002": "Execution",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
    "TA0011": "Command and Control",
    "TA0010": "Exfiltration",
    "TA0040": "Impact",
}

_BY_NAME: dict[str, str] = {name.lower(): tid for tid, name in TACTIC_NAMES.items()}
_BY_NAME["stealth"] = "TA0005"
_RANK = {tid: i for i, tid in enumerate(TACTIC_ORDER)}
_TACTIC_ID = re.compile(r"^TA\d{4}$")
_TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")


def tactic_id(value: str) -> str | None:
    """A tactic id from an id or any known name; None when it is neither."""
    v = value.strip()
    if _TACTIC_ID.match(v):
        return v if v in TACTIC_NAMES else None
    return _BY_NAME.get(v.lower())


def is_technique_id(value: str) -> bool:
    return bool(_TECHNIQUE_ID.match(value.strip()))


def tactic_rank(tid: str) -> int:
    """Position in the kill chain; unknown tactics sort last."""
    return _RANK.get(tid, len(TACTIC_ORDER))


def stage_of(tactics: Iterable[str]) -> tuple[int, int] | None:
    """The first and last kill-chain places of these tactics; None when none is known."""
    ranks = [r for r in map(tactic_rank, tactics) if r < len(TACTIC_ORDER)]
    return (min(ranks), max(ranks)) if ranks else None


def ordered(tactics: set[str] | list[str] | tuple[str, ...]) -> list[str]:
    return sorted(set(tactics), key=tactic_rank)


@cache
def known_techniques() -> frozenset[str]:
    """ATT&CK technique and sub-technique ids (v18), shipped with the package."""
    text = (Path(__file__).parent / "data" / "attack_technique_ids.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))
