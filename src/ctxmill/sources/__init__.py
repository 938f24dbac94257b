"""Source parsers: one module per format, each turning files into normalized sessions or chunks.

Transcript formats are recognised by content, not by folder, so a transcript copied anywhere (into
``sessions/raw/``, gzipped by the archive) is still read by the right parser.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctxmill.sources import aider, claude_code, codex, gemini, opencode, specstory
from ctxmill.sources.base import ParseResult

# Formats whose files only ever grow, so a re-ingest may read just the new bytes.  A Gemini chat
# grows too, but a later line can update or rewind an earlier message, so it is read whole.
APPEND_ONLY = {
    "claude-code": True,
    "codex": True,
    "specstory": False,
    "gemini": False,
    "aider": True,
    "opencode": False,
}
# Formats kept in a database whose rows change in place: a parse's ``offset`` is the newest change
# it saw (epoch ms), and passing it back as ``start`` reads only the sessions changed since.
DATABASE = frozenset({"opencode"})
# Formats never copied to the raw archive: an aider history lives in the user's own repository
# and is never cleaned up, and a database is not text that redaction could make safe.
NO_ARCHIVE = frozenset({"aider", "opencode"})


def detect(path: Path) -> str | None:
    """The transcript format of a file, or None when it is none that ctxmill reads."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".md"):
        if aider.is_aider(path):
            return "aider"
        return "specstory" if specstory.is_specstory(path) else None
    if name.endswith(".json"):
        return "gemini" if gemini.is_gemini(path) else None
    if name.endswith(".db") and name == path.name:
        return "opencode" if opencode.is_opencode(path) else None
    if not name.endswith(".jsonl"):
        return None
    if codex.is_codex(path):
        return "codex"
    if gemini.is_gemini(path):
        return "gemini"
    if claude_code.is_claude_code(path):
        return "claude-code"
    return None


def agent_files(agent: str, root: Path) -> list[Path] | None:
    """The transcripts in an agent's folder when its layout is known; None: every ``*.jsonl``
    and ``*.md`` under the folder is one."""
    if agent == "gemini":
        # tmp/<project>/chats/ holds the chats (subagents one level down); the rest of tmp/ is
        # logs, checkpoints and shell history.
        found = [
            p
            for pattern in ("*.jsonl", "session-*.json")
            for p in root.rglob(pattern)
            if "chats" in p.parts[-3:-1] and p.is_file()
        ]
        return sorted(set(found))
    if agent == "aider":
        history = root / aider.HISTORY_NAME
        return [history] if history.is_file() else []
    if agent == "opencode":
        # opencode.db, or opencode-<channel>.db for a preview channel; never the legacy storage/.
        return sorted(p for p in root.glob("opencode*.db") if p.is_file())
    return None


def version(path: Path, st: os.stat_result) -> tuple[int, float]:
    """Size and mtime that change whenever the content may have.  A database in WAL mode takes
    new rows into ``<name>-wal`` and leaves the main file alone until a checkpoint, so that file
    counts too."""
    if not path.name.endswith(".db"):
        return st.st_size, st.st_mtime
    try:
        wal = Path(f"{path}-wal").stat()
    except OSError:
        return st.st_size, st.st_mtime
    return st.st_size + wal.st_size, max(st.st_mtime, wal.st_mtime)


def parse_transcript(fmt: str, path: Path, *, start: int = 0, first_turn: int = 1) -> ParseResult:
    if fmt == "claude-code":
        return claude_code.parse(path, start=start, first_turn=first_turn)
    if fmt == "codex":
        return codex.parse(path, start=start, first_turn=first_turn)
    if fmt == "specstory":
        return specstory.parse(path)
    if fmt == "gemini":
        return gemini.parse(path)
    if fmt == "aider":
        return aider.parse(path, start=start)
    if fmt == "opencode":
        return opencode.parse(path, start=start)
    raise ValueError(f"unknown transcript format {fmt!r}")
