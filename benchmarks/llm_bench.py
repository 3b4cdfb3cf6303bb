"""Token use and privacy of the Mistral analyst, recorded against the local stand-in server.

    .venv/bin/python benchmarks/llm_bench.py [alerts.ndjson]

Default input: the AIT-ADS development scenario converted by ../shared/bench/ait_ads.py. Runs a
full triage with the Mistral analyst (real SDK, stand-in server answering with a valid,
grounded assessment), then reports tokens sent per incident and per 10,000 alerts (counted
with Mistral's tokenizer before sending), whether the budgets held, and how many raw entity
values (hosts, users, IPs) appear in any outbound payload.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ait_ads_bench import batches_of  # this script's directory is on the path

from agent.graph import TriageContext, run_triage
from agent.llm_analyst import Budget, MistralAnalyst, mistral_token_counter
from agent.playbooks import load_playbooks
from agent.settings import REPO_ROOT
from agent.store import open_store
from connectors.mistral import MistralChat
from tests.fakes.mistral_standin import MistralStandIn, message

SHARED = REPO_ROOT.parent / "shared"
PER_INCIDENT, PER_RUN = 4000, 400_000


def grounded_model(body: dict) -> tuple[int, object, float]:
    text = body["messages"][-1]["content"]
    ids = re.findall(r'"alert_id": "([^"]+)"', text)[:2] or ["none"]
    answer = {
        "verdict": "needs_investigation",
        "confidence": 0.5,
        "severity": "medium",
        "title": "Assessment",
        "summary": "See claims.",
        "tactics": [],
        "techniques": [],
        "claims": [{"text": "observed", "alert_ids": ids}],
        "timeline": [],
    }
    return 200, message(json.dumps(answer)), 0


def main(path: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            csv = Path(tmp) / "rm.csv"
            subprocess.run(
                f"zcat {SHARED}/data/ait-ads/russellmitchell.csv.gz > {csv}", shell=True, check=True
            )
            path = str(Path(tmp) / "alerts.ndjson")
            with open(path, "w") as fh:
                subprocess.run(
                    [sys.executable, str(SHARED / "bench/ait_ads.py"), "alerts", str(csv)],
                    stdout=fh,
                    check=True,
                )
        server = MistralStandIn(grounded_model)
        count = mistral_token_counter()
        sizes: list[int] = []
        analyst = MistralAnalyst(
            MistralChat(api_key="bench", model="mistral-small-latest", server_url=server.url),
            budget=Budget(PER_INCIDENT, PER_RUN),
            count_tokens=count,
            max_tool_steps=0,
            record=lambda subject, data: sizes.append(data["bytes"]),
        )
        start = time.perf_counter()
        state = run_triage(
            [path],
            TriageContext(
                store=None, analyst=analyst, playbooks=load_playbooks(REPO_ROOT / "playbooks")
            ),
        )
        seconds = time.perf_counter() - start
        server.close()
        alerts = state["alerts"]
        leaks, values = leaked(server.requests, alerts)
        per_incident = [
            count(r["body"]["messages"][0]["content"] + r["body"]["messages"][1]["content"])
            for r in server.requests
        ]
        incidents = state["incidents"]
        sent = sum(1 for i in incidents if i.assessment and i.assessment.analyst == "mistral")
        print(
            f"{len(alerts):,} alerts, {len(incidents)} incidents, {sent} assessed by the model "
            f"({len(server.requests)} calls) in {seconds:.1f}s"
        )
        used = analyst.budget.used
        mean = used / max(1, len(per_incident))
        per_10k = used * 10_000 / len(alerts)
        verdict = "respected" if used <= PER_RUN else "EXCEEDED"
        print(
            f"tokens sent: {used:,} in all; per incident mean {mean:,.0f}, "
            f"max {max(per_incident, default=0):,} (budget {PER_INCIDENT:,}); "
            f"per 10,000 alerts {per_10k:,.0f} (run budget {PER_RUN:,}: {verdict})"
        )
        print(f"payload bytes per call: mean {sum(sizes) / max(1, len(sizes)):,.0f}")
        print(f"raw entity values in outbound payloads: {leaks} (of {values} distinct values)")
        in_batches(path, Path(tmp), count)


def leaked(requests: list[dict], alerts: list) -> tuple[int, int]:
    """How many of the alerts' distinct host, user and IP values (3 characters or more) appear
    raw in any outbound payload, and of how many."""
    values = {v for a in alerts for v in (*a.entities.hosts, *a.entities.users, *a.entities.ips)}
    words = {v for v in values if len(v) >= 3}
    payloads = "\n".join(json.dumps(r["body"]["messages"]) for r in requests)
    found = [v for v in words if re.search(rf"(?<![\w.-]){re.escape(v)}(?![\w-])", payloads)]
    return len(found), len(words)


def in_batches(path: str, work: Path, count: Callable[[str], int], seconds: int = 3600) -> None:
    """The same alerts fed an hour at a time into one store, a fresh analyst each run (as each
    webhook batch or sweep gets): later batches extend incidents whose earlier hosts and users
    this run's alerts do not hold, and those must not leave raw either."""
    batches = batches_of(Path(path), seconds)
    playbooks = load_playbooks(REPO_ROOT / "playbooks")
    server = MistralStandIn(grounded_model)
    store = open_store(f"sqlite:///{work}/batches.db")
    batch_file = work / "batch.ndjson"
    alerts: list = []
    for batch in batches:
        batch_file.write_text(batch)
        analyst = MistralAnalyst(
            MistralChat(api_key="bench", model="mistral-small-latest", server_url=server.url),
            budget=Budget(PER_INCIDENT, PER_RUN),
            count_tokens=count,
            max_tool_steps=0,
        )
        ctx = TriageContext(store=store, analyst=analyst, playbooks=playbooks)
        state = run_triage([str(batch_file)], ctx)
        alerts += state["alerts"]
    store.close()
    server.close()
    found, of = leaked(server.requests, alerts)
    print(
        f"fed in hourly batches ({len(batches)} runs, {len(server.requests)} calls): raw entity "
        f"values in outbound payloads: {found} (of {of} distinct values)"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
