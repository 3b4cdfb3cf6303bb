from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import orjson
import pytest

from agent.errors import BadInput
from agent.models import DeadLetter
from connectors.files import layout_of, ndjson_documents, read_documents
from tests.conftest import ecs


def split(items: list) -> tuple[list, list[DeadLetter]]:
    return [i for i in items if not isinstance(i, DeadLetter)], [
        i for i in items if isinstance(i, DeadLetter)
    ]


def test_ndjson_bad_lines_become_dead_letters_and_reading_goes_on(tmp_path: Path) -> None:
    f = tmp_path / "a.ndjson"
    f.write_text('{"a": 1}\n\n{"broken": \n{"a": 2}\n' + '{"big": "' + "x" * 300 + '"}\n')
    ok, dead = split(list(read_documents(f, max_doc_bytes=200)))
    assert [(n, d["a"]) for n, d, *_ in ok] == [(1, 1), (4, 2)]
    assert [(d.line, d.reason.split(":")[0]) for d in dead] == [
        (3, "invalid JSON"),
        (5, "document larger than 200 bytes"),
    ]


def test_json_array_is_streamed_across_chunks(tmp_path: Path) -> None:
    docs = [{"i": i, "pad": "y" * 500} for i in range(600)]  # ~300 KB: several 64 KiB chunks
    f = tmp_path / "a.json"
    f.write_text(json.dumps(docs, indent=1))
    ok, dead = split(list(read_documents(f)))
    assert not dead
    assert [d["i"] for _, d, *_ in ok] == list(range(600))
    assert ok[1][0] > ok[0][0]  # line numbers advance


def test_single_object_and_concatenated_pretty_objects(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"a": 1}, indent=2))
    assert [d.value for d in read_documents(one)] == [{"a": 1}]
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"a": 1}, indent=2) + "\n{ oops\n" + json.dumps({"a": 2}, indent=2))
    ok, dead = split(list(read_documents(many)))
    assert [d["a"] for _, d, *_ in ok] == [1, 2]
    assert len(dead) == 1 and dead[0].line == 4  # "{ oops" follows a 3-line object


@pytest.mark.parametrize("indent", [None, 2])
def test_a_search_response_saved_as_it_came_is_read_as_its_hits(
    tmp_path: Path, indent: int | None
) -> None:
    """`curl .../_search?pretty > alerts.json`: a small one was refused ("a search response,
    not an alert"); one over a document's size limit was cut at its first nested object, and
    its hits read from there on, beside two dead letters. Aggregations after the hits are no
    alerts."""
    hits = [{"_index": "a", "_id": f"h{i}", "_source": {"n": i, "tags": ["x"]}} for i in range(3)]
    response = {
        "took": 3,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": 3, "relation": "eq"}, "max_score": None, "hits": hits},
        "aggregations": {"hosts": {"buckets": [{"key": "web", "doc_count": 3}]}},
    }
    f = tmp_path / "search.json"
    text = json.dumps(response, indent=indent)
    f.write_text(text)
    docs = list(read_documents(f, max_doc_bytes=150))  # smaller than the response
    assert [d.value for d in docs] == hits
    lines = text.splitlines()  # each hit's line: where its object opens, before its "_index"
    opens = [n for n, line in enumerate(lines[:-1], 1) if '"_index"' in lines[n]]
    assert [d.line for d in docs] == (opens if indent else [1, 1, 1])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        list(read_documents(tmp_path / "nope.json"))


def test_content_after_a_closing_array_is_not_dropped(tmp_path: Path) -> None:
    f = tmp_path / "mixed.json"
    f.write_text('[{"a": 1}]\n{"a": 2}\n"stray"\n')
    items = list(read_documents(f))
    assert [d for _, d, *_ in (i for i in items if not isinstance(i, DeadLetter))] == [
        {"a": 1},
        {"a": 2},
        "stray",
    ]


def test_a_truncated_array_is_reported_not_dropped_quietly(tmp_path: Path) -> None:
    f = tmp_path / "cut.json"
    f.write_text('[{"i": 1},\n {"i": 2},\n')  # an export cut short: no closing bracket
    ok, dead = split(list(read_documents(f)))
    assert [d["i"] for _, d, *_ in ok] == [1, 2]
    assert len(dead) == 1 and "before its JSON array is closed" in dead[0].reason
    f.write_text("[")
    ok, dead = split(list(read_documents(f)))
    assert ok == [] and len(dead) == 1


