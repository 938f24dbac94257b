"""Checks shared by the transcript parser tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ctxmill.model import Turn
from ctxmill.sources.base import ParseResult


def check_tail_property(
    source: Path, tmp_path: Path, parse: Callable[..., ParseResult], cuts: list[int]
) -> int:
    """Split ``source`` at each byte position, parse the prefix, append the rest and resume.

    Returns how many splits resumed somewhere other than the top (so the test proves something).
    """
    data = source.read_bytes()
    full = parse(source).sessions[0].turns
    resumed_mid_file = 0
    for i, cut in enumerate(cuts):
        copy = tmp_path / f"split{i}" / source.name
        copy.parent.mkdir()
        copy.write_bytes(data[:cut])
        first = parse(copy)
        assert first.offset <= cut
        assert data[: first.offset].endswith(b"\n") or first.offset == 0
        settled = [t for t in first.sessions[0].turns if t.n < first.resume_turn]
        assert settled == [t for t in full if t.n < first.resume_turn]
        with copy.open("ab") as f:
            f.write(data[cut:])
        again = parse(copy, start=first.resume_offset, first_turn=first.resume_turn)
        expected: list[Turn] = [t for t in full if t.n >= first.resume_turn]
        assert again.sessions[0].turns == expected, f"split at byte {cut}"
        resumed_mid_file += first.resume_offset > 0
    return resumed_mid_file
