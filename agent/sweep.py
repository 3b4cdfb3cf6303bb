"""Scheduled sweeps: read new alerts from Elasticsearch/OpenSearch, triage them page by page,
write results back, and only then advance the durable checkpoint.

Crash safety: a page's incidents are stored before its write-back, and the checkpoint moves
after both. A crash re-reads at most the unfinished page; its alerts are recognised by id
(the store's alert index) and only written back, never placed in a second incident.

Incident documents are mirrored every few pages and at the end, not after every page: an
incident extended by every page of a long sweep was re-indexed each time with all its alert
ids (measured on 100,000 alerts: 40 incidents of 2,500 ids cost 1.4 s a page). The ids still
waiting are kept in the store with the checkpoint, so a crash delays them, never drops them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.documents import Fields
from agent.graph import TriageContext, run_triage_isolating
from agent.models import Alert, Incident
from agent.normalize import NormalizeError, alert_id, normalize
from agent.refold import refolded
from agent.store import Store
from connectors.elasticsearch import AUDIT_MAPPINGS, INCIDENT_MAPPINGS, Hit, SearchBackend


@dataclass(frozen=True)
class SweepConfig:
    alerts_index: str = ".alerts-security.alerts-*"
    incidents_index: str = "vigie-incidents"
    audit_index: str = "vigie-audit"
    tiebreaker: str = "kibana.alert.uuid"
    page_size: int = 1000
    only_open: bool = True  # Elastic Security: kibana.alert.workflow_status: open
    extra_filter: dict[str, Any] | None = None
    kibana_writeback: bool = True  # acknowledge and tag alerts (Elastic Security indices)
    incident_flush_pages: int = 10  # mirror touched incidents at least this often
    lookback_seconds: int = 300  # read again from this long before the checkpoint (see _resume)
    refold: bool = True  # read later counts of the alerts Elastic folds repeats into (_refold)

    @property
    def checkpoint_name(self) -> str:
        return f"sweep:{self.alerts_index}"

    @property
    def rejected_name(self) -> str:
        """Hits rejected lately, with their times: read again within the lookback, they are
        not rejected (and listed) once more."""
        return f"sweep-rejected:{self.alerts_index}"

    @property
    def refold_name(self) -> str:
        """When the last sweep began reading folding alerts' later counts (epoch ms)."""
        return f"sweep-refold:{self.alerts_index}"

    @property
    def pending_name(self) -> str:
        """Incidents touched but not yet mirrored into the incidents index."""
        return f"sweep-pending:{self.alerts_index}"


@dataclass
class SweepResult:
    pages: int = 0
    alerts_read: int = 0
    alerts_new: int = 0
    incidents_touched: int = 0
    #: Incidents whose alerts their SIEM folded more repeats into since the last sweep.
    incidents_refolded: int = 0
    dead_letters: int = 0
    checkpoint: list[Any] | None = None
    errors: list[str] = field(default_factory=list)


