"""Triage-quality and throughput benchmark on the AIT-ADS development scenario.

    make bench                       # or: python benchmarks/ait_ads_bench.py [CSV.gz ...]

For each scenario: convert the labelled CSV into alerts with ../shared/bench/ait_ads.py, time
`vigie triage` on them with the offline analyst (end to end, file to incidents JSONL), time a
plain stdlib JSON parse of the same file as the floor, then score the incidents beside the naive
baselines. The scorer and the labels stay outside Vigie: the run never sees a label.
"""

from __future__ import annotations

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
DEFAULT = [SHARED / "data" / "ait-ads" / "russellmitchell.csv.gz"]


def stdlib_parse_seconds(path: Path) -> float:
    start = time.perf_counter()
    with path.open() as fh:
        for line in fh:
            json.loads(line)
    return time.perf_counter() - start


def scenario_alerts(csv_gz: Path, work: Path) -> tuple[Path, Path]:
    """The labelled CSV unpacked into `work`, and its alerts as NDJSON (no label in them)."""
    csv = work / (csv_gz.stem.removesuffix(".csv") + ".csv")
    with gzip.open(csv_gz, "rb") as src, csv.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    alerts = work / "alerts.ndjson"
    with alerts.open("w") as fh:
        subprocess.run([sys.executable, str(SCORER), "alerts", str(csv)], stdout=fh, check=True)
    return csv, alerts


def timed_triage(alerts: Path, work: Path) -> tuple[float, float, Path]:
    """`vigie triage` on the file with the offline analyst: seconds, peak RSS (MB), output."""
    incidents = work / "incidents.jsonl"
    env = {**os.environ, "VIGIE_STORE_URL": f"sqlite:///{work}/bench.db", "VIGIE_LLM": "offline"}
    vigie = str(Path(sys.executable).parent / "vigie")
    start = time.perf_counter()
    triage = subprocess.run(
        [vigie, "triage", "-i", str(alerts), "-o", str(incidents)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if triage.returncode != 0:
        sys.exit(f"vigie triage failed:\n{triage.stderr}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, incidents


def run(csv_gz: Path, work: Path) -> dict:
    csv, alerts = scenario_alerts(csv_gz, work)
    seconds, peak_mb, incidents = timed_triage(alerts, work)
    scored = subprocess.run(
        [sys.executable, str(SCORER), "score", str(csv), str(incidents)],
        capture_output=True,
        text=True,
        check=True,
    )
    raw = subprocess.run(
        [sys.executable, str(SCORER), "score", str(csv), str(incidents), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    n = json.loads(raw.stdout)["alerts"]
    floor = stdlib_parse_seconds(alerts)
    print(scored.stdout)
    print(
        f"throughput: {n:,} alerts in {seconds:.2f}s end to end = {n / seconds:,.0f} alerts/s; "
        f"stdlib JSON parse {floor:.2f}s (ratio {seconds / floor:.1f}x); peak RSS {peak_mb:,.0f} MB"
    )
    return json.loads(raw.stdout)


def main(argv: list[str]) -> None:
    if not SCORER.is_file():
        sys.exit(f"scorer not found at {SCORER}: the shared/ folder must sit beside the repo")
    for path in [Path(a) for a in argv] or DEFAULT:
        print(f"== {path.name}")
        with tempfile.TemporaryDirectory() as tmp:
            run(path, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
