"""The HTTP API under real uvicorn on loopback: webhooks (signatures, replay, tokens, limits,
every source's format) and the analyst API (tokens, roles, approvals bound to the hash)."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import SHARED_DATA, brute_force, ecs
from tests.e2e.conftest import signed


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def wait_incidents(client: httpx.Client, n: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while True:
        items = client.get("/api/incidents", headers=auth("tok-alice")).json()["items"]
        if sum(len(i["alert_ids"]) for i in items) >= n or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def wait_pending(client: httpx.Client, action: str) -> dict:
    """The first pending proposal of `action`, waited for as the incidents are: under a full
    test run the webhook's triage may still be running when its incidents are first asked."""
    deadline = time.monotonic() + 20
    while True:
        pending = client.get("/api/approvals", headers=auth("tok-alice")).json()
        found = [p for p in pending if p["action"] == action]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {action} pending; pending: {pending}"
        time.sleep(0.05)


def attack_batch() -> bytes:
    return json.dumps(
        [
            brute_force(),
            ecs(2, 3, "Web shell", "web", severity="critical", tactic="TA0003"),
            ecs(3, 4, "Malicious Behavior: stager", "web", severity="critical", tactic="TA0002"),
            {"no": "timestamp"},
        ]
    ).encode()


def test_signed_webhook_is_stored_then_triaged(api: dict) -> None:
    c = api["client"]
    body = attack_batch()
    r = c.post("/webhooks/generic", content=body, headers=signed(body))
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 3 and r.json()["rejected"] == 1
    assert r.headers["x-request-id"]
    items = wait_incidents(c, 3)
    assert sorted(a for i in items for a in i["alert_ids"]) == ["a1", "a2", "a3"]
    assert api["store"].dead_letters()[0].reason.startswith("unrecognised document")
    seen = c.get("/api/rejected", params={"limit": 500}, headers=auth("tok-alice")).json()
    assert seen["total"] == len(api["store"].dead_letters()) == len(seen["items"]) >= 1
    assert seen["items"][-1] | {"at": None} == {  # the oldest, this test's
        "source": "webhook:generic",
        "line": 4,
        "reason": api["store"].dead_letters()[0].reason,
        "excerpt": '{"no":"timestamp"}',
        "at": None,
    }


