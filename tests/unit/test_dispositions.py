"""A person closes an incident with a verdict; a tuning takes that noise out of later ranks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.analyst import OfflineAnalyst
from agent.baseline import Baseline
from agent.correlate import correlate
from agent.dispositions import dispose, reopen, revoke
from agent.errors import BadInput, Forbidden, NotFound
from agent.graph import TriageContext, run_triage_documents
from agent.models import Incident, Tuning
from agent.prioritise import prioritise
from agent.store.sqlite import SqliteStore
from agent.streams import streams_of_alerts
from tests.conftest import alert, ecs

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def tuning(rule_id: str, host: str) -> Tuning:
    return Tuning(
        rule_id=rule_id,
        host=host,
        verdict="false_positive",
        incident_id="INC-1",
        actor="alice",
        at=NOW,
        expires_at=NOW + timedelta(days=30),
        reason="learning noise",
    )


def points(factors) -> dict[str, float]:
    return {f.name: f.points for f in factors}


def test_a_tuned_pair_loses_its_rarity_but_the_attack_around_it_keeps_its_tactics() -> None:
    """Tuning is per rule and host: the same rule elsewhere still counts, and an incident that
    trips a tuned rule is still ranked by its tactics and severity."""
    alerts = [
        alert(1, 0, "Odd DNS", "srv3", tactic="TA0011"),
        alert(2, 10, "Web shell", "srv3", severity="high", tactic="TA0003"),  # apart: corroborates
        *(alert(f"r{i}", 60 + i, "Heartbeat", f"srv{i % 4}") for i in range(200)),
    ]
    baseline = Baseline()
    baseline.observe(correlate(alerts))
    streams = streams_of_alerts(alerts[:2])
    before, _ = prioritise(streams, baseline)
    _, kept = prioritise(streams, baseline)
    baseline.tune([tuning("odd-dns", "srv3")])
    after, factors = prioritise(streams, baseline)
    got = points(factors)
    assert after < before
    assert got["tactics"] == points(kept)["tactics"] > 0  # two tactics still counted
    assert got["severity"] == points(kept)["severity"]
    assert got["rarity"] < points(kept)["rarity"]  # only the web shell's rarity is left
    assert "rarest rule 'Web shell'" in next(f.detail for f in factors if f.name == "rarity")
    assert sum(got.values()) == pytest.approx(after)
    detail = next(f.detail for f in factors if f.name == "tuning")
    assert "1 rule-host pair(s) tuned as noise" in detail
    assert "false_positive by alice on 2026-11-27 (incident INC-1)" in detail

    elsewhere = streams_of_alerts([alert(3, 0, "Odd DNS", "srv4")])
    _, factors = prioritise(elsewhere, baseline)
    assert "tuning" not in points(factors) and points(factors)["rarity"] > 0
    # A tuning an earlier version stored with the host as written quiets the host as read.
    baseline.tune([tuning("odd-dns", "SRV3.corp.example")])
    assert prioritise(streams, baseline)[0] == after


def _triage(store: SqliteStore, docs: list[dict]) -> list[Incident]:
    ctx = TriageContext(store=store, analyst=OfflineAnalyst(), playbooks=[])
    state = run_triage_documents([("t", n, d) for n, d in enumerate(docs, 1)], ctx)
    return state["incidents"]


def _on(incidents: list[Incident], host: str, rule: str = "Odd DNS") -> Incident:
    (inc,) = [i for i in incidents if i.hosts == [host] and i.title.startswith(rule)]
    return inc


@pytest.mark.parametrize("tune", [True, False], ids=["tuned", "closed without tuning"])
def test_a_later_run_ranks_a_tuned_rule_on_its_host_lower_and_says_on_whose_word(
    tmp_path: Path, tune: bool
) -> None:
    store = SqliteStore(tmp_path / "v.db")
    routine = [ecs(f"d{i}", i * 7, "Heartbeat missed", f"srv{i % 5}") for i in range(220)]
    _triage(store, routine)
    first = _triage(
        store,
        [ecs("x1", 26 * 60, "Odd DNS", "srv3"), ecs("x2", 26 * 60 + 300, "Odd DNS", "srv4")],
    )
    noise = _on(first, "srv3")
    dispose(store, noise.incident_id, "false_positive", "resolver test", "alice", tune=tune)

    later = _triage(  # ten minutes on: it would have extended the incident, were it open
        store,
        [ecs("y1", 26 * 60 + 10, "Odd DNS", "srv3"), ecs("y2", 26 * 60 + 900, "Odd DNS", "srv4")],
    )
    again, other = _on(later, "srv3"), _on(later, "srv4")
    assert again.incident_id != noise.incident_id  # a closed incident is never extended
    stored = store.get_incident(noise.incident_id)
    assert stored is not None and stored.alert_ids == ["ax1"] and stored.status == "closed"
    factors, untouched = (
        points(again.explanation.priority_factors),
        points(other.explanation.priority_factors),
    )
    if tune:
        assert factors["rarity"] == 0 and untouched["rarity"] > 0
        assert again.priority < other.priority
        assert "alice" in next(
            f.detail for f in again.explanation.priority_factors if f.name == "tuning"
        )
    else:
        assert "tuning" not in factors and factors["rarity"] == untouched["rarity"] > 0


def test_a_disposal_needs_a_reason_a_noise_verdict_to_tune_and_a_lead_over_the_api(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "v.db")
    (inc,) = _triage(store, [ecs("x1", 0, "Odd DNS", "srv3")])
    with pytest.raises(BadInput, match="reason"):
        dispose(store, inc.incident_id, "benign", "   ", "alice")
    with pytest.raises(BadInput, match="can tune"):
        dispose(store, inc.incident_id, "true_positive", "real", "alice", tune=True)
    with pytest.raises(Forbidden, match="lead"):
        dispose(store, inc.incident_id, "benign", "test box", "alice", tune=True, role="analyst")
    with pytest.raises(NotFound):
        dispose(store, "INC-nope", "benign", "test box", "alice")
    # A closing is someone's: `--as ""` closed it "by " nobody, and the system could close too.
    # Full-width letters and invisible characters print as a name they are not.
    for nobody in ("", "   ", "vigie", " System ", "\uff56\uff49\uff47\uff49\uff45", "car\u200bol"):
        with pytest.raises(BadInput, match="person"):
            dispose(store, inc.incident_id, "benign", "test box", nobody)
        with pytest.raises(BadInput, match="person"):
            reopen(store, inc.incident_id, "closed in error", nobody)
        with pytest.raises(BadInput, match="person"):
            revoke(store, "odd-dns", "srv3", "the job moved", nobody)
    assert store.get_incident(inc.incident_id).status == "open"  # nothing refused was written
    assert store.tunings(NOW) == [] and store.audit(inc.incident_id) == []
    dispose(store, inc.incident_id, "benign", "test box", "carol", tune=True, role="lead")
    assert [t.actor for t in store.tunings(datetime.now(UTC))] == ["carol"]
    # Hosts are read by machine name in lower case: one typed as remembered, with its DNS
    # domain, ends the tuning of the host.
    revoke(store, "odd-dns", "SRV3.corp.example", "the job moved", "carol", role="lead")
    assert store.tunings(datetime.now(UTC)) == []


def _factors_of(first_alert: str, tunings: list[Tuning]) -> dict[str, float]:
    """The factors of one incident of the day with an intrusion at 06:00 (`anear`: a quiet
    alert 20 minutes after it; `afar`: its twin four hours later), with these tunings."""
    from agent.incidents import build_incident
    from tests.unit.test_correlate_prioritise import (
        _day_with_an_intrusion,
        _watched_since_yesterday,
    )

    clusters = correlate(_day_with_an_intrusion())
    baseline = _watched_since_yesterday()
    baseline.observe(clusters)
    baseline.tune(tunings)
    cluster = next(c for c in clusters if c.alerts[0].id == first_alert)
    return points(build_incident(cluster, baseline).explanation.priority_factors)


def test_a_tuned_rule_counts_in_full_in_an_unusual_window_and_only_there() -> None:
    """A tuning judged the pair's routine: beside an intrusion, a tuned rule (the cracking's
    CPU alert) is its side effect, and counts in full, saying so; at a quiet time it loses its
    rarity. Tuning the intrusion's own rules changes nothing for an incident holding none."""
    untouched = _factors_of("anear", [])
    assert untouched["burst"] == 40.0 and untouched["rarity"] > 0
    own = _factors_of("anear", [tuning("cpu-out-of-range", "monitor")])
    assert own == {**untouched, "tuning_set_aside": 0.0}
    quiet = _factors_of("afar", [])
    assert quiet.get("burst", 0) < 10 and quiet["rarity"] > 0
    tuned_quiet = _factors_of("afar", [tuning("cpu-deviates-from-average", "monitor2")])
    assert tuned_quiet["rarity"] == 0 and "tuning" in tuned_quiet
    steps = [tuning(f"attack-step-{i}", f"srv{i % 3}") for i in range(8)]
    assert _factors_of("anear", steps) == untouched


