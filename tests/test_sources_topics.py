"""Topic notes: heading sections with exact line ranges, heading-path titles, front matter, long
sections cut at paragraph breaks, and damaged files."""

from __future__ import annotations

import os
from pathlib import Path

from ctxmill.model import Chunk, Layer
from ctxmill.sources.topics import MAX_SECTION_TOKENS, parse_topic
from ctxmill.tokens import count_tokens

SAMPLE_TOPICS = Path(__file__).resolve().parent.parent / "src/ctxmill/data/sample/memory/topics"

NOTE = """\
---
project: ledgerline
owner: priya
---
# Auth

Owner: Priya. Read this before touching login.

## Tokens

Session tokens are opaque and live in Redis.

```python
# not a heading: a comment in code
TOKEN_TTL = 43200
```

### Refresh

There is no refresh; sessions expire after 12h.

## Empty

## OIDC plan
Planned for Q3, not wired.

Rollout
-------

Behind a flag, one tenant first.
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def assert_exact(path: Path, chunks: list[Chunk]) -> None:
    """Every chunk's text is exactly the file lines its tag names."""
    lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    for c in chunks:
        assert c.tag.start is not None and c.tag.end is not None
        assert "\n".join(lines[c.tag.start - 1 : c.tag.end]) == c.text, str(c.tag)


def test_sections_titles_and_line_ranges(tmp_path: Path) -> None:
    root = tmp_path / "topics"
    path = write(root / "team" / "auth.md", NOTE)
    os.utime(path, (1_780_000_000, 1_780_000_000))
    chunks, problems = parse_topic(path, root)
    assert problems == []
    assert [(str(c.tag), c.title) for c in chunks] == [
        ("[topic:team/auth.md#L5-L7]", "Auth"),
        ("[topic:team/auth.md#L9-L16]", "Auth > Tokens"),
        ("[topic:team/auth.md#L18-L20]", "Auth > Tokens > Refresh"),
        ("[topic:team/auth.md#L24-L25]", "Auth > OIDC plan"),
        ("[topic:team/auth.md#L27-L30]", "Auth > Rollout"),  # setext level 2: a sibling
    ]
    assert_exact(path, chunks)
    assert "# not a heading" in chunks[1].text  # the fence kept its comment line
    first = chunks[0]
    assert first.layer is Layer.TOPIC and first.embed
    assert first.project == "ledgerline"
    assert first.timestamp == "2026-05-28T20:26:40Z"
    assert first.path == str(path)
    assert "project:" not in "".join(c.text for c in chunks)  # front matter is never a chunk


def test_long_section_is_cut_at_paragraphs_and_list_items(tmp_path: Path) -> None:
    paragraphs = [
        f"Paragraph {i} explains one more detail of the webhook retry policy, the idempotency "
        f"table and why the handler answers 200 for a duplicate event number {i}."
        for i in range(30)
    ]
    items = "\n".join(
        f"- item {i}: the retry policy backs off for {i} minutes\n  and then tries again"
        for i in range(60)
    )
    text = "# Webhooks\n\n" + "\n\n".join(paragraphs) + "\n\n" + items + "\n"
    path = write(tmp_path / "webhooks.md", text)
    chunks, problems = parse_topic(path, tmp_path)
    assert problems == []
    assert len(chunks) > 4
    assert_exact(path, chunks)
    for c in chunks:
        assert c.title == "Webhooks"
        assert count_tokens(c.text) <= MAX_SECTION_TOKENS
        assert c.text.strip() == c.text.strip("\n")  # starts and ends on a non-blank line
        assert not c.text.startswith("  and then")  # a list item is never cut from its line
    ends = [c.tag.end for c in chunks]
    starts = [c.tag.start for c in chunks]
    assert all(
        e is not None and s is not None and e < s for e, s in zip(ends, starts[1:], strict=False)
    )
    covered = "\n".join(c.text for c in chunks)
    assert all(p in covered for p in paragraphs)


def test_note_without_headings_is_one_chunk_titled_by_file(tmp_path: Path) -> None:
    path = write(tmp_path / "glossary.md", "\n\nLedger: the book of record.\nInvoice: a bill.\n\n")
    chunks, problems = parse_topic(path, tmp_path)
    assert problems == []
    assert [(str(c.tag), c.title, c.project) for c in chunks] == [
        ("[topic:glossary.md#L3-L4]", "glossary", None)
    ]


def test_crlf_and_front_matter_title(tmp_path: Path) -> None:
    text = "---\r\ntitle: Deploys\r\n---\r\nIntro line.\r\n\r\n## Steps\r\nRun it.\r\n"
    path = write(tmp_path / "d.md", text)
    chunks, _ = parse_topic(path, tmp_path)
    assert [(str(c.tag), c.title, c.text) for c in chunks] == [
        ("[topic:d.md#L4-L4]", "Deploys", "Intro line."),
        ("[topic:d.md#L6-L7]", "Deploys > Steps", "## Steps\nRun it."),
    ]


def test_bad_front_matter_is_reported_and_line_numbers_still_count_it(tmp_path: Path) -> None:
    path = write(tmp_path / "x.md", "---\nproject: [unclosed\n---\n# X\nbody\n")
    chunks, problems = parse_topic(path, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("x.md: front matter does not parse")
    assert [str(c.tag) for c in chunks] == ["[topic:x.md#L4-L5]"]


def test_unclosed_front_matter_is_a_thematic_break(tmp_path: Path) -> None:
    path = write(tmp_path / "y.md", "---\nnot front matter\n\n# Y\ntext\n")
    chunks, problems = parse_topic(path, tmp_path)
    assert problems == []
    assert [str(c.tag) for c in chunks] == ["[topic:y.md#L1-L2]", "[topic:y.md#L4-L5]"]


def test_bad_utf8_is_replaced_with_one_problem_line(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.md", b"# Caf\xe9\n\nCr\xe8me br\xfbl\xe9e notes.\n")
    chunks, problems = parse_topic(path, tmp_path)
    assert len(problems) == 1 and "not valid UTF-8" in problems[0]
    assert [c.title for c in chunks] == ["Caf\ufffd"]
    assert_exact(path, chunks)


def test_binary_file_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    chunks, problems = parse_topic(path, tmp_path)
    assert chunks == []
    assert problems == ["image.md: binary file (NUL bytes), not a topic note; skipped"]


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    chunks, problems = parse_topic(tmp_path / "gone.md", tmp_path)
    assert chunks == [] and len(problems) == 1 and problems[0].startswith("gone.md: cannot read")


def test_shipped_sample_topics_parse_exactly() -> None:
    paths = sorted(SAMPLE_TOPICS.glob("*.md"))
    assert paths
    for path in paths:
        chunks, problems = parse_topic(path, SAMPLE_TOPICS)
        assert problems == [] and chunks
        assert_exact(path, chunks)
        assert all(c.title and c.title.split(" > ")[0] == chunks[0].title for c in chunks)
