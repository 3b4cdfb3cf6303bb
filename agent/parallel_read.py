"""Large alert files parsed and normalised on every core.

Reading a day's export spends most of its time parsing and normalising documents one by one.
Above a size threshold, the file is cut into chunks and worker processes turn each chunk into
alert fields and dead letters; this process builds the alerts, in file order. NDJSON is cut at
line breaks. A JSON array (or concatenated objects) is cut where an object seems to start (a
comma or a closing brace, then blanks, then `{`), which may be inside a string: a chunk is
taken only if the one before ended exactly at its start, which by induction from the file's
start puts every cut between two values. A chunk that does not (a cut inside a value) is read
again with the chunks after it (`ParallelRead._merged`); one that holds anything the serial
reader treats its own way (a value that does not parse) is read from there on serially, as
the serial reader reads it (`connectors.files.value_documents` and `values_from`).
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
import re
import shutil
import sys
import tempfile
import weakref
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, cast

from agent.collector import gc_paused
from agent.models import Alert, DeadLetter, FileSpan, all_fields_set, fields_set_of
from agent.normalize import NormalizeError, alert_parts, rejected
from agent.repeats import Parts
from connectors.files import (
    BOM,
    LINE_BACK,
    Misaligned,
    Parsed,
    layout_of,
    ndjson_documents,
    value_documents,
    values_from,
)
from connectors.lenient import SHORTENED_FROM

MIN_PARALLEL_BYTES = 16 << 20  # below this, starting workers costs more than it saves
CHUNK_BYTES = 4 << 20
AHEAD_PER_WORKER = 4  # chunks handed to each worker before its first result is taken
#: How far chunks of values are read as one when a cut fell inside a value: this many chunks,
#: and the largest document cut to fit (`connectors.lenient.SHORTENED_FROM` times the limit).
MERGED_CHUNKS = 4

ALERT_FIELDS = tuple(Alert.model_fields)
ALERT_FIELDS_SET = fields_set_of(Alert)  # what every alert was given: one set for all
#: The fields repeats share: all but an alert's own, which come first (id, timestamp) and last
#: (message, raw JSON).
SHARED_FIELDS = ALERT_FIELDS[2:-2]
assert ALERT_FIELDS[:2] == ("id", "timestamp") and ALERT_FIELDS[-2:] == ("message", "raw_json")

_ENTITIES = SHARED_FIELDS.index("entities")

#: What repeats share, in `SHARED_FIELDS` order.
Shared = tuple[Any, ...]
#: An alert as it crosses over: (line in chunk, index of its shared part, id, timestamp,
#: message, and where its document sits in the file, or rarely its bytes).
Packed = tuple[int, int, str, datetime, str, FileSpan | bytes]
#: One chunk's outcome: its shared parts, its alerts or dead letters, and its line count.
ChunkResult = tuple[list[Shared], list[Packed | DeadLetter], int]
#: A chunk to read: (path, start, end, max_doc_bytes, layout, is it the file's last).
Task = tuple[str, int, int, int, str, bool]
#: Layouts read in parallel: a search response is not (its hits are few, and pages of them).
PARALLEL_LAYOUTS = frozenset({"ndjson", "array", "concatenated"})


def worker_count(setting: int) -> int:
    """0 means every core this process may run on (a container's cpuset, not the host's)."""
    if setting > 0:
        return setting
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def parallel_layout(path: str, workers: int, max_doc_bytes: int) -> str | None:
    """The file's layout if it is worth reading in parallel (large, and cut at byte offsets);
    else None."""
    if workers < 2 or Path(path).stat().st_size < MIN_PARALLEL_BYTES:
        return None
    layout = layout_of(path, max_doc_bytes)
    return layout if layout in PARALLEL_LAYOUTS else None


def read_parallel(
    path: str, max_doc_bytes: int, workers: int, layout: str | None = None
) -> Iterator[Read]:
    """Every alert of a file as (path, line, alert), or a dead letter, in file order (or, read
    on serially, as a document); chunks without a dead letter come whole
    (`ParallelRead.chunked`). `layout`: the file's, if known (`parallel_layout`)."""
    return ParallelRead(path, max_doc_bytes, workers, layout).chunked()


