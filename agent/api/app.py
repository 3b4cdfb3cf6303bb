"""FastAPI app: SIEM webhooks, the analyst API, health and metrics. Built by `create_app` with
its dependencies passed in, so tests and `vigie serve` wire the same code."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.api import MAX_ENTITY, REFUSED, refusal_status
from agent.api.auth import ApiTokens, Principal, WebhookAuth
from agent.approvals import MAX_COMMENT
from agent.dispositions import (
    MAX_CLOSED_AT_ONCE,
    MAX_REASON,
    Closing,
    Closings,
    dispose,
    dispose_each,
    reopen,
    revoke,
)
from agent.errors import ApprovalError, AuthError, BadInput, Forbidden, NotFound, Transient
from agent.intake import accept
from agent.models import ActionProposal, Disposal, Incident, ProposalState
from agent.queue import ApprovalQueue
from agent.store import Store, incident_record

log = logging.getLogger("vigie.api")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; secrets never reach a log call (tokens are not logged)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "at": datetime.now(UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        return json.dumps(doc)


class ApproveBody(BaseModel):
    args_hash: str = Field(min_length=8, max_length=64, description="the hash you reviewed")
    comment: str = Field(default="", max_length=MAX_COMMENT)


class EditBody(BaseModel):
    args: dict[str, str | int | float | bool] = Field(
        min_length=1,
        description="the arguments to change and their new values (the entity acted on, the "
        "playbook's options); the others stay as proposed",
    )


class SettleBody(BaseModel):
    ran: bool = Field(description="whether the target shows the action done")
    reason: str = Field(min_length=1, max_length=MAX_COMMENT, description="what was found")


class RejectBody(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_COMMENT)


class RevokeBody(BaseModel):
    rule_id: str = Field(min_length=1, max_length=512)
    host: str = Field(min_length=1, max_length=512)
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class ReopenBody(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class DispositionBody(BaseModel):
    verdict: Disposal
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    tune: bool = Field(
        default=False,
        description="benign or false_positive only, lead or admin role: its rule-host pairs "
        "stop counting as rare or new in later incidents until the tuning expires",
    )


class DispositionsBody(DispositionBody):
    incident_ids: list[str] = Field(min_length=1, max_length=MAX_CLOSED_AT_ONCE)


class Accepted(BaseModel):
    accepted: int
    rejected: int
    batch_id: str


class Metrics:
    """The API's Prometheus metrics. Under `vigie serve --workers N`, each process counts its
    own requests: with `PROMETHEUS_MULTIPROC_DIR` set (`vigie serve` sets it for N > 1),
    counters go to files there and every scrape sums all processes' (one process's alone,
    whichever answered, made counters jump back and forth). Store gauges are read at scrape."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        own = None if shared else self.registry  # shared: the files are what is scraped
        if shared:
            MultiProcessCollector(self.registry, path=shared)
        self.alerts_in = Counter(
            "vigie_alerts_in_total", "Alerts accepted by webhooks", ["source"], registry=own
        )
        self.rejected = Counter(
            "vigie_alerts_rejected_total", "Webhook documents rejected", ["source"], registry=own
        )
        self.requests = Counter(
            "vigie_http_requests_total", "HTTP requests", ["route", "status"], registry=own
        )
        self.approval_latency = Histogram(
            "vigie_approval_latency_seconds",
            "From proposal to decision",
            registry=own,
            buckets=(60, 300, 900, 3600, 4 * 3600, 24 * 3600),
        )
        self.registry.register(StoreGauges(store))


