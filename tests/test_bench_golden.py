"""The golden-context benchmark: a small set built here end to end through the CLI, the data
manifest, the results log and report, and the repository's own golden set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, shared_data
from corpus import SID, session_records, write_jsonl

from ctxmill.bench.golden import (
    GoldenError,
    find_sets,
    link_set_data,
    load_task,
    load_tasks,
    parse_as_of,
)
from ctxmill.bench.scoring import tag_matches
from ctxmill.config import Config

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
REPO_GOLDEN = REPO / "bench" / "golden"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=300
    )


def _task(path: Path, **data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """One set: a topic note and one Claude Code transcript in the memory's raw folder."""
    root = tmp_path / "golden"
    memory = root / "shop" / "memory"
    (memory / "topics").mkdir(parents=True)
    (memory / "topics" / "exports.md").write_text(
        "# Exports\n\nInvoice exports stream rows through a server-side cursor.\n\n"
        "## Limits\n\nThe export endpoint allows 60 seconds before it times out.\n",
        encoding="utf-8",
    )
    write_jsonl(memory / "sessions" / "raw" / f"{SID}.jsonl", session_records())
    _task(
        root / "shop" / "tasks" / "export-timeout.yaml",
        id="export-timeout",
        brief="Fix the invoice export timeout for large customers",
        as_of="2026-04-01T00:00:00Z",
        budget=4000,
        claims=[
            {
                "id": "c1",
                "section": "recent_state",
                "text": "Invoice exports stream rows through a server-side cursor",
                "sources": ["topic:exports.md"],
                "keywords": ["server-side cursor"],
            },
            {
                "id": "c2",
                "section": "history",
                "text": "The old exporter held 2 GB in memory",
                "sources": [f"raw:{SID}"],
                "keywords": ["2 GB"],
            },
            {
                "id": "c3",
                "section": "history",
                "text": "A claim no context can cover: nothing in the memory says it",
                "sources": ["raw:0000"],
                "keywords": ["kubernetes"],
            },
        ],
    )
    return root


def test_task_files_load_and_validate(golden: Path, tmp_path: Path) -> None:
    (task,) = load_tasks(golden / "shop")
    assert task.id == "export-timeout" and task.budget == 4000
    assert task.as_of is not None and task.as_of.isoformat() == "2026-04-01T00:00:00+00:00"
    assert [c.id for c in task.claims] == ["c1", "c2", "c3"]
    assert find_sets(golden) == [golden / "shop"]
    assert find_sets(golden / "shop") == [golden / "shop"]
    bad = tmp_path / "bad.yaml"
    _task(bad, brief="x", claims=[{"id": "c1", "text": "t"}])
    with pytest.raises(GoldenError, match="lacks sources"):
        load_task(bad, "s")
    _task(bad, brief="x", as_of="last tuesday", claims=[{"id": "c", "text": "t", "sources": "x"}])
    with pytest.raises(GoldenError, match="ISO-8601"):
        load_task(bad, "s")
    assert parse_as_of("2026-02-12", "w") is not None


