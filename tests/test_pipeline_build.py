"""build_context end to end on a small real memory on disk: topics, summaries, Claude Code
transcripts and a code root in git, ingested the way a user would."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctxmill.config import Config
from ctxmill.ingest import ingest
from ctxmill.model import Tag
from ctxmill.pipeline import BuildError, build_context
from ctxmill.pipeline.brief import analyze
from ctxmill.pipeline.prefilter import prefilter
from ctxmill.store import open_store

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
OIDC = "11111111-0000-4000-8000-000000000001"  # the reverted OIDC attempt (March)
BILLING = "22222222-0000-4000-8000-000000000002"  # unrelated (June)
RETRY = "33333333-0000-4000-8000-000000000003"  # summary and transcript disagree (June)
LATER = "44444444-0000-4000-8000-000000000004"  # after AS_OF: must stay invisible
SECTIONS = [
    "## Recent state",
    "## Relevant history",
    "## Unresolved threads",
    "## Files likely to touch",
    "## Citations",
]

AUTH_TOPIC = """# Auth

## Current state

- Sessions live in Redis; the browser cookie holds an opaque token.
- Session TTL is 12h (`SESSION_TTL = 12 * 3600` in `parcel/settings.py`).
- Routes depend on `current_user` from `parcel/auth/session.py` and never read the cookie.

## Decisions

- 2026-04-02: server-side sessions stay; JWTs were rejected because revocation must be instant.

## Open questions

- Linking existing password accounts to OIDC identities is not decided.
"""

BILLING_TOPIC = """# Billing

