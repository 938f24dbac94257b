"""Retention of must-keep facts when a long prompt is compressed (``ctxmill bench distill``).

A task names a long prompt, a token budget and the facts a compressed version must keep, in the
golden tasks' shape, with the prompt as the only source::

    prompt: payments-policy.md        # relative to the task file
    budget: 700
    facts:
      - id: refund-cap
        keywords: ["$500", "approval"]   # all must appear (case-insensitive) to count as kept

Retention is kept facts / all facts per prompt, averaged over prompts.  The same budget is also
spent on the prompt's head (truncation at a sentence end), the baseline any compressor has to beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctxmill.distill import compress_prompt
from ctxmill.tokens import truncate_to_tokens


class BenchError(Exception):
    """A task that cannot be scored as written; one line for the user."""


@dataclass
class Fact:
    id: str
    keywords: list[str]

    def kept_in(self, text: str) -> bool:
        """Every keyword is in ``text`` (case and line breaks ignored)."""
        low = " ".join(text.lower().split())
        return all(" ".join(k.lower().split()) in low for k in self.keywords)


@dataclass
class PromptScore:
    id: str
    prompt: str
    budget: int
    tokens_before: int
    tokens_after: int
    facts: list[Fact]
    missing: list[str]
    baseline_missing: list[str]
    seconds: float

    @property
    def retention(self) -> float:
        return 1 - len(self.missing) / len(self.facts)

    @property
    def baseline_retention(self) -> float:
        return 1 - len(self.baseline_missing) / len(self.facts)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "budget": self.budget,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "facts": len(self.facts),
            "retained": len(self.facts) - len(self.missing),
            "retention": round(self.retention, 4),
            "missing": self.missing,
            "baseline_retention": round(self.baseline_retention, 4),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class BenchRun:
    prompts: list[PromptScore] = field(default_factory=list)

    @property
    def average_retention(self) -> float:
        return sum(p.retention for p in self.prompts) / len(self.prompts)

    @property
    def average_baseline_retention(self) -> float:
        return sum(p.baseline_retention for p in self.prompts) / len(self.prompts)

    def as_json(self) -> dict[str, Any]:
        return {
            "prompts": [p.as_json() for p in self.prompts],
            "average_retention": round(self.average_retention, 4),
            "average_baseline_retention": round(self.average_baseline_retention, 4),
        }


def load_task(path: Path) -> tuple[str, Path, int, list[Fact]]:
    """(id, prompt path, budget, facts) of one task file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a mapping with prompt, budget and facts")
    prompt, budget, facts = data.get("prompt"), data.get("budget"), data.get("facts")
    if not isinstance(prompt, str) or not (path.parent / prompt).is_file():
        raise BenchError(f"{path}: 'prompt' must name a file beside it")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise BenchError(f"{path}: 'budget' must be a positive integer")
    if not isinstance(facts, list) or not facts:
        raise BenchError(f"{path}: 'facts' must be a non-empty list")
    out: list[Fact] = []
    for i, item in enumerate(facts, 1):
        keywords = item.get("keywords") if isinstance(item, dict) else None
        if (
            not isinstance(keywords, list)
            or not keywords
            or not all(isinstance(k, str) for k in keywords)
        ):
            raise BenchError(f"{path}: fact {i} needs a non-empty list of keywords")
        out.append(Fact(str(item.get("id") or f"f{i}"), keywords))
    return str(data.get("id") or path.stem), path.parent / prompt, budget, out


def score_task(path: Path) -> PromptScore:
    task_id, prompt_path, budget, facts = load_task(path)
    text = prompt_path.read_text(encoding="utf-8")
    absent = [f.id for f in facts if not f.kept_in(text)]
    if absent:
        # The prompt is the only source: a fact it does not hold would count against any method.
        raise BenchError(f"{path}: facts not in {prompt_path.name} itself: {', '.join(absent)}")
    started = time.perf_counter()
    result = compress_prompt(text, budget)
    seconds = time.perf_counter() - started
    head = truncate_to_tokens(text, budget)
    return PromptScore(
        id=task_id,
        prompt=prompt_path.name,
        budget=budget,
        tokens_before=result.tokens_before,
        tokens_after=result.tokens_after,
        facts=facts,
        missing=[f.id for f in facts if not f.kept_in(result.text)],
        baseline_missing=[f.id for f in facts if not f.kept_in(head)],
        seconds=seconds,
    )


def run_bench(directory: Path) -> BenchRun:
    """Score every ``*.yaml`` task in ``directory``."""
    tasks = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not tasks:
        raise BenchError(f"{directory}: no *.yaml task files")
    return BenchRun([score_task(t) for t in tasks])
