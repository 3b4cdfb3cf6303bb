"""Documents that repeat but for their id, time and message are normalised once.

Most of a day's alerts are repeats: one rule firing on one host sends the same document again and
again, with only its id, timestamp and message new (Wazuh's `full_log` carries the syslog time),
and fields no normaliser reads (`rule.firedtimes` counts up; Suricata's flow id, ports and
counters are each connection's own). Normalising walks every field of every document, so a
repeat is recognised instead: the document with those fields masked is the key, and a hit only
reads the id, time and message again. A miss, or a document whose masked field is ambiguous
(set both as a dotted key and nested, or an id, time or message set to an object), takes the
full path.

This is exact only because no normaliser reads the masked fields for anything but the id, the
time and the message (`UNREAD_PATHS` not at all), and because a format whose document names its
rule by its message (ECS without `rule.name`) says so, and such a document is not remembered;
`tests/unit/test_repeats.py` holds every format to it. A feed with no repeats pays the key
(a few µs), and stops paying it: when fewer than one look-up in `MIN_HIT_RATE` hits, the next
`PAUSE` documents go straight to the full path. The memo lives as long as its process (a
Celery worker's may live for days), so it keeps no alert's id, time or raw document, and starts
anew past 4,096 documents or 16 MB of keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

#: Where formats keep an alert's id, its time and its message: read again on every repeat.
VOLATILE_PATHS = (
    "@timestamp",
    "timestamp",
    "kibana.alert.original_time",
    "event.id",
    "kibana.alert.uuid",
    "_id",
    "id",
    "message",
    "kibana.alert.reason",
    "full_log",
)
#: What one event has of its own that no normaliser reads (Wazuh's counter and syslog time,
#: Suricata's flow, ports and times): masked whole, whatever it holds.
UNREAD_PATHS = (
    "predecoder.timestamp",
    "rule.firedtimes",
    "data.timestamp",
    "data.flow_id",
    "data.flow",
    "data.src_port",
    "data.dest_port",
    "data.community_id",
    "data.tx_id",
)
_UNREAD = frozenset(UNREAD_PATHS)
_MASK = "\x00vigie-volatile"  # stands for any value but null, so a null still tells formats apart

Getter = Callable[[str], Any]
#: A format's reading of an alert's time from its id and time fields.
TimeOf = Callable[[Getter], datetime]
#: A format's reading of an alert's message from its masked fields.
MessageOf = Callable[[Getter], str]
#: The full normalisation of a document: its alert fields, how its format reads the time, and
#: what makes the reader of a repeat's message (None: the document's other fields depend on it).
Normalise = Callable[
    [dict[str, Any], bytes | None],
    tuple[dict[str, Any], TimeOf, Callable[[], MessageOf | None]],
]
#: An alert's fields as (what its repeats share, id, timestamp, message, raw JSON): see
#: `Repeats.parts`.
Parts = tuple[dict[str, Any], str, datetime, str, bytes]
IdOf = Callable[[dict[str, Any], Getter], str]
RawOf = Callable[[Any], bytes]

MAX_ENTRIES = 4096
MAX_KEY_BYTES = 16 << 20  # keys are whole documents: a worker's memo stays this small
_PER_ALERT = ("id", "timestamp", "message", "raw_json")  # read again on every hit, never kept
WINDOW = 1024  # look-ups per hit-rate check
MIN_HIT_RATE = 4  # at least one look-up in 4 must hit, or
PAUSE = 16384  # this many documents skip the key


class Repeats:
    """The alert fields of documents, each distinct document (ids and times aside) normalised
    once. One per process, shared by its threads (an API's request handlers): entries hold only
    frozen values and are never changed once stored, and a count lost to a race only moves a
    pause."""

    def __init__(self, normalise: Normalise, id_of: IdOf, raw_of: RawOf) -> None:
        self._normalise = normalise
        self._id_of = id_of
        self._raw_of = raw_of
        self._entries: dict[bytes, tuple[dict[str, Any], TimeOf, MessageOf]] = {}
        self._key_bytes = 0
        self._looked = self._hits = self._paused = 0

    def fields(self, doc: dict[str, Any], raw: bytes | None) -> dict[str, Any]:
        stable, alert_id, timestamp, message, raw_json = self.parts(doc, raw)
        return {
            **stable,
            "id": alert_id,
            "timestamp": timestamp,
            "message": message,
            "raw_json": raw_json,
        }

    def parts(self, doc: dict[str, Any], raw: bytes | None) -> Parts:
        """The alert fields as what repeats share (the same dict for every repeat; never
        change it) and what each alert has of its own: id, time, message and raw JSON. A
        document the memo does not hold gives all its fields as the shared dict: read only the
        shared ones from it."""
        if self._paused:
            self._paused -= 1
            fields = self._normalise(doc, raw)[0]
            return _parts(fields, fields)
        masked = mask_volatile(doc)
        if masked is None:
            fields = self._normalise(doc, raw)[0]
            return _parts(fields, fields)
        key, values = masked
        self._count_lookup()
        entry = self._entries.get(key)
        if entry is None:
            fields, time_of, message_reader = self._normalise(doc, raw)
            message_of = message_reader()
            if message_of is None:  # its message names its rule: repeats are not alike
                return _parts(fields, fields)
            stable = {k: v for k, v in fields.items() if k not in _PER_ALERT}
            self._remember(key, (stable, time_of, message_of))
            return _parts(stable, fields)
        self._hits += 1
        stable, time_of, message_of = entry
        get = values.get
        return (
            stable,
            self._id_of(doc, get),
            time_of(get),
            message_of(get),
            raw if raw is not None else self._raw_of(doc),
        )

    def _remember(self, key: bytes, entry: tuple[dict[str, Any], TimeOf, MessageOf]) -> None:
        if len(self._entries) >= MAX_ENTRIES or self._key_bytes + len(key) > MAX_KEY_BYTES:
            self._entries.clear()
            self._key_bytes = 0
        self._entries[key] = entry
        self._key_bytes += len(key)

    def entries(self) -> int:
        """How many distinct documents the memo holds (its tests read it)."""
        return len(self._entries)

    def _count_lookup(self) -> None:
        self._looked += 1
        if self._looked == WINDOW:
            if self._hits * MIN_HIT_RATE < WINDOW:
                self._paused = PAUSE
            self._looked = self._hits = 0


def _parts(shared: dict[str, Any], fields: dict[str, Any]) -> Parts:
    """`shared` with the alert's own fields, read from `fields` (the shared dict itself, when
    the memo keeps nothing: all its fields)."""
    return shared, fields["id"], fields["timestamp"], fields["message"], fields["raw_json"]


def _tops(paths: tuple[str, ...]) -> dict[str, tuple[tuple[str, str, bool], ...]]:
    """For each key a document may hold at its top, the masked paths it may lead to, with the
    rest of the path below it ("" when the key is the whole path) and whether it is unread."""
    tops: dict[str, list[tuple[str, str, bool]]] = {}
    for path in paths:
        unread = path in _UNREAD
        tops.setdefault(path, []).append((path, "", unread))
        dot = path.find(".")
        while dot != -1:
            tops.setdefault(path[:dot], []).append((path, path[dot + 1 :], unread))
            dot = path.find(".", dot + 1)
    return {key: tuple(under) for key, under in tops.items()}


_TOPS = _tops(VOLATILE_PATHS + UNREAD_PATHS)
_TOP_KEYS = frozenset(_TOPS)


def mask_volatile(doc: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
    """The document's key with its id, time and message values masked, and those values by
    path, and its unread per-event fields masked whole; None when a path is set in more than
    one place, or an id, time or message to an object or a list, or the document cannot be
    encoded."""
    values: dict[str, Any] = {}
    chains: list[tuple[str, ...]] = []
    chain: tuple[str, ...]
    for top in doc.keys() & _TOP_KEYS:  # most documents hold three or four of these
        node = doc[top]
        for path, rest, unread in _TOPS[top]:
            if not rest:  # the path is the key
                value, chain = node, (top,)
            elif type(node) is not dict:
                continue
            elif "." not in rest:  # the common case, a field one level down
                if rest not in node:
                    continue
                value, chain = node[rest], (top, rest)
            else:
                found: list[tuple[str, ...]] = []
                _places(node, rest, (top,), found)
                if not found:
                    continue
                if len(found) > 1:
                    return None  # set twice
                chain = found[0]
                value = _at(doc, chain)
            if unread:
                chains.append(chain)  # whatever it holds: nothing reads it
                continue
            if path in values or type(value) is dict or type(value) is list:
                return None  # set twice, or may hold fields that formats read
            values[path] = value
            if value is not None:
                chains.append(chain)
    masked = _masked(doc, chains) if chains else doc
    try:
        return orjson.dumps(masked), values
    except TypeError:  # integers beyond 64 bits
        return None


def _places(
    node: dict[str, Any], path: str, chain: tuple[str, ...], out: list[tuple[str, ...]]
) -> None:
    """Every chain of keys that reads `path` the way `Fields` flattens: a key may hold dots."""
    if path in node:
        out.append((*chain, path))
    dot = path.find(".")
    while dot != -1:
        child = node.get(path[:dot])
        if type(child) is dict:
            _places(child, path[dot + 1 :], (*chain, path[:dot]), out)
        dot = path.find(".", dot + 1)


def _at(node: Any, chain: tuple[str, ...]) -> Any:
    for key in chain:
        node = node[key]
    return node


def _masked(doc: dict[str, Any], chains: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of `doc` with the value at each chain masked; only the dicts on the way are
    copied, each once (a document's time, id and message share its top)."""
    top = dict(doc)
    made: set[int] = set()  # the copies made (alive in `top`, so their ids stay theirs)
    for chain in chains:
        node = top
        for key in chain[:-1]:
            child = node[key]
            if id(child) not in made:
                child = node[key] = dict(child)
                made.add(id(child))
            node = child
        node[chain[-1]] = _MASK
    return top
