"""Ingest end to end on small corpora written to disk: incremental, archived, redacted, atomic."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from corpus import SID, SID2, assistant, make_memory, record, session_records, user, write_jsonl
from filelock import FileLock

from ctxmill.config import Config
from ctxmill.ingest import IngestBusy, forget, ingest, reindex, worker_count
from ctxmill.model import Layer, Tag
from ctxmill.store import Filters, SQLiteStore, StoreError, open_store

# The package binds ``ctxmill.ingest`` to the API function; the module is in sys.modules.
ingest_module = importlib.import_module("ctxmill.ingest")


def index_rows(cfg: Config) -> set[tuple[str, str]]:
    store = open_store(cfg)
    try:
        return {(str(h.tag), h.text) for h in store.iter_chunks()}
    finally:
        store.close()


def transcript(cfg: Config) -> Path:
    return cfg.transcript_dirs[0] / "-home-dev-shop" / f"{SID}.jsonl"


def test_ingest_indexes_every_layer(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    report = ingest(cfg)
    assert report.problems == []
    store = open_store(cfg)
    stats = store.stats()
    assert stats["chunks"]["topic"] == 2
    assert stats["chunks"]["code"] >= 1
    assert stats["chunks"]["raw"] == 5  # user, assistant, tool call, tool result, assistant
    record_ = store.get_session(SID)
    assert record_ is not None
    assert record_.title == "Fix invoice export timeout"
    assert "pytest tests/test_export.py -x" in record_.commands
    hits = store.keyword_search("server-side cursor", Filters(), 10)
    assert {Layer.TOPIC, Layer.RAW} <= {h.layer for h in hits}
    assert report.vectors_added > 0
    store.close()


def test_second_ingest_reads_nothing(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    again = ingest(cfg)
    assert again.files_read == 0
    assert again.chunks_added == 0 and again.chunks_removed == 0
    assert again.vectors_added == 0  # no text is embedded twice


def test_appended_transcript_is_tailed_and_matches_a_full_read(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    path = transcript(cfg)
    with path.open("a", encoding="utf-8") as fh:
        # Same message id as nothing before, plus a continuation split across two lines.
        fh.write(json.dumps(user(7, "Also check the CSV variant of the export.")) + "\n")
        fh.write(json.dumps(assistant(8, "The CSV exporter shares the cursor.", msg="m-x")) + "\n")
        fh.write(json.dumps(assistant(9, "It needs no change.", msg="m-x")) + "\n")
    report = ingest(cfg)
    assert report.files_tailed == 1
    tailed = index_rows(cfg)
    reindex(cfg)
    assert index_rows(cfg) == tailed
    assert any("CSV exporter shares the cursor" in text for _, text in tailed)


def test_rewritten_transcript_is_read_whole(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    write_jsonl(transcript(cfg), session_records()[:3])
    report = ingest(cfg)
    assert report.files_tailed == 0 and report.files_read == 1
    store = open_store(cfg)
    assert len(store.chunks_for_session(SID, Layer.RAW)) == 2
    store.close()


def test_bad_lines_are_reported_and_the_rest_is_kept(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    path = transcript(cfg)
    good = path.read_bytes().splitlines(keepends=True)
    junk = [b"{not json\n", b"\xff\xfe\x00binary\n", b'"a string record"\n', b"[1, 2]\n"]
    path.write_bytes(good[0] + b"".join(junk) + b"".join(good[1:]) + b'{"type": "user", "trunc')
    report = ingest(cfg)
    assert len(report.problems) >= 3
    assert all("\n" not in p for p in report.problems)
    store = open_store(cfg)
    assert len(store.chunks_for_session(SID, Layer.RAW)) == 5
    store.close()


def test_missing_code_root_is_one_problem(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    cfg.code_root = tmp_path / "nowhere"
    report = ingest(cfg)
    assert any("code root does not exist" in p for p in report.problems)
    assert report.sessions == 1


def test_secrets_never_reach_the_index_or_the_archive(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    key = "sk-ant-api03-" + "Q7xk2Vb9Lm4Np8Rs1Tw6Yz3Ac5Df0Gh" + "Jk2Lm4Np6Qr8St0Uv"
    aws = "AKIA" + "QWERTYUIOPASDFGH"
    private = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v"
        + "x" * 40
        + "\n-----END RSA PRIVATE KEY-----"
    )
    extra = [
        user(6, f"use ANTHROPIC_API_KEY={key} for the test run"),
        record(
            "user",
            7,
            message={
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": f"aws={aws}\n{private}"}
                ],
            },
        ),
    ]
    write_jsonl(transcript(cfg), session_records(extra=extra))
    report = ingest(cfg)
    assert report.secrets_redacted >= 3
    blobs = b"".join(p.read_bytes() for p in cfg.index_path.parent.glob("*.db*"))
    for archive in cfg.raw_dir.rglob("*.gz"):
        blobs += gzip.decompress(archive.read_bytes())
    for secret in (key, aws, "MIIEowIBAAKCAQEA7v"):
        assert secret.encode() not in blobs


def test_history_outlives_the_agents_cleanup(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    before = {t for t, _ in index_rows(cfg) if t.startswith("[raw:")}
    archives = list(cfg.raw_dir.rglob(f"{SID}.jsonl.gz"))
    assert len(archives) == 1
    transcript(cfg).unlink()
    report = ingest(cfg)
    assert report.kept_from_archive == 1
    assert {t for t, _ in index_rows(cfg) if t.startswith("[raw:")} == before
    reindex(cfg)
    assert {t for t, _ in index_rows(cfg) if t.startswith("[raw:")} == before


def test_forget_removes_a_session_everywhere_and_for_good(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    result = forget(cfg, SID)
    assert result["chunks"] == 5
    assert not list(cfg.raw_dir.rglob(f"{SID}*"))
    with transcript(cfg).open("a") as fh:
        fh.write(json.dumps(user(9, "one more thing")) + "\n")
    ingest(cfg)
    store = open_store(cfg)
    assert store.get_session(SID) is None
    assert store.chunks_for_session(SID) == []
    store.close()
    with pytest.raises(LookupError):
        forget(cfg, "no-such-session")


def test_headless_runs_are_skipped(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    records = [dict(r, entrypoint="sdk-cli") for r in session_records(SID2)]
    write_jsonl(cfg.transcript_dirs[0] / "-home-dev-shop" / f"{SID2}.jsonl", records)
    report = ingest(cfg)
    assert report.headless_skipped == 1
    store = open_store(cfg)
    assert store.get_session(SID2) is None
    store.close()


def test_second_ingest_waits_for_the_lock(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    messages: list[str] = []
    with FileLock(str(cfg.home / "ingest.lock")), pytest.raises(IngestBusy):
        ingest(cfg, wait=0.2, on_wait=messages.append)
    assert messages and "another ingest is running" in messages[0]


def test_damaged_index_gives_one_clear_line(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    cfg.index_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.index_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="reindex"):
        ingest(cfg)
    reindex(cfg)
    assert open_store(cfg).stats()["chunks"]["raw"] == 5


def test_summary_chunks_follow_the_newest_summary(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    folder = cfg.compressed_dir / "2026"
    folder.mkdir(parents=True)
    head = (
        f"---\nsession_id: {SID}\nagent: claude-code\nproject: shop\n"
        "started: 2026-03-10T09:00:00Z\nended: 2026-03-10T10:00:00Z\n"
    )
    body = "---\n## Goal\n{goal}\n\n## What happened\nExport fixed.\n"
    (folder / f"{SID}.md").write_text(head + body.format(goal="Old goal wording."))
    ingest(cfg)
    (folder / f"{SID}.2.md").write_text(
        head + f"supersedes: {SID}.md\n" + body.format(goal="Newer goal wording.")
    )
    ingest(cfg)
    store = open_store(cfg)
    texts = [h.text for h in store.chunks_for_tag(Tag.session(SID))]
    store.close()
    assert any("Newer goal" in t for t in texts)
    assert not any("Old goal" in t for t in texts)
    assert (folder / f"{SID}.md").exists()  # append-only: the old file stays


def test_kill_mid_ingest_then_reingest_equals_a_clean_run(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path / "a")
    for i in range(40):
        sid = f"aaaaaaaa-0000-4000-8000-{i:012d}"
        write_jsonl(
            cfg.transcript_dirs[0] / "-home-dev-shop" / f"{sid}.jsonl", session_records(sid)
        )
    code = (
        "import sys, pathlib\n"
        "from ctxmill.config import Config\n"
        "from ctxmill.ingest import ingest\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "cfg = Config(memory_root=root/'memory', code_root=root/'code',"
        " transcript_dirs=[root/'claude'/'projects'], discover=False, embedder='hash')\n"
        "ingest(cfg)\n"
    )
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a")], env=env)
    # Let it get going, then kill it hard wherever it is.
    time.sleep(0.8)
    proc.kill()
    proc.wait()
    ingest(cfg)
    killed = index_rows(cfg)
    db = sqlite3.connect(cfg.index_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    reindex(cfg)
    assert index_rows(cfg) == killed


# -- large ingests: worker processes and a bulk load of the FTS index ---------------------------


def many_sessions(cfg: Config, n: int) -> None:
    """``n`` more transcripts, one with a secret in a tool output, beside make_memory's one."""
    key = "sk-ant-api03-" + "Zq8Wn3Rt6Yb1Kc4Vx7Lm0Pd2" + "Hs5Jf9Ga3Ue6"
    for i in range(n):
        sid = f"bbbbbbbb-0000-4000-8000-{i:012d}"
        extra = [user(6, f"run it with ANTHROPIC_API_KEY={key} please", sid)] if i == 3 else []
        write_jsonl(
            cfg.transcript_dirs[0] / f"-home-dev-p{i % 3}" / f"{sid}.jsonl",
            session_records(sid, extra=extra),
        )


