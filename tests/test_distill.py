"""Distilling a planning session into an implementation prompt: extractive, narrowed, and with a
model whose claims are checked against the turns they cite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data
from corpus import SID, assistant, bash, record, result, user, write_jsonl

from ctxmill.distill import (
    PARTS,
    DistillError,
    append_context,
    check_claim,
    distill_session,
    load_source,
    normalize_command,
    signature_lines,
)
from ctxmill.lint import lint_text
from ctxmill.llm import FakeBackend, LLMRunner

PLAN = """We decided to stream rows with `csv.writer` over a server-side cursor, because the old \
exporter held 2 GB in memory. We rejected pandas for this because it loads the whole result set \
first.

The current exporter lives in `shop/export.py` and returns a list.

```python
def stream_invoices(cursor: Cursor, out: TextIO) -> int:
    ...
```

| Phase | Goal | Deliverables | Exit criteria |
|---|---|---|---|
| 1 | Streaming writer | `shop/csv_export.py` | `pytest tests/test_csv_export.py` passes |
| 2 | Wire the endpoint | route in `shop/routes.py` | |

Large exports can hit the 60 second proxy timeout, which is a risk for the biggest customers."""


def write_call(n: int, path: str) -> dict[str, Any]:
    return record(
        "assistant",
        n,
        requestId=f"req-{n}",
        message={
            "id": f"msg-{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5",
            "content": [
                {
                    "type": "tool_use",
                    "id": f"toolu_{n}",
                    "name": "Write",
                    "input": {"file_path": path, "content": "import csv\n"},
                }
            ],
        },
    )


def planning_session(folder: Path) -> Path:
    """A Claude Code planning session: a request, a plan, a file written, tests run, a question."""
    return write_jsonl(
        folder / f"{SID}.jsonl",
        [
            user(
                1,
                "Plan the CSV export for invoices. Use a streaming writer; don't build the whole "
                "file in memory.",
            ),
            assistant(2, PLAN),
            write_call(3, "/home/dev/shop/shop/csv_export.py"),
            result(4, "File created successfully"),
            bash(5, "pytest tests/test_csv_export.py -q 2>&1 | tail -5"),
            result(6, "3 passed in 0.2s"),
            assistant(7, "The writer is in place. Should the export include voided invoices?"),
        ],
    )


def part(text: str, name: str) -> str:
    """The body of one ``## name`` part of a prompt."""
    after = text.split(f"\n## {name}\n", 1)[1]
    return after.split("\n## ", 1)[0]


def test_extractive_prompt_carries_decisions_paths_and_commands(tmp_path: Path) -> None:
    source = load_source(planning_session(tmp_path))
    prompt = distill_session(source)
    text = prompt.text
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == list(PARTS)

    tag = f"[raw:{SID}#2]"
    decisions = part(text, "Decisions and rejected alternatives")
    assert (
        f"We decided to stream rows with `csv.writer` over a server-side cursor, because the old exporter held 2 GB in memory. {tag}"
        in decisions
    )
    assert (
        f"We rejected pandas for this because it loads the whole result set first. {tag}"
        in decisions
    )
    # The agent's last question was never answered: an explicit TODO, tagged.
    assert (
        f"TODO: settle this open question — Should the export include voided invoices? [raw:{SID}#7]"
        in decisions
    )

    files = part(text, "Files and interfaces")
    assert f"- `shop/csv_export.py` (new) — created in the session [raw:{SID}#3]" in files
    assert "- `shop/export.py` — named in the session" in files
    assert f"- `def stream_invoices(cursor: Cursor, out: TextIO) -> int:` {tag}" in files
    assert (
        "```python\ndef stream_invoices(cursor: Cursor, out: TextIO) -> int:\n    ...\n```" in files
    )

    # The command as someone would type it again, from the tool call that ran it.
    tests = part(text, "Test commands")
    assert (
        f"From [raw:{SID}#5]" in tests
        and "```bash\npytest tests/test_csv_export.py -q\n```" in tests
    )
    assert "- [ ] `pytest tests/test_csv_export.py -q` passes." in part(text, "Definition of done")

    phases = part(text, "Phases")
    assert (
        f"| 1 | Streaming writer {tag} | `shop/csv_export.py` | `pytest tests/test_csv_export.py` passes |"
        in phases
    )
    assert (
        f"| 2 | Wire the endpoint {tag} | route in `shop/routes.py` | TODO: exit criteria not settled |"
        in phases
    )
    assert "60 second proxy timeout" in part(text, "Risks and rollback")
    assert part(text, "Goal").startswith(
        "\nPlan the CSV export for invoices. Use a streaming writer; don't build the whole file in memory. [raw:"
    )

    assert prompt.todos == [
        "TODO: settle this open question — Should the export include voided invoices? [raw:"
        f"{SID}#7]",
        "TODO: exit criteria not settled (phase 2)",
        "TODO: rollback was not discussed; say how to undo each phase",
    ]
    allowed = lint_text(text, allow_todo=True)
    assert allowed.ok and [p.message for p in allowed.todos] == prompt.todos
    strict = lint_text(text)
    assert not strict.ok and len(strict.errors) == 3


