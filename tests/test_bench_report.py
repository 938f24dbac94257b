"""The results log and the HTML report built from it."""

from __future__ import annotations

import json
from pathlib import Path

from ctxmill.bench.report import render_report
from ctxmill.bench.results import append, git_revision, read, record


def _golden(coverage: float, tokens: int) -> dict[str, object]:
    return record(
        "golden",
        {"threshold": 0.8},
        {
            "tasks": [
                {
                    "set": "s",
                    "id": "a",
                    "coverage": coverage,
                    "precision": 1.0,
                    "tokens": tokens,
                    "budget": 8000,
                    "claims": [{"id": "c1", "covered": True}, {"id": "c2", "covered": False}],
                },
                {
                    "set": "s",
                    "id": "b<&>",
                    "coverage": 1.0,
                    "precision": None,
                    "tokens": 900,
                    "claims": [],
                },
            ],
            "average_coverage": (coverage + 1.0) / 2,
            "average_precision": 1.0,
        },
    )


def test_log_round_trip_skips_damaged_lines(tmp_path: Path) -> None:
    log = tmp_path / "bench" / "results.jsonl"
    first, second = _golden(0.5, 4000), _golden(0.75, 5000)
    assert append(first, log, log) == [log.resolve()]  # the same log named twice is written once
    append(second, log)
    with log.open("a") as fh:
        fh.write("{not json\n\n[1, 2]\n")
    entries, skipped = read(log)
    assert [e["average_coverage"] for e in entries] == [0.75, 0.875]
    assert skipped == 2
    assert {"git_revision", "git_dirty", "timestamp", "ctxmill_version"} <= set(entries[0])


def test_git_revision_outside_a_checkout(tmp_path: Path) -> None:
    assert git_revision(tmp_path) == {"revision": None, "dirty": None}


def test_report_is_self_contained_with_both_charts() -> None:
    locomo = record(
        "locomo",
        {"budget": 1000},
        {
            "summary": {
                "questions": 10,
                "ratio_vs_bm25": 1.2,
                "ctxmill": {"recall@10": 0.6, "in_context_recall": 0.72},
                "bm25": {"recall@10": 0.5, "in_context_recall": 0.6},
                "recency": {"in_context_recall": 0.04},
            }
        },
    )
    html = render_report([_golden(0.5, 4000), _golden(0.75, 5000), locomo])
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 3  # coverage over time, tokens vs coverage, LoCoMo over time
    assert "b&lt;&amp;&gt;" in html and "b<&>" not in html
    assert "<script" not in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert "c2" in html  # the latest run's missed claim
    assert "0.720" in html


def test_report_without_runs() -> None:
    html = render_report([])
    assert "No golden runs" in html and "<svg" not in html
    json.dumps(html)