class StoreGauges(Collector):
    """What the store holds, read when scraped: the same whichever process answers."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """With the store away, `vigie_store_up` 0 and the counters still scraped (the whole
        scrape failed with it, and what the API had counted went unseen when it mattered)."""
        try:
            incidents = self.store.count_incidents()
            pending = len(self.store.list_proposals(states=[ProposalState.pending]))
        except Transient:
            yield GaugeMetricFamily("vigie_store_up", "Whether the store answered", value=0)
            return
        yield GaugeMetricFamily("vigie_store_up", "Whether the store answered", value=1)
        yield GaugeMetricFamily("vigie_incidents", "Incidents stored", value=incidents)
        yield GaugeMetricFamily(
            "vigie_queue_depth", "Proposals waiting for approval", value=pending
        )


class RequestLog:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request): a request
    id (the caller's `x-request-id` or a new one) on the response and in one JSON log line with
    route, status and duration; the Prometheus request counter."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id")
        rid = given.decode("latin-1")[:128] if given else uuid.uuid4().hex
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": rid,
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "ms": round((time.perf_counter() - start) * 1000, 1),
                    }
                },
            )


def decoded(body: bytes, encoding: str | None, max_body: int) -> bytes:
    """A webhook's body as its sender wrote it. Log shippers (Logstash's http output, Vector,
    Fluent Bit) may gzip it; a signature signs what was written, so it is checked on this.
    The limit holds after decompression too: a small body may inflate a thousandfold."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "x-gzip"):
        raise HTTPException(415, f"Content-Encoding {coding!r} is not accepted: send gzip or none")
    out = bytearray()
    rest = body
    while rest:  # a gzip stream may hold several members, one after the other
        inflate = zlib.decompressobj(wbits=31)
        try:
            out += inflate.decompress(rest, max_body + 1 - len(out))
        except zlib.error as exc:
            raise HTTPException(400, f"body is not valid gzip ({exc})") from None
        if len(out) > max_body:
            raise HTTPException(413, f"body larger than {max_body} bytes once decompressed")
        if not inflate.eof:
            raise HTTPException(400, "body is not valid gzip (cut short)")
        rest = inflate.unused_data
    return bytes(out)