def fts_settings(cfg: Config) -> tuple[dict[str, int], str | None]:
    db = sqlite3.connect(cfg.index_path)
    try:
        config = dict(db.execute("SELECT k, v FROM chunks_fts_config WHERE k != 'version'"))
        mark = db.execute("SELECT value FROM meta WHERE key = 'bulk_load'").fetchone()
    finally:
        db.close()
    return config, mark[0] if mark else None


def archives(cfg: Config) -> dict[str, bytes]:
    return {
        str(p.relative_to(cfg.raw_dir)): gzip.decompress(p.read_bytes())
        for p in cfg.raw_dir.rglob("*.gz")
    }


def test_worker_processes_build_the_same_index_and_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_memory(tmp_path)
    many_sessions(cfg, 12)
    monkeypatch.setattr(ingest_module, "LARGE_INGEST_BYTES", 0)
    report = ingest(cfg, workers=2)
    assert report.workers == 2 and report.sessions == 13 and report.problems == []
    assert report.secrets_redacted == 1
    parallel, copies = index_rows(cfg), archives(cfg)
    # The bulk load is over: FTS merges as usual again, and its index is one merged segment.
    assert fts_settings(cfg) == ({"automerge": 4, "crisismerge": 16}, None)
    reindex(cfg, workers=0)
    assert index_rows(cfg) == parallel
    assert archives(cfg) == copies and len(copies) == 13
    assert not any(b"Zq8Wn3Rt6Yb1Kc4Vx7Lm0Pd2" in data for data in copies.values())
    assert ingest(cfg, workers=2).files_read == 0


