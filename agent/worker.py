"""Celery app and thin tasks that take ids; the logic lives in plain functions elsewhere.

Embedded mode (no VIGIE_BROKER_URL) runs tasks eagerly in-process: the same task code that
real workers run. Expiry and reaping are periodic sweeps (beat), never far-future ETAs, which a
Redis broker would redeliver twice past its visibility timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import kombu.exceptions
from celery import Celery, shared_task

from agent.errors import Transient
from agent.execution import (
    execute_proposal,
    expire_pending,
    notify_execution,
    reap_stale,
    stranded,
)
from agent.settings import Settings, load_settings
from agent.store import Store, open_store
from agent.store.redis import renewed
from connectors.actions.http import HttpActionRunner

# Two queues, so an approved action never waits behind a long triage or sweep: a worker can
# serve both (`vigie worker`, the default) or one (`vigie worker --queues actions`).
ACTIONS_QUEUE, TRIAGE_QUEUE = "actions", "triage"
TASK_ROUTES = {
    "vigie.execute_proposal": {"queue": ACTIONS_QUEUE},
    "vigie.notify": {"queue": ACTIONS_QUEUE},
    "vigie.outbound": {"queue": ACTIONS_QUEUE},
    "vigie.expire_approvals": {"queue": ACTIONS_QUEUE},
    "vigie.reap_executions": {"queue": ACTIONS_QUEUE},
    "vigie.triage_files": {"queue": TRIAGE_QUEUE},
    "vigie.triage_intake": {"queue": TRIAGE_QUEUE},
    "vigie.sweep": {"queue": TRIAGE_QUEUE},
}

_apps: list[Celery] = []  # the app this process configured last; thread-independent


def create_app(settings: Settings) -> Celery:
    app = Celery("vigie", set_as_current=True)
    _apps[:] = [app]
    if settings.embedded:
        app.conf.update(
            broker_url="memory://",
            task_always_eager=True,
            task_eager_propagates=True,
            result_backend=None,
        )
    else:
        app.conf.update(
            broker_url=settings.broker_url,
            task_acks_late=True,  # redelivered if a worker dies; tasks are idempotent by state
            task_reject_on_worker_lost=False,
            worker_prefetch_multiplier=1,
            broker_transport_options={
                "visibility_timeout": settings.broker_visibility_timeout,
                # Sweep for tasks of dead workers every few seconds rather than kombu's
                # default ~100 s (interval x throttle); a redelivered execution is a no-op.
                "unacked_restore_interval": max(
                    1, min(10, settings.broker_visibility_timeout // 2)
                ),
                "unacked_restore_throttle": 1,
            },
            broker_connection_retry_on_startup=True,
            task_ignore_result=True,
            task_routes=TASK_ROUTES,
            beat_schedule={
                "expire-approvals": {"task": "vigie.expire_approvals", "schedule": 60.0},
                "reap-stale-executions": {"task": "vigie.reap_executions", "schedule": 60.0},
                # A safety net: webhook batches stored while no triage could be queued.
                "triage-intake": {
                    "task": "vigie.triage_intake",
                    "schedule": 30.0,
                    "args": ["periodic"],
                    "options": {"expires": 30.0},
                },
                **(
                    {
                        "sweep": {
                            "task": "vigie.sweep",
                            "schedule": settings.sweep_interval,
                            # a sweep reads up to the newest alert: one not started before the
                            # next is due is redundant, not lost work
                            "options": {"expires": settings.sweep_interval},
                        }
                    }
                    if settings.es_url
                    else {}
                ),
            },
        )
    return app


@cache
def _services() -> tuple[Settings, Store, HttpActionRunner]:
    """Built on first use in each worker process, never at import."""
    settings = load_settings()
    return settings, open_store(settings.store_url), HttpActionRunner(settings.targets)


def use_services(settings: Settings, store: Store, runner: HttpActionRunner) -> None:
    """Embedded mode: tasks run in this process and must share its store."""
    _services.cache_clear()
    _override.update(settings=settings, store=store, runner=runner)


_override: dict[str, Any] = {}


def services() -> tuple[Settings, Store, HttpActionRunner]:
    if _override:
        return _override["settings"], _override["store"], _override["runner"]
    return _services()


@shared_task(name="vigie.execute_proposal", acks_late=True)
def execute_proposal_task(proposal_id: str) -> str | None:
    _, store, runner = services()
    p, ran = execute_proposal(store, runner, proposal_id)
    if ran and p is not None:
        _dispatch(notify_task, proposal_id)  # only the run that acted tells the channel
        emit(
            "action.executed",
            {
                "proposal_id": p.proposal_id,
                "incident_id": p.incident_id,
                "action": p.action,
                "args": p.args,
                "state": p.state.value,
            },
        )
    return None if p is None else p.state.value


@shared_task(name="vigie.outbound", acks_late=True)
def outbound_task(evt: dict[str, Any]) -> list[str]:
    """Deliver one event to every outbound webhook; failures are audited, not dropped."""
    from connectors.outbound import Endpoint, OutboundWebhooks

    settings, store, _ = services()
    endpoints = [Endpoint(e.url, e.secret.get_secret_value()) for e in settings.outbound_webhooks]
    failed = OutboundWebhooks(endpoints).deliver(evt)
    if failed:
        store.append_audit(
            "outbound", "outbound.failed", evt["id"], {"type": evt["type"], "urls": failed}
        )
    return failed


def emit(kind: str, data: dict[str, Any]) -> None:
    """Queue an outbound event when outbound webhooks are configured. What it tells is stored
    already: an unreachable broker does not undo it, and the audit says what was not sent (on
    the proposal, else the incident, it is about)."""
    from connectors.outbound import event

    settings, store, _ = services()
    if not settings.outbound_webhooks:
        return
    evt = event(kind, data)
    try:
        _dispatch(outbound_task, evt)
    except Transient as exc:
        subject = data.get("proposal_id") or data.get("incident_id") or evt["id"]
        store.append_audit(
            "outbound",
            "outbound.unqueued",
            subject,
            {"type": kind, "id": evt["id"], "why": str(exc)},
        )


@shared_task(name="vigie.notify", acks_late=True)
def notify_task(proposal_id: str) -> str:
    """Tell the on-call channel (target `chat`) how an execution ended."""
    settings, store, _ = services()
    p = store.get_proposal(proposal_id)
    if p is None:
        return "missing"
    return notify_execution(store, settings.targets.get("chat"), p)


@shared_task(name="vigie.triage_files", acks_late=True)
def triage_files_task(paths: list[str]) -> dict[str, int]:
    """A triage run on a worker; re-running it is harmless (ids are deterministic)."""
    from agent.service import triage_files

    settings, store, _ = services()
    state = triage_files(settings, store, paths)
    return {
        "alerts": len(state.get("alerts", [])),
        "incidents": len(state.get("incidents", [])),
        "proposals": len(state.get("proposals", [])),
        "dead_letters": len(state.get("dead_letters", [])),
    }


#: How long an approved proposal may wait for its run to be queued before it is queued again.
STRANDED_AFTER = timedelta(seconds=60)


@shared_task(name="vigie.expire_approvals")
def expire_approvals_task() -> list[str]:
    """Expire what waited too long, and queue again the runs of approved proposals that were
    never queued (see `stranded`)."""
    _, store, _ = services()
    expired = expire_pending(store)
    for proposal_id in stranded(store, datetime.now(UTC), STRANDED_AFTER):
        _dispatch(execute_proposal_task, proposal_id)
    return expired


@shared_task(name="vigie.reap_executions")
def reap_executions_task() -> list[str]:
    """Executions that never reported back become outcome_unknown, and a human is told."""
    settings, store, _ = services()
    reaped = reap_stale(store, timedelta(seconds=settings.execution_lease_seconds))
    for proposal_id in reaped:
        _dispatch(notify_task, proposal_id)
    return reaped


@cache
def broker_redis(url: str) -> Any:
    """One client (and connection pool) per process for the broker's Redis: flags and locks."""
    import redis

    return redis.Redis.from_url(url)


