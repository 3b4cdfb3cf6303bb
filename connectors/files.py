"""Alert files: NDJSON (streamed line by line), a JSON array (streamed element by element), one
JSON object, concatenated pretty-printed objects, or a search response (its hits, streamed);
any of them gzip-compressed (Wazuh rotates its `alerts.json` into daily `.json.gz` files).
Never loads a whole file into memory.

Each document comes out as a `Document` (line, value, and for NDJSON the line's bytes, which the
alert keeps instead of encoding the document again); anything unparsable comes out as a
`DeadLetter` with its line number and reason, and reading goes on.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, cast

import orjson

from agent.errors import BadInput
from agent.models import DeadLetter
from agent.normalize import MAX_DEPTH, NormalizeError, check_depth
from connectors.lenient import BOM, SHORTENED_FROM, repaired_line, shortened, shortened_line

MAX_DOC_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
#: UTF-16's byte order marks: Windows PowerShell 5 writes UTF-16 with `>` and `Out-File`
#: (`Get-WinEvent ... | ConvertTo-Json > alerts.json`).
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
#: What a gzip stream raises when it is cut short or corrupt, part way through.
_BROKEN_STREAM = (EOFError, gzip.BadGzipFile, zlib.error)
_CHUNK = 1 << 16
_WS = b" \t\r\n"
_NEXT_OBJECT = re.compile(r"\n[ \t]*\{")
#: A search response saved as it came (`curl .../_search > alerts.json`): its hits' array opens
#: in its first bytes, no other array before it (`"took"`, `"_shards"`, `"hits": {"total"...`).
_SEARCH_RESPONSE = re.compile(rb'\A\s*\{[^\[]*?"hits"\s*:\s*\{[^\[]*?"hits"\s*:\s*\[')
_IN_STRING = re.compile(r'["\\]')  # what ends a string, or escapes its next character
_STRUCTURE = re.compile(r'["{}\[\]]')  # outside strings: what opens one, or a bracket
_INDENT_MAX = 256  # blanks before an object's "{" kept across chunks while skipping


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
    """The file's bytes, decompressed when it is gzip, as UTF-8 when it is UTF-16."""
    try:
        packing = _packing(p)
        if packing == "gzip":
            return cast(IO[bytes], gzip.open(p, "rb"))
        if packing == "utf-16":
            return _as_utf8(p)
        return p.open("rb")
    except OSError as exc:
        raise BadInput(f"cannot read {p}: {exc.strerror or exc}") from exc


def _packing(path: str | Path) -> Literal["gzip", "utf-16", "plain"]:
    """What the file's first two bytes say it is, not its name (a rotated log is
    `alerts.json.1`): gzip, UTF-16 (every line of one was a dead letter), or plain."""
    with Path(path).open("rb") as fh:
        head = fh.read(2)
    if head == GZIP_MAGIC:
        return "gzip"
    return "utf-16" if head in UTF16_BOMS else "plain"