def test_lines_skipped_after_a_broken_object_are_named_in_its_dead_letter(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text('{"bad json\n[1, 2]\n{"x": 1,\n "y": 2}\n')  # not NDJSON: line 1 is no document
    ok, dead = split(list(read_documents(f)))
    assert [d for _, d, *_ in ok] == [{"x": 1, "y": 2}]
    assert len(dead) == 1 and dead[0].line == 1 and "lines 1-2 skipped" in dead[0].reason


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("ndjson", b'{"a": 1}\n{"a": 2}\n'),
        ("array", b'[{"a": 1},\n {"a": 2}]'),
        ("concatenated", b'{\n "a": 1\n}\n{\n "a": 2\n}\n'),
        ("one-line array", b'[{"a": 1}, {"a": 2}]'),
    ],
)
def test_a_byte_order_mark_is_ignored_at_the_start_of_a_file(
    tmp_path: Path, name: str, body: bytes
) -> None:
    """Windows tools write one (PowerShell 5's `Out-File -Encoding utf8`); RFC 8259 lets a
    reader ignore it. The file's first document, or the whole array, was a dead letter."""
    f = tmp_path / f"{name}.json"
    f.write_bytes(BOM + body)
    ok, dead = split(list(read_documents(f)))
    assert not dead and [d["a"] for _, d, *_ in ok] == [1, 2]


def test_a_byte_order_mark_starting_a_line_of_concatenated_exports_is_ignored() -> None:
    """`cat a.ndjson b.ndjson` of two such exports: one at a line's start, mid-file; it is
    also how a reader worker's first chunk starts. The alert keeps the line without it, and
    where that starts (a worker's alerts leave their documents in the file)."""
    data = BOM + b'{"a": 1}\n' + BOM + b'{"a": 2}\n{"a": \n'
    ok, dead = split(list(ndjson_documents(data, "x.ndjson", 1 << 20)))
    assert [(n, d["a"], raw) for n, d, raw, _ in ok] == [(1, 1, b'{"a": 1}'), (2, 2, b'{"a": 2}')]
    assert [data[at : at + len(raw)] for _, _, raw, at in ok] == [b'{"a": 1}', b'{"a": 2}']
    assert [(d.line, d.reason.split(":")[0]) for d in dead] == [(3, "invalid JSON")]


def test_a_line_holding_only_a_byte_order_mark_is_blank() -> None:
    """As a file holding only one is empty: a concatenated export that was empty leaves a line
    of just its mark, which is no document (it was an "input data is empty" dead letter)."""
    data = b'{"a": 1}\n' + BOM + b"\n" + BOM + b" \n{}\n"
    ok, dead = split(list(ndjson_documents(data, "x.ndjson", 1 << 20)))
    assert [n for n, *_ in ok] == [1, 4] and dead == []


def test_a_character_cut_between_two_chunks_stays_whole(tmp_path: Path) -> None:
    """Arrays and concatenated exports are decoded 64 KiB at a time: a two-byte character
    ("é") falling across a chunk's end came out as two replacement characters, and the
    alert's text was changed."""
    docs = [{"i": i, "message": "é" * 1000} for i in range(300)]  # ~600 KB: nine chunks
    for name, text in (
        ("array.json", json.dumps(docs, ensure_ascii=False)),
        ("concatenated.json", "\n".join(json.dumps(d, ensure_ascii=False, indent=1) for d in docs)),
    ):
        f = tmp_path / name
        f.write_text(text, encoding="utf-8")
        ok, dead = split(list(read_documents(f)))
        assert not dead
        assert [d for _, d, *_ in ok] == docs, name


