"""Reading fields out of raw alert documents that mix dotted keys and nested objects.

Elastic alerts store `kibana.alert.severity` as one flat key but `host.name` nested, and a single
document often mixes both; `Fields` flattens once so a dotted path finds the value either way.
"""

from __future__ import annotations

import reprlib
from typing import Any

import orjson

#: How much of a rejected document its dead letter keeps for a human.
EXCERPT_CHARS = 200
_SHALLOW = reprlib.Repr()
_SHALLOW.maxlevel, _SHALLOW.maxstring, _SHALLOW.maxother = 6, EXCERPT_CHARS, EXCERPT_CHARS


def unwrapped(doc: dict[str, Any]) -> dict[str, Any]:
    """The alert a document holds: a search hit as Elasticsearch and OpenSearch return it (and
    as `elasticdump` writes one a line) holds it in `_source`, with the hit's `_id` added as a
    sweep adds it, so an export and a sweep of one index give the same alert ids. Kibana's
    `esArchiver` (`{"type": "doc", "value": {"index", "id", "source"}}`) holds it likewise.
    Any other document is its own."""
    source = doc.get("_source")
    if type(source) is dict and ("_id" in doc or "_index" in doc):
        return {**source, "_id": doc["_id"]} if "_id" in doc else source
    if doc.get("type") == "doc" and type(value := doc.get("value")) is dict:
        archived = value.get("source")
        if type(archived) is dict and "index" in value:
            return {**archived, "_id": value["id"]} if "id" in value else archived
    return doc


def excerpt(value: Any) -> str:
    """The start of a rejected document, as JSON. One JSON cannot encode (nested past
    orjson's 254 levels, or holding a lone surrogate) is shown to a few levels, as Python
    writes it: encoding it whole raised, and failed the webhook that brought it with a 500."""
    try:
        return orjson.dumps(value)[:EXCERPT_CHARS].decode("utf-8", "replace")
    except TypeError:  # orjson.JSONEncodeError included
        return _SHALLOW.repr(value)[:EXCERPT_CHARS]


def strings(value: Any) -> list[str]:
    """Scalars (or lists of scalars) as non-empty strings; anything else is ignored."""
    if type(value) is str:  # the common case, first: this runs for every field of every alert
        text = value.strip()
        return [text] if text else []
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            if item.strip():
                out.append(item.strip())
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out.append(str(item))
    return out


class Fields:
    """A document flattened once into dotted paths, so each field read is one dict lookup.

    Flattening treats `{"host": {"name": x}}` and `{"host.name": x}` alike, which is what
    Elastic's mixed documents need; lists stay values (ECS keeps arrays as leaves)."""

    __slots__ = ("flat", "raw")

    def __init__(self, doc: dict[str, Any], raw: bytes | None = None) -> None:
        self.raw = raw  # the document's JSON as read, when the reader has it
        # Breadth first and iterative: the hot path of every alert read. A dotted path that
        # appears twice (flat and nested) keeps its shallowest value, ties in document order.
        flat = dict(doc)  # objects too: a wrong type must stay visible
        nested = [(k + ".", v) for k, v in doc.items() if type(v) is dict]
        for prefix, node in nested:  # grows while it is walked: that is the queue
            for key, value in node.items():
                path = prefix + key
                if path not in flat:
                    flat[path] = value
                if type(value) is dict:
                    nested.append((path + ".", value))
        self.flat = flat

    def get(self, path: str) -> Any:
        return self.flat.get(path)

    def first(self, *paths: str) -> str | None:
        flat = self.flat
        for path in paths:
            value = flat.get(path)
            if type(value) is str:  # the common case, without `strings`' list
                text = value.strip()
                if text:
                    return text
            elif value is not None:
                found = strings(value)
                if found:
                    return found[0]
        return None

    def all(self, *paths: str) -> list[str]:
        out: list[str] = []
        for path in paths:
            value = self.flat.get(path)
            if value is not None:
                for s in strings(value):
                    if s not in out:
                        out.append(s)
        return out
