"""Elasticsearch (and OpenSearch, for Wazuh's indexer) as an alert source and write-back target.

A sweep reads alerts with a point in time and `search_after` over a stable sort (`@timestamp`,
then a tie-breaker field), in bounded pages. `point_in_time=False` pages with `search_after`
alone: as safe here, because the sort is total (the tie-breaker is unique) and the sweep's own
write-back only touches alerts behind the cursor; for indexers without points in time
(OpenSearch before 2.4, so Wazuh 4.3) and servers whose writes slow down under one.
Write-back is bulk partial-document updates (no scripts). Library exceptions are translated
once, here, into Vigie's typed errors.

Supported: Elasticsearch 9.x with the `elasticsearch` 9.x client (the client's major must match
the server's), and OpenSearch 2.x/3.x (Wazuh 4.x indexer) with `opensearch-py`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import AuthError, BadInput, NotFound, RateLimited, Transient, VigieError

log = logging.getLogger(__name__)

INCIDENT_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "incident_id": {"type": "keyword"},
        "priority": {"type": "float"},
        "title": {"type": "text"},
        "status": {"type": "keyword"},
        "first_seen": {"type": "date"},
        "last_seen": {"type": "date"},
        "hosts": {"type": "keyword"},
        "users": {"type": "keyword"},
        "ips": {"type": "keyword"},
        "tactics": {"type": "keyword"},
        "techniques": {"type": "keyword"},
        "alert_ids": {"type": "keyword"},
        "alert_count": {"type": "integer"},
        "proposal_ids": {"type": "keyword"},
        "assessment": {
            "properties": {
                "analyst": {"type": "keyword"},
                "verdict": {"type": "keyword"},
                "confidence": {"type": "float"},
                "summary": {"type": "text"},
            }
        },
        "disposition": {  # a person's closing: Kibana filters on the verdict and who
            "properties": {
                "verdict": {"type": "keyword"},
                "actor": {"type": "keyword"},
                "at": {"type": "date"},
                "reason": {"type": "text"},
            }
        },
    },
}

AUDIT_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "seq": {"type": "long"},
        "at": {"type": "date"},
        "actor": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "subject": {"type": "keyword"},
        "hash": {"type": "keyword"},
    },
}


@dataclass(frozen=True)
class Hit:
    """One alert as a search returns it. `source` is None when the index keeps no source
    (`"_source": {"enabled": false}`): the hit then names the alert but does not hold it."""

    index: str
    id: str
    source: dict[str, Any] | None
    sort: list[Any]

    def document(self) -> dict[str, Any]:
        """What triage reads: the source with the hit's `_id` (an alert id of last resort), or
        the bare hit, which triage turns into a dead letter saying why."""
        if self.source is None:
            return {"_index": self.index, "_id": self.id}
        return {**self.source, "_id": self.id}


class SearchBackend(Protocol):
    """The few calls a sweep and its write-back need, for either client."""

    def pages(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, str]],
        after: list[Any] | None,
        size: int,
    ) -> Iterator[list[Hit]]:
        """Pages of hits after `after`, in sort order, from one point in time."""
        ...

    def bulk(self, operations: list[dict[str, Any]]) -> None:
        """Raise `Transient`/`BadInput` if any operation failed."""
        ...

    def ensure_template(self, name: str, pattern: str, mappings: dict[str, Any]) -> None:
        """New indices matching `pattern` get `mappings`, and existing ones gain the fields they
        lack (an index made by an earlier version is not rebuilt)."""
        ...

    def close(self) -> None: ...


def translate(exc: Exception) -> VigieError:
    """One place that knows both clients' exceptions."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        meta = getattr(exc, "meta", None)
        status = getattr(meta, "status", None)
    name = type(exc).__name__
    if isinstance(status, int):
        if status in (401, 403):
            return AuthError(f"search server refused credentials ({status})")
        if status == 404:
            return NotFound(f"search server: not found ({_brief(exc)})")
        if status == 429:
            return RateLimited("search server is rejecting requests (429)")
        if status >= 500:
            return Transient(f"search server error ({status})")
        if status >= 400:
            return BadInput(f"search server rejected the request ({status}): {_brief(exc)}")
    if "Timeout" in name or "Connection" in name or "Transport" in name:
        return Transient(f"search server unreachable ({name})")
    return Transient(f"search server call failed ({name}: {_brief(exc)})")


def bulk_failure(failed: list[dict[str, Any]]) -> VigieError:
    """A bulk request's failed items, as one error. A busy cluster rejects items (429) while
    accepting the request; those, and a shard's own failure (5xx), go through on a later try.
    Any other (a mapping conflict, a closed index) will fail again, so it is bad input."""
    statuses = {int(item.get("status", 0)) for item in failed}
    first = failed[0].get("error") if failed else {}
    said = f"bulk write-back: {len(failed)} operation(s) failed: {first}"
    if statuses == {429}:
        return RateLimited(said)
    if statuses and all(s == 429 or s >= 500 for s in statuses):
        return Transient(said)
    return BadInput(said)


def _brief(exc: Exception) -> str:
    return str(exc)[:300]


def _total(res: dict[str, Any]) -> int:
    """A search answer's hit count (a number in old servers, an object in newer ones)."""
    total = res["hits"].get("total", 0)
    return int(total["value"] if isinstance(total, dict) else total)


