"""Large NDJSON files parsed and normalised on every core.

Reading a day's export spends most of its time parsing and normalising documents one by one.
Above a size threshold, the file is cut into chunks at line breaks and worker processes turn
each chunk into alert fields and dead letters; this process builds the alerts, in file order.
Workers are spawned, not forked: the parent may already hold threads (LangGraph's). Line
numbers stay the file's, so a dead letter points where the serial reader's would. Workers start
reading as soon as a `ParallelRead` exists, so `vigie triage` starts them before it imports
LangGraph (`start_first`).

The cores are the budget, and this process is one of them: one worker fewer than the cores is
started, and whenever the next chunk in file order is not ready yet, this process reads a chunk
itself, from the end of the file (the workers take chunks from the front). What repeats of a
document share (`Repeats.parts`: all but id, time, message and raw JSON) crosses over once per
chunk, and each alert as a small tuple pointing to it. An alert's document stays in the file: the
alert holds where (`FileSpan`), and the few alerts stored with their incidents read it back
(a changed file fails the run then, before anything is stored); a day of Wazuh's documents
held in memory took as much as the alerts. Alerts are built here as unpickling builds a
model, from a copy of their shared part's dict, without validating again what the normaliser
made already typed. A chunk's result crosses through a file, not the pool's pipe: draining
5 MB from a pipe takes the pipe's reader thread a hundred turns at the GIL, which this busy
process hands over only every few milliseconds, and the worker waited for it.
`benchmarks/HISTORY.md` ("Throughput at a day's scale") has the figures.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import operator
import os
import pickle
import shutil
import sys
import tempfile
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, cast

from agent.collector import gc_paused
from agent.models import Alert, DeadLetter, FileSpan
from agent.normalize import SHARED_FIELDS_SET, NormalizeError, alert_parts, rejected
from agent.repeats import Parts
from connectors.files import is_ndjson, ndjson_documents

MIN_PARALLEL_BYTES = 16 << 20  # below this, starting workers costs more than it saves
CHUNK_BYTES = 4 << 20
AHEAD_PER_WORKER = 4  # chunks handed to each worker before its first result is taken

ALERT_FIELDS = tuple(Alert.model_fields)
#: The fields repeats share: all but an alert's own, which come first (id, timestamp) and last
#: (message, raw JSON).
SHARED_FIELDS = ALERT_FIELDS[2:-2]
assert ALERT_FIELDS[:2] == ("id", "timestamp") and ALERT_FIELDS[-2:] == ("message", "raw_json")

#: What repeats share, in `SHARED_FIELDS` order.
Shared = tuple[Any, ...]
#: An alert as it crosses over: (line in chunk, index of its shared part, id, timestamp,
#: message, and where its document sits in the file).
Packed = tuple[int, int, str, datetime, str, FileSpan]
#: One chunk's outcome: its shared parts, its alerts or dead letters, and its line count.
ChunkResult = tuple[list[Shared], list[Packed | DeadLetter], int]


def worker_count(setting: int) -> int:
    """0 means every core this process may run on (a container's cpuset, not the host's)."""
    if setting > 0:
        return setting
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def worth_parallel(path: str, workers: int, max_doc_bytes: int) -> bool:
    return (
        workers > 1
        and Path(path).stat().st_size >= MIN_PARALLEL_BYTES
        and is_ndjson(path, max_doc_bytes)
    )


def read_parallel(
    path: str, max_doc_bytes: int, workers: int
) -> Iterator[ReadChunk | tuple[str, int, Alert] | DeadLetter]:
    """Every alert of an NDJSON file as (path, line, alert), or a dead letter, in file order;
    chunks without a dead letter come whole (`ParallelRead.chunked`)."""
    return ParallelRead(path, max_doc_bytes, workers).chunked()


def start_first(paths: list[str], max_doc_bytes: int, workers: int) -> dict[str, ParallelRead]:
    """The first of these files worth reading in parallel, its workers started now: a caller
    about to import LangGraph (1 to 2 s) has its first chunks read meanwhile. One file only, so
    one pool of workers runs at a time."""
    for path in paths:
        if worth_parallel(path, workers, max_doc_bytes):
            return {path: ParallelRead(path, max_doc_bytes, workers)}
    return {}


@dataclass(frozen=True, slots=True)
class ReadChunk:
    """A chunk's alerts, in file order, with no dead letter among them."""

    path: str
    lines_before: int  # the file's lines before the chunk
    lines: list[int]  # each alert's line, counted from the chunk's start
    alerts: list[Alert]

    def items(self) -> Iterator[tuple[str, int, Alert]]:
        """One by one, as (path, line, alert)."""
        for line, alert in zip(self.lines, self.alerts, strict=True):
            yield self.path, line + self.lines_before, alert


