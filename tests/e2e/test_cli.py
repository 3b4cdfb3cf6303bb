"""The `vigie` command as a user runs it: a real process, a real SQLite store, real files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.analyst import link_text
from agent.models import args_hash
from agent.store import open_store
from tests.conftest import REPO, brute_force, ecs, free_port
from tests.fakes.mistral_standin import MistralStandIn, sequence
from tests.unit.test_approvals import proposal

VIGIE = [sys.executable, "-m", "agent.cli"]


def vigie(
    tmp_path: Path, *args: str, timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess[str]:
    """`vigie` with its store in `tmp_path` and these VIGIE_* settings (offline analyst)."""
    env = {**os.environ, "VIGIE_STORE_URL": f"sqlite:///{tmp_path}/v.db", "COLUMNS": "200"}
    env.pop("MISTRAL_API_KEY", None)
    env |= settings
    return subprocess.run(
        [*VIGIE, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,  # never a terminal: a command that would ask, says instead
    )


@pytest.fixture
def mixed_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """Valid alerts of three sources mixed with five kinds of bad documents."""
    valid = [
        brute_force(),
        ecs(2, 3, "Web shell", "web", severity="high", tactic="TA0003"),
        ecs(3, 600, "Scheduled task", "ws2"),
        {
            "timestamp": "2026-01-05T09:05:00.000+0000",
            "id": "w1",
            "rule": {"level": 10, "description": "sshd: brute force", "id": "5712"},
            "agent": {"name": "web"},
            "data": {"srcip": "203.0.113.9"},
        },
        {
            "@timestamp": "2026-01-05T09:06:00Z",
            "kibana.alert.uuid": "k1",
            "kibana.alert.rule.name": "Privilege escalation via pkexec",
            "kibana.alert.severity": "critical",
            "host": {"name": "web"},
        },
    ]
    lines = [json.dumps(d) for d in valid]
    lines.insert(1, '{"truncated": ')
    lines.insert(3, json.dumps({"rule": {"name": "no timestamp"}}))
    lines.insert(4, json.dumps(ecs(9, 0, "dup") | {"@timestamp": ["not", "a", "time"]}))
    lines.insert(5, "[1, 2, 3]")
    lines.append(json.dumps(valid[0]))  # the same alert id again
    f = tmp_path / "mixed.ndjson"
    f.write_text("\n".join(lines) + "\n")
    return f, ["a1", "a2", "a3", "w1", "k1"]


def test_mixed_file_every_valid_alert_in_exactly_one_incident(tmp_path: Path, mixed_file) -> None:
    path, valid_ids = mixed_file
    out = tmp_path / "incidents.jsonl"
    r = vigie(tmp_path, "triage", "--input", str(path), "--output", str(out))
    assert r.returncode == 0, r.stderr
    incidents = [json.loads(line) for line in out.read_text().splitlines()]
    placed = [a for inc in incidents for a in inc["alert_ids"]]
    assert sorted(placed) == sorted(valid_ids)  # none lost, none twice
    for inc in incidents:
        assert set(inc) >= {
            "incident_id",
            "priority",
            "alert_ids",
            "title",
            "assessment",
            "proposal_ids",
        }
        assert inc["assessment"]["analyst"] == "offline"
        assert set(inc["assessment"]["cited_alert_ids"]) <= set(inc["alert_ids"])
    assert [i["priority"] for i in incidents] == sorted(
        (i["priority"] for i in incidents), reverse=True
    )
    assert "5 document(s) rejected" in r.stdout
    for reason in (
        "invalid JSON",
        "unrecognised document",
        "must be a string or a number",
        "expected a JSON object",
        "duplicate alert id",
    ):
        assert reason in r.stdout, reason


def test_a_gzip_export_triages_as_its_content(tmp_path: Path, mixed_file) -> None:
    """Wazuh's rotated `alerts.json.gz` as it is: the same incidents and the same five
    rejections as the uncompressed file (every line was a dead letter of binary noise)."""
    path, valid_ids = mixed_file
    packed = tmp_path / "mixed.ndjson.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    out = tmp_path / "incidents.jsonl"
    r = vigie(tmp_path, "triage", "-i", str(packed), "-o", str(out))
    assert r.returncode == 0, r.stderr
    placed = [a for line in out.read_text().splitlines() for a in json.loads(line)["alert_ids"]]
    assert sorted(placed) == sorted(valid_ids)
    assert "5 document(s) rejected" in r.stdout
    listed = vigie(tmp_path, "rejected", "--json")
    assert {json.loads(line)["source"] for line in listed.stdout.splitlines()} == {str(packed)}


def test_a_gzip_file_is_decompressed_for_the_parallel_reader(tmp_path: Path, mixed_file) -> None:
    """A rotated Wazuh day was read by one process, the parallel reader cutting plain files
    only: 634,000 alerts gzipped took 17.7 s, and 13.8 s decompressed first. A stream broken
    part way is left to its own reading, which says from which line nothing was read. A
    UTF-16 file is copied as UTF-8 likewise."""
    from agent.cli import _spooled
    from connectors.files import layout_of

    path, _ = mixed_file
    packed = tmp_path / "a.json.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    broken = tmp_path / "b.json.gz"
    broken.write_bytes(packed.read_bytes()[:-20])
    spool = tmp_path / "spool"
    spool.mkdir()
    files, names = _spooled([packed, broken, path], spool, unzip=True)
    assert files[0].read_bytes() == path.read_bytes() and layout_of(files[0]) == "ndjson"
    assert files[1:] == [broken, path] and names == {str(files[0]): str(packed)}
    assert list(spool.iterdir()) == [files[0]]  # nothing left of the broken one's copy
    assert _spooled([packed], tmp_path, unzip=False) == ([packed], {})  # one read worker
    wide = tmp_path / "powershell.json"  # Windows PowerShell 5's `>`: UTF-16
    wide.write_text(path.read_text(), encoding="utf-16")
    (copy,), _ = _spooled([wide], spool, unzip=True)
    assert (
        copy.read_bytes() == path.read_bytes()
        and layout_of(copy) == "ndjson"
        and layout_of(wide) != "ndjson"
    )


def test_rejected_documents_are_listed_newest_first_with_why(tmp_path: Path, mixed_file) -> None:
    """The store kept every rejection, but only a run's own summary showed them: those of a
    webhook or a sweep could not be read at all. Their excerpts are the sender's text."""
    path, _ = mixed_file
    assert vigie(tmp_path, "triage", "--input", str(path)).returncode == 0
    evil = tmp_path / "evil.ndjson"
    raw = '{"rule": "\x1b[2J\x1b]0;pwned\x07",'  # JSON escapes them; a broken line does not
    evil.write_text(raw + "\n" + json.dumps(brute_force("ok")) + "\n")
    assert vigie(tmp_path, "triage", "--input", str(evil)).returncode == 0
    listed = vigie(tmp_path, "rejected", "--json", "--limit", "100")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(Path(r["source"]).name, r["line"]) for r in rows] == [
        ("evil.ndjson", 1), ("mixed.ndjson", 10), ("mixed.ndjson", 6), ("mixed.ndjson", 5),
        ("mixed.ndjson", 4), ("mixed.ndjson", 2),
    ]  # fmt: skip
    assert all(r["at"] and r["reason"] for r in rows)
    assert rows[-1]["excerpt"] == '{"truncated": '  # the line, without its line break
    shown = vigie(tmp_path, "rejected", "--limit", "2")
    assert shown.returncode == 0 and "Rejected documents, newest first: 1-2 of 6" in shown.stdout
    assert "invalid JSON" in shown.stdout and "duplicate alert id" in shown.stdout
    assert "\\x1b[2J" in shown.stdout
    assert not {"\x1b", "\x07"} & set(shown.stdout)
    past = vigie(tmp_path, "rejected", "--offset", "6")
    assert past.returncode == 0 and "no rejected document past the first 6" in past.stdout
    many = tmp_path / "many.ndjson"
    many.write_text("{bad\n" * 7 + json.dumps(brute_force("ok2")) + "\n")
    r = vigie(tmp_path, "triage", "--input", str(many))  # its summary shows five, and says so
    assert r.returncode == 0 and "`vigie rejected --limit 7` lists them all" in r.stdout