Invoices are rendered to PDF with the bundled fonts; the renderer runs in the worker.
"""


def _turn(sid: str, n: int, when: str, role: str, text: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "parentUuid": f"{sid}-{n - 1}" if n > 1 else None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/dev/parcel",
        "sessionId": sid,
        "version": "2.1.40",
        "gitBranch": "main",
        "type": role,
        "uuid": f"{sid}-{n}",
        "timestamp": f"{when}T09:{n:02d}:00.000Z",
    }
    if role == "user":
        record["message"] = {"role": "user", "content": text}
    else:
        record["requestId"] = f"req-{sid}-{n}"
        record["message"] = {
            "id": f"msg-{sid}-{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5",
            "content": [{"type": "text", "text": text}],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    return record


def _transcript(path: Path, sid: str, when: str, title: str, turns: list[tuple[str, str]]) -> None:
    records = [_turn(sid, n, when, role, text) for n, (role, text) in enumerate(turns, 1)]
    records.append({"type": "ai-title", "aiTitle": title, "sessionId": sid})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _summary(root: Path, sid: str, when: str, outcome: str, sections: dict[str, str]) -> None:
    front = {
        "session_id": sid,
        "agent": "claude-code",
        "project": "parcel",
        "cwd": "/home/dev/parcel",
        "git_branch": "main",
        "started": f"{when}T09:00:00Z",
        "ended": f"{when}T09:30:00Z",
        "files_touched": [],
        "commands": [],
        "topics": ["auth"],
        "outcome": outcome,
        "tokens": 300,
        "compressor": {"backend": "extractive", "model": None, "prompt_version": 1},
        "source_sha256": "0" * 64,
    }
    body = "\n\n".join(f"## {heading}\n\n{text}" for heading, text in sections.items())
    path = root / "sessions" / "compressed" / when[:4] / f"{sid}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n{body}\n", "utf-8")


def make_parcel(root: Path) -> Config:
    """The "parcel" memory: auth notes, four sessions (one after AS_OF) and a code root."""
    memory = root / "memory"
    (memory / "topics").mkdir(parents=True)
    (memory / "topics" / "auth.md").write_text(AUTH_TOPIC, encoding="utf-8")
    (memory / "topics" / "billing.md").write_text(BILLING_TOPIC, encoding="utf-8")
    raw = memory / "sessions" / "raw"
    _transcript(
        raw / f"{OIDC}.jsonl",
        OIDC,
        "2026-03-05",
        "Add OIDC login with oidclib",
        [
            ("user", "Add OIDC login with oidclib on the branch feat/oidc."),
            ("assistant", "I wired the OIDC callback in parcel/auth/oidc_callback.py."),
            (
                "user",
                "Stop. The refresh token shows up in the request logs. Revert the OIDC branch.",
            ),
            (
                "assistant",
                "Reverted feat/oidc: the oidclib callback leaked refresh tokens into the request "
                "logs through the debug logger.",
            ),
            ("user", "Keep the session TTL at 12h for OIDC sessions too, as decided."),
        ],
    )
    _summary(
        memory,
        OIDC,
        "2026-03-05",
        "abandoned",
        {
            "Goal": "Add OIDC login with oidclib.",
            "What happened": "- Wired the callback in `parcel/auth/oidc_callback.py`.",
            "Decisions and why": "- Session TTL set to 8h for OIDC sessions to match the IdP.",
            "Failed attempts and why": (
                "- The oidclib OIDC attempt was reverted: refresh tokens leaked into the request logs."
            ),
            "Open threads": "- Rotate the dev IdP client secret after the OIDC leak.",
            "Files": "- parcel/auth/oidc_callback.py",
        },
    )
    _transcript(
        raw / f"{BILLING}.jsonl",
        BILLING,
        "2026-06-10",
        "Fix invoice PDF fonts",
        [
            ("user", "The invoice PDFs render with the wrong fonts."),
            ("assistant", "Bundled the fonts with the renderer."),
        ],
    )
    _transcript(
        raw / f"{RETRY}.jsonl",
        RETRY,
        "2026-06-20",
        "Webhook retry policy",
        [
            ("user", "How many webhook delivery retries should OIDC logout webhooks get?"),
            ("assistant", "We settled on 3 retries for webhook delivery, then a dead letter."),
        ],
    )
    _summary(
        memory,
        RETRY,
        "2026-06-20",
        "completed",
        {
            "Goal": "Choose a retry policy for OIDC logout webhooks.",
            "What happened": "- Discussed webhook delivery.",
            "Decisions and why": "- Webhook delivery retries: 5 retries for webhook delivery before a dead letter.",
            "Failed attempts and why": "- None.",
            "Open threads": "- None.",
            "Files": "- none",
        },
    )
    _transcript(
        raw / f"{LATER}.jsonl",
        LATER,
        "2026-08-01",
        "OIDC v3 with authkit",
        [
            ("user", "Start OIDC v3 with authkit for session auth."),
            ("assistant", "OIDC v3 uses authkit; the callback lives in parcel/auth/authkit.py."),
        ],
    )
    code = root / "code"
    files = {
        "parcel/__init__.py": "",
        "parcel/settings.py": "SESSION_TTL = 12 * 3600\n",
        "parcel/auth/__init__.py": "",
        "parcel/auth/session.py": (
            "from parcel import settings\n\n\nclass SessionStore:\n    ttl = settings.SESSION_TTL\n\n\n"
            "def current_user(request):\n    return SessionStore().get(request)\n"
        ),
        "parcel/invoices/routes.py": (
            "from parcel.auth.session import current_user\n\n\ndef list_invoices(request):\n"
            "    user = current_user(request)\n    return user\n"
        ),
        "parcel/admin/routes.py": (
            "from parcel.auth.session import current_user\n\n\ndef whoami(request):\n"
            "    return current_user(request)\n"
        ),
        "tests/test_auth.py": "from parcel.auth.session import current_user\n",
    }
    for rel, text in files.items():
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        (code / rel).write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(code)], check=True)
    subprocess.run(["git", "-C", str(code), "add", "."], check=True)
    return Config(memory_root=memory, code_root=code, discover=False, embedder="hash")


@pytest.fixture
def parcel(tmp_path: Path) -> Config:
    cfg = make_parcel(tmp_path)
    report = ingest(cfg)
    assert report.sessions == 4, report.problems
    return cfg


def items(text: str, heading: str) -> list[str]:
    """The list items of one ``##`` section (sub-headings included in the section)."""
    body = text.split(heading + "\n", 1)[1]
    body = body.split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def test_structure_tags_and_generation_record(parcel: Config) -> None:
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    text = result.text
    front, body = text[4:].split("\n---\n", 1)
    record = yaml.safe_load(front)
    assert body.startswith("# Context for: Migrate session auth to OIDC\n")
    assert [line for line in body.splitlines() if line.startswith("## ")] == SECTIONS
    assert record["brief"] == "Migrate session auth to OIDC"
    assert record["budget"] == 6000 and record["tokens"] == result.tokens <= 6000
    assert record["as_of"].startswith("2026-07-01T00:00:00")
    assert record["backend"] == "none"
    import hashlib

    assert record["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert set(record["sources"]) == {"topic", "compressed", "raw", "code"}
    assert record["sources"]["topic"] > 0 and record["sources"]["code"] > 0
    # Every item of the four content sections ends with a tag the system attached...
    tag_at_end = re.compile(r"(\[(?:topic|session|raw|code):[^\]\s]+\]\s*)+$")
    for heading in SECTIONS[:4]:
        for item in items(text, heading):
            assert tag_at_end.search(item), item
    # ... and every tag used is listed, once, under Citations on its source's line, with where
    # that source is.
    cited = items(text, "## Citations")
    listed = [t for c in cited for t in c.split(" — ")[0][2:].split()]
    assert listed == result.citations
    for line in cited:
        tags = [Tag.parse(t) for t in line.split(" — ")[0][2:].split()]
        assert len({(t.kind, t.ref) for t in tags}) == 1, line  # one source per line
    assert any(c.endswith(" — topics/auth.md") for c in cited)
    used = set(
        re.findall(r"\[(?:topic|session|raw|code):[^\]\s]+\]", body.split("## Citations")[0])
    )
    assert used == set(result.citations)
    assert sum(result.sections.values()) <= result.tokens


def test_failed_attempt_is_history_with_raw_reread(parcel: Config) -> None:
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    history = items(result.text, "## Relevant history")
    failed = [i for i in history if "refresh token" in i.lower() and "log" in i.lower()]
    assert any(f"[session:{OIDC}]" in i for i in failed)
    assert any(f"[raw:{OIDC}#" in i for i in failed)  # the transcript was re-read
    assert OIDC in result.flagged
    assert "### Failed attempts" in result.text.split("## Relevant history")[1]
    # A dead end is history, never a fact of the current state.
    assert not any("oidclib" in i for i in items(result.text, "## Recent state"))


def test_topic_wins_a_conflict_with_a_summary(parcel: Config) -> None:
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    recent = items(result.text, "## Recent state")
    assert any("Session TTL is 12h" in i and "[topic:auth.md#L" in i for i in recent)
    # The summary's 8h does not stand as history; it is listed as a conflict with both tags.
    assert not any("8h" in i for i in items(result.text, "## Relevant history"))
    conflicts = [i for i in items(result.text, "## Unresolved threads") if "8h" in i]
    assert conflicts and "[topic:auth.md#L" in conflicts[0] and f"[session:{OIDC}]" in conflicts[0]
    # The re-read transcript sides with the note, so the summary is named as the wrong one.
    assert f"[raw:{OIDC}#5]" in conflicts[0] and "the summary is wrong" in conflicts[0]


def test_raw_decides_over_its_summary(parcel: Config) -> None:
    result = build_context(parcel, "OIDC logout webhook delivery retries", as_of=AS_OF, budget=6000)
    assert RETRY in result.flagged
    history = items(result.text, "## Relevant history")
    assert any("3 retries" in i and f"[raw:{RETRY}#2]" in i for i in history)
    assert not any("5 retries" in i for i in history)
    unresolved = [i for i in items(result.text, "## Unresolved threads") if "5 retries" in i]
    assert unresolved and "transcript decides" in unresolved[0]
    assert f"[raw:{RETRY}#2]" in unresolved[0] and f"[session:{RETRY}]" in unresolved[0]


def test_nothing_after_as_of_is_visible(parcel: Config) -> None:
    before = build_context(parcel, "OIDC session auth with authkit", as_of=AS_OF, budget=6000)
    body = before.text.split("# Context for:", 1)[1].split("\n", 1)[1]
    assert LATER not in before.text and "authkit" not in body
    assert LATER not in {c["session"] for c in before.candidates}
    after = build_context(
        parcel, "OIDC session auth with authkit", as_of=datetime(2026, 9, 1, tzinfo=UTC)
    )
    assert f"[raw:{LATER}#" in after.text


def test_history_brief_widens_the_time_window(parcel: Config) -> None:
    store = open_store(parcel)
    try:
        plain = prefilter(store, analyze("OIDC login"), as_of=AS_OF, window_days=30)
        history = prefilter(
            store, analyze("why did we revert OIDC login originally"), as_of=AS_OF, window_days=30
        )
    finally:
        store.close()
    assert not plain.widened and history.widened
    found = {c.session_id: c.found_by for c in history.candidates}
    assert "time" in found[OIDC] and "keyword" in found[OIDC]
    assert "time" not in {q for c in plain.candidates if c.session_id == OIDC for q in c.found_by}
    assert set(found[OIDC]) <= {"time", "topic", "path", "keyword", "semantic"}


def test_path_query_finds_sessions_that_name_a_file(parcel: Config) -> None:
    store = open_store(parcel)
    try:
        pool = prefilter(
            store, analyze("Clean up parcel/auth/oidc_callback.py"), as_of=AS_OF, window_days=1
        )
    finally:
        store.close()
    oidc = next(c for c in pool.candidates if c.session_id == OIDC)
    assert "path" in oidc.found_by


def test_files_likely_to_touch(parcel: Config) -> None:
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    files = items(result.text, "## Files likely to touch")
    session = next(i for i in files if "`parcel/auth/session.py`" in i)
    assert "current_user" in session and "[code:parcel/auth/session.py:" in session
    # Every consumer of the identifiers the change moves is listed with its lines.
    for consumer in ("parcel/invoices/routes.py", "parcel/admin/routes.py"):
        line = next(i for i in files if f"`{consumer}`" in i)
        assert "`current_user`" in line and f"[code:{consumer}:" in line
    gone = next(i for i in files if "oidc_callback.py" in i)
    assert "(no longer exists)" in gone and (f"[session:{OIDC}]" in gone or f"[raw:{OIDC}#" in gone)
    assert not any("billing" in i for i in files)


def test_budget_is_split_across_sections_not_cut_at_the_end(parcel: Config) -> None:
    small = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=1500)
    large = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=8000)
    assert small.tokens <= 1500 and large.tokens <= 8000
    for heading in SECTIONS[:4]:
        assert items(small.text, heading), f"{heading} is empty under a small budget"
    assert len(small.citations) < len(large.citations)
    assert small.text.rstrip().endswith("(code root)")  # the file ends with its citations


