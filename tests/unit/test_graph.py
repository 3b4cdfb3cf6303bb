"""The LangGraph run end to end in-process: results and dead letters reach the store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.analyst import OfflineAnalyst
from agent.errors import Transient
from agent.graph import TriageContext, run_triage, run_triage_documents, run_triage_isolating
from agent.models import Alert, Assessment, Incident
from agent.normalize import normalize
from agent.parallel_read import ReadChunk
from agent.playbooks import load_playbooks
from agent.settings import REPO_ROOT
from agent.store.sqlite import SqliteStore
from tests.conftest import ecs
from tests.fakes.poisoned_analyst import PoisonedAnalyst


class BrokenAnalyst:
    name = "mistral"

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        raise Transient("endpoint unreachable")


def test_a_document_triage_fails_on_is_kept_whole_and_holds_back_no_other(tmp_path: Path) -> None:
    """A webhook batch or a sweep page whose triage raised was retried whole, and failed
    again: its documents, and every batch claimed with it, were never triaged."""
    from agent.intake import process_pending

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=PoisonedAnalyst("apoison"), playbooks=[])  # type: ignore[arg-type]
    good = [ecs(1, 0, "Web shell", "web"), ecs(2, 1, "Port scan", "fw")]
    poisoned = [ecs(3, 2, "Sudo", "db"), ecs("poison", 3, "Odd", "printer"), ecs(4, 4, "Ok", "mx")]
    docs = [("webhook:b2", n, d) for n, d in enumerate(poisoned, 1)]
    with pytest.raises(KeyError):
        run_triage_documents(docs, ctx)  # a plain run fails on it
    store.save_intake("b1", "generic", good, [])
    store.save_intake("b2", "generic", poisoned, [])
    counts = process_pending(store, ctx)
    assert counts["batches"] == 2 and store.claim_intake(10, stale_after=0) == []  # all done
    placed = sorted(a for i in store.list_incidents() for a in i.alert_ids)
    assert placed == ["a1", "a2", "a3", "a4"]
    (dead,) = store.dead_letters()
    assert (dead.source, dead.line) == ("webhook:b2", 2) and "KeyError" in dead.reason
    assert json.loads(dead.excerpt) == poisoned[1]  # kept whole, not an excerpt
    assert run_triage_isolating([("s", 1, ecs(9, 5, "Ok", "mx"))], ctx)["incidents"]


def test_a_failure_every_document_meets_is_not_blamed_on_them(tmp_path: Path) -> None:
    """A bug every input meets (or a store gone wrong) is no document's fault: the lot fails
    for a retry, rather than each document becoming a dead letter."""
    from agent.errors import SystemicFailure

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=PoisonedAnalyst(None), playbooks=[])  # type: ignore[arg-type]
    for n in (2, 40):
        docs = [("webhook:b", i, ecs(i, i, f"Rule {i}", f"h{i}")) for i in range(1, n + 1)]
        with pytest.raises(SystemicFailure, match="KeyError"):
            run_triage_isolating(docs, ctx)
    assert store.dead_letters() == [] and store.list_incidents() == []


def test_only_bad_input_still_stores_its_dead_letters(tmp_path: Path) -> None:
    f = tmp_path / "bad.ndjson"
    f.write_text("nope\n{}\n")
    store = SqliteStore(tmp_path / "v.db")
    state = run_triage([str(f)], TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[]))
    assert state.get("incidents", []) == []
    assert [(d.line, d.reason.split(":")[0]) for d in store.dead_letters()] == [
        (1, "invalid JSON"),
        (2, "unrecognised document"),
    ]


def test_failed_analyst_falls_back_to_offline_and_says_so(tmp_path: Path) -> None:
    f = tmp_path / "a.ndjson"
    docs = [ecs(1, 0, "Web shell", "web", severity="high"), ecs(2, 1, "Port scan", "fw")]
    f.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(
        store=store, analyst=BrokenAnalyst(), playbooks=load_playbooks(REPO_ROOT / "playbooks")
    )
    state = run_triage([str(f)], ctx)
    incidents = state["incidents"]
    assert len(incidents) == 2
    for inc in incidents:
        assert inc.assessment is not None and inc.assessment.analyst == "offline"
        assert any("offline fallback" in n for n in inc.assessment.notes)
        stored = store.get_incident(inc.incident_id)
        assert stored is not None and stored.alert_ids == inc.alert_ids


def write(path: Path, docs: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return str(path)


def test_a_later_batch_extends_the_open_incident_and_a_reread_adds_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    first = write(
        tmp_path / "1.ndjson",
        [ecs(1, 0, "Brute force", "web", user={"name": "bob"}), ecs(2, 5, "Web shell", "web")],
    )
    second = write(
        tmp_path / "2.ndjson",
        [ecs(3, 30, "Privilege escalation", "web"), ecs(4, 40, "Port scan", "fw")],
    )
    (inc,) = run_triage([first], ctx)["incidents"]
    state = run_triage([second], ctx)
    grown = store.get_incident(inc.incident_id)
    assert grown is not None and grown.alert_ids == ["a1", "a2", "a3"]
    assert {g.rule_name: g.count for g in grown.groups} == {
        "Brute force": 1,
        "Web shell": 1,
        "Privilege escalation": 1,
    }
    assert inc.incident_id in {i.incident_id for i in state["incidents"]}
    # what joined the later batch: the host, from the incident's latest alert to the batch's
    assert [(x.kind, x.value, x.alert_ids, x.gap_seconds) for x in grown.explanation.links] == [
        ("host", "web", ["a1", "a2"], 300),
        ("host", "web", ["a2", "a3"], 1500),
    ]
    assert len(store.list_incidents()) == 2  # the web story, and the unrelated port scan
    again = run_triage([first, second], ctx)  # a crash made us read everything again
    assert again["alerts"] == [] and set(again["known"]) == {"a1", "a2", "a3", "a4"}
    placed = [a for i in store.list_incidents() for a in i.alert_ids]
    assert sorted(placed) == ["a1", "a2", "a3", "a4"]  # nothing twice


def test_an_incident_stored_with_names_as_written_is_extended_by_names_as_read(
    tmp_path: Path,
) -> None:
    """A store written before hosts were read in lower case and by machine name, and accounts
    without their Windows domain, holds `WS-FIN-07.corp.example` and `CORP\\JDoe`: the next
    batch's alerts on `ws-fin-07` by `jdoe` opened another incident beside the open one."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    (made,) = run_triage_documents([("t", 1, ecs(1, 0, "Web shell", "ws-fin-07"))], ctx)[
        "incidents"
    ]
    old = made.model_copy(  # as an earlier version stored it
        update={
            "hosts": ["WS-FIN-07.corp.example"],
            "users": ["CORP\\JDoe"],
            "groups": [
                g.model_copy(update={"host": "WS-FIN-07.corp.example"}) for g in made.groups
            ],
        }
    )
    store.save_triage([old], [], [], [], actor="vigie")
    by_host = [("t", 2, ecs(2, 20, "Odd process", "ws-fin-07"))]
    by_user = [("t", 3, ecs(3, 30, "Odd logon", "srv-02", user={"name": "jdoe"}))]
    run_triage_documents(by_host, ctx)
    run_triage_documents(by_user, ctx)
    (grown,) = store.list_incidents(limit=10)
    assert grown.incident_id == made.incident_id and grown.alert_ids == ["a1", "a2", "a3"]
    assert [(x.kind, x.value) for x in grown.explanation.links][-2:] == [
        ("host", "ws-fin-07"),
        ("user", "jdoe"),
    ]


