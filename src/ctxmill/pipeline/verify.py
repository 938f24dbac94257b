"""Stage 4 (optional): a model rewrites and merges excerpts into claims; code checks every claim.

The model sees excerpts under short ids (E1, E2 …) and never a tag.  It answers in JSON, each claim
citing the ids it rests on.  The system then

* drops a claim that cites no id or an id it was not given,
* maps the ids to the tags the system attached to those excerpts,
* checks the claim against the cited text: most of its content words must occur there, and every
  number and identifier in it must occur there verbatim,
* drops what it cannot support, or with ``keep_unverified`` keeps it marked ``(unverified)``.

Excerpts that no surviving claim cites stay in the context as they were, so a model that does
badly costs wording, never content.  A model that fails (timeout, error, no JSON) leaves the
extractive context and a note saying so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from ctxmill.llm.base import Completion, Message
from ctxmill.pipeline.aggregate import SECTIONS, UNRESOLVED_GROUPS, Entry
from ctxmill.pipeline.brief import identifiers_in, stems

SUPPORT_THRESHOLD = 0.6  # share of a claim's content stems that must occur in the cited text
REWRITTEN = ("recent_state", "history", "unresolved")
_NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")

SYSTEM = """You condense notes for a software engineer about to start a task.
You receive excerpts, each with an id like E3, grouped by section. Rewrite them into fewer,
clearer claims: merge excerpts that say the same thing, drop chatter, keep every fact that
matters for the task. Use only what the excerpts say. Copy numbers, dates, names and
identifiers exactly. Never state a failed or abandoned attempt as current fact.
Every claim must cite the ids of the excerpts it rests on. Do not write citations in the text.
Answer with JSON only, in this shape:
{"claims": [{"section": "recent_state|history|unresolved", "text": "...", "cite": ["E1", "E4"]}]}"""


class Completer(Protocol):
    """A backend, or an LLMRunner wrapping one (retries, budget, call log)."""

    def complete(
        self, messages: list[Message], *, system: str | None = ..., max_tokens: int = ...
    ) -> Completion: ...


@dataclass
class Report:
    backend: str
    claims: int = 0  # claims the model returned
    kept: int = 0
    dropped: list[str] = field(default_factory=list)  # one reason per dropped claim
    unverified: int = 0
    fallback: str | None = None  # why the extractive text was kept, when it was

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "claims": self.claims,
            "kept": self.kept,
            "dropped": self.dropped,
            "unverified": self.unverified,
            "fallback": self.fallback,
        }


def number_entries(entries: list[Entry]) -> None:
    """Give each entry an excerpt id in reading order; ids are what a model may cite."""
    for n, e in enumerate(sorted(entries, key=lambda e: SECTIONS.index(e.section)), 1):
        e.id = f"E{n}"


def prompt(brief: str, entries: list[Entry]) -> str:
    lines = [f"Task brief: {brief}", ""]
    for section in REWRITTEN:
        mine = [e for e in entries if e.section == section and _rewritable(e)]
        if not mine:
            continue
        lines.append(f"## {section}")
        for e in mine:
            where = f"{e.group} · " if e.group else ""
            source = e.label or e.date or "undated"  # "2026-03-05 · user in “title”"
            lines.append(f"{e.id} [{where}{source}] {' '.join(e.text.split())}")
        lines.append("")
    return "\n".join(lines)


def _rewritable(e: Entry) -> bool:
    # Conflict notes are the system's own record of a disagreement; a model may not reword them.
    return e.section in REWRITTEN and e.group != UNRESOLVED_GROUPS[0]


def rewrite(
    model: Completer,
    brief: str,
    entries: list[Entry],
    *,
    label: str = "model",
    keep_unverified: bool = False,
    max_tokens: int = 4096,
) -> tuple[list[Entry], Report]:
    """Entries with the model's verified claims in place of the excerpts they cite."""
    report = Report(backend=label)
    number_entries(entries)
    candidates = [e for e in entries if _rewritable(e)]
    if not candidates:
        return entries, report
    try:
        completion = model.complete(
            [Message("user", prompt(brief, entries))], system=SYSTEM, max_tokens=max_tokens
        )
    except Exception as exc:  # the model step is optional: any failure keeps the extractive text
        report.fallback = f"{type(exc).__name__}: {exc}"
        return entries, report
    claims = parse_claims(completion.text)
    if claims is None:
        report.fallback = "the model's answer was not the JSON asked for"
        return entries, report
    report.claims = len(claims)
    by_id = {e.id: e for e in candidates}
    replaced: set[str] = set()
    made: list[Entry] = []
    # Reasons name the claim by number, never by its text: an unsupported claim must not reach
    # context.md, not even in the generation record.
    for n, claim in enumerate(claims, 1):
        text = " ".join(str(claim.get("text", "")).split())
        raw_cites = claim.get("cite", [])
        raw_cites = [raw_cites] if isinstance(raw_cites, str) else raw_cites
        cites = (
            [str(c).strip() for c in raw_cites if str(c).strip()]
            if isinstance(raw_cites, list)
            else []
        )
        if not text:
            report.dropped.append(f"claim {n}: empty")
            continue
        if not cites:
            report.dropped.append(f"claim {n}: cites nothing")
            continue
        unknown = [c for c in cites if c not in by_id]
        if unknown:
            shown = ", ".join(c[:12] for c in unknown[:3])
            report.dropped.append(f"claim {n}: cites {shown}, which it was not given")
            continue
        cited = [by_id[c] for c in dict.fromkeys(cites)]
        problem = support_problem(
            text, [s for e in cited for s in e.sources] + [e.text for e in cited]
        )
        if problem:
            if not keep_unverified:
                report.dropped.append(f"claim {n}: {problem}")
                continue
            text += " (unverified)"
            report.unverified += 1
        else:
            replaced.update(e.id for e in cited)
        made.append(_claim_entry(text, cited))
        report.kept += 1
    if report.kept == 0:
        report.fallback = "no claim of the model's could be verified"
        return entries, report
    kept = [e for e in entries if e.id not in replaced]
    return kept + made, report