def test_budget_too_small_for_the_structure(parcel: Config) -> None:
    with pytest.raises(BuildError, match=r"budget 50 is too small.*fixed structure") as caught:
        build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=50)
    floor = int(re.search(r"alone takes (\d+) tokens", str(caught.value))[1])  # type: ignore[index]
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=floor)
    assert result.tokens <= floor
    assert any("budget" in n for n in result.notes)


def test_empty_index_is_a_clear_error(tmp_path: Path) -> None:
    cfg = Config(memory_root=tmp_path / "memory", discover=False, embedder="hash")
    ingest(cfg)
    with pytest.raises(BuildError, match="holds no topics, summaries or transcripts"):
        build_context(cfg, "anything", as_of=AS_OF)
    with pytest.raises(BuildError, match="no index"):
        build_context(replace(cfg, memory_root=tmp_path / "other"), "anything")
    with pytest.raises(BuildError, match="brief is empty"):
        build_context(cfg, "   ")


def test_brief_matching_nothing_still_gives_the_structure(parcel: Config) -> None:
    result = build_context(parcel, "Quaternion slerp jitter in the gyroscope", as_of=AS_OF)
    body = result.text.split("\n---\n", 1)[1]
    assert [line for line in body.splitlines() if line.startswith("## ")] == SECTIONS
    assert "_No topic note matched this brief._" in body
    assert any("nothing in the memory matched" in n for n in result.notes)


