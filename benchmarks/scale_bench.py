"""Triage throughput at a day's scale: the AIT-ADS scenario replayed until N alerts (default
634,000, the size of the largest AIT-ADS scenario), through `vigie triage` end to end.

    .venv/bin/python benchmarks/scale_bench.py [N] [replay|unique|distinct|hosts|flood|wazuh|
                                                    array|pretty]

Each replay of the 45,544 real alerts is shifted four days later and given fresh ids, so the
file holds N distinct alerts with the real mix of rules, hosts and bursts. Prints the time from
file to incidents JSONL, alerts/s, the stdlib JSON parse of the same file (the floor), and the
peak RSS of the triage process and its reader workers.

`unique` also numbers every alert's message, as a feed that logs a counter or a time in its
messages does: the repeats memo (`agent/repeats.py`) masks messages, so this measures what
reading each alert's own message costs. `distinct` numbers a field the memo does not mask
(`event.sequence`) instead: no document repeats another, and this measures the run without the
memo's help. `hosts` puts every alert on its own host, with its own address (a rule firing
once on each endpoint of a fleet): no two alerts share a rule-host group, so each is stored whole
as its group's sample.

`flood` takes the largest scenarios' shape instead: the recorded four days once, with the web
scan's dirb alerts repeated over 20 minutes until the file holds N alerts (the largest AIT-ADS
scenario is 428,239 dirb alerts in 20 minutes amid six days of noise). Its labels come along,
so the run is scored too.

`array` writes the `distinct` documents as one JSON array, an element a line; `pretty` as
`jq .` prints one (two blanks of indentation, a field a line). Their parse floor is that of the
same documents as NDJSON.

`wazuh` writes N Wazuh manager documents instead, made from the shared Wazuh samples
(`../shared/data/wazuh/*.alerts.json`) over four days on 40 agents: each has its own id, time,
`firedtimes` and syslog line, as the manager writes them, and its Suricata alerts their own
flow id, port and counters. They are about three times the size of the AIT-ADS ones.
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
    SHARED,
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
WAZUH_SAMPLES = SHARED / "data" / "wazuh"
WAZUH_AGENTS = 40
FOUR_DAYS = 4 * 86_400
KINDS = {  # mode -> how the summary line names the file
    "replay": "",
    "unique": " (every message unique)",
    "distinct": " (every document distinct)",
    "hosts": " (every alert on its own host)",
    "flood": " (a dirb flood)",
    "wazuh": " (Wazuh documents)",
    "array": " (every document distinct, a JSON array, an element a line)",
    "pretty": " (every document distinct, a JSON array as jq prints it)",
}


#: What each replay mode numbers (see `replayed`).
NUMBERED = {
    "unique": "message",
    "distinct": "sequence",
    "array": "sequence",
    "pretty": "sequence",
    "hosts": "host",
}


def replayed(alerts: Path, n: int, out: Path, numbered: str | None = None) -> None:
    """The scenario's alerts repeated up to N, four days later each time, with fresh ids;
    `numbered`: "message" numbers each message, "sequence" each `event.sequence`, "host"
    each host's name and address."""
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
            if numbered == "message":
                copy["message"] = f"{doc['message']} (#{k})"
            elif numbered == "sequence":
                copy["event"]["sequence"] = k
            elif numbered == "host":
                address = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
                copy["host"] = {"name": f"endpoint-{k:06d}", "ip": [address]}
            fh.write(json.dumps(copy, separators=(",", ":")) + "\n")


def as_array(ndjson: Path, out: Path, pretty: bool) -> Path:
    """The NDJSON file's documents as one JSON array: an element a line, or indented."""
    with ndjson.open() as src, out.open("w") as fh:
        fh.write("[\n")
        for n, line in enumerate(src):
            text = json.dumps(json.loads(line), indent=2) if pretty else line.rstrip("\n")
            fh.write((",\n" if n else "") + ("  " + text.replace("\n", "\n  ") if pretty else text))
        fh.write("\n]\n")
    return out


def wazuh_documents(n: int, out: Path) -> None:
    """N Wazuh documents from the shared samples, spread over four days and 40 agents."""
    samples = [
        json.loads(line)
        for path in sorted(WAZUH_SAMPLES.glob("*.alerts.json"))
        for line in path.open()
        if line.strip()
    ]
    if not samples:
        sys.exit(f"no Wazuh samples found in {WAZUH_SAMPLES}")
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    fired: dict[tuple[str, int], int] = {}
    with out.open("w") as fh:
        for k in range(n):
            doc, agent = samples[k % len(samples)], k % WAZUH_AGENTS
            ts = start + dt.timedelta(seconds=FOUR_DAYS * k / n)
            key = (doc["rule"]["id"], agent)
            fired[key] = fired.get(key, 0) + 1
            fh.write(json.dumps(wazuh_copy(doc, k, agent, ts, fired[key]), separators=(",", ":")))
            fh.write("\n")