def parse_claims(text: str) -> list[dict[str, Any]] | None:
    """The ``claims`` list from a reply that may wrap its JSON in prose or a code fence."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    claims = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(claims, list):
        return None
    return [c for c in claims if isinstance(c, dict)]


def support_problem(claim: str, cited: list[str]) -> str | None:
    """Why ``claim`` is not supported by the cited texts, or None when it is.

    The reason never repeats what the claim invented, so it can be recorded safely."""
    source = " ".join(cited)
    lowered = source.lower()
    for number in _NUMBER_RE.findall(claim):
        if number not in source:
            return "has a number that is not in the cited text"
    for ident in identifiers_in(claim):
        if ident.lower().strip("`") not in lowered:
            return "names an identifier that is not in the cited text"
    want = stems(claim)
    if not want:
        return "says nothing"
    have = stems(source)
    share = len(want & have) / len(want)
    if share < SUPPORT_THRESHOLD:
        return f"only {share:.0%} of its words are in the cited text"
    return None


def _claim_entry(text: str, cited: list[Entry]) -> Entry:
    first = cited[0]
    # Precedence: Recent state holds only what topics say.  A claim resting on anything else
    # is history, whatever section the model put it in.
    section = first.section
    if section == "recent_state" and any(e.layer.value != "topic" for e in cited):
        section = "history"
    tags = list(dict.fromkeys(t for e in cited for t in e.tags))
    dates = sorted(e.date for e in cited if e.date)
    return Entry(
        section=section,
        group=first.group if section == first.section else "What happened",
        text=text,
        tags=tags,
        score=max(e.score for e in cited),
        layer=min((e.layer for e in cited), key=lambda layer: layer.authority),
        sources=[s for e in cited for s in e.sources],
        date=dates[0] if dates else None,
        order=first.order,
    )
