"""The parallel reader must be the serial reader, only faster: same alerts, same dead letters,
same line numbers, in the same order, whatever the chunking."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import agent.graph
import agent.parallel_read as parallel_read
from agent.analyst import OfflineAnalyst
from agent.baseline import Baseline
from agent.correlate import correlate
from agent.documents import unwrapped
from agent.errors import InputChanged
from agent.graph import TriageContext, run_triage
from agent.incidents import build_incident
from agent.models import Alert, DeadLetter
from agent.normalize import NormalizeError, normalize, rejected
from agent.parallel_read import ReadChunk
from agent.store.sqlite import SqliteStore
from connectors.files import BOM, read_documents
from tests.conftest import ecs, eql_sequence_alerts, same_alert_as_validated, suppressed_alerts


def messy_file(path: Path) -> Path:
    lines: list[str] = []
    for i in range(400):
        doc = ecs(i, i * 0.5, f"Rule {i % 7}", f"h{i % 5}")
        if i % 53 == 1:
            lines.append("{not json")
        elif i % 61 == 0:
            lines.append("")  # blank: skipped, but still a line
        elif i % 67 == 0:
            lines.append(json.dumps({"no": "timestamp"}))  # parses, cannot be an alert
        elif i % 71 == 0:
            lines.append(json.dumps({**doc, "message": "x" * 40_000}))  # too large to shorten
        elif i % 73 == 0:
            lines.append("[1, 2]")  # JSON, not an object
        elif i % 59 == 0:  # a search hit, as elasticdump writes them: its id is the hit's
            source = {k: v for k, v in doc.items() if k != "event"}
            lines.append(json.dumps({"_index": "alerts", "_id": f"hit{i}", "_source": source}))
        bom = "\ufeff" if i % 79 == 0 else ""  # files concatenated: a byte order mark mid-file
        lines.append(bom + json.dumps(doc))
    path.write_text("\n".join(lines))  # no newline after the last line
    return path


def serial(path: Path, max_bytes: int) -> list[tuple[str, int, Alert] | DeadLetter]:
    out: list[tuple[str, int, Alert] | DeadLetter] = []
    for item in read_documents(path, max_bytes):
        if isinstance(item, DeadLetter):
            out.append(item)
            continue
        try:
            out.append((str(path), item.line, normalize(item.value, raw=item.raw)))
        except NormalizeError as exc:
            out.append(rejected(str(path), item.line, item.value, exc))
    return out


def one_by_one(
    got: Iterable[ReadChunk | tuple[str, int, Alert] | DeadLetter],
) -> list[tuple[str, int, Alert] | DeadLetter]:
    return [x for c in got for x in (c.items() if isinstance(c, ReadChunk) else [c])]


def read_back(
    items: list[tuple[str, int, Alert] | DeadLetter],
) -> list[tuple[str, int, Alert] | DeadLetter]:
    """The alerts holding their documents, read back from the file they were left in."""
    return [x if isinstance(x, DeadLetter) else (x[0], x[1], x[2].with_document()) for x in items]


@pytest.mark.parametrize("chunk_bytes", [700, 4096, 1 << 20])
def test_parallel_reading_equals_serial_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", chunk_bytes)
    chunked = list(parallel_read.read_parallel(str(path), 2000, workers=2))
    got = one_by_one(chunked)
    want = serial(path, 2000)
    alerts = [x[2] for x in got if not isinstance(x, DeadLetter)]
    assert all(isinstance(a.raw_json, tuple) for a in alerts)  # documents left in the file
    assert read_back(got) == want  # and read back as the serial reader kept them
    if chunk_bytes == 700:  # many chunks hold no dead letter: those came whole
        assert sum(isinstance(c, ReadChunk) for c in chunked) > 10
    dead = [d for d in got if isinstance(d, DeadLetter)]
    assert {d.reason.split(":")[0] for d in dead} >= {
        "invalid JSON",
        "document larger than 2000 bytes",
    }
    if chunk_bytes == 700:
        assert len(parallel_read.chunks(str(path), chunk_bytes)) > 20  # really cut in pieces


def test_lines_read_repaired_are_read_so_by_the_workers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line with a byte that is not UTF-8, or a raw tab in a string, is read repaired: its
    alert keeps the repaired JSON, not a place in the file, which holds other bytes."""
    path = messy_file(tmp_path / "alerts.ndjson")
    with path.open("ab") as fh:
        for i in range(400, 440):
            doc = ecs(i, i * 0.5, f"Rule {i % 7}", f"h{i % 5}", message=f"m{i}\t\udcff")
            text = json.dumps(doc, ensure_ascii=False).replace("\\t", "\t")
            fh.write(b"\n" + text.encode("utf-8", "surrogateescape"))
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    got = one_by_one(parallel_read.read_parallel(str(path), 2000, workers=2))
    assert read_back(got) == serial(path, 2000)
    repaired = [x[2] for x in got if not isinstance(x, DeadLetter) and "\t" in x[2].message]
    assert len(repaired) == 40 and all(isinstance(a.raw_json, bytes) for a in repaired)
    assert all(a.raw["message"].endswith("\t\ufffd") for a in repaired)