def test_missing_code_root_is_a_note_not_a_crash(parcel: Config, tmp_path: Path) -> None:
    cfg = replace(parcel, code_root=tmp_path / "gone")
    result = build_context(cfg, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    assert any("code root" in n and "does not exist" in n for n in result.notes)
    assert "[code:" not in result.text
    assert items(result.text, "## Recent state")


def test_quoted_text_cannot_forge_tags_and_is_fenced(tmp_path: Path) -> None:
    cfg = make_parcel(tmp_path)
    sid = "55555555-0000-4000-8000-000000000005"
    _transcript(
        cfg.raw_dir / f"{sid}.jsonl",
        sid,
        "2026-06-25",
        "OIDC token logging",
        [
            ("user", "The OIDC refresh token leak is written up in [topic:secret.md#L1-L9]."),
            (
                "assistant",
                "The OIDC refresh token leaked through this logger call:\n\n"
                "````markdown\nlog.debug(refresh_token)  # OIDC, see ```python notes\n````\n",
            ),
        ],
    )
    ingest(cfg)
    result = build_context(cfg, "OIDC refresh token leak", as_of=AS_OF, budget=6000)
    assert "[topic:secret.md" not in result.text
    assert "(topic:secret.md#L1-L9)" in result.text
    assert "[topic:secret.md#L1-L9]" not in result.citations
    # The transcript's code goes in a fence longer than any backtick run inside it.
    lines = result.text.splitlines()
    start = lines.index("  ````text")
    assert "log.debug(refresh_token)" in lines[start + 1] and lines[start + 2] == "  ````"


def test_explain_data_and_timings(parcel: Config) -> None:
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    by_id = {c["session"]: c for c in result.candidates}
    assert {"keyword", "semantic"} <= set(by_id[OIDC]["found_by"])
    assert all(c["ranks"] for c in result.candidates)
    for stage in ("prefilter", "fanout", "fanout.topics", "fanout.compressed", "fanout.code",
                  "reread", "assemble", "fit", "render", "total"):  # fmt: skip
        assert stage in result.timings
    assert result.timings["total"] >= result.timings["fanout"]


def test_writes_the_file_and_redacts_on_egress(parcel: Config, tmp_path: Path) -> None:
    secret = "sk-ant-api03-" + "Q7x9Lm2Vb8Np4Kd6Rt1Zw3Yc5Hf0Js" * 2
    topic = parcel.topics_dir / "auth.md"
    topic.write_text(AUTH_TOPIC + f"\n- The OIDC test key was {secret} once.\n", "utf-8")
    ingest(parcel)
    out = tmp_path / "out" / "context.md"
    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, output=out)
    assert result.path == out and out.read_text("utf-8") == result.text
    assert secret not in result.text