def test_a_bulk_load_left_open_by_a_killed_ingest_is_finished(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    store = open_store(cfg)
    assert isinstance(store, SQLiteStore)
    store.begin_bulk_load()
    store.close()  # as a kill would leave it: merging off, the mark set
    assert fts_settings(cfg) == ({"automerge": 0, "crisismerge": 1999}, "1")
    report = ingest(cfg)
    assert report.files_read == 0
    assert fts_settings(cfg) == ({"automerge": 4, "crisismerge": 16}, None)


def test_a_tail_whose_commit_failed_is_archived_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_memory(tmp_path)
    ingest(cfg)
    path = transcript(cfg)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(user(7, "Also check the CSV variant of the export.")) + "\n")
    write_archive = ingest_module._Ingest._archive

    def archive_then_fail(self: Any, *args: Any) -> None:
        write_archive(self, *args)  # the tail is appended to the copy ...
        raise OSError(28, "No space left on device")  # ... and the transaction rolls back

    monkeypatch.setattr(ingest_module._Ingest, "_archive", archive_then_fail)
    failed = ingest(cfg)
    assert failed.files_read == 0 and any("No space left" in p for p in failed.problems)
    monkeypatch.setattr(ingest_module._Ingest, "_archive", write_archive)
    assert ingest(cfg).files_tailed == 1
    (copy,) = archives(cfg).values()
    assert copy == path.read_bytes()