# Set by the API when it queues a triage run and cleared when the run starts: while a run is
# queued, further webhooks queue nothing, so a burst of requests becomes one run, not a task each.
TRIAGE_QUEUED = "vigie:triage-queued"


def request_triage(settings: Settings, send: Any) -> None:
    """Queue one intake triage unless one is already waiting. The flag expires, so a lost task
    cannot block triage for long (beat also runs one every 30 s)."""

    if broker_redis(settings.broker_url or "").set(TRIAGE_QUEUED, 1, nx=True, ex=60):
        send()


@shared_task(name="vigie.triage_intake", acks_late=True)
def triage_intake_task(reason: str) -> dict[str, int]:
    """Triage every stored webhook batch in one run (`reason`: why it was queued)."""

    from agent.intake import process_pending
    from agent.service import triage_context

    settings, store, _ = services()
    broker_redis(settings.broker_url or "").delete(TRIAGE_QUEUED)
    return process_pending(store, triage_context(settings, store))


@shared_task(name="vigie.sweep", acks_late=True)
def sweep_task() -> dict[str, int] | str:
    """One sweep, never two at once: a Redis lock whose expiry also ends a stale, dead run."""

    from agent.service import make_backend, sweep_config, triage_context
    from agent.sweep import sweep

    settings, store, _ = services()
    lifetime = max(600.0, settings.sweep_interval * 10)
    lock = broker_redis(settings.broker_url or "").lock(
        "vigie:sweep-lock", timeout=lifetime, blocking=False, thread_local=False
    )
    if not lock.acquire():
        return "skipped: a sweep is running"
    with renewed(lock, lifetime):  # a sweep through a backlog outlasts it
        backend = make_backend(settings)
        r = sweep(backend, store, triage_context(settings, store), sweep_config(settings))
        return {
            "pages": r.pages,
            "alerts_read": r.alerts_read,
            "alerts_new": r.alerts_new,
            "incidents_refolded": r.incidents_refolded,
        }


def enqueue_execution(proposal_id: str) -> None:
    """What the approval queue calls when a proposal becomes approved: only the id travels.

    Embedded: the task runs here and now (`apply`). With a broker: sent by name through the
    configured app, whichever thread calls (Celery's "current app" is thread-local)."""
    _dispatch(execute_proposal_task, proposal_id)


def _dispatch(task: Any, *args: Any) -> None:
    """Raises `Transient` when the broker cannot be reached (after Celery's publish retries)."""
    app = _apps[0] if _apps else None
    if app is None or app.conf.task_always_eager:
        task.apply(args=list(args))
        return
    try:
        app.send_task(task.name, args=list(args))
    except kombu.exceptions.OperationalError as exc:
        raise Transient(f"broker unreachable: {exc}") from exc