EXPORT = "77777777-0000-4000-8000-000000000007"  # a long session with no summary
CHAT = "88888888-0000-4000-8000-000000000008"  # a short one that ends with a goodbye

_LONG_SUMMARY_ITEMS = [
    "Renamed the CSV column headers to the accounting team's names.",
    "Added a progress bar to the export page.",
    "Moved the export templates into the templates folder.",
    "Wrote a fixture with 50,000 invoice rows for the tests.",
    "Documented the export endpoints in the API reference.",
    "Switched the export download to a streamed response.",
    "Cleaned up the unused helpers in the export module.",
    "Upgraded the CSV writer dependency to the current release.",
    "Added logging around each export batch with its duration.",
    "Checked the export against the staging database snapshot.",
    "Set `EXPORT_BATCH_SIZE` back to 500 because 5000 rows per batch exhausted the worker memory.",
    "Updated the changelog with the export changes.",
]


def _export_memory(root: Path) -> Config:
    """A memory whose answers lie where a turn-level read misses them: deep in a long session, in a
    short turn that shares no word with the brief, and in the middle of a long summary turn."""
    memory = root / "memory"
    (memory / "topics").mkdir(parents=True)
    (memory / "topics" / "exports.md").write_text(
        "# Exports\n\n- Invoice CSV exports run in the worker, one batch at a time.\n", "utf-8"
    )
    turns: list[tuple[str, str]] = [("user", "Speed up the invoice CSV export for big customers.")]
    for n in range(14):
        turns.append(
            (
                "assistant",
                f"Timed the invoice CSV export again (run {n}): the export of a big customer's "
                "invoices still takes minutes.",
            )
        )
        turns.append(("user", "Keep going on the invoice CSV export speed."))
    turns.append(
        (
            "assistant",
            "Now I understand: every row goes through `render_row`, which opens a new database "
            "connection per row.",
        )
    )
    turns.append(("user", "Good, fix that."))
    turns.append(
        (
            "assistant",
            "Summary of the work so far on the invoice CSV export:\n\n"
            + "\n\n".join(f"- {item}" for item in _LONG_SUMMARY_ITEMS),
        )
    )
    turns.append(("user", "Does the export also cover credit notes?"))
    turns.append(("assistant", "Let me check the credit note export:"))
    _transcript(
        memory / "sessions" / "raw" / f"{EXPORT}.jsonl",
        EXPORT,
        "2026-06-15",
        "Invoice CSV export speed",
        turns,
    )
    _transcript(
        memory / "sessions" / "raw" / f"{CHAT}.jsonl",
        CHAT,
        "2026-06-16",
        "Invoice CSV export question",
        [
            ("user", "Is the invoice CSV export fast enough now for big customers?"),
            ("assistant", "Yes: a big customer's invoice CSV export finishes in seconds now."),
            ("user", "Great, thanks, bye!"),
        ],
    )
    cfg = Config(memory_root=memory, discover=False, embedder="hash")
    ingest(cfg)
    return cfg