def test_a_later_batch_joins_through_a_host_only_near_the_incident_s_last_alert_there(
    tmp_path: Path,
) -> None:
    """A scan touched the web and mail servers at once; the web server's story went on for
    two hours. The mail server's login failure two and a half hours after the scan is not
    its continuation, though the web story's last alert was half an hour before it; the web
    server's next alert is."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    scanner = {"ip": "203.0.113.9"}
    scan = [ecs(f"s{h}", k, "Port scan", h, source=scanner) for k, h in enumerate(("web", "mail"))]
    story = [ecs(f"w{m}", m, "Suspicious upload", "web") for m in (20, 70, 120)]
    (inc,) = run_triage([write(tmp_path / "1.ndjson", scan + story)], ctx)["incidents"]
    assert set(inc.hosts) == {"web", "mail"}
    later = [ecs("m1", 150, "Login failed", "mail"), ecs("w2", 150, "Web shell", "web")]
    run_triage([write(tmp_path / "2.ndjson", later)], ctx)
    grown = store.get_incident(inc.incident_id)
    assert grown is not None and "aw2" in grown.alert_ids  # 30 min after its last on web
    assert "am1" not in grown.alert_ids  # 150 min after its last on mail
    (mail,) = [i for i in store.list_incidents() if "am1" in i.alert_ids]
    assert mail.alert_ids == ["am1"]
    # a copy from one address to both servers joins on the web server, and says so
    peer = {"ip": "10.0.0.5"}
    copy = [
        ecs(f"c{h}", m, "File copied", h, source=peer) for m, h in ((170, "web"), (171, "mail"))
    ]
    run_triage([write(tmp_path / "3.ndjson", copy)], ctx)
    grown = store.get_incident(inc.incident_id)
    assert grown is not None and {"acweb", "acmail"} <= set(grown.alert_ids)
    joined = [x for x in grown.explanation.links if "acweb" in x.alert_ids]
    assert [(x.kind, x.value) for x in joined if x.kind == "host"][-1] == ("host", "web")


def test_a_later_batch_s_alerts_of_an_eql_sequence_extend_its_incident_hours_on(
    tmp_path: Path,
) -> None:
    """An EQL sequence's first event alert came in one sweep page, the rest two hours later in
    the next: the second page's alerts opened an incident of their own (the account's link
    reaches an hour). They extend the first's now, linked by the sequence, as in one batch."""
    from tests.conftest import eql_sequence_alerts

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    first, *rest = eql_sequence_alerts("grp-9f2")
    (inc,) = run_triage([write(tmp_path / "1.ndjson", [first])], ctx)["incidents"]
    assert inc.sequences == ["grp-9f2"]
    run_triage([write(tmp_path / "2.ndjson", rest)], ctx)
    (grown,) = store.list_incidents()
    assert grown.incident_id == inc.incident_id
    assert sorted(grown.alert_ids) == ["bb-1", "bb-2", "shell"]
    (link,) = [x for x in grown.explanation.links if x.kind == "sequence" and "bb-1" in x.alert_ids]
    assert link.value == "Logon then remote tool by one account" and link.gap_seconds >= 7200
    assert link.alert_ids == ["bb-1", "bb-2"]
    # another sequence of the rule, by the same account two hours on, is a story of its own
    later = {"@timestamp": "2026-12-07T14:05:00Z", "kibana.alert.group.id": "grp-77a"}
    other = [{**d, **later} for d in eql_sequence_alerts("x")[1:]]
    other[0] |= {"kibana.alert.uuid": "bb-2b", "kibana.alert.original_time": "2026-12-07T14:00:00Z"}
    other[1] |= {"kibana.alert.uuid": "shell-b"}
    run_triage([write(tmp_path / "3.ndjson", other)], ctx)
    assert len(store.list_incidents()) == 2


