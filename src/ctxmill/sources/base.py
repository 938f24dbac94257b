"""Pieces every transcript parser shares: a line reader that survives live and damaged files, the
result a parser returns, and the text helpers that keep tool traffic from flooding the index.

Transcripts are written by other programs, often while we read them, so the reader never trusts a
line: a half-written last line is left for the next pass, and a damaged line costs one problem
string, never the file.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ctxmill.model import Session, ToolCall, Turn


@dataclass
class ParseResult:
    """What one parse of one file produced, and where the next parse of the same file starts.

    ``offset`` is just past the last complete line consumed.  ``resume_offset``/``resume_turn`` are
    where an incremental re-parse of an append-only file must restart (the start of the main
    session's last turn, which may still grow) so that turn numbers match a full parse.
    """

    sessions: list[Session] = field(default_factory=list)
    offset: int = 0
    resume_offset: int = 0
    resume_turn: int = 1
    problems: list[str] = field(default_factory=list)


_CHUNK = 1 << 20


def _open(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return path.open("rb")


def iter_lines(path: Path, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(start_offset, end_offset, line)`` for each complete line, newline stripped.

    ``end_offset`` is just past the newline.  A last line without a newline is not yielded: the
    writer may still be in the middle of it.  Lines may be any length.  For ``.gz`` files the
    offsets count bytes of the decompressed stream.
    """
    with _open(Path(path)) as f:
        if start:
            f.seek(start)
        pos = start
        # Pieces of a line longer than one chunk are joined once, when its newline arrives, so a
        # multi-megabyte line costs linear time.
        parts: list[bytes] = []
        while chunk := f.read(_CHUNK):
            nl = chunk.find(b"\n")
            if nl < 0:
                parts.append(chunk)
                continue
            if parts:
                parts.append(chunk[:nl])
                line = b"".join(parts)
                parts = []
            else:
                line = chunk[:nl]
            end = pos + len(line) + 1
            yield pos, end, line
            pos = end
            begin = nl + 1
            while (nl := chunk.find(b"\n", begin)) >= 0:
                end = pos + nl - begin + 1
                yield pos, end, chunk[begin:nl]
                pos = end
                begin = nl + 1
            if begin < len(chunk):
                parts.append(chunk[begin:])


def _where(path: Path, lineno: int, start: int, line_start: int) -> str:
    # Line numbers are only known when reading from the top; a resumed read names the byte offset.
    return f"{path}:{lineno}" if start == 0 else f"{path}@{line_start}"


def load_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Decode one JSON line: ``(record, None)``, ``(record, warning)`` or ``(None, problem)``."""
    warning = None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses bad UTF-8 and lone surrogate escapes; a record with one damaged byte in a
        # tool output is still worth keeping, so retry leniently and clean what comes back.
        try:
            text = raw.decode("utf-8", errors="replace")
            obj = json.loads(text)
            cleaned = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
            obj = orjson.loads(cleaned.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            return None, "malformed JSON line skipped"
        warning = "decoded leniently (bad UTF-8, lone surrogate or huge number)"
    if not isinstance(obj, dict):
        return None, "not a JSON object, skipped"
    return obj, warning


def iter_records(
    path: Path, start: int, problems: list[str]
) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """Yield ``(start_offset, end_offset, record)`` for each complete line of a JSONL file.

    A damaged line is reported in ``problems`` (one line each) and yields ``None``, so that the
    caller still counts its bytes as consumed.
    """
    lineno = 0
    line_start = start
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    try:
        for line_start, line_end, raw in iter_lines(path, start):
            lineno += 1
            # The common case inline (one call per line of a large file); anything unusual goes
            # through load_record.
            try:
                obj = loads(raw)
            except decode_error:
                obj = None
            if type(obj) is dict:
                yield line_start, line_end, obj
                continue
            if not raw.strip():
                yield line_start, line_end, None
                continue
            rec, problem = load_record(raw)
            if problem:
                problems.append(f"{_where(path, lineno, start, line_start)}: {problem}")
            yield line_start, line_end, rec
    except (OSError, EOFError) as exc:
        # gzip.BadGzipFile is an OSError; a damaged archive ends the file, not the run.
        problems.append(f"{_where(path, lineno + 1, start, line_start)}: unreadable: {exc}")


def read_first_records(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The first JSON-object lines of a file, for sniffing its format; ``[]`` when unreadable."""
    out: list[dict[str, Any]] = []
    try:
        for _, _, raw in iter_lines(path):
            if raw.strip():
                rec, _ = load_record(raw)
                if rec is not None:
                    out.append(rec)
            if len(out) >= limit:
                break
    except (OSError, EOFError):
        return []
    return out


def truncate(text: str, head: int = 2000, tail: int = 1000) -> str:
    """Keep the first ``head`` and last ``tail`` characters with a marker saying what was cut."""
    n = len(text) - head - tail
    if n <= 0:
        return text
    marker = f"[… {n} chars elided …]"
    if tail <= 0:
        return f"{text[:head]}\n{marker}"
    return f"{text[:head]}\n{marker}\n{text[-tail:]}"


_REMINDER_RE = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)


