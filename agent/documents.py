"""Reading fields out of raw alert documents that mix dotted keys and nested objects.

Elastic alerts store `kibana.alert.severity` as one flat key but `host.name` nested, and a single
document often mixes both; `lookup` finds a dotted path either way.
"""

from __future__ import annotations

from typing import Any


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path, trying flat keys and nesting at every level; None if absent."""
    if not isinstance(doc, dict):
        return None
    if path in doc:
        return doc[path]
    head, sep, rest = path.partition(".")
    while sep:
        child = doc.get(head)
        if isinstance(child, dict):
            found = lookup(child, rest)
            if found is not None:
                return found
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None


def strings(value: Any) -> list[str]:
    """Scalars (or lists of scalars) as non-empty strings; anything else is ignored."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            if item.strip():
                out.append(item.strip())
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out.append(str(item))
    return out


def first_string(doc: Any, *paths: str) -> str | None:
    for path in paths:
        found = strings(lookup(doc, path))
        if found:
            return found[0]
    return None


def all_strings(doc: Any, *paths: str) -> list[str]:
    out: list[str] = []
    for path in paths:
        for s in strings(lookup(doc, path)):
            if s not in out:
                out.append(s)
    return out