@pytest.mark.parametrize("case", ["replay", "stale", "future", "tampered", "wrong-secret", "none"])
def test_bad_signatures_get_401_and_store_nothing(api: dict, case: str) -> None:
    c = api["client"]
    body = attack_batch()
    if case == "replay":
        assert (
            c.post("/webhooks/generic", content=body, headers=signed(body, "dup")).status_code
            == 202
        )
        headers = signed(body, "dup")
        before = len(api["store"].claim_intake(0))
    elif case == "stale":
        headers = signed(body, when=datetime.now(UTC) - timedelta(minutes=6))
    elif case == "future":
        headers = signed(body, when=datetime.now(UTC) + timedelta(minutes=6))
    elif case == "tampered":
        headers = signed(body)
        body = body.replace(b"web", b"dns")
    elif case == "wrong-secret":
        headers = signed(body)
        headers["webhook-signature"] = "v1," + "A" * 43 + "="
    else:
        headers = {"content-type": "application/json"}
    stored_before = len(api["store"].dead_letters())
    r = c.post("/webhooks/generic", content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert len(api["store"].dead_letters()) == stored_before  # nothing half-stored
    if case == "replay":
        assert before == 0


def test_static_tokens_header_and_query(api: dict) -> None:
    c = api["client"]
    body = json.dumps(
        {
            "result": {"host": "web", "src": "203.0.113.9", "_time": "1767603600"},
            "sid": "s1",
            "search_name": "Brute force detected",
            "results_link": "x",
        }
    ).encode()
    assert c.post("/webhooks/splunk", content=body, headers=auth("splunk-token")).status_code == 202
    assert c.post("/webhooks/splunk?token=splunk-token", content=body).status_code == 202
    assert c.post("/webhooks/splunk?token=nope", content=body).status_code == 401
    assert c.post("/webhooks/splunk", content=body, headers=auth("graf-token")).status_code == 401


def test_a_body_starting_with_a_byte_order_mark_is_accepted(api: dict) -> None:
    """Senders on Windows may prefix one (RFC 8259 lets a reader ignore it): a 400 before."""
    body = b"\xef\xbb\xbf" + json.dumps([brute_force("bom")]).encode()
    r = api["client"].post("/webhooks/generic", content=body, headers=auth("gen-token"))
    assert r.status_code == 202 and r.json()["accepted"] == 1


def test_an_ndjson_body_is_one_alert_a_line(api: dict) -> None:
    """Fluent Bit's `json_lines` format and Vector's newline-delimited framing post NDJSON: a
    400 before.
    A bad line refuses the whole body, naming the line."""
    c = api["client"]
    lines = [json.dumps(brute_force(f"nd{i}")) for i in range(3)]
    body = ("\n".join(lines) + "\n").encode()
    r = c.post("/webhooks/generic", content=body, headers=auth("gen-token"))
    assert r.status_code == 202 and r.json()["accepted"] == 3
    bad = ("\n".join([lines[0], '{"broken": ', lines[1]])).encode()
    r = c.post("/webhooks/generic", content=bad, headers=auth("gen-token"))
    assert r.status_code == 400 and "neither JSON nor NDJSON: line 2" in r.text


def test_a_body_with_a_byte_that_is_not_utf8_is_accepted_with_it_replaced(api: dict) -> None:
    """One byte an attacker put in a logged field (a user agent) that the shipper passed on
    raw: the whole body was refused, every alert in it with the attacker's (wazuh#38561 is
    that evasion against Wazuh's indexer). The byte reads as U+FFFD; a raw tab is kept."""
    c = api["client"]
    evading = brute_force("ua") | {"user_agent": {"original": "curl/8.0 \udcff"}}
    raw = json.dumps([evading], ensure_ascii=False).encode("utf-8", "surrogateescape")
    assert b"\xff" in raw
    r = c.post("/webhooks/generic", content=raw, headers=auth("gen-token"))
    assert r.status_code == 202 and r.json() == {**r.json(), "accepted": 1, "rejected": 0}
    lines = [json.dumps(brute_force(f"t{i}")) for i in range(2)]
    tabbed = lines[1].replace('"SSH brute force"', '"SSH\tbrute force"')
    body = (lines[0] + "\n" + tabbed + "\n").encode()
    r = c.post("/webhooks/generic", content=body, headers=auth("gen-token"))
    assert r.status_code == 202 and r.json()["accepted"] == 2
    nan = json.dumps([brute_force("n")]).replace('"SSH brute force"', "NaN").encode() + b"\xff"
    r = c.post("/webhooks/generic", content=nan, headers=auth("gen-token"))
    assert r.status_code == 400  # NaN is no JSON, however its bytes are read


def test_a_watcher_posting_its_search_response_delivers_its_hits(api: dict) -> None:
    """An Elasticsearch Watcher's webhook action posts `ctx.payload`, a search response: 400
    "no alert documents found" from the elastic source, and one dead letter from generic."""
    c = api["client"]
    hits = [{"_index": "logs", "_id": f"w{i}", "_source": brute_force(f"wt{i}")} for i in range(3)]
    payload = {"took": 2, "_shards": {"total": 1}, "hits": {"total": {"value": 3}, "hits": hits}}
    for body in (payload, {"watch_id": "ssh", "payload": payload}):
        raw = json.dumps(body).encode()
        r = c.post("/webhooks/elastic", content=raw, headers=signed(raw, f"w-{len(body)}"))
        assert r.status_code == 202 and r.json() | {"batch_id": ""} == {
            "accepted": 3,
            "rejected": 0,
            "batch_id": "",
        }, r.text
    r = c.post("/webhooks/generic", content=json.dumps(payload), headers=auth("gen-token"))
    assert r.status_code == 202 and r.json()["accepted"] == 3


def test_a_gzipped_body_is_read_as_written_and_its_size_limit_holds_once_inflated(
    api: dict,
) -> None:
    """Log shippers (Logstash's http output, Vector, Fluent Bit) may send
    `Content-Encoding: gzip`: a 400 saying "str is not valid UTF-8" before. The signature is
    checked on the body as written; a small body inflating past the limit is a 413."""
    c = api["client"]
    body = json.dumps([brute_force(f"gz{i}") for i in range(3)]).encode()
    packed = gzip.compress(body[:40]) + gzip.compress(body[40:])  # two members, as gzip allows
    headers = {**signed(body, "gz"), "content-encoding": "gzip"}
    r = c.post("/webhooks/generic", content=packed, headers=headers)
    assert r.status_code == 202 and r.json()["accepted"] == 3, r.text
    tampered = gzip.compress(body.replace(b"gz0", b"gz9"))
    r = c.post("/webhooks/generic", content=tampered, headers={**headers, **signed(body, "gz2")})
    assert r.status_code == 401
    bomb = gzip.compress(b"[" + b" " * 400_000 + b"]")  # 400 kB inflated, the limit is 200 kB
    assert len(bomb) < 1_000
    r = c.post("/webhooks/generic", content=bomb, headers={**auth("gen-token"), **headers})
    assert r.status_code == 413 and "once decompressed" in r.text
    for content, status in ((gzip.compress(body)[:-9], 400), (b"not gzip", 400)):
        r = c.post("/webhooks/generic", content=content,
                   headers={**auth("gen-token"), "content-encoding": "gzip"})  # fmt: skip
        assert r.status_code == status and "not valid gzip" in r.text, r.text
    r = c.post("/webhooks/generic", content=body,
               headers={**auth("gen-token"), "content-encoding": "br"})  # fmt: skip
    assert r.status_code == 415 and "send gzip or none" in r.text


def test_a_document_nested_too_deep_to_encode_is_a_dead_letter_not_a_500(api: dict) -> None:
    """orjson reads 1,024 levels and writes 254: the dead letter's excerpt of a document
    nested 1,010 deep raised, and the webhook answered 500."""
    deep = b'{"a": ' + b"[" * 1010 + b"]" * 1010 + b"}"
    r = api["client"].post("/webhooks/generic", content=deep, headers=auth("gen-token"))
    assert r.status_code == 202 and (r.json()["accepted"], r.json()["rejected"]) == (0, 1)
    dead = api["store"].dead_letters()[-1]
    assert dead.reason == "nesting deeper than 64 levels" and dead.excerpt.startswith("{'a': [[")


def test_oversized_and_malformed_bodies(api: dict) -> None:
    c = api["client"]
    big = json.dumps([ecs(i, i, "r", "h", pad="x" * 1000) for i in range(300)]).encode()
    assert c.post("/webhooks/generic", content=big, headers=signed(big, "big")).status_code == 413
    for source, body in [
        ("splunk", b"{not json"),
        ("splunk", b'{"sid": "no result"}'),
        ("grafana", b'{"alerts": "nope"}'),
        ("grafana", b"[]"),
    ]:
        token = "splunk-token" if source == "splunk" else "graf-token"
        r = c.post(f"/webhooks/{source}", content=body, headers=auth(token))
        assert r.status_code == 400, (source, body, r.text)
    for body in [b'{"x": 1}', b'"just a string"']:
        r = c.post("/webhooks/wazuh", content=body, headers=signed(body, f"w{len(body)}"))
        assert r.status_code == 400
    assert c.post("/webhooks/nosuch", content=b"{}", headers=auth("gen-token")).status_code == 401


def test_a_list_item_holding_no_alert_is_a_dead_letter_not_dropped(api: dict) -> None:
    """Items of a body's list that are no object (or, for Wazuh, no Wazuh alert) were left
    out quietly: `[1, 2]` answered 202 with nothing accepted and nothing rejected. Each is now a
    dead letter saying why, and the list's alerts are kept."""
    c = api["client"]
    store = api["store"]
    before = len(store.dead_letters())
    body = json.dumps([brute_force("li1"), 7, "text", None]).encode()
    r = c.post("/webhooks/generic", content=body, headers=auth("gen-token"))
    assert r.status_code == 202 and (r.json()["accepted"], r.json()["rejected"]) == (1, 3)
    wazuh = {
        "timestamp": "2026-12-07T01:00:00.000+0000",
        "rule": {"level": 10, "description": "sshd: brute force", "id": "5712"},
        "agent": {"name": "web"},
        "id": "1765069200.1",
    }
    body = json.dumps([wazuh, {"x": 1}]).encode()
    r = c.post("/webhooks/wazuh", content=body, headers=signed(body, "list-w"))
    assert r.status_code == 202 and (r.json()["accepted"], r.json()["rejected"]) == (1, 1)
    reasons = [(d.line, d.reason) for d in store.dead_letters()[before:]]
    assert sorted(reasons) == [
        (2, "expected a JSON object, got int"),
        (2, "no Wazuh alert (rule.level) found in the body"),
        (3, "expected a JSON object, got str"),
        (4, "expected a JSON object, got NoneType"),
    ]


def test_real_sample_payloads_of_every_source(api: dict) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not present at {SHARED_DATA}")
    c = api["client"]
    samples = {
        "elastic": json.loads(
            (SHARED_DATA / "webhooks/kibana_webhook_rendered_example.ILLUSTRATIVE.json").read_text()
        )["body"],
        "wazuh": json.loads(
            (SHARED_DATA / "webhooks/wazuh_shuffle_integration_payload.json").read_text()
        ),
        "splunk": json.loads((SHARED_DATA / "webhooks/splunk_webhook_example.json").read_text()),
        "grafana": json.loads((SHARED_DATA / "webhooks/grafana_webhook_example.json").read_text()),
    }
    for source, payload in samples.items():
        body = json.dumps(payload).encode()
        headers = (
            signed(body, f"sample-{source}")
            if source in ("elastic", "wazuh")
            else auth("splunk-token" if source == "splunk" else "graf-token")
        )
        r = c.post(f"/webhooks/{source}", content=body, headers=headers)
        assert r.status_code == 202 and r.json()["accepted"] >= 1, (source, r.text)


def test_analyst_api_roles_and_hash_bound_approvals(api: dict) -> None:
    c = api["client"]
    body = attack_batch()
    assert c.post("/webhooks/generic", content=body, headers=signed(body, "a1")).status_code == 202
    wait_incidents(c, 3)
    assert c.get("/api/incidents").status_code == 401
    assert c.get("/api/incidents", headers=auth("forged")).status_code == 401
    top = c.get("/api/incidents", headers=auth("tok-alice")).json()["items"][0]
    detail = c.get(f"/api/incidents/{top['incident_id']}", headers=auth("tok-alice")).json()
    assert {"incident", "alerts", "proposals", "audit"} <= set(detail)
    assert detail["incident"]["explanation"]["priority_factors"]
    scoring = sorted(
        (f for f in detail["incident"]["explanation"]["priority_factors"] if f["points"] > 0),
        key=lambda f: -f["points"],
    )
    assert top["why"] == scoring[:3] and top["why"]  # the list says what ranks each
    host = detail["incident"]["hosts"][0]
    involving = c.get(
        "/api/incidents", params={"involving": host.upper()}, headers=auth("tok-alice")
    ).json()
    everything = c.get("/api/incidents", params={"limit": 500}, headers=auth("tok-alice")).json()
    assert [i["incident_id"] for i in involving["items"]] == [
        i["incident_id"] for i in everything["items"] if host in i["hosts"]
    ]
    assert involving["total"] == len(involving["items"]) >= 1
    too_long = {"involving": "x" * 300}
    assert c.get("/api/incidents", params=too_long, headers=auth("tok-alice")).status_code == 422
    blank = {"involving": "  "}  # found nothing, as if no incident involved anyone
    assert c.get("/api/incidents", params=blank, headers=auth("tok-alice")).status_code == 422
    isolate = wait_pending(c, "isolate_host")
    pending = c.get("/api/approvals", headers=auth("tok-alice")).json()
    path = f"/api/approvals/{isolate['proposal_id']}"
    r = c.post(
        f"{path}/approve", json={"args_hash": isolate["args_hash"]}, headers=auth("tok-alice")
    )
    assert r.status_code == 403  # analysts may not approve high-risk actions
    r = c.post(f"{path}/approve", json={"args_hash": "0" * 64}, headers=auth("tok-bob"))
    assert r.status_code == 409  # not the arguments that were proposed
    r = c.post(f"{path}/approve", json={"args_hash": isolate["args_hash"]}, headers=auth("tok-bob"))
    assert r.status_code == 200 and r.json()["state"] == "pending"  # four eyes
    r = c.post(f"{path}/approve", json={"args_hash": isolate["args_hash"]}, headers=auth("tok-bob"))
    assert r.status_code == 409  # the same person twice
    r = c.post(
        f"{path}/approve",
        json={"args_hash": isolate["args_hash"], "comment": "confirmed"},
        headers=auth("tok-carol"),
    )
    assert r.status_code == 200
    done = api["store"].get_proposal(isolate["proposal_id"])
    assert done.state.value == "succeeded" and [a.approver for a in done.approvals] == [
        "bob",
        "carol",
    ]
    other = next(p for p in pending if p["proposal_id"] != isolate["proposal_id"])
    r = c.post(
        f"/api/approvals/{other['proposal_id']}/reject",
        json={"reason": "known scanner"},
        headers=auth("tok-alice"),
    )
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert (
        c.post(
            "/api/approvals/P-nope/approve", json={"args_hash": "0" * 64}, headers=auth("tok-bob")
        ).status_code
        == 404
    )


def test_a_proposal_is_edited_over_the_api_and_the_edit_needs_others_approvals(
    api: dict,
) -> None:
    """Edits were the web page's alone: a SOAR or a script on the API could approve or
    reject a block, not shorten it. The edit makes a new proposal; its editor may not
    approve it; what cannot be edited is refused with the reason."""
    c = api["client"]
    body = attack_batch()
    assert c.post("/webhooks/generic", content=body, headers=signed(body, "e1")).status_code == 202
    wait_incidents(c, 3)
    block = wait_pending(c, "block_ip")
    path = f"/api/approvals/{block['proposal_id']}"
    refused = {
        "target": "elsewhere",  # not editable
        "duration_hours": 0,  # out of range
        "url": "http://evil",  # no such argument
    }
    for name, value in refused.items():
        r = c.post(f"{path}/edit", json={"args": {name: value}}, headers=auth("tok-alice"))
        assert r.status_code == 409, (name, r.text)
    r = c.post(f"{path}/edit", json={"args": {"duration_hours": 4}}, headers=auth("tok-alice"))
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["args"] == {**block["args"], "duration_hours": 4}
    assert new["supersedes"] == block["proposal_id"] and new["requested_by"] == "alice"
    assert api["store"].get_proposal(block["proposal_id"]).state.value == "superseded"
    mine = c.post(
        f"/api/approvals/{new['proposal_id']}/approve",
        json={"args_hash": new["args_hash"]},
        headers=auth("tok-alice"),
    )
    assert mine.status_code == 409 and "cannot approve it" in mine.text  # her own request
    again = c.post(f"{path}/edit", json={"args": {"duration_hours": 2}}, headers=auth("tok-bob"))
    assert again.status_code == 409  # superseded: edit the new one
    r = c.post(
        f"/api/approvals/{new['proposal_id']}/approve",
        json={"args_hash": new["args_hash"]},
        headers=auth("tok-bob"),
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while (ran := api["store"].get_proposal(new["proposal_id"])).state.value != "succeeded":
        assert time.monotonic() < deadline, ran.state
        time.sleep(0.05)
    assert ran.result["request"]["json"]["duration_hours"] == 4  # what was approved ran


def test_a_run_of_unknown_outcome_is_settled_over_the_api(api: dict) -> None:
    """What the analyst found on the target, recorded in their name: the proposal leaves
    outcome_unknown, and is never run again."""
    from agent import approvals
    from tests.unit.test_approvals import proposal

    store, c = api["store"], api["client"]
    now = datetime.now(UTC)
    p = proposal(created_at=now, expires_at=now + timedelta(hours=1))
    store.save_triage([], [], [p], [], actor="vigie")
    p = store.get_proposal(p.proposal_id)
    steps = [approvals.approve(p, "alice", now, seen_hash=p.args_hash)]
    steps.append(approvals.start(steps[-1], now))
    steps.append(approvals.outcome_unknown(steps[-1], now, "the worker died"))
    for old, new in zip([p, *steps], steps, strict=False):
        assert store.transition(old, new, actor="worker")
    path = f"/api/approvals/{p.proposal_id}/settle"
    body = {"ran": False, "reason": "no such rule in the firewall"}
    assert c.post(path, json=body).status_code == 401
    assert c.post(path, json={**body, "reason": ""}, headers=auth("tok-bob")).status_code == 422
    r = c.post(path, json=body, headers=auth("tok-bob"))
    assert r.status_code == 200 and r.json()["state"] == "failed", r.text
    assert r.json()["result"]["settled"]["by"] == "bob"
    assert c.post(path, json=body, headers=auth("tok-carol")).status_code == 409  # settled


def test_health_readiness_metrics_and_openapi(api: dict) -> None:
    c = api["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").status_code == 200
    body = attack_batch()
    c.post("/webhooks/generic", content=body, headers=signed(body, "m1"))
    text = c.get("/metrics").text
    assert 'vigie_alerts_in_total{source="generic"} 3.0' in text
    assert "vigie_queue_depth" in text and "vigie_http_requests_total" in text
    assert "vigie_store_up 1.0" in text
    spec = c.get("/openapi.json").json()
    assert {"/webhooks/{source}", "/api/incidents", "/api/approvals/{proposal_id}/approve"} <= set(
        spec["paths"]
    )


def test_a_splunk_time_out_of_range_is_one_rejected_alert(api: dict) -> None:
    """Splunk sends `_time` in epoch seconds; an absurd one is that row's dead letter, not a
    failed request."""
    c = api["client"]
    rows = [("ok", 1767603600), ("absurd", 10**20)]
    for sid, when in rows:
        body = json.dumps(
            {"result": {"host": "web", "_time": when}, "sid": sid, "search_name": "Port scan"}
        ).encode()
        r = c.post("/webhooks/splunk", content=body, headers=auth("splunk-token"))
        assert r.status_code == 202, r.text
        assert (r.json()["accepted"], r.json()["rejected"]) == ((1, 0) if sid == "ok" else (0, 1))
    assert "out of range" in api["store"].dead_letters()[-1].reason


def splunk_alerts(c: httpx.Client) -> list[dict]:
    """The alerts of every incident so far."""
    listed = c.get("/api/incidents", headers=auth("tok-alice")).json()["items"]
    return [
        a
        for i in listed
        for a in c.get(f"/api/incidents/{i['incident_id']}", headers=auth("tok-alice")).json()[
            "alerts"
        ]
    ]


def test_a_splunk_notable_gives_its_urgency_and_names_its_hosts(api: dict) -> None:
    """Splunk's CIM `src` and `dest` are often host names: they went to `source.ip` and
    were dropped as no address, and a notable's `urgency` was not read."""
    c = api["client"]
    rows = {
        "n1": {"src": "ws-7.corp.example", "dest": "10.0.0.5", "urgency": "critical"},
        "n2": {"src_ip": "203.0.113.9", "dest": "dc01", "src_user": "jdoe", "urgency": "P1"},
    }
    for sid, row in rows.items():
        body = json.dumps(
            {"result": {"_time": 1767603600, **row}, "sid": sid, "search_name": "Brute force"}
        ).encode()
        r = c.post("/webhooks/splunk", content=body, headers=auth("splunk-token"))
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    deadline = time.monotonic() + 15
    while len(alerts := splunk_alerts(c)) < 2:  # each webhook's batch triaged in turn
        assert time.monotonic() < deadline, alerts
        time.sleep(0.1)
    by_ip = {tuple(a["entities"]["ips"]): a for a in alerts}
    first, second = by_ip[("10.0.0.5",)], by_ip[("203.0.113.9",)]
    assert first["severity"] == "critical" and first["entities"]["domains"] == ["ws-7.corp.example"]
    assert second["entities"]["users"] == ["jdoe"] and second["entities"]["domains"] == ["dc01"]
    assert second["severity"] == "low"  # a word of its own: left out, the alert kept


def test_an_analyst_closes_an_incident_and_only_a_lead_tunes_its_noise(api: dict) -> None:
    """Over HTTP: every analyst may record a verdict; tuning later ranks is a lead's call; an
    incident is closed once; each refusal says why and writes nothing."""
    c = api["client"]
    body = attack_batch()
    assert c.post("/webhooks/generic", content=body, headers=signed(body, "d1")).status_code == 202
    items = wait_incidents(c, 3)
    iid = items[0]["incident_id"]
    path = f"/api/incidents/{iid}/disposition"
    fp = {"verdict": "false_positive", "reason": "red team exercise", "tune": True}
    assert c.post(path, json=fp).status_code == 401
    r = c.post(path, json=fp, headers=auth("tok-alice"))
    assert r.status_code == 403 and "lead" in r.json()["detail"]
    r = c.post(path, json={**fp, "verdict": "true_positive"}, headers=auth("tok-bob"))
    assert r.status_code == 400 and "can tune" in r.json()["detail"]
    assert c.post(path, json={**fp, "verdict": "maybe"}, headers=auth("tok-bob")).status_code == 422
    assert c.post(path, json={**fp, "reason": ""}, headers=auth("tok-bob")).status_code == 422
    assert api["store"].tunings(datetime.now(UTC)) == []
    pending = {p.proposal_id for p in api["store"].list_proposals(incident_id=iid)}
    assert pending  # the attack's playbooks proposed actions on it
    r = c.post(path, json=fp, headers=auth("tok-bob"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    assert r.json()["disposition"]["actor"] == "bob" and r.json()["disposition"]["tuned"]
    assert set(r.json()["withdrawn_proposals"]) == pending  # nothing left to approve on noise
    assert {p.state.value for p in api["store"].list_proposals(incident_id=iid)} == {"rejected"}
    r = c.post(path, json={**fp, "tune": False}, headers=auth("tok-alice"))
    assert r.status_code == 409 and "already closed as false_positive by bob" in r.json()["detail"]
    detail = c.get(f"/api/incidents/{iid}", headers=auth("tok-alice")).json()
    assert detail["incident"]["status"] == "closed"
    assert detail["incident"]["disposition"]["reason"] == "red team exercise"
    assert [e["kind"] for e in detail["audit"]].count("incident.disposed") == 1
    listed = c.get("/api/incidents?status=closed", headers=auth("tok-alice")).json()["items"]
    assert [i["incident_id"] for i in listed] == [iid]
    tuned = c.get("/api/tunings", headers=auth("tok-alice")).json()
    assert {t["incident_id"] for t in tuned} == {iid} and {t["actor"] for t in tuned} == {"bob"}
    one = {"rule_id": tuned[0]["rule_id"], "host": tuned[0]["host"], "reason": "wrong call"}
    assert c.post("/api/tunings/revoke", json=one, headers=auth("tok-alice")).status_code == 403
    assert c.post("/api/tunings/revoke", json=one, headers=auth("tok-carol")).status_code == 200
    assert c.post("/api/tunings/revoke", json=one, headers=auth("tok-carol")).status_code == 404
    left = c.get("/api/tunings", headers=auth("tok-alice")).json()
    assert len(left) == len(tuned) - 1 and one["rule_id"] not in [
        t["rule_id"] for t in left if t["host"] == one["host"]
    ]
    reopen = f"/api/incidents/{iid}/reopen"
    assert c.post(reopen, json={"reason": ""}, headers=auth("tok-alice")).status_code == 422
    r = c.post(reopen, json={"reason": "it was no exercise"}, headers=auth("tok-alice"))
    assert r.status_code == 200 and r.json()["status"] == "open"
    assert c.post(reopen, json={"reason": "again"}, headers=auth("tok-alice")).status_code == 409
    r = c.post(
        path, json={**fp, "verdict": "true_positive", "tune": False}, headers=auth("tok-bob")
    )
    assert r.status_code == 200 and r.json()["disposition"]["verdict"] == "true_positive"
    r = c.post(
        "/api/incidents/INC-nope/disposition",
        json={"verdict": "benign", "reason": "x"},
        headers=auth("tok-alice"),
    )
    assert r.status_code == 404


def test_several_incidents_are_closed_at_once_each_on_its_own(api: dict) -> None:
    """A detector's learning noise spans dozens of incidents: one request closes those named,
    each audited on its own; one unknown or closed already is refused, and the rest close."""
    c = api["client"]
    noise = [ecs(n, 120 * n, f"Odd rule {n}", f"ws{n}") for n in range(3)]
    body = json.dumps(noise).encode()
    assert c.post("/webhooks/generic", content=body, headers=signed(body, "m1")).status_code == 202
    items = wait_incidents(c, 3)
    first, second, third = (i["incident_id"] for i in items)
    path = "/api/incidents/dispositions"
    closing = {"verdict": "false_positive", "reason": "scanner test"}
    assert c.post(f"/api/incidents/{third}/disposition", json=closing, headers=auth("tok-bob"))
    tuned = {**closing, "incident_ids": [first, second], "tune": True}
    r = c.post(path, json=tuned, headers=auth("tok-alice"))
    assert r.status_code == 403  # tuning is a lead's call: nothing closed
    assert all(api["store"].get_incident(i).status == "open" for i in (first, second))
    r = c.post(
        path,
        json={**closing, "incident_ids": [first, "INC-nope", third, second, first]},
        headers=auth("tok-alice"),
    )
    assert r.status_code == 200, r.text
    assert [x["incident_id"] for x in r.json()["closed"]] == [first, second]
    assert {(x["incident_id"], x["status"]) for x in r.json()["refused"]} == {
        ("INC-nope", 404),
        (third, 409),
    }
    for iid in (first, second):
        inc = api["store"].get_incident(iid)
        assert (inc.status, inc.disposition.actor, inc.disposition.reason) == (
            "closed",
            "alice",
            "scanner test",
        )
        assert [e.kind for e in api["store"].audit(iid)].count("incident.disposed") == 1
    assert (
        c.post(path, json={**closing, "incident_ids": []}, headers=auth("tok-alice")).status_code
        == 422
    )
    many = {**closing, "incident_ids": [f"INC-{n}" for n in range(201)]}
    assert c.post(path, json=many, headers=auth("tok-alice")).status_code == 422