def test_a_later_batch_s_alert_on_a_process_an_incident_started_extends_it(
    tmp_path: Path,
) -> None:
    """A web shell's cmd.exe in one batch; three hours later, in the next, a beacon that
    cmd.exe started: the host's link reaches an hour, the process tree however far, as in
    one batch. A process the same parent started (a sibling) opens its own; a process
    started by one that cmd.exe started joins it."""
    from tests.conftest import process_alert

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    shell = process_alert("sh", 0, "Shell from IIS worker", "web", "cmd.exe", "E-cmd", "E-w3wp")
    (inc,) = run_triage([write(tmp_path / "1.ndjson", [shell])], ctx)["incidents"]
    assert inc.processes == [("web", "E-cmd", "cmd.exe")]
    beacon = process_alert("bc", 180, "Rare beacon", "web", "rundll32.exe", "E-run", "E-cmd")
    run_triage([write(tmp_path / "2.ndjson", [beacon])], ctx)
    (grown,) = store.list_incidents()
    assert grown.incident_id == inc.incident_id and grown.alert_ids == ["ash", "abc"]
    (link,) = [x for x in grown.explanation.links if x.kind == "process tree"]
    assert (link.value, link.alert_ids, link.gap_seconds) == ("cmd.exe", ["ash", "abc"], 10800.0)
    assert grown.processes[-1] == ("web", "E-run", "rundll32.exe")
    sibling = process_alert("sb", 400, "Odd child", "web", "calc.exe", "E-calc", "E-w3wp")
    run_triage([write(tmp_path / "3.ndjson", [sibling])], ctx)
    assert len(store.list_incidents()) == 2
    # a grandchild of cmd.exe hours on (Elastic Defend's ancestry): cmd.exe's tree still
    late = process_alert("gc", 700, "Recon", "web", "whoami.exe", "E-who", "E-ps", "E-cmd")
    run_triage([write(tmp_path / "4.ndjson", [late])], ctx)
    assert "agc" in store.get_incident(inc.incident_id).alert_ids


