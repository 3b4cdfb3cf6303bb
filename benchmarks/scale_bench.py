"""Triage throughput at a day's scale: the AIT-ADS scenario replayed until N alerts (default
634,000, the size of the largest AIT-ADS scenario), through `vigie triage` end to end.

    .venv/bin/python benchmarks/scale_bench.py [N] [unique | flood]

Each replay of the 45,544 real alerts is shifted four days later and given fresh ids, so the
file holds N distinct alerts with the real mix of rules, hosts and bursts. Prints the time from
file to incidents JSONL, alerts/s, the stdlib JSON parse of the same file (the floor), and the
peak RSS of the triage process and its reader workers.

`unique` also numbers every alert's message, as a feed that logs a counter or a time in its
messages does: no document then repeats another but for its id and time, so this measures the
run without the repeats memo's help (`agent/repeats.py`).

`flood` takes the largest scenarios' shape instead: the recorded four days once, with the web
scan's dirb alerts repeated over 20 minutes until the file holds N alerts (the largest AIT-ADS
scenario is 428,239 dirb alerts in 20 minutes amid six days of noise). Its labels come along,
so the run is scored too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

from ait_ads_bench import (
    DEFAULT,
    SCORER,
    alerts_of,
    scenario_alerts,
    scenario_rows,
    scores_of,
    stdlib_parse_seconds,
    timed_triage,
    web_scan_flooded,
    write_rows,
)

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


def flooded(labelled: Path, n: int, work: Path) -> tuple[Path, Path]:
    """The scenario with its dirb alerts repeated until about N alerts: its CSV and alerts."""
    rows = scenario_rows(labelled)
    dirb = max(1, sum(1 for r in rows if r["time_label"] == "dirb"))  # none: nothing to repeat
    times = max(1, (n - len(rows)) // dirb + 1)
    flood_csv = write_rows(web_scan_flooded(rows, times), work / "flood.csv")
    return flood_csv, alerts_of(flood_csv, work / "flood.ndjson")


def main(n: int, unique: bool, flood: bool) -> None:
    if not SCORER.is_file():
        sys.exit(f"scorer not found at {SCORER}: the shared/ folder must sit beside the repo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labelled, alerts = scenario_alerts(SCENARIO, work)
        if flood:
            flood_csv, big = flooded(labelled, n, work)
            n = sum(1 for _ in big.open())
        else:
            big = work / "big.ndjson"
            replayed(alerts, n, big, unique)
        os.sync()  # the kernel writing this file back must not run during the timed triage
        floor = stdlib_parse_seconds(big)
        seconds, peak_mb, out = timed_triage(big, work)
        incidents = [json.loads(line) for line in out.open()]
        placed = sum(len(i["alert_ids"]) for i in incidents)
        size_mb = big.stat().st_size / 1e6
        kind = " (every message unique)" if unique else " (a dirb flood)" if flood else ""
        print(
            f"{n:,} alerts{kind} ({size_mb:,.0f} MB) -> {len(incidents):,} incidents holding "
            f"{placed:,} alerts in {seconds:.1f}s end to end = {n / seconds:,.0f} alerts/s; "
            f"stdlib JSON parse {floor:.1f}s (ratio {seconds / floor:.1f}x); "
            f"peak RSS {peak_mb:,.0f} MB"
        )
        if flood:
            run = scores_of(flood_csv, out)
            shown = ("incidents", "depth", "noise_read", "contamination", "lost", "duplicated")
            print("scored: " + ", ".join(f"{k} {run[k]}" for k in shown))


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 634_000,
        "unique" in sys.argv[2:],
        "flood" in sys.argv[2:],
    )