def start_first(paths: list[str], max_doc_bytes: int, workers: int) -> dict[str, ParallelRead]:
    """The first of these files worth reading in parallel, its workers started now: a caller
    about to import LangGraph (1 to 2 s) has its first chunks read meanwhile. One file only, so
    one pool of workers runs at a time."""
    for path in paths:
        if layout := parallel_layout(path, workers, max_doc_bytes):
            return {path: ParallelRead(path, max_doc_bytes, workers, layout)}
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


#: What a read yields: a clean chunk whole, an alert with its place, a dead letter, or (read
#: on serially) a document as (path, line, value, its bytes).
Read = ReadChunk | tuple[str, int, Alert] | tuple[str, int, Any, bytes | None] | DeadLetter


class ParallelRead:
    """One file read by worker processes, which start at once and read ahead."""

    def __init__(
        self, path: str, max_doc_bytes: int, workers: int, layout: str | None = None
    ) -> None:
        self.path = path
        self._dir = results_dir()  # the chunks' results, in transit
        # Removed when read or closed, and else when this is collected or the process exits:
        # a read started and then dropped leaves nothing behind. (A killed process's are
        # removed by the next read: `results_dir`.)
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        layout = layout or layout_of(path, max_doc_bytes)
        if layout not in PARALLEL_LAYOUTS:
            raise ValueError(f"{path} cannot be read in parallel (layout: {layout})")
        self._array = layout == "array"
        self._max_doc_bytes = max_doc_bytes
        cut = chunks if layout == "ndjson" else value_chunks
        bounds = cut(path, CHUNK_BYTES)
        self._tasks: list[Task] = [
            (path, start, end, max_doc_bytes, layout, end == bounds[-1][1]) for start, end in bounds
        ]
        processes = max(1, workers - 1)
        self._pool = multiprocessing.get_context("spawn").Pool(processes)
        self._ahead = AHEAD_PER_WORKER * processes
        self._pending: collections.deque[AsyncResult[ChunkResult | str | None]] = (
            collections.deque()
        )
        self._sent = 0  # chunks handed to the workers, from the front
        self._own = len(self._tasks)  # chunks from here on are read by this process
        self._send()

    def chunked(self) -> Iterator[Read]:
        """Every alert as (path, line, alert), or a dead letter, in file order; a chunk without
        a dead letter comes whole, for its reader to take in a few C-level steps. From a chunk
        of values the workers could not read on, documents, read serially."""
        lines_before, next_index = 0, 0
        results = self._in_order()
        try:
            for index, result in results:
                if index < next_index:
                    continue  # read merged into the chunk before it
                next_index = index + 1
                if result is None:
                    result, next_index = self._merged(index)
                if result is None:
                    results.close()  # stops the workers
                    yield from self._serially(self._tasks[index][1], lines_before)
                    return
                items, lines = built(result)
                yield from self._placed(items, lines_before)
                lines_before += lines
        finally:
            results.close()
            self._remove_dir()

    def _in_order(self) -> Generator[tuple[int, ChunkResult | None]]:
        """Each chunk's result with its index, in file order: the workers', then this process's
        own, read from the end back while the workers' next was not ready."""
        taken, own = 0, []
        with self._pool:  # stopped at the end, or when the reader of this stops early
            while self._pending:
                if not self._front_ready() and self._sent < self._own:
                    self._own -= 1
                    own.append(normalise_chunk(self._tasks[self._own]))
                    continue
                result = received(self._pending.popleft().get())
                self._send()
                yield taken, result
                taken += 1
        yield from enumerate(reversed(own), start=self._own)

    def _merged(self, index: int) -> tuple[ChunkResult | None, int]:
        """A chunk of values that did not end where the next one starts (the cut fell inside
        a value: a nested object's start, a string's `},{`), read here with the chunks after
        it, as far as `MERGED_CHUNKS` says; with the index of the chunk to read next."""
        path, start, _, max_doc_bytes, layout, _ = self._tasks[index]
        reach = MERGED_CHUNKS * CHUNK_BYTES + SHORTENED_FROM * max_doc_bytes
        for after in range(index + 1, len(self._tasks)):
            _, _, end, _, _, last = self._tasks[after]
            if end - start > reach:
                break
            result = normalise_chunk((path, start, end, max_doc_bytes, layout, last))
            if result is not None:
                return result, after + 1
        return None, index + 1

    def _serially(self, start: int, lines_before: int) -> Iterator[Read]:
        """The file's values from byte `start` on, as the serial reader reads them."""
        for item in values_from(
            self.path, start, lines_before + 1, self._max_doc_bytes, self._array
        ):
            yield item if isinstance(item, DeadLetter) else (self.path, *item[:2], item.raw)

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
    ) -> Iterator[Read]:
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


