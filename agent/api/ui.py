"""The analyst's browser UI: the approval queue and the incident view, server-rendered.

No JavaScript build step and no inline script: Jinja2 autoescapes every value (alert fields are
attacker-controlled), a strict Content-Security-Policy allows only our own static files, the
session cookie is HttpOnly + SameSite=Strict, and every form carries a per-session CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent.actions import ACTIONS, typed_like
from agent.api import MAX_ENTITY, REFUSED, refusal_status, status_shown
from agent.api.auth import ApiTokens, Principal
from agent.approvals import approved_by
from agent.attack import TACTIC_NAMES
from agent.dispositions import TUNING_ROLES, Closings, revoke, verdict_of
from agent.errors import ApprovalError, AuthError, Forbidden, NotFound
from agent.models import ActionProposal, Disposal, Incident, ProposalState, span_text
from agent.queue import ApprovalQueue
from agent.store import Store, incident_record

HERE = Path(__file__).parent
COOKIE = "vigie_session"
SESSION_SECONDS = 8 * 3600
INCIDENTS_PER_PAGE = 50
REJECTED_PER_PAGE = 50
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass
class Session:
    principal: Principal
    csrf: str
    expires: float


class Sessions:
    """Web sessions, kept in the store: every API process knows them (`vigie serve --workers
    N` runs several, and a login held in one process's memory was unknown to the next
    request's), and a logout ends them in all. A session speaks for its person only while
    their token does: one removed from VIGIE_API_TOKENS, or given another role, is logged
    out at the restart that applies it."""

    def __init__(self, store: Store, tokens: ApiTokens) -> None:
        self._store, self._roles = store, tokens.roles()

    def create(self, principal: Principal) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), time.time() + SESSION_SECONDS)
        data = {
            "name": principal.name,
            "role": principal.role,
            "csrf": session.csrf,
            "expires": session.expires,
        }
        self._store.save_session(_key(sid), data, datetime.fromtimestamp(session.expires, UTC))
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        data = self._store.get_session(_key(sid), datetime.now(UTC))
        if data is None or data["expires"] < time.time():
            return None
        if self._roles.get(data["name"]) != data["role"]:
            return None
        return Session(Principal(data["name"], data["role"]), data["csrf"], data["expires"])

    def drop(self, sid: str | None) -> None:
        if sid:
            self._store.drop_session(_key(sid))


def _key(sid: str) -> str:
    """What the store keeps of a session cookie: a leaked store leaks no live cookie."""
    return hashlib.sha256(sid.encode()).hexdigest()


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
    )
    env.filters["ago"] = lambda dt: _human((datetime.now(UTC) - dt).total_seconds())
    env.filters["left"] = lambda dt: _human((dt - datetime.now(UTC)).total_seconds())
    env.filters["span"] = span_text
    env.globals["tactic_name"] = lambda t: TACTIC_NAMES.get(t, t)
    env.globals["editable"] = _editable
    return env


def _human(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def entity_graph(inc: Incident, alerts: list[Any]) -> dict[str, Any]:
    """Hosts, users and IPs as nodes on a circle, linked when an alert names both."""
    nodes: list[tuple[str, str]] = []
    for kind, values in (("host", inc.hosts), ("user", inc.users), ("ip", inc.ips)):
        nodes += [(kind, v) for v in values[:8]]
    index = {n: i for i, n in enumerate(nodes)}
    edges: set[tuple[int, int]] = set()
    for a in alerts:
        present = [
            index[(k, v)]
            for k, vs in (
                ("host", a.entities.hosts),
                ("user", a.entities.users),
                ("ip", a.entities.ips),
            )
            for v in vs
            if (k, v) in index
        ]
        edges |= {(x, y) for x in present for y in present if x < y}
    n = max(1, len(nodes))
    pos = [
        (300 + 220 * math.cos(2 * math.pi * i / n), 170 + 130 * math.sin(2 * math.pi * i / n))
        for i in range(n)
    ]
    return {
        "nodes": [
            {"kind": k, "label": v[:28], "x": round(pos[i][0]), "y": round(pos[i][1])}
            for i, (k, v) in enumerate(nodes)
        ],
        "edges": [
            {
                "x1": round(pos[a][0]),
                "y1": round(pos[a][1]),
                "x2": round(pos[b][0]),
                "y2": round(pos[b][1]),
            }
            for a, b in sorted(edges)
        ],
    }


def build_router(
    store: Store,
    queue: ApprovalQueue,
    tokens: ApiTokens,
    close_incidents: Callable[[list[str], Disposal, str, Principal, bool], Closings],
    reopen_incident: Callable[[str, str, Principal], Incident],
    secure_cookie: bool = False,
) -> APIRouter:
    """`close_incidents`, `reopen_incident`: a person's closing and reopening as the API makes
    them (`create_app`)."""
    router = APIRouter(include_in_schema=False)
    env = _env()
    sessions = Sessions(store, tokens)

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "content-security-policy": CSP,
                "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer",
                "cache-control": "no-store",
            },
        )

    def session_of(request: Request) -> Session:
        s = sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise HTTPException(303, headers={"location": "/login"})
        return s

    def check_csrf(s: Session, token: str) -> None:
        if not hmac.compare_digest(s.csrf, token or ""):
            raise HTTPException(403, "bad CSRF token")

    def queue_rows(risk: str | None, action: str | None) -> list[dict[str, Any]]:
        prio: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for p in store.list_proposals(states=[ProposalState.pending]):
            if (risk and p.risk.value != risk) or (action and p.action != action):
                continue
            if p.incident_id not in prio:
                inc = store.get_incident(p.incident_id)
                prio[p.incident_id] = inc.priority if inc else 0.0
            got = len(approved_by(p.approvals))
            rows.append({"p": p, "priority": prio[p.incident_id], "got": got})
        rows.sort(key=lambda r: (-r["priority"], r["p"].created_at))
        return rows

    @router.get("/login")
    def login_form(request: Request) -> HTMLResponse:
        return page("login.html", error=None)

    @router.post("/login")
    def login(token: str = Form(...)) -> Response:
        try:
            principal = tokens.identify(f"Bearer {token}")
        except AuthError:
            return page("login.html", status=401, error="Unknown token.")
        sid, _ = sessions.create(principal)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            COOKIE,
            sid,
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
            max_age=SESSION_SECONDS,
            path="/",
        )
        return resp

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        s = session_of(request)
        check_csrf(s, csrf)
        sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @router.get("/")
    def queue_page(
        request: Request, risk: str | None = None, action: str | None = None
    ) -> HTMLResponse:
        s = session_of(request)
        return page(
            "queue.html",
            s=s,
            rows=queue_rows(risk, action),
            risk=risk,
            action=action,
            actions=sorted({p.action for p in store.list_proposals()}),
            unknown=store.list_proposals(states=[ProposalState.outcome_unknown]),
        )

    @router.get("/fragments/queue")
    def queue_fragment(
        request: Request, risk: str | None = None, action: str | None = None
    ) -> HTMLResponse:
        s = session_of(request)
        return page("queue_rows.html", s=s, rows=queue_rows(risk, action))

    @router.get("/incidents")
    def incidents_page(
        request: Request,
        status: Literal["open", "closed", "any"] = "open",
        min_priority: float = Query(default=0, ge=0, le=100),
        page_no: int = Query(default=1, ge=1, le=10_000, alias="page"),
        involving: str = Query(default="", max_length=MAX_ENTITY),
    ) -> HTMLResponse:
        """The incidents in the order an analyst reads them, each with the factors that rank
        it; `involving`: only those with this host, user or address."""
        s = session_of(request)
        only = status_shown(status)
        entity = involving.strip() or None
        total = store.count_incidents(status=only, min_priority=min_priority, involving=entity)
        start = (page_no - 1) * INCIDENTS_PER_PAGE
        return page(
            "incidents.html",
            s=s,
            incidents=store.list_incidents(
                limit=INCIDENTS_PER_PAGE,
                offset=start,
                status=only,
                min_priority=min_priority,
                involving=entity,
            ),
            first_rank=start + 1,
            total=total,
            shown=status,
            min_priority=min_priority,
            involving=entity or "",
            page_no=page_no,
            pages=max(1, math.ceil(total / INCIDENTS_PER_PAGE)),
            may_tune=s.principal.role in TUNING_ROLES,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        )

    @router.get("/incidents/{incident_id}")
    def incident_page(request: Request, incident_id: str) -> HTMLResponse:
        s = session_of(request)
        record = incident_record(store, incident_id)
        if record is None:
            raise HTTPException(404, "no such incident")
        inc = record.incident
        return page(
            "incident.html",
            s=s,
            inc=inc,
            alerts=record.alerts,
            proposals=record.proposals,
            audit=record.audit,
            graph=entity_graph(inc, record.alerts),
            cited=set(inc.assessment.cited_alert_ids if inc.assessment else []),
            may_tune=s.principal.role in TUNING_ROLES,
            open_above=store.count_incidents(status="open", min_priority=inc.priority),
        )

    @router.post("/incidents/{incident_id}/close")
    def close(
        request: Request,
        incident_id: str,
        csrf: str = Form(""),
        verdict: str = Form(...),
        reason: str = Form(""),
        tune: str = Form(""),
    ) -> Response:
        """Close with a verdict; a lead's `tune` also takes its noise out of later ranks."""
        s = session_of(request)
        check_csrf(s, csrf)
        back = f"/incidents/{incident_id}"
        return closed_or_refused(s, [incident_id], verdict, reason, tune, back)

    @router.post("/incidents")
    def close_many(
        request: Request,
        csrf: str = Form(""),
        incident_id: Annotated[list[str] | None, Form()] = None,
        verdict: str = Form(...),
        reason: str = Form(""),
        tune: str = Form(""),
        back: str = Form("/incidents"),
    ) -> Response:
        """Close the incidents ticked on the list with one verdict (a detector's learning
        noise spans dozens); each is closed and audited on its own."""
        s = session_of(request)
        check_csrf(s, csrf)
        if not back.startswith("/incidents"):  # only ever back to the list
            back = "/incidents"
        return closed_or_refused(s, incident_id or [], verdict, reason, tune, back)

    def closed_or_refused(
        s: Session, ids: list[str], verdict: str, reason: str, tune: str, back: str
    ) -> Response:
        """Back where the person was, or the page saying what was not closed and why."""
        try:
            closings = close_incidents(ids, verdict_of(verdict), reason, s.principal, bool(tune))
        except REFUSED as exc:
            return refused(s, exc, back)
        if closings.refused:
            said = "; ".join(f"{i}: {exc}" for i, exc in closings.refused.items())
            shown = f"{len(closings.done)} closed; not closed: {said}"
            status = max(refusal_status(exc) for exc in closings.refused.values())
            return page("error.html", status=status, s=s, message=shown, back=back)
        return RedirectResponse(back, status_code=303)

    @router.post("/incidents/{incident_id}/reopen")
    def reopening(
        request: Request, incident_id: str, csrf: str = Form(""), reason: str = Form("")
    ) -> Response:
        s = session_of(request)
        check_csrf(s, csrf)
        back = f"/incidents/{incident_id}"
        try:
            reopen_incident(incident_id, reason, s.principal)
        except REFUSED as exc:
            return refused(s, exc, back)
        return RedirectResponse(back, status_code=303)

    @router.get("/rejected")
    def rejected_page(
        request: Request,
        page_no: int = Query(default=1, ge=1, le=10_000, alias="page"),
    ) -> HTMLResponse:
        """Documents that became no alert, newest first: a webhook's or a sweep's
        rejections have no run summary to show them."""
        s = session_of(request)
        start = (page_no - 1) * REJECTED_PER_PAGE
        total, rejected = store.recent_dead_letters(REJECTED_PER_PAGE, start)
        return page(
            "rejected.html",
            s=s,
            rejected=rejected,
            total=total,
            page_no=page_no,
            pages=max(1, math.ceil(total / REJECTED_PER_PAGE)),
        )

    @router.get("/tunings")
    def tunings_page(request: Request) -> HTMLResponse:
        s = session_of(request)
        return page(
            "tunings.html",
            s=s,
            tunings=store.tunings(datetime.now(UTC)),
            may_tune=s.principal.role in TUNING_ROLES,
        )

    @router.post("/tunings/revoke")
    def revoke_tuning(
        request: Request,
        csrf: str = Form(""),
        rule_id: str = Form(...),
        host: str = Form(...),
        reason: str = Form(""),
    ) -> Response:
        s = session_of(request)
        check_csrf(s, csrf)
        try:
            revoke(store, rule_id, host, reason, s.principal.name, role=s.principal.role)
        except REFUSED as exc:
            return refused(s, exc, "/tunings")
        return RedirectResponse("/tunings", status_code=303)

    def refused(s: Session, exc: Exception, back: str) -> HTMLResponse:
        return page("error.html", status=refusal_status(exc), s=s, message=str(exc), back=back)

    def decided(s: Session, fn: Any, back: str) -> Response:
        try:
            fn()
        except (ApprovalError, NotFound, Forbidden) as exc:
            return page("error.html", status=409, s=s, message=str(exc), back=back)
        return RedirectResponse(back, status_code=303)

    @router.post("/proposals/{proposal_id}/approve")
    def approve(
        request: Request,
        proposal_id: str,
        csrf: str = Form(""),
        args_hash: str = Form(...),
        comment: str = Form(""),
    ) -> Response:
        s = session_of(request)
        check_csrf(s, csrf)
        back = _back(store.get_proposal(proposal_id))
        return decided(
            s,
            lambda: queue.approve(
                proposal_id, s.principal.name, seen_hash=args_hash, comment=comment
            ),
            back,
        )

    @router.post("/proposals/{proposal_id}/reject")
    def reject(
        request: Request, proposal_id: str, csrf: str = Form(""), reason: str = Form(...)
    ) -> Response:
        s = session_of(request)
        check_csrf(s, csrf)
        back = _back(store.get_proposal(proposal_id))
        return decided(s, lambda: queue.reject(proposal_id, s.principal.name, reason=reason), back)

    @router.post("/proposals/{proposal_id}/settle")
    def settle(
        request: Request,
        proposal_id: str,
        csrf: str = Form(""),
        ran: Literal["true", "false"] = Form(...),
        reason: str = Form(...),
    ) -> Response:
        """A run of unknown outcome, settled from what the target shows."""
        s = session_of(request)
        check_csrf(s, csrf)
        back = _back(store.get_proposal(proposal_id))
        done = ran == "true"
        return decided(
            s, lambda: queue.settle(proposal_id, s.principal.name, ran=done, reason=reason), back
        )

    @router.post("/proposals/{proposal_id}/edit")
    async def edit(request: Request, proposal_id: str) -> Response:
        """Edited arguments become a new proposal that needs fresh approvals (from others)."""
        s = session_of(request)
        form = await request.form()
        check_csrf(s, str(form.get("csrf", "")))
        p = store.get_proposal(proposal_id)
        if p is None:
            raise HTTPException(404, "no such proposal")
        current = p

        def apply() -> ActionProposal:
            # Only the editable arguments are read from the form; the others are shown as text.
            editable = _editable(current.action)
            new_args = {
                k: typed_like(v, str(form[f"arg_{k}"]))
                if k in editable and f"arg_{k}" in form
                else v
                for k, v in current.args.items()
            }
            return queue.edit(proposal_id, s.principal.name, new_args)

        return decided(s, apply, _back(p))

    return router


def _back(p: ActionProposal | None) -> str:
    return f"/incidents/{p.incident_id}" if p else "/"


def _editable(action: str) -> frozenset[str]:
    """The arguments of this action an edit may change (none for an unknown action)."""
    spec = ACTIONS.get(action)
    return spec.editable if spec is not None else frozenset()