def _query(cfg: SweepConfig, since_ms: float | None = None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if since_ms is not None:
        gte = {"gte": int(since_ms)}  # epoch ms: a date field reads a number so by default
        filters.append({"range": {"@timestamp": gte}})
    if cfg.only_open:
        filters.append({"term": {"kibana.alert.workflow_status": "open"}})
    return _filtered(cfg, filters)


def _filtered(cfg: SweepConfig, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The filters, and the site's own (`extra_filter`), as one query."""
    if cfg.extra_filter:
        filters = [*filters, cfg.extra_filter]
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def sweep(
    backend: SearchBackend,
    store: Store,
    ctx: TriageContext,
    cfg: SweepConfig,
    progress: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """One sweep from the checkpoint to the newest alert. Typed errors propagate; the
    checkpoint then still points after the last fully handled page."""
    result = SweepResult(checkpoint=store.get_checkpoint(cfg.checkpoint_name))
    started_ms = time.time() * 1000
    backend.ensure_template(cfg.incidents_index, f"{cfg.incidents_index}*", INCIDENT_MAPPINGS)
    backend.ensure_template(cfg.audit_index, f"{cfg.audit_index}*", AUDIT_MAPPINGS)
    pending: set[str] = set(store.get_checkpoint(cfg.pending_name) or [])
    _mirror_audit(backend, store, cfg, pending)  # people's closings since the last sweep
    _flush_incidents(backend, store, cfg, pending)  # and what a crashed sweep left unmirrored
    sort = [{"@timestamp": "asc"}, {cfg.tiebreaker: "asc"}]
    after, since_ms = _resume(result.checkpoint, cfg.lookback_seconds, time.time() * 1000)
    rejected = _Rejected(store, cfg.rejected_name, since_ms)
    for page in backend.pages(cfg.alerts_index, _query(cfg, since_ms), sort, after, cfg.page_size):
        fresh = rejected.unseen(page)
        docs = [(h.index, n, h.document()) for n, h in enumerate(fresh, 1)]
        state = run_triage_isolating(docs, ctx) if docs else {}
        dead = state.get("dead_letters", [])
        rejected.remember([fresh[d.line - 1] for d in dead if d.line])
        incidents = state.get("incidents", [])
        owner = dict(state.get("known", {}))
        owner.update({aid: inc.incident_id for inc in incidents for aid in inc.alert_ids})
        backend.bulk(_writeback(page, owner, cfg))
        pending.update(owner.values())
        store.set_checkpoint(cfg.pending_name, sorted(pending))
        _mirror_audit(backend, store, cfg, pending)
        result.checkpoint = page[-1].sort
        store.set_checkpoint(cfg.checkpoint_name, result.checkpoint)
        result.pages += 1
        result.alerts_read += len(page)
        result.alerts_new += len(state.get("alerts", []))
        result.incidents_touched += len(incidents)
        result.dead_letters += len(dead)
        if result.pages % cfg.incident_flush_pages == 0:
            _flush_incidents(backend, store, cfg, pending)
        if progress is not None:
            progress(result)
    if cfg.refold:
        result.incidents_refolded = _refold(backend, store, ctx, cfg, pending, started_ms)
    _flush_incidents(backend, store, cfg, pending)
    return result


#: What Elastic's alert suppression writes on an alert that folds repeats, and when it last
#: folded one (it updates both in place; the alert's `@timestamp` stays).
_FOLDED = "kibana.alert.suppression.docs_count"
_LAST_DETECTED = "kibana.alert.last_detected"


def _refold(
    backend: SearchBackend,
    store: Store,
    ctx: TriageContext,
    cfg: SweepConfig,
    pending: set[str],
    started_ms: float,
) -> int:
    """Alerts already placed that their SIEM folded more repeats into since the last sweep
    began (`agent.refold`), whatever their workflow status: a sweep acknowledges what it
    reads, and Kibana folds into an acknowledged alert too. The first sweep read every count
    as it was, so it only marks the time. How many incidents grew."""
    since = store.get_checkpoint(cfg.refold_name)
    grown = 0
    if isinstance(since, int | float):
        moved = {"gte": int(since - cfg.lookback_seconds * 1000)}
        query = _filtered(cfg, [{"exists": {"field": _FOLDED}}, {"range": {_LAST_DETECTED: moved}}])
        sort = [{"@timestamp": "asc"}, {cfg.tiebreaker: "asc"}]
        for page in backend.pages(cfg.alerts_index, query, sort, None, cfg.page_size):
            grown += _refold_page(page, store, ctx, pending)
            store.set_checkpoint(cfg.pending_name, sorted(pending))
    store.set_checkpoint(cfg.refold_name, started_ms)
    return grown


def _refold_page(page: list[Hit], store: Store, ctx: TriageContext, pending: set[str]) -> int:
    alerts: list[Alert] = []
    for hit in page:
        try:
            alerts.append(normalize(hit.document()))
        except NormalizeError:
            continue  # never placed: the pass that read it rejected it
    owner = store.incident_of_alerts([a.id for a in alerts])
    held: dict[str, list[Alert]] = {}
    for a in alerts:
        if a.id in owner:
            held.setdefault(owner[a.id], []).append(a)
    grown = 0
    with ctx.exclusive():  # a run extending the incident meanwhile would lose one or the other
        for incident_id, its in held.items():
            incident = store.get_incident(incident_id)
            refreshed = refolded(incident, its) if incident is not None else None
            if refreshed is None:
                continue
            store.save_triage([refreshed], [], [], [], actor=ctx.requester, placed={})
            if ctx.on_incident is not None:
                ctx.on_incident("incident.updated", refreshed)
            pending.add(incident_id)
            grown += 1
    return grown


def _sort_ms(sort: list[Any]) -> float:
    """A hit's time from its sort values, in milliseconds (a `date_nanos` field's are in
    nanoseconds); 0 if none."""
    at = sort[0] if sort else None
    if not isinstance(at, int | float):
        return 0.0
    return at / 1e6 if at > 1e15 else float(at)


class _Rejected:
    """The hits sweeps rejected lately, kept in the store by index and id with their times:
    read again within the lookback, they are not rejected (and listed) once more. Only those
    from `since_ms` on can come back (none without a lookback, which reads nothing twice)."""

    def __init__(self, store: Store, name: str, since_ms: float | None) -> None:
        self._store, self._name = store, name
        kept = (store.get_checkpoint(name) or []) if since_ms is not None else []
        self._at: dict[str, float] = {key: at for key, at in kept if at >= (since_ms or 0)}

    def unseen(self, page: list[Hit]) -> list[Hit]:
        return [h for h in page if f"{h.index}/{h.id}" not in self._at]

    def remember(self, hits: list[Hit]) -> None:
        if hits:
            self._at.update({f"{h.index}/{h.id}": _sort_ms(h.sort) for h in hits})
            self._store.set_checkpoint(self._name, sorted(map(list, self._at.items())))


def _resume(
    checkpoint: list[Any] | None, lookback_seconds: int, now_ms: float
) -> tuple[list[Any] | None, float | None]:
    """Where a sweep starts: after the checkpoint, or (with a lookback) from a time before it.
    Sorting by `@timestamp`, an alert indexed after the sweep went past its time was never
    read. And the checkpoint counts from no later than now: one alert dated a year ahead put
    it there, and no alert of the year between was read."""
    if checkpoint is None or not isinstance(checkpoint[0], int | float) or checkpoint[0] < 1e11:
        return checkpoint, None  # no date's epoch ms or ns (a number field's): as it is
    at_ms = _sort_ms(checkpoint)
    if lookback_seconds == 0 and at_ms <= now_ms:
        return checkpoint, None
    return None, min(at_ms, now_ms) - lookback_seconds * 1000


def _flush_incidents(
    backend: SearchBackend, store: Store, cfg: SweepConfig, pending: set[str]
) -> None:
    """Index the current state of every incident waiting to be mirrored, then forget them
    (in the store too)."""
    if not pending:
        return
    ops: list[dict[str, Any]] = []
    for incident_id in sorted(pending):
        inc = store.get_incident(incident_id)
        if inc is not None:
            ops += [
                {"index": {"_index": cfg.incidents_index, "_id": inc.incident_id}},
                incident_document(inc),
            ]
    backend.bulk(ops)
    store.set_checkpoint(cfg.pending_name, [])
    pending.clear()


def incident_document(inc: Incident) -> dict[str, Any]:
    """The output contract line, plus what Kibana users filter on."""
    return {
        **inc.output_line(),
        "status": inc.status,
        "first_seen": inc.first_seen.isoformat(),
        "last_seen": inc.last_seen.isoformat(),
        "hosts": inc.hosts,
        "users": inc.users,
        "ips": inc.ips,
        "tactics": inc.tactics,
        "techniques": inc.techniques,
        "alert_ids": inc.alert_ids[:10_000],
        "alert_count": len(inc.alert_ids),
        "explanation": inc.explanation.model_dump(mode="json"),
        "disposition": inc.disposition.model_dump(mode="json") if inc.disposition else None,
    }


def _writeback(page: list[Hit], owner: dict[str, str], cfg: SweepConfig) -> list[dict[str, Any]]:
    """Each triaged alert acknowledged and tagged with its incident."""
    ops: list[dict[str, Any]] = []
    for hit in page:
        if hit.source is None:
            continue  # a dead letter (no source to triage): left open for a human
        source = hit.document()
        incident_id = owner.get(alert_id(source, Fields(source).get))
        if incident_id is None:
            continue  # a dead letter: left open in Kibana for a human
        if _written_back(hit.source, incident_id, cfg):
            continue  # read again (see `_resume`): already says so
        tag = f"vigie:{incident_id}"
        if cfg.kibana_writeback:
            tags = hit.source.get("kibana.alert.workflow_tags") or []
            tags = [*tags, tag] if tag not in tags else tags
            update: dict[str, Any] = {
                "kibana.alert.workflow_status": "acknowledged",
                "kibana.alert.workflow_tags": tags,
            }
        else:
            update = {"vigie": {"incident_id": incident_id}}
        ops += [{"update": {"_index": hit.index, "_id": hit.id}}, {"doc": update}]
    return ops


def _written_back(source: dict[str, Any], incident_id: str, cfg: SweepConfig) -> bool:
    if cfg.kibana_writeback:
        tags = source.get("kibana.alert.workflow_tags")
        acknowledged = source.get("kibana.alert.workflow_status") == "acknowledged"
        return acknowledged and isinstance(tags, list) and f"vigie:{incident_id}" in tags
    vigie = source.get("vigie")
    return isinstance(vigie, dict) and vigie.get("incident_id") == incident_id


#: Audit events of a person changing an incident outside triage: its document is mirrored again.
PEOPLE_CHANGING_INCIDENTS = frozenset({"incident.disposed", "incident.reopened"})


def _mirror_audit(
    backend: SearchBackend, store: Store, cfg: SweepConfig, pending: set[str]
) -> None:
    """Copy audit events not yet mirrored (by seq) into the audit index; ids make it idempotent.
    An incident a person closed or reopened joins `pending` (kept before the audit checkpoint
    moves), so Kibana shows the closing too, in this sweep even if no alert came."""
    done = store.get_checkpoint(f"audit-mirror:{cfg.audit_index}") or 0
    events = store.audit(after=done)
    if not events:
        return
    changed = {e.subject for e in events if e.kind in PEOPLE_CHANGING_INCIDENTS} - pending
    if changed:
        pending |= changed
        store.set_checkpoint(cfg.pending_name, sorted(pending))
    ops: list[dict[str, Any]] = []
    for e in events:
        ops += [
            {"index": {"_index": cfg.audit_index, "_id": str(e.seq)}},
            e.model_dump(mode="json"),
        ]
    backend.bulk(ops)
    store.set_checkpoint(f"audit-mirror:{cfg.audit_index}", events[-1].seq)