#: Where a value may start, after the one before: its comma or closing brace, blanks, `{`.
_VALUE_START = re.compile(rb"[,}][ \t\r\n]*(?=\{)")
#: The file's first object, past a byte order mark and the array's bracket.
_FIRST_VALUE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*\[?[ \t\r\n]*\{")
_SCAN_BYTES = 1 << 20


def value_start(head: bytes) -> re.Pattern[bytes]:
    """Where the file's values seem to start, from how its first one does. When it starts its
    line, the others are taken to start theirs as indented (`jq`'s and PowerShell's arrays, and
    objects concatenated at the margin): a line break cannot sit inside a JSON string, and the
    indentation skips the nested objects. Else (`[{...}, {...}]`) any comma or brace before a
    `{`."""
    first = _FIRST_VALUE.match(head)
    if first is None:
        return _VALUE_START
    indent = head[: first.end() - 1].rsplit(b"\n", 1)[-1].removeprefix(BOM)
    if indent.strip(b" \t\r"):
        return _VALUE_START
    return re.compile(rb"[,}][ \t\r]*\n" + re.escape(indent) + rb"(?=\{)")


def value_chunks(path: str, chunk_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges about `chunk_bytes` each, cut where an object seems to start. Only seems:
    the cut may fall in a string (see `connectors.files.value_documents`)."""
    size = Path(path).stat().st_size
    bounds = [0]
    with open(path, "rb") as fh:
        pattern = value_start(fh.read(_SCAN_BYTES))
        at = chunk_bytes
        while at < size:
            fh.seek(at)
            window = fh.read(_SCAN_BYTES)
            found = pattern.search(window)
            if found is None:  # one value longer than the window, or the file's end
                at += max(1, len(window) - 64)  # the blanks of a cut at the edge, read again
                continue
            bounds.append(at + found.end())
            at = bounds[-1] + chunk_bytes
    bounds.append(size)
    return list(itertools.pairwise(bounds))


def worker_chunk(task: tuple[str, int, int, int, str, bool, str]) -> ChunkResult | str | None:
    """In a worker: `normalise_chunk`, its result left in a file of the reader's directory
    (named by the chunk's start), or sent back through the pipe if it cannot be written."""
    with gc_paused():
        result = normalise_chunk(task[:6])
    if result is None:
        return None
    name = os.path.join(task[6], f"{task[1]}.pickle")
    try:
        with open(name, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        return result
    return name


def received(result: ChunkResult | str | None) -> ChunkResult | None:
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
    for part in shared:  # unpickled, each entity set with a set of field names of its own
        all_fields_set(part[_ENTITIES])
    forms = list(map(_form, shared))
    return [
        i if isinstance(i, DeadLetter) else (i[0], alert_of(forms[i[1]], i[2], i[3], i[4], i[5]))
        for i in items
    ], lines


def _is_dead(item: object) -> bool:
    return isinstance(item, DeadLetter)


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def normalise_chunk(task: Task) -> ChunkResult | None:
    """One chunk's documents as packed alerts, or dead letters (lines counted from the chunk's
    start; the reader shifts them); None for values to read serially (`Misaligned`)."""
    path, start, end, max_doc_bytes, layout, last = task
    with open(path, "rb") as fh:
        fh.seek(start if layout == "ndjson" else max(0, start - LINE_BACK))
        before = fh.read(start - fh.tell())  # how a piece of values' first line begins
        data = fh.read(end - start)
    if layout == "ndjson":
        lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        mark = len(BOM) if start == 0 and data.startswith(BOM) else 0  # skipped, as serially
        documents = ndjson_documents(data[mark:], path, max_doc_bytes)
        return *packed(documents, path, start + mark), lines
    array, first = layout == "array", start == 0
    values = value_documents(
        data, path, max_doc_bytes, array=array, first=first, last=last, before=before
    )
    try:
        # A chunk of values ends mid-line: the next one's first line is this one's last.
        return *packed(values, path, start), data.count(b"\n")
    except Misaligned:
        return None


def packed(
    documents: Iterator[Parsed], path: str, start: int
) -> tuple[list[Shared], list[Packed | DeadLetter]]:
    """Documents read from `path` at byte `start` as packed alerts and dead letters."""
    packing = Packing()
    out: list[Packed | DeadLetter] = []
    where = os.path.abspath(path)
    for item in documents:
        if isinstance(item, DeadLetter):
            out.append(item)
            continue
        try:
            parts = alert_parts(item.value, depth_checked=True, raw=item.raw)
        except NormalizeError as exc:
            out.append(rejected(path, item.line, item.value, exc))
            continue
        raw = item.raw
        kept: FileSpan | bytes
        if raw is None or item.at < 0:  # encoded again, or repaired: not the file's bytes
            kept = parts[4]
        else:
            kept = (where, start + item.at, len(raw), zlib.crc32(raw))
        out.append(packing.pack(item.line, parts, kept))
    return packing.shared, out


class Packing:
    """One chunk's alerts packed, the part repeats share sent once (the memo hands every repeat
    the same dict, so it is recognised by identity)."""

    def __init__(self) -> None:
        self.shared: list[Shared] = []
        self._index: dict[int, int] = {}
        self._kept: list[dict[str, Any]] = []  # alive, so no other dict takes their ids
        self._messages: dict[str, str] = {}  # one object per text: pickle sends it once

    def pack(self, line: int, parts: Parts, span: FileSpan | bytes) -> Packed:
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
        f["suppressed"],
        f["building_block"],
        f["posture"],
        f["critical"],
        f["intel"],
        f["process_id"],
        f["ancestry"],
    )


def _form(shared: Shared) -> dict[str, Any]:
    """A shared part as an alert's fields, in `ALERT_FIELDS` order, its own left blank (a dict
    display: three times as fast as zipping the names)."""
    (
        source,
        sensor,
        rule_name,
        rule_id,
        severity,
        risk,
        tactics,
        techniques,
        entities,
        folded,
        block,
        posture,
        critical,
        intel,
        process,
        ancestry,
    ) = shared
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
        "suppressed": folded,
        "building_block": block,
        "posture": posture,
        "critical": critical,
        "intel": intel,
        "process_id": process,
        "ancestry": ancestry,
        "message": None,
        "raw_json": None,
    }


assert tuple(_form(SHARED_FIELDS)) == ALERT_FIELDS
assert _shared(_form(SHARED_FIELDS)) == SHARED_FIELDS


def alert_of(
    form: dict[str, Any],
    alert_id: str,
    timestamp: datetime,
    message: str,
    raw_json: FileSpan | bytes,
) -> Alert:
    """The alert, from its shared part as a dict in `ALERT_FIELDS` order, built the way
    unpickling builds a model (pydantic's `__setstate__` sets these four attributes; copying a
    dict and setting four keys is a fifth of the time of zipping them all)."""
    values = form.copy()
    values["id"] = alert_id
    values["timestamp"] = timestamp
    values["message"] = message
    values["raw_json"] = raw_json
    alert = _new_alert(Alert)
    _set(alert, "__dict__", values)
    _set(alert, "__pydantic_fields_set__", ALERT_FIELDS_SET)
    _set(alert, "__pydantic_extra__", None)
    _set(alert, "__pydantic_private__", None)
    return alert


_new_alert = Alert.__new__
_set = object.__setattr__
