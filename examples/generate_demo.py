"""Write the demo dataset: a multi-stage intrusion hidden in a day of benign alerts.

    python examples/generate_demo.py            # rewrites examples/demo-*.json*

The attack: an external address brute-forces SSH on web-01, exploits the web application and
drops a web shell, escalates with pkexec, reads /etc/shadow, moves to the finance workstation
ws-fin-07 with the svc-backup account, runs a stager there and tunnels data out over DNS.
Around it: routine alerts from 14 hosts, a flood of one noisy rule, and a DNS server that
every host talks to. Elastic alerts go to an NDJSON file (with two malformed lines, to show
dead-letter reporting); Wazuh alerts go to a JSON array. Deterministic: a fixed seed.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
ATTACKER = "203.0.113.45"
DNS = "10.20.0.53"
WEB = ("web-01", "10.20.1.15")
FIN = ("ws-fin-07", "10.20.4.77")
rng = random.Random(7)


def ts(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def elastic(
    t: datetime,
    rule: str,
    rule_id: str,
    severity: str,
    risk: int,
    host: tuple[str, str],
    tactic: tuple[str, str] | None = None,
    technique: str | None = None,
    user: str | None = None,
    **ecs: object,
) -> dict:
    doc: dict = {
        "@timestamp": ts(t),
        "kibana.alert.uuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "kibana.alert.rule.name": rule,
        "kibana.alert.rule.rule_id": rule_id,
        "kibana.alert.severity": severity,
        "kibana.alert.risk_score": risk,
        "kibana.alert.workflow_status": "open",
        "kibana.alert.original_time": ts(t),
        "kibana.alert.reason": f"event on {host[0]} created {severity} alert {rule}.",
        "event": {"kind": "signal", "module": "endpoint"},
        "host": {"name": host[0], "ip": [host[1]]},
        "agent": {"type": "endpoint"},
    }
    if tactic:
        doc["kibana.alert.rule.threat"] = [
            {
                "framework": "MITRE ATT&CK",
                "tactic": {"id": tactic[0], "name": tactic[1]},
                "technique": [{"id": technique}] if technique else [],
            }
        ]
    if user:
        doc["user"] = {"name": user}
    doc.update(ecs)
    return doc


def wazuh(
    t: datetime,
    level: int,
    desc: str,
    rule_id: str,
    host: tuple[str, str],
    mitre: tuple[list[str], list[str]] | None = None,
    groups: list[str] | None = None,
    **data: object,
) -> dict:
    doc: dict = {
        "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "rule": {
            "level": level,
            "description": desc,
            "id": rule_id,
            "groups": groups or ["syslog"],
        },
        "agent": {"id": f"{abs(hash(host[0])) % 900 + 100:03d}", "name": host[0], "ip": host[1]},
        "manager": {"name": "wazuh-manager"},
        "id": f"{int(t.timestamp())}.{rng.randrange(10**6, 10**7)}",
        "decoder": {"name": "sshd" if "sshd" in desc else "json"},
        "location": "/var/log/auth.log",
    }
    if mitre:
        doc["rule"]["mitre"] = {"id": mitre[0], "tactic": mitre[1]}
    if data:
        doc["data"] = data
    return doc


def attack() -> tuple[list[dict], list[dict]]:
    e: list[dict] = []
    w: list[dict] = []
    t = T0 + timedelta(hours=13, minutes=2)
    for i in range(40):  # SSH brute force
        w.append(
            wazuh(
                t + timedelta(seconds=7 * i),
                5,
                "sshd: Attempt to login using a non-existent user",
                "5710",
                WEB,
                (["T1110"], ["Credential Access"]),
                ["syslog", "sshd"],
                srcip=ATTACKER,
                srcuser=rng.choice(["admin", "oracle", "test", "ubuntu"]),
            )
        )
    w.append(
        wazuh(
            t + timedelta(minutes=5),
            10,
            "sshd: brute force trying to get access to the system. Non existent user.",
            "5712",
            WEB,
            (["T1110"], ["Credential Access"]),
            ["syslog", "sshd"],
            srcip=ATTACKER,
        )
    )
    t += timedelta(minutes=22)
    for i in range(6):  # SQL injection against the web application, seen by Suricata
        w.append(
            wazuh(
                t + timedelta(seconds=30 * i),
                6,
                "Suricata: Alert - ET WEB_SERVER Possible SQL Injection Attempt UNION SELECT",
                "86601",
                WEB,
                (["T1190"], ["Initial Access"]),
                ["ids", "suricata"],
                src_ip=ATTACKER,
                dest_ip=WEB[1],
            )
        )
    t += timedelta(minutes=9)
    e.append(
        elastic(
            t,
            "Web Shell Detection: Script Process Child of Common Web Processes",
            "f16fca20-4d6c-43f9-aec1-20b6de3b0aeb",
            "high",
            73,
            WEB,
            ("TA0003", "Persistence"),
            "T1505",
            "www-data",
            process={
                "name": "sh",
                "executable": "/bin/sh",
                "command_line": "sh -c id;uname -a",
                "parent": {"name": "apache2"},
            },
            source={"ip": ATTACKER},
        )
    )
    t += timedelta(minutes=14)
    e.append(
        elastic(
            t,
            "Potential Privilege Escalation via PKEXEC",
            "30c89cc9-d93c-4134-a976-58f8413f2f32",
            "high",
            73,
            WEB,
            ("TA0004", "Privilege Escalation"),
            "T1068",
            "www-data",
            process={"name": "pkexec", "executable": "/usr/bin/pkexec"},
        )
    )
    t += timedelta(minutes=3)
    e.append(
        elastic(
            t,
            "Potential Shadow File Read via Command Line Utilities",
            "9a3a3689-8ed1-4cdb-83fb-9506db54c61f",
            "medium",
            47,
            WEB,
            ("TA0006", "Credential Access"),
            "T1003",
            "root",
            process={
                "name": "cat",
                "executable": "/usr/bin/cat",
                "command_line": "cat /etc/shadow",
            },
        )
    )
    t += timedelta(minutes=31)
    e.append(
        elastic(
            t,
            "Potential Lateral Tool Transfer via SMB Share",
            "58bc134c-e8d2-4291-a552-b4b3e537c60b",
            "medium",
            47,
            FIN,
            ("TA0008", "Lateral Movement"),
            "T1570",
            "svc-backup",
            source={"ip": WEB[1]},
            file={"path": "C:\\Users\\Public\\upd.exe"},
        )
    )
    t += timedelta(minutes=4)
    e.append(
        elastic(
            t,
            "Malicious Behavior Prevention Alert: Empire Stager Execution",
            "2b2c6d8e-7a6c-4c8f-9b1c-1b1e0f4f6a10",
            "critical",
            99,
            FIN,
            ("TA0002", "Execution"),
            "T1059",
            "svc-backup",
            process={
                "name": "powershell.exe",
                "executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            },
            file={
                "path": "C:\\Users\\Public\\upd.exe",
                "hash": {
                    "sha256": "9f2c7d1e4b0a6c3e8d5f1a2b7c9e0d4f6a8b1c3d5e7f9a0b2c4d6e8f0a1b3c5d"
                },
            },
        )
    )
    t += timedelta(minutes=26)
    for i in range(12):
        e.append(
            elastic(
                t + timedelta(seconds=40 * i),
                "Potential DNS Tunneling via NsLookup",
                "3a59fc81-99d3-47ea-8cd6-d48d561fca20",
                "low",
                21,
                FIN,
                ("TA0011", "Command and Control"),
                "T1071",
                "svc-backup",
                process={"name": "nslookup.exe"},
                destination={"ip": DNS},
                dns={"question": {"name": f"{rng.getrandbits(40):010x}.exfil.example-cdn.net"}},
            )
        )
    e.append(
        elastic(
            t + timedelta(minutes=9),
            "Potential Data Exfiltration Activity to an Unusual Destination Port",
            "ef8cc01c-fb49-4ab6-a3b4-1b5ee3d2a9d0",
            "high",
            73,
            FIN,
            ("TA0010", "Exfiltration"),
            "T1048",
            "svc-backup",
            destination={"ip": "198.51.100.23", "port": 8443},
        )
    )
    return e, w


HOSTS = [
    (f"ws-{d}-{n:02d}", f"10.20.{4 + i % 3}.{20 + n}")
    for i, d in enumerate(["hr", "ops", "dev"])
    for n in range(1, 4)
] + [
    ("db-01", "10.20.2.10"),
    ("mail-01", "10.20.2.25"),
    ("file-01", "10.20.2.30"),
    ("vpn-01", "10.20.1.5"),
    WEB,
]
ROUTINE_ELASTIC = [
    ("Unusual Process Network Connection", "a3f1c5b9-2d0e-4e7a-9c11-6f3b2a1d4e70", "low", 21, None),
    (
        "Suspicious Execution via Scheduled Task",
        "1a6e8d74-1e42-4b8c-9a1f-0c2e5d7b3f11",
        "low",
        21,
        ("TA0002", "Execution"),
    ),
    (
        "Network Connection via Certutil",
        "3838e0e3-1850-4850-a411-2e8c5ba40ba8",
        "low",
        21,
        ("TA0011", "Command and Control"),
    ),
    (
        "Unusual Parent-Child Relationship",
        "35df0dd8-092d-4a83-88c1-5151a804f31b",
        "medium",
        47,
        ("TA0004", "Privilege Escalation"),
    ),
]
ROUTINE_WAZUH = [
    (3, "PAM: Login session opened.", "5501", None),
    (7, "Integrity checksum changed.", "550", None),
    (
        5,
        "sshd: Attempt to login using a non-existent user",
        "5710",
        (["T1110"], ["Credential Access"]),
    ),
    (3, "Successful sudo to ROOT executed.", "5402", (["T1548.003"], ["Privilege Escalation"])),
]


def noise() -> tuple[list[dict], list[dict]]:
    e: list[dict] = []
    w: list[dict] = []
    for _ in range(520):
        host = rng.choice(HOSTS)
        name, rid, sev, risk, tactic = rng.choice(ROUTINE_ELASTIC)
        t = T0 + timedelta(seconds=rng.randrange(24 * 3600))
        e.append(
            elastic(
                t,
                name,
                rid,
                sev,
                risk,
                host,
                tactic,
                None,
                rng.choice(["alice", "bob", "carol", None]),
                destination={"ip": DNS},
            )
        )
    for _ in range(420):
        host = rng.choice(HOSTS[-5:])
        level, desc, rid, mitre = rng.choice(ROUTINE_WAZUH)
        t = T0 + timedelta(seconds=rng.randrange(24 * 3600))
        extra = (
            {"srcip": f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"}
            if rid == "5710"
            else {}
        )
        w.append(wazuh(t, level, desc, rid, host, mitre, **extra))
    for i in range(720):  # one noisy rule: every two minutes on the database server, all day
        w.append(
            wazuh(
                T0 + timedelta(minutes=2 * i),
                7,
                "Listened ports status (netstat) changed (new port opened or closed).",
                "533",
                HOSTS[9],
                None,
                ["ossec"],
            )
        )
    return e, w


def main() -> None:
    ae, aw = attack()
    ne, nw = noise()
    elastic_docs = sorted(ae + ne, key=lambda d: d["@timestamp"])
    wazuh_docs = sorted(aw + nw, key=lambda d: d["timestamp"])
    lines = [json.dumps(d, separators=(",", ":")) for d in elastic_docs]
    lines.insert(100, '{"@timestamp": "2026-11-24T03:00:00Z", "kibana.alert.rule.name": "truncated')
    lines.insert(
        400, json.dumps({"kibana.alert.rule.name": "No time", "kibana.alert.severity": "high"})
    )
    (HERE / "demo-elastic.ndjson").write_text("\n".join(lines) + "\n")
    (HERE / "demo-wazuh.json").write_text(json.dumps(wazuh_docs, indent=1) + "\n")
    print(
        f"{len(elastic_docs)} Elastic alerts (+2 malformed), {len(wazuh_docs)} Wazuh alerts written"
    )


if __name__ == "__main__":
    main()
