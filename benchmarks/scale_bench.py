"""Triage throughput at a day's scale: the AIT-ADS scenario replayed until N alerts (default
634,000, the size of the largest AIT-ADS scenario), through `vigie triage` end to end.

    .venv/bin/python benchmarks/scale_bench.py [N]

Each replay of the 45,544 real alerts is shifted four days later and given fresh ids, so the
file holds N distinct alerts with the real mix of rules, hosts and bursts. Prints the time from
file to incidents JSONL, alerts/s, the stdlib JSON parse of the same file (the floor), and the
peak RSS of the triage process and its reader workers.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SCORER = SHARED / "bench" / "ait_ads.py"
SCENARIO = SHARED / "data" / "ait-ads" / "russellmitchell.csv.gz"


def replayed(alerts: Path, n: int, out: Path) -> None:
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
            fh.write(json.dumps(copy, separators=(",", ":")) + "\n")


def main(n: int) -> None:
    if not SCORER.is_file():
        sys.exit(f"scorer not found at {SCORER}: the shared/ folder must sit beside the repo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = work / "scenario.csv"
        with gzip.open(SCENARIO, "rb") as src, csv.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        alerts = work / "alerts.ndjson"
        with alerts.open("w") as fh:
            subprocess.run([sys.executable, str(SCORER), "alerts", str(csv)], stdout=fh, check=True)
        big = work / "big.ndjson"
        replayed(alerts, n, big)
        start = time.perf_counter()
        with big.open() as fh:
            for line in fh:
                json.loads(line)
        floor = time.perf_counter() - start
        env = {**os.environ, "VIGIE_STORE_URL": f"sqlite:///{work}/v.db", "VIGIE_LLM": "offline"}
        out = work / "incidents.jsonl"
        start = time.perf_counter()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "vigie"), "triage", "-i", str(big), "-o", str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            sys.exit(f"vigie triage failed:\n{run.stderr}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        incidents = [json.loads(line) for line in out.open()]
        placed = sum(len(i["alert_ids"]) for i in incidents)
        size_mb = big.stat().st_size / 1e6
        print(
            f"{n:,} alerts ({size_mb:,.0f} MB) -> {len(incidents):,} incidents holding {placed:,} "
            f"alerts in {seconds:.1f}s end to end = {n / seconds:,.0f} alerts/s; stdlib JSON parse "
            f"{floor:.1f}s (ratio {seconds / floor:.1f}x); peak RSS {peak_mb:,.0f} MB"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 634_000)
