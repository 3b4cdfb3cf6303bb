"""Wiring from Settings to the pieces a triage run needs, shared by the CLI and the worker."""

from __future__ import annotations

from datetime import timedelta

from agent.analyst import Analyst, OfflineAnalyst
from agent.correlate import CorrelationConfig
from agent.graph import Progress, TriageContext, TriageState, run_triage
from agent.playbooks import load_playbooks
from agent.settings import Settings
from agent.store import Store


def make_analyst(settings: Settings) -> Analyst:
    """The offline analyst unless Mistral is configured (see connectors/mistral.py)."""
    return OfflineAnalyst()


def triage_context(
    settings: Settings, store: Store | None, progress: Progress | None = None
) -> TriageContext:
    ctx = TriageContext(
        store=store,
        analyst=make_analyst(settings),
        playbooks=load_playbooks(settings.playbooks_dir),
        correlation=CorrelationConfig(
            repeat_gap=settings.repeat_gap_seconds,
            link_window=settings.link_window_seconds,
            hub_min_hosts=settings.hub_min_hosts,
        ),
        requester=settings.requester,
        approval_ttl=timedelta(seconds=settings.approval_ttl_seconds),
        max_doc_bytes=settings.max_doc_bytes,
    )
    if progress is not None:
        ctx.progress = progress
    return ctx


def triage_files(
    settings: Settings, store: Store, paths: list[str], progress: Progress | None = None
) -> TriageState:
    return run_triage(paths, triage_context(settings, store, progress))