def test_documents_read_shortened_are_read_so_by_the_workers_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line over the limit, its long strings cut: its alert keeps the shortened JSON."""
    path = messy_file(tmp_path / "alerts.ndjson")
    with path.open("a") as fh:
        for i in range(400, 420):
            doc = ecs(i, i * 0.5, f"Rule {i % 7}", f"h{i % 5}", message="z" * (3000 + i))
            fh.write("\n" + json.dumps(doc))
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    got = one_by_one(parallel_read.read_parallel(str(path), 2000, workers=2))
    assert read_back(got) == serial(path, 2000)
    cut = [x[2] for x in got if not isinstance(x, DeadLetter) and x[2].message.startswith("zz")]
    assert len(cut) == 20 and all(isinstance(a.raw_json, bytes) for a in cut)
    assert all(a.raw["vigie.shortened"]["kept"] == 1024 for a in cut)


def test_alerts_cross_from_the_workers_with_the_types_validation_gives(
    tmp_path: Path, shared_data: Path
) -> None:
    lines = messy_file(tmp_path / "alerts.ndjson").read_text().splitlines()
    docs = [
        json.loads(line.removeprefix("\ufeff"))
        for line in lines
        if line.strip() and not line.startswith("{not")
    ]
    for path in (shared_data / "wazuh").glob("*.alerts.json"):
        docs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for path in (shared_data / "elastic").glob("*.json"):
        docs.append(json.loads(path.read_text()))
    docs += eql_sequence_alerts("grp-1")  # an EQL sequence's group id among the entities
    docs += suppressed_alerts()  # repeats Elastic folded in
    checked = [doc for doc in docs if isinstance(doc, dict)]
    assert len(checked) > 300
    for doc in checked:
        same_alert_as_validated(doc)


def test_triage_of_a_large_file_uses_the_workers_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    monkeypatch.setattr(parallel_read, "MIN_PARALLEL_BYTES", 1)
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    used: list[str] = []
    monkeypatch.setattr(
        "agent.graph.read_parallel",
        lambda *a, **k: (used.append(a[0]), parallel_read.read_parallel(*a, **k))[1],
    )

    def run(workers: int) -> tuple[list[list[str]], list[tuple[int | None, str]]]:
        ctx = TriageContext(
            store=None, analyst=OfflineAnalyst(), playbooks=[], read_workers=workers
        )
        state = run_triage([str(path)], ctx)
        incidents = sorted(sorted(i.alert_ids) for i in state["incidents"])
        dead = sorted((d.line, d.reason) for d in state["dead_letters"])
        return incidents, dead

    assert run(2) == run(1)
    assert used == [str(path)]  # the two-worker run went through the parallel reader


def test_alerts_of_their_own_hosts_share_one_set_of_entity_field_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pydantic keeps a set of the fields set on each model (728 bytes): one per alert where
    each has a host of its own (a rule firing once on each endpoint of a fleet), read here or
    unpickled from a worker. Every entity set shares one; copying one leaves it as it was."""
    path = tmp_path / "fleet.ndjson"
    path.write_text("".join(json.dumps(ecs(i, i, "Update", f"ep-{i}")) + "\n" for i in range(60)))
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)  # chunks from each worker
    read = [x[2] for x in one_by_one(parallel_read.read_parallel(str(path), 1 << 20, workers=2))]
    alone = [normalize(ecs(100 + i, i, "Update", f"ep-x{i}")) for i in range(3)]
    names = {id(a.entities.__pydantic_fields_set__) for a in (*read, *alone)}
    assert len(read) == 60 and len({a.entities.hosts for a in read}) == 60 and len(names) == 1
    assert len({id(a.__pydantic_fields_set__) for a in (*read, *alone)}) == 1  # alerts' too
    moved = read[0].entities.model_copy(update={"hosts": ("elsewhere",)})
    assert moved.hosts == ("elsewhere",) and read[1].entities.hosts == ("ep-1",)
    assert read[1].entities.__pydantic_fields_set__ == set(type(moved).model_fields)
    # An incident's groups, one for each host's stream, share one too.
    groups = [g for c in correlate(read) for g in build_incident(c, Baseline()).groups]
    assert len(groups) == 60 and len({id(g.__pydantic_fields_set__) for g in groups}) == 1
    # Alerts given their documents to be stored (read back from the file) share it too: a
    # copy's was a set of its own, 1.2 KB an alert.
    from agent.models import with_documents

    stored = with_documents(read)
    assert all(isinstance(a.raw_json, bytes) for a in stored) and stored[5].id == read[5].id
    assert {id(a.__pydantic_fields_set__) for a in stored} == {id(read[0].__pydantic_fields_set__)}