def test_code_root_decides_what_is_new_and_completes_short_paths(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "app" / "shop").mkdir(parents=True)
    (code / "app" / "shop" / "export.py").write_text("def export(): ...\n")
    source = load_source(planning_session(tmp_path))
    files = part(distill_session(source, code_root=code).text, "Files and interfaces")
    # "shop/export.py" in the session is app/shop/export.py in the tree; csv_export.py is new.
    assert "- `app/shop/export.py` — named in the session" in files
    assert "- `shop/csv_export.py` (new) — created in the session" in files
    assert "- `shop/routes.py` (new)" in files


def test_brief_narrows_to_one_part_of_the_plan(tmp_path: Path) -> None:
    source = load_source(planning_session(tmp_path))
    prompt = distill_session(source, brief="proxy timeout for large exports")
    text = prompt.text
    assert "Narrowed to: **proxy timeout for large exports**" in text
    assert "60 second proxy timeout" in part(text, "Risks and rollback")
    # Paragraphs about other parts of the plan are left out.
    assert "pandas" not in text and "stream_invoices" not in text


def test_markdown_plan_cites_line_ranges(tmp_path: Path) -> None:
    plan = tmp_path / "plan.md"
    plan.write_text(
        "# Rate limiter\n\n## Goal\n\nAdd a token-bucket rate limiter to the public API.\n\n"
        "## Design\n\nWe will use Redis `INCR` with a 60 second window instead of an in-process "
        "counter, because the API runs on 4 replicas.\n\n"
        "```python\ndef allow(key: str, limit: int) -> bool:\n    ...\n```\n\n"
        "## Phases\n\n- Phase 1: limiter in `api/limits.py`\n- run `pytest tests/test_limits.py`\n"
        "- Phase 2: wire it into the gateway\n",
        encoding="utf-8",
    )
    text = distill_session(load_source(plan)).text
    assert "# Implementation prompt: Rate limiter" in text
    assert "Add a token-bucket rate limiter to the public API. [plan.md#L3-L6]" in part(
        text, "Goal"
    )
    assert "Redis `INCR` with a 60 second window" in text and "[plan.md#L7-L15]" in text
    assert "`def allow(key: str, limit: int) -> bool:`" in part(text, "Files and interfaces")
    phases = part(text, "Phases")
    assert "| 1 | Phase 1: limiter in `api/limits.py`" in phases and "| 2 | Phase 2:" in phases


def test_sources_that_cannot_be_distilled(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="no such file"):
        load_source(tmp_path / "absent.jsonl")
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\x00\x01")
    with pytest.raises(DistillError, match="neither a transcript"):
        load_source(odd)
    empty = tmp_path / "empty.md"
    empty.write_text("\n\n")
    with pytest.raises(DistillError, match="empty"):
        load_source(empty)