def test_the_model_reads_that_the_soc_tuned_a_pair_not_who_did() -> None:
    """Staff names and reasons stay on premises: the payload says a tuning applies, no more."""
    from agent.incidents import build_incident
    from agent.prompts import TUNING_FOR_MODEL, evidence
    from agent.pseudonymize import Passthrough

    alerts = [alert(1, 0, "Odd DNS", "srv3"), alert(2, 1, "Web shell", "srv3")]
    baseline = Baseline()
    baseline.observe(clusters := correlate(alerts))
    baseline.tune([tuning("odd-dns", "srv3")])
    incident = build_incident(clusters[0], baseline)
    assert "alice" in str(incident.explanation.priority_factors)  # the page says who
    payload = str(evidence(incident, {a.id: a for a in alerts}, Passthrough(), 20))
    assert "alice" not in payload and "learning noise" not in payload
    assert f"tuning +0: {TUNING_FOR_MODEL['tuning']}" in payload

    from tests.unit.test_correlate_prioritise import (
        _day_with_an_intrusion,
        _watched_since_yesterday,
    )

    day = _day_with_an_intrusion()  # the tuned pair fires beside an intrusion: set aside
    baseline = _watched_since_yesterday()
    baseline.observe(clusters := correlate(day))
    baseline.tune([tuning("cpu-out-of-range", "monitor")])
    near = build_incident(next(c for c in clusters if c.alerts[0].id == "anear"), baseline)
    payload = str(evidence(near, {a.id: a for a in day}, Passthrough(), 20))
    assert "alice" not in payload and "learning noise" not in payload
    assert f"tuning_set_aside +0: {TUNING_FOR_MODEL['tuning_set_aside']}" in payload


