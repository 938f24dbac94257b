"""``lint`` on hand-made files: each kind of problem is caught, on the line it concerns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from corpus import SID, make_memory

from ctxmill.ingest import ingest
from ctxmill.lint import LintError, TagResolver, detect_kind, lint_text
from ctxmill.summary_format import HEADINGS

GOOD_PROMPT = """# Implementation prompt: CSV export

## Goal

Stream invoices to CSV.

## Context

- The exporter returns a list today.

## Decisions and rejected alternatives

- Stream with `csv.writer`, because memory blew up.

## Files and interfaces

- `shop/export.py` — exists
- `shop/csv_export.py` (new) — the writer
- `def stream_invoices(cursor) -> int:`

## Phases

| Phase | Goal | Deliverables | Exit criteria |
|---|---|---|---|
| 1 | Writer | `shop/csv_export.py` | `pytest tests/test_csv.py` passes |
| 2 | Endpoint | route in `shop/routes.py` | `curl /export` returns 200 |

## Risks and rollback

- Slow clients; roll back by reverting the route.

## Test commands

```bash
pytest tests/test_csv.py
```

## Definition of done

- [ ] Both phases meet their exit criteria.
"""


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "export.py").write_text("def export(): ...\n")
    return root


def messages(text: str, **options: object) -> list[str]:
    return [p.message for p in lint_text(text, **options).errors]  # type: ignore[arg-type]


def test_a_complete_prompt_passes(code_root: Path) -> None:
    result = lint_text(GOOD_PROMPT, code_root=code_root)
    assert result.kind == "prompt" and result.ok and result.problems == []


def test_missing_and_empty_parts() -> None:
    text = GOOD_PROMPT.replace(
        "## Risks and rollback\n\n- Slow clients; roll back by reverting the route.\n\n", ""
    )
    text = text.replace("- The exporter returns a list today.\n", "### Nothing here\n")
    result = lint_text(text)
    assert [(p.line, p.message) for p in result.errors] == [
        (7, "part '## Context' is empty"),
        (len(text.splitlines()), "missing part: '## Risks and rollback'"),
    ]


def test_phase_rows_need_deliverables_and_exit_criteria() -> None:
    text = GOOD_PROMPT.replace(
        "| route in `shop/routes.py` | `curl /export` returns 200 |",
        "| route in `shop/routes.py` |  |",
    )
    text = text.replace("| Writer | `shop/csv_export.py` |", "| Writer | — |")
    rows = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(("| 1 ", "| 2 "))]
    assert [(p.line, p.message) for p in lint_text(text).errors] == [
        (rows[0], "phase 1 has no deliverables"),
        (rows[1], "phase 2 has no exit criteria"),
    ]
    no_table = (
        GOOD_PROMPT.split("| Phase |")[0]
        + "Do it in two steps.\n\n## Risks"
        + GOOD_PROMPT.split("## Risks", 1)[1]
    )
    assert messages(no_table) == [
        "'## Phases' has no table (phase | goal | deliverables | exit criteria)"
    ]


def test_paths_must_exist_or_be_marked_new(code_root: Path) -> None:
    text = GOOD_PROMPT.replace("- `shop/export.py` — exists", "- `shop/exporter.py` — exists")
    assert messages(text, code_root=code_root) == [
        f"`shop/exporter.py` does not exist in {code_root} and is not marked (new)"
    ]
    # Without a code root nothing can be checked: a warning, not a failure.
    result = lint_text(text)
    assert result.ok and [p.message for p in result.warnings] == [
        "file paths not checked against a code root (pass --code)"
    ]


def test_unresolved_todos_fail_unless_allowed() -> None:
    text = GOOD_PROMPT.replace("| `curl /export` returns 200 |", "| TODO: decide the check |")
    text = text.replace("- Slow clients;", "TODO: measure slow clients.\n- Slow clients;")
    text = text.replace("## Goal\n", "## Goal\n\nA `TODO:` in code is only talk.\n")
    assert messages(text) == [
        "unresolved TODO: decide the check (phase 2)",
        "unresolved TODO: measure slow clients.",
    ]
    allowed = lint_text(text, allow_todo=True)
    assert allowed.ok
    assert [p.message for p in allowed.todos] == [
        "TODO: decide the check (phase 2)",
        "TODO: measure slow clients.",
    ]


def write_context(tmp_path: Path, body: str, budget: int, tokens: int = 0) -> str:
    record = {
        "generator": "ctxmill test",
        "brief": "streaming export",
        "created_at": "2026-03-01T00:00:00Z",
        "budget": budget,
        "tokens": tokens,
        "backend": "none",
        "sources": {"topic": 1, "raw": 1},
        "index": {"schema": "m001_initial"},
        "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
    }
    return "---\n" + yaml.safe_dump(record, sort_keys=False) + "---\n" + body


def context_body(*tags: str) -> str:
    lines = "\n".join(f"- A claim. {t}" for t in tags)
    cites = "\n".join(f"- {t} — where it points" for t in tags)
    return (
        "# Context for: streaming export\n\n## Recent state\n\n" + lines + "\n\n"
        "## Relevant history\n\n_None._\n\n## Unresolved threads\n\n_None._\n\n"
        "## Files likely to touch\n\n_None._\n\n## Citations\n\n" + cites + "\n"
    )


@pytest.fixture
def indexed(tmp_path: Path) -> TagResolver:
    cfg = make_memory(tmp_path / "mem")
    ingest(cfg, embed=False)
    return TagResolver(cfg)


def test_context_tags_resolve_from_files_and_the_index(
    tmp_path: Path, indexed: TagResolver
) -> None:
    good = (f"[raw:{SID}#5]", "[topic:exports.md#L1-L3]", "[code:shop/export.py:2]")
    text = write_context(tmp_path, context_body(*good), budget=5000)
    result = lint_text(text, resolver=indexed)
    assert result.kind == "context" and result.ok, result.lines()

    bad = write_context(
        tmp_path,
        context_body(f"[raw:{SID}#99]", "[topic:exports.md#L1-L80]", "[code:shop/gone.py:1]"),
        5000,
    )
    found = messages(bad, resolver=indexed)
    assert found == [
        f"[raw:{SID}#99] does not resolve: nothing in the memory or the index has it",
        "[topic:exports.md#L1-L80] points past the end of exports.md (7 lines)",
        "[code:shop/gone.py:1] does not resolve: nothing in the memory or the index has it",
        f"[raw:{SID}#99] does not resolve: nothing in the memory or the index has it",
        "[topic:exports.md#L1-L80] points past the end of exports.md (7 lines)",
        "[code:shop/gone.py:1] does not resolve: nothing in the memory or the index has it",
    ]
    indexed.close()


def test_context_structure_and_budget(tmp_path: Path) -> None:
    body = context_body("[topic:exports.md#L1-L3]")
    over = write_context(tmp_path, body, budget=50)
    assert any(
        m.startswith("the context is ") and m.endswith("over the budget of 50 in its front matter")
        for m in messages(over)
    )

    shuffled = (
        body.replace("## Recent state", "## Tmp")
        .replace("## Relevant history", "## Recent state")
        .replace("## Tmp", "## Relevant history")
    )
    assert messages(write_context(tmp_path, shuffled, 5000)) == [
        "sections out of order: expected Recent state, Relevant history, Unresolved threads, Files likely to touch, Citations"
    ]
    unlisted = body.replace(
        "## Citations\n\n- [topic:exports.md#L1-L3] — where it points\n",
        "## Citations\n\n_None._\n",
    )
    assert messages(write_context(tmp_path, unlisted, 5000)) == [
        "[topic:exports.md#L1-L3] is used but not listed under '## Citations'"
    ]
    bare = "---\nbrief: streaming export\nbudget: 100\n---\n" + body.replace(
        "## Files likely to touch\n\n_None._\n\n", ""
    )
    assert messages(bare) == [
        "the generation record lacks 'tokens'",
        "the generation record lacks 'index'",
        "the generation record lacks 'sources'",
        "the generation record lacks 'backend'",
        "the generation record lacks 'created_at'",
        "the generation record lacks the content hash ('body_sha256')",
        "missing section '## Files likely to touch'",
    ]


def summary(body_words: int) -> str:
    front = {
        "session_id": SID,
        "agent": "claude-code",
        "project": "shop",
        "cwd": "/home/dev/shop",
        "git_branch": "main",
        "started": "2026-03-10T09:00:00Z",
        "ended": "2026-03-10T10:00:00Z",
        "files_touched": [],
        "commands": [],
        "topics": [],
        "outcome": "completed",
        "tokens": 0,
        "compressor": {"backend": "none", "model": "none", "prompt_version": "1"},
        "source_sha256": "0" * 64,
        "source_tokens": 100,
    }
    filler = " ".join(["export"] * body_words)
    body = "\n\n".join(
        f"## {h}\n\n{filler if h == 'What happened' else 'None recorded.'}" for h in HEADINGS
    )
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body + "\n"


def test_summary_over_the_cap() -> None:
    result = lint_text(summary(2600))
    assert result.kind == "summary"
    assert any(
        m.startswith("body is ") and m.endswith("over the hard cap of 2000")
        for m in messages(summary(2600))
    )
    heading_line = summary(2600).splitlines().index("## Goal") + 1
    assert any(p.line == heading_line for p in result.errors if "hard cap" in p.message)


def test_kind_detection() -> None:
    assert detect_kind(GOOD_PROMPT) == "prompt"
    assert detect_kind(summary(10)) == "summary"
    assert detect_kind(write_context(Path("."), context_body(), 100)) == "context"
    assert detect_kind("# Notes\n\nNothing to see.\n") is None
    with pytest.raises(LintError, match="--kind"):
        lint_text("# Notes\n")
    # Named explicitly, a file is checked as that kind whatever it looks like.
    assert "missing part: '## Goal'" in messages("# Notes\n", kind="prompt")