def test_worker_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXMILL_INGEST_WORKERS", "3")
    assert worker_count() == 3
    assert worker_count(0) == 0
    monkeypatch.setenv("CTXMILL_INGEST_WORKERS", "many")
    with pytest.raises(ValueError, match="CTXMILL_INGEST_WORKERS must be a whole number"):
        worker_count()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_killing_an_ingest_with_workers_leaves_no_worker_behind(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path / "a")
    many_sessions(cfg, 60)
    started = tmp_path / "started"
    # Commits are slowed down so that the kill lands while workers are reading ahead.
    code = (
        "import importlib, pathlib, sys, time\n"
        "from ctxmill.config import Config\n"
        "ingest_module = importlib.import_module('ctxmill.ingest')\n"
        "ingest_module.LARGE_INGEST_BYTES = 0\n"
        "commit = ingest_module._Ingest._commit\n"
        "def slow_commit(self, job, read):\n"
        "    commit(self, job, read)\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    time.sleep(0.05)\n"
        "ingest_module._Ingest._commit = slow_commit\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "cfg = Config(memory_root=root/'memory', code_root=root/'code',"
        " transcript_dirs=[root/'claude'/'projects'], discover=False, embedder='none')\n"
        "if __name__ == '__main__':\n"
        "    ingest_module.ingest(cfg, workers=2)\n"
    )
    script = tmp_path / "run_ingest.py"
    script.write_text(code, encoding="utf-8")
    mark = f"ctxmill-test-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, CTXMILL_TEST_MARK=mark)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "a"), str(started)], env=env
    )
    deadline = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists() and proc.poll() is None
    # the ingest, its two workers and multiprocessing's resource tracker
    assert len(_marked_processes(mark)) >= 3
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while (left := _marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    ingest(cfg)
    killed = index_rows(cfg)
    reindex(cfg)
    assert index_rows(cfg) == killed


def test_a_script_without_a_main_guard_still_ingests_and_is_told_why(tmp_path: Path) -> None:
    cfg = make_memory(tmp_path / "a")
    many_sessions(cfg, 4)
    # Each worker imports this script first, and so calls ingest() again at once.
    code = (
        "import importlib, pathlib, sys\n"
        "from ctxmill.config import Config\n"
        "ingest_module = importlib.import_module('ctxmill.ingest')\n"
        "ingest_module.LARGE_INGEST_BYTES = 0\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "cfg = Config(memory_root=root/'memory', code_root=root/'code',"
        " transcript_dirs=[root/'claude'/'projects'], discover=False, embedder='none')\n"
        "report = ingest_module.ingest(cfg, workers=2)\n"
        "print('sessions', report.sessions)\n"
    )
    script = tmp_path / "unguarded.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sessions 5" in done.stdout
    assert "if __name__ == '__main__':" in done.stderr


def _marked_processes(mark: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"CTXMILL_TEST_MARK={mark}".encode() in environ.split(b"\0"):
            found.append(int(proc.name))
    return found
