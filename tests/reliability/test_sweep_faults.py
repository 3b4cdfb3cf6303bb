"""A search server that turns slow, then stalls, in the middle of a sweep (osmem-server behind a
proxy that holds its replies): a slow server only slows the sweep; a stalled one ends it with a
typed error, the checkpoint after the last page that was stored, and a clean resume."""

from __future__ import annotations

import pytest

from agent.errors import Transient
from agent.graph import TriageContext
from agent.sweep import SweepConfig, SweepResult, sweep
from connectors.elasticsearch import ElasticsearchBackend
from tests.fakes.es_compat import OsmemNode
from tests.fakes.slow_proxy import SlowProxy
from tests.integration.test_sweep import ctx, placed, scenario, seed  # noqa: F401 (fixture)


def test_slow_then_stalled_search_server_mid_sweep(osmem_url: str, ctx: TriageContext) -> None:  # noqa: F811
    direct = ElasticsearchBackend(osmem_url, node_class=OsmemNode, retries=0)
    docs = scenario(600)
    seed(direct, docs)
    proxy = SlowProxy(int(osmem_url.rsplit(":", 1)[1].strip("/")))
    through = ElasticsearchBackend(proxy.url, node_class=OsmemNode, retries=1, timeout=1.5)
    cfg = SweepConfig(page_size=100)

    def turn_worse(r: SweepResult) -> None:
        if r.pages == 2:
            proxy.delay = 0.3  # slow: every reply late, still inside the client's timeout
        if r.pages == 4:
            proxy.delay = 5.0  # stalled: the next search outlives the timeout and its retry

    try:
        with pytest.raises(Transient, match="search server"):
            sweep(through, ctx.store, ctx, cfg, progress=turn_worse)
        checkpoint = ctx.store.get_checkpoint(cfg.checkpoint_name)
        assert checkpoint is not None and checkpoint[1] == "u000399"  # 4 pages, slow ones too
        assert len(placed(ctx.store)) == 400
        proxy.delay = 0.0
        r = sweep(through, ctx.store, ctx, cfg)  # the server recovers: resume
        assert (r.alerts_read, r.alerts_new) == (200, 200)
        assert placed(ctx.store) == sorted(d["kibana.alert.uuid"] for d in docs[:600])
    finally:
        proxy.close()
        through.close()
        direct.close()
