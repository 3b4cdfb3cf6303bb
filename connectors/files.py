"""Alert files: NDJSON (streamed line by line), a JSON array (streamed element by element), one
JSON object, or concatenated pretty-printed objects. Never loads a whole file into memory.

Each document comes out as a `Document` (line, value, and for NDJSON the line's bytes, which the
alert keeps instead of encoding the document again); anything unparsable comes out as a
`DeadLetter` with its line number and reason, and reading goes on.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from agent.errors import BadInput
from agent.models import DeadLetter
from agent.normalize import MAX_DEPTH, NormalizeError, check_depth

MAX_DOC_BYTES = 1 << 20
#: A UTF-8 byte order mark: Windows tools write one (PowerShell 5's `Out-File -Encoding utf8`),
#: and RFC 8259 lets a reader ignore it. At a file's start, or a line's (files concatenated).
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 16
_WS = b" \t\r\n"
_NEXT_OBJECT = re.compile(r"\n[ \t]*\{")


class Document(NamedTuple):
    line: int
    value: Any
    raw: bytes | None = None
    at: int = -1  # where `raw` starts in the stream read (NDJSON only)


Parsed = Document | DeadLetter


def check_readable(path: str | Path) -> None:
    """Raise `BadInput` now for a file that cannot be opened, before any work starts."""
    _open(Path(path)).close()


def _open(p: Path) -> IO[bytes]:
    try:
        return p.open("rb")
    except OSError as exc:
        raise BadInput(f"cannot read {p}: {exc.strerror or exc}") from exc


def read_documents(path: str | Path, max_doc_bytes: int = MAX_DOC_BYTES) -> Iterator[Parsed]:
    """Every document in the file, in order, as a `Document` or a `DeadLetter`."""
    p = Path(path)
    with _open(p) as fh:
        _skip_bom(fh)
        layout = _layout(fh)
        if layout == "ndjson":
            yield from _ndjson(fh, str(p), max_doc_bytes)
        else:
            yield from _json_values(fh, str(p), max_doc_bytes, array=layout == "array")


def is_ndjson(path: str | Path) -> bool:
    """One document a line (what a parallel reader can cut at any line break)."""
    with _open(Path(path)) as fh:
        _skip_bom(fh)
        return _layout(fh) == "ndjson"


def _skip_bom(fh: IO[bytes]) -> None:
    if fh.read(len(BOM)) != BOM:
        fh.seek(0)


def ndjson_documents(data: bytes, name: str, max_doc_bytes: int) -> Iterator[Parsed]:
    """The documents of a run of whole NDJSON lines, numbered from 1 (a chunk of a file)."""
    return _ndjson(io.BytesIO(data), name, max_doc_bytes)


def _layout(fh: IO[bytes]) -> str:
    start = fh.tell()
    head = fh.read(_CHUNK)
    fh.seek(start)
    first = head.lstrip(_WS)[:1]
    if first == b"[":
        return "array"
    if first == b"{" and not _first_line_is_json(head):
        return "concatenated"
    return "ndjson"


def _first_line_is_json(head: bytes) -> bool:
    line = head.lstrip(_WS).split(b"\n", 1)[0]
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _excerpt(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:200]


def _checked(
    name: str,
    line: int,
    value: Any,
    brackets: int,
    raw: bytes | str,
    keep: bytes | None = None,
    at: int = -1,
) -> Parsed:
    """Every document leaves here no deeper than MAX_DEPTH, so normalisers can skip the walk.

    Counting brackets in the raw text is a cheap upper bound on depth; only documents with more
    brackets than the limit are walked."""
    if brackets > MAX_DEPTH:
        try:
            check_depth(value)
        except NormalizeError as exc:
            return DeadLetter(source=name, line=line, reason=str(exc), excerpt=_excerpt(raw))
    return Document(line, value, keep, at)


def _ndjson(fh: IO[bytes], name: str, max_bytes: int) -> Iterator[Parsed]:
    end = fh.tell()
    for n, line in enumerate(fh, 1):
        at, end = end, end + len(line)
        if len(line) > max_bytes:
            yield DeadLetter(
                source=name,
                line=n,
                reason=f"document larger than {max_bytes} bytes",
                excerpt=_excerpt(line[:200]),
            )
            continue
        if line.isspace():  # blank; asked without copying the line, as strip() would
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # Looked at only when parsing failed: no cost to the lines that parse.
            if line.startswith(BOM) and not line[len(BOM) :].strip():
                continue  # a byte order mark alone: a blank line, as at the file's start
            try:
                value, line = _without_bom(line, exc)
                at += len(BOM)
            except orjson.JSONDecodeError as still:
                yield DeadLetter(
                    source=name, line=n, reason=f"invalid JSON: {still}", excerpt=_excerpt(line)
                )
                continue
        brackets = line.count(b"{") + line.count(b"[")
        yield _checked(name, n, value, brackets, line, line.rstrip(), at)


def _without_bom(line: bytes, error: orjson.JSONDecodeError) -> tuple[Any, bytes]:
    """The line parsed past a leading byte order mark; else the parse error, again."""
    if not line.startswith(BOM):
        raise error
    line = line[len(BOM) :]
    return orjson.loads(line), line


def _json_values(fh: IO[bytes], name: str, max_bytes: int, array: bool) -> Iterator[Parsed]:
    """A JSON array's elements, or a run of concatenated values, decoded incrementally."""
    decoder = json.JSONDecoder()
    buf = ""
    line = 1
    eof = False
    pos = 0
    if array:
        buf = fh.read(_CHUNK).decode("utf-8", "replace")
        pos = buf.index("[") + 1
    while True:
        # Skip separators, counting lines so errors can point at them.
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or eof:
                break
            chunk = fh.read(_CHUNK)
            eof = not chunk
            buf, pos = buf[pos:] + chunk.decode("utf-8", "replace"), 0
        if pos >= len(buf):
            if array:  # a truncated export: say so rather than end quietly
                yield DeadLetter(
                    source=name,
                    line=line,
                    reason="file ends before its JSON array is closed (truncated?)",
                    excerpt="",
                )
            return
        if array and buf[pos] == "]":  # the array ended; anything after it is read as values
            array, pos = False, pos + 1
            continue
        try:
            value, end = decoder.raw_decode(buf, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            truncated = isinstance(exc, json.JSONDecodeError)
            if truncated and not eof and len(buf) - pos <= max_bytes:
                chunk = fh.read(_CHUNK)
                eof = not chunk
                buf, pos = buf[pos:] + chunk.decode("utf-8", "replace"), 0
                continue
            reason = (
                f"invalid JSON: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else f"nesting deeper than {MAX_DEPTH} levels"
            )
            # Resynchronise at the next line that opens an object, so later documents survive;
            # the dead letter says which lines that skipped.
            found = _NEXT_OBJECT.search(buf, pos + 1)
            stop = found.start() + 1 if found else len(buf)
            crossed = buf.count("\n", pos, stop)
            if crossed > 1:
                reason += f" (lines {line}-{line + crossed - 1} skipped, up to the next object)"
            yield DeadLetter(
                source=name,
                line=line,
                reason=reason,
                excerpt=_excerpt(buf[pos : pos + 200]),
            )
            line += crossed
            pos = stop
            if not found and eof:
                return
            continue
        if end - pos > max_bytes:
            yield DeadLetter(
                source=name,
                line=line,
                reason=f"document larger than {max_bytes} bytes",
                excerpt=_excerpt(buf[pos : pos + 200]),
            )
        else:
            brackets = buf.count("{", pos, end) + buf.count("[", pos, end)
            yield _checked(name, line, value, brackets, buf[pos : pos + 200])
        line += buf.count("\n", pos, end)
        pos = end
