"""Alert documents read leniently: what an attacker writes into a logged field must not push
the alert out of triage. A document over the size limit is read with its longest strings cut
until it fits; bytes that are not UTF-8, and raw control characters in strings, are read as
U+FFFD and kept. Either way the document held is not the file's bytes: the reader keeps the
JSON given here with the alert.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import orjson

from agent.normalize import NormalizeError, check_depth

#: A UTF-8 byte order mark: Windows tools write one (PowerShell 5's `Out-File -Encoding utf8`),
#: and RFC 8259 lets a reader ignore it. At a file's start, or a line's (files concatenated).
BOM = codecs.BOM_UTF8

#: How much larger than the limit a line may be and still be read, its longest strings
#: shortened (`shortened_line`).
SHORTENED_FROM = 16
_SHORTENED_KEY = "vigie.shortened"


def shortened_line(line: bytes, max_bytes: int) -> tuple[Any, bytes] | None:
    """An NDJSON line over the limit, read and shortened (`shortened`); None if it cannot be."""
    if len(line) > SHORTENED_FROM * max_bytes:
        return None  # not even parsed
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        value = repaired_json(line) if _opens_object(line) else None
    return shortened(value, len(line.rstrip()), max_bytes)


def shortened(value: Any, size: int, max_bytes: int) -> tuple[Any, bytes] | None:
    """A document over the limit (`size` bytes), its longest strings cut until it is within
    it, and a field saying so (`vigie.shortened`: the bytes it had, the characters each long
    string kept), with its JSON. A command line of megabytes is the attacker's to write, and a
    document over the limit was only a dead letter, out of every incident. None when it is
    more than `SHORTENED_FROM` times the limit, no object, or over it still (its many small
    fields)."""
    if size > SHORTENED_FROM * max_bytes or not isinstance(value, dict):
        return None
    try:
        check_depth(value)
    except NormalizeError:
        return None
    keep = 1 << 16
    while keep >= 1 << 8:
        cut = {**_cut(value, keep), _SHORTENED_KEY: {"bytes": size, "kept": keep}}
        try:
            data = orjson.dumps(cut)
        except TypeError:  # integers beyond 64 bits, a lone surrogate: nothing can store it
            return None
        if len(data) <= max_bytes:
            return cut, data
        keep >>= 2
    return None


def _cut(value: Any, keep: int) -> Any:
    """`value` with every string longer than `keep` characters cut to them, and saying so."""
    if isinstance(value, str):
        if len(value) <= keep:
            return value
        return f"{value[:keep]}... [{len(value) - keep:,} characters cut by Vigie]"
    if isinstance(value, dict):
        return {k: _cut(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, keep) for v in value]
    return value


def repaired_line(line: bytes) -> tuple[Any, bytes] | None:
    """A line holding an object that is JSON but for bytes that are not UTF-8 or raw control
    characters in its strings (`repaired_json`): its value, and that value's JSON."""
    if not _opens_object(line):  # no alert (a syslog line in the wrong file): not read again
        return None
    value = repaired_json(line)
    return None if value is None else (value, orjson.dumps(value))


def _opens_object(line: bytes) -> bool:
    return line.removeprefix(BOM).lstrip()[:1] == b"{"


def repaired_json(data: bytes) -> Any | None:
    """JSON but for bytes that are not UTF-8, or raw control characters (a tab) in its strings:
    its value, each such byte read as U+FFFD. Wazuh's alerts.json carries a logged line's bytes
    as they came (a Windows program's name, wazuh#2514), and one such byte an attacker put in a
    user agent kept the alert out of Wazuh's indexer (wazuh#38561): a dead letter here, out of
    every incident. None for anything else orjson refuses (NaN, integers beyond 64 bits, lone
    surrogates: refused still, as nothing downstream can encode them)."""
    text = data.removeprefix(BOM).decode("utf-8", "replace")
    try:
        value = json.loads(text, strict=False, parse_constant=_no_constant)
        orjson.dumps(value)  # encodable, as it will be stored
    except (ValueError, TypeError, RecursionError):  # orjson's encode error is a TypeError
        return None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")