def test_standard_input_is_read_as_a_file(tmp_path: Path, mixed_file) -> None:
    """`zcat alerts.json.gz | vigie triage -i -` or `-i <(ssh host cat alerts.json)`: "input
    not found: -" before. Compressed or not, the same incidents as the file."""
    path, valid_ids = mixed_file
    out = tmp_path / "incidents.jsonl"
    env = {**os.environ, "VIGIE_STORE_URL": f"sqlite:///{tmp_path}/v.db", "COLUMNS": "200"}
    r = subprocess.run(
        [*VIGIE, "triage", "-i", "-", "-o", str(out)],
        input=gzip.compress(path.read_bytes()),
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert b"5 document(s) rejected" in r.stdout and b"stdin:" in r.stdout
    listed = subprocess.run([*VIGIE, "rejected", "--json"], env=env, capture_output=True)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["source"] for r in rows} == {"stdin"}, rows  # not a copy gone with the run
    placed = [a for line in out.read_text().splitlines() for a in json.loads(line)["alert_ids"]]
    assert sorted(placed) == sorted(valid_ids)
    assert not list(Path(tempfile.gettempdir()).glob("vigie-piped-*/stdin"))  # nothing left
    twice = subprocess.run([*VIGIE, "triage", "-i", "-", "-i", "-"], input=b"", env=env,
                           capture_output=True, timeout=120)  # fmt: skip
    assert twice.returncode == 2 and b"a stream can be read once" in twice.stderr