@pytest.mark.parametrize("verdict", ["false_positive", "true_positive"])
def test_closing_as_noise_rejects_what_waits_for_approval_and_a_real_one_keeps_it(
    tmp_path: Path, verdict: str
) -> None:
    """Nothing may stay approvable on an incident judged noise (isolating a host over a false
    positive); a proposal already approved is its approver's, and stays; a true positive keeps
    its proposals waiting."""
    from agent import approvals
    from agent.models import ProposalState
    from agent.queue import ApprovalQueue
    from tests.unit.test_approvals import proposal

    store = SqliteStore(tmp_path / "v.db")
    (inc,) = _triage(store, [ecs("x1", 0, "Odd DNS", "srv3")])
    now = datetime.now(UTC)
    waiting = [
        proposal(proposal_id=f"P-{k}", incident_id=inc.incident_id, expires_at=now + timedelta(1))
        for k in (1, 2, 3)
    ]
    store.save_triage([], [], waiting, [], actor="vigie")
    approved = approvals.approve(waiting[2], "carol", now, seen_hash=waiting[2].args_hash)
    assert store.transition(waiting[2], approved, actor="carol")
    queue = ApprovalQueue(store, lambda pid: None, timedelta(hours=1))

    closing = dispose(store, inc.incident_id, verdict, "scanner test", "alice", queue=queue)
    states = {p.proposal_id: p.state for p in store.list_proposals()}
    if verdict == "false_positive":
        assert closing.withdrawn == ["P-1", "P-2"] and closing.left == []
        assert states == {
            "P-1": ProposalState.rejected,
            "P-2": ProposalState.rejected,
            "P-3": ProposalState.approved,
        }
        rejection = store.get_proposal("P-1").approvals[0]
        assert (rejection.approver, rejection.comment) == (
            "alice",
            "incident closed as false_positive: scanner test",
        )
    else:
        assert closing.withdrawn == [] and states["P-1"] is ProposalState.pending
