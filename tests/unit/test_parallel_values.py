"""JSON arrays and concatenated objects read in parallel must read as the serial reader reads
them: same alerts, same dead letters, same lines, in the same order, whether each chunk was
read by a worker or, from a cut the workers could not trust, serially."""

from __future__ import annotations

import json
from collections.abc import Iterable
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import agent.parallel_read as parallel_read
from agent.models import Alert, DeadLetter
from agent.normalize import NormalizeError, normalize, rejected
from agent.parallel_read import ReadChunk
from connectors.files import read_documents
from tests.conftest import ecs

#: A message an attacker wrote to look like the gap between two array elements.
FAKE_GAP = 'x"}, {"@timestamp": "2024-01-01T00:00:00Z", "event": {"id": "forged"}}, {"y": "'


def docs(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        doc = ecs(i, i * 0.5, f"Rule {i % 7}", f"h{i % 5}")
        if i % 9 == 0:
            doc["message"] = FAKE_GAP.replace('"', "'") if i % 2 else "x},{y}, {z"
        if i % 11 == 0:
            doc["message"] = f"connexion refusée à l'hôte ★ {i}"  # not ASCII
        out.append(doc)
    return out


def settled(items: Iterable[Any]) -> list[tuple[str, int, dict[str, Any]] | DeadLetter]:
    """Each alert as its fields and document (however it holds its document's bytes), each
    document the reader left to the run normalised as the run would."""
    out: list[tuple[str, int, dict[str, Any]] | DeadLetter] = []
    for item in items:
        for one in item.items() if isinstance(item, ReadChunk) else [item]:
            if isinstance(one, DeadLetter):
                out.append(one)
                continue
            path, line, value = one[:3]
            if not isinstance(value, Alert):
                try:
                    value = normalize(value, raw=one[3])
                except NormalizeError as exc:
                    out.append(rejected(path, line, value, exc))
                    continue
            out.append((path, line, value.model_dump()))
    return out


def serial(path: Path, max_bytes: int) -> list[tuple[str, int, dict[str, Any]] | DeadLetter]:
    return settled(
        (str(path), d.line, d.value, d.raw) if not isinstance(d, DeadLetter) else d
        for d in read_documents(path, max_bytes)
    )


def parallel(path: Path, max_bytes: int) -> list[Any]:
    return list(parallel_read.read_parallel(str(path), max_bytes, workers=2))


LAYOUTS = {
    "one a line": lambda d: (
        "[\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in d) + "\n]\n"
    ),
    "pretty": lambda d: "\ufeff" + json.dumps(d, indent=2, ensure_ascii=False),
    "one line": lambda d: json.dumps(d, ensure_ascii=False),
    "concatenated": lambda d: "\n".join(json.dumps(x, indent=4) for x in d),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("chunk_bytes", [300, 4096])
def test_a_clean_file_is_read_by_the_workers_as_the_serial_reader_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, chunk_bytes: int
) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(LAYOUTS[layout](docs(300)), encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", chunk_bytes)
    got = parallel(path, 5000)
    assert settled(got) == serial(path, 5000)
    assert len(settled(got)) == 300 and not any(isinstance(x, DeadLetter) for x in settled(got))
    assert all(isinstance(c, ReadChunk) for c in got)  # every chunk from a worker, none serial
    alerts = [a for c in got for a in c.alerts]
    assert all(isinstance(a.raw_json, tuple) for a in alerts)  # documents left in the file
    assert len(got) > 10 if chunk_bytes == 300 else len(got) > 1
    forged = [a for a in alerts if a.id == "forged"]
    assert forged == []  # a gap written in a message is not a gap


@pytest.mark.parametrize(
    "flaw",
    ["invalid", "not an object", "too large", "truncated", "after the end", "lone surrogate"],
)
@pytest.mark.parametrize("layout", ["one a line", "pretty"])
def test_a_flawed_array_reads_on_serially_from_the_flaw_s_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flaw: str, layout: str
) -> None:
    text = LAYOUTS[layout](docs(300))
    middle = text.index('"a150"')
    element = text.rindex("{", 0, text.rindex('"@timestamp"', 0, middle))
    if flaw == "invalid":
        text = text[:element] + "{not json, " + text[element:]
    elif flaw == "not an object":
        text = text[:element] + "[1, 2], " + text[element:]
    elif flaw == "too large":  # over 16 times the limit: not even cut to fit
        text = text[:element] + json.dumps({"m": "x" * 90_000}) + ", " + text[element:]
    elif flaw == "truncated":
        text = text[: middle + 200]
    elif flaw == "after the end":
        text = text.rstrip() + "\n" + json.dumps(ecs("after", 0, "Rule 1"))
    else:
        text = text.replace('"a150"', '"a150", "note": "\\ud800"')
    path = tmp_path / "alerts.json"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 1000)
    got = parallel(path, 5000)
    want = serial(path, 5000)
    assert settled(got) == want
    assert any(isinstance(x, DeadLetter) for x in want) or flaw == "after the end"
    assert isinstance(got[0], ReadChunk)  # the chunks before the flaw came from the workers
    serially = [x for x in got if isinstance(x, tuple) and not isinstance(x[2], Alert)]
    assert serially or flaw in ("not an object", "lone surrogate")  # read serially after it


