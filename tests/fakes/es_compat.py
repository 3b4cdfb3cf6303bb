"""Test-only: lets the official elasticsearch client talk to osmem-server (OpenSearch API).

Two differences matter (../shared/DESIGN.md): the client's compatibility media types, which the
server answers with 406, and the point-in-time endpoints (`POST /<index>/_pit` and
`DELETE /_pit` in Elasticsearch, `/_search/point_in_time` in OpenSearch).
"""

from __future__ import annotations

import json
import re
from typing import Any

from elastic_transport import Urllib3HttpNode
from elastic_transport._node._base import NodeApiResponse

_PIT_OPEN = re.compile(r"^/([^/?]+)/_pit(\?.*)?$")


class OsmemNode(Urllib3HttpNode):
    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        request_timeout: Any = None,
        headers: Any = None,
    ) -> Any:
        h = dict(headers or {})
        for k in list(h):
            if k.lower() in ("accept", "content-type"):
                h[k] = "application/x-ndjson" if "x-ndjson" in h[k] else "application/json"
        opened = method == "POST" and _PIT_OPEN.match(target)
        if opened:
            target = f"/{opened.group(1)}/_search/point_in_time{opened.group(2) or ''}"
        if method == "DELETE" and target.startswith("/_pit"):
            pit = json.loads(body or b"{}").get("id")
            target, body = "/_search/point_in_time", json.dumps({"pit_id": [pit]}).encode()
        resp = super().perform_request(
            method, target, body=body, request_timeout=request_timeout, headers=h
        )
        if opened and resp.meta.status == 200:
            doc = json.loads(resp.body)
            doc["id"] = doc.get("pit_id")
            return NodeApiResponse(resp.meta, json.dumps(doc).encode())
        return resp
