"""Playbooks: YAML data over the closed action vocabulary, validated at load, matched on incidents.

A playbook says *when* (conditions on tactics, techniques, rule names, severity, entities) and
*what* (steps naming actions from `agent.actions.ACTIONS`). Parameters are never free text: each
step binds an entity kind, and its values come from the incident's own alerts.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.actions import ACTIONS, problem
from agent.attack import is_technique_id, tactic_id
from agent.errors import BadInput
from agent.incidents import Evidence
from agent.models import (
    RISK_RANK,
    SEVERITY_RANK,
    ActionProposal,
    Alert,
    EntityKind,
    Incident,
    Risk,
    Severity,
    args_hash,
)

#: What `Match.entities` may name: an alert's entity kinds, and the source subset of its IPs.
ENTITY_KINDS = frozenset({*(kind.value for kind in EntityKind), "source_ip"})


class Match(BaseModel):
    """All given conditions must hold; within a list, any item is enough."""

    model_config = ConfigDict(extra="forbid")

    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    rule_name_contains: list[str] = Field(default_factory=list)
    min_severity: Severity = Severity.low
    min_priority: float = Field(default=0, ge=0, le=100)
    entities: list[str] = Field(default_factory=list, description="entity kinds that must exist")

    @field_validator("tactics")
    @classmethod
    def _tactic_ids(cls, v: list[str]) -> list[str]:
        out = []
        for t in v:
            tid = tactic_id(t)
            if tid is None:
                raise ValueError(f"unknown ATT&CK tactic {t!r}")
            out.append(tid)
        return out

    @field_validator("techniques")
    @classmethod
    def _technique_ids(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if not is_technique_id(t)]
        if bad:
            raise ValueError(f"not ATT&CK technique ids: {bad}")
        return v

    @field_validator("rule_name_contains")
    @classmethod
    def _no_blank_needle(cls, v: list[str]) -> list[str]:
        if any(not needle.strip() for needle in v):
            raise ValueError("a blank rule name to look for is in every rule name")
        return v

    @field_validator("entities")
    @classmethod
    def _entity_kinds(cls, v: list[str]) -> list[str]:
        bad = [kind for kind in v if kind not in ENTITY_KINDS]
        if bad:  # a misspelt kind is never present: the playbook would never match
            raise ValueError(f"unknown entity kinds {bad}; known: {sorted(ENTITY_KINDS)}")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if not (self.tactics or self.techniques or self.rule_name_contains):
            raise ValueError("a playbook must match on tactics, techniques or rule names")
        return self


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    action: str
    risk: Risk
    target: str = Field(description="name of a target configured in settings; dry-run otherwise")
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    max_targets: int = Field(default=3, ge=1, le=20)

    @model_validator(mode="after")
    def _known_action(self) -> Step:
        spec = ACTIONS.get(self.action)
        if spec is None:
            raise ValueError(f"unknown action {self.action!r}; known: {sorted(ACTIONS)}")
        if RISK_RANK[self.risk] < RISK_RANK[spec.min_risk]:
            raise ValueError(
                f"{self.action} is at least {spec.min_risk.value} risk, not {self.risk.value}"
            )
        extra = set(self.options) - spec.options
        if extra:
            raise ValueError(f"action {self.action} takes no option(s) {sorted(extra)}")
        for name, value in self.options.items():  # as an approver's edit of them would be
            why = problem(name, value)
            if why is not None:
                raise ValueError(f"option {name} {why}: {value!r}")
        return self


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str
    match: Match
    steps: list[Step] = Field(min_length=1)


def load_playbooks(directory: str | Path) -> list[Playbook]:
    """Every `*.yaml` / `*.yml` in the directory, validated; any invalid file fails the load."""
    d = Path(directory)
    if not d.is_dir():
        raise BadInput(f"playbooks directory not found: {d}")
    books: list[Playbook] = []
    errors: list[str] = []
    for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        try:
            books.append(Playbook.model_validate(yaml.safe_load(path.read_text())))
        except (yaml.YAMLError, ValidationError) as exc:
            errors.append(f"{path.name}: {exc}")
    names = [b.name for b in books]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        errors.append(f"duplicate playbook names: {sorted(dupes)}")
    if errors:
        raise BadInput("invalid playbooks:\n" + "\n".join(errors))
    return books


def matching(books: list[Playbook], incident: Incident, evidence: Evidence) -> list[Playbook]:
    """The playbooks whose conditions the incident meets, in order."""
    return [book for book in books if matches(book, incident, evidence)]


def matches(book: Playbook, incident: Incident, evidence: Evidence) -> bool:
    m = book.match
    if incident.priority < m.min_priority:
        return False
    if evidence.top_severity < SEVERITY_RANK[m.min_severity]:
        return False
    if any(kind not in evidence.kinds for kind in m.entities):
        return False
    hit_tactic = bool(set(m.tactics) & set(incident.tactics))
    techniques = evidence.techniques
    hit_technique = any(
        t in techniques or t.split(".")[0] in techniques for t in m.techniques
    ) or any(t.split(".")[0] in m.techniques for t in techniques)
    names = {g.rule_name.lower() for g in incident.groups}
    hit_name = any(needle.lower() in n for needle in m.rule_name_contains for n in names)
    return hit_tactic or hit_technique or hit_name


def _entity_values(kind: str, param: str, alerts: list[Alert], limit: int) -> list[str]:
    """The values the incident is most about: highest alert risk first, then most alerted.
    A value no approver could set in an edit (a multicast address, a name holding control
    characters: alert content is the attacker's) is not proposed either."""
    counts: dict[str, int] = {}
    risk: dict[str, float] = {}
    for a in alerts:
        for v in a.entities.of(kind):
            counts[v] = counts.get(v, 0) + 1
            risk[v] = max(risk.get(v, 0.0), a.risk_score)
    ranked = sorted(counts, key=lambda v: (-risk[v], -counts[v], v))
    # Checked in that order until enough: an incident of a brute force from the internet holds
    # tens of thousands of source addresses, and a step proposes a few.
    usable = (v for v in ranked if problem(param, v) is None)
    return list(itertools.islice(usable, limit))


def _agent_id(host: str, alerts: list[Alert]) -> str | None:
    """The Elastic Defend agent id that the incident's own alerts give for this host."""
    for a in alerts:
        if host in a.entities.hosts:
            agent = a.raw.get("agent")
            agent_id = agent.get("id") if isinstance(agent, dict) else a.raw.get("agent.id")
            if isinstance(agent_id, str) and agent_id:
                return agent_id
    return None


def proposal_id_for(incident_id: str, step_id: str, digest: str) -> str:
    """Deterministic, so re-triaging an incident never queues the same action twice."""
    return "P-" + hashlib.sha256(f"{incident_id}|{step_id}|{digest}".encode()).hexdigest()[:16]


def propose(
    books: list[Playbook],
    incident: Incident,
    alerts: list[Alert],
    *,
    requester: str,
    now: datetime,
    ttl: timedelta,
    evidence: Evidence | None = None,
) -> list[ActionProposal]:
    """Proposals for every matching playbook step; arguments come only from incident entities.
    `evidence`: what `alerts` show, when the incident's build gathered it already."""
    out: list[ActionProposal] = []
    seen: set[tuple[str, str]] = set()  # one proposal per action and subject, first playbook wins
    for book in matching(books, incident, evidence or Evidence.of(alerts)):
        for step in book.steps:
            spec = ACTIONS[step.action]
            values = (
                [incident.incident_id]
                if spec.entity is None
                else _entity_values(spec.entity, spec.param, alerts, step.max_targets)
            )
            for value in values:
                if (step.action, value) in seen:
                    continue
                seen.add((step.action, value))
                args: dict[str, Any] = {spec.param: value, "target": step.target, **step.options}
                if spec.connector == "elastic_defend":
                    # Kibana isolates by Elastic agent id; bind it, so approvers see exactly which.
                    args["agent_id"] = _agent_id(value, alerts)
                digest = args_hash(step.action, args)
                out.append(
                    ActionProposal(
                        proposal_id=proposal_id_for(incident.incident_id, step.id, digest),
                        incident_id=incident.incident_id,
                        playbook=book.name,
                        step=step.id,
                        action=step.action,
                        args=args,
                        args_hash=digest,
                        risk=step.risk,
                        required_approvals=2 if step.risk is Risk.high else 1,
                        requested_by=requester,
                        created_at=now,
                        expires_at=now + ttl,
                    )
                )
    return out
