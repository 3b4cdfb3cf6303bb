"""Sweep benchmark: N alerts in a local search server (osmem-server), swept into incidents end
to end (read, triage, store, write-back), with memory sampled after every page.

    .venv/bin/python benchmarks/sweep_bench.py [N] [pit|no-pit] [PAGE] [again]
        # defaults: 100,000 alerts, from a point in time, pages of 1,000
        # again: as a Wazuh indexer is swept (every alert read, whatever its status; nothing
        # written back), then a second sweep with nothing new: what reading the last
        # VIGIE_ES_LOOKBACK_SECONDS again costs

osmem-server slows every write down about twentyfold once a point in time has been opened on the
index (and stays slow after it is closed), so `no-pit` (VIGIE_ES_POINT_IN_TIME=false) shows what
the sweep itself costs here; Elasticsearch has no such penalty.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osmem_server import OsmemServer

from agent.analyst import OfflineAnalyst
from agent.graph import TriageContext
from agent.store.sqlite import SqliteStore
from agent.sweep import SweepConfig, SweepResult, sweep
from connectors.elasticsearch import ElasticsearchBackend
from tests.fakes.es_compat import OsmemNode
from tests.integration.test_sweep import scenario, seed


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(n: int, point_in_time: bool, page_size: int, again: bool = False) -> None:
    server = OsmemServer.start(seed=[], freeze=False, japanese=False)
    try:
        es = ElasticsearchBackend(
            server.url, node_class=OsmemNode, timeout=120, point_in_time=point_in_time
        )
        t = time.perf_counter()
        seed(es, scenario(n))
        print(f"seeded {n:,} alerts in {time.perf_counter() - t:.1f}s")
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "v.db")
            ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
            samples: list[float] = []
            in_bulk = [0.0]
            bulk = es.bulk

            def timed_bulk(ops: list) -> None:  # type: ignore[type-arg]
                t0 = time.perf_counter()
                bulk(ops)
                in_bulk[0] += time.perf_counter() - t0

            es.bulk = timed_bulk  # type: ignore[method-assign]

            def progress(r: SweepResult) -> None:
                samples.append(rss_mb())

            cfg = SweepConfig(page_size=page_size)
            if again:  # the Wazuh indexer's settings: no workflow status to filter or write
                cfg = SweepConfig(page_size=page_size, only_open=False, kibana_writeback=False)
            start = time.perf_counter()
            r = sweep(es, store, ctx, cfg, progress=progress)
            seconds = time.perf_counter() - start
            if again:
                t0 = time.perf_counter()
                second = sweep(es, store, ctx, cfg)
                print(
                    f"a second sweep, nothing new: {second.alerts_read:,} alerts read again "
                    f"(the last {cfg.lookback_seconds} s before the checkpoint), "
                    f"{second.alerts_new:,} new, in {time.perf_counter() - t0:.1f}s"
                )
        quarter = max(1, len(samples) // 4)
        mode = "point in time" if point_in_time else "search_after only"
        print(
            f"[{mode}] swept {r.alerts_read:,} alerts ({r.pages} pages, "
            f"{r.incidents_touched:,} incident updates) in {seconds:.1f}s = "
            f"{r.alerts_read / seconds:,.0f} alerts/s end to end"
        )
        rest = seconds - in_bulk[0]
        print(
            f"  of which bulk write-back {in_bulk[0]:.1f}s (server side); read + triage + store "
            f"{rest:.1f}s = {r.alerts_read / rest:,.0f} alerts/s"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"RSS after page 1..{quarter}: {max(samples[:quarter]):,.0f} MB; last quarter: "
            f"{max(samples[-quarter:]):,.0f} MB; peak {peak:,.0f} MB"
        )
    finally:
        server.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        int(args[0]) if args else 100_000,
        point_in_time=(args[1] if len(args) > 1 else "pit") != "no-pit",
        page_size=int(args[2]) if len(args) > 2 else 1000,
        again=len(args) > 3 and args[3] == "again",
    )