def test_an_incident_of_many_rules_on_a_host_takes_no_more_by_its_processes_alone(
    tmp_path: Path,
) -> None:
    """A tree of `tree_max_rules` rules within a batch is a hub (a service manager's, a
    desktop shell's); across batches, an incident holding that many rules on the host takes
    no later alert by its processes alone: with the limit at two, the beacon three hours on
    opens its own incident, as it does with no process named."""
    from agent.correlate import CorrelationConfig
    from tests.conftest import process_alert

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(
        store=store,
        analyst=OfflineAnalyst(),
        playbooks=[],
        correlation=CorrelationConfig(tree_max_rules=2),
    )
    shell = process_alert("sh", 0, "Shell from IIS worker", "web", "cmd.exe", "E-cmd", "E-w3wp")
    copy = process_alert("cp", 1, "File copied", "web", "cmd.exe", "E-cmd", "E-w3wp")
    (inc,) = run_triage([write(tmp_path / "1.ndjson", [shell, copy])], ctx)["incidents"]
    beacon = process_alert("bc", 180, "Rare beacon", "web", "rundll32.exe", "E-run", "E-cmd")
    run_triage([write(tmp_path / "2.ndjson", [beacon])], ctx)
    assert sorted(len(i.alert_ids) for i in store.list_incidents()) == [1, 2]
    ctx.correlation = CorrelationConfig(tree_max_rules=3)  # two rules: under the limit
    later = process_alert("b2", 400, "Rare beacon", "web", "rundll32.exe", "E-run2", "E-cmd")
    run_triage([write(tmp_path / "3.ndjson", [later])], ctx)
    assert "ab2" in store.get_incident(inc.incident_id).alert_ids


