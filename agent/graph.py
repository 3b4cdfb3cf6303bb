"""One triage run as a LangGraph graph:

    fetch -> normalise -> correlate -> prioritise -> analyse (fan-out) -> propose -> queue

Nodes are small functions over `TriageState`; everything they need from outside (store,
analyst, playbooks, progress) comes in through the run's `TriageContext`.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, TypedDict

import orjson
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agent.analyst import Analyst, OfflineAnalyst
from agent.baseline import HISTORY_DAYS, Baseline, history_of
from agent.collector import gc_paused
from agent.correlate import Cluster, CorrelationConfig, correlate
from agent.documents import excerpt
from agent.errors import SystemicFailure, VigieError
from agent.incidents import Evidence
from agent.incremental import build_incidents, open_since
from agent.models import ActionProposal, Alert, DeadLetter, Incident, with_documents
from agent.normalize import NormalizeError, normalize, rejected
from agent.parallel_read import ParallelRead, ReadChunk, parallel_layout, read_parallel
from agent.playbooks import Playbook, matching, propose
from agent.prioritise import PriorityConfig
from agent.routine import recent_hours
from agent.store import WINDOW_HISTORY_SECONDS, RuleHistory, RunHistory, Store
from connectors.files import check_readable, read_documents

log = logging.getLogger(__name__)

ANALYSE_CHUNK = 64

Progress = Callable[[str, int], None]


def _no_progress(stage: str, n: int) -> None:
    return None


@dataclass
class TriageContext:
    store: Store | None
    analyst: Analyst
    playbooks: list[Playbook]
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    priority: PriorityConfig = field(default_factory=PriorityConfig)
    requester: str = "vigie"
    approval_ttl: timedelta = timedelta(hours=24)
    max_doc_bytes: int = 1 << 20
    read_workers: int = 1  # processes for a large NDJSON file (see agent.parallel_read)
    quiet_period: timedelta = timedelta(hours=24)
    progress: Progress = _no_progress
    #: Told of every stored incident: (kind, incident) with kind incident.created/updated.
    on_incident: Callable[[str, Incident], None] | None = None
    fallback: Analyst = field(default_factory=OfflineAnalyst)
    #: Held for a whole run, from reading the open incidents a batch may extend to storing the
    #: result: two runs extending one incident at once would lose one's alerts. The store's
    #: `one_run_at_a_time` (see service.triage_context); nothing for a run without a store.
    exclusive: Callable[[], AbstractContextManager[Any]] = nullcontext
    #: Files whose reading began before the run (see `agent.parallel_read.start_first`).
    started: dict[str, ParallelRead] = field(default_factory=dict)
    #: What a rejection calls an input by, when not its path: `stdin` for its temporary copy.
    names: dict[str, str] = field(default_factory=dict)


#: A document to normalise: (source, line, value), plus its JSON bytes when a file reader has
#: them; the value is already an `Alert` when worker processes normalised it, and a chunk of
#: such alerts without a dead letter comes whole.
OneDocument = tuple[str, int, Any] | tuple[str, int, Any, bytes | None]
Incoming = OneDocument | ReadChunk


class TriageState(TypedDict, total=False):
    inputs: list[str]
    # Read lazily from files: normalise consumes it as it is read, so a day of documents is
    # never held in memory at once (only the alerts made from them).
    documents: Iterable[Incoming | DeadLetter]
    alerts: list[Alert]
    dead_letters: Annotated[list[DeadLetter], operator.add]
    clusters: list[Cluster]
    incidents: list[Incident]
    assessed: Annotated[list[Incident], operator.add]
    proposals: list[ActionProposal]
    known: dict[str, str]  # alert id -> incident id, for alerts an earlier run already placed
    by_id: dict[str, Alert]  # this run's alerts by id, built once by `normalise`
    rule_history: RuleHistory | None  # what earlier runs saw (with a store)
    open_incidents: list[Incident] | None  # what this batch may extend (with a store)
    history: RunHistory | None  # what this run adds to the rule history (with a store)
    samples: list[Alert]  # the few alerts per rule and host stored with their incidents
    placed: dict[str, str]  # this run's alert ids -> their incident's id
    evidence: dict[str, Evidence]  # what each incident's alerts show (see `propose_node`)


class AnalyseTask(TypedDict):
    incidents: list[Incident]
    alerts: dict[str, Alert]


def fetch(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Open the input files as one lazy stream of documents (unreadable ones as dead letters);
    a caller that already holds documents (a sweep page, a webhook batch) passes them in."""
    if not state.get("inputs"):
        return {}
    paths = state.get("inputs", [])
    for path in paths:  # a missing file is a clear error now, not half way through the run
        check_readable(path)
    ctx = runtime.context
    return {"documents": _read_files(paths, ctx.max_doc_bytes, ctx.read_workers, ctx.started)}