def wazuh_copy(doc: dict, k: int, agent: int, ts: dt.datetime, fired: int) -> dict:
    """One sample as agent `agent` would send it at `ts`: id, times, counter and syslog line."""
    name, syslog_time = f"host-{agent:02d}", ts.strftime("%b %d %H:%M:%S")
    copy = {
        **doc,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000",
        "id": f"{int(ts.timestamp())}.{k:08d}",
        "rule": {**doc["rule"], "firedtimes": fired},
        "agent": {"id": f"{agent + 1:03d}", "name": name, "ip": f"10.20.0.{agent + 10}"},
    }
    if "full_log" in doc:  # "Sep 22 11:13:21 videoserver sudo: ...": the time and host change
        rest = doc["full_log"].split(" ", 4)[4]
        copy["full_log"] = f"{syslog_time} {name} {rest}"
        predecoder = doc.get("predecoder", {})
        copy["predecoder"] = {**predecoder, "timestamp": syslog_time, "hostname": name}
    if "flow_id" in doc.get("data", {}):  # Suricata's event: its own flow, ports and counters
        copy["data"] = suricata_event(doc["data"], k, copy["timestamp"])
    return copy


def suricata_event(data: dict, k: int, timestamp: str) -> dict:
    """The sample's Suricata fields as another connection would give them."""
    return {
        **data,
        "timestamp": timestamp,
        "flow_id": f"{1410319123008366 + k * 7919}.000000",
        "src_port": str(1024 + k % 60000),
        "community_id": f"1:{k:027d}=",
        "tx_id": str(k % 4),
        "flow": {**data.get("flow", {}), "pkts_toserver": str(5 + k % 40), "start": timestamp},
    }


def flooded(labelled: Path, n: int, work: Path) -> tuple[Path, Path]:
    """The scenario with its dirb alerts repeated until about N alerts: its CSV and alerts."""
    rows = scenario_rows(labelled)
    dirb = max(1, sum(1 for r in rows if r["time_label"] == "dirb"))  # none: nothing to repeat
    times = max(1, (n - len(rows)) // dirb + 1)
    flood_csv = write_rows(web_scan_flooded(rows, times), work / "flood.csv")
    return flood_csv, alerts_of(flood_csv, work / "flood.ndjson")


def main(n: int, mode: str) -> None:
    if not SCORER.is_file():
        sys.exit(f"scorer not found at {SCORER}: the shared/ folder must sit beside the repo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labelled, alerts = scenario_alerts(SCENARIO, work)
        big = work / "big.ndjson"
        if mode == "flood":
            flood_csv, big = flooded(labelled, n, work)
            n = sum(1 for _ in big.open())
        elif mode == "wazuh":
            wazuh_documents(n, big)
        else:
            replayed(
                alerts,
                n,
                big,
                NUMBERED.get(mode),
            )
        floor = stdlib_parse_seconds(big)
        if mode in ("array", "pretty"):
            big = as_array(big, work / "big.json", pretty=mode == "pretty")
        os.sync()  # the kernel writing this file back must not run during the timed triage
        seconds, peak_mb, out = timed_triage(big, work)
        incidents = [json.loads(line) for line in out.open()]
        placed = sum(len(i["alert_ids"]) for i in incidents)
        size_mb = big.stat().st_size / 1e6
        kind = KINDS[mode]
        print(
            f"{n:,} alerts{kind} ({size_mb:,.0f} MB) -> {len(incidents):,} incidents holding "
            f"{placed:,} alerts in {seconds:.1f}s end to end = {n / seconds:,.0f} alerts/s; "
            f"stdlib JSON parse {floor:.1f}s (ratio {seconds / floor:.1f}x); "
            f"peak RSS {peak_mb:,.0f} MB"
        )
        if mode == "flood":
            run = scores_of(flood_csv, out)
            shown = ("incidents", "depth", "noise_read", "contamination", "lost", "duplicated")
            print("scored: " + ", ".join(f"{k} {run[k]}" for k in shown))


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "replay"
    if mode not in KINDS:
        sys.exit(f"unknown mode {mode!r}: one of {', '.join(KINDS)}")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 634_000, mode)