class ParallelRead:
    """One NDJSON file read by worker processes, which start at once and read ahead."""

    def __init__(self, path: str, max_doc_bytes: int, workers: int) -> None:
        self.path = path
        self._dir = results_dir()  # the chunks' results, in transit
        # Removed when read or closed, and else when this is collected or the process exits:
        # a read started and then dropped leaves nothing behind. (A killed process's are
        # removed by the next read: `results_dir`.)
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._tasks = [
            (path, start, end, max_doc_bytes) for start, end in chunks(path, CHUNK_BYTES)
        ]
        processes = max(1, workers - 1)
        self._pool = multiprocessing.get_context("spawn").Pool(processes)
        self._ahead = AHEAD_PER_WORKER * processes
        self._pending: collections.deque[AsyncResult[ChunkResult | str]] = collections.deque()
        self._sent = 0  # chunks handed to the workers, from the front
        self._own = len(self._tasks)  # chunks from here on are read by this process
        self._send()

    def chunked(self) -> Iterator[ReadChunk | tuple[str, int, Alert] | DeadLetter]:
        """Every alert as (path, line, alert), or a dead letter, in file order; a chunk without
        a dead letter comes whole, for its reader to take in a few C-level steps."""
        lines_before = 0
        own: list[tuple[list[tuple[int, Alert] | DeadLetter], int]] = []  # from the end back
        try:
            with self._pool:  # stopped at the end, or when the reader of this stops early
                while self._pending:
                    if not self._front_ready() and self._sent < self._own:
                        self._own -= 1
                        own.append(built(normalise_chunk(self._tasks[self._own])))
                        continue
                    items, lines = built(received(self._pending.popleft().get()))
                    self._send()
                    yield from self._placed(items, lines_before)
                    lines_before += lines
            for items, lines in reversed(own):
                yield from self._placed(items, lines_before)
                lines_before += lines
        finally:
            self._remove_dir()

    def _send(self) -> None:
        """Keep the workers a few chunks ahead, short of the chunks this process took."""
        while self._sent < self._own and len(self._pending) < self._ahead:
            task = (*self._tasks[self._sent], self._dir)
            self._pending.append(self._pool.apply_async(worker_chunk, (task,)))
            self._sent += 1

    def _front_ready(self) -> bool:
        return self._pending[0].ready()

    def _placed(
        self, items: list[tuple[int, Alert] | DeadLetter], lines_before: int
    ) -> Iterator[ReadChunk | tuple[str, int, Alert] | DeadLetter]:
        """A chunk's items with the file's line numbers: whole when it holds no dead letter."""
        if not any(map(_is_dead, items)):
            clean = cast(list[tuple[int, Alert]], items)
            lines = list(map(_first, clean))
            yield ReadChunk(self.path, lines_before, lines, list(map(_second, clean)))
            return
        for item in items:
            if isinstance(item, DeadLetter):
                yield item.model_copy(update={"line": (item.line or 0) + lines_before})
            else:
                yield self.path, item[0] + lines_before, item[1]

    def close(self) -> None:
        """Stop the workers, whether or not the file was read."""
        self._pool.terminate()
        self._remove_dir()


RESULTS_PREFIX = "vigie-read-"


def results_dir() -> str:
    """A private directory for one read's results, named by this process's id. A process
    killed mid-read (`kill -9`, the OOM killer) runs no clean-up, so the directories whose
    process is gone are removed first: each holds up to a few 5 MB results."""
    remove_orphans(Path(tempfile.gettempdir()))
    return tempfile.mkdtemp(prefix=f"{RESULTS_PREFIX}{os.getpid()}-")


