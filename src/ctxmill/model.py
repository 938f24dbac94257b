"""The normalized data every source produces and every stage consumes.

A source parser turns a file into :class:`Session` objects made of :class:`Turn`s (transcripts) or
directly into :class:`Chunk`s (topics, summaries, code).  The store indexes chunks; the pipeline
hands :class:`Excerpt`s around.  A :class:`Tag` is the citation a chunk carries, printed exactly as
SPEC.md fixes it, so that the same tag means the same span on every machine.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


def parse_moment(text: str) -> datetime:
    """An ISO-8601 date or time (``2026-04-01``, ``…T09:00:00Z``) as an aware datetime; a moment
    without a zone is taken as UTC.  Raises ValueError for anything else."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # fromisoformat on Python 3.11 reads "Z", but not "z"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Layer(StrEnum):
    """The four memory layers, in order of authority (topics win every conflict)."""

    TOPIC = "topic"
    COMPRESSED = "compressed"
    RAW = "raw"
    CODE = "code"

    @property
    def authority(self) -> int:
        """Lower is more authoritative; code is evidence of what exists, not of what was decided."""
        return {Layer.TOPIC: 0, Layer.RAW: 1, Layer.COMPRESSED: 2, Layer.CODE: 3}[self]


_TAG_RE = re.compile(
    r"^\[?(?P<kind>topic|session|raw|code):(?P<body>[^\]\s]+)\]?$",
)


@dataclass(frozen=True)
class Tag:
    """A citation: ``[topic:PATH#Lx-Ly]``, ``[session:ID]``, ``[raw:ID#N]`` or ``[code:PATH:LINE]``."""

    kind: str
    ref: str
    start: int | None = None
    end: int | None = None

    @classmethod
    def topic(cls, path: str, start: int, end: int) -> Tag:
        return cls("topic", path, start, end)

    @classmethod
    def session(cls, session_id: str) -> Tag:
        return cls("session", session_id)

    @classmethod
    def raw(cls, session_id: str, turn: int) -> Tag:
        return cls("raw", session_id, turn)

    @classmethod
    def code(cls, path: str, line: int, end: int | None = None) -> Tag:
        return cls("code", path, line, end)

    def __str__(self) -> str:
        if self.kind == "topic":
            return f"[topic:{self.ref}#L{self.start}-L{self.end}]"
        if self.kind == "raw":
            return f"[raw:{self.ref}#{self.start}]"
        if self.kind == "code":
            return f"[code:{self.ref}:{self.start}]"
        return f"[session:{self.ref}]"

    @classmethod
    def parse(cls, text: str) -> Tag:
        """Parse a printed tag (brackets optional); raises ValueError with a readable message."""
        m = _TAG_RE.match(text.strip())
        if not m:
            raise ValueError(
                f"not a citation tag: {text!r} (expected [topic:PATH#Lx-Ly], [session:ID], "
                "[raw:ID#N] or [code:PATH:LINE])"
            )
        kind, body = m["kind"], m["body"]
        if kind == "topic":
            path, _, lines = body.partition("#")
            lm = re.fullmatch(r"L(\d+)(?:-L?(\d+))?", lines) if lines else None
            if lines and not lm:
                raise ValueError(f"bad line range in {text!r}: expected #Lx-Ly")
            if lm:
                start = int(lm[1])
                return cls("topic", path, start, int(lm[2]) if lm[2] else start)
            return cls("topic", path)
        if kind == "raw":
            sid, _, turn = body.rpartition("#")
            if not sid or not turn.isdigit():
                raise ValueError(f"bad raw tag {text!r}: expected [raw:ID#TURN]")
            return cls("raw", sid, int(turn))
        if kind == "code":
            path, _, line = body.rpartition(":")
            if not path or not line.isdigit():
                raise ValueError(f"bad code tag {text!r}: expected [code:PATH:LINE]")
            return cls("code", path, int(line))
        return cls("session", body)

    def matches(self, prefix: str) -> bool:
        """Prefix match used by the golden benchmark: ``raw:5f1c`` matches ``[raw:5f1c…#12]``."""
        return str(self).strip("[]").startswith(prefix.strip("[]"))


TAG_IN_TEXT_RE = re.compile(r"\[(?:topic|session|raw|code):[^\]\s]+\]")


@dataclass
class ToolCall:
    """A tool call as the agent made it, reduced to what retrieval and summaries need."""

    name: str
    summary: str  # one line: the command, the path, the pattern
    files: list[str] = field(default_factory=list)
    command: str | None = None
    is_error: bool = False


@dataclass
class Turn:
    """One normalized turn; ``n`` counts from 1 in file order within its session."""

    n: int
    role: str  # user | assistant | tool | summary | system
    text: str
    timestamp: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [f for c in self.tool_calls for f in c.files]

    @property
    def commands(self) -> list[str]:
        return [c.command for c in self.tool_calls if c.command]


@dataclass
class Session:
    """A transcript normalized from any agent's format."""

    id: str
    agent: str  # claude-code | codex | specstory | gemini | aider | ...
    source_path: str
    turns: list[Turn] = field(default_factory=list)
    project: str | None = None
    cwd: str | None = None
    git_branch: str | None = None
    title: str | None = None
    started: str | None = None  # ISO-8601 UTC
    ended: str | None = None
    parent_id: str | None = None  # the session a subagent ran under
    headless: bool = False  # the agent's own non-interactive runs (claude -p): not ingested
    problems: list[str] = field(default_factory=list)  # one line per skipped or damaged record

    @property
    def files_touched(self) -> list[str]:
        return _unique(f for t in self.turns for f in t.files)

    @property
    def commands(self) -> list[str]:
        return _unique(c for t in self.turns for c in t.commands)


@dataclass
class Chunk:
    """A unit of the index: one searchable span with exactly one citation tag."""

    layer: Layer
    tag: Tag
    text: str
    session_id: str | None = None
    project: str | None = None
    timestamp: str | None = None  # ISO-8601; sessions' turn time, topics' file mtime
    title: str | None = None  # heading path, session title, file path
    role: str | None = None
    path: str | None = None  # the file it was read from
    embed: bool = True  # tool output and code are searched by keyword only

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Excerpt:
    """A bounded span handed between pipeline stages, with the tag the system attached to it."""

    id: str  # short id a model may cite (E1, E2, ...); never a tag
    tag: Tag
    layer: Layer
    text: str
    score: float = 0.0
    session_id: str | None = None
    timestamp: str | None = None
    found_by: list[str] = field(default_factory=list)


def _unique(items: object) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:  # type: ignore[attr-defined]
        seen.setdefault(item, None)
    return list(seen)
