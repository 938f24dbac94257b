"""Source parsers: one module per format, each turning files into normalized sessions or chunks.

Transcript formats are recognised by content, not by folder, so a transcript copied anywhere (into
``sessions/raw/``, gzipped by the archive) is still read by the right parser.
"""

from __future__ import annotations

from pathlib import Path

from ctxmill.sources import claude_code, codex, specstory
from ctxmill.sources.base import ParseResult

# Formats whose files only ever grow, so a re-ingest may read just the new bytes.
APPEND_ONLY = {"claude-code": True, "codex": True, "specstory": False}


def detect(path: Path) -> str | None:
    """The transcript format of a file, or None when it is none that ctxmill reads."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".md"):
        return "specstory" if specstory.is_specstory(path) else None
    if not name.endswith(".jsonl"):
        return None
    if codex.is_codex(path):
        return "codex"
    if claude_code.is_claude_code(path):
        return "claude-code"
    return None


def parse_transcript(fmt: str, path: Path, *, start: int = 0, first_turn: int = 1) -> ParseResult:
    if fmt == "claude-code":
        return claude_code.parse(path, start=start, first_turn=first_turn)
    if fmt == "codex":
        return codex.parse(path, start=start, first_turn=first_turn)
    if fmt == "specstory":
        return specstory.parse(path)
    raise ValueError(f"unknown transcript format {fmt!r}")