def _read_files(
    paths: list[str], max_doc_bytes: int, workers: int, started: dict[str, ParallelRead]
) -> Iterator[Incoming | DeadLetter]:
    """Documents, or alerts already normalised by worker processes for a large file."""
    for path in paths:
        early = started.pop(path, None)
        if early is not None:
            yield from early.chunked()
            continue
        if layout := parallel_layout(path, workers, max_doc_bytes):
            yield from read_parallel(path, max_doc_bytes, workers, layout)
            continue
        for item in read_documents(path, max_doc_bytes):
            yield item if isinstance(item, DeadLetter) else (path, item.line, item.value, item.raw)


def normalise(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    by_id: dict[str, Alert] = {}  # in reading order: the run's alerts, and the duplicate check
    dead: list[DeadLetter] = []
    trusted_depth = bool(state.get("inputs"))  # the file reader bounded nesting already
    progress = runtime.context.progress
    read, report_at = 0, PROGRESS_EVERY
    for item in state.get("documents", []):
        if isinstance(item, ReadChunk):
            if not _take_whole(item, by_id):
                for one in item.items():
                    _take(one, by_id, dead, trusted_depth)
            read += len(item.alerts)
        else:
            _take(item, by_id, dead, trusted_depth)
            read += 1
        if read >= report_at:
            progress("read", read)
            report_at = read + PROGRESS_EVERY
    store = runtime.context.store
    known = store.incident_of_alerts(list(by_id)) if store is not None else {}
    for aid in known:  # triaged by an earlier run (a re-read page): already in an incident
        del by_id[aid]
    runtime.context.progress("normalised", len(by_id))
    return {
        "alerts": list(by_id.values()),
        "by_id": by_id,
        "documents": [],
        "dead_letters": _named(dead, runtime.context.names),
        "known": known,
    }


PROGRESS_EVERY = 10000  # documents


def _named(dead: list[DeadLetter], names: dict[str, str]) -> list[DeadLetter]:
    """Rejections naming an input as the analyst gave it (see `TriageContext.names`)."""
    if not names:
        return dead
    return [d.model_copy(update={"source": names.get(d.source, d.source)}) for d in dead]


def _take(
    item: OneDocument | DeadLetter, by_id: dict[str, Alert], dead: list[DeadLetter], trusted: bool
) -> None:
    """One document or alert into the run's alerts, or into a dead letter saying why not."""
    if isinstance(item, DeadLetter):
        dead.append(item)
        return
    source, line, doc = item[0], item[1], item[2]
    if isinstance(doc, Alert):
        alert = doc
    else:
        try:
            alert = normalize(doc, depth_checked=trusted, raw=item[3] if len(item) > 3 else None)
        except NormalizeError as exc:
            dead.append(rejected(source, line, doc, exc))
            return
    if alert.id in by_id:
        dead.append(
            DeadLetter(
                source=source, line=line, reason=f"duplicate alert id {alert.id!r}; first copy kept"
            )
        )
        return
    by_id[alert.id] = alert


def _take_whole(chunk: ReadChunk, by_id: dict[str, Alert]) -> bool:
    """A clean chunk's alerts in a few C-level steps, unless an id repeats (within the chunk or
    from before): then the caller takes them one by one, so the first copy is the one kept."""
    ids = list(map(_alert_id, chunk.alerts))
    if len(set(ids)) < len(ids) or not by_id.keys().isdisjoint(ids):
        return False
    by_id.update(zip(ids, chunk.alerts, strict=True))
    return True


_alert_id = operator.attrgetter("id")
_timestamp = operator.attrgetter("timestamp")


def correlate_node(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Clusters, judged with what earlier runs saw (the store's rule history, read once here
    for correlation and priority alike)."""
    ctx = runtime.context
    alerts = state.get("alerts", [])
    history = None
    extendable = None
    if ctx.store is not None and alerts:
        newest = _newest(map(_timestamp, alerts))
        since = (newest - timedelta(days=HISTORY_DAYS)).date()
        windows_from = int(newest.timestamp()) - WINDOW_HISTORY_SECONDS
        history = ctx.store.rule_history(since, windows_from=windows_from)
        oldest = min(map(_timestamp, alerts)).timestamp()
        extendable = ctx.store.open_incidents(open_since(oldest, ctx.correlation, ctx.quiet_period))
    recent = recent_hours(history.windows) if history is not None else None
    addresses = [pair for inc in extendable or () for pair in inc.addresses]
    clusters = correlate(alerts, ctx.correlation, recent, addresses)
    out: dict[str, Any] = {
        "clusters": clusters,
        "rule_history": history,
        "open_incidents": extendable,
    }
    # A network alert placed on the machine it saw is that alert from now on: a playbook's
    # arguments and the analyst read the machine, not the sensor.
    placed = {a.id: a for c in clusters for r in c.runs if r.judged for a in r.alerts}
    if placed:
        out["by_id"] = state.get("by_id", {}) | placed
    return out


def prioritise_node(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    ctx = runtime.context
    clusters = state["clusters"]
    baseline = Baseline()
    history = state.get("rule_history")
    if history is not None and clusters:
        baseline = Baseline.from_history(history)
    baseline.observe(clusters)
    if ctx.store is not None and clusters:
        baseline.tune(ctx.store.tunings(datetime.now(UTC)))
    built = build_incidents(
        clusters,
        baseline,
        ctx.store,
        ctx.correlation,
        ctx.priority,
        ctx.quiet_period,
        state.get("open_incidents"),
    )
    incidents = sorted(built.incidents, key=lambda i: (-i.priority, i.incident_id))
    runtime.context.progress("incidents", len(incidents))
    return {
        "incidents": incidents,
        "samples": with_documents(built.samples),  # the stored ones: read back from files now
        "placed": built.placed,
        "evidence": built.evidence,
        "clusters": [],
        "rule_history": None,
        "open_incidents": None,
        "history": history_of(clusters) if ctx.store is not None else None,
    }


def fan_out(state: TriageState) -> list[Send] | str:
    """One analysis task per chunk of incidents, so thousands of incidents stay cheap."""
    by_id = state.get("by_id", {})
    incidents = state.get("incidents", [])
    if not incidents:
        return "propose"
    return [
        Send("analyse", AnalyseTask(incidents=incidents[i : i + ANALYSE_CHUNK], alerts=by_id))
        for i in range(0, len(incidents), ANALYSE_CHUNK)
    ]


def analyse(task: AnalyseTask, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    ctx = runtime.context
    return {"assessed": [_assess(ctx, inc, task["alerts"]) for inc in task["incidents"]]}


def _assess(ctx: TriageContext, incident: Incident, alerts: dict[str, Alert]) -> Incident:
    try:
        assessment = ctx.analyst.assess(incident, alerts)
    except VigieError as exc:
        assessment = ctx.fallback.assess(incident, alerts)
        assessment.notes.append(
            f"{ctx.analyst.name} analyst failed ({type(exc).__name__}); offline fallback"
        )
    return incident.model_copy(update={"assessment": assessment})


def propose_node(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Proposals from the playbooks an incident matches. Its alerts are gathered only then,
    for the actions' arguments: matching reads the evidence its build gathered."""
    ctx = runtime.context
    by_id = state.get("by_id", {})
    evidence = state.get("evidence", {})
    now = datetime.now(UTC)
    incidents: list[Incident] = []
    proposals: list[ActionProposal] = []
    for inc in sorted(state.get("assessed", []), key=lambda i: (-i.priority, i.incident_id)):
        shown = evidence.get(inc.incident_id)
        books = ctx.playbooks if shown is None else matching(ctx.playbooks, inc, shown)
        mine: list[ActionProposal] = []
        if books:
            alerts = list(filter(None, map(by_id.get, inc.alert_ids)))  # this run's, in C
            if len(alerts) < len(inc.alert_ids) and ctx.store is not None:  # an extension
                alerts += ctx.store.alerts_of(inc.incident_id)
            mine = propose(
                books,
                inc,
                alerts,
                requester=ctx.requester,
                now=now,
                ttl=ctx.approval_ttl,
                evidence=shown,
            )
        proposals += mine
        ids = list(dict.fromkeys([*inc.proposal_ids, *(p.proposal_id for p in mine)]))
        incidents.append(inc.model_copy(update={"proposal_ids": ids}))
    return {"incidents": incidents, "proposals": proposals, "evidence": {}}


def queue(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Store everything in one transaction; only then is the run's input considered handled."""
    ctx = runtime.context
    if ctx.store is not None:
        incidents = state.get("incidents", [])
        existed = (
            {i.incident_id for i in incidents if ctx.store.get_incident(i.incident_id) is not None}
            if ctx.on_incident is not None
            else set()
        )
        ctx.store.save_triage(
            incidents,
            state.get("samples", []),
            state.get("proposals", []),
            state.get("dead_letters", []),
            actor=ctx.requester,
            placed=state.get("placed", {}),
            history=state.get("history"),
        )
        if ctx.on_incident is not None:
            for inc in incidents:
                kind = "incident.updated" if inc.incident_id in existed else "incident.created"
                ctx.on_incident(kind, inc)
        if incidents:  # incidents quiet for a whole period before the newest alert they hold close
            ctx.store.close_quiet(_newest(i.last_seen for i in incidents) - ctx.quiet_period)
    return {}


def _newest(times: Iterable[datetime]) -> datetime:
    """The newest of these alert times, but never later than now: one alert from a sensor
    whose clock ran a year ahead closed every open incident (later alerts opened new ones),
    and judged its batch against the store's empty week before it."""
    return min(max(times), datetime.now(UTC))


@cache
def build_graph() -> Any:
    """Compiled once per process: a sweep runs it for every page."""
    g = StateGraph(TriageState, context_schema=TriageContext)
    g.add_node("fetch", fetch)
    g.add_node("normalise", normalise)
    g.add_node("correlate", correlate_node)
    g.add_node("prioritise", prioritise_node)
    # Its input is a Send payload, not the state; LangGraph's overloads cannot express that.
    g.add_node("analyse", analyse, input_schema=AnalyseTask)  # type: ignore[call-overload]
    g.add_node("propose", propose_node)
    g.add_node("queue", queue)
    g.add_edge(START, "fetch")
    g.add_edge("fetch", "normalise")
    g.add_edge("normalise", "correlate")
    g.add_edge("correlate", "prioritise")
    g.add_conditional_edges("prioritise", fan_out, ["analyse", "propose"])
    g.add_edge("analyse", "propose")
    g.add_edge("propose", "queue")
    g.add_edge("queue", END)
    return g.compile()


def run_triage(inputs: list[str], ctx: TriageContext) -> TriageState:
    with ctx.exclusive(), gc_paused():
        result: TriageState = build_graph().invoke({"inputs": inputs}, context=ctx)
    return result


def run_triage_documents(documents: list[tuple[str, int, Any]], ctx: TriageContext) -> TriageState:
    """Triage documents already in memory (a sweep page, a webhook batch)."""
    with ctx.exclusive(), gc_paused():
        result: TriageState = build_graph().invoke({"documents": documents}, context=ctx)
    return result


def run_triage_isolating(documents: list[tuple[str, int, Any]], ctx: TriageContext) -> TriageState:
    """`run_triage_documents` for what a service reads unattended (webhook batches, sweep
    pages): a document that makes triage fail (a bug meeting an input nobody foresaw) would
    fail every retry of the lot, and hold every document queued after it. The documents are
    triaged in halves until the failing ones stand alone; each becomes a dead letter holding
    it whole, with the error. Typed errors (a store away) are not isolated: the caller
    retries the lot."""
    states, dead = _isolating(documents, ctx)
    if not dead:
        return states[0]
    if not states and len(documents) > 1:  # nothing went through: no input is to blame
        raise SystemicFailure(dead[0].reason)
    if ctx.store is not None:
        ctx.store.save_triage([], [], [], dead, actor=ctx.requester)
    return _merged(states, dead)


def _isolating(
    documents: list[tuple[str, int, Any]], ctx: TriageContext
) -> tuple[list[TriageState], list[DeadLetter]]:
    try:
        return [run_triage_documents(documents, ctx)], []
    except VigieError:  # typed (a store away, a systemic failure below): the lot is retried
        raise
    except Exception as exc:  # the one place a bug is isolated (and logged)
        if len(documents) == 1:
            source, line, doc = documents[0]
            log.exception("triage failed on %s:%s; kept as a dead letter", source, line)
            return [], [_kept_whole(source, line, doc, exc)]
        half = len(documents) // 2
        first, dead = _isolating(documents[:half], ctx)
        _few(dead, exc)
        second, dead_second = _isolating(documents[half:], ctx)
        _few(dead + dead_second, exc)
        return first + second, dead + dead_second


def _few(dead: list[DeadLetter], exc: Exception) -> None:
    if len(dead) > MAX_ISOLATED:  # so many: the error is not theirs
        raise SystemicFailure(dead[0].reason) from exc


#: More documents than this failing triage alone, in one lot: the fault is not theirs (a store
#: gone wrong, a bug every input meets), and the lot fails as it came, for a retry.
MAX_ISOLATED = 10


def _kept_whole(source: str, line: int, doc: Any, exc: Exception) -> DeadLetter:
    try:
        whole = orjson.dumps(doc).decode()
    except TypeError:
        whole = excerpt(doc)
    reason = f"triage failed on this document ({type(exc).__name__}: {exc}); kept whole here"
    return DeadLetter(source=source, line=line, reason=reason[:500], excerpt=whole)


def _merged(states: list[TriageState], dead: list[DeadLetter]) -> TriageState:
    """What the runs of the parts did, as one run's state for the caller's counts."""
    merged: TriageState = {
        "alerts": [],
        "incidents": [],
        "proposals": [],
        "dead_letters": list(dead),
        "known": {},
    }
    for s in states:
        merged["alerts"] += s.get("alerts", [])
        merged["incidents"] += s.get("incidents", [])
        merged["proposals"] += s.get("proposals", [])
        merged["dead_letters"] += s.get("dead_letters", [])
        merged["known"].update(s.get("known", {}))
    return merged