class _Base:
    """Shared paging and write-back over a client exposing search/bulk/indices."""

    client: Any
    keep_alive = "2m"
    point_in_time = True

    def _open_pit(self, index: str) -> str:
        raise NotImplementedError

    def _close_pit(self, pit: str) -> None:
        raise NotImplementedError

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def pages(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, str]],
        after: list[Any] | None,
        size: int,
    ) -> Iterator[list[Hit]]:
        pit: str | None = None
        if self.point_in_time:
            try:
                pit = self._open_pit(index)
            except Exception as exc:
                error = translate(exc)
                if isinstance(error, BadInput | NotFound) and self._matches_nothing(index):
                    return  # a pattern no index matches yet (a new cluster): nothing to read
                raise error from exc
        try:
            while True:
                body: dict[str, Any] = {"size": size, "query": query, "sort": sort}
                if pit is not None:
                    body["pit"] = {"id": pit, "keep_alive": self.keep_alive}
                else:
                    body["index"] = index
                if after:
                    body["search_after"] = after
                try:
                    res = self._search(body)
                except Exception as exc:
                    raise translate(exc) from exc
                pit = res.get("pit_id", pit) if pit is not None else None
                hits = [
                    Hit(h["_index"], h["_id"], h.get("_source"), h["sort"])
                    for h in res["hits"]["hits"]
                ]
                if not hits:
                    return
                yield hits
                after = hits[-1].sort
                if len(hits) < size:
                    return
        finally:
            if pit is not None:
                with contextlib.suppress(Exception):  # a PIT expires on its own; closing is polite
                    self._close_pit(pit)

    def _matches_nothing(self, index: str) -> bool:
        """Whether a plain search of `index` answers, with no document: OpenSearch refuses a
        point in time on a pattern that matches no index (400), where a search finds nothing.
        A missing named index still fails the search (404), and so still fails the sweep."""
        try:
            res = self._search({"index": index, "size": 0, "query": {"match_all": {}}})
        except Exception:
            return False
        return _total(res) == 0

    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def _put_template(self, name: str, pattern: str, mappings: dict[str, Any]) -> None:
        raise NotImplementedError

    def _put_mapping(self, pattern: str, mappings: dict[str, Any]) -> None:
        raise NotImplementedError

    def bulk(self, operations: list[dict[str, Any]]) -> None:
        if not operations:
            return
        try:
            res = self._bulk(operations)
        except Exception as exc:
            raise translate(exc) from exc
        if res.get("errors"):
            raise bulk_failure(
                [r for i in res["items"] if (r := next(iter(i.values()))).get("error")]
            )

    def ensure_template(self, name: str, pattern: str, mappings: dict[str, Any]) -> None:
        try:
            self._put_template(name, pattern, mappings)
        except Exception as exc:
            raise translate(exc) from exc
        try:
            self._put_mapping(pattern, mappings)
        except Exception as exc:
            error = translate(exc)
            if not isinstance(error, BadInput):
                raise error from exc
            # An existing index maps one of these fields otherwise (an operator's choice): its
            # documents are still written, and new indices get the template.
            log.warning("indices %s keep their mapping: %s", pattern, error)

    def close(self) -> None:
        self.client.close()


class ElasticsearchBackend(_Base):
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        node_class: Any = None,
        timeout: float = 30.0,
        retries: int = 3,
        point_in_time: bool = True,
    ) -> None:
        from elasticsearch import Elasticsearch

        self.point_in_time = point_in_time
        kwargs: dict[str, Any] = {
            "request_timeout": timeout,
            "max_retries": retries,
            "retry_on_timeout": True,
        }
        if api_key:
            kwargs["api_key"] = api_key
        elif username:
            kwargs["basic_auth"] = (username, password or "")
        if ca_certs:
            kwargs["ca_certs"] = ca_certs
        if node_class is not None:
            kwargs["node_class"] = node_class
        self.client = Elasticsearch(url, **kwargs)

    def _open_pit(self, index: str) -> str:
        return str(self.client.open_point_in_time(index=index, keep_alive=self.keep_alive)["id"])

    def _close_pit(self, pit: str) -> None:
        self.client.close_point_in_time(id=pit)

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.search(**body))

    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.client.bulk(operations=operations))

    def _put_template(self, name: str, pattern: str, mappings: dict[str, Any]) -> None:
        self.client.indices.put_index_template(
            name=name, index_patterns=[pattern], template={"mappings": mappings}
        )

    def _put_mapping(self, pattern: str, mappings: dict[str, Any]) -> None:
        self.client.indices.put_mapping(index=pattern, allow_no_indices=True, **mappings)


class OpenSearchBackend(_Base):
    """Wazuh's indexer: OpenSearch, which the elasticsearch client refuses by product check."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_certs: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        point_in_time: bool = True,
    ) -> None:
        from opensearchpy import OpenSearch

        self.point_in_time = point_in_time
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": retries,
            "retry_on_timeout": True,
        }
        if username:
            kwargs["http_auth"] = (username, password or "")
        if ca_certs:
            kwargs["ca_certs"] = ca_certs
            kwargs["verify_certs"] = True
        self.client = OpenSearch(url, **kwargs)

    def _open_pit(self, index: str) -> str:
        return str(
            self.client.create_pit(index=index, params={"keep_alive": self.keep_alive})["pit_id"]
        )

    def _close_pit(self, pit: str) -> None:
        self.client.delete_pit(body={"pit_id": [pit]})

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        index = body.pop("index", None)
        return dict(self.client.search(body=body, index=index))

    def _bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.client.bulk(body=operations))

    def _put_template(self, name: str, pattern: str, mappings: dict[str, Any]) -> None:
        self.client.indices.put_index_template(
            name=name, body={"index_patterns": [pattern], "template": {"mappings": mappings}}
        )

    def _put_mapping(self, pattern: str, mappings: dict[str, Any]) -> None:
        self.client.indices.put_mapping(
            index=pattern, body=mappings, params={"allow_no_indices": "true"}
        )
