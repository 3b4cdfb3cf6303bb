"""Domain models: one pydantic model per concept, shared by every part of Vigie."""

from __future__ import annotations

import hashlib
import json
import operator
import zlib
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import IO, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from agent.documents import unwrapped
from agent.errors import InputChanged


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


#: Elastic's default risk score for each severity; the one scale every source is mapped onto.
SEVERITY_RISK: dict[Severity, int] = {
    Severity.low: 21,
    Severity.medium: 47,
    Severity.high: 73,
    Severity.critical: 99,
}


#: Severity order, lowest first; every comparison of severities goes through it.
SEVERITY_RANK: dict[Severity, int] = {
    Severity.low: 0,
    Severity.medium: 1,
    Severity.high: 2,
    Severity.critical: 3,
}


def severity_for_risk(risk: float) -> Severity:
    """Band a 0-100 risk score the way Elastic Security does."""
    if risk >= 90:
        return Severity.critical
    if risk >= 70:
        return Severity.high
    if risk >= 40:
        return Severity.medium
    return Severity.low


class EntityKind(StrEnum):
    host = "host"
    user = "user"
    ip = "ip"
    process = "process"
    file = "file"
    hash = "hash"
    url = "url"
    domain = "domain"


class Entities(BaseModel):
    """The observables of one alert, by kind. Values are kept verbatim (attacker-controlled)."""

    model_config = ConfigDict(frozen=True)

    hosts: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = Field(default=(), description="The subset of ips seen as source")
    host_ips: tuple[str, ...] = Field(
        default=(),
        description="The subset of ips that are its host's own (ECS `host.ip`, Wazuh's "
        "`agent.ip`): where a network sensor's alert on that address finds the host's name",
    )
    watched: tuple[str, ...] = Field(
        default=(),
        description="For a network sensor's alert (its host the sensor), the machine it saw: "
        "its connection's inside end, where correlation places it unless its rule is "
        "routine on the sensor",
    )
    processes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    sequences: tuple[str, ...] = Field(
        default=(),
        description="The alert group its detection engine made it part of (Elastic's EQL "
        "sequence: its building-block alerts and the sequence's own share "
        "`kibana.alert.group.id`). Not an observable: it links, and is no entity to show.",
    )

    def pairs(self) -> list[tuple[EntityKind, str]]:
        """Every (kind, value), in a stable order."""
        return [(kind, value) for kind, field in _KIND_FIELDS for value in getattr(self, field)]

    def of(self, kind: EntityKind | str) -> tuple[str, ...]:
        """Values of one kind; `source_ip` is the source subset of `ip`."""
        if kind == "source_ip":
            return self.source_ips
        return tuple(getattr(self, _FIELD_OF_KIND[EntityKind(kind)]))


_KIND_FIELDS: tuple[tuple[EntityKind, str], ...] = (
    (EntityKind.host, "hosts"),
    (EntityKind.user, "users"),
    (EntityKind.ip, "ips"),
    (EntityKind.process, "processes"),
    (EntityKind.file, "files"),
    (EntityKind.hash, "hashes"),
    (EntityKind.url, "urls"),
    (EntityKind.domain, "domains"),
)
_FIELD_OF_KIND = dict(_KIND_FIELDS)
_entities = operator.attrgetter("entities")


def distinct_entities(alerts: Iterable[Alert]) -> list[Entities]:
    """The alerts' entity sets, each once, in first-seen order. Normalising shares one frozen
    `Entities` between alerts of one shape, so few come out; the pass over the alerts is made
    in C (map, zip and dict), as it runs over every alert of an incident."""
    return distinct(list(map(_entities, alerts)))


def distinct(sets: list[Entities]) -> list[Entities]:
    """These entity sets, each object once, in first-seen order."""
    return list(dict(zip(map(id, sets), sets, strict=True)).values())


#: Each model class's one set of its field names (`all_fields_set`).
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}
_Model = TypeVar("_Model", bound=BaseModel)