def test_secrets_are_redacted_on_the_way_out(tmp_path: Path) -> None:
    key = "sk-ant-api03-" + "Zx9" * 20
    path = write_jsonl(
        tmp_path / f"{SID}.jsonl",
        [user(1, f"Deploy with ANTHROPIC_API_KEY={key} and plan the rollout steps carefully.")],
    )
    prompt = distill_session(load_source(path))
    assert key not in prompt.text and prompt.secrets_redacted >= 1


REPLY = """## Goal

Plan a streaming CSV export for invoices [T1]

## Context

- The current exporter lives in `shop/export.py` and returns a list [T2]
- The exporter already supports XLSX output through `openpyxl` [T2]

## Decisions and rejected alternatives

- Stream rows with `csv.writer` over a server-side cursor, because the old exporter held 2 GB in memory [T2]
- Pandas was rejected because it loads the whole result set first [T2]
- Use Kafka to fan the export out to workers [T2]
- Cache exports in Redis for 24 hours [T9]

## Files and interfaces

- `shop/csv_export.py` (new): the streaming writer [T2, T3]

```python
def stream_invoices(cursor: Cursor, out: TextIO) -> int:
```

- `shop/export.py`: keeps returning a list for old callers [T2]

```python
def export_all(rows: list[Row]) -> bytes:
```

## Phases

| Phase | Goal | Deliverables | Exit criteria |
|---|---|---|---|
| 1 | Streaming writer | `shop/csv_export.py` | `pytest tests/test_csv_export.py` passes [T2] |
| 2 | Wire the endpoint | route in `shop/routes.py` | TODO: exit criteria |

## Risks and rollback

- Large exports can hit the 60 second proxy timeout [T2]
TODO: say how to roll back

## Test commands

- The session ran these [T5]

```bash
pytest tests/test_csv_export.py -q
```

## Definition of done

- `pytest tests/test_csv_export.py -q` passes [T5]
"""


def test_model_claims_are_kept_with_tags_or_dropped(tmp_path: Path) -> None:
    source = load_source(planning_session(tmp_path))
    fake = FakeBackend([REPLY])
    prompt = distill_session(source, runner=LLMRunner(fake, log=False))
    text = prompt.text

    # What the model saw: numbered turns, and the rules about citing them.
    assert "### T2 (assistant)" in fake.calls[0].prompt and "[T12]" in (fake.calls[0].system or "")
    assert prompt.backend == "fake:fake"

    # Supported claims stay, their turn numbers turned into tags by the code.
    assert (
        f"- The current exporter lives in `shop/export.py` and returns a list [raw:{SID}#2]" in text
    )
    assert f"- `shop/csv_export.py` (new): the streaming writer [raw:{SID}#2] [raw:{SID}#3]" in text
    assert "```python\ndef stream_invoices(cursor: Cursor, out: TextIO) -> int:\n```" in text
    assert f"| `pytest tests/test_csv_export.py` passes [raw:{SID}#2] |" in text
    assert "```bash\npytest tests/test_csv_export.py -q\n```" in part(text, "Test commands")
    assert "TODO: say how to roll back" in text

    # Unsupported ones are gone, each with the reason.
    for invented in ("openpyxl", "Kafka", "Redis for 24 hours", "export_all"):
        assert invented not in text
    reasons = {d.text: d.reason for d in prompt.dropped}
    assert reasons["The exporter already supports XLSX output through `openpyxl`"] == (
        "'openpyxl' is not in the cited turn(s)"
    )
    assert reasons["Use Kafka to fan the export out to workers"].startswith("only 25% of its words")
    assert reasons["Cache exports in Redis for 24 hours"] == (
        "cites turn(s) the session does not have: [9]"
    )
    assert (
        reasons["def export_all(rows: list[Row]) -> bytes:"]
        == "code not found in the cited turn(s)"
    )
    assert lint_text(text, allow_todo=True).ok


