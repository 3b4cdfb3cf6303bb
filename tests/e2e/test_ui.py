"""The analyst's browser UI driven by headless Chromium (Debian's, through Playwright):
login, the queue, an incident, approve and reject, and hostile alert content shown as text."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.models import DeadLetter, ProposalState
from agent.store.sqlite import SqliteStore
from tests.conftest import REPO, brute_force, ecs
from tests.e2e.conftest import api_settings, serve, signed

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
XSS_RULE = "<script>window.__pwned=1</script>Suspicious sudo"
XSS_MSG = '<img src=x onerror="window.__pwned=2">cat /etc/shadow'
HOSTILE_TITLE = '<img src=x onerror="window.__pwned=4">Odd logon'

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} is not installed (.ci/run installs Debian's chromium package)",
)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()


def seed(api: dict) -> None:
    docs = [
        brute_force(),
        ecs(2, 3, "Web shell", "web", severity="critical", tactic="TA0003"),
        ecs(3, 4, "Malicious Behavior: stager", "web", severity="critical", tactic="TA0002"),
        ecs(
            4,
            5,
            XSS_RULE,
            "web",
            severity="high",
            tactic="TA0004",
            message=XSS_MSG,
            user={"name": "<b>root</b>"},
        ),
    ]
    body = json.dumps(docs).encode()
    assert (
        api["client"]
        .post("/webhooks/generic", content=body, headers=signed(body, "ui"))
        .status_code
        == 202
    )
    import time

    deadline = time.monotonic() + 20
    while not api["store"].list_proposals():
        assert time.monotonic() < deadline, "triage did not finish"
        time.sleep(0.05)


def signed_in(browser, api: dict, token: str, viewport: dict | None = None):  # type: ignore[no-untyped-def]
    """A browser page logged in with this API token, and the messages of any dialog a script
    on it opens (there must be none)."""
    page = browser.new_page(viewport=viewport or {"width": 1366, "height": 768})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(api["url"] + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("table.queue")
    return page, dialogs


def test_login_queue_incident_approve_reject_and_escaping(api: dict, browser) -> None:  # type: ignore[no-untyped-def]
    seed(api)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    response = page.goto(api["url"] + "/")
    assert page.url.endswith("/login")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert "Unknown token" in page.content()
    page.fill("#token", "tok-bob")
    page.click("button[type=submit]")
    page.wait_for_selector("table.queue")
    cookie = next(c for c in page.context.cookies() if c["name"] == "vigie_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    rows = page.locator("#queue-rows tr")
    assert rows.count() >= 3
    page.screenshot(path=str(ARTIFACTS / "queue.png"))

    response = page.goto(api["url"] + page.locator("#queue-rows a").first.get_attribute("href"))
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("h1.title").inner_text()
    # hostile alert fields are text, never markup or script
    assert page.get_by_text(XSS_RULE).count() >= 1
    assert page.get_by_text(XSS_MSG).count() >= 1
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0
    assert page.locator("svg.graph circle").count() >= 2  # the entity graph is drawn
    page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)

    block = page.locator("article.proposal", has=page.locator("h3 code", has_text="block_ip"))
    block.locator("input[name=comment]").fill("confirmed attacker")
    block.locator("button.approve").click()
    page.wait_for_load_state()
    assert (
        "succeeded"
        in page.locator(
            "article.proposal", has=page.locator("h3 code", has_text="block_ip")
        ).inner_text()
    )
    ticket = page.locator(
        "article.proposal", has=page.locator("h3 code", has_text="open_ticket")
    ).first
    ticket.locator("input[name=reason]").fill("ticket already open")
    ticket.locator("button.reject").click()
    page.wait_for_load_state()
    states = {p.action: p.state.value for p in api["store"].list_proposals()}
    assert states["block_ip"] == "succeeded" and states["open_ticket"] == "rejected"
    approver = next(p for p in api["store"].list_proposals() if p.action == "block_ip").approvals[0]
    assert (approver.approver, approver.comment) == ("bob", "confirmed attacker")
    page.screenshot(path=str(ARTIFACTS / "after-decisions.png"), full_page=True)


def test_state_changes_need_the_session_csrf_token(api: dict) -> None:
    seed(api)
    c = api["client"]
    r = c.post("/login", data={"token": "tok-bob"}, follow_redirects=False)
    assert r.status_code == 303 and "vigie_session" in r.cookies
    p = api["store"].list_proposals()[0]
    forged = c.post(
        f"/proposals/{p.proposal_id}/approve",
        data={"csrf": "forged", "args_hash": p.args_hash},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert api["store"].get_proposal(p.proposal_id).approvals == []
    c.cookies.clear()
    anonymous = c.post(
        f"/proposals/{p.proposal_id}/approve",
        data={"csrf": "x", "args_hash": p.args_hash},
        follow_redirects=False,
    )
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"


def incident_page(api: dict, cluster) -> str:  # type: ignore[no-untyped-def]
    """The incident page of the incident this cluster makes, stored as a run would."""
    from agent.baseline import Baseline
    from agent.incidents import build_incident, sample_of

    incident = build_incident(cluster, Baseline())
    api["store"].save_triage([incident], sample_of(cluster, None), [], [], actor="vigie")
    c = api["client"]
    c.post("/login", data={"token": "tok-bob"}, follow_redirects=False)
    return c.get(f"/incidents/{incident.incident_id}").text


def test_a_background_incident_says_why_its_rule_is_routine(api: dict) -> None:
    from agent.correlate import correlate
    from agent.routine import recent_hours
    from tests.conftest import alert

    hour = int(alert("x", 0, "x").timestamp.timestamp()) // 3600
    yesterday = {(hour - h) * 3600: {("heartbeat-missed", "db"): 6} for h in range(1, 25)}
    alerts = [alert(f"h{i}", i * 10, "Heartbeat missed", "db") for i in range(6)]
    (cluster,) = correlate(alerts, recent=recent_hours(yesterday))
    assert (
        "one rule on one host, routine: fired in 24 of 24 hours (the batch&#39;s and the "
        "store&#39;s before it), a median 6 alert(s) an hour"
    ) in incident_page(api, cluster)


def test_an_incident_page_says_which_attack_stages_linked_its_alerts(api: dict) -> None:
    from agent.correlate import correlate
    from tests.conftest import alert

    access = alert("x1", 0, "Exploit public-facing app", "web", tactic="TA0001")
    escalation = alert("x2", 240, "Sudo to root", "web", tactic="TA0004")
    (cluster,) = correlate([access, escalation])
    assert (
        "ATT&amp;CK progression on <code>web</code>: Initial Access then Privilege Escalation "
        "(2 alerts, up to 4.0 h apart)" in incident_page(api, cluster)
    )


def test_an_incident_page_names_the_sensors_that_corroborate_a_link(api: dict) -> None:
    from agent.correlate import correlate
    from tests.conftest import alert

    seen = [
        alert("n1", 0, "ET SCAN Nmap", "web", module="suricata"),
        alert("h1", 5, "sshd: brute force", "web", module="wazuh"),
    ]
    (cluster,) = correlate(seen)
    link = "shared host <code>web</code> (2 alerts, up to 5 min apart, seen by suricata, wazuh)"
    assert link in incident_page(api, cluster)


def test_the_edit_form_offers_only_what_may_change_and_refuses_what_cannot_be(
    api: dict,
) -> None:
    """The form showed every argument but the target, so an open_ticket could be pointed at
    another incident, and an isolation whose agent id was unknown bound the text "None"."""
    seed(api)
    c = api["client"]
    c.post("/login", data={"token": "tok-bob"}, follow_redirects=False)
    store = api["store"]
    ticket = next(p for p in store.list_proposals() if p.action == "open_ticket")
    html = c.get(f"/incidents/{ticket.incident_id}").text
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    inputs = {x.split('"', 1)[0] for x in html.split('name="arg_')[1:]}
    assert {"ip", "duration_hours", "queue"} <= inputs
    assert not inputs & {"target", "incident_id", "agent_id"}
    sneaked = c.post(
        f"/proposals/{ticket.proposal_id}/edit",
        data={"csrf": csrf, "arg_queue": "soc-l3", "arg_incident_id": "INC-other"},
        follow_redirects=False,
    )
    assert sneaked.status_code == 303
    new = next(p for p in store.list_proposals() if p.supersedes == ticket.proposal_id)
    assert new.args == {**ticket.args, "queue": "soc-l3"}
    block = next(p for p in store.list_proposals() if p.action == "block_ip")
    refused = c.post(
        f"/proposals/{block.proposal_id}/edit",
        data={"csrf": csrf, "arg_ip": "10.0.0.0/8", "arg_duration_hours": "24"},
        follow_redirects=False,
    )
    assert refused.status_code == 409 and "one IP address" in refused.text
    assert store.get_proposal(block.proposal_id) == block


def test_closing_an_incident_in_the_browser_records_the_verdict_and_its_tuning(
    api: dict,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """A lead closes an incident as benign and tunes it; the reason shows as text; an analyst
    is offered no tuning, and a forged form writes nothing."""
    seed(api)
    store = api["store"]
    first = store.list_incidents(limit=1)[0]
    c = api["client"]
    c.post("/login", data={"token": "tok-alice"}, follow_redirects=False)
    html = c.get(f"/incidents/{first.incident_id}").text
    assert 'action="/incidents/' in html and 'name="tune"' not in html  # analysts do not tune
    forged = c.post(
        f"/incidents/{first.incident_id}/close",
        data={"csrf": "forged", "verdict": "benign", "reason": "x"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and store.get_incident(first.incident_id).disposition is None

    page, dialogs = signed_in(browser, api, "tok-bob")
    page.goto(api["url"] + f"/incidents/{first.incident_id}")
    page.fill("form.close input[name=reason]", "   ")
    page.click("button.close-incident")  # blank once trimmed: refused, with the reason
    assert "a reason of 1 to 500 characters is required" in page.locator("p.error").inner_text()
    assert store.get_incident(first.incident_id).disposition is None
    page.goto(api["url"] + f"/incidents/{first.incident_id}")
    reason = '<img src=x onerror="window.__pwned=3">red team, ticket 42'
    page.select_option("select[name=verdict]", "benign")
    page.fill("form.close input[name=reason]", reason)
    page.check("form.close input[name=tune]")
    page.click("button.close-incident")
    page.wait_for_selector("p.disposition")
    shown = page.locator("p.disposition").inner_text()
    assert "benign closed by bob" in shown and reason in shown and "tuned as noise" in shown
    assert page.evaluate("window.__pwned") is None and dialogs == []
    page.screenshot(path=str(ARTIFACTS / "closed-incident.png"))
    d = store.get_incident(first.incident_id).disposition
    assert (d.verdict, d.actor, d.reason) == ("benign", "bob", reason) and d.tuned
    assert {(t.rule_id, t.host) for t in store.tunings(d.at)} == {
        (g.rule_id, g.host) for g in first.groups
    }
    html = c.get(f"/incidents/{first.incident_id}").text  # alice's session
    reopened = c.post(
        f"/incidents/{first.incident_id}/reopen",
        data={"csrf": csrf_of(html), "reason": "   "},
    )
    assert reopened.status_code == 400 and store.get_incident(first.incident_id).disposition
    page.click("nav a[href='/tunings']")
    rows = page.locator("table.tunings tbody tr, table.tunings tr:has(td)")
    assert page.locator("form.revoke").count() == len(d.tuned)
    shown_rule = d.tuned[0].rule_id
    first_row = page.locator("table.tunings tr", has=page.locator("code", has_text=shown_rule))
    first_row.first.locator("input[name=reason]").fill("wrong call")
    first_row.first.locator("button.revoke-tuning").click()
    page.wait_for_load_state()
    assert page.locator("form.revoke").count() == len(d.tuned) - 1 and rows.count() >= 1
    assert (shown_rule, d.tuned[0].host) not in {
        (t.rule_id, t.host) for t in store.tunings(datetime.now(UTC))
    }
    assert [e.kind for e in store.audit(f"{shown_rule}@{d.tuned[0].host}")] == ["tuning.revoked"]
    page.screenshot(path=str(ARTIFACTS / "tunings.png"), full_page=True)
    other = store.tunings(datetime.now(UTC))[0]
    as_analyst = c.post(  # alice's session: a lead's call, refused
        "/tunings/revoke",
        data={"csrf": csrf_of(c.get("/tunings").text), "rule_id": other.rule_id,
              "host": other.host, "reason": "x"},
    )  # fmt: skip
    assert as_analyst.status_code == 403 and "needs the admin or lead role" in as_analyst.text
    assert 'class="revoke"' not in c.get("/tunings").text  # nor is an analyst offered it
    assert len(store.tunings(datetime.now(UTC))) == len(d.tuned) - 1

    page.goto(api["url"] + f"/incidents/{first.incident_id}")
    page.fill("form.reopen input[name=reason]", "it was no exercise")
    page.click("button.reopen-incident")
    page.wait_for_selector("form.close")  # open again: it may be closed anew
    held = page.inner_text("p.reopened")
    assert "Reopened by" in held and "it was no exercise" in held
    assert "held open until a person closes it" in held
    assert store.get_incident(first.incident_id).status == "open"
    assert store.audit(first.incident_id)[-1].kind == "incident.reopened"


def csrf_of(html: str) -> str:
    """The session's CSRF token, as the page's forms carry it."""
    import re

    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_incidents_page_lists_them_in_reading_order_with_what_ranks_each(
    api: dict,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """The analyst reads incidents highest priority first: the page ranks them as the store
    does, says which factors rank each, pages through them, filters them, and shows alert
    content (here a hostile rule name in a title) as text."""
    from agent.analyst import OfflineAnalyst
    from agent.dispositions import dispose
    from agent.graph import TriageContext, run_triage_documents

    seed(api)
    store = api["store"]
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    quiet = [ecs(100 + i, 30 + i * 10, f"Rule {i}", f"ws{i}") for i in range(60)]
    quiet[0] = ecs(100, 30, HOSTILE_TITLE, "ws0", severity="critical")  # ranks on page one
    run_triage_documents([("t", n, d) for n, d in enumerate(quiet, 1)], ctx)
    ranked = store.list_incidents(limit=1000)
    assert len(ranked) > 50
    closed = ranked[-1]
    dispose(store, closed.incident_id, "benign", "lab host", "alice")

    page, dialogs = signed_in(browser, api, "tok-bob", {"width": 1366, "height": 900})
    page.click("nav a[href='/incidents']")
    page.wait_for_selector("table.incidents")
    rows = page.locator("table.incidents tbody tr")
    assert rows.count() == 50
    page.check("#select-all")  # one box ticks every open incident of the page
    assert page.locator("input[name=incident_id]:checked").count() == 50
    page.uncheck("#select-all")
    assert page.locator("input[name=incident_id]:checked").count() == 0
    shown = [a.get_attribute("href") for a in page.locator("table.incidents tbody tr td a").all()]
    open_ranked = [i for i in ranked if i.incident_id != closed.incident_id]
    assert shown == [f"/incidents/{i.incident_id}" for i in open_ranked[:50]]
    top = open_ranked[0]
    why = rows.first.locator("td.why .factor").all_inner_texts()
    assert why == [f"{f.name} +{f.points:.0f}" for f in top.leading_factors()] and why
    assert sum(f.points for f in top.leading_factors()) <= top.priority + 0.01
    assert page.get_by_text(HOSTILE_TITLE).count() == 1  # a title made of alert content: text
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None and dialogs == []
    page.screenshot(path=str(ARTIFACTS / "incidents.png"), full_page=True)

    page.click(f"a[href='/incidents/{top.incident_id}']")
    above = sum(1 for i in open_ranked if i.priority >= top.priority)
    assert page.locator("p.rank").inner_text() == (
        f"{above} open incident(s) at this priority or above"
    )
    page.go_back()
    page.click("nav.pages a[rel=next]")
    page.wait_for_selector("table.incidents")
    assert rows.first.locator("td.num").first.inner_text() == "51"
    assert rows.count() == len(open_ranked) - 50
    page.select_option("select[name=status]", "closed")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("table.incidents")
    assert [a.get_attribute("href") for a in rows.locator("a").all()] == [
        f"/incidents/{closed.incident_id}"
    ]
    assert "closed benign by alice" in rows.first.inner_text()
    c = api["client"]
    c.post("/login", data={"token": "tok-alice"}, follow_redirects=False)
    high = c.get("/incidents", params={"min_priority": top.priority}).text
    assert high.count("<tr>") - 1 == sum(1 for i in open_ranked if i.priority >= top.priority)
    assert c.get("/incidents", params={"status": "nope"}).status_code == 422


def test_incidents_ticked_on_the_list_are_closed_together(
    api: dict,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """An analyst ticks the learning noise on the Incidents page and closes it with one verdict:
    each is closed and audited on its own; one closed meanwhile by someone else is named on the
    page saying what was not done, and the others are closed all the same."""
    from agent.analyst import OfflineAnalyst
    from agent.dispositions import dispose
    from agent.graph import TriageContext, run_triage_documents

    store = api["store"]
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    noise = [ecs(200 + i, 30 + i * 60, f"New parameter {i}", f"srv{i}") for i in range(4)]
    run_triage_documents([("t", n, d) for n, d in enumerate(noise, 1)], ctx)
    ids = [i.incident_id for i in store.list_incidents(limit=10)]
    assert len(ids) == 4

    page, _ = signed_in(browser, api, "tok-alice")
    page.goto(api["url"] + "/incidents")
    assert page.locator("form.bulk-close input[name=tune]").count() == 0  # an analyst: no tuning
    for iid in ids[:3]:
        page.check(f"input[name=incident_id][value='{iid}']")
    dispose(store, ids[1], "benign", "known job", "bob")  # meanwhile, someone else
    page.select_option("form.bulk-close select[name=verdict]", "false_positive")
    page.fill("form.bulk-close input[name=reason]", "detector learning")
    page.click("button.close-selected")
    said = page.locator("p.error").inner_text()
    assert said.startswith("2 closed; not closed: ") and ids[1] in said and "bob" in said
    for iid in (ids[0], ids[2]):
        d = store.get_incident(iid).disposition
        assert (d.verdict, d.actor, d.reason) == ("false_positive", "alice", "detector learning")
        assert [e.kind for e in store.audit(iid)].count("incident.disposed") == 1
    assert store.get_incident(ids[1]).disposition.actor == "bob"  # untouched
    assert store.get_incident(ids[3]).status == "open"  # not ticked
    page.goto(api["url"] + "/incidents")
    assert page.locator("input[name=incident_id]").count() == 1  # only the open one is offered

    c = api["client"]
    c.post("/login", data={"token": "tok-alice"}, follow_redirects=False)
    forged = c.post(
        "/incidents",
        data={"csrf": "forged", "incident_id": [ids[3]], "verdict": "benign", "reason": "x"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and store.get_incident(ids[3]).status == "open"
    html = c.get("/incidents").text
    tuned = c.post(  # tuning is a lead's call: refused, nothing closed
        "/incidents",
        data={"csrf": csrf_of(html), "incident_id": [ids[3]], "verdict": "benign",
              "reason": "x", "tune": "1"},
        follow_redirects=False,
    )  # fmt: skip
    assert tuned.status_code == 403 and store.get_incident(ids[3]).status == "open"
    away = c.post(  # the page only ever sends back to the list
        "/incidents",
        data={"csrf": csrf_of(html), "incident_id": [ids[3]], "verdict": "benign",
              "reason": "ok", "back": "https://evil.example/"},
        follow_redirects=False,
    )  # fmt: skip
    assert away.status_code == 303 and away.headers["location"] == "/incidents"
    assert store.get_incident(ids[3]).disposition.verdict == "benign"


def test_an_incident_page_leads_to_every_incident_involving_its_hosts(
    api: dict,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """From one incident, the analyst pivots to every incident, open or closed, holding one of
    its hosts (or users, or addresses), and can type one into the list's filter in any case."""
    from agent.analyst import OfflineAnalyst
    from agent.dispositions import dispose
    from agent.graph import TriageContext, run_triage_documents

    store = api["store"]
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    docs = [ecs(300 + i, 30 + i * 240, f"Rule {i}", "Pivot-01" if i % 2 else f"other{i}")
            for i in range(6)]  # fmt: skip
    run_triage_documents([("t", n, d) for n, d in enumerate(docs, 1)], ctx)
    on_host = store.list_incidents(involving="pivot-01", limit=100)
    assert len(on_host) == 3
    dispose(store, on_host[-1].incident_id, "benign", "lab", "alice")

    page, _ = signed_in(browser, api, "tok-bob")
    page.goto(api["url"] + f"/incidents/{on_host[0].incident_id}")
    page.click("p.pivots a:text-is('pivot-01')")  # host names are read in lower case
    page.wait_for_selector("table.incidents")
    listed = [a.get_attribute("href") for a in page.locator("table.incidents tbody tr a").all()]
    assert listed == [f"/incidents/{i.incident_id}" for i in on_host]  # the closed one too
    assert page.locator("input[name=involving]").input_value() == "pivot-01"
    page.fill("input[name=involving]", "PIVOT-01")
    page.select_option("select[name=status]", "open")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("table.incidents")
    listed = [a.get_attribute("href") for a in page.locator("table.incidents tbody tr a").all()]
    assert listed == [f"/incidents/{i.incident_id}" for i in on_host[:-1]]
    assert page.locator("span.hint").inner_text().startswith("2 incident(s)")