def _as_utf8(p: Path) -> IO[bytes]:
    """A UTF-16 file's text as UTF-8, in a temporary file gone when closed (the readers read
    bytes, and seek)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned open: the caller's `with` closes it
    try:
        _transcode(p, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return cast(IO[bytes], out)


def _transcode(p: Path, out: IO[bytes]) -> None:
    """UTF-16 (either byte order, its mark dropped) into UTF-8; line breaks kept as written,
    so lines are numbered as in the file; a broken sequence becomes U+FFFD."""
    with p.open(encoding="utf-16", errors="replace", newline="") as src:
        while chunk := src.read(1 << 20):
            out.write(chunk.encode())


def decompressed(path: Path, into: Path) -> Path | None:
    """A gzip file's plain copy at `into`, or a UTF-16 file's UTF-8 copy, for a reader that
    cuts files at byte offsets (see `agent.parallel_read`); None when the file is neither, or
    its stream breaks part way (its own reading says from which line), or the copy cannot be
    written (a full disk)."""
    try:
        packing = _packing(path)
        if packing == "utf-16":
            with into.open("wb") as dst:
                _transcode(path, dst)
            return into
        if packing == "plain":
            return None
        with gzip.open(path, "rb") as src, into.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, *_BROKEN_STREAM):
        into.unlink(missing_ok=True)
        return None
    return into


def read_documents(path: str | Path, max_doc_bytes: int = MAX_DOC_BYTES) -> Iterator[Parsed]:
    """Every document in the file, in order, as a `Document` or a `DeadLetter`. A compressed
    file cut short or corrupt ends in a dead letter that says from which line nothing was read."""
    p = Path(path)
    with _open(p) as fh:
        line = 0
        try:
            for item in _documents(fh, str(p), max_doc_bytes):
                line = item.line or line
                yield item
        except _BROKEN_STREAM as exc:
            reason = f"compressed file unreadable from here, nothing after it read ({exc})"
            yield DeadLetter(source=str(p), line=line + 1, reason=reason, excerpt="")


def _documents(fh: IO[bytes], name: str, max_doc_bytes: int) -> Iterator[Parsed]:
    _skip_bom(fh)
    layout = _layout(fh, max_doc_bytes)
    if layout == "ndjson":
        return _ndjson(fh, name, max_doc_bytes)
    if layout == "search":  # its hits, each a document; what follows them is no alert
        return _Values(fh, name, max_doc_bytes).read(array=True, only_the_array=True)
    return _json_values(fh, name, max_doc_bytes, array=layout == "array")


def layout_of(path: str | Path, max_doc_bytes: int = MAX_DOC_BYTES) -> str | None:
    """How a plain file holds its documents: "ndjson", "array", "concatenated" or "search";
    None for a compressed or UTF-16 file (read decompressed or as UTF-8: no byte offset is
    the file's)."""
    if _packing(path) != "plain":
        return None
    with _open(Path(path)) as fh:
        _skip_bom(fh)
        return _layout(fh, max_doc_bytes)


def _skip_bom(fh: IO[bytes]) -> None:
    if fh.read(len(BOM)) != BOM:
        fh.seek(0)


def ndjson_documents(data: bytes, name: str, max_doc_bytes: int) -> Iterator[Parsed]:
    """The documents of a run of whole NDJSON lines, numbered from 1 (a chunk of a file)."""
    return _ndjson(io.BytesIO(data), name, max_doc_bytes)


def _layout(fh: IO[bytes], max_doc_bytes: int) -> str:
    start = fh.tell()
    head = fh.read(_CHUNK)
    fh.seek(start)
    first = head.lstrip(_WS)[:1]
    if first == b"[":
        return "array"
    if _SEARCH_RESPONSE.match(head):
        return "search"
    if first == b"{" and not _first_line_is_json(fh, max_doc_bytes):
        return "concatenated"
    return "ndjson"


def _first_line_is_json(fh: IO[bytes], max_doc_bytes: int) -> bool:
    """Whether the first line that is not blank holds a whole document, read to its end however
    long. A line longer than any document may be is NDJSON's too: a pretty-printed object's
    first line is short, and the NDJSON reader rejects that line alone and reads on."""
    start = fh.tell()
    line = b" "
    while line and line.isspace():
        line = fh.readline(max_doc_bytes + 1)
    fh.seek(start)
    if len(line) > max_doc_bytes:
        return True
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _excerpt(raw: bytes | str) -> str:
    """The start of a rejected line, without the line break that ends it."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:200].rstrip("\r\n")


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
            shortened = shortened_line(line, max_bytes)
            if shortened is None:
                yield DeadLetter(
                    source=name,
                    line=n,
                    reason=f"document larger than {max_bytes} bytes",
                    excerpt=_excerpt(line[:200]),
                )
                continue
            (value, line), at = shortened, -1  # not the file's bytes: the alert keeps them
        elif line.isspace():  # blank; asked without copying the line, as strip() would
            continue
        else:
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                # Looked at only when parsing failed: no cost to the lines that parse.
                again = _read_again(line, exc)
                if again is None:
                    continue  # a byte order mark alone: a blank line, as at the file's start
                if isinstance(again, str):
                    yield DeadLetter(source=name, line=n, reason=again, excerpt=_excerpt(line))
                    continue
                value, line, skipped = again
                at = -1 if skipped < 0 else at + skipped
        brackets = line.count(b"{") + line.count(b"[")
        yield _checked(name, n, value, brackets, line, line.rstrip(), at)


def _read_again(line: bytes, error: orjson.JSONDecodeError) -> tuple[Any, bytes, int] | str | None:
    """A line orjson refused, read again: past a byte order mark (files concatenated), or
    repaired (`repaired_line`), as (value, its bytes, bytes skipped at its start; -1 when they
    are not the file's); None for a mark alone; else why it is no document."""
    if not line.startswith(BOM):
        repaired = repaired_line(line)
        return f"invalid JSON: {error}" if repaired is None else (*repaired, -1)
    rest = line[len(BOM) :]
    if not rest.strip():
        return None
    try:
        return orjson.loads(rest), rest, len(BOM)
    except orjson.JSONDecodeError as still:
        repaired = repaired_line(line)
        return f"invalid JSON: {still}" if repaired is None else (*repaired, -1)


def _json_values(fh: IO[bytes], name: str, max_bytes: int, array: bool) -> Iterator[Parsed]:
    """A JSON array's elements, or a run of concatenated values, decoded incrementally."""
    return _Values(fh, name, max_bytes).read(array)


class Misaligned(Exception):
    """A piece of an array or of concatenated values that `value_documents` cannot read as
    the serial reader would: the caller reads on from the piece's start with `values_from`."""


_SEPARATORS = re.compile(r"[ \t\r\n,]*")  # what `_Values.next_value` skips between values
#: A `\\uD800`-`\\uDFFF` escape: it may leave a lone surrogate, which no UTF-8 can hold; the
#: serial reader's alert then fails on encoding its document, which this one must do too.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DECODER = json.JSONDecoder(strict=False)  # as `_Values` decodes
_LINE_MAX = 1 << 16  # how far a line break is looked for after a value's start


def value_documents(
    data: bytes,
    name: str,
    max_bytes: int,
    *,
    array: bool,
    first: bool,
    last: bool,
    before: bytes = b"",
) -> Iterator[Parsed]:
    """The documents of a piece of a JSON array (or of concatenated values) cut just before a
    value starts, numbered from the piece's first line, each with its bytes and where they
    start. Everything read as `_Values` reads it; raises `Misaligned` at whatever `_Values`
    treats otherwise (a value that does not parse, is too large or runs past the piece, the
    array's end with more after it, bytes that are not UTF-8), and at a value that does not
    end where the next piece starts: so a cut that fell inside a value (a string holding
    `},{`) is never read as values. `first`: the file's start (its byte order mark, the
    array's bracket); `last`: the file's end (the array must close); `before`: the bytes
    before the piece, up to `LINE_BACK` (how its first line begins)."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise Misaligned(str(exc)) from exc
    plain, surrogates = data.isascii(), bool(_SURROGATE_ESCAPE.search(text))
    pos = 1 if first and text.startswith("\ufeff") else 0
    if first and array:
        pos = text.index("[", pos) + 1
    line, size = 1 + text.count("\n", 0, pos), len(text)
    byte_at = char_at = 0  # a character's position and its byte offset (text is not ASCII)
    while True:
        start = _SEPARATORS.match(text, pos).end()  # type: ignore[union-attr]
        line += text.count("\n", pos, start)
        if start == size:
            break
        if array and text[start] == "]":
            if last and _SEPARATORS.fullmatch(text, start + 1):
                return
            raise Misaligned("values after the array")
        value, end = _value_at(text, start)
        if end - start > max_bytes:
            doc_bytes = end - start if plain else len(text[start:end].encode())
            cut = shortened(value, doc_bytes, max_bytes)
            if cut is not None:
                yield Document(line, *cut)  # its bytes are not the file's: the alert keeps them
            elif doc_bytes <= SHORTENED_FROM * max_bytes or _after_another(
                text, start, first, before
            ):
                yield DeadLetter(
                    source=name,
                    line=line,
                    reason=f"document larger than {max_bytes} bytes",
                    excerpt=_excerpt(text[start : start + 200]),
                )
            else:  # `_Values` reads on from the next line opening an object (`skipped`)
                raise Misaligned("too large")
        else:
            raw: bytes | None
            if plain:
                raw, at = data[start:end], start
            else:
                byte_at += len(text[char_at:start].encode())
                raw, at = text[start:end].encode(), byte_at
                byte_at, char_at = byte_at + len(raw), end
            if surrogates and _SURROGATE_ESCAPE.search(text, start, end):
                raw = None  # encoded from the value, as the serial reader does (and fails)
            brackets = text.count("{", start, end) + text.count("[", start, end)
            yield _checked(name, line, value, brackets, text[start : start + 200], raw, at)
        line += text.count("\n", start, end)
        pos = end
    if array and last:
        raise Misaligned("the array is not closed")


#: How many bytes before a piece its reader is given: enough to tell whether its first value
#: starts its line, as `_Values.indent` tells it.
LINE_BACK = _INDENT_MAX + 1


def _after_another(text: str, start: int, first: bool, before: bytes) -> bool:
    """Whether the value at `start` follows something else on its line (a comma, the array's
    bracket), as `_Values.indent` tells: too large, such a value is skipped to its end
    (`_Values.oversized`). At the piece's start, `before` tells how the line began."""
    newline = text.rfind("\n", 0, start)
    line = text[newline + 1 : start]
    if newline < 0 and first:
        line = line.removeprefix("\ufeff")  # the file's mark, which `_Values` never sees
    elif newline < 0:
        cut = before.rfind(b"\n")
        if cut < 0 and len(before) >= LINE_BACK:
            return True  # longer than any indentation `_Values` keeps: none, as after a value
        line = before[cut + 1 :].removeprefix(BOM).decode(errors="replace") + line
    return bool(line.strip(" \t"))


def _value_at(text: str, start: int) -> tuple[Any, int]:
    """The value at `start` and where it ends. One that fills the rest of its line (up to a
    comma: an array written one element a line), or an object printed a field a line, is
    parsed by orjson, three times as fast, which takes no input the standard parser reads
    otherwise (it refuses what it would read differently: NaN, integers beyond 64 bits, lone
    surrogates, raw control characters), and only the whole of what it is given: so where the
    value was guessed to end is where it ends. Any other by the standard parser, as `_Values`
    parses."""
    end = _pretty_end(text, start) if text.startswith("{\n", start) else _line_end(text, start)
    if end > start:
        try:
            return orjson.loads(text[start:end]), end
        except orjson.JSONDecodeError:
            pass
    try:
        return _DECODER.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise Misaligned(str(exc)) from exc


def _line_end(text: str, start: int) -> int:
    """Where a value filling the rest of its line would end (before a comma); -1 when no line
    break is within reach (one long line)."""
    end = text.find("\n", start, start + _LINE_MAX)
    while end > start and text[end - 1] in " \t\r,":
        end -= 1
    return end


def _pretty_end(text: str, start: int) -> int:
    """Where an object printed a field a line (`jq .`, `json.dumps(indent=2)`) would end: at
    the first line closing it as indented as it opens; -1 when it opens no line of its own."""
    newline = text.rfind("\n", 0, start)
    indent = text[newline + 1 : start]
    if newline < 0 or indent.strip(" \t"):
        return -1
    close = text.find(f"\n{indent}}}", start)
    return -1 if close < 0 else close + len(indent) + 2


def values_from(path: str, start: int, line: int, max_bytes: int, array: bool) -> Iterator[Parsed]:
    """The documents of an array (or of concatenated values) from byte `start`, where a value
    starts, on `line`: the serial reading of what `value_documents` could not read."""
    if start == 0:
        yield from read_documents(path, max_bytes)
        return
    with open(path, "rb") as fh:
        fh.seek(max(0, start - _INDENT_MAX - 1))
        before = fh.read(min(start, _INDENT_MAX + 1))
        values = _Values(fh, path, max_bytes)
        values.line, values.indent = line, _indent(before, start)
        fh.seek(start)
        yield from values.read(array, inside=True)


def _indent(before: bytes, start: int) -> str | None:
    """The blanks before a value on its line (`_Values.indent`), from the bytes before it."""
    newline = before.rfind(b"\n")
    if newline < 0 and start > len(before):
        return None  # a longer line than any indentation
    blanks = before[newline + 1 :]
    return blanks.decode() if not blanks.strip(b" \t") else None


class _Values:
    """Values decoded a chunk at a time: the buffer holds what is left of the chunks read,
    `pos` where the next value starts, `line` that position's line in the file."""

    def __init__(self, fh: IO[bytes], name: str, max_bytes: int) -> None:
        self.fh, self.name, self.max_bytes = fh, name, max_bytes
        # Incremental: a character cut between two chunks stays whole.
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        #: The blanks before the value at `pos` on its line; None when it does not start
        #: its line (after another value, a comma or the array's bracket).
        self.indent: str | None = ""

    def more(self, at_least: int = _CHUNK) -> None:
        """The next chunk, after what is left of the buffer."""
        chunk = self.fh.read(max(_CHUNK, at_least))
        self.eof = not chunk
        self.buf = self.buf[self.pos :] + self._utf8.decode(chunk, final=self.eof)
        self.pos = 0

    def read(
        self, array: bool, only_the_array: bool = False, inside: bool = False
    ) -> Iterator[Parsed]:
        """`only_the_array`: what follows the first array is not read (a search response's
        aggregations after its hits); `inside`: reading starts past the array's bracket."""
        decoder = json.JSONDecoder(strict=False)  # a raw tab in a string, as `lenient` reads one
        if array and not inside:
            self.more()
            self.pos = self.buf.index("[") + 1
            self.line += self.buf.count("\n", 0, self.pos)
            self.indent = None
        while self.next_value():
            buf, pos = self.buf, self.pos
            if array and buf[pos] == "]":  # the array ended; anything after it is read as values
                if only_the_array:
                    return
                array, self.pos = False, pos + 1
                continue
            try:
                value, end = decoder.raw_decode(buf, pos)
            except (json.JSONDecodeError, RecursionError) as exc:
                if isinstance(exc, json.JSONDecodeError) and not self.eof:
                    if len(buf) - pos <= SHORTENED_FROM * self.max_bytes:
                        # It may go on in the next chunk; as long again: a value of megabytes
                        # is decoded a few times, not once every chunk.
                        self.more(len(buf) - pos)
                        continue
                    if _ran_out(exc, len(buf)):  # and it goes on past the limit
                        yield self.oversized()
                        continue
                yield self.skipped(_reason(exc))
                continue
            if end - pos > self.max_bytes:
                too_large = self._too_large(value, buf[pos:end])
                if too_large is None:  # as when it ran past the buffer (`oversized`)
                    yield self.skipped(f"document larger than {self.max_bytes} bytes")
                    continue
                yield too_large
            else:
                brackets = buf.count("{", pos, end) + buf.count("[", pos, end)
                yield _checked(self.name, self.line, value, brackets, buf[pos : pos + 200])
            self.line += buf.count("\n", pos, end)
            self.pos, self.indent = end, None
        if array:  # a truncated export: say so rather than end quietly
            yield self._dead("file ends before its JSON array is closed (truncated?)", "")

    def next_value(self) -> bool:
        """On past separators (counting lines, so errors can point at them) to the next value;
        False at the end of the file."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                char = buf[pos]
                if char == "\n":
                    self.line, self.indent = self.line + 1, ""
                elif self.indent is not None:
                    self.indent = (
                        self.indent + char
                        if char in " \t" and len(self.indent) < _INDENT_MAX
                        else None
                    )
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return True
            if self.eof:
                return False
            self.more()

    def _too_large(self, value: Any, text: str) -> Parsed | None:
        """A value read whole but over the limit: shortened (`shortened`), or a dead letter;
        None for one `SHORTENED_FROM` times the limit that starts its line, to skip as
        `oversized` skips it: whether the buffer held it whole must not change the outcome."""
        size = len(text.encode(errors="replace"))
        cut = shortened(value, size, self.max_bytes)
        if cut is not None:
            return Document(self.line, *cut)
        if size > SHORTENED_FROM * self.max_bytes and self.indent is not None:
            return None
        return self._dead(f"document larger than {self.max_bytes} bytes")

    def oversized(self) -> DeadLetter:
        """The value at `pos`, longer than the limit, as one dead letter. One that does not start
        its line (an array on one line, as `json.dumps` writes a list) is skipped to its end, a
        chunk at a time, however far: no line break after it may open the next value, and
        reading on from the next one did not resume before the file's end. Else as `skipped`."""
        reason = f"document larger than {self.max_bytes} bytes"
        if self.indent is not None or self.buf[self.pos] not in "{[":
            return self.skipped(reason)
        line, excerpt = self.line, _excerpt(self.buf[self.pos : self.pos + 200])
        if not self._past_value():
            reason += "; the file ends inside it"
        return self._dead(reason, excerpt, line)

    def _past_value(self) -> bool:
        """Move `pos` past the object or array starting there, following its strings and
        brackets across chunks, the buffer holding one chunk at a time; False if the file
        ends first."""
        depth, in_string, escaped = 0, False, False
        while True:
            buf, i = self.buf, self.pos + escaped  # an escape cut at a chunk's end: its char
            escaped = False
            while True:
                found = (_IN_STRING if in_string else _STRUCTURE).search(buf, i)
                if found is None:
                    i = len(buf)
                    break
                char, i = found.group(), found.end()
                if char == "\\":
                    if i == len(buf):
                        escaped = True
                        break
                    i += 1
                elif char == '"':
                    in_string = not in_string
                elif char in "{[":
                    depth += 1
                else:
                    depth -= 1
                    if depth == 0:
                        self.line += buf.count("\n", self.pos, i)
                        self.pos, self.indent = i, None
                        return True
            self.line += buf.count("\n", self.pos, i)
            self.pos = len(buf)
            if self.eof:
                return False
            self.more()

    def skipped(self, reason: str) -> DeadLetter:
        """The value at `pos`, which did not parse, as one dead letter: reading resumes at the
        next line that opens an object, however many chunks away, and the dead letter says
        which lines that skipped."""
        line, excerpt = self.line, _excerpt(self.buf[self.pos : self.pos + 200])
        crossed, search_from = 0, self.pos + 1
        next_object = self._next_object_like_this()
        while True:
            found = next_object.search(self.buf, search_from)
            stop = found.start() + 1 if found else self._kept_from()
            crossed += self.buf.count("\n", self.pos, stop)
            self.pos = stop
            if found or self.eof:
                self.indent = "" if found else None  # reading goes on at a line's start
                break
            self.more()  # only the tail that may start the next object is kept
            search_from = 0
        self.line += crossed
        if crossed > 1:
            reason += f" (lines {line}-{line + crossed - 1} skipped, up to the next object)"
        return self._dead(reason, excerpt, line)

    def _next_object_like_this(self) -> re.Pattern[str]:
        """Where the next value starts: a line opening an object as indented as the one at
        `pos` (`jq`'s objects at the margin, an array's elements two blanks in). A line
        indented deeper opens an object nested in the one skipped: read as documents, an
        oversized object's nested items became alerts. Any indentation, when the value
        at `pos` does not start its line."""
        if self.indent is None:
            return _NEXT_OBJECT
        return re.compile(r"\n" + re.escape(self.indent) + r"\{")

    def _kept_from(self) -> int:
        """Where the buffer's tail that the next chunk may turn into an object's start begins
        (a line break and a few blanks); the buffer's end when there is none, or at the file's
        end."""
        newline = self.buf.rfind("\n")
        tail = self.buf[newline + 1 :]
        if self.eof or newline < self.pos or len(tail) > _INDENT_MAX or tail.strip(" \t"):
            return len(self.buf)
        return newline

    def _dead(self, reason: str, excerpt: str | None = None, line: int | None = None) -> DeadLetter:
        """A dead letter for the value at `pos` (or at `line`, with its `excerpt`)."""
        if excerpt is None:
            excerpt = _excerpt(self.buf[self.pos : self.pos + 200])
        return DeadLetter(source=self.name, line=line or self.line, reason=reason, excerpt=excerpt)


def _ran_out(exc: json.JSONDecodeError, size: int) -> bool:
    """Whether decoding stopped because the text ended, not on a mistake: at the end (a
    literal or an escape cut short fails a few characters before it), or in a string never
    closed (a line break inside one is an error of its own)."""
    return exc.pos >= size - 8 or exc.msg.startswith("Unterminated string")


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg}"
    return f"nesting deeper than {MAX_DEPTH} levels"