def test_golden_cli_scores_logs_and_gates(golden: Path, tmp_path: Path) -> None:
    log = tmp_path / "extra.jsonl"
    keep = tmp_path / "contexts"
    result = run(
        "bench",
        "golden",
        str(golden),
        "--json",
        "--threshold",
        "0",
        "--log",
        str(log),
        "--keep",
        str(keep),
        "--embedder",
        "hash",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    (task,) = payload["tasks"]
    assert set(task) >= {"set", "id", "coverage", "precision", "tokens", "claims"}
    assert (task["set"], task["id"]) == ("shop", "export-timeout")
    assert [set(c) >= {"id", "covered"} for c in task["claims"]] == [True, True, True]
    covered = {c["id"]: c["covered"] for c in task["claims"]}
    assert covered["c1"] is True  # the only topic, and the brief names its subject
    assert covered["c3"] is False
    assert 0 < task["tokens"] <= 4000
    assert task["precision"] is None or 0 <= task["precision"] <= 1
    assert payload["average_coverage"] == task["coverage"]
    built = (keep / "shop" / "export-timeout.context.md").read_text(encoding="utf-8")
    assert "[topic:exports.md#L" in built

    home_log = Path(os.environ["CTXMILL_HOME"]) / "bench" / "results.jsonl"
    for path in (home_log, log):
        (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
        assert entry["kind"] == "golden"
        assert {"git_revision", "timestamp", "settings", "tasks"} <= set(entry)
        assert entry["settings"]["threshold"] == 0
    # the set was indexed in a throw-away home, not in the user's
    assert not (Path(os.environ["CTXMILL_HOME"]) / "index").exists()

    gated = run("bench", "golden", str(golden), "--threshold", "1.0", "--embedder", "hash")
    assert gated.returncode == 1
    assert "below the threshold" in gated.stderr
    assert "export-timeout" in gated.stdout

    report = tmp_path / "report.html"
    made = run("bench", "report", "-o", str(report))
    assert made.returncode == 0, made.stderr
    html = report.read_text(encoding="utf-8")
    assert html.count("<svg") == 2 and "export-timeout" in html and "<script" not in html


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("bench", "golden", str(tmp_path / "missing")).returncode == 2
    assert run("bench", "golden", str(tmp_path), "--threshold", "2").returncode == 2
    empty = run("bench", "golden", str(tmp_path))
    assert empty.returncode == 1 and "no sets" in empty.stderr


def test_data_manifest_copies_transcripts_or_skips(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "agent" / "abc" / "subagents").mkdir(parents=True)
    (data / "agent" / "abc.jsonl").write_text("{}\n")
    (data / "agent" / "abc" / "subagents" / "agent-1.jsonl").write_text("{}\n")
    (data / "agent" / "issues.jsonl").write_text("{}\n")
    set_dir = tmp_path / "golden" / "s"
    set_dir.mkdir(parents=True)
    (set_dir / "data.yaml").write_text(
        'source: agent\nfiles: ["*.jsonl", "*/subagents/*.jsonl"]\nexclude: ["issues.jsonl"]\n'
    )
    assert link_set_data(set_dir, data) == (2, None)
    raw = set_dir / "memory" / "sessions" / "raw"
    assert sorted(str(p.relative_to(raw)) for p in raw.rglob("*.jsonl")) == [
        "abc.jsonl",
        "abc/subagents/agent-1.jsonl",
    ]
    assert link_set_data(set_dir, data) == (2, None)  # unchanged copies are kept
    count, reason = link_set_data(set_dir, tmp_path / "nowhere")
    assert count == 0 and reason is not None and "not found" in reason
    count, reason = link_set_data(set_dir, None)
    assert count == 0 and reason is not None and "--data" in reason


def _missing_data_set(root: Path) -> None:
    """A set whose transcripts live in a data folder that is not on this machine."""
    set_dir = root / "remote"
    (set_dir / "memory" / "topics").mkdir(parents=True)
    (set_dir / "memory" / "topics" / "notes.md").write_text("# Notes\n\n- Exports stream.\n")
    (set_dir / "data.yaml").write_text('source: agent/remote\nfiles: ["*.jsonl"]\n')
    _task(
        set_dir / "tasks" / "t.yaml",
        brief="Fix the invoice export",
        claims=[{"id": "c1", "text": "x", "sources": ["raw:abc"], "keywords": ["x"]}],
    )


def test_sets_without_their_data_are_skipped_not_scored(golden: Path, tmp_path: Path) -> None:
    """The CI gate on a machine without the third-party data: such a set is skipped with one
    line, the other sets are scored and gated, and a run with nothing to score passes."""
    _missing_data_set(golden)
    empty_data = tmp_path / "data"
    empty_data.mkdir()
    args = ("--data", str(empty_data), "--embedder", "hash")
    result = run("bench", "golden", str(golden), "--json", "--threshold", "0.6", *args)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [t["set"] for t in payload["tasks"]] == ["shop"]  # not counted as a zero
    assert [s["set"] for s in payload["skipped"]] == ["remote"]
    skipped = [line for line in result.stderr.splitlines() if "remote" in line]
    assert len(skipped) == 1 and "skipping set remote" in skipped[0]
    gated = run("bench", "golden", str(golden), "--threshold", "0.9", *args)
    assert gated.returncode == 1 and "below the threshold" in gated.stderr

    only = tmp_path / "only"
    _missing_data_set(only)
    alone = run("bench", "golden", str(only), "--threshold", "0.9", *args)
    assert alone.returncode == 0, alone.stderr
    assert "skipping set remote" in alone.stderr and "every set skipped" in alone.stderr
    assert "Traceback" not in alone.stderr


def _project(root: Path) -> Path:
    """A project folder laid out like the shipped sample: ctxmill.toml, its own folder names, a
    Claude Code agent folder, and golden tasks under golden/tasks/."""
    (root / "notes" / "topics").mkdir(parents=True)
    (root / "notes" / "topics" / "exports.md").write_text(
        "# Exports\n\nInvoice exports stream rows through a server-side cursor.\n"
    )
    (root / "ctxmill.toml").write_text(
        '[memory]\nroot = "notes"\n[code]\nroot = "src"\n'
        '[sources]\npaths = ["agent/projects"]\ndiscover = false\n'
    )
    (root / "src").mkdir()
    (root / "src" / "export.py").write_text("def export_invoices():\n    return []\n")
    write_jsonl(root / "agent" / "projects" / "-home-dev-shop" / f"{SID}.jsonl", session_records())
    _task(
        root / "golden" / "tasks" / "export.yaml",
        brief="Fix the invoice export timeout for large customers",
        as_of="2026-04-01T00:00:00Z",
        budget=4000,
        claims=[
            {
                "id": "c1",
                "text": "Exports stream rows through a server-side cursor",
                "sources": ["topic:exports.md"],
                "keywords": ["server-side cursor"],
            },
            {
                "id": "c2",
                "text": "The old exporter held 2 GB in memory",
                "sources": [f"raw:{SID}"],
                "keywords": ["2 GB"],
            },
        ],
    )
    return root


def test_a_project_folder_with_golden_tasks_is_a_set(tmp_path: Path) -> None:
    from ctxmill.bench.golden import set_config

    project = _project(tmp_path / "shop")
    assert find_sets(project) == [project]
    assert find_sets(tmp_path) == [project]
    assert [t.id for t in load_tasks(project)] == ["export"]
    cfg = set_config(project, tmp_path / "home")
    assert cfg.memory_root == (project / "notes").resolve()
    assert cfg.code_root == (project / "src").resolve()
    assert cfg.transcript_dirs == [(project / "agent" / "projects").resolve()]
    assert cfg.discover is False

    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    result = run("bench", "golden", str(project), "--json", "--embedder", "hash")
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(result.stdout)["tasks"]
    assert task["set"] == "shop" and task["coverage"] == 1.0
    # Ingest archives agent-folder transcripts under the memory root: it did so in a copy.
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before


def test_the_sample_golden_tasks_run_as_a_set() -> None:
    """The CI gate's second half: the shipped sample's golden tasks, no third-party data."""
    from ctxmill.config import sample_dir

    sample = sample_dir()
    assert find_sets(sample) == [sample]
    result = run("bench", "golden", str(sample), "--json", "--threshold", "0.8")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert {t["id"] for t in payload["tasks"]} == {
        "ledgerline-oidc-migration",
        "ledgerline-drop-celery",
    }
    assert not payload["skipped"] and payload["average_coverage"] >= 0.8
    assert all(t["error"] is None for t in payload["tasks"])


def test_repo_golden_set_is_well_formed() -> None:
    tasks = [t for s in find_sets(REPO_GOLDEN) for t in load_tasks(s)]
    assert len(tasks) >= 4
    assert {t.set for t in tasks} >= {"spotter", "gryag"}
    for task in tasks:
        assert len(task.claims) >= 5, task.id
        assert task.as_of is not None and task.budget
        for claim in task.claims:
            assert claim.keywords, f"{task.id}/{claim.id}: claims here pin their content"
            for source in claim.sources:
                kind, _, ref = source.partition(":")
                assert kind in ("topic", "raw", "session", "code"), source
                if kind == "topic":
                    assert (REPO_GOLDEN / task.set / "memory" / "topics" / ref).is_file(), source
    # third-party transcripts are never committed: only the manifest names them
    for set_dir in find_sets(REPO_GOLDEN):
        assert (set_dir / "data.yaml").is_file()


def test_every_repo_golden_claim_is_satisfiable_by_its_sources() -> None:
    """Some indexed span visible at the task's as_of carries a matching tag and every keyword:
    the claims are honest about the transcripts, and the turn numbers are the ingested ones."""
    from ctxmill.ingest import ingest
    from ctxmill.pipeline.prefilter import iso
    from ctxmill.store import open_store

    data = shared_data()
    for set_dir in find_sets(REPO_GOLDEN):
        count, reason = link_set_data(set_dir, data)
        assert reason is None and count > 0
        with tempfile.TemporaryDirectory() as home:
            cfg = Config(
                memory_root=set_dir / "memory", discover=False, embedder="none", home=Path(home)
            )
            ingest(cfg, embed=False)
            store = open_store(cfg)
            try:
                chunks = list(store.iter_chunks())
                started = {s.id: s.started for s in store.list_sessions()}
            finally:
                store.close()
            for task in load_tasks(set_dir):
                until = iso(task.as_of) if task.as_of else None
                for claim in task.claims:
                    keywords = [k.lower() for k in claim.keywords]
                    spans = [
                        c
                        for c in chunks
                        if any(tag_matches(str(c.tag), s) for s in claim.sources)
                        and (
                            until is None
                            or c.session_id is None
                            or (started.get(c.session_id) or "") < until
                        )
                        and all(k in " ".join(c.text.lower().split()) for k in keywords)
                    ]
                    assert spans, f"{set_dir.name}/{task.id}/{claim.id}: no span supports it"


@pytest.mark.slow
def test_repo_golden_benchmark_runs(tmp_path: Path) -> None:
    shared_data()
    result = run("bench", "golden", str(REPO_GOLDEN), "--json", "--threshold", "0")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert len(payload["tasks"]) >= 4 and not payload["skipped"]
    assert all(t["error"] is None for t in payload["tasks"])