def test_incidents_close_after_a_quiet_period(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    run_triage([write(tmp_path / "1.ndjson", [ecs(1, 0, "Web shell", "web")])], ctx)
    run_triage([write(tmp_path / "2.ndjson", [ecs(2, 60 * 30, "Web shell", "web")])], ctx)
    statuses = sorted((i.alert_ids[0], i.status) for i in store.list_incidents())
    assert statuses == [("a1", "closed"), ("a2", "open")]  # 30 h apart: a new incident


def test_an_alert_from_a_clock_years_ahead_does_not_close_what_is_open(tmp_path: Path) -> None:
    """Quiet periods count back from the newest alert: one from a sensor dated a year ahead
    closed every open incident, so the next alerts of an attack opened a new one."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    now = datetime.now(UTC)

    def at(doc: dict, when: datetime) -> dict:
        return {**doc, "@timestamp": when.isoformat()}

    run_triage([write(tmp_path / "1.ndjson", [at(ecs(1, 0, "Web shell", "web"), now)])], ctx)
    ahead = at(ecs(2, 0, "Port scan", "printer"), now + timedelta(days=365))
    run_triage([write(tmp_path / "2.ndjson", [ahead])], ctx)
    statuses = sorted((i.alert_ids[0], i.status) for i in store.list_incidents())
    assert statuses == [("a1", "open"), ("a2", "open")]
    later = at(ecs(3, 0, "Web shell", "web"), now + timedelta(minutes=5))
    run_triage([write(tmp_path / "3.ndjson", [later])], ctx)
    assert any({"a1", "a3"} <= set(i.alert_ids) for i in store.list_incidents())  # extended


def test_a_batch_with_an_alert_from_ahead_is_judged_against_the_week_before_now(
    tmp_path: Path,
) -> None:
    """Rarity and novelty read the store's week before the batch's newest alert: one dated a
    year ahead read a week with nothing in it, and every rule of the batch looked new."""
    asked: list[date] = []

    class Watched(SqliteStore):
        def rule_history(self, since: date, windows_from: int | None = None) -> Any:
            asked.append(since)
            return super().rule_history(since, windows_from)

    ctx = TriageContext(store=Watched(tmp_path / "v.db"), analyst=OfflineAnalyst(), playbooks=[])
    now = datetime.now(UTC)
    batch = [
        {**ecs(1, 0, "Web shell", "web"), "@timestamp": now.isoformat()},
        {
            **ecs(2, 0, "Port scan", "printer"),
            "@timestamp": (now + timedelta(days=365)).isoformat(),
        },
    ]
    run_triage([write(tmp_path / "1.ndjson", batch)], ctx)
    assert asked == [(datetime.now(UTC) - timedelta(days=7)).date()]


def test_whole_chunks_from_reader_workers_keep_the_first_copy_of_a_repeated_id(
    tmp_path: Path,
) -> None:
    a1, a2, a3, a4, a5 = (normalize(ecs(i, i, "Port scan")) for i in range(1, 6))
    a1_again, a4_again = normalize(ecs(1, 9, "Other rule")), normalize(ecs(4, 9, "Other rule"))
    chunks = [
        ReadChunk("big.ndjson", 0, [1, 2], [a1, a2]),
        ReadChunk("big.ndjson", 2, [1, 2, 3], [a3, a1_again, a3]),  # ids seen before
        ReadChunk("big.ndjson", 5, [1, 2], [a4, a4_again]),  # an id twice in one chunk
        ReadChunk("big.ndjson", 7, [1], [a5]),
    ]
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    state = run_triage_documents(chunks, ctx)  # type: ignore[arg-type]
    assert state.get("alerts") == [a1, a2, a3, a4, a5]  # reading order, first copies
    assert [(d.line, d.reason) for d in store.dead_letters()] == [
        (4, "duplicate alert id 'a1'; first copy kept"),
        (5, "duplicate alert id 'a3'; first copy kept"),
        (7, "duplicate alert id 'a4'; first copy kept"),
    ]


def test_quarter_hour_batches_keep_a_routine_rule_out_of_the_intrusion_it_meets(
    tmp_path: Path,
) -> None:
    """A sweep every 15 minutes: each batch alone cannot show that a rule fires all day, so
    the store's last day decides, and the routine alerts after an intrusion on the same host
    do not pile into its incident."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    routine = [ecs(f"r{i}", i * 5, "Heartbeat missed", "web") for i in range(30 * 12)]  # 30 h
    intrusion = [ecs("x1", 26 * 60 + 2, "Web shell", "web", severity="high", tactic="TA0002")]
    docs = sorted([*routine, *intrusion], key=lambda d: d["@timestamp"])
    for quarter in range(30 * 4):
        batch = [d for d in docs if quarter * 15 <= _minutes(d) < (quarter + 1) * 15]
        run_triage_documents([("t", n, d) for n, d in enumerate(batch, 1)], ctx)
    (shell,) = [i for i in store.list_incidents() if "ax1" in i.alert_ids]
    assert shell.alert_ids == ["ax1"]  # judged on each batch alone, every heartbeat joined it
    (last,) = [i for i in store.list_incidents() if "ar359" in i.alert_ids]
    assert last.explanation.background
    assert last.explanation.routine == (  # why, for the analyst and the model
        "routine: fired in 24 of 24 hours (the batch's and the store's before it), "
        "a median 12 alert(s) an hour"
    )
    placed = sorted(a for i in store.list_incidents() for a in i.alert_ids)
    assert placed == sorted(d["event"]["id"] for d in docs)  # each alert once


def _minutes(doc: dict) -> float:
    from datetime import datetime

    from tests.conftest import T0

    return (datetime.fromisoformat(doc["@timestamp"]) - T0).total_seconds() / 60


def test_a_rule_routine_every_working_day_stays_one_background_incident_across_nights(
    tmp_path: Path,
) -> None:
    """Fed hour by hour, a rule that fires from 08:00 to 18:00 pauses 14 hours every night; its
    background incident is still open in the morning and goes on, as in a file of those days."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    days = [
        [ecs(f"d{day}m{i}", day * 1440 + i * 5, "Mail login ok", "mail") for i in range(10 * 12)]
        for day in range(3)
    ]
    for day in days:
        for hour in range(10):
            batch = day[hour * 12 : (hour + 1) * 12]
            run_triage_documents([("t", n, d) for n, d in enumerate(batch, 1)], ctx)
    holding = {a: i for i in store.list_incidents() for a in i.alert_ids}
    evening, next_day, third_day = holding["ad0m119"], holding["ad1m0"], holding["ad2m119"]
    assert evening.incident_id == next_day.incident_id == third_day.incident_id
    assert third_day.explanation.background and third_day.status == "open"


def test_a_later_batch_s_next_attack_stage_on_the_host_extends_the_incident_hours_on(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])

    def run(*docs: dict) -> None:
        run_triage_documents([("t", n, d) for n, d in enumerate(docs, 1)], ctx)

    run(ecs("x1", 0, "Exploit public-facing app", "web", tactic="TA0001"))
    run(ecs("x2", 120, "Phishing link opened", "web", tactic="TA0001"))  # not a later stage
    run(ecs("x3", 300, "Sudo to root", "web", tactic="TA0004"))
    holding = {a: i for i in store.list_incidents() for a in i.alert_ids}
    assert holding["ax1"].incident_id != holding["ax2"].incident_id
    story = holding["ax3"]
    assert story.alert_ids == ["ax2", "ax3"]  # the latest open incident it follows
    (link,) = [link for link in story.explanation.links if link.kind == "progression"]
    assert (link.value, link.alert_ids, link.tactics, link.gap_seconds) == (
        "web",
        ["ax2", "ax3"],
        ["TA0001", "TA0004"],
        3 * 3600,
    )


def test_an_older_batch_joins_an_incident_only_within_the_link_window_before_it(
    tmp_path: Path,
) -> None:
    """A file replayed into the live store, or a late delivery: alerts ten days older than an
    open incident on the same host are another story; half an hour before it, the same one."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    day10 = 10 * 1440

    def run(*docs: dict) -> None:
        run_triage_documents([("t", n, d) for n, d in enumerate(docs, 1)], ctx)

    run(ecs("x1", day10, "Web shell", "web", severity="high"))
    run(ecs("x2", 0, "Web shell", "web", severity="high"))  # ten days before
    run(ecs("x3", day10 - 30, "Port scan", "web"))  # half an hour before
    holding = {a: i for i in store.list_incidents() for a in i.alert_ids}
    assert holding["ax2"].alert_ids == ["ax2"]
    assert holding["ax1"].alert_ids == ["ax1", "ax3"]
    assert holding["ax1"].explanation.max_gap_seconds == 1800  # from the older alert to it


def test_an_older_routine_stream_opens_its_own_background_incident(tmp_path: Path) -> None:
    """A routine rule's background incident spans its pauses while open, but not back to alerts
    fired days before its first: those are a background incident of their own."""
    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])

    def day(n: int) -> list[dict]:
        return [ecs(f"d{n}m{i}", n * 1440 + i * 5, "Mail login ok", "mail") for i in range(288)]

    for n in (10, 11):
        for hour in range(24):
            batch = day(n)[hour * 12 : (hour + 1) * 12]
            run_triage_documents([("t", k, d) for k, d in enumerate(batch, 1)], ctx)
    run_triage_documents([("t", k, d) for k, d in enumerate(day(0), 1)], ctx)
    holding = {a: i for i in store.list_incidents() for a in i.alert_ids}
    recent, old = holding["ad11m287"], holding["ad0m0"]
    assert old.explanation.background and recent.explanation.background
    assert old.incident_id != recent.incident_id
    assert old.alert_ids == [f"ad0m{i}" for i in range(288)]


