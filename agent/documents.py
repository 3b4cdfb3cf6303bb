"""Reading fields out of raw alert documents that mix dotted keys and nested objects.

Elastic alerts store `kibana.alert.severity` as one flat key but `host.name` nested, and a single
document often mixes both; `Fields` flattens once so a dotted path finds the value either way.
"""

from __future__ import annotations

from typing import Any


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


class Fields:
    """A document flattened once into dotted paths, so each field read is one dict lookup.

    Flattening treats `{"host": {"name": x}}` and `{"host.name": x}` alike, which is what
    Elastic's mixed documents need; lists stay values (ECS keeps arrays as leaves)."""

    __slots__ = ("flat",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.flat: dict[str, Any] = {}
        self._walk(doc, "")

    def _walk(self, node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = prefix + key
            if path not in self.flat:
                self.flat[path] = value  # objects too: a wrong type must stay visible
            if isinstance(value, dict):
                self._walk(value, path + ".")

    def get(self, path: str) -> Any:
        return self.flat.get(path)

    def first(self, *paths: str) -> str | None:
        for path in paths:
            value = self.flat.get(path)
            if value is not None:
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