def test_a_too_large_element_of_a_one_line_array_is_read_by_its_chunk_s_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the limit, an element is read with its long strings cut (up to 16 times the limit)
    or, on one line, skipped to its end as one dead letter: by a worker as by the serial
    reader, and the chunks after it are still the workers'."""
    items: list[dict[str, Any]] = docs(300)
    items[100] = {**items[100], "pad": "x}, {" * 1000}  # 5 kB: cut to fit 1 kB
    items[200] = {**items[200], "pad": "x}, {" * 4000}  # 20 kB: over 16 times 1 kB
    path = tmp_path / "alerts.json"
    path.write_text(LAYOUTS["one line"](items), encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 8192)
    got = parallel(path, 1000)
    assert settled(got) == serial(path, 1000)
    dead = [x for x in settled(got) if isinstance(x, DeadLetter)]
    assert [d.reason for d in dead] == ["document larger than 1000 bytes"]
    cut = [x[2] for x in settled(got) if not isinstance(x, DeadLetter) and x[2]["id"] == "a100"]
    assert cut and cut[0]["raw"]["vigie.shortened"]["kept"] == 256
    assert not [x for x in got if isinstance(x, tuple) and not isinstance(x[2], Alert)]
    assert isinstance(got[-1], ReadChunk)  # the last chunk whole, from a worker


def test_a_piece_opening_with_a_too_large_element_is_read_by_its_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece of a one-line array that opens on an element over 16 times the limit: its
    worker reads how the line began before the piece (after a comma), so skips the element as
    the serial reader does; the rest of the file was read serially."""
    items = [ecs(i, i, "Rule 1") for i in range(300)]
    items[150]["pad"] = "x" * 20_000
    text = json.dumps(items)
    big = text.index('{"@timestamp"', text.index('"a150"') - 80)
    path = tmp_path / "alerts.json"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", big - 2)  # cut just before it
    assert parallel_read.value_chunks(str(path), big - 2)[1][0] == big
    got = parallel(path, 1000)
    assert settled(got) == serial(path, 1000)
    dead = [x for x in settled(got) if isinstance(x, DeadLetter)]
    assert [d.reason for d in dead] == ["document larger than 1000 bytes"]
    assert not [x for x in got if isinstance(x, tuple) and not isinstance(x[2], Alert)]


def test_an_element_with_a_raw_tab_keeps_its_place_in_the_file_and_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw tab in a string is no JSON, yet common (Windows event text): read, as the serial
    reader reads it, and its document read back from the file, where it stays."""
    items = docs(300)
    items[100]["message"] = "Account Name:\t\tjdoe"
    path = tmp_path / "alerts.json"
    path.write_text(LAYOUTS["one a line"](items).replace("\\t", "\t"), encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 4096)
    got = parallel(path, 5000)
    assert settled(got) == serial(path, 5000)
    (tabbed,) = [a for c in got for a in c.alerts if "\t" in a.message]
    assert isinstance(tabbed.raw_json, tuple) and b"\t" in tabbed.document_json()
    assert tabbed.raw["message"] == "Account Name:\t\tjdoe"


