"""The Store port: where incidents, proposals, approvals, dead letters and the audit trail live.

Implementations: `SqliteStore` (embedded default) and `RedisStore` (production). Both pass the
same contract tests (tests/integration/test_store_contract.py). Proposal transitions are
compare-and-swap on `version`, and each one appends its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from agent.errors import ConfigError
from agent.models import (
    ActionProposal,
    Alert,
    AuditEvent,
    DeadLetter,
    Disposition,
    Incident,
    IncidentStatus,
    ProposalState,
    Reopening,
    Tuning,
)
from agent.normalize import account_name, machine_name

#: (rule id, host) -> the latest day it fired.
RulePairs = Mapping[tuple[str, str], date]
#: Time window (its start, epoch seconds) -> the rule-host pairs that fired in it, with how
#: many alerts each fired there.
WindowPairs = Mapping[int, Mapping[tuple[str, str], int]]
#: How long the stores keep window pairs: a batch's burst windows are compared with these two
#: days, and a small batch's rule-host pairs are judged routine or not on the last day's hours.
WINDOW_HISTORY_SECONDS = 2 * 86400


@dataclass(frozen=True)
class RunHistory:
    """What one run adds to the rule history."""

    counts: Mapping[tuple[date, str], int]  # alerts by (day, rule)
    pairs: RulePairs  # each rule-host pair's latest day
    windows: WindowPairs = field(default_factory=dict)  # only recent windows are kept
    #: Each day's earliest alert time (epoch seconds): since when, to the second, the store
    #: has watched (novelty waits a day after it).
    first_seen: Mapping[date, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleHistory:
    """What earlier runs saw: the baseline a small batch is ranked against."""

    counts: dict[str, int] = field(default_factory=dict)
    pairs: set[tuple[str, str]] = field(default_factory=set)
    windows: dict[int, dict[tuple[str, str], int]] = field(default_factory=dict)
    #: Since when the store has watched, within the days asked for: the earliest alert time of
    #: the first day it counted (that day's start, for a day counted before times were kept).
    watched_from: float | None = None


def watched_from(first_day: str | None, first_seen: float | None) -> float | None:
    """`RuleHistory.watched_from` from a store's first counted day (ISO) and that day's earliest
    alert time, if it kept one (a day counted by an earlier version did not: its start)."""
    if first_day is None:
        return None
    if first_seen is not None:
        return first_seen
    return datetime.combine(date.fromisoformat(first_day), time(), UTC).timestamp()


def entity_value(value: str) -> str:
    """A host, user or address as incidents are looked up by it: sensors spell host names in
    either case, and an analyst types them as they remember them."""
    return value.strip().casefold()


def entity_lookups(value: str) -> list[str]:
    """The values an analyst's `involving` finds incidents by: as typed, and as names are
    read: a host typed with its DNS domain (`ws-fin-07.corp.example`) by its machine name, an
    account typed with its Windows domain (`CORP\\jdoe`) without it."""
    typed = entity_value(value)
    return list(dict.fromkeys((typed, machine_name(typed), account_name(typed))))


def entity_values(inc: Incident) -> set[str]:
    """What an incident can be found by (`involving`): its hosts, users and addresses."""
    return {entity_value(v) for v in (*inc.hosts, *inc.users, *inc.ips) if v.strip()}


#: An audit event to write: actor, kind, subject, data.
AuditRecord = tuple[str, str, str, dict[str, Any]]


def run_records(
    actor: str,
    new: Sequence[ActionProposal],
    incidents: Sequence[Incident],
    dead_letters: Sequence[DeadLetter],
) -> list[AuditRecord]:
    """What a stored run adds to the audit trail: each new proposal (what would run, bound by
    its hash), then the run itself, if it stored anything."""
    records: list[AuditRecord] = [
        (
            actor,
            "proposal.created",
            p.proposal_id,
            {
                "action": p.action,
                "args": p.args,
                "args_hash": p.args_hash,
                "incident_id": p.incident_id,
                "risk": p.risk.value,
            },
        )
        for p in new
    ]
    if incidents or dead_letters:
        counts = {
            "incidents": len(incidents),
            "proposals": len(new),
            "dead_letters": len(dead_letters),
        }
        records.append((actor, "triage.stored", "run", counts))
    return records


def disposed(d: Disposition) -> dict[str, Any]:
    """A disposition as its audit event records it."""
    return {
        "verdict": d.verdict,
        "reason": d.reason,
        "tuned": [[t.rule_id, t.host] for t in d.tuned],
        "expires_at": d.tuned[0].expires_at.isoformat() if d.tuned else None,
    }


def reopened(r: Reopening) -> dict[str, Any]:
    """A reopening as its audit event records it."""
    return {"reason": r.reason, "was": r.was}


class Store(Protocol):
    def save_triage(
        self,
        incidents: Sequence[Incident],
        alerts: Sequence[Alert],
        proposals: Sequence[ActionProposal],
        dead_letters: Sequence[DeadLetter],
        actor: str,
        placed: Mapping[str, str] | None = None,
        history: RunHistory | None = None,
    ) -> None:
        """Store one run's results atomically; re-saving the same ids changes nothing twice.
        `placed` (alert id -> incident id) is what this run added to the alert index; None means
        every alert id of the incidents (a run never needs to rewrite earlier runs' entries,
        and an incident extended all day holds many). `history` is what the run adds to the
        rule history, in the same transaction: a run is either counted and stored, or neither
        (its counts add up, so only a run's first save should carry them)."""
        ...

    def get_incident(self, incident_id: str) -> Incident | None: ...

    def list_incidents(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> list[Incident]:
        """Highest priority first, filtered by the store (a months-old store holds tens of
        thousands of incidents: a list view must not read them all). `involving`: only those
        with this host, user or address among their entities (`entity_values`)."""
        ...

    def count_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> int: ...

    def alerts_of(self, incident_id: str) -> list[Alert]:
        """The representative alerts stored for an incident (a few per rule and host)."""
        ...

    def incident_of_alerts(self, alert_ids: Sequence[str]) -> dict[str, str]:
        """Which incident already holds each of these alerts (absent: never triaged)."""
        ...

    def open_incidents(self, since: datetime) -> list[Incident]:
        """Open incidents whose last alert is at or after `since`: what a new batch may extend.
        Their `alert_ids` are left empty (an incident extended all day holds many); a run
        fetches the whole incident it does extend with `get_incident`."""
        ...

    def close_quiet(self, before: datetime) -> int:
        """Close open incidents quiet since before `before`, but those a person reopened (a
        person closes them); returns how many."""
        ...

    def dispose(self, incident_id: str, disposition: Disposition) -> bool:
        """Store a person's closing of an incident (closed, with the disposition), its tunings
        and the audit event, in one transaction; False, and nothing written, if the incident
        is missing or was disposed of already."""
        ...

    def reopen(self, incident_id: str, actor: str, reason: str, at: datetime) -> bool:
        """Undo a person's closing (status open, no disposition, `reopened` set), with its
        audit event; False if the incident is not a closed one. Its tunings stay: each is
        ended on its own."""
        ...

    def tunings(self, now: datetime) -> list[Tuning]:
        """The tunings that have not expired at `now`, the latest of each rule-host pair."""
        ...

    def revoke_tuning(self, rule_id: str, host: str, actor: str, reason: str) -> bool:
        """End a tuning before it expires, with its audit event; False if there was none."""
        ...

    def rule_history(self, since: date, windows_from: int | None = None) -> RuleHistory:
        """How often each rule fired on each day from `since` on, summed, the rule-host pairs
        seen from `since` on, and the pairs of each time window starting at or after
        `windows_from` (epoch seconds; None: no windows). Its reads need not be one
        snapshot: only a triage run writes rule history, and a run reads it and stores its
        own under `one_run_at_a_time`, which every run with a store holds."""
        ...

    def save_intake(
        self,
        batch_id: str,
        source: str,
        docs: list[dict[str, Any]],
        dead_letters: Sequence[DeadLetter],
        replay_key: str | None = None,
        replay_ttl: float = 300.0,
    ) -> bool:
        """Durably keep a webhook batch (and its rejects) before answering 202. With a
        `replay_key` (a signed webhook-id), the key is recorded in the same transaction: False,
        and nothing stored, if it was seen within `replay_ttl` seconds. A failed write so
        leaves the id free for the sender's retry."""
        ...

    def claim_intake(
        self, limit: int = 100, stale_after: float = 600.0
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Take pending batches (and ones claimed longer ago than `stale_after` seconds by a
        worker that never finished) for triage: (batch_id, docs)."""
        ...

    def finish_intake(self, batch_ids: Sequence[str]) -> None: ...

    def get_checkpoint(self, name: str) -> Any: ...

    # Web sessions: in the store, so every API process (`vigie serve --workers N`) knows them
    # and a logout ends them everywhere. Keyed by a digest of the cookie, never the cookie.
    def save_session(self, key: str, data: dict[str, Any], expires: datetime) -> None: ...

    def get_session(self, key: str, now: datetime) -> dict[str, Any] | None:
        """The session's data, None once it has expired or ended."""
        ...

    def drop_session(self, key: str) -> None: ...

    def set_checkpoint(self, name: str, value: Any) -> None: ...

    def get_proposal(self, proposal_id: str) -> ActionProposal | None: ...

    def list_proposals(
        self, *, states: Sequence[ProposalState] | None = None, incident_id: str | None = None
    ) -> list[ActionProposal]: ...

    def transition(
        self,
        old: ActionProposal,
        new: ActionProposal,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
        insert: ActionProposal | None = None,
    ) -> bool:
        """Replace `old` by `new` if nobody moved it meanwhile (same version); audit it.

        `insert` adds a further proposal in the same transaction (an edit's replacement).
        Returns False when the compare-and-swap lost, and then nothing is written."""
        ...

    def append_audit(
        self, actor: str, kind: str, subject: str, data: dict[str, Any]
    ) -> AuditEvent: ...

    def audit(
        self, subject: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[AuditEvent]:
        """Audit events in order, of one subject if given, with seq greater than `after` (what
        a reader that has seen up to `after` still needs, without re-reading the trail); the
        first `limit` of them if given (a page, not the whole trail)."""
        ...

    def verify_audit(self) -> tuple[bool, int | None]:
        """(True, None) when the hash chain is intact, else (False, first bad seq)."""
        ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def one_run_at_a_time(self) -> AbstractContextManager[None]:
        """Held by a triage run from reading the open incidents it may extend to storing them,
        across every process using this store: two runs extending one incident at once would
        lose one's alerts. Raises `Transient` after waiting too long."""
        ...

    def recent_dead_letters(self, limit: int, offset: int = 0) -> tuple[int, list[DeadLetter]]:
        """How many documents were rejected, and a page of them, newest first, each with when
        it was stored: what a webhook or a sweep rejected has no run summary to show it."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class IncidentRecord:
    """One incident as a person reads it (the incident page, the API, `vigie incidents
    show`): with its stored alerts, its proposals and the audit trail of all of them."""

    incident: Incident
    alerts: list[Alert]
    proposals: list[ActionProposal]
    audit: list[AuditEvent]  # in order

    def document(self) -> dict[str, Any]:
        """As JSON: what the API answers and `show --json` prints (the alerts without their
        raw documents)."""
        return {
            "incident": self.incident.model_dump(mode="json"),
            "alerts": [a.model_dump(mode="json", exclude={"raw"}) for a in self.alerts],
            "proposals": [p.model_dump(mode="json") for p in self.proposals],
            "audit": [e.model_dump(mode="json") for e in self.audit],
        }


def incident_record(store: Store, incident_id: str) -> IncidentRecord | None:
    """The incident and what a person reads beside it; None if the store has no such one."""
    incident = store.get_incident(incident_id)
    if incident is None:
        return None
    proposals = store.list_proposals(incident_id=incident_id)
    audit = store.audit(incident_id) + [e for p in proposals for e in store.audit(p.proposal_id)]
    return IncidentRecord(
        incident=incident,
        alerts=store.alerts_of(incident_id),
        proposals=proposals,
        audit=sorted(audit, key=lambda e: e.seq),
    )


def open_store(url: str) -> Store:
    """The store named by VIGIE_STORE_URL."""
    if url.startswith("sqlite:///"):
        from agent.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from agent.store.redis import RedisStore

        return RedisStore(url)
    scheme = url.partition(":")[0]  # the rest may hold a password
    raise ConfigError(
        f"unsupported store URL ({scheme}:...): use sqlite:///PATH or redis://HOST/DB"
    )