def test_every_link_and_citation_stays_inside_its_incident_on_the_demo_day(tmp_path: Path) -> None:
    """The demo's day, as one run and as two: every alert id an explanation's links or an
    assessment cites belongs to that incident (a link once cited another story's alerts)."""
    demo = [str(REPO_ROOT / "examples" / n) for n in ("demo-elastic.ndjson", "demo-wazuh.json")]
    for name, runs in (("one", [demo]), ("two", [demo[:1], demo[1:]])):
        store = SqliteStore(tmp_path / f"{name}.db")
        ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
        for paths in runs:
            run_triage(paths, ctx)
        incidents = store.list_incidents()
        assert sum(len(i.alert_ids) for i in incidents) > 1000
        linked = 0
        for listed in incidents:
            incident = store.get_incident(listed.incident_id)
            assert incident is not None
            own = set(incident.alert_ids)
            for link in incident.explanation.links:
                assert set(link.alert_ids) <= own, (name, incident.incident_id, link)
                linked += 1
            assert incident.assessment is not None
            assert set(incident.assessment.cited_alert_ids) <= own
        assert linked > 20


def test_a_later_batch_s_network_alert_on_a_hosts_address_extends_that_hosts_incident(
    tmp_path: Path,
) -> None:
    """Wazuh's agent on web-01 (its address 10.0.0.5) in one sweep, Suricata's alert on
    10.0.0.5 minutes later in the next: the incident remembers web-01's address, and the
    network alert is on web-01 and extends it (it opened an incident "on 10.0.0.5")."""
    from tests.conftest import wazuh_alert

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    shell = wazuh_alert("s", 0, "web-01", 31510, 12, "Web shell: suspicious command", ["web"])
    shell["agent"]["ip"] = "10.0.0.5"
    (inc,) = run_triage([write(tmp_path / "1.ndjson", [shell])], ctx)["incidents"]
    assert inc.addresses == [("10.0.0.5", "web-01")]
    ids = ecs("n", 6, "ET ATTACK_RESPONSE id check returned root", "so-sensor", module="suricata")
    ids |= {"source": {"ip": "10.0.0.5"}, "destination": {"ip": "198.51.100.7"}}
    run_triage([write(tmp_path / "2.ndjson", [ids])], ctx)
    (grown,) = store.list_incidents()
    assert grown.incident_id == inc.incident_id and grown.alert_ids == ["ws", "an"]
    assert grown.hosts == ["web-01"]