def test_model_output_without_the_parts_falls_back_to_extraction(tmp_path: Path) -> None:
    source = load_source(planning_session(tmp_path))
    fake = FakeBackend(["Sure! Here is a plan: just write the code."])
    prompt = distill_session(source, runner=LLMRunner(fake, log=False))
    assert "the prompt is extractive" in " ".join(prompt.notes)
    assert "We rejected pandas for this" in prompt.text


def test_check_claim() -> None:
    turn = "We moved the job to `jobs/nightly.py` and set RETRY_LIMIT to 5 after the outage."
    assert check_claim("The nightly job lives in `jobs/nightly.py`", turn) is None
    assert check_claim("RETRY_LIMIT is 5", turn) is None
    assert check_claim("RETRY_LIMIT is 7", turn) is None  # one-digit numbers are too weak to check
    assert check_claim("RETRY_LIMIT is 50", turn) == "'50' is not in the cited turn(s)"
    assert (
        check_claim("`jobs/daily.py` holds it", turn)
        == "'jobs/daily.py' is not in the cited turn(s)"
    )
    assert "of its words" in (check_claim("Grafana dashboards alert the on-call team", turn) or "")


def test_helpers() -> None:
    assert normalize_command("cd /srv/app && pytest -q 2>&1 | tail -20") == "pytest -q"
    assert normalize_command("mix test 2>&1") == "mix test"
    code = "export async function load(id: string): Promise<Row> {\n  return db.get(id)\n}\n"
    code += "def build(\n    a: int,\n    b: int,\n) -> str:\n    pass\nclass Store(Base):\n"
    assert signature_lines(code) == [
        "export async function load(id: string): Promise<Row>",
        "def build( a: int, b: int, ) -> str:",
        "class Store(Base):",
    ]
    appended = append_context(
        "## Goal\n\nx\n", "---\nbrief: b\n---\n# Context for: b\n\n## Recent state\n\n- y\n", "b"
    )
    assert "## Appendix: context from the team's memory" in appended
    assert "### Context for: b" in appended and "#### Recent state" in appended
    assert "brief: b" not in appended


@pytest.mark.parametrize(
    "name",
    [
        "2025-09-30_17-41Z-planned-improvements-for-gryag-bot-codebase.md",
        "2025-10-01_16-20Z-suggestions-for-chatbot-tool-integrations.md",
    ],
)
def test_real_planning_sessions_pass_lint_with_their_todos(name: str) -> None:
    path = shared_data("specstory", "gryag", name)
    prompt = distill_session(load_source(path))
    assert prompt.todos, "these sessions leave things open"
    allowed = lint_text(prompt.text, allow_todo=True)
    assert allowed.ok, allowed.lines()
    assert [p.message for p in allowed.todos] == prompt.todos
    strict = lint_text(prompt.text)
    assert not strict.ok
    assert [p.message for p in strict.errors] == [f"unresolved {t}" for t in prompt.todos]


def test_real_planning_session_content() -> None:
    path = shared_data(
        "specstory", "gryag", "2025-10-01_16-20Z-suggestions-for-chatbot-tool-integrations.md"
    )
    prompt = distill_session(load_source(path))
    sid = prompt.session_id
    assert f"The user chose: Let's do polls [raw:{sid}#3]" in prompt.text
    assert f"- `polls.py` — named in the session [raw:{sid}#4]" in prompt.text
    assert f"| 1 | Let's do polls [raw:{sid}#3] | `polls.py`, `schema.sql` |" in prompt.text


def test_real_claude_code_session() -> None:
    path = shared_data("claude-code", "marot_spotter", "8463c716-a2ea-4c14-9efa-87158ebd9f20.jsonl")
    prompt = distill_session(load_source(path))
    text = prompt.text
    assert "`lib/spotter/services/transcript_renderer.ex` — created, edited" in text
    assert "Keep `render_message/1` unchanged (backward compat for direct callers)." in text
    assert "```bash\nmix test test/spotter/services/transcript_renderer_test.exs\n" in text
    assert ".claude/plans" not in text  # the agent's own plan file is not part of the work
    assert lint_text(text, allow_todo=True).ok