def test_a_first_line_longer_than_the_layout_probe_is_still_ndjson(tmp_path: Path) -> None:
    """The layout is judged on the file's first 64 KiB. A first NDJSON line longer than that
    was taken for the start of a pretty-printed object: the file was read as concatenated
    objects (no parallel reading), and an oversized first line became three "invalid JSON"
    dead letters instead of one that says why."""
    line = json.dumps({"a": 0, "pad": "x" * 100_000})  # valid, and longer than 64 KiB
    rest = '{"a": 1}\n{"a": 2}\n'
    f = tmp_path / "long.ndjson"
    f.write_text(line + "\n" + rest)
    assert layout_of(f) == "ndjson"
    ok, dead = split(list(read_documents(f)))
    assert [(n, d["a"]) for n, d, *_ in ok] == [(1, 0), (2, 1), (3, 2)] and not dead
    ok, dead = split(list(read_documents(f, max_doc_bytes=1000)))
    assert [(n, d["a"]) for n, d, *_ in ok] == [(2, 1), (3, 2)]
    assert [(d.line, d.reason) for d in dead] == [(1, "document larger than 1000 bytes")]


def test_an_oversized_pretty_printed_object_is_one_dead_letter(tmp_path: Path) -> None:
    """An object far larger than the limit (and than a chunk) in concatenated exports: one
    dead letter saying it is too large, the lines it spans, and the next objects read. It
    was three "invalid JSON" dead letters for one document."""
    big = json.dumps({"a": 0, "pad": "x" * 200_000}, indent=1)  # 4 lines
    f = tmp_path / "big.json"
    f.write_text(big + "\n" + json.dumps({"a": 1}, indent=1) + "\n" + json.dumps({"a": 2}))
    ok, dead = split(list(read_documents(f, max_doc_bytes=1000)))
    assert [(n, d["a"]) for n, d, *_ in ok] == [(5, 1), (8, 2)]
    assert [(d.line, d.reason) for d in dead] == [
        (1, "document larger than 1000 bytes (lines 1-4 skipped, up to the next object)")
    ]


@pytest.mark.parametrize("layout", ["concatenated", "array"])
def test_the_objects_nested_in_an_oversized_one_are_not_read_as_documents(
    tmp_path: Path, layout: str
) -> None:
    """Skipping an oversized pretty-printed object resumed at the next line opening an
    object, however indented: its nested items, each on its own line, were read as 4,000
    documents (alerts, when shaped like them). Reading resumes at a line opening an object
    as indented as the skipped one."""
    nested = [{"event": {"id": f"n{i}"}, "pad": "x" * 40} for i in range(4000)]
    docs = [{"a": 0}, {"a": 1, "related": nested}, {"a": 2}]
    f = tmp_path / "big.json"
    if layout == "array":  # elements two blanks in, as json.dumps(indent=2) writes them
        f.write_text(json.dumps(docs, indent=2))
    else:  # objects at the margin, as jq writes them
        f.write_text("\n".join(json.dumps(d, indent=2) for d in docs) + "\n")
    ok, dead = split(list(read_documents(f, max_doc_bytes=100_000)))
    assert [d.get("a") for _, d, *_ in ok] == [0, 2]
    assert len(dead) == 1 and dead[0].reason.startswith("document larger than 100000 bytes")


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_an_oversized_element_of_a_one_line_array_is_skipped_to_its_end(
    tmp_path: Path, shift: int
) -> None:
    """`json.dumps` of a list writes one line: skipping an oversized element resumed at the
    next line opening an object, and there is none, so the 1,998 alerts after it were one dead
    letter ending in "truncated?". Its strings hold brackets, escaped quotes and an escape
    cut at a chunk's end (`shift` moves them across the boundary). Over 16 times the limit: not
    read whole to be cut to fit."""
    pad = "x" * shift + '\\"}]{[,' * 40_000
    docs = [{"a": 0}, {"a": 1, "pad": pad, "nested": [{"b": "]"}] * 100}] + [
        {"a": n} for n in range(2, 2000)
    ]
    f = tmp_path / "one-line.json"
    f.write_text(json.dumps(docs))
    ok, dead = split(list(read_documents(f, max_doc_bytes=10_000)))
    assert [d["a"] for _, d, *_ in ok] == [0, *range(2, 2000)]
    assert [(d.line, d.reason) for d in dead] == [(1, "document larger than 10000 bytes")]
    f.write_text(json.dumps(docs)[:200_000])  # cut short inside it
    ok, dead = split(list(read_documents(f, max_doc_bytes=10_000)))
    assert [d["a"] for _, d, *_ in ok] == [0]
    assert [d.reason for d in dead] == [
        "document larger than 10000 bytes; the file ends inside it",
        "file ends before its JSON array is closed (truncated?)",
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("alerts.ndjson.gz", '{"a": 1}\n{"a": 2}\n'),
        ("export.json.gz", '[{"a": 1},\n {"a": 2}]'),
        ("concatenated.gz", '{\n "a": 1\n}\n{\n "a": 2\n}\n'),
        ("no-suffix", '{"a": 1}\n{"a": 2}\n'),  # known by its first bytes, not its name
    ],
)
def test_a_gzip_file_is_read_as_its_content(tmp_path: Path, name: str, text: str) -> None:
    """Wazuh rotates `alerts.json` into daily `.json.gz` files: each line of one was a dead
    letter of binary noise."""
    f = tmp_path / name
    f.write_bytes(gzip.compress(text.encode()))
    ok, dead = split(list(read_documents(f)))
    assert not dead and [d["a"] for _, d, *_ in ok] == [1, 2]
    assert layout_of(f) != "ndjson"  # a parallel reader cannot cut it at byte offsets


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
@pytest.mark.parametrize(
    ("text", "broken_line"),
    [
        ('{"a": 1, "who": "Jérôme"}\r\n{"broken": \r\n{"a": 2}\r\n', 2),  # Windows line ends
        ('[\r\n  {"a": 1, "who": "Jérôme"},\r\n  {"broken": },\r\n  {"a": 2}\r\n]\r\n', 3),
    ],
)
def test_a_utf16_file_is_read_as_its_text(
    tmp_path: Path, encoding: str, text: str, broken_line: int
) -> None:
    """Windows PowerShell 5 writes UTF-16 (`ConvertTo-Json > alerts.json`): each of its
    lines was a dead letter of NUL bytes. It is read as text, its lines numbered as in the
    file; and a parallel reader, which cuts files at byte offsets, is not given it."""
    f = tmp_path / "alerts.json"
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # Python's "utf-16" writes its own
    f.write_bytes((bom + text).encode(encoding))
    assert f.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    ok, dead = split(list(read_documents(f)))
    assert [d["a"] for _, d, *_ in ok] == [1, 2] and ok[0][1]["who"] == "Jérôme"
    assert len(dead) == 1 and dead[0].line == broken_line and "invalid JSON" in dead[0].reason
    assert layout_of(f) != "ndjson"