def create_app(
    store: Store,
    queue: ApprovalQueue,
    tokens: ApiTokens,
    webhooks: WebhookAuth,
    *,
    schedule_triage: Callable[[BackgroundTasks], None],
    max_body: int = 5 << 20,
    secure_cookie: bool = False,
    tuning_for: timedelta = timedelta(days=30),
    on_closed: Callable[[Closing], None] | None = None,
    on_reopened: Callable[[Incident, str, str], None] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Vigie",
        version="0.1.0",
        description="SOC alert triage: webhooks in, incidents and approvals out.",
    )
    metrics = Metrics(store)

    app.add_middleware(RequestLog, metrics=metrics)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"error": "unauthorized", "detail": str(exc)}, status_code=401)

    @app.exception_handler(Transient)
    async def _unavailable(_: Request, exc: Transient) -> JSONResponse:
        return JSONResponse(
            {"error": "unavailable", "detail": str(exc)},
            status_code=503,
            headers={"retry-after": "5"},
        )

    def principal(authorization: str | None = Header(default=None)) -> Principal:
        return tokens.identify(authorization)

    # --- webhooks ---------------------------------------------------------------------------

    @app.post(
        "/webhooks/{source}",
        status_code=202,
        response_model=Accepted,
        responses={400: {}, 401: {}, 404: {}, 413: {}, 415: {}, 503: {}},
    )
    async def webhook(
        source: str,
        request: Request,
        background: BackgroundTasks,
        token: str | None = Query(
            default=None, description="weaker: for senders that cannot set a header"
        ),
    ) -> Accepted:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise HTTPException(413, f"body larger than {max_body} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise HTTPException(413, f"body larger than {max_body} bytes")
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = decoded(body, headers.get("content-encoding"), max_body)
        replay_key = webhooks.check(source, body, headers, token)
        try:
            intake = accept(store, source, body, replay_key)
        except BadInput as exc:
            status = 404 if source not in _known_sources() else 400
            raise HTTPException(status, str(exc)) from exc
        metrics.alerts_in.labels(source).inc(intake.accepted)
        metrics.rejected.labels(source).inc(intake.rejected)
        if intake.accepted:
            schedule_triage(background)
        return Accepted(
            accepted=intake.accepted, rejected=intake.rejected, batch_id=intake.batch_id
        )

    # --- analyst API ------------------------------------------------------------------------

    @app.get("/api/incidents")
    def incidents(
        who: Principal = Depends(principal),
        status: Literal["open", "closed"] | None = None,
        min_priority: float = Query(default=0, ge=0, le=100),
        limit: int = Query(default=50, ge=1, le=500),
        offset: int = Query(default=0, ge=0, le=100_000),
        involving: str | None = Query(
            default=None, min_length=1, max_length=MAX_ENTITY, pattern=r"\S"
        ),
    ) -> dict[str, Any]:
        """Highest priority first, filtered and paged by the store; `involving`: only the
        incidents with this host, user or address (case aside)."""
        page = store.list_incidents(
            limit=limit,
            offset=offset,
            status=status,
            min_priority=min_priority,
            involving=involving,
        )
        return {
            "total": store.count_incidents(
                status=status, min_priority=min_priority, involving=involving
            ),
            "items": [
                {
                    **i.output_line(),
                    "status": i.status,
                    "first_seen": i.first_seen.isoformat(),
                    "last_seen": i.last_seen.isoformat(),
                    "hosts": i.hosts[:10],
                    "tactics": i.tactics,
                    "why": [f.model_dump() for f in i.leading_factors()],
                }
                for i in page
            ],
        }

    @app.get("/api/incidents/{incident_id}", responses={404: {}})
    def incident(incident_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        record = incident_record(store, incident_id)
        if record is None:
            raise HTTPException(404, "no such incident")
        return record.document()

    def close_incidents(
        incident_ids: list[str], verdict: Disposal, reason: str, who: Principal, tune: bool
    ) -> Closings:
        """A person's closing, as the API and the UI make it: their role bounds the tuning,
        their noise verdict withdraws what waits for approval, and each closing is announced."""
        closings = dispose_each(
            incident_ids,
            lambda incident_id: dispose(
                store,
                incident_id,
                verdict,
                reason,
                who.name,
                tune=tune,
                role=who.role,
                tuning_for=tuning_for,
                queue=queue,
            ),
        )
        if on_closed is not None:
            for closing in closings.done:
                on_closed(closing)
        return closings

    def closed_view(closing: Closing) -> dict[str, Any]:
        inc = closing.incident
        return {
            "incident_id": inc.incident_id,
            "status": inc.status,
            "disposition": inc.disposition.model_dump(mode="json") if inc.disposition else None,
            "withdrawn_proposals": closing.withdrawn,
            "proposals_left_pending": closing.left,
        }

    def reopen_incident(incident_id: str, reason: str, who: Principal) -> Incident:
        """A closing undone, as the API and the UI make it, and announced."""
        inc = reopen(store, incident_id, reason, who.name)
        if on_reopened is not None:
            on_reopened(inc, who.name, reason)
        return inc

    @app.post(
        "/api/incidents/{incident_id}/disposition", responses={400: {}, 403: {}, 404: {}, 409: {}}
    )
    def disposition(
        incident_id: str, body: DispositionBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Close the incident with your verdict; `tune` (a lead's call) tunes its noise out. A
        noise verdict rejects the incident's pending proposals in your name."""
        try:
            closings = close_incidents([incident_id], body.verdict, body.reason, who, body.tune)
        except REFUSED as exc:
            raise HTTPException(refusal_status(exc), str(exc)) from exc
        for refusal in closings.refused.values():
            raise HTTPException(refusal_status(refusal), str(refusal))
        return closed_view(closings.done[0])

    @app.post("/api/incidents/dispositions", responses={400: {}, 403: {}})
    def dispositions(body: DispositionsBody, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Close several incidents with one verdict and reason (a detector's learning noise);
        each is closed and audited on its own. One closed meanwhile or unknown is listed under
        `refused` with its status and reason, and the others still close."""
        try:
            closings = close_incidents(body.incident_ids, body.verdict, body.reason, who, body.tune)
        except REFUSED as exc:
            raise HTTPException(refusal_status(exc), str(exc)) from exc
        return {
            "closed": [closed_view(c) for c in closings.done],
            "refused": [
                {"incident_id": i, "status": refusal_status(exc), "detail": str(exc)}
                for i, exc in closings.refused.items()
            ],
        }

    @app.post("/api/incidents/{incident_id}/reopen", responses={400: {}, 404: {}, 409: {}})
    def reopening(
        incident_id: str, body: ReopenBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Undo a closing made in error; its tunings stay until ended on their own."""
        try:
            inc = reopen_incident(incident_id, body.reason, who)
        except REFUSED as exc:
            raise HTTPException(refusal_status(exc), str(exc)) from exc
        return {"incident_id": inc.incident_id, "status": inc.status, "reopened_by": who.name}

    @app.get("/api/rejected")
    def rejected(
        who: Principal = Depends(principal),
        limit: int = Query(default=50, ge=1, le=500),
        offset: int = Query(default=0, ge=0, le=1_000_000),
    ) -> dict[str, Any]:
        """Documents that became no alert, newest first, with why and when they were stored:
        a webhook's or a sweep's rejections, which no run summary shows."""
        total, page = store.recent_dead_letters(limit, offset)
        return {"total": total, "items": [d.model_dump(mode="json") for d in page]}

    @app.get("/api/tunings")
    def tunings(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        """The rule-host pairs tuned as noise, in force now."""
        return [t.model_dump(mode="json") for t in store.tunings(datetime.now(UTC))]

    @app.post("/api/tunings/revoke", responses={400: {}, 403: {}, 404: {}})
    def revoke_tuning(body: RevokeBody, who: Principal = Depends(principal)) -> dict[str, Any]:
        """End a tuning before it expires (lead or admin)."""
        try:
            revoke(store, body.rule_id, body.host, body.reason, who.name, role=who.role)
        except REFUSED as exc:
            raise HTTPException(refusal_status(exc), str(exc)) from exc
        return {"rule_id": body.rule_id, "host": body.host, "revoked_by": who.name}

    @app.get("/api/approvals")
    def approvals(
        who: Principal = Depends(principal), state: ProposalState | None = ProposalState.pending
    ) -> list[dict[str, Any]]:
        return [
            p.model_dump(mode="json")
            for p in store.list_proposals(states=[state] if state else None)
        ]

    def decide(fn: Callable[[], ActionProposal], timed: bool = True) -> dict[str, Any]:
        """`timed`: a decision on the proposal, whose wait the latency metric counts (an
        edit's replacement is new: its wait starts now)."""
        try:
            p = fn()
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except Forbidden as exc:
            raise HTTPException(403, str(exc)) from exc
        except ApprovalError as exc:
            raise HTTPException(409, str(exc)) from exc
        if timed:
            metrics.approval_latency.observe((datetime.now(UTC) - p.created_at).total_seconds())
        return p.model_dump(mode="json")

    @app.post("/api/approvals/{proposal_id}/approve", responses={403: {}, 404: {}, 409: {}})
    def approve(
        proposal_id: str, body: ApproveBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """The approver is the token's identity; `args_hash` binds the decision to what they saw."""
        return decide(
            lambda: queue.approve(
                proposal_id, who.name, seen_hash=body.args_hash, comment=body.comment
            )
        )

    @app.post("/api/approvals/{proposal_id}/edit", responses={403: {}, 404: {}, 409: {}})
    def edit(
        proposal_id: str, body: EditBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Changed arguments make a new proposal, which needs fresh approvals from others than
        its editor; the edited one ends `superseded`. The new proposal is returned."""
        return decide(lambda: queue.edit_values(proposal_id, who.name, body.args), timed=False)

    @app.post("/api/approvals/{proposal_id}/settle", responses={403: {}, 404: {}, 409: {}})
    def settle(
        proposal_id: str, body: SettleBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """A run whose outcome is unknown, settled from what the target shows: it never runs
        again; who found what is recorded."""
        return decide(
            lambda: queue.settle(proposal_id, who.name, ran=body.ran, reason=body.reason),
            timed=False,
        )

    @app.post("/api/approvals/{proposal_id}/reject", responses={403: {}, 404: {}, 409: {}})
    def reject(
        proposal_id: str, body: RejectBody, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        return decide(lambda: queue.reject(proposal_id, who.name, reason=body.reason))

    # --- operations -------------------------------------------------------------------------

    from fastapi.staticfiles import StaticFiles

    from agent.api.ui import HERE, build_router

    app.include_router(
        build_router(store, queue, tokens, close_incidents, reopen_incident, secure_cookie)
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {}})
    def readyz() -> dict[str, str]:
        store.list_incidents(limit=1)  # Transient -> 503
        return {"status": "ready"}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _known_sources() -> set[str]:
    from connectors.webhooks import PARSERS

    return set(PARSERS)


def embedded_triage(
    run: Callable[[], Any], retry_seconds: float = 30.0
) -> Callable[[BackgroundTasks], None]:
    """Embedded mode: triage in this process after the response. A burst of webhooks makes
    one runner that loops while new batches keep arriving, not one run per request. A run
    that fails (the store away a moment) is tried again after `retry_seconds`, as a worker's
    beat would: it left the runner marked running, and nothing triaged until a restart."""
    guard = threading.Lock()
    state = {"running": False, "dirty": False}

    def loop() -> None:
        try:
            while True:
                with guard:
                    if not state["dirty"]:
                        state["running"] = False
                        return
                    state["dirty"] = False
                run()
        except Exception:
            with guard:
                state["dirty"] = True  # its batches still wait in the store
            retry = threading.Timer(retry_seconds, loop)
            retry.daemon = True
            retry.start()  # the runner stays marked running: the retry is it
            raise  # logged by Starlette (or the timer's thread)

    def schedule(background: BackgroundTasks) -> None:
        with guard:
            state["dirty"] = True
            if state["running"]:
                return
            state["running"] = True
        background.add_task(loop)

    return schedule


def approval_queue(
    store: Store,
    enqueue: Callable[[str], None],
    ttl_seconds: int,
    roles: dict[str, str],
    on_decision: Callable[[ActionProposal, str], None] | None = None,
) -> ApprovalQueue:
    return ApprovalQueue(
        store, enqueue, timedelta(seconds=ttl_seconds), roles=roles or None, on_decision=on_decision
    )