def lines_by_id(data: bytes, max_bytes: int = 1 << 20) -> dict[str, bytes]:
    """The file's alert documents as written (past a byte order mark), by their event id: the
    first of each id, as the run keeps it, among the lines the reader takes."""
    out: dict[str, bytes] = {}
    for line in data.split(b"\n"):
        if len(line) > max_bytes:
            continue
        try:
            doc = json.loads(line.removeprefix(BOM))
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "event" in doc:
            out.setdefault(doc["event"]["id"], line.removeprefix(BOM))
        elif isinstance(doc, dict) and "_source" in doc:
            out.setdefault(doc["_id"], line.removeprefix(BOM))
    return out


def test_an_alert_read_in_parallel_reads_its_document_back_or_says_the_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    got = one_by_one(parallel_read.read_parallel(str(path), 2000, workers=2))
    alerts = [x[2] for x in got if not isinstance(x, DeadLetter)]
    lines = lines_by_id(path.read_bytes(), 2000)
    assert len(lines) > 300
    assert any(a.id.startswith("hit") for a in alerts)
    for a in alerts:
        assert a.document_json() == lines[a.id]  # a search hit's line as it was written
        assert a.raw == unwrapped(json.loads(lines[a.id]))  # and the alert it holds
    first, last = alerts[0], alerts[-1]
    _, start, length, _ = first.raw_json
    data = bytearray(path.read_bytes())
    data[start + length - 2] ^= 1  # one bit of the first document, the file's size unchanged
    path.write_bytes(bytes(data))
    with pytest.raises(InputChanged, match="changed while it was triaged"):
        first.with_document()
    assert last.with_document().raw["event"]["id"] == last.id  # the rest of the file holds
    path.write_bytes(bytes(data[: last.raw_json[1] + 3]))  # cut short inside the last one
    with pytest.raises(InputChanged, match="changed while it was triaged"):
        _ = last.raw
    path.unlink()
    with pytest.raises(InputChanged, match="can no longer be read"):
        _ = alerts[1].raw