def strip_injected(text: str) -> str:
    """Remove ``<system-reminder>`` spans the harness injects into user text and tool output."""
    if "<system-reminder>" not in text:
        return text
    return _REMINDER_RE.sub("", text).strip()


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace to single spaces and cut to ``limit`` characters (for summaries)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_text(inp: dict[str, Any], *keys: str) -> str:
    """The first of ``keys`` whose value in a tool's input is a non-empty string, else ""."""
    for key in keys:
        value = inp.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def compact_json(value: object) -> str:
    """One line of JSON for a tool input the parser has no better summary of."""
    try:
        raw = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        raw = str(value)
    return one_line(raw)


def relative_to(path: str, cwd: str | None) -> str:
    """``path`` relative to ``cwd`` when it lies under it, else unchanged (string-wise, no I/O)."""
    if cwd and path.startswith(cwd):
        rest = path[len(cwd) :]
        if rest[:1] in ("/", "\\") and len(rest) > 1:
            return rest[1:]
    return path


def basename(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1] if path else path


class TurnBuilder:
    """Numbers one session's turns and remembers where its last turn began (for resuming)."""

    def __init__(self, session: Session, first_turn: int = 1) -> None:
        self.session = session
        self.next_n = first_turn
        self.first_turn = first_turn
        # Identifies the last turn while later records may still extend it (a message id); None
        # once something else has happened.
        self.open_key: str | None = None
        self.last_start = -1

    def add(
        self,
        offset: int,
        role: str,
        text: str,
        timestamp: str | None,
        calls: list[ToolCall] | None = None,
        key: str | None = None,
    ) -> None:
        self.session.turns.append(Turn(self.next_n, role, text, timestamp, calls or []))
        self.last_start = offset
        self.next_n += 1
        self.open_key = key

    def add_or_extend(
        self,
        key: str | None,
        offset: int,
        role: str,
        text: str,
        timestamp: str | None,
        calls: list[ToolCall] | None = None,
    ) -> None:
        """Extend the last turn when it is still open under ``key``, else start a new one."""
        if key is not None and key == self.open_key and self.session.turns:
            turn = self.session.turns[-1]
            turn.text = f"{turn.text}\n{text}" if turn.text and text else turn.text or text
            turn.tool_calls.extend(calls or [])
        else:
            self.add(offset, role, text, timestamp, calls, key)

    def resume_point(self, end_offset: int) -> tuple[int, int]:
        """``(offset, turn)`` to restart from: the last turn's start, or the end when none."""
        if self.last_start < 0:
            return end_offset, self.first_turn
        return self.last_start, self.next_n - 1


def file_stem(path: Path) -> str:
    """The name without its format suffix, looking through ``.gz``: ``abc.jsonl.gz`` → ``abc``."""
    name = path.name.removesuffix(".gz")
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def read_bytes(path: Path) -> bytes:
    """A whole file's bytes, decompressed when it is a ``.gz``."""
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "rb") as f:
            return f.read()
    return path.read_bytes()