def test_a_rule_routine_on_a_sensor_stays_its_background_in_a_later_quarter_hour(
    tmp_path: Path,
) -> None:
    """A day of a policy rule every workstation trips, then a quarter hour of it: the store's
    windows count it under the sensor it is judged on, so the quarter hour's alerts extend
    the sensor's background incident, not one incident per workstation; a rare exploit in
    that quarter hour is on the machine it saw."""

    def seen(i: str, minutes: float, rule: str, source: str, destination: str) -> dict:
        doc = ecs(i, minutes, rule, "ids-01", module="suricata")
        return doc | {"source": {"ip": source}, "destination": {"ip": destination}}

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    rule = "ET INFO Dropbox DNS lookup"
    day = [seen(f"p{k}", k * 3, rule, f"10.0.1.{k % 60}", "10.0.0.2") for k in range(480)]
    (background,) = run_triage([write(tmp_path / "1.ndjson", day)], ctx)["incidents"]
    assert background.hosts == ["ids-01"] and background.explanation.background
    later = [seen(f"q{k}", 1440 + k * 3, rule, f"10.0.1.{k + 7}", "10.0.0.2") for k in range(5)]
    later.append(seen("x", 1445, "ET EXPLOIT Struts RCE", "198.51.100.7", "10.0.1.7"))
    run_triage([write(tmp_path / "2.ndjson", later)], ctx)
    incidents = {i.incident_id: i for i in store.list_incidents()}
    assert len(incidents) == 2
    grown = incidents[background.incident_id]
    assert {f"aq{k}" for k in range(5)} <= set(grown.alert_ids)
    (exploit,) = [i for i in incidents.values() if i.incident_id != background.incident_id]
    assert (exploit.alert_ids, exploit.hosts) == (["ax"], ["10.0.1.7"])


