"""A burst of webhooks asks for triage once per interval, and once more after the last batch."""

from __future__ import annotations

import asyncio

from agent.service import TriageRequests


def test_a_burst_asks_once_then_once_more_after_the_last_batch() -> None:
    asks: list[float] = []

    async def burst() -> None:
        loop = asyncio.get_running_loop()
        requests = TriageRequests(lambda: asks.append(loop.time()), interval=0.2)
        start = loop.time()
        for _ in range(50):  # 50 batches stored within ~0.05 s
            requests.after_intake()
            await asyncio.sleep(0.001)
        assert len(asks) == 1  # the first batch asked at once; the others coalesced
        await asyncio.sleep(0.3)
        assert len(asks) == 2  # the trailing ask covers batches stored after the first
        assert 0.15 <= asks[1] - start <= 0.35
        await asyncio.sleep(0.25)
        requests.after_intake()  # a quiet spell later: asks at once again
        assert len(asks) == 3

    asyncio.run(burst())


def test_an_embedded_runner_that_failed_starts_again_with_the_next_webhook() -> None:
    """Embedded mode: a run that raised (the store away a moment) left the runner marked as
    running, so no later webhook started one: its batches waited in the store until restart."""
    import pytest
    from starlette.background import BackgroundTasks

    from agent.api.app import embedded_triage
    from agent.errors import Transient

    runs: list[str] = []

    def run() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise Transient("store unavailable")

    schedule = embedded_triage(run)
    for attempt in range(2):
        background = BackgroundTasks()
        schedule(background)
        assert len(background.tasks) == 1, attempt  # a runner is started each time
        if attempt == 0:
            with pytest.raises(Transient):
                background.tasks[0].func()
        else:
            background.tasks[0].func()
    assert runs == ["run", "run"]
