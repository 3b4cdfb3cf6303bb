"""The closed vocabulary of response actions. Playbooks can only name these; nothing else runs.

Each action binds one incident entity (the thing acted upon) plus a few static options that a
playbook may set. Where and how it runs (URL, secret) comes from settings, never from a playbook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    entity: str | None  # which entity kind the action acts on (None: the incident itself)
    param: str  # the argument name that carries the entity value
    connector: str  # http | elastic_defend | notify | elasticsearch
    options: frozenset[str]  # static options a playbook may set
    description: str


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
        ),
        ActionSpec(
            "isolate_host",
            "host",
            "host",
            "elastic_defend",
            frozenset(),
            "Isolate a host from the network through Elastic Defend.",
        ),
        ActionSpec(
            "disable_user",
            "user",
            "user",
            "http",
            frozenset(),
            "Disable a user account in the directory.",
        ),
        ActionSpec(
            "revoke_sessions",
            "user",
            "user",
            "http",
            frozenset(),
            "Revoke every session and token of a user.",
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
            "elasticsearch",
            frozenset({"reason"}),
            "Close the incident's alerts in Elastic Security.",
        ),
    )
}