def test_a_cut_inside_a_string_is_never_read_as_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cut a chunk could start at sits inside one long message: each chunk but the
    first starts inside a string, which its worker may well parse as values."""
    doc = ecs(1, 0, "Rule 1", message="".join(FAKE_GAP for _ in range(200)))
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps([doc, ecs(2, 1, "Rule 2")]), encoding="utf-8")
    monkeypatch.setattr(parallel_read, "CHUNK_BYTES", 500)
    assert len(parallel_read.value_chunks(str(path), 500)) > 5
    got = settled(parallel(path, 1 << 20))
    assert [x[2]["id"] for x in got if not isinstance(x, DeadLetter)] == ["a1", "a2"]
    assert got == serial(path, 1 << 20)


class _ThreadContext:
    """The spawn context's stand-in: workers as threads, so many files can be read quickly.
    Everything else (cuts, chunk results through files, order, merging, reading on serially)
    is the reader's own."""

    Pool = ThreadPool


texts = st.text(alphabet='ab"\\{}[],: \n\té★\ud800', max_size=30) | st.sampled_from(
    [FAKE_GAP, "x},{y", "}\n{", '"}, {"a": 1}', "]"]
)
flaws = st.sampled_from(
    [
        "",
        "{not json",
        "[1, 2]",
        "]",
        "\ufeff",
        '{"a": NaN}',
        "{}",
        '{"@timestamp": "2026-01-05T09:00:00Z", "rule": {"name": "R"}, "message": "a\tb"},',
        json.dumps({"pad": "x" * 2500}) + ",",  # too large: cut to fit
        json.dumps({"pad": "x}, {" * 4000}) + ",",  # 20 kB: cut to fit
        json.dumps({"n": list(range(5000))}) + ",",  # 24 kB that no cut brings within 2 kB
        json.dumps({"pad": "x}, {" * 25_000}) + ",",  # over 16 times the limit: skipped
        json.dumps({"n": list(range(20_000))}) + ",",
    ]
)


@settings(max_examples=120, deadline=None)
# Found by `make test`: a byte order mark, then no array (NDJSON): its first line's excerpt
# held the mark in a worker's chunk, not in the serial reader's.
@example(messages=[""], layout="pretty", flaw="]", flaw_at=1, cut=1, chunk_bytes=40)
# And two marks (NDJSON again): a worker read its chunk from the file's first byte, not past
# the first mark as the serial reader does.
@example(messages=[""], layout="pretty", flaw="\ufeff", flaw_at=0, cut=1, chunk_bytes=40)
@given(
    messages=st.lists(texts, min_size=1, max_size=25),
    layout=st.sampled_from(list(LAYOUTS)),
    flaw=flaws,
    flaw_at=st.integers(min_value=0, max_value=10_000),
    cut=st.integers(min_value=0, max_value=10_000),
    chunk_bytes=st.integers(min_value=40, max_value=3000),
)
def test_any_array_reads_in_chunks_as_it_reads_serially(
    tmp_path_factory: pytest.TempPathFactory,
    messages: list[str],
    layout: str,
    flaw: str,
    flaw_at: int,
    cut: int,
    chunk_bytes: int,
) -> None:
    text = LAYOUTS[layout]([ecs(i, i, "Rule 1", message=m) for i, m in enumerate(messages)])
    at = flaw_at % (len(text) + 1)
    text = text[:at] + flaw + text[at:]
    if cut % 5 == 0:  # a file cut short
        text = text[: cut % (len(text) + 1)]
    path = tmp_path_factory.mktemp("fuzz") / "alerts.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if parallel_read.layout_of(str(path), 2000) not in parallel_read.PARALLEL_LAYOUTS:
        return  # the flaw made it no array (e.g. NDJSON): not this reader's
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel_read.multiprocessing, "get_context", lambda _: _ThreadContext)
        patch.setattr(parallel_read, "CHUNK_BYTES", chunk_bytes)
        got = parallel(path, 2000)
    assert settled(got) == serial(path, 2000)
