"""Compressed summaries: ``sessions/compressed/YYYY/<id>*.md``, one or more per session.

A summary is YAML front matter and a markdown body with the fixed ``##`` headings of
:mod:`ctxmill.summary_format`.  Each non-empty section becomes one chunk tagged
``[session:<id>]`` and titled by its heading, so a search hit says which part of the summary
matched.  The folder is append-only: a newer summary of a session is a new file whose
``supersedes:`` names the one it replaces, and :func:`newest_summaries` picks, per session, the
file that no other file supersedes (the highest version when several are left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from ctxmill.model import Chunk, Layer, Tag
from ctxmill.summary_format import sections, split_summary

# Sections that say nothing: the format asks for this phrase rather than an empty section.
EMPTY_SECTION_TEXTS = frozenset({"none recorded", "none", "n/a", "nothing"})
_LIST_MARK_RE = re.compile(r"^[-*+]\s*")

_VERSION_RE = re.compile(r"\.v?(\d+)$")


@dataclass
class Summary:
    """One summary file, its front matter typed and its body cut into sections."""

    session_id: str
    path: Path
    body: str
    sections: dict[str, str] = field(default_factory=dict)  # heading -> text, in file order
    agent: str | None = None
    project: str | None = None
    cwd: str | None = None
    git_branch: str | None = None
    title: str | None = None
    started: str | None = None  # ISO-8601 UTC
    ended: str | None = None
    files_touched: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    outcome: str | None = None
    tokens: int | None = None
    supersedes: str | None = None  # the replaced file, relative to the compressed folder
    compressor_backend: str | None = None
    compressor_model: str | None = None
    compressor_prompt_version: str | None = None
    compressed_at: str | None = None
    source_sha256: str | None = None

    @property
    def version(self) -> int:
        """1 for ``<id>.md``, N for ``<id>.N.md`` (or ``<id>.vN.md``)."""
        rest = self.path.name.removesuffix(".md")
        rest = rest[len(self.session_id) :] if rest.startswith(self.session_id) else rest
        m = _VERSION_RE.search(rest)
        return int(m.group(1)) if m else 1


def parse_summary(path: Path) -> tuple[Summary | None, list[str]]:
    """The summary in ``path``, or None with one problem line saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [f"{path}: cannot read ({exc.strerror or exc}); skipped"]
    if b"\x00" in data:
        return None, [f"{path}: binary file (NUL bytes), not a summary; skipped"]
    problems: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", "replace")
        problems.append(f"{path}: not valid UTF-8 (byte {exc.start}); bad bytes replaced")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    front, body, split_problems = split_summary(text)
    if front is None:
        return None, [*problems, *(f"{path}: {p}; skipped" for p in split_problems)]
    session_id = _text(front.get("session_id"))
    if not session_id:
        return None, [*problems, f"{path}: front matter has no session_id; skipped"]
    compressor = front.get("compressor")
    comp = compressor if isinstance(compressor, dict) else {}
    tokens = front.get("tokens")
    summary = Summary(
        session_id=session_id,
        path=path,
        body=body,
        sections=sections(body),
        agent=_text(front.get("agent")),
        project=_text(front.get("project")),
        cwd=_text(front.get("cwd")),
        git_branch=_text(front.get("git_branch")),
        title=_text(front.get("title")),
        started=_when(front.get("started")),
        ended=_when(front.get("ended")),
        files_touched=_strings(front.get("files_touched")),
        commands=_strings(front.get("commands")),
        topics=_strings(front.get("topics")),
        outcome=_text(front.get("outcome")),
        tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
        supersedes=_text(front.get("supersedes")),
        compressor_backend=_text(comp.get("backend")),
        compressor_model=_text(comp.get("model")),
        compressor_prompt_version=_text(comp.get("prompt_version")),
        compressed_at=_when(front.get("compressed_at")),
        source_sha256=_text(front.get("source_sha256")),
    )
    return summary, problems


def summary_chunks(s: Summary) -> list[Chunk]:
    """One chunk per section with something in it, all tagged ``[session:<id>]``."""
    return [
        Chunk(
            layer=Layer.COMPRESSED,
            tag=Tag.session(s.session_id),
            text=text,
            session_id=s.session_id,
            project=s.project,
            timestamp=s.ended or s.started,
            title=heading,
            path=str(s.path),
        )
        for heading, text in s.sections.items()
        if not _says_nothing(text)
    ]


def _says_nothing(text: str) -> bool:
    """Empty, or only ``None recorded.`` / ``- None.`` and the like."""
    core = _LIST_MARK_RE.sub("", text.strip()).rstrip(".! ").lower()
    return not core or core in EMPTY_SECTION_TEXTS


def newest_summaries(paths: list[Path]) -> tuple[dict[str, Summary], list[str]]:
    """Per session id, the summary that replaced all the others, and the problems met reading.

    A file named by another file's ``supersedes:`` (the path relative to the compressed folder,
    or just the file name) is out; of what is left, the highest version wins, then the latest
    ``compressed_at``, then the latest modification time.
    """
    parsed: list[Summary] = []
    problems: list[str] = []
    for path in paths:
        summary, found = parse_summary(path)
        problems += found
        if summary is not None:
            parsed.append(summary)
    replaced = {s.supersedes.strip("/") for s in parsed if s.supersedes}
    by_session: dict[str, list[Summary]] = {}
    for s in parsed:
        if not _named_by(s.path, replaced):
            by_session.setdefault(s.session_id, []).append(s)
    newest: dict[str, Summary] = {}
    for sid, candidates in by_session.items():
        newest[sid] = max(candidates, key=_recency)
        if len(candidates) > 1:
            others = ", ".join(str(c.path) for c in candidates if c is not newest[sid])
            problems.append(
                f"{newest[sid].path}: session {sid} has other summaries that nothing supersedes "
                f"({others}); using this one"
            )
    return newest, problems


def _named_by(path: Path, names: set[str]) -> bool:
    """Whether one of ``names`` (relative paths or bare file names) is a tail of ``path``."""
    posix = path.as_posix()
    return any(posix == n or posix.endswith("/" + n) for n in names)


def _recency(s: Summary) -> tuple[int, str, float]:
    try:
        mtime = s.path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return (s.version, s.compressed_at or "", mtime)


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    out = str(value).strip()
    return out or None


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return []


def _when(value: object) -> str | None:
    """An ISO-8601 UTC string: YAML reads unquoted timestamps as datetimes, so write them back."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if moment.microsecond:
            stamp += f".{moment.microsecond // 1000:03d}"
        return stamp + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return _text(value)