def test_a_young_stores_hourly_batches_learn_a_rule_routine_on_a_sensor(tmp_path: Path) -> None:
    """From a new store, hour by hour: a policy rule every workstation trips is placed on
    each until the store has watched enough hours, its windows counted under the sensor it is
    judged on all along; then it is the sensor's routine. Counted under each workstation, no
    pair ever had the hours, and it stayed an incident per workstation every hour."""

    def seen(k: int) -> dict:
        doc = ecs(f"p{k}", k * 3, "ET INFO Dropbox DNS lookup", "ids-01", module="suricata")
        return doc | {"source": {"ip": f"10.0.1.{k % 60}"}, "destination": {"ip": "10.0.0.2"}}

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    for hour in range(10):
        batch = [seen(k) for k in range(hour * 20, hour * 20 + 20)]
        run_triage([write(tmp_path / f"{hour}.ndjson", batch)], ctx)
    last = {a for i in store.list_incidents() if i.explanation.background for a in i.alert_ids}
    assert {f"ap{k}" for k in range(180, 200)} <= last


def test_a_playbook_acts_on_the_machine_a_network_alert_saw_not_on_the_sensor(
    tmp_path: Path,
) -> None:
    """Suricata on ids-01 saw 10.0.1.7 tunnel data out over DNS, and Wazuh's agent on host-07
    names 10.0.1.7 its own: the exfiltration playbook's isolation names host-07. It named the
    sensor, whose isolation cuts the SOC's own eyes."""
    from tests.conftest import wazuh_alert

    store = SqliteStore(tmp_path / "v.db")
    ctx = TriageContext(
        store=store, analyst=OfflineAnalyst(), playbooks=load_playbooks(REPO_ROOT / "playbooks")
    )
    tunnel = ecs("t", 0, "ET POLICY DNS tunnel detected", "ids-01", module="suricata")
    tunnel |= {"source": {"ip": "10.0.1.7"}, "destination": {"ip": "198.51.100.53"}}
    tunnel["event"]["severity"] = 1  # Suricata's priority 1: high
    pam = wazuh_alert("p", 3, "host-07", 5501, 3, "PAM: Login session opened.", ["pam"])
    pam["agent"]["ip"] = "10.0.1.7"
    state = run_triage([write(tmp_path / "1.ndjson", [tunnel, pam])], ctx)
    isolations = [p for p in state["proposals"] if p.action == "isolate_host"]
    assert isolations and {p.args["host"] for p in isolations} == {"host-07"}
