"""Triage throughput at a day's scale: the AIT-ADS scenario replayed until N alerts (default
634,000, the size of the largest AIT-ADS scenario), through `vigie triage` end to end.

    .venv/bin/python benchmarks/scale_bench.py [N] [unique]

Each replay of the 45,544 real alerts is shifted four days later and given fresh ids, so the
file holds N distinct alerts with the real mix of rules, hosts and bursts. Prints the time from
file to incidents JSONL, alerts/s, the stdlib JSON parse of the same file (the floor), and the
peak RSS of the triage process and its reader workers.

`unique` also numbers every alert's message, as a feed that logs a counter or a time in its
messages does: no document then repeats another but for its id and time, so this measures the
run without the repeats memo's help (`agent/repeats.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

from ait_ads_bench import DEFAULT, SCORER, scenario_alerts, stdlib_parse_seconds, timed_triage

SCENARIO = DEFAULT[0]


def replayed(alerts: Path, n: int, out: Path, unique: bool = False) -> None:
    docs = [json.loads(line) for line in alerts.open()]
    with out.open("w") as fh:
        for k in range(n):
            doc = docs[k % len(docs)]
            shift = dt.timedelta(days=4 * (k // len(docs)))
            ts = dt.datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00")) + shift
            copy = {
                **doc,
                "@timestamp": ts.isoformat().replace("+00:00", "Z"),
                "event": {**doc["event"], "id": f"scale-{k:08d}"},
            }
            if unique:
                copy["message"] = f"{doc['message']} (#{k})"
            fh.write(json.dumps(copy, separators=(",", ":")) + "\n")


def main(n: int, unique: bool) -> None:
    if not SCORER.is_file():
        sys.exit(f"scorer not found at {SCORER}: the shared/ folder must sit beside the repo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, alerts = scenario_alerts(SCENARIO, work)
        big = work / "big.ndjson"
        replayed(alerts, n, big, unique)
        os.sync()  # the kernel writing this file back must not run during the timed triage
        floor = stdlib_parse_seconds(big)
        seconds, peak_mb, out = timed_triage(big, work)
        incidents = [json.loads(line) for line in out.open()]
        placed = sum(len(i["alert_ids"]) for i in incidents)
        size_mb = big.stat().st_size / 1e6
        kind = " (every message unique)" if unique else ""
        print(
            f"{n:,} alerts{kind} ({size_mb:,.0f} MB) -> {len(incidents):,} incidents holding "
            f"{placed:,} alerts in {seconds:.1f}s end to end = {n / seconds:,.0f} alerts/s; "
            f"stdlib JSON parse {floor:.1f}s (ratio {seconds / floor:.1f}x); "
            f"peak RSS {peak_mb:,.0f} MB"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 634_000, "unique" in sys.argv[2:])