def test_dash_output_writes_the_incidents_to_stdout_and_the_summary_to_stderr(
    tmp_path: Path, mixed_file
) -> None:
    """`vigie triage -i a.json -o - | jq`: `-o -` wrote a file named "-"."""
    path, valid_ids = mixed_file
    env = {**os.environ, "VIGIE_STORE_URL": f"sqlite:///{tmp_path}/v.db", "COLUMNS": "200"}
    r = subprocess.run([*VIGIE, "triage", "-i", str(path), "-o", "-"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(a for inc in lines for a in inc["alert_ids"]) == sorted(valid_ids)
    assert "5 document(s) rejected" in r.stderr and not (tmp_path / "-").exists()


def test_a_file_named_twice_is_read_once(tmp_path: Path, mixed_file) -> None:
    """Overlapping globs, or a file and a symlink to it: the second reading made every alert
    of the file a "duplicate alert id" dead letter (1,187 for the demo's Wazuh file)."""
    path, valid_ids = mixed_file
    (tmp_path / "link.ndjson").symlink_to(path)
    out = tmp_path / "incidents.jsonl"
    r = vigie(tmp_path, "triage", "-i", str(path), "-i", str(tmp_path / "link.ndjson"),
              "-i", str(path), "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("again: read once") == 2
    assert "5 document(s) rejected" in r.stdout  # the file's own five, not its alerts again
    placed = [a for line in out.read_text().splitlines() for a in json.loads(line)["alert_ids"]]
    assert sorted(placed) == sorted(valid_ids)


@pytest.mark.parametrize("where", ["a-file/incidents.jsonl", "."])
def test_an_output_that_cannot_be_written_fails_before_the_run(
    tmp_path: Path, mixed_file, where: str
) -> None:
    """A bad --output ended a whole run (stored) in a FileExistsError or IsADirectoryError
    traceback; it is now refused first, with the reason."""
    path, _ = mixed_file
    (tmp_path / "a-file").write_text("")
    out = tmp_path / where
    r = vigie(tmp_path, "triage", "--input", str(path), "--output", str(out))
    assert r.returncode == 2 and f"cannot write {out}" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "v.db").exists()


def test_a_file_triaged_again_is_not_an_error_and_says_where_its_alerts_are(
    tmp_path: Path, mixed_file
) -> None:
    """Re-running a day's file (after a crash, by a cron) failed with "no valid alert in the
    input" and exit 2: every alert was valid, and already placed by the first run."""
    path, valid_ids = mixed_file
    assert vigie(tmp_path, "triage", "--input", str(path)).returncode == 0
    again = vigie(tmp_path, "triage", "--input", str(path))
    assert again.returncode == 0, again.stderr
    assert "no valid alert" not in again.stderr
    assert f"{len(valid_ids)} alert(s) already in" in again.stdout
    assert "from an earlier run: left there" in again.stdout


def test_a_file_over_16_mb_read_by_workers_triages_as_one_process_does(
    tmp_path: Path, mixed_file
) -> None:
    """Above 16 MB the CLI starts reader workers before it imports LangGraph: the incidents and
    the rejected documents must be those of a single process."""
    bad, _ = mixed_file  # its five bad documents, at the start
    pad = "x" * 2000  # long alerts: 16 MB in 8,000 lines
    lines = bad.read_text().splitlines() + [
        json.dumps({**ecs(f"b{i}", i * 0.2, f"Rule {i % 9}", f"h{i % 7}"), "note": pad})
        for i in range(8000)
    ]
    big = tmp_path / "big.ndjson"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > 16 << 20

    def triage(workers: str) -> tuple[str, str]:
        run_dir = tmp_path / workers
        run_dir.mkdir()
        out = run_dir / "incidents.jsonl"
        r = vigie(
            run_dir,
            "triage",
            "-i",
            str(big),
            "-o",
            str(out),
            timeout=300,
            VIGIE_READ_WORKERS=workers,
        )
        assert r.returncode == 0, r.stderr
        rejected = r.stdout[r.stdout.index("document(s) rejected") - 3 :]
        return out.read_text(), rejected

    one, rejected_one = triage("1")
    two, rejected_two = triage("2")
    assert len(one.splitlines()) > 5 and one == two
    assert "5 document(s) rejected" in rejected_one and rejected_one == rejected_two


def test_only_bad_input_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.ndjson"
    f.write_text("not json\n{}\n")
    r = vigie(tmp_path, "triage", "--input", str(f))
    assert r.returncode == 2
    assert "no valid alert" in r.stderr and "2 document(s) rejected" in r.stdout
    # No empty table, no empty breakdown by priority band.
    assert "Top 0" not in r.stdout and "0 alerts -> 0 incidents in" in r.stdout


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    r = vigie(tmp_path, "triage", "--input", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "input not found" in r.stderr
    (tmp_path / "exports").mkdir()  # a folder was "not found" too, which it plainly is not
    r = vigie(tmp_path, "triage", "--input", str(tmp_path / "exports"))
    assert r.returncode == 2 and "input is a folder, not a file" in r.stderr


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    """`-o` naming an input file replaced the day's alerts with the incidents at the run's end."""
    f = tmp_path / "alerts.ndjson"
    f.write_text(json.dumps(brute_force()) + "\n")
    before = f.read_bytes()
    same = tmp_path / "today.ndjson"
    same.symlink_to(f)  # another name for the same file
    r = vigie(tmp_path, "triage", "-i", str(f), "-o", str(same))
    assert r.returncode == 2 and "would overwrite an input" in r.stderr
    assert f.read_bytes() == before


def test_triage_says_where_the_model_is_and_what_it_assessed(tmp_path: Path) -> None:
    """With a Mistral key set, `vigie triage` printed "Mistral analyst not available in this
    build; using the offline analyst" and then sent the incidents to the model: it now says
    which model, where, and that entities are pseudonymised, before anything is sent, and how
    many incidents the model assessed. Here the model answers 500: none, and the stand-in
    saw the requests the line announced."""
    server = MistralStandIn(sequence((500, {"message": "down"}, 0)))
    try:
        demo = str(REPO / "examples/demo-elastic.ndjson")
        r = vigie(
            tmp_path,
            "triage",
            "-i",
            demo,
            MISTRAL_API_KEY="test-key",
            VIGIE_MISTRAL_URL=server.url.replace("://", "://vigie:LEAK@"),  # a proxy's login
            VIGIE_LLM_MAX_RETRY_SECONDS="1",
        )
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert "not available in this build" not in r.stderr + r.stdout
    assert f"analyst: Mistral mistral-small-latest at {server.url}" in r.stderr
    assert "LEAK" not in r.stderr + r.stdout
    assert "their entities pseudonymised" in r.stderr
    assert server.requests  # the model was asked, as announced
    assert "the model assessed 0 of the " in r.stdout


def test_approve_records_the_approver_and_runs_the_dry_run_once(tmp_path: Path) -> None:
    demo = [str(REPO / "examples/demo-elastic.ndjson"), str(REPO / "examples/demo-wazuh.json")]
    r = vigie(tmp_path, "triage", "--input", demo[0], "--input", demo[1])
    assert r.returncode == 0, r.stderr
    listed = vigie(tmp_path, "approvals", "list", "--json", "--status", "pending")
    pending = [json.loads(line) for line in listed.stdout.splitlines()]
    block = next(p for p in pending if p["action"] == "block_ip" and p["risk"] == "medium")
    isolate = next(p for p in pending if p["action"] == "isolate_host")

    self_approval = vigie(tmp_path, "approvals", "approve", block["proposal_id"], "--as", "vigie")
    assert self_approval.returncode == 1 and "system identity" in self_approval.stderr
    wrong = vigie(
        tmp_path,
        "approvals",
        "approve",
        block["proposal_id"],
        "--as",
        "alice",
        "--hash",
        "deadbeefdeadbeef",
    )
    assert wrong.returncode == 1 and "other arguments" in wrong.stderr

    ok = vigie(
        tmp_path,
        "approvals",
        "approve",
        block["proposal_id"],
        "--as",
        "alice",
        "--hash",
        block["args_hash"][:12],
        "--comment",
        "confirmed attacker",
        "--json",
    )
    assert ok.returncode == 0, ok.stderr
    done = json.loads(ok.stdout)
    assert done["state"] == "succeeded" and done["result"]["dry_run"] is True
    assert done["result"]["request"]["json"]["ip"] == block["args"]["ip"]
    assert [a["approver"] for a in done["approvals"]] == ["alice"]
    again = vigie(tmp_path, "approvals", "approve", block["proposal_id"], "--as", "bob")
    assert again.returncode == 1 and "not pending" in again.stderr

    first = vigie(
        tmp_path, "approvals", "approve", isolate["proposal_id"], "--as", "alice", "--json"
    )
    assert json.loads(first.stdout)["state"] == "pending"  # high risk: four eyes
    second = vigie(
        tmp_path, "approvals", "approve", isolate["proposal_id"], "--as", "bob", "--json"
    )
    assert json.loads(second.stdout)["state"] == "succeeded"

    from agent.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "v.db")
    for pid in (block["proposal_id"], isolate["proposal_id"]):
        kinds = [e.kind for e in store.audit(pid)]
        assert kinds.count("proposal.executing") == 1 and kinds.count("proposal.succeeded") == 1
    assert vigie(tmp_path, "audit", "verify").returncode == 0
    # The trail could be verified but not read from the command line.
    trail = vigie(tmp_path, "audit", "show", isolate["proposal_id"], "--json")
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [e["seq"] for e in events] == [e.seq for e in store.audit(isolate["proposal_id"])]
    assert [(e["actor"], e["kind"]) for e in events][:3] == [
        ("vigie", "proposal.created"), ("alice", "proposal.pending"), ("bob", "proposal.approved"),
    ]  # fmt: skip
    shown = vigie(tmp_path, "audit", "show", isolate["proposal_id"], "--limit", "2")
    assert shown.returncode == 0 and "proposal.created" in shown.stdout
    assert f"more: --after {events[1]['seq']}" in shown.stdout
    rest = vigie(tmp_path, "audit", "show", isolate["proposal_id"], "--json",
                 "--after", str(events[1]["seq"]))  # fmt: skip
    assert [json.loads(line)["seq"] for line in rest.stdout.splitlines()] == [
        e["seq"] for e in events[2:]
    ]


def test_in_production_a_decision_at_the_terminal_needs_the_persons_own_token(
    tmp_path: Path,
) -> None:
    """`--as` was a typed name: one person approved the demo's host isolation twice, as
    `alice` and as `bob`, and it ran; an analyst tuned noise out as a lead would. In
    production the command line now proves who decides with that person's API token, and
    their role bounds what they may do, as the API's does."""
    alice, bob, carol = "a" * 24, "b" * 24, "c" * 24
    production = {
        "VIGIE_ENV": "production",
        "VIGIE_APPROVERS": "alice:lead,bob:lead,carol:analyst",
        "VIGIE_API_TOKENS": f"alice:lead:{alice},bob:lead:{bob},carol:analyst:{carol}",
    }
    demo = [str(REPO / "examples/demo-elastic.ndjson"), str(REPO / "examples/demo-wazuh.json")]
    assert vigie(tmp_path, "triage", "-i", demo[0], "-i", demo[1], **production).returncode == 0
    listed = vigie(tmp_path, "approvals", "list", "--json", "--status", "pending", **production)
    pending = [json.loads(line) for line in listed.stdout.splitlines()]
    isolate = next(p for p in pending if p["action"] == "isolate_host")["proposal_id"]

    def approve(who: str, **env: str) -> subprocess.CompletedProcess[str]:
        return vigie(tmp_path, "approvals", "approve", isolate, "--as", who, "--json",
                     **production, **env)  # fmt: skip

    untokened = approve("alice")
    assert untokened.returncode == 1 and "set VIGIE_TOKEN to your API token" in untokened.stderr
    assert approve("alice", VIGIE_TOKEN="d" * 24).returncode == 1  # nobody's token
    first = approve("alice", VIGIE_TOKEN=alice)
    assert first.returncode == 0 and json.loads(first.stdout)["state"] == "pending", first.stderr
    posing = approve("bob", VIGIE_TOKEN=alice)
    assert posing.returncode == 1 and "alice's token, not bob's" in posing.stderr
    incident = json.loads(first.stdout)["incident_id"]
    closing = vigie(tmp_path, "incidents", "close", incident, "--as", "bob",
                    "--verdict", "benign", "--reason", "r", **production)  # fmt: skip
    assert closing.returncode == 1 and "set VIGIE_TOKEN" in closing.stderr  # not closed
    tuning = vigie(tmp_path, "incidents", "close", incident, "--as", "carol", "--tune",
                   "--verdict", "benign", "--reason", "r",
                   **production, VIGIE_TOKEN=carol)  # fmt: skip
    assert tuning.returncode == 1 and "tuning needs the" in tuning.stderr  # an analyst's token
    from agent.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "v.db")
    assert [a.approver for a in store.get_proposal(isolate).approvals] == ["alice"]
    assert store.get_proposal(isolate).state.value == "pending"
    second = approve("bob", VIGIE_TOKEN=bob)
    assert json.loads(second.stdout)["state"] == "succeeded", second.stderr
    assert vigie(tmp_path, "approvals", "list", **production).returncode == 0  # reading: no token


def test_a_proposal_is_edited_at_the_terminal(tmp_path: Path) -> None:
    """Edits were the web page's alone. `approvals edit` makes the new proposal, typed as
    the arguments it replaces; what is no NAME=VALUE, no number or not editable is refused."""
    demo = str(REPO / "examples/demo-elastic.ndjson")
    assert vigie(tmp_path, "triage", "--input", demo).returncode == 0
    listed = vigie(tmp_path, "approvals", "list", "--json", "--status", "pending")
    block = next(json.loads(x) for x in listed.stdout.splitlines() if '"block_ip"' in x)
    pid = block["proposal_id"]
    for bad, said in (
        ("duration_hours", "is not NAME=VALUE"),
        ("duration_hours=soon", "is not a whole number"),
        ("target=elsewhere", "target cannot be edited"),
    ):
        r = vigie(tmp_path, "approvals", "edit", pid, "--as", "alice", "--set", bad)
        assert r.returncode == 1 and said in r.stderr, (bad, r.stderr)
    r = vigie(tmp_path, "approvals", "edit", pid, "--as", "alice", "--json",
              "--set", "duration_hours=4", "--set", "ip=198.51.100.4")  # fmt: skip
    assert r.returncode == 0, r.stderr
    new = json.loads(r.stdout)
    assert new["args"] == {**block["args"], "duration_hours": 4, "ip": "198.51.100.4"}
    assert new["state"] == "pending" and new["proposal_id"] != pid


def test_reject_and_playbook_validation(tmp_path: Path) -> None:
    r = vigie(tmp_path, "playbooks", "validate")
    assert r.returncode == 0 and "playbook(s) valid" in r.stdout
    bad = tmp_path / "pb"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\ndescription: d\nmatch: {tactics: [TA0002]}\nsteps: []\n")
    r = vigie(tmp_path, "playbooks", "validate", str(bad))
    assert r.returncode == 1 and "invalid playbooks" in r.stderr


def test_critical_assets_from_the_settings_lift_their_incidents(tmp_path: Path) -> None:
    """VIGIE_CRITICAL_ASSETS reaches the ranking: twin alerts, one on a domain controller."""
    f = tmp_path / "twins.ndjson"
    f.write_text(
        "\n".join(
            json.dumps(ecs(i, i * 600, "Suspicious service", h))
            for i, h in enumerate(["ws1", "dc01"])
        )
        + "\n"
    )
    ranked = {}
    for listed in ("", "dc*"):
        run_dir = tmp_path / f"listed-{bool(listed)}"
        run_dir.mkdir()
        out = run_dir / "incidents.jsonl"
        run = vigie(run_dir, "triage", "-i", str(f), "-o", str(out), VIGIE_CRITICAL_ASSETS=listed)
        assert run.returncode == 0, run.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        ranked[listed] = {x["alert_ids"][0]: x["priority"] for x in lines}
    assert ranked[""]["a0"] == ranked[""]["a1"]  # twins: the same priority unlisted
    assert ranked["dc*"]["a1"] == pytest.approx(ranked["dc*"]["a0"] + 10)
    assert ranked["dc*"]["a1"] == pytest.approx(ranked[""]["a1"] + 10)


def escalation(tmp_path: Path, rule: str, host: str, user: str) -> Path:
    """A file of one privilege escalation by `user` on `host`: the compromised-account playbook
    proposes to disable the user, so the name reaches the approval queue as an argument."""
    doc = ecs(
        "x1",
        0,
        rule,
        host,
        severity="critical",
        tactic="TA0004",
        technique="T1548",
        user={"name": user},
    )
    f = tmp_path / "escalation.ndjson"
    f.write_text(json.dumps(doc) + "\n")
    return f


def test_alert_content_prints_as_text_never_as_terminal_markup(tmp_path: Path) -> None:
    """Rule, host and user names are attacker-controlled: rich markup in them must neither
    restyle the terminal nor crash it ("[/]" closes nothing), in the summary, the approval
    queue or a decision."""
    user = "[/]svc[bold red] approved[/]"  # lower case: account names are read so
    f = escalation(tmp_path, "Privilege escalation [/] via pkexec", "web[/]01", user)
    triaged = vigie(tmp_path, "triage", "--input", str(f))
    assert triaged.returncode == 0, triaged.stderr
    assert "Privilege escalation [/] via pkexec on web[/]01" in triaged.stdout
    listed = vigie(tmp_path, "approvals", "list")
    assert listed.returncode == 0, listed.stderr
    assert "[bold red]" in listed.stdout and "Traceback" not in listed.stderr
    pending = vigie(tmp_path, "approvals", "list", "--json", "--status", "pending")
    disable = next(
        p for p in map(json.loads, pending.stdout.splitlines()) if p["action"] == "disable_user"
    )
    assert disable["args"]["user"] == user
    decided = vigie(tmp_path, "approvals", "approve", disable["proposal_id"], "--as", "alice")
    assert decided.returncode == 0, decided.stderr
    assert json.dumps(user)[1:-1] in decided.stdout  # the arguments, exactly as bound


def test_invalid_settings_are_refused_on_readable_lines(tmp_path: Path) -> None:
    """A page size of 0 was accepted, and a settings error printed its line breaks as \\x0a
    (the escaping meant for input quoted in errors)."""
    r = vigie(
        tmp_path, "sweep", "--once", VIGIE_ES_URL="http://127.0.0.1:1", VIGIE_ES_PAGE_SIZE="0"
    )
    assert r.returncode == 2 and "invalid settings" in r.stderr
    assert "\n  VIGIE_ES_PAGE_SIZE='0': Input should be greater than or equal to 1" in r.stderr
    assert "\\x0a" not in r.stderr and "errors.pydantic.dev" not in r.stderr


def test_a_misspelt_or_out_of_range_setting_is_refused_with_what_was_meant(tmp_path: Path) -> None:
    """A misspelt variable was ignored, its setting left at its default: with
    VIGIE_MISTRAL_ENDPOINT for VIGIE_MISTRAL_URL, incidents would go to Mistral's API instead
    of the model on the premises. A TTL of -5 s queued proposals born expired; each error
    quoted pydantic's type codes and links, and a token's value. A search server's URL without
    a port ended the first sweep in a traceback (the OpenSearch client took "notaurl" for a
    host name)."""
    f = escalation(tmp_path, "Sudo to root", "web01", "bob")
    r = vigie(tmp_path, "triage", "--input", str(f), VIGIE_MISTRAL_ENDPOINT="http://llm:8000",
              VIGIE_PSEUDONYMISE="false")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "VIGIE_MISTRAL_ENDPOINT is not a setting (did you mean" in r.stderr
    assert "VIGIE_MISTRAL_URL?" in r.stderr
    assert "VIGIE_PSEUDONYMISE is not a setting (did you mean VIGIE_PSEUDONYMIZE?)" in r.stderr
    assert not (tmp_path / "v.db").exists()  # refused before anything ran
    r = vigie(tmp_path, "triage", "--input", str(f), VIGIE_APPROVAL_TTL_SECONDS="-5",
              VIGIE_OUTBOUND_WEBHOOKS='[{"url": "https://soar", "secret": "whsec_LEAK"}, 3]',
              VIGIE_READ_WORKERS="-1")  # fmt: skip
    assert r.returncode == 2
    assert "VIGIE_APPROVAL_TTL_SECONDS='-5': Input should be greater than 0" in r.stderr
    assert "VIGIE_READ_WORKERS='-1': Input should be greater than or equal to 0" in r.stderr
    assert "VIGIE_OUTBOUND_WEBHOOKS: Input should be a valid dictionary" in r.stderr
    assert "LEAK" not in r.stderr and not (tmp_path / "v.db").exists()
    r = vigie(tmp_path, "triage", "--input", str(f), VIGIE_TARGETS='{"edr": {"token": "LEAK"')
    assert r.returncode == 2 and "VIGIE_TARGETS is not valid JSON: " in r.stderr
    assert "LEAK" not in r.stderr and "EnvSettingsSource" not in r.stderr
    r = vigie(tmp_path, "sweep", "--once", VIGIE_ES_URL="https://vigie:LEAK@es.example.org",
              VIGIE_MISTRAL_URL="localhost:8000")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "LEAK" not in r.stderr
    assert "VIGIE_ES_URL: no port: write it, e.g. https://es.example.org:9200" in r.stderr
    assert "VIGIE_MISTRAL_URL: not an http:// or https:// URL with a host" in r.stderr
    hooks = json.dumps(
        [
            {"url": "https://soar.example/hook"},
            {"url": "ftp://x", "secret": "x"},
            {"url": "https://soar.example/h2", "secret": "whsec_not base64!"},
        ]
    )
    targets = json.dumps({"edr": {"url": "edr.example:443", "token": "LEAK"}})
    r = vigie(tmp_path, "triage", "--input", str(f), VIGIE_OUTBOUND_WEBHOOKS=hooks,
              VIGIE_TARGETS=targets)  # fmt: skip
    assert r.returncode == 2 and "LEAK" not in r.stderr and "not base64" not in r.stderr
    said = [line.strip() for line in r.stderr.splitlines()]
    assert "VIGIE_OUTBOUND_WEBHOOKS: Field required" in said  # the first hook's secret
    assert "VIGIE_OUTBOUND_WEBHOOKS: not an http:// or https:// URL with a host" in said
    assert any(line.startswith("VIGIE_OUTBOUND_WEBHOOKS: not a Standard Webhooks secret")
               for line in said)  # fmt: skip
    assert "VIGIE_TARGETS: not an http:// or https:// URL with a host" in said
    r = vigie(tmp_path, "triage", "--input", str(f), VIGIE_APPROVAL_TTL_SECONDS="60")
    assert r.returncode == 0, r.stderr


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    """An unknown scheme or a path that cannot hold a database ended in a traceback."""
    (tmp_path / "a-file").write_text("")
    for url, says in (
        ("postgres://vigie:LEAK@db/vigie", "unsupported store URL (postgres:...)"),
        (f"sqlite:///{tmp_path}/a-file/vigie.db", "cannot open the SQLite store"),
        (f"sqlite:///{tmp_path}", "cannot open the SQLite store"),  # a folder
    ):
        r = vigie(tmp_path, "incidents", "list", VIGIE_STORE_URL=url)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, url
        assert "LEAK" not in r.stderr  # the password in the URL


def test_a_store_that_is_down_is_one_line_saying_so_not_a_traceback(tmp_path: Path) -> None:
    """A Redis store out of reach raised its Transient error out of `vigie incidents list`,
    `vigie approvals list`, ...: a traceback. Exit 1: trying again may work."""
    down = f"redis://:LEAK@127.0.0.1:{free_port()}/0"
    for command in (("incidents", "list"), ("approvals", "list"), ("incidents", "show", "I-1")):
        r = vigie(tmp_path, *command, VIGIE_STORE_URL=down)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (command, r.stderr)
        assert "error: store unavailable" in r.stderr and "try again once it is back" in r.stderr
        assert "LEAK" not in r.stderr


def test_an_error_quoting_input_prints_it_as_text(tmp_path: Path) -> None:
    missing = tmp_path / "alerts[/]today.ndjson"
    r = vigie(tmp_path, "triage", "--input", str(missing))
    assert r.returncode == 2 and f"input not found: {missing}" in r.stderr


def test_escape_sequences_in_alerts_do_not_reach_the_terminal(tmp_path: Path) -> None:
    """An ESC or 8-bit CSI in a rule or user name could clear the analyst's screen or retitle
    the window: the terminal gets them as visible \\xNN. Such a user name is no longer
    proposed as an argument; a store written before that still lists it as text."""
    f = escalation(tmp_path, "Evil \x1b[2J\x1b]0;pwned\x07 rule", "web01", "\x9b31mroot")
    triaged = vigie(tmp_path, "triage", "--input", str(f))
    assert triaged.returncode == 0, triaged.stderr
    assert "Evil \\x1b[2J\\x1b]0;pwned\\x07 rule" in triaged.stdout
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    assert not [p for p in store.list_proposals() if "user" in p.args]
    args = {"user": "\x9b31mroot", "target": "directory"}
    now = datetime.now(UTC)
    older = proposal(
        proposal_id="P-older",
        action="disable_user",
        args=args,
        args_hash=args_hash("disable_user", args),
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    store.save_triage([], [], [older], [], actor="vigie")
    store.close()
    listed = vigie(tmp_path, "approvals", "list")
    assert listed.returncode == 0, listed.stderr
    assert "\\x9b31mroot" in listed.stdout
    for out in (triaged.stdout, listed.stdout):
        assert not {"\x1b", "\x9b", "\x07"} & set(out)


def test_alerts_dated_out_of_range_are_dead_letters_and_the_rest_triaged(tmp_path: Path) -> None:
    """The year 1 or 9999 broke correlation's time arithmetic and with it the whole run."""
    stamps = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-01-05T09:00:00Z"]
    f = tmp_path / "dates.ndjson"
    f.write_text(
        "\n".join(
            json.dumps(ecs(i, 0, "Rule", "h1") | {"@timestamp": t}) for i, t in enumerate(stamps)
        )
        + "\n"
    )
    out = tmp_path / "incidents.jsonl"
    r = vigie(tmp_path, "triage", "--input", str(f), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["alert_ids"] for line in out.read_text().splitlines()] == [["a2"]]
    assert "2 document(s) rejected" in r.stdout and "out of range" in r.stdout


def test_a_lone_surrogate_is_a_dead_letter_and_the_rest_triaged(tmp_path: Path) -> None:
    """ "\\ud800" is valid JSON that the stdlib parser decodes and nothing can encode: it
    failed the whole run when its incident was stored. A first line holding one also sends the
    file to the stdlib parser."""
    docs = [ecs(1, 0, "lone \ud800 rule", "h1"), ecs(2, 1, "Rule", "h1", extra="\udfff")]
    docs.append(ecs(3, 2, "Rule", "h2"))
    f = tmp_path / "unicode.ndjson"
    f.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    out = tmp_path / "incidents.jsonl"
    r = vigie(tmp_path, "triage", "--input", str(f), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["alert_ids"] for line in out.read_text().splitlines()] == [["a3"]]
    assert "2 document(s) rejected" in r.stdout and "lone surrogate" in r.stdout


def test_closing_an_incident_with_tune_lowers_the_next_run_of_that_noise(tmp_path: Path) -> None:
    """`vigie incidents close --tune`, then `vigie triage` of the same rule on the same host
    the next day: its rarity is not counted, and the explanation says on whose word."""
    day = [ecs(f"d{i}", i * 7, "Heartbeat missed", f"srv{i % 5}") for i in range(220)]
    first = tmp_path / "first.ndjson"
    first.write_text(
        "\n".join(json.dumps(d) for d in [*day, ecs("x1", 26 * 60, "Odd DNS", "srv3")])
    )
    assert vigie(tmp_path, "triage", "-i", str(first)).returncode == 0
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    (noise,) = [i for i in store.list_incidents(limit=50) if i.title.startswith("Odd DNS")]
    closing = [
        "incidents", "close", noise.incident_id, "--as", "alice",
        "--verdict", "false_positive", "--reason", "resolver migration",
    ]  # fmt: skip
    bad = vigie(tmp_path, *closing[:-4], "--verdict", "maybe", "--reason", "x")
    assert bad.returncode == 2 and "unknown verdict" in bad.stderr
    done = vigie(tmp_path, *closing, "--tune")
    assert done.returncode == 0, done.stderr
    assert "closed as false_positive by alice; 1 rule-host pair(s) tuned until" in done.stdout
    again = vigie(tmp_path, *closing)
    assert again.returncode == 1 and "already closed" in again.stderr
    listed = vigie(tmp_path, "incidents", "tunings")
    assert "odd-dns" in listed.stdout and "resolver migration" in listed.stdout

    later = tmp_path / "later.ndjson"
    later.write_text(json.dumps(ecs("y1", 50 * 60, "Odd DNS", "srv3")))
    out = tmp_path / "out.jsonl"
    assert vigie(tmp_path, "triage", "-i", str(later), "-o", str(out)).returncode == 0
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    inc = store.get_incident(line["incident_id"])
    factors = {f.name: f for f in inc.explanation.priority_factors}
    assert factors["rarity"].points == 0
    assert "false_positive by alice" in factors["tuning"].detail
    untune = ["incidents", "untune", "odd-dns", "srv3", "--as", "bob", "--reason", "mistake"]
    assert vigie(tmp_path, *untune).returncode == 0
    assert vigie(tmp_path, *untune).returncode == 1  # none left to revoke
    assert "0 tuned rule-host pair(s)" in vigie(tmp_path, "incidents", "tunings").stdout
    assert vigie(tmp_path, *closing, "--tune").returncode == 1  # closed once: tune it no more
    reopening = ["incidents", "reopen", noise.incident_id, "--as", "bob", "--reason", "wrong"]
    assert "reopened by bob" in vigie(tmp_path, *reopening).stdout
    assert vigie(tmp_path, *reopening).returncode == 1  # open already
    shown = vigie(tmp_path, "incidents", "show", noise.incident_id).stdout
    assert "Reopened by bob" in shown and "held open until a person closes it" in shown
    assert vigie(tmp_path, *closing).returncode == 0  # and may be closed anew


def test_decisions_closings_and_reopenings_at_the_terminal_reach_the_outbound_webhooks(
    tmp_path: Path,
) -> None:
    """A SOAR following incidents hears what a person typed in a terminal as it hears the API:
    signed, once each."""
    from tests.e2e.test_outbound import OUT_SECRET, Receiver

    receiver = Receiver(fail_first=0)
    hooks = json.dumps([{"url": receiver.url, "secret": OUT_SECRET}])
    demo = [str(REPO / "examples/demo-elastic.ndjson"), str(REPO / "examples/demo-wazuh.json")]
    r = vigie(tmp_path, "triage", "-i", demo[0], "-i", demo[1], VIGIE_OUTBOUND_WEBHOOKS=hooks)
    assert r.returncode == 0, r.stderr
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    assert {e["data"]["incident_id"] for e in receiver.events} == {
        i.incident_id for i in store.list_incidents(limit=1000)
    }
    block = next(p for p in store.list_proposals() if p.action == "block_ip")
    approve = ["approvals", "approve", block.proposal_id, "--as", "alice"]
    assert vigie(tmp_path, *approve, VIGIE_OUTBOUND_WEBHOOKS=hooks).returncode == 0
    other = next(
        p for p in store.list_proposals(incident_id=block.incident_id) if p.state.value == "pending"
    )
    closing = [
        "incidents", "close", block.incident_id, "--as", "bob",
        "--verdict", "false_positive", "--reason", "red team exercise",
    ]  # fmt: skip
    assert vigie(tmp_path, *closing, VIGIE_OUTBOUND_WEBHOOKS=hooks).returncode == 0
    reopening = ["incidents", "reopen", block.incident_id, "--as", "carol", "--reason", "not"]
    assert vigie(tmp_path, *reopening, VIGIE_OUTBOUND_WEBHOOKS=hooks).returncode == 0

    told = [(e["type"], e["data"].get("proposal_id"), e["data"].get("by")) for e in receiver.events]
    assert ("approval.decided", block.proposal_id, "alice") in told
    assert ("approval.decided", other.proposal_id, "bob") in told  # withdrawn by the closing
    closed = [e["data"] for e in receiver.events if e["type"] == "incident.closed"]
    assert [(c["incident_id"], c["verdict"], c["by"]) for c in closed] == [
        (block.incident_id, "false_positive", "bob")
    ]
    assert other.proposal_id in closed[0]["withdrawn_proposals"]
    reopened = [e["data"] for e in receiver.events if e["type"] == "incident.reopened"]
    assert reopened == [{"incident_id": block.incident_id, "by": "carol", "reason": "not"}]
    assert len({e["id"] for e in receiver.events}) == len(receiver.events)


def test_incidents_list_reads_them_in_priority_order_with_what_ranks_each(tmp_path: Path) -> None:
    demo = [str(REPO / "examples/demo-elastic.ndjson"), str(REPO / "examples/demo-wazuh.json")]
    assert vigie(tmp_path, "triage", "-i", demo[0], "-i", demo[1]).returncode == 0
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    ranked = store.list_incidents(limit=1000)
    listed = vigie(tmp_path, "incidents", "list", "--json", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["incident_id"] for r in rows] == [i.incident_id for i in ranked[:5]]
    top = ranked[0]
    assert [(f["name"], f["points"]) for f in rows[0]["why"]] == sorted(
        ((f.name, f.points) for f in top.explanation.priority_factors if f.points > 0),
        key=lambda x: -x[1],
    )[:3]
    table = vigie(tmp_path, "incidents", "list", "--limit", "3").stdout
    assert f"3 of {len(ranked)} open incident(s)" in table and top.incident_id in table
    why = top.leading_factors()[0]
    assert f"{why.name} +{why.points:.0f}" in table

    closing = ["incidents", "close", top.incident_id, "--as", "alice"]
    assert (
        vigie(tmp_path, *closing, "--verdict", "true_positive", "--reason", "ir-7").returncode == 0
    )
    closed = vigie(tmp_path, "incidents", "list", "--status", "closed", "--json").stdout
    assert [json.loads(x)["incident_id"] for x in closed.splitlines()] == [top.incident_id]
    still_open = vigie(tmp_path, "incidents", "list", "--json", "--limit", "1000").stdout
    assert top.incident_id not in still_open
    high = vigie(tmp_path, "incidents", "list", "--status", "any", "--min-priority", "50", "--json")
    assert {json.loads(x)["incident_id"] for x in high.stdout.splitlines()} == {
        i.incident_id for i in ranked if i.priority >= 50
    }
    assert (
        "no open incident at priority 100 or more"
        in vigie(tmp_path, "incidents", "list", "--min-priority", "100").stdout
    )
    on_web = vigie(tmp_path, "incidents", "list", "--status", "any", "--involving", "WEB-01",
                   "--json", "--limit", "1000").stdout  # fmt: skip
    assert [json.loads(x)["incident_id"] for x in on_web.splitlines()] == [
        i.incident_id for i in ranked if "web-01" in i.hosts
    ]
    nobody = vigie(tmp_path, "incidents", "list", "--involving", "[red]nobody")
    assert nobody.returncode == 0 and "no open incident involving [red]nobody" in nobody.stdout
    blank = vigie(tmp_path, "incidents", "list", "--involving", " ")  # found nothing before
    assert blank.returncode == 2 and "--involving needs a host" in blank.stderr
    bad = vigie(tmp_path, "incidents", "list", "--status", "shut")
    assert bad.returncode == 2 and "unknown status 'shut'" in bad.stderr


def test_incidents_show_says_why_it_ranks_and_why_its_alerts_belong_together(
    tmp_path: Path,
) -> None:
    hostile = "Odd [bold red]pwned[/] \x1b[2Jtask"  # rich markup and a clear-screen sequence
    docs = [
        brute_force(1, 0),
        ecs(2, 3, "Web shell", "web", severity="high", tactic="TA0003"),
        ecs(3, 5, hostile, "web", tactic="TA0004"),
        ecs(4, 5.5, hostile, "web", tactic="TA0004"),
    ]
    f = tmp_path / "story.ndjson"
    f.write_text("\n".join(json.dumps(d) for d in docs))
    assert vigie(tmp_path, "triage", "-i", str(f)).returncode == 0
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    inc = store.list_incidents(limit=1)[0]
    assert len(inc.alert_ids) == 4 and inc.explanation.links

    shown = vigie(tmp_path, "incidents", "show", inc.incident_id)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # as read, whatever the table's wrapping
    above = store.count_incidents(status="open", min_priority=inc.priority)
    assert f"Priority {inc.priority:.0f}: {above} open incident(s) at this priority" in text
    for factor in inc.explanation.priority_factors:
        assert f"{factor.name} │ +{factor.points:.1f}" in text
    for link in inc.explanation.links:
        assert f"{link_text(link)} ({len(link.alert_ids)} alert(s)" in text
    assert "Persistence" in text and "Privilege Escalation" in text
    groups = {(g.rule_name, g.count) for g in inc.groups}
    assert ("SSH brute force", 1) in groups and (hostile, 2) in groups
    assert "Odd [bold red]pwned[/] \\x1b[2Jtask" in text  # shown as text, never obeyed
    assert "\x1b" not in shown.stdout
    assert inc.assessment is not None and f"by the {inc.assessment.analyst} analyst" in text

    as_json = vigie(tmp_path, "incidents", "show", inc.incident_id, "--json")
    record = json.loads(as_json.stdout)
    assert record["incident"]["incident_id"] == inc.incident_id
    assert sorted(a["id"] for a in record["alerts"]) == sorted(inc.alert_ids)
    proposed = {p.proposal_id for p in store.list_proposals(incident_id=inc.incident_id)}
    assert proposed and {p["proposal_id"] for p in record["proposals"]} == proposed
    assert {(e["kind"], e["subject"]) for e in record["audit"]} == {
        ("proposal.created", p) for p in proposed
    }

    missing = vigie(tmp_path, "incidents", "show", "INC-nope")
    assert missing.returncode == 1 and "no such incident: INC-nope" in missing.stderr

    closing = ["--as", "alice", "--verdict", "benign", "--reason", "red [team] drill"]
    assert vigie(tmp_path, "incidents", "close", inc.incident_id, *closing).returncode == 0
    after = " ".join(vigie(tmp_path, "incidents", "show", inc.incident_id).stdout.split())
    assert f"{inc.incident_id} · closed ·" in after
    assert "Closed as benign by alice on" in after and "UTC: red [team] drill" in after


def test_several_incidents_closed_in_one_command_each_on_its_own(tmp_path: Path) -> None:
    docs = [ecs(n, 30 + 60 * n, f"New parameter {n}", f"srv{n}") for n in range(3)]
    f = tmp_path / "noise.ndjson"
    f.write_text("\n".join(json.dumps(d) for d in docs))
    assert vigie(tmp_path, "triage", "-i", str(f)).returncode == 0
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    ids = [i.incident_id for i in store.list_incidents(limit=10)]
    closing = ["--as", "alice", "--verdict", "benign", "--reason", "detector learning"]
    first = vigie(tmp_path, "incidents", "close", ids[1], *closing)
    assert first.returncode == 0, first.stderr
    both = vigie(tmp_path, "incidents", "close", ids[0], ids[1], ids[2], "INC-nope", *closing)
    assert both.returncode == 1
    assert f"{ids[0]}: closed as benign by alice" in both.stdout
    assert f"{ids[2]}: closed as benign by alice" in both.stdout
    assert f"not closed: {ids[1]}: " in both.stderr and "INC-nope" in both.stderr
    assert [store.get_incident(i).status for i in ids] == ["closed"] * 3
    assert [e.kind for e in store.audit(ids[1])].count("incident.disposed") == 1


def test_command_options_out_of_range_are_refused(tmp_path: Path) -> None:
    """`vigie worker --queues action` (no such queue) started a worker that waited for tasks
    nobody sends; `vigie triage --top -1` printed "Top -1 of N" and all but the last."""
    r = vigie(tmp_path, "worker", "--queues", "actions,action",
              VIGIE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip
    assert (
        r.returncode == 2 and "unknown queue(s) ['action']: use actions and/or triage" in r.stderr
    )
    f = escalation(tmp_path, "Sudo to root", "web01", "bob")
    r = vigie(tmp_path, "triage", "--input", str(f), "--top", "-1")
    assert r.returncode == 2 and "--top" in r.stderr and not (tmp_path / "v.db").exists()
    for option in (("--port", "0"), ("--workers", "0")):
        r = vigie(tmp_path, "serve", *option)
        assert r.returncode == 2 and option[0] in r.stderr, option
    # A webhook secret that is none was a binascii traceback out of uvicorn's factory.
    r = vigie(tmp_path, "serve", "--port", str(free_port()),
              VIGIE_WEBHOOK_SECRETS="wazuh:whsec_LEAK1")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "LEAK" not in r.stderr
    assert "VIGIE_WEBHOOK_SECRETS entry for 'wazuh' is not a Standard Webhooks secret" in r.stderr
    r = vigie(tmp_path, "serve", "--port", str(free_port()), VIGIE_API_TOKENS="alice:analist:t")
    assert r.returncode == 2 and "VIGIE_API_TOKENS entry for 'alice'" in r.stderr
    r = vigie(tmp_path, "serve", "--port", str(free_port()), VIGIE_WEBHOOK_TOKENS="wazhu:t")
    assert r.returncode == 2 and "names no webhook source 'wazhu'" in r.stderr
