"""Property-based fuzzing of every normaliser and webhook parser, and of the file reader:
whatever arrives, the outcome is an alert, a typed error or a dead letter; never a crash."""

from __future__ import annotations

import contextlib
import functools
import json
import math
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent import repeats
from agent.errors import BadInput
from agent.models import DeadLetter, raw_json
from agent.normalize import alert_id, normalise_fully, normalize
from connectors.files import BOM, GZIP_MAGIC, UTF16_BOMS, read_documents
from connectors.webhooks import PARSERS, NotAnAlert
from tests.conftest import ecs, same_alert_as_validated
from tests.unit.test_repeats import outcome, revalued

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.integers(min_value=1000, max_value=20000).map(lambda n: "A" * n),  # huge fields, cheaply
)
keys = st.sampled_from(
    [
        "message",  # the message fields a repeat may change, and what a message falls back on
        "full_log",
        "kibana.alert.reason",
        "reason",
        "rule.name",
        "event.action",
        "rule.firedtimes",
        "firedtimes",
        "predecoder",
        "predecoder.timestamp",
        "data.alert.signature",
        "data",  # what no normaliser reads, and a field beside it that one does
        "data.flow",
        "flow",
        "flow_id",
        "data.src_port",
        "src_port",
        "data.src_ip",
        "src_ip",
        "@timestamp",
        "timestamp",
        "rule",
        "level",
        "name",
        "id",
        "event",
        "kibana.alert.rule.name",
        "kibana.alert.uuid",
        "kibana.alert.original_time",
        "kibana",
        "alert",
        "event.id",
        "_id",
        "uuid",
        "original_time",
        "kibana.alert.severity",
        "kibana.alert.risk_score",
        "host",
        "user",
        "source",
        "ip",
        "agent",
        "data",
        "threat",
        "tactic",
        "technique",
        "message",
        "alerts",
        "result",
        "payload",
        "all_fields",
    ]
) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)
#: The fields a repeat may change: read again on every repeat, or read by no normaliser.
CHANGEABLE = repeats.VOLATILE_PATHS + repeats.UNREAD_PATHS
FUZZ = settings(
    max_examples=300,
    deadline=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def deep(n: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(n):
        d = {"x": d}
    return d


@FUZZ
@given(json_values)
def test_normalize_returns_an_alert_or_a_typed_error(doc: object) -> None:
    try:
        alert = normalize(doc)
    except BadInput:
        return
    assert alert.id and 0 <= alert.risk_score <= 100


#: A valid document of each format, for fuzzed fields to be laid over.
VALID_BASES = (
    ecs(1, 0, "Rule"),
    {"timestamp": "2026-01-01T00:00:00Z", "rule": {"level": 5}},
    {"@timestamp": "2026-01-01T00:00:00Z", "kibana.alert.rule.name": "x"},
)


@FUZZ
@given(st.dictionaries(keys, json_values, max_size=8))
def test_near_valid_documents_never_crash(extra: dict) -> None:
    for base in VALID_BASES:
        with contextlib.suppress(BadInput):
            normalize({**base, **extra})


@FUZZ
@given(st.dictionaries(keys, json_values, max_size=8))
def test_the_parallel_readers_unvalidated_alerts_equal_validated_ones(extra: dict) -> None:
    for base in VALID_BASES:
        same_alert_as_validated({**base, **extra})


@FUZZ
@given(
    st.dictionaries(keys, json_values, max_size=8),
    st.lists(json_values, min_size=len(CHANGEABLE), max_size=len(CHANGEABLE)),
)
def test_a_repeat_served_by_the_memo_normalises_as_in_full(extra: dict, fresh: list) -> None:
    """Whatever else a document holds, giving its id, time and message fields other values
    and reading it through the memo (after the first copy) ends as normalising it in full
    would."""
    new_value = dict(zip(CHANGEABLE, fresh, strict=True))
    for base in VALID_BASES:
        doc = {**base, **extra}
        again = revalued(doc, new_value.get)
        memoised = functools.partial(
            repeats.Repeats(normalise_fully, alert_id, raw_json).fields, raw=None
        )
        outcome(memoised, doc)
        assert outcome(memoised, again) == outcome(full, again)


def full(doc: dict) -> dict:
    return normalise_fully(doc, None)[0]


@FUZZ
@given(st.sampled_from(sorted(PARSERS)), json_values)
def test_webhook_parsers_return_documents_or_bad_input(source: str, body: object) -> None:
    try:
        docs = PARSERS[source](body)
    except BadInput:
        return
    assert isinstance(docs, list)
    for d in docs:
        if isinstance(d, NotAnAlert):  # a list's item that holds no alert: a dead letter
            assert d.reason
            continue
        assert isinstance(d, dict)
        with contextlib.suppress(BadInput):
            normalize(d)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.binary(max_size=300)
        | st.sampled_from(
            [
                b'{"a": 1, "a": 2}',
                b'{"x": NaN}',
                b'{"x": Infinity}',
                b"\xff\xfe{}",
                b'{"s": "\xc3\x28"}',
                json.dumps(deep(200)).encode(),
                b"[" * 5000,
                b'{"@timestamp": 1e400}',
            ]
        ),
        max_size=12,
    )
)
@example(lines=[b"\xef\xbb\xbf"])  # found by a local run: a byte order mark alone is blank
@example(lines=[b'{"a": 1}', b"\xef\xbb\xbf"])
@example(lines=[b"\x1f\x8b", b"\x00"])  # found by a local run: gzip's magic, then no stream
@example(lines=[b"\xfe\xff", b"\x00"])  # found by CI: UTF-16's mark, then no whole character
def test_file_reader_turns_anything_into_documents_or_dead_letters(
    tmp_path: Path, lines: list[bytes]
) -> None:
    f = tmp_path / "fuzz.ndjson"
    f.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    outcomes = list(read_documents(f))
    for item in outcomes:
        if isinstance(item, DeadLetter):
            assert item.reason and item.line
        else:
            with contextlib.suppress(BadInput):
                normalize(item.value, raw=item.raw)
    # A byte order mark is ignored at the start of the file and of each line.
    nonblank = [line for line in lines if line.replace(b"\n", b" ").removeprefix(BOM).strip()]
    if f.read_bytes().startswith(GZIP_MAGIC):  # gzip's first bytes: read as a compressed file
        assert outcomes  # never JSON (no JSON text starts so): its broken stream is reported
    elif f.read_bytes()[:2] in UTF16_BOMS:  # read as UTF-16 text: its lines are not these
        assert outcomes
    elif nonblank and nonblank[0].removeprefix(BOM).lstrip()[:1] not in (b"[", b"{"):
        assert len(outcomes) == len(nonblank)  # NDJSON: every non-blank line accounted for
    elif nonblank:
        assert outcomes  # an array or object file: documents, or the broken part reported


def test_specific_hostile_documents() -> None:
    for doc, ok in [
        (ecs(1, 0, "r") | {"@timestamp": math.inf}, False),
        (ecs(1, 0, "r") | {"event": {"id": "x", "risk_score": math.nan}}, False),
        (ecs(1, 0, "r") | {"extra": deep(500)}, False),
        (ecs(1, 0, "r" * 100_000), True),  # a huge rule name is clipped, not fatal
    ]:
        try:
            alert = normalize(doc)
            assert ok and len(alert.rule_name) <= 512
        except BadInput:
            assert not ok
