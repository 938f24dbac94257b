"""Compressed summaries: front matter typed, sections as chunks, and the append-only rule that
the newest file of a session wins."""

from __future__ import annotations

import os
from pathlib import Path

from ctxmill.model import Layer
from ctxmill.sources.summaries import newest_summaries, parse_summary, summary_chunks

SAMPLE = (
    Path(__file__).resolve().parent.parent / "src/ctxmill/data/sample/memory/sessions/compressed"
)
SID = "5f1c2a9e-0b7d-4c3e-9a21-7d6e8f0a1b2c"

FRONT = f"""\
---
session_id: {SID}
agent: claude-code
project: ledgerline
cwd: /home/dev/ledgerline
git_branch: feat/oidc
started: 2026-03-02T09:15:00.250Z
ended: 2026-03-02T10:01:30Z
files_touched:
  - ledgerline/auth/oidc.py
  - tests/test_auth.py
commands: [pytest -q]
topics: [auth, oidc]
outcome: abandoned
tokens: 612
compressor:
  backend: extractive
  model: none
  prompt_version: extract-v1
source_sha256: {"ab" * 32}
compressed_at: 2026-03-02T11:00:00Z
"""

BODY = """\
## Goal

Move session auth to OIDC with library X.

## What happened

- Wired the callback; refresh tokens showed up in the request log.

## Decisions and why

None recorded.

## Failed attempts and why

- Library X logs the whole token response at DEBUG, so refresh tokens leaked; abandoned.

## Open threads

- Who rotates the signing key?

## Files

- ledgerline/auth/oidc.py
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def summary_text(*, supersedes: str | None = None, extra: str = "", body: str = BODY) -> str:
    more = f"supersedes: {supersedes}\n" if supersedes else ""
    return FRONT + more + extra + "---\n\n" + body


def test_front_matter_and_sections(tmp_path: Path) -> None:
    path = write(tmp_path / "2026" / f"{SID}.md", summary_text())
    s, problems = parse_summary(path)
    assert problems == [] and s is not None
    assert (s.session_id, s.agent, s.project, s.cwd, s.git_branch) == (
        SID,
        "claude-code",
        "ledgerline",
        "/home/dev/ledgerline",
        "feat/oidc",
    )
    # YAML reads unquoted timestamps as datetimes; they come back as ISO-8601 UTC text
    assert (s.started, s.ended, s.compressed_at) == (
        "2026-03-02T09:15:00.250Z",
        "2026-03-02T10:01:30Z",
        "2026-03-02T11:00:00Z",
    )
    assert s.files_touched == ["ledgerline/auth/oidc.py", "tests/test_auth.py"]
    assert (s.commands, s.topics, s.outcome, s.tokens) == (
        ["pytest -q"],
        ["auth", "oidc"],
        "abandoned",
        612,
    )
    assert (s.compressor_backend, s.compressor_model, s.compressor_prompt_version) == (
        "extractive",
        "none",
        "extract-v1",
    )
    assert s.source_sha256 == "ab" * 32 and s.supersedes is None and s.version == 1
    assert list(s.sections) == [
        "Goal",
        "What happened",
        "Decisions and why",
        "Failed attempts and why",
        "Open threads",
        "Files",
    ]
    assert s.sections["Goal"] == "Move session auth to OIDC with library X."
    assert s.body.startswith("## Goal")


def test_chunks_one_per_section_with_something_in_it(tmp_path: Path) -> None:
    path = write(tmp_path / f"{SID}.md", summary_text())
    s, _ = parse_summary(path)
    assert s is not None
    chunks = summary_chunks(s)
    assert [c.title for c in chunks] == [
        "Goal",
        "What happened",
        "Failed attempts and why",  # "None recorded." says nothing and is not indexed
        "Open threads",
        "Files",
    ]
    for c in chunks:
        assert str(c.tag) == f"[session:{SID}]"
        assert c.layer is Layer.COMPRESSED
        assert (c.session_id, c.project, c.timestamp) == (SID, "ledgerline", "2026-03-02T10:01:30Z")
        assert c.path == str(path)
    assert "refresh tokens leaked" in chunks[2].text

    no_end = write(tmp_path / "b.md", summary_text().replace("ended: 2026-03-02T10:01:30Z\n", ""))
    s2, _ = parse_summary(no_end)
    assert s2 is not None and s2.ended is None
    assert {c.timestamp for c in summary_chunks(s2)} == {"2026-03-02T09:15:00.250Z"}


def test_newest_summary_wins_by_supersedes(tmp_path: Path) -> None:
    year = tmp_path / "2026"
    first = write(year / f"{SID}.md", summary_text())
    second = write(year / f"{SID}.2.md", summary_text(supersedes=f"2026/{SID}.md"))
    # the older file is touched last: modification time must not decide
    os.utime(first, (2_000_000_000, 2_000_000_000))
    other = "0196c4e2-5a7b-7d30-9c18-3e6f0a2b4d91"
    lone = write(year / f"{other}.md", summary_text().replace(SID, other))
    v1 = write(year / "abc.md", summary_text().replace(SID, "abc"))
    v2 = write(year / "abc.v2.md", summary_text(supersedes="abc.md").replace(SID, "abc"))

    newest, problems = newest_summaries([first, second, lone, v1, v2])
    assert problems == []
    assert {sid: s.path for sid, s in newest.items()} == {SID: second, other: lone, "abc": v2}
    assert newest[SID].version == 2 and newest["abc"].version == 2


def test_unsuperseded_duplicates_take_the_highest_version_and_say_so(tmp_path: Path) -> None:
    a = write(tmp_path / f"{SID}.md", summary_text())
    b = write(tmp_path / f"{SID}.3.md", summary_text())
    newest, problems = newest_summaries([b, a])
    assert newest[SID].path == b
    assert len(problems) == 1 and "nothing supersedes" in problems[0]


def test_damaged_files_are_one_problem_line_each(tmp_path: Path) -> None:
    good = write(tmp_path / f"{SID}.md", summary_text())
    no_front = write(tmp_path / "no-front.md", BODY)
    bad_yaml = write(tmp_path / "bad-yaml.md", "---\nsession_id: [unclosed\n---\n" + BODY)
    no_id = write(tmp_path / "no-id.md", summary_text().replace(f"session_id: {SID}\n", ""))
    binary = write(tmp_path / "bin.md", b"---\x00\x01\x02")
    unclosed = write(tmp_path / "unclosed.md", FRONT + BODY)

    for path in (no_front, bad_yaml, no_id, binary, unclosed):
        s, problems = parse_summary(path)
        assert s is None and len(problems) == 1, path.name
        assert problems[0].startswith(str(path)) and problems[0].endswith("skipped")

    newest, problems = newest_summaries([good, no_front, bad_yaml, no_id, binary, unclosed])
    assert list(newest) == [SID] and len(problems) == 5


def test_bad_utf8_is_read_with_a_problem_line(tmp_path: Path) -> None:
    data = summary_text().encode().replace(b"library X", b"library \xff")
    path = write(tmp_path / f"{SID}.md", data)
    s, problems = parse_summary(path)
    assert s is not None and len(problems) == 1 and "not valid UTF-8" in problems[0]
    assert "\ufffd" in s.sections["Goal"]


def test_shipped_sample_summaries() -> None:
    paths = sorted(SAMPLE.rglob("*.md"))
    newest, problems = newest_summaries(paths)
    assert problems == []
    replaced = [s.supersedes for s in newest.values() if s.supersedes]
    assert replaced  # the sample keeps at least one session with a newer summary
    assert len(newest) == len(paths) - len(replaced)
    chosen = {s.path.relative_to(SAMPLE).as_posix() for s in newest.values()}
    assert not any(c == r or c.endswith("/" + r) for c in chosen for r in replaced)
    for s in newest.values():
        assert summary_chunks(s)