def test_a_gzip_file_cut_short_ends_in_one_dead_letter(tmp_path: Path) -> None:
    """A copy interrupted mid-file: the documents before the cut, then one dead letter saying
    from which line nothing was read (it was a traceback)."""
    lines = "".join(json.dumps({"i": i, "pad": os.urandom(32).hex()}) + "\n" for i in range(3000))
    whole = gzip.compress(lines.encode())
    f = tmp_path / "cut.ndjson.gz"
    f.write_bytes(whole[: len(whole) // 2])
    ok, dead = split(list(read_documents(f)))
    assert 0 < len(ok) < 3000 and [d["i"] for _, d, *_ in ok] == list(range(len(ok)))
    assert len(dead) == 1 and dead[0].reason.startswith("compressed file unreadable from here")
    assert dead[0].line == len(ok) + 1


def test_an_array_s_elements_count_the_lines_before_it(tmp_path: Path) -> None:
    """Blank lines or a search response's fields before the array were not counted: every
    dead letter of the file pointed that many lines too early."""
    f = tmp_path / "a.json"
    f.write_text('\n\n[\n{"a": 1},\n{"broken"\n]\n')
    items = list(read_documents(f))
    assert [(i.line, type(i).__name__) for i in items][:2] == [(4, "Document"), (5, "DeadLetter")]


def test_a_line_with_bytes_that_are_not_utf8_is_read_with_them_replaced(tmp_path: Path) -> None:
    """Wazuh's alerts.json carries a logged line's bytes that are not UTF-8 (a Windows program
    name, wazuh#2514), and one such byte in a user agent kept an alert out of Wazuh's indexer
    (wazuh#38561: "a working detection-evasion primitive"). Here it made the alert a dead
    letter, out of every incident. Each such byte is read as U+FFFD, as Wazuh now writes it;
    raw control characters in a string (a tab) are kept."""
    good = ecs(1, 0, "Rule 1")
    evading = ecs(2, 1, "Web attack", user_agent={"original": "curl/8.0 \udcff"})
    tabbed = ecs(3, 2, "Rule 3", message="Account Name:\t\tjdoe")
    lines = [
        json.dumps(good).encode(),
        json.dumps(evading, ensure_ascii=False).encode("utf-8", "surrogateescape"),
        json.dumps(tabbed).replace("\\t", "\t").encode(),
        b'{"broken": ',  # still no JSON: a dead letter, as before
        b'{"a": NaN, "b": "\xff"}',  # nor is NaN, however its bytes are read
    ]
    assert b"\xff" in lines[1] and b"\t" in lines[2]
    f = tmp_path / "alerts.json"
    f.write_bytes(b"\n".join(lines) + b"\n")
    ok, dead = split(list(read_documents(f)))
    assert [(n, d["event"]["id"]) for n, d, *_ in ok] == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert ok[1][1]["user_agent"]["original"] == "curl/8.0 \ufffd"
    assert ok[2][1]["message"] == "Account Name:\t\tjdoe"
    assert [d.line for d in dead] == [4, 5]
    for _, value, raw, *_ in ok:
        assert orjson.loads(raw) == value  # the bytes kept are JSON, and this document


def test_a_document_over_the_limit_is_read_with_its_longest_strings_cut(tmp_path: Path) -> None:
    """A command line of megabytes is the attacker's to write: over the limit, the whole alert
    was a dead letter, out of every incident. Up to 16 times the limit, its longest strings are
    cut until it fits, and it says so; beyond that, or when cutting strings is not enough (many
    small fields), a dead letter still."""
    long = "powershell -enc " + "QUJD" * 40_000  # 160 kB
    lines = [
        ecs(1, 0, "Rule 1"),
        ecs(2, 1, "Encoded PowerShell", process={"command_line": long, "name": "powershell"}),
        ecs(3, 2, "Rule 3", message="y" * 2_000_000),  # over 16 times the limit
        ecs(4, 3, "Rule 4", many={f"k{i}": i for i in range(20_000)}),  # 250 kB of small fields
    ]
    f = tmp_path / "alerts.ndjson"
    f.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    ok, dead = split(list(read_documents(f, max_doc_bytes=100_000)))
    assert [(n, d["event"]["id"]) for n, d, *_ in ok] == [(1, "a1"), (2, "a2")]
    _, value, raw, *_ = ok[1]
    cut = value["process"]["command_line"]
    assert cut == long[:65_536] + f"... [{len(long) - 65_536:,} characters cut by Vigie]"
    assert (
        value["process"]["name"] == "powershell" and value["rule"]["name"] == "Encoded PowerShell"
    )
    assert value["vigie.shortened"] == {"bytes": len(json.dumps(lines[1])), "kept": 65_536}
    assert orjson.loads(raw) == value and len(raw) <= 100_000
    assert [(d.line, d.reason) for d in dead] == [
        (3, "document larger than 100000 bytes"),
        (4, "document larger than 100000 bytes"),
    ]


@pytest.mark.parametrize("indent", [None, 2])
def test_an_array_element_over_the_limit_is_read_with_its_longest_strings_cut(
    tmp_path: Path, indent: int | None
) -> None:
    """As an NDJSON line is: on one line (`json.dumps` of a list) or as `jq .` prints it."""
    long = "powershell -enc " + "QUJD" * 40_000  # 160 kB
    docs = [ecs(i, i, "Rule 1") for i in range(3)]
    docs[1]["process"] = {"command_line": long}
    f = tmp_path / "alerts.json"
    f.write_text(json.dumps(docs, indent=indent))
    ok, dead = split(list(read_documents(f, max_doc_bytes=100_000)))
    assert not dead and [d["event"]["id"] for _, d, *_ in ok] == ["a0", "a1", "a2"]
    _, value, raw, *_ = ok[1]
    assert value["process"]["command_line"].startswith(long[:65_536] + "... [")
    assert value["vigie.shortened"]["kept"] == 65_536 and orjson.loads(raw) == value
