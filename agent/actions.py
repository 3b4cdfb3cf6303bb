"""The closed vocabulary of response actions. Playbooks can only name these; nothing else runs.

Each action binds one incident entity (the thing acted upon) plus a few static options that a
playbook may set. Where and how it runs (URL, secret) comes from settings, never from a playbook.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import ApprovalError
from agent.models import Risk


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    entity: str | None  # which entity kind the action acts on (None: the incident itself)
    param: str  # the argument name that carries the entity value
    connector: str  # http | elastic_defend | notify | kibana_alerts
    options: frozenset[str]  # static options a playbook may set
    description: str
    #: The least risk a playbook may give it: a host isolated or an account disabled stops
    #: someone's work, so it takes two approvers however its playbook rates it.
    min_risk: Risk = Risk.low

    @property
    def editable(self) -> frozenset[str]:
        """What an approver may change before approving: the entity acted on and the options.
        The target, the incident and what was read from the incident's alerts for the entity
        (an Elastic agent id: Kibana isolates by it, not by the host name shown) stay as
        proposed, so the entity stays too when something was read for it."""
        entity = {self.param} if self.entity is not None and not self.derived else set()
        return frozenset(entity) | self.options

    @property
    def derived(self) -> frozenset[str]:
        """Arguments bound from the incident's alerts for the entity, beside it."""
        return frozenset({"agent_id"}) if self.connector == "elastic_defend" else frozenset()


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            "block_ip",
            "source_ip",
            "ip",
            "http",
            frozenset({"duration_hours"}),
            "Block an IP address at the firewall.",
            min_risk=Risk.medium,
        ),
        ActionSpec(
            "isolate_host",
            "host",
            "host",
            "elastic_defend",
            frozenset(),
            "Isolate a host from the network through Elastic Defend.",
            min_risk=Risk.high,
        ),
        ActionSpec(
            "disable_user",
            "user",
            "user",
            "http",
            frozenset(),
            "Disable a user account in the directory.",
            min_risk=Risk.high,
        ),
        ActionSpec(
            "revoke_sessions",
            "user",
            "user",
            "http",
            frozenset(),
            "Revoke every session and token of a user.",
            min_risk=Risk.medium,
        ),
        ActionSpec(
            "open_ticket",
            None,
            "incident_id",
            "http",
            frozenset({"queue"}),
            "Open a ticket for the incident.",
        ),
        ActionSpec(
            "notify",
            None,
            "incident_id",
            "notify",
            frozenset({"channel"}),
            "Post the incident to a chat channel (Slack/Mattermost/Teams webhook).",
        ),
        ActionSpec(
            "close_alerts",
            None,
            "incident_id",
            "kibana_alerts",
            frozenset({"reason"}),
            "Close the incident's alerts in Elastic Security.",
            min_risk=Risk.medium,
        ),
    )
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_TEXT = 256


def _text(value: Any) -> str | None:
    """Why a name or an option's text is unusable, or None."""
    if not isinstance(value, str):
        return "must be text"
    if not value or value != value.strip():
        return "must be non-empty, without leading or trailing blanks"
    if len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if _CONTROL.search(value):
        return "must hold no control characters"
    return None


def _ip(value: Any) -> str | None:
    """One address, as firewalls block it: not a network, and not one every host uses."""
    if not isinstance(value, str):
        return "must be text"
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "must be one IP address (not a network or a name)"
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved:
        return "must not be an unspecified, loopback, multicast or reserved address"
    return None


def _hours(value: Any) -> str | None:
    if type(value) is not int or not 1 <= value <= 8760:
        return "must be a whole number of hours from 1 to 8760"
    return None


#: How each argument a human may set is checked; any other argument is text.
_CHECKS: Mapping[str, Callable[[Any], str | None]] = {"ip": _ip, "duration_hours": _hours}


def problem(name: str, value: Any) -> str | None:
    """Why this value cannot be given to this argument, or None when it can."""
    return _CHECKS.get(name, _text)(value)


def check_edit(action: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """An edit may change the values of the action's editable arguments, each to a value of
    its kind; anything else is refused with the reason (an `ApprovalError`)."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise ApprovalError(f"unknown action {action!r}")
    if set(new) != set(old):
        raise ApprovalError("an edit may change argument values, not which arguments exist")
    fixed = sorted(k for k in old if k not in spec.editable and not _same(new[k], old[k]))
    if fixed:
        raise ApprovalError(
            f"{', '.join(fixed)} cannot be edited for {action} (editable: "
            f"{', '.join(sorted(spec.editable)) or 'nothing'}); reject it instead"
        )
    for name in sorted(spec.editable & set(new)):
        why = None if _same(new[name], old[name]) else problem(name, new[name])
        if why is not None:
            raise ApprovalError(f"{name} {why}: {new[name]!r}")


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type: 1 and True are equal in Python, not in the hashed arguments."""
    return type(a) is type(b) and a == b


def typed_like(old: Any, value: str) -> Any:
    """An edited value typed as the argument it replaces (a duration stays a number): the
    web form and the command line give text."""
    if isinstance(old, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(old, int):
        try:
            return int(value)
        except ValueError:
            raise ApprovalError(f"{value!r} is not a whole number") from None
    if isinstance(old, float):
        try:
            return float(value)
        except ValueError:
            raise ApprovalError(f"{value!r} is not a number") from None
    return value