def all_fields_set(model: _Model) -> _Model:
    """The model holding its class's one set of field names as the fields it was given, not
    a set of its own: pydantic keeps one per object (728 bytes for five names or more), over
    half of a small model's memory where each alert has its own (a fleet's endpoints each with
    its own host, a scan's sources). For models given every field; the set already holds
    every name a later assignment would add, and copying a model copies it."""
    object.__setattr__(model, "__pydantic_fields_set__", fields_set_of(type(model)))
    return model


def fields_set_of(cls: type[BaseModel]) -> set[str]:
    """The one set of the class's field names its models share (`all_fields_set`)."""
    names = _ALL_FIELDS.get(cls)
    if names is None:
        names = _ALL_FIELDS[cls] = set(cls.model_fields)
    return names


#: Where a document sits in the file it was read from: (path, byte offset, length, CRC-32 of
#: those bytes). A plain tuple: one crosses from a reader process for every alert.
FileSpan = tuple[str, int, int, int]


class Suppressed(BaseModel):
    """Repeats a SIEM folded into one alert before Vigie read it: Elastic's alert suppression
    writes one alert for a rule's matches on the same values within its window, and counts
    the rest (`kibana.alert.suppression.*`)."""

    model_config = ConfigDict(frozen=True)

    count: int = Field(ge=1, description="Events folded in, beyond the alert's own")
    first_seen: datetime | None = Field(default=None, description="None: the alert did not say")
    last_seen: datetime | None = None
    in_place: bool = Field(
        default=True,
        description="The SIEM counts later repeats into the alert where it is (Elastic's "
        "suppression); a threshold rule's count never changes",
    )


