"""Compressing a long prompt under a budget, and the retention benchmark on the shipped prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxmill.bench.distill import BenchError, Fact, run_bench
from ctxmill.distill import DistillError, compress_prompt, prompt_units, rule_score
from ctxmill.tokens import count_tokens

BENCH = Path(__file__).resolve().parent.parent / "bench" / "distill"

POLICY = """# Deploy policy

Welcome to the deploy policy! We are excited to share how we ship.

## Rules

- Never deploy on Fridays after 15:00 UTC.
- Every deploy must pass `make release-check` first.
- Rollbacks use `deployctl rollback --to PREVIOUS`; do not revert by hand.
- Never deploy on Fridays after 15:00 UTC, please.

Our team has grown a lot over the years, and we love how the process evolved. It is worth noting
that everyone contributed.

## Limits

| Service | Max replicas |
|---|---|
| api | 12 |
| worker | 30 |

In summary, thanks for reading and happy shipping!
"""


def test_rules_and_facts_are_kept_filler_and_duplicates_dropped() -> None:
    result = compress_prompt(POLICY, budget=200)
    text = result.text
    for rule in (
        "- Never deploy on Fridays after 15:00 UTC.",
        "- Every deploy must pass `make release-check` first.",
        "- Rollbacks use `deployctl rollback --to PREVIOUS`; do not revert by hand.",
        "| api | 12 |",
    ):
        assert rule in text
    assert "## Rules" in text and "| Service | Max replicas |\n|---|---|" in text
    assert "excited" not in text and "happy shipping" not in text and "please" not in text
    report = result.as_json()
    dropped = {d["text"]: d["reason"] for d in report["dropped"]}
    assert dropped["- Never deploy on Fridays after 15:00 UTC, please."] == "duplicate of line 7"
    assert dropped["In summary, thanks for reading and happy shipping!"] == "filler"
    assert report["tokens_after"] == count_tokens(text) <= 200
    assert report["tokens_before"] == count_tokens(POLICY)


def test_the_budget_is_met_by_dropping_the_weakest_units_whole() -> None:
    full = compress_prompt(POLICY, budget=10_000)
    tight = compress_prompt(POLICY, budget=40)
    assert tight.tokens_after <= 40 < full.tokens_after
    kept = [line for line in tight.text.splitlines() if line.strip()]
    # Whatever survives is a whole line of the original, never a cut one.
    assert kept and all(line in POLICY for line in kept)
    assert "budget" in {r.split()[0] for r in tight.dropped.values()}
    assert compress_prompt(POLICY, budget=1).text == ""
    with pytest.raises(DistillError):
        compress_prompt(POLICY, budget=0)


def test_units_and_scores() -> None:
    units = prompt_units(POLICY)
    kinds = [u.kind for u in units]
    assert kinds.count("heading") == 3 and kinds.count("row") == 2 and kinds.count("head") == 1
    assert rule_score("Never deploy on Fridays after 15:00 UTC.") > rule_score(
        "Our team has grown a lot over the years."
    )
    assert rule_score("Thanks for reading, happy shipping!") <= 0


def test_shipped_bench_prompts_are_long_with_many_facts() -> None:
    tasks = sorted(BENCH.glob("*.yaml"))
    assert len(tasks) >= 3
    for task in tasks:
        prompt = task.with_suffix(".md")
        assert count_tokens(prompt.read_text(encoding="utf-8")) >= 1500, prompt.name
        assert task.read_text(encoding="utf-8").count("- id:") >= 8, task.name


def test_bench_retention_beats_truncation() -> None:
    run = run_bench(BENCH)
    report = run.as_json()
    assert len(report["prompts"]) >= 3
    for p in report["prompts"]:
        assert p["tokens_after"] <= p["budget"] < p["tokens_before"]
    assert report["average_retention"] >= 0.8
    assert report["average_retention"] > report["average_baseline_retention"]


def test_bench_rejects_facts_the_prompt_does_not_hold(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text("Never deploy on Fridays.\n")
    (tmp_path / "p.yaml").write_text(
        "prompt: p.md\nbudget: 10\nfacts:\n  - id: a\n    keywords: [Friday]\n"
        "  - id: b\n    keywords: [Monday]\n"
    )
    with pytest.raises(BenchError, match=r"facts not in p\.md itself: b"):
        run_bench(tmp_path)
    (tmp_path / "p.yaml").write_text("prompt: p.md\nbudget: many\nfacts: []\n")
    with pytest.raises(BenchError, match="'budget' must be a positive integer"):
        run_bench(tmp_path)
    assert Fact("x", ["off by default"]).kept_in("ships off by\ndefault")
