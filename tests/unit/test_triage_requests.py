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


def test_an_embedded_run_that_failed_is_tried_again() -> None:
    """Embedded mode: a run that raised (the store away a moment) left the runner marked as
    running, so no later webhook started one: its batches waited in the store until restart.
    It is tried again after a while, and a webhook meanwhile is triaged by that retry."""
    import threading
    import time

    import pytest
    from starlette.background import BackgroundTasks

    from agent.api.app import embedded_triage
    from agent.errors import Transient

    runs: list[str] = []
    done = threading.Event()

    def run() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise Transient("store unavailable")
        done.set()

    schedule = embedded_triage(run, retry_seconds=0.2)
    background = BackgroundTasks()
    schedule(background)
    with pytest.raises(Transient):
        background.tasks[0].func()
    meanwhile = BackgroundTasks()
    schedule(meanwhile)  # a webhook while the retry waits: no second runner
    assert meanwhile.tasks == []
    assert done.wait(5) and runs == ["run", "run"]
    time.sleep(0.3)
    assert runs == ["run", "run"]  # one retry did both: nothing left to triage