class Alert(BaseModel):
    """A normalised alert: an ECS subset on one severity scale, with the raw document untouched."""

    model_config = ConfigDict(frozen=True)

    id: str
    timestamp: datetime
    source: Literal["elastic", "wazuh", "ecs"]
    sensor: str = Field(description="What produced it: endpoint, suricata, wazuh, aminer, ...")
    rule_name: str
    rule_id: str
    severity: Severity
    risk_score: float = Field(ge=0, le=100)
    tactics: tuple[str, ...] = Field(default=(), description="ATT&CK tactic ids, e.g. TA0002")
    techniques: tuple[str, ...] = Field(default=(), description="ATT&CK technique ids, e.g. T1059")
    entities: Entities = Entities()
    suppressed: Suppressed | None = None
    building_block: bool = Field(
        default=False,
        description="An input to other rules (Elastic's building-block rules): not for the queue",
    )
    posture: bool = Field(
        default=False,
        description="A finding of vulnerability detection or configuration assessment (Wazuh's "
        "vulnerability-detector, sca): a fact about a host, not a detection",
    )
    critical: tuple[str, ...] = Field(
        default=(),
        description="Its host and account its SIEM rates high or extreme impact (Elastic's "
        "asset criticality), as `host:name` and `user:name`, names as read",
    )
    intel: tuple[str, ...] = Field(
        default=(),
        description="Its values a threat-intelligence source lists (Elastic's indicator "
        "matches, VirusTotal through Wazuh), each with where it was and who lists it",
    )
    process_id: str | None = Field(
        default=None,
        description="The process instance it is about (Elastic Defend's `process.entity_id`, "
        "Sysmon's ProcessGuid): unique on its host, unlike a process name or id",
    )
    ancestry: tuple[str, ...] = Field(
        default=(),
        description="The process instances that started that one, its parent first (Elastic "
        "Defend's `process.Ext.ancestry`: the nearest 5); empty when unknown",
    )
    message: str = ""
    # The document as read, kept as its JSON bytes (a file line is kept as it was), or, for a
    # large file read in parallel, where it sits in that file (`FileSpan`): a day of alerts held
    # as parsed documents took twice the memory of the alerts themselves, and Wazuh's documents
    # held as bytes still took as much as the alerts. `raw` parses it on demand; only the few
    # alerts stored or shown ever need it.
    raw_json: bytes | FileSpan = Field(default=b"{}", exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _raw_to_json(cls, data: Any) -> Any:
        """Accept `raw` as a document (a stored alert, a test) and keep it as JSON bytes."""
        if isinstance(data, dict) and "raw" in data:
            document = data["raw"]
            data = {k: v for k, v in data.items() if k != "raw"}
            data.setdefault("raw_json", raw_json(document))
        return data

    @computed_field(repr=False)  # type: ignore[prop-decorator]
    @property
    def raw(self) -> dict[str, Any]:
        """The original document (attacker-controlled data: display it, never obey it). Raises
        `InputChanged` if it was left in a file that no longer holds it."""
        data = self.document_json()
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:  # integers beyond 64 bits, a raw tab in a string
            value = json.loads(data, strict=False)
        return unwrapped(value) if isinstance(value, dict) else {}

    def document_json(self) -> bytes:
        """The document's JSON as read: held, or read back from its file."""
        raw = self.raw_json
        return raw if isinstance(raw, bytes) else span_bytes(raw)

    def with_document(self) -> Alert:
        """This alert holding its document's bytes (itself, if it holds them already)."""
        return with_documents([self])[0]


def span_bytes(span: FileSpan, opened: dict[str, IO[bytes]] | None = None) -> bytes:
    """The bytes a span points to, checked against the CRC taken when they were read.
    `opened`: files already open, by path (this adds the ones it opens; the caller closes)."""
    path, start, length, crc = span
    try:
        if opened is None:
            with open(path, "rb") as fh:
                data = _read_at(fh, start, length)
        else:
            if path not in opened:
                opened[path] = open(path, "rb")  # noqa: SIM115 -- the caller closes it
            data = _read_at(opened[path], start, length)
    except OSError as exc:
        raise InputChanged(f"{path} can no longer be read ({exc.strerror or exc})") from exc
    if len(data) != length or zlib.crc32(data) != crc:
        raise InputChanged(
            f"{path} changed while it was triaged: byte {start} no longer holds the document"
            " read there; run the triage again on a file that stays as it is"
        )
    return data


def _read_at(fh: IO[bytes], start: int, length: int) -> bytes:
    fh.seek(start)
    return fh.read(length)


def with_documents(alerts: list[Alert]) -> list[Alert]:
    """These alerts holding their documents' bytes: before they are stored, so a changed file
    fails the run before anything is written. Each file is opened once."""
    opened: dict[str, IO[bytes]] = {}
    try:
        return [
            a
            if isinstance(a.raw_json, bytes)
            # a copy's set of field names is a new one (1.2 KB): the class's one again
            else all_fields_set(a.model_copy(update={"raw_json": span_bytes(a.raw_json, opened)}))
            for a in alerts
        ]
    finally:
        for fh in opened.values():
            fh.close()


def raw_json(document: Any) -> bytes:
    """A document as compact JSON bytes (bytes are taken as already encoded). Raises
    UnicodeEncodeError for a lone surrogate ("\\ud800" is valid JSON, which the stdlib parser
    decodes, but no UTF-8 can hold it): the normaliser makes that a dead letter."""
    if isinstance(document, bytes):
        return document
    try:
        # Copied to its size: orjson's bytes keep the 4 KiB buffer they were written in, and
        # an alert keeps its document (634,000 alerts of a JSON array held 2.3 GB more).
        return bytes(memoryview(orjson.dumps(document)))
    except TypeError:  # integers beyond 64 bits, or a lone surrogate (the stdlib parser takes both)
        return json.dumps(document, default=str, ensure_ascii=False).encode()


class DeadLetter(BaseModel):
    """A document that could not become an alert, and why. Nothing read is silently dropped."""

    source: str
    line: int | None = None
    reason: str
    excerpt: str = Field(default="", description="The first bytes of the document, for a human")
    at: datetime | None = Field(default=None, description="When the store took it (when read)")


class EntityLink(BaseModel):
    """One reason alerts belong together: they share this entity, or (kind "rule") this rule
    swept several hosts within minutes, or (kind "progression") on this host or of this user
    the later alerts' ATT&CK tactics come after the earlier ones' (`tactics`: the earlier
    alerts' last stage, then the later alerts' first), or (kind "sequence") this rule of
    their detection engine matched them as one sequence of events (Elastic's EQL sequence),
    or (kind "process tree") they are on this process instance or on its descendants.
    `sensors`: several sensors saw the linked alerts (corroboration). `gap_seconds`: how far
    apart in time the link reached."""

    kind: EntityKind | Literal["rule", "progression", "sequence", "process tree"]
    value: str
    alert_ids: list[str]
    tactics: list[str] = Field(default_factory=list)
    sensors: list[str] = Field(
        default_factory=list, description="The sensors that saw the linked alerts, when several"
    )
    gap_seconds: float = Field(
        default=0.0, ge=0, description="The longest wait from one linked alert to the next"
    )


def span_text(seconds: float) -> str:
    """A time between alerts, to the unit that reads best (the page and the summary use it)."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


class AlertGroup(BaseModel):
    """Repeats of one rule on one host, collapsed: how many, first and last seen."""

    rule_id: str
    rule_name: str
    host: str
    count: int
    suppressed: int = Field(
        default=0,
        description="Events the SIEM folded into these alerts (alert suppression), beyond count",
    )
    first_seen: datetime
    last_seen: datetime
    sample_alert_id: str
    severity: Severity
    sensor: str


class PriorityFactor(BaseModel):
    name: str
    points: float
    detail: str


class Explanation(BaseModel):
    """Why these alerts belong together and why the incident ranks where it does."""

    links: list[EntityLink] = Field(default_factory=list)
    more_links: int = Field(
        default=0, description="Links left out: the first and the latest are kept, not every one"
    )
    max_gap_seconds: float = 0.0
    tactic_progression: list[str] = Field(default_factory=list)
    sensors: list[str] = Field(default_factory=list)
    priority_factors: list[PriorityFactor] = Field(default_factory=list)
    background: bool = Field(default=False, description="A routine rule's steady stream")
    posture: bool = Field(
        default=False,
        description="Findings of vulnerability detection or configuration assessment only: "
        "kept apart from detections, and ranked by their volume alone",
    )
    routine: str | None = Field(
        default=None, description="Why a background incident's rule counts as routine on its host"
    )


Verdict = Literal["true_positive", "benign", "false_positive", "needs_investigation"]


class Assessment(BaseModel):
    """What an analyst (offline or LLM) concluded. Every claim cites alert ids of the incident."""

    analyst: Literal["offline", "mistral"]
    verdict: Verdict
    confidence: float = Field(ge=0, le=1)
    title: str
    summary: str
    cited_alert_ids: list[str]
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    severity: Severity | None = None
    timeline: list[str] = Field(default_factory=list, description="'time: event [alert ids]'")
    notes: list[str] = Field(default_factory=list, description="Fallbacks, dropped claims, flags")


#: What an analyst concluded on closing an incident (an assessment's verdicts but "needs
#: investigation", which is no reason to close).
Disposal = Literal["true_positive", "benign", "false_positive"]


class Tuning(BaseModel):
    """An analyst's word that a rule on a host is noise: until it expires, incidents do not count
    that rule-host pair's rarity, rule diversity or novelty. Its severity, tactics, sensors and
    the burst of its time window still count, so an attack that trips a tuned rule is still
    ranked by what it does and when."""

    rule_id: str
    host: str
    verdict: Disposal
    incident_id: str
    actor: str
    at: datetime
    expires_at: datetime
    reason: str


class Disposition(BaseModel):
    """Why a person closed an incident; with `tuned`, the rule-host pairs it tuned."""

    verdict: Disposal
    reason: str
    actor: str
    at: datetime
    tuned: list[Tuning] = Field(default_factory=list)


class Reopening(BaseModel):
    """Why a person undid a closing (`was`: the verdict undone). A reopened incident stays
    open until a person closes it again: a quiet period no longer closes it."""

    actor: str
    reason: str
    at: datetime
    was: Disposal


#: An incident is open until a quiet period or a person closes it; one a person reopened,
#: until a person closes it.
IncidentStatus = Literal["open", "closed"]


class Incident(BaseModel):
    incident_id: str
    alert_ids: list[str]
    priority: float = Field(ge=0, le=100)
    title: str
    status: IncidentStatus = "open"
    first_seen: datetime
    last_seen: datetime
    hosts: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    sequences: list[str] = Field(
        default_factory=list,
        description="Detection-engine sequences its alerts belong to (Elastic's EQL group ids, "
        "the latest 50): a later batch's alerts of one extend it",
    )
    processes: list[tuple[str, str, str]] = Field(
        default_factory=list,
        description="Process instances its alerts are about, as (host, id, name) (Elastic "
        "Defend's entity ids, Sysmon's GUIDs, the latest 200): a later batch's alert on one "
        "or on its descendants extends it",
    )
    addresses: list[tuple[str, str]] = Field(
        default_factory=list,
        description="Its hosts' own addresses, as (address, host) (Elastic's `host.ip`, "
        "Wazuh's `agent.ip`, the latest 64): a later batch's network alert on one is on that "
        "host",
    )
    folding: dict[str, int] = Field(
        default_factory=dict,
        description="Its alerts its SIEM folds repeats into, with how many as last read "
        "(Elastic's alert suppression, the latest 200): the SIEM counts later repeats in "
        "them, and a sweep reads those counts (`agent.refold`)",
    )
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    groups: list[AlertGroup] = Field(default_factory=list)
    explanation: Explanation = Explanation()
    assessment: Assessment | None = None
    proposal_ids: list[str] = Field(default_factory=list)
    disposition: Disposition | None = None
    #: The latest reopening by a person, kept when it is closed again.
    reopened: Reopening | None = None

    def leading_factors(self, n: int = 3) -> list[PriorityFactor]:
        """What gave most of its priority, largest first: why it ranks where it does, in a
        list of incidents. An incident of findings (`Explanation.posture`) says so first:
        1,400 critical CVEs at priority 3 need the reason beside them."""
        factors = self.explanation.priority_factors
        scoring = sorted((f for f in factors if f.points > 0), key=lambda f: -f.points)
        if self.explanation.posture:
            scoring = [f for f in factors if f.name == "posture"] + scoring
        return scoring[:n]

    def output_line(self) -> dict[str, Any]:
        """The one-incident-a-line contract that benchmarks and other tools read."""
        a = self.assessment
        return {
            "incident_id": self.incident_id,
            "priority": self.priority,
            "alert_ids": self.alert_ids,
            "title": self.title,
            "assessment": None
            if a is None
            else {
                "analyst": a.analyst,
                "verdict": a.verdict,
                "confidence": a.confidence,
                "summary": a.summary,
                "cited_alert_ids": a.cited_alert_ids,
            },
            "proposal_ids": self.proposal_ids,
        }


class Risk(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


#: Risks in order, as severities are: a playbook's floor, the command line's sort.
RISK_RANK: dict[Risk, int] = {Risk.low: 0, Risk.medium: 1, Risk.high: 2}


class ProposalState(StrEnum):
    pending = "pending"
    approved = "approved"
    executing = "executing"
    succeeded = "succeeded"
    failed = "failed"
    outcome_unknown = "outcome_unknown"
    rejected = "rejected"
    expired = "expired"
    superseded = "superseded"


def args_hash(action: str, args: dict[str, Any]) -> str:
    """The fingerprint an approval is bound to: the action and its exact arguments."""
    payload = orjson.dumps({"action": action, "args": args}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


class Approval(BaseModel):
    """One person's decision on one proposal, bound to the hash of what they saw."""

    approver: str
    decision: Literal["approve", "reject"]
    at: datetime
    comment: str = ""
    args_hash: str


class ActionProposal(BaseModel):
    proposal_id: str
    incident_id: str
    playbook: str
    step: str
    action: str
    args: dict[str, Any]
    args_hash: str
    risk: Risk
    required_approvals: int = Field(ge=1)
    requested_by: str
    created_at: datetime
    expires_at: datetime
    state: ProposalState = ProposalState.pending
    approvals: list[Approval] = Field(default_factory=list)
    supersedes: str | None = None
    result: dict[str, Any] | None = None
    version: int = 0


class AuditEvent(BaseModel):
    """An append-only, hash-chained record of something that happened."""

    seq: int = 0
    at: datetime
    actor: str
    kind: str
    subject: str
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