def test_reread_finds_what_a_long_session_says_anywhere(tmp_path: Path) -> None:
    cfg = _export_memory(tmp_path)
    result = build_context(cfg, "Speed up the invoice CSV export", as_of=AS_OF, budget=6000)
    assert EXPORT in result.flagged
    history = items(result.text, "## Relevant history")
    # The discovery shares no word with the brief; it is one short turn among thirty that do.
    found = [i for i in history if "`render_row`" in i and "connection per row" in i]
    assert found and f"[raw:{EXPORT}#30]" in found[0]
    # The reverted setting is the eleventh item of a long summary turn, not in its first lines.
    batch = [i for i in history if "EXPORT_BATCH_SIZE" in i and "exhausted" in i]
    assert batch and f"[raw:{EXPORT}#32]" in batch[0]
    assert "5000 rows per batch" in batch[0]


def test_a_last_request_without_an_answer_is_an_open_thread(tmp_path: Path) -> None:
    cfg = _export_memory(tmp_path)
    result = build_context(cfg, "Speed up the invoice CSV export", as_of=AS_OF, budget=6000)
    unresolved = items(result.text, "## Unresolved threads")
    # The reply only announces a check it never reports on, so the question is still open.
    open_ = [i for i in unresolved if "credit notes" in i]
    assert open_ and f"[raw:{EXPORT}#33]" in open_[0]
    # A goodbye is not a request left open.
    assert not any("bye" in i.lower() for i in unresolved)


def test_narration_is_dropped_and_list_items_are_read_together() -> None:
    from ctxmill.pipeline.text import passages

    prose = (
        "Let me check the exporter:\n\nNow let me read the settings:\n\n"
        "The batch size is read once at start-up.\n\n"
        "## What was wrong\n\n- the worker kept every row\n- the CSV writer never flushed\n\n"
        "Perfect!"
    )
    found = passages(prose, 600)
    assert [p.text for p in found] == [
        "The batch size is read once at start-up.",
        "the worker kept every row; the CSV writer never flushed",
    ]
    assert found[1].heading == "What was wrong"
    long = " ".join(f"Sentence number {n} says a little more about the export." for n in range(20))
    assert all(len(p.text) <= 160 for p in passages(long, 160))


def test_small_budget_spends_the_budget_on_evidence(parcel: Config) -> None:
    from ctxmill.lint import TagResolver, lint_text
    from ctxmill.tokens import count_tokens

    result = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=1000)
    assert result.tokens <= 1000
    front, body = result.text[4:].split("\n---\n", 1)
    record = yaml.safe_load(front)
    # A compact generation record: what SPEC.md asks of it, no index path, window or lists.
    assert {"brief", "budget", "tokens", "sources", "backend", "created_at"} <= set(record)
    assert "flagged" not in record and "window" not in record and "notes" not in record
    assert set(record["index"]) == {"schema", "embedder"} and len(record["body_sha256"]) == 64
    assert [line for line in body.splitlines() if line.startswith("## ")] == SECTIONS
    evidence = sum(count_tokens(i) for h in SECTIONS[:4] for i in items(result.text, h))
    assert evidence / result.tokens >= 0.4, (evidence, result.tokens)
    tag_at_end = re.compile(r"(\[(?:topic|session|raw|code):[^\]\s]+\]\s*)+$")
    for heading in SECTIONS[:4]:
        for item in items(result.text, heading):
            assert tag_at_end.search(item), item
    # Still a valid context: every tag listed under Citations and resolving, the record complete.
    resolver = TagResolver(parcel)
    try:
        problems = lint_text(result.text, kind="context", resolver=resolver).problems
    finally:
        resolver.close()
    assert not [p for p in problems if p.level == "error"], problems
    # Above the compact threshold the full record comes back.
    full = build_context(parcel, "Migrate session auth to OIDC", as_of=AS_OF, budget=6000)
    assert isinstance(yaml.safe_load(full.text[4:].split("\n---\n", 1)[0])["flagged"], list)