def test_rejected_documents_are_listed_as_text_newest_first(api: dict, browser) -> None:  # type: ignore[no-untyped-def]
    """What a webhook rejected could be read by no one: the store kept it, no page showed
    it. Its excerpt is the sender's text, shown as text."""
    hostile = "<img src=x onerror=window.__pwned=5>no time here"
    kept = DeadLetter(source="webhook:b0", line=1, reason="triage failed", excerpt="z" * 5000)
    api["store"].save_triage([], [], [], [kept], actor="vigie")  # as triage keeps one it failed on
    body = json.dumps([{"message": hostile}, brute_force("ok1"), {"note": "older"}]).encode()
    r = api["client"].post("/webhooks/generic", content=body, headers=signed(body, "rej"))
    assert r.status_code == 202 and r.json()["rejected"] == 2
    page, dialogs = signed_in(browser, api, "tok-alice")
    page.click("nav a[href='/rejected']")
    page.wait_for_selector("table.rejected")
    rows = page.locator("table.rejected tr:has(td)")
    assert rows.count() == 3
    assert "webhook:generic:3" in rows.nth(0).inner_text()  # newest first: the last item
    assert "5000 characters in all" in rows.nth(2).inner_text()  # its start, not 5,000 z's
    assert rows.nth(2).inner_text().count("z") == 300
    assert "webhook:generic:1" in rows.nth(1).inner_text()
    assert page.get_by_text(hostile, exact=False).count() >= 1
    assert "unrecognised document" in rows.nth(1).inner_text()
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.locator("img[src=x]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "rejected.png"), full_page=True)


def test_a_login_holds_on_every_api_process_and_a_logout_ends_it_on_all(
    tmp_path: Path,
) -> None:
    """`vigie serve --workers 2` (the compose file's) ran two processes, each with the
    sessions it had made in memory: a login answered by one was unknown to the other, and
    the analyst was sent back to the login page one request in two. Here, two apps on one
    store, as two processes are."""
    settings = api_settings(tmp_path)
    with (
        serve(settings, SqliteStore(tmp_path / "v.db")) as one,
        serve(settings, SqliteStore(tmp_path / "v.db")) as other,
    ):
        r = one["client"].post("/login", data={"token": "tok-bob"}, follow_redirects=False)
        other["client"].cookies.set("vigie_session", r.cookies["vigie_session"])
        page = other["client"].get("/", follow_redirects=False)
        assert page.status_code == 200 and "bob" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None  # the form the other process wrote, with the session's token
        out = one["client"].post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303
        gone = other["client"].get("/", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/login"
    carol = api_settings(tmp_path).model_copy(
        update={"api_tokens": SecretStr("carol:admin:tok-carol")}
    )
    with serve(carol, SqliteStore(tmp_path / "v.db")) as restarted:
        c = restarted["client"]
        c.post("/login", data={"token": "tok-carol"}, follow_redirects=False)
        assert c.get("/", follow_redirects=False).status_code == 200
    demoted = api_settings(tmp_path).model_copy(
        update={"api_tokens": SecretStr("carol:lead:tok-carol")}
    )
    with serve(demoted, SqliteStore(tmp_path / "v.db")) as restarted:
        restarted["client"].cookies.update(c.cookies)
        gone = restarted["client"].get("/", follow_redirects=False)
        assert gone.status_code == 303  # her session spoke for her old role


def test_a_run_of_unknown_outcome_is_settled_on_its_incident_page(api: dict) -> None:
    """The page showed `outcome_unknown` and nothing to do about it."""
    from datetime import timedelta

    from agent import approvals

    seed(api)
    store, c = api["store"], api["client"]
    p = store.list_proposals(states=[ProposalState.pending])[0]
    now = datetime.now(UTC) + timedelta(seconds=1)
    steps = [approvals.approve(p, "alice", now, seen_hash=p.args_hash)]
    if steps[-1].state is ProposalState.pending:  # high risk: a second approver
        steps.append(approvals.approve(steps[-1], "carol", now, seen_hash=p.args_hash))
    steps.append(approvals.start(steps[-1], now))
    steps.append(approvals.outcome_unknown(steps[-1], now, "the worker died"))
    for old, new in zip([p, *steps], steps, strict=False):
        assert store.transition(old, new, actor="worker")
    c.post("/login", data={"token": "tok-bob"}, follow_redirects=False)
    queue = c.get("/").text  # the queue says there is one to settle, and where
    assert f'href="/incidents/{p.incident_id}#proposal-{p.proposal_id}"' in queue
    html = c.get(f"/incidents/{p.incident_id}").text
    assert f'action="/proposals/{p.proposal_id}/settle"' in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "ran": "true", "reason": "the host is isolated in Kibana"}
    r = c.post(f"/proposals/{p.proposal_id}/settle", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    settled = store.get_proposal(p.proposal_id)
    assert settled.state is ProposalState.succeeded and settled.result["settled"]["by"] == "bob"
    assert (
        f'action="/proposals/{p.proposal_id}/settle"'
        not in c.get(f"/incidents/{p.incident_id}").text
    )
    assert 'id="outcome-unknown"' not in c.get("/").text


def test_an_incident_page_says_a_detection_rule_matched_its_alerts_as_one_sequence(
    api: dict,
) -> None:
    from agent.correlate import correlate
    from agent.normalize import normalize
    from tests.conftest import eql_sequence_alerts

    (cluster,) = correlate([normalize(d) for d in eql_sequence_alerts("grp-9f2")])
    assert (
        "one sequence its detection rule matched: <code>Logon then remote tool by one "
        "account</code> (3 alerts, up to 2.0 h apart)"
    ) in incident_page(api, cluster)


def test_an_incident_page_says_a_process_and_those_it_started_link_its_alerts(
    api: dict,
) -> None:
    """The process's name is data: escaped on the page like any alert value."""
    from agent.correlate import correlate
    from agent.normalize import normalize
    from tests.conftest import process_alert

    name = "<b>cmd</b>.exe"
    shell = process_alert("sh", 0, "Shell from IIS worker", "web", name, "E-cmd", "E-w3wp")
    beacon = process_alert("bc", 180, "Rare beacon", "web", "rundll32.exe", "E-run", "E-cmd")
    (cluster,) = correlate([normalize(shell), normalize(beacon)])
    page = incident_page(api, cluster)
    assert (
        "one process and its descendants: <code>&lt;b&gt;cmd&lt;/b&gt;.exe</code> "
        "(2 alerts, up to 3.0 h apart)"
    ) in page
    assert "<b>cmd</b>" not in page


def test_an_incident_page_counts_the_repeats_elastic_suppressed(api: dict) -> None:
    from agent.correlate import correlate
    from agent.normalize import normalize
    from tests.conftest import suppressed_alerts

    (cluster,) = correlate([normalize(d) for d in suppressed_alerts()])
    page = incident_page(api, cluster)
    assert '<td class="num">3 <span class="muted">+60 folded</span></td>' in page
    assert "3 alert(s) and 60 repeat(s) the SIEM folded into them" in page
