from __future__ import annotations

import gzip
from pathlib import Path

from ctxmill.sources.base import (
    file_stem,
    iter_lines,
    iter_records,
    relative_to,
    strip_injected,
    truncate,
)


def test_iter_lines_offsets_and_partial_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"one\n\ntwo\r\nthree-no-newline")
    lines = list(iter_lines(path))
    assert lines == [(0, 4, b"one"), (4, 5, b""), (5, 10, b"two\r")]
    assert list(iter_lines(path, start=5)) == [(5, 10, b"two\r")]


def test_iter_lines_long_line_spanning_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    big = b"x" * (3 * (1 << 20) + 17)
    path.write_bytes(b"a\n" + big + b"\nb\n" + b"tail")
    lines = list(iter_lines(path))
    assert [(s, e, len(raw)) for s, e, raw in lines] == [
        (0, 2, 1),
        (2, 3 + len(big), len(big)),
        (3 + len(big), 5 + len(big), 1),
    ]
    assert lines[1][2] == big


def test_iter_lines_gzip_offsets_are_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"a":1}\n{"b":2}\n')
    assert list(iter_lines(path)) == [(0, 8, b'{"a":1}'), (8, 16, b'{"b":2}')]
    assert list(iter_lines(path, start=8)) == [(8, 16, b'{"b":2}')]
    assert file_stem(path) == "a"


def test_iter_records_reports_each_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"ok":1}\n'
        b"{not json\n"
        b'{"text":"caf\xe9"}\n'  # Latin-1 byte: salvaged with a replacement character
        b"\x00\x01\x02\xff\n"
        b"[1,2]\n"
        b'"a string"\n'
        b'{"s":"\\ud800 lone"}\n'
        b'{"ok":2}\n'
    )
    problems: list[str] = []
    records = [rec for _, _, rec in iter_records(path, 0, problems)]
    good = [r for r in records if r is not None]
    assert good[0] == {"ok": 1}
    assert good[1] == {"text": "caf\ufffd"}
    assert good[2]["s"].endswith(" lone") and "\ud800" not in good[2]["s"]
    assert good[-1] == {"ok": 2}
    assert len(records) == 8
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{path}:2",
        f"{path}:3",
        f"{path}:4",
        f"{path}:5",
        f"{path}:6",
        f"{path}:7",
    ]
    assert "malformed JSON line skipped" in problems[0]
    assert "not a JSON object" in problems[3]


def test_iter_records_damaged_gzip_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"this is not gzip data at all\n")
    problems: list[str] = []
    assert list(iter_records(path, 0, problems)) == []
    assert len(problems) == 1 and "unreadable" in problems[0]


def test_truncate_marks_what_was_cut() -> None:
    assert truncate("short") == "short"
    text = "a" * 2000 + "b" * 500 + "c" * 1000
    out = truncate(text)
    assert out.startswith("a" * 2000) and out.endswith("c" * 1000)
    assert "[… 500 chars elided …]" in out and "b" not in out
    head_only = truncate("x" * 1500, head=1000, tail=0)
    assert head_only == "x" * 1000 + "\n[… 500 chars elided …]"


def test_strip_injected_and_relative_paths() -> None:
    text = "before <system-reminder>hidden\nstuff</system-reminder> after"
    assert strip_injected(text) == "before  after"
    assert strip_injected("x <system-reminder>never closed") == "x"
    assert strip_injected("plain") == "plain"
    assert relative_to("/home/a/repo/src/x.py", "/home/a/repo") == "src/x.py"
    assert relative_to("/home/a/repo2/x.py", "/home/a/repo") == "/home/a/repo2/x.py"
    assert relative_to("/etc/hosts", None) == "/etc/hosts"
