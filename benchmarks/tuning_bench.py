"""An analyst's tuning, measured: the AIT-ADS scenario fed in hourly batches into one store (as
a sweep delivers it), once alone and once with an analyst who, at each day's end, reads that
day's ten highest incidents and closes them: an incident without an attack alert as a false
positive, tuned (`agent.dispositions`), one with an attack alert as a true positive.

    .venv/bin/python benchmarks/tuning_bench.py [CSV.GZ]

The analyst is simulated from the labels, so it is a perfect one: this measures what tuning
does with right verdicts, not how often analysts are right. It prints, for each day, how many
of that day's ten highest incidents (as the store ranked them at the day's end, before the
analyst read them) hold no attack alert, alone and with the analyst's earlier days of tuning;
then both runs' scores and where each attack step ranks, since tuning may also hide a step
that trips a rule the analyst tuned as noise.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ait_ads_bench import (
    DEFAULT,
    fed_in_batches,
    print_row,
    scenario_alerts,
    scores_of,
    step_ranks,
)

TOP = 10  # incidents an analyst reads carefully in a day
SHOWN = ("incidents", "depth", "noise_read", "contamination", "steps@10")


def labels_of(csv_path: Path) -> dict[str, str]:
    """Alert id -> its attack step, '-' for none (the scorer's ids)."""
    with csv_path.open(newline="") as fh:
        return {f"ait-{i:07d}": row["event_label"] for i, row in enumerate(csv.DictReader(fh))}


def day_of(batch: str) -> date:
    stamp = json.loads(batch.split("\n", 1)[0])["@timestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).date()


def day_figures(ranked: list, labels: dict[str, str]) -> dict[str, object]:
    """A day's incidents, highest first: how many; the attack-free among the TOP (noise@TOP) and
    their mean priority; and, on a day with attack steps, the attack-free incidents read before
    every step of the day was seen (the scorer's noise_read, for that day alone)."""
    steps_of = [{labels[a] for a in i.alert_ids} - {"-"} for i in ranked]
    noise = [i for i, s in zip(ranked[:TOP], steps_of, strict=False) if not s]
    left = set().union(*steps_of) if steps_of else set()
    read_noise: int | str = "-"
    if left:
        read_noise = 0
        for steps in steps_of:
            left -= steps
            read_noise += not steps
            if not left:
                break
    mean = round(sum(i.priority for i in noise) / len(noise), 1) if noise else "-"
    return {
        "incidents": len(ranked),
        f"noise@{TOP}": len(noise),
        "noise priority": mean,
        "noise_read": read_noise,
    }


DAY_SHOWN = ("incidents", f"noise@{TOP}", "noise priority", "noise_read")


def fed(alerts: Path, labels: dict[str, str], work: Path, analyst: bool) -> tuple[dict, Path]:
    """The hourly batches triaged in turn into a new store (`fed_in_batches`); at each day's
    end, the day's figures (`day_figures`), then, with `analyst`, the day's TOP closed.
    Returns {day: figures} and the incidents JSONL (each incident's latest state)."""
    days: dict[date, dict] = {}

    def at_day_end(store: Any, k: int, batches: list[str]) -> None:
        from agent.dispositions import dispose

        day = day_of(batches[k])
        if k + 1 < len(batches) and day_of(batches[k + 1]) == day:
            return
        ranked = [i for i in store.list_incidents(limit=10_000) if i.first_seen.date() == day]
        days[day] = day_figures(ranked, labels)
        if analyst:
            for i in ranked[:TOP]:
                if i.disposition is None:
                    real = any(labels[a] != "-" for a in i.alert_ids)
                    verdict = "true_positive" if real else "false_positive"
                    dispose(store, i.incident_id, verdict, "bench analyst", "bench", tune=not real)
        if analyst and k + 1 == len(batches):
            tuned = len(store.tunings(datetime.now(UTC)))
            print(f"the analyst tuned {tuned} rule-host pair(s) in all")

    own = work / ("analyst" if analyst else "alone")
    own.mkdir(exist_ok=True)
    return days, fed_in_batches(alerts, 3600, own, at_day_end)[1]


def main(csv_gz: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path, alerts = scenario_alerts(csv_gz, work)
        labels = labels_of(csv_path)
        print(f"{csv_gz.name}: hourly batches, an analyst closing each day's {TOP} highest")
        alone, alone_out = fed(alerts, labels, work, analyst=False)
        helped, helped_out = fed(alerts, labels, work, analyst=True)
        print("\neach day's incidents, at the day's end (noise: no attack alert)")
        print_row("", DAY_SHOWN)
        for day in sorted(alone):
            print_row(f"{day} alone", DAY_SHOWN, alone[day])
            print_row(f"{day} with the analyst's earlier days", DAY_SHOWN, helped[day])
        print("\nthe run, scored")
        print_row("", SHOWN)
        for name, out in (("alone", alone_out), ("with the analyst", helped_out)):
            print_row(name, SHOWN, scores_of(csv_path, out))
        for name, out in (("alone", alone_out), ("with the analyst", helped_out)):
            ranks = {step: min(p.values()) for step, p in step_ranks(csv_path, out).items()}
            print(f"  first rank of each step, {name}: {ranks}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT[0])