def test_a_file_rewritten_during_the_run_fails_it_before_anything_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    original = path.read_bytes()
    monkeypatch.setattr(parallel_read, "MIN_PARALLEL_BYTES", 1)
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    built = agent.graph.build_incidents

    def rewritten_meanwhile(*args: Any, **kwargs: Any) -> Any:
        path.write_bytes(original.replace(b'"Rule 3"', b'"Rule 9"'))  # as a log rotation would
        return built(*args, **kwargs)

    def run(db: str) -> SqliteStore:
        store = SqliteStore(tmp_path / db)
        ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[], read_workers=2)
        run_triage([str(path)], ctx)
        return store

    stored = run("kept.db")  # the file left alone: the stored samples hold their documents
    samples = [a for i in stored.list_incidents() for a in stored.alerts_of(i.incident_id)]
    assert samples and all(isinstance(a.raw_json, bytes) for a in samples)
    lines = lines_by_id(original)
    assert all(a.raw == unwrapped(json.loads(lines[a.id])) for a in samples)

    monkeypatch.setattr(agent.graph, "build_incidents", rewritten_meanwhile)
    store = SqliteStore(tmp_path / "changed.db")
    saves: list[object] = []
    monkeypatch.setattr(store, "save_triage", lambda *a, **k: saves.append(a))
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[], read_workers=2)
    with pytest.raises(InputChanged, match="changed while it was triaged"):
        run_triage([str(path)], ctx)
    assert saves == []  # failed before the store was asked to write anything
    assert store.list_incidents() == [] and store.dead_letters() == []


def test_a_read_started_before_the_run_is_the_one_the_run_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    small = tmp_path / "small.json.gz"  # compressed: read serially
    small.write_bytes(gzip.compress(json.dumps([ecs("s1", 0, "Rule 1", "h1")]).encode()))
    monkeypatch.setattr(parallel_read, "MIN_PARALLEL_BYTES", 1)
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    started = parallel_read.start_first([str(small), str(path)], 2000, workers=2)
    assert list(started) == [str(path)]
    used: list[str] = []
    monkeypatch.setattr(
        "agent.graph.read_parallel",
        lambda *a, **k: (used.append(a[0]), parallel_read.read_parallel(*a, **k))[1],
    )

    def run(workers: int, started: dict) -> list[list[str]]:
        ctx = TriageContext(
            store=None,
            analyst=OfflineAnalyst(),
            playbooks=[],
            read_workers=workers,
            started=started,
        )
        state = run_triage([str(small), str(path)], ctx)
        assert ctx.started == {}  # taken, so a file named twice is not read from its end
        return sorted(sorted(i.alert_ids) for i in state["incidents"])

    assert run(2, started) == run(1, {})
    assert used == []  # the run read the file through the read already started


def test_a_started_read_that_is_never_read_stops_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    path = messy_file(tmp_path / "alerts.ndjson")
    monkeypatch.setattr(parallel_read, "MIN_PARALLEL_BYTES", 1)
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 700)
    before = set(multiprocessing.active_children())
    (read,) = parallel_read.start_first([str(path)], 2000, workers=3).values()
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 2  # the reading process is the third
    transit = Path(read._dir)
    assert transit.is_dir()
    read.close()
    assert not workers & set(multiprocessing.active_children())
    assert not transit.exists()  # results already written are not left behind


