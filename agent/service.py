"""Wiring from Settings to the pieces a triage run needs, shared by the CLI and the worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from agent.analyst import Analyst, OfflineAnalyst
from agent.correlate import CorrelationConfig
from agent.errors import ConfigError
from agent.graph import Progress, TriageContext, TriageState, run_triage
from agent.normalize import read_account, read_host
from agent.parallel_read import ParallelRead, worker_count
from agent.playbooks import load_playbooks
from agent.prioritise import PriorityConfig, Watchlist
from agent.settings import Settings, load_settings
from agent.store import Store
from agent.sweep import SweepConfig
from connectors.elasticsearch import SearchBackend

log = logging.getLogger("vigie.service")


def make_analyst(settings: Settings, store: Store | None) -> Analyst:
    """A fresh analyst per run (pseudonym tokens and the token budget are per run)."""
    if settings.analyst != "mistral" or settings.mistral_api_key is None:
        return OfflineAnalyst()
    from agent.llm_analyst import Budget, MistralAnalyst, mistral_token_counter
    from connectors.mistral import MistralChat

    chat = MistralChat(
        api_key=settings.mistral_api_key.get_secret_value(),
        model=settings.mistral_model,
        server_url=settings.mistral_url,
        timeout_s=settings.llm_timeout_seconds,
        max_concurrency=settings.llm_max_concurrency,
        max_retry_s=settings.llm_max_retry_seconds,
    )

    def record(subject: str, data: dict[str, Any]) -> None:
        if store is not None:
            store.append_audit("mistral-analyst", "llm.request", subject, data)

    return MistralAnalyst(
        chat,
        pseudonymize=settings.pseudonymize,
        min_priority=settings.llm_min_priority,
        budget=Budget(settings.llm_tokens_per_incident, settings.llm_tokens_per_run),
        count_tokens=mistral_token_counter(),
        record=record,
        audit_full_payload=settings.llm_audit_payload == "full",
        max_tool_steps=settings.llm_max_tool_steps,
    )


def triage_context(
    settings: Settings, store: Store | None, progress: Progress | None = None
) -> TriageContext:
    ctx = TriageContext(
        store=store,
        analyst=make_analyst(settings, store),
        playbooks=load_playbooks(settings.playbooks_dir),
        correlation=CorrelationConfig(
            repeat_gap=settings.repeat_gap_seconds,
            link_window=settings.link_window_seconds,
            hub_min_hosts=settings.hub_min_hosts,
        ),
        priority=PriorityConfig(
            critical_assets=Watchlist.parse(settings.critical_assets, fold=read_host),
            critical_identities=Watchlist.parse(settings.critical_identities, fold=read_account),
        ),
        requester=settings.requester,
        approval_ttl=timedelta(seconds=settings.approval_ttl_seconds),
        max_doc_bytes=settings.max_doc_bytes,
        read_workers=worker_count(settings.read_workers),
        quiet_period=timedelta(seconds=settings.incident_quiet_seconds),
    )
    if progress is not None:
        ctx.progress = progress
    if store is not None:  # every process using the store takes its turn, broker or not
        ctx.exclusive = store.one_run_at_a_time
    if settings.outbound_webhooks:
        from agent.worker import emit

        ctx.on_incident = lambda kind, inc: emit(
            kind,
            {
                "incident_id": inc.incident_id,
                "priority": inc.priority,
                "title": inc.title,
                "alert_count": len(inc.alert_ids),
                "proposal_ids": inc.proposal_ids,
                "why": [f.model_dump() for f in inc.leading_factors()],
            },
        )
    return ctx


def triage_files(
    settings: Settings,
    store: Store,
    paths: list[str],
    progress: Progress | None = None,
    started: dict[str, ParallelRead] | None = None,
    names: dict[str, str] | None = None,
) -> TriageState:
    """`started`: files whose reading the caller began (see `agent.parallel_read.start_first`);
    `names`: what rejections call a file by, when not its path (a copy of standard input)."""
    ctx = triage_context(settings, store, progress)
    ctx.started = started or {}
    ctx.names = names or {}
    return run_triage(paths, ctx)


def make_backend(settings: Settings) -> SearchBackend:
    """The search client named by VIGIE_ES_BACKEND (Wazuh's indexer is OpenSearch)."""
    from connectors.elasticsearch import ElasticsearchBackend, OpenSearchBackend

    if not settings.es_url:
        raise ConfigError("VIGIE_ES_URL is not set")
    password = settings.es_password.get_secret_value() if settings.es_password else None
    if settings.es_backend == "opensearch":
        return OpenSearchBackend(
            settings.es_url,
            username=settings.es_username,
            password=password,
            ca_certs=settings.es_ca_certs,
            point_in_time=settings.es_point_in_time,
        )
    return ElasticsearchBackend(
        settings.es_url,
        api_key=settings.es_api_key.get_secret_value() if settings.es_api_key else None,
        username=settings.es_username,
        password=password,
        ca_certs=settings.es_ca_certs,
        point_in_time=settings.es_point_in_time,
    )


def sweep_config(settings: Settings) -> SweepConfig:
    return SweepConfig(
        alerts_index=settings.es_alerts_index,
        incidents_index=settings.es_incidents_index,
        audit_index=settings.es_audit_index,
        tiebreaker=settings.es_tiebreaker,
        page_size=settings.es_page_size,
        only_open=settings.es_only_open,
        lookback_seconds=settings.es_lookback_seconds,
        extra_filter=settings.es_extra_filter,
        kibana_writeback=settings.es_backend == "elasticsearch",
        refold=settings.es_backend == "elasticsearch",  # Kibana's suppression: not Wazuh's
    )


class TriageRequests:
    """Asks for a triage run at most once per `interval` per API process, and always once
    more within `interval` after the last batch stored: a burst of webhooks costs a Redis
    round trip per interval, not per request, and no batch waits for the periodic run."""

    def __init__(self, ask: Callable[[], None], interval: float = 0.25) -> None:
        self._ask, self._interval = ask, interval
        self._last = -interval
        self._trailing = False

    def after_intake(self, background: Any = None) -> None:
        """Called on the event loop after each stored batch."""
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self._fire()
        elif not self._trailing:
            self._trailing = True
            asyncio.get_running_loop().call_later(wait, self._trail)

    def _trail(self) -> None:
        self._trailing = False
        self._fire()

    def _fire(self) -> None:
        self._last = time.monotonic()
        self._ask()


def api_from_environment() -> Any:
    """`vigie serve`'s app factory, called in each API process: settings from the environment,
    JSON logs."""
    from agent.api.app import JsonFormatter
    from agent.store import open_store

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("vigie").handlers = [handler]
    logging.getLogger("vigie").setLevel(logging.INFO)
    settings = load_settings()
    return make_api(settings, open_store(settings.store_url))


def make_api(settings: Settings, store: Store) -> Any:
    """The FastAPI app for `vigie serve`, wired from settings (embedded or with workers)."""
    from agent import announcements
    from agent.api.app import approval_queue, create_app, embedded_triage
    from agent.api.auth import ApiTokens, WebhookAuth
    from agent.intake import process_pending
    from agent.worker import create_app as create_celery
    from agent.worker import enqueue_execution, request_triage, use_services
    from connectors.actions.http import HttpActionRunner

    celery = create_celery(settings)
    if settings.embedded:
        use_services(settings, store, HttpActionRunner(settings.targets))
        ctx = triage_context(settings, store)
        schedule = embedded_triage(lambda: process_pending(store, ctx))
    else:

        def ask() -> None:
            """After the 202 is earned: a failure here loses nothing (beat triages the batch)."""
            try:
                request_triage(
                    settings, lambda: celery.send_task("vigie.triage_intake", args=["webhook"])
                )
            except Exception as exc:
                log.warning("could not queue triage (beat will): %s", type(exc).__name__)

        coalesce = TriageRequests(ask)
        schedule = coalesce.after_intake

    tokens = ApiTokens(settings.api_tokens.get_secret_value())
    queue = approval_queue(
        store,
        enqueue_execution,
        settings.approval_ttl_seconds,
        tokens.roles(),
        on_decision=announcements.decided,
    )
    webhooks = WebhookAuth(
        settings.webhook_tokens.get_secret_value(), settings.webhook_secrets.get_secret_value()
    )
    return create_app(
        store,
        queue,
        tokens,
        webhooks,
        schedule_triage=schedule,
        max_body=settings.webhook_max_bytes,
        tuning_for=timedelta(days=settings.tuning_days),
        on_closed=announcements.closed,
        on_reopened=announcements.reopened,
    )