def remove_orphans(base: Path) -> None:
    """Results directories of this user whose reading process no longer runs."""
    for path in base.glob(f"{RESULTS_PREFIX}*-*"):
        pid = path.name.removeprefix(RESULTS_PREFIX).split("-", 1)[0]
        try:
            mine = path.is_dir() and path.stat().st_uid == os.getuid()
        except OSError:  # removed meanwhile by another read
            continue
        if pid.isdigit() and mine and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def chunks(path: str, chunk_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of whole lines, about `chunk_bytes` each."""
    size = Path(path).stat().st_size
    bounds = [0]
    with open(path, "rb") as fh:
        while bounds[-1] + chunk_bytes < size:
            fh.seek(bounds[-1] + chunk_bytes)
            fh.readline()  # on to the start of the next line
            if fh.tell() >= size:
                break
            bounds.append(fh.tell())
    bounds.append(size)
    return list(itertools.pairwise(bounds))


def worker_chunk(task: tuple[str, int, int, int, str]) -> ChunkResult | str:
    """In a worker: `normalise_chunk`, its result left in a file of the reader's directory
    (named by the chunk's start), or sent back through the pipe if it cannot be written."""
    with gc_paused():
        result = normalise_chunk(task[:4])
    name = os.path.join(task[4], f"{task[1]}.pickle")
    try:
        with open(name, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        return result
    return name


def received(result: ChunkResult | str) -> ChunkResult:
    """A worker's result, read back from its file."""
    if not isinstance(result, str):
        return result
    with open(result, "rb") as fh:
        data = fh.read()
    os.unlink(result)
    loaded: ChunkResult = pickle.loads(data)
    return loaded


def built(result: ChunkResult) -> tuple[list[tuple[int, Alert] | DeadLetter], int]:
    """A chunk's alerts, built, each with its line in the chunk."""
    shared, items, lines = result
    forms = list(map(_form, shared))
    return [
        i if isinstance(i, DeadLetter) else (i[0], alert_of(forms[i[1]], i[2], i[3], i[4], i[5]))
        for i in items
    ], lines


def _is_dead(item: object) -> bool:
    return isinstance(item, DeadLetter)


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def normalise_chunk(task: tuple[str, int, int, int]) -> ChunkResult:
    """One chunk's documents as packed alerts, or dead letters (lines counted from the chunk's
    start; the reader shifts them)."""
    path, start, end, max_doc_bytes = task
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    packing = Packing()
    out: list[Packed | DeadLetter] = []
    where = os.path.abspath(path)
    for item in ndjson_documents(data, path, max_doc_bytes):
        if isinstance(item, DeadLetter):
            out.append(item)
            continue
        try:
            parts = alert_parts(item.value, depth_checked=True, raw=item.raw)
        except NormalizeError as exc:
            out.append(rejected(path, item.line, item.value, exc))
            continue
        raw = cast(bytes, item.raw)  # an NDJSON line always has its bytes
        span = (where, start + item.at, len(raw), zlib.crc32(raw))
        out.append(packing.pack(item.line, parts, span))
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return packing.shared, out, lines


class Packing:
    """One chunk's alerts packed, the part repeats share sent once (the memo hands every repeat
    the same dict, so it is recognised by identity)."""

    def __init__(self) -> None:
        self.shared: list[Shared] = []
        self._index: dict[int, int] = {}
        self._kept: list[dict[str, Any]] = []  # alive, so no other dict takes their ids
        self._messages: dict[str, str] = {}  # one object per text: pickle sends it once

    def pack(self, line: int, parts: Parts, span: FileSpan) -> Packed:
        """The alert as it crosses over, its document left in the file (`span`)."""
        stable, alert_id, timestamp, message, _ = parts
        ref = self._index.get(id(stable))
        if ref is None:
            ref = self._index[id(stable)] = len(self.shared)
            self.shared.append(_shared(stable))
            self._kept.append(stable)
        message = self._messages.setdefault(message, message)
        return line, ref, alert_id, timestamp, message, span


def _shared(f: dict[str, Any]) -> Shared:
    """In `SHARED_FIELDS` order. Names are interned: documents that differ in more than id,
    time and message still share them, and pickle sends a string it has seen once per chunk."""
    return (
        f["source"],
        f["sensor"],
        sys.intern(f["rule_name"]),
        sys.intern(f["rule_id"]),
        f["severity"],
        f["risk_score"],
        f["tactics"],
        f["techniques"],
        f["entities"],
    )


def _form(shared: Shared) -> dict[str, Any]:
    """A shared part as an alert's fields, in `ALERT_FIELDS` order, its own left blank (a dict
    display: three times as fast as zipping the names)."""
    source, sensor, rule_name, rule_id, severity, risk, tactics, techniques, entities = shared
    return {
        "id": None,
        "timestamp": None,
        "source": source,
        "sensor": sensor,
        "rule_name": rule_name,
        "rule_id": rule_id,
        "severity": severity,
        "risk_score": risk,
        "tactics": tactics,
        "techniques": techniques,
        "entities": entities,
        "message": None,
        "raw_json": None,
    }


assert tuple(_form(SHARED_FIELDS)) == ALERT_FIELDS
assert _shared(_form(SHARED_FIELDS)) == SHARED_FIELDS


def alert_of(
    form: dict[str, Any], alert_id: str, timestamp: datetime, message: str, raw_json: FileSpan
) -> Alert:
    """The alert, from its shared part as a dict in `ALERT_FIELDS` order, built the way
    unpickling builds a model (pydantic's `__setstate__` sets these four attributes; copying a
    dict and setting four keys is a fifth of the time of zipping thirteen)."""
    values = form.copy()
    values["id"] = alert_id
    values["timestamp"] = timestamp
    values["message"] = message
    values["raw_json"] = raw_json
    alert = _new_alert(Alert)
    _set(alert, "__dict__", values)
    _set(alert, "__pydantic_fields_set__", SHARED_FIELDS_SET)
    _set(alert, "__pydantic_extra__", None)
    _set(alert, "__pydantic_private__", None)
    return alert


_new_alert = Alert.__new__
_set = object.__setattr__