def test_chunks_the_reader_takes_from_the_end_keep_their_place_and_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whenever the next chunk is not ready, the reading process reads one from the end; here
    it never finds one ready, so it reads every chunk it can, and the order must not change."""
    path = messy_file(tmp_path / "alerts.ndjson")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 700)
    monkeypatch.setattr(parallel_read.ParallelRead, "_front_ready", lambda self: False)
    own: list[int] = []  # chunks read in this process (the workers' patch-free copies count none)
    real = parallel_read.normalise_chunk
    monkeypatch.setattr(
        parallel_read, "normalise_chunk", lambda task: (own.append(task[1]), real(task))[1]
    )
    read = parallel_read.ParallelRead(str(path), 2000, workers=2)
    transit = Path(read._dir)
    got = one_by_one(read.chunked())
    chunks = len(parallel_read.chunks(str(path), 700))
    assert len(own) == chunks - parallel_read.AHEAD_PER_WORKER  # all but those sent first
    assert read_back(got) == serial(path, 2000)
    assert not transit.exists()


def test_a_worker_s_result_crosses_through_a_file_or_else_the_pipe(tmp_path: Path) -> None:
    path = messy_file(tmp_path / "alerts.ndjson")
    task = (str(path), 0, path.stat().st_size, 2000, "ndjson", True)
    direct = parallel_read.normalise_chunk(task)
    name = parallel_read.worker_chunk((*task, str(tmp_path)))
    assert isinstance(name, str) and Path(name).parent == tmp_path
    assert parallel_read.received(name) == direct
    assert not Path(name).exists()  # read once, then removed
    unwritable = parallel_read.worker_chunk((*task, str(tmp_path / "gone")))
    assert unwritable == direct  # the result itself, through the pipe
    assert parallel_read.received(unwritable) == direct


def test_a_read_dropped_unread_and_unclosed_leaves_no_results_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import time

    path = messy_file(tmp_path / "alerts.ndjson")
    read = parallel_read.ParallelRead(str(path), 2000, workers=2)
    transit = Path(read._dir)
    deadline = time.monotonic() + 30
    while not any(transit.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(transit.iterdir())  # a worker left a result there
    read._pool.terminate()  # what dropping it does to the pool, eventually
    del read
    gc.collect()
    assert not transit.exists()


KILLED_READER = """
import sys, time
from pathlib import Path
import agent.parallel_read as parallel_read
read = parallel_read.ParallelRead(sys.argv[1], 2000, workers=2)
transit = Path(read._dir)
while not any(transit.iterdir()):
    time.sleep(0.02)
print(transit, flush=True)
time.sleep(600)
"""


def test_results_a_killed_read_left_are_removed_by_the_next_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill -9` runs no clean-up: the next read removes the directories of processes gone,
    and only those."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    path = messy_file(tmp_path / "alerts.ndjson")
    temp = tmp_path / "tmp"
    temp.mkdir()
    errors = tmp_path / "reader.err"  # also takes its resource tracker's leak warnings
    with errors.open("w") as err:
        reader = subprocess.Popen(
            [sys.executable, "-c", KILLED_READER, str(path)],
            env={**os.environ, "TMPDIR": str(temp)},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert reader.stdout is not None
    left = Path(reader.stdout.readline().strip())
    os.kill(reader.pid, signal.SIGKILL)
    reader.wait(timeout=30)
    assert left.parent == temp, errors.read_text()
    assert any(left.iterdir())  # the killed read's results, left over
    running = temp / f"{parallel_read.RESULTS_PREFIX}{os.getpid()}-x"  # a read still running
    running.mkdir()
    unrelated = temp / "vigie-read-notes"
    unrelated.mkdir()

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    read = parallel_read.ParallelRead(str(path), 2000, workers=2)
    read.close()
    assert not left.exists()
    assert running.is_dir() and unrelated.is_dir()


def test_a_worker_reads_its_chunk_with_the_cycle_collector_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's alerts hold no cycles: the collector would only walk them (a sixth of a
    worker's time on documents that do not repeat). It runs again after the chunk."""
    import gc

    path = messy_file(tmp_path / "alerts.ndjson")
    read_with_collector: list[bool] = []
    real = parallel_read.normalise_chunk

    def watched(task: tuple[str, int, int, int]) -> parallel_read.ChunkResult:
        read_with_collector.append(gc.isenabled())
        return real(task)

    monkeypatch.setattr(parallel_read, "normalise_chunk", watched)
    task = (str(path), 0, path.stat().st_size, 2000, "ndjson", True, str(tmp_path))
    name = parallel_read.worker_chunk(task)
    assert read_with_collector == [False] and gc.isenabled()
    assert parallel_read.received(name)[1]  # the chunk's alerts, read back
