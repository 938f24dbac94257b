"""How a built ``context.md`` is scored against a golden task: claim coverage and claim precision.

The definitions are the benchmark's own (SPEC.md, "Golden-context benchmark directory"), kept apart
from the pipeline's text helpers so that a change to how the pipeline reads markdown never moves the
yardstick it is measured with.

Units
    ``context.md`` is split into *units*: list items (with their indented continuation lines and
    any fenced code inside them), blockquotes and paragraphs.  Headings, the front matter and the
    ``## Citations`` section are not units: the citations section repeats every tag with where it
    points, so counting it would credit a claim to a line that says nothing.
Coverage
    A claim is covered when some unit carries a tag matching one of the claim's ``sources`` by
    prefix (``raw:5f1c`` matches ``[raw:5f1c…#12]``) and

    * contains every one of the claim's ``keywords`` (case-insensitive substring match on the
      unit's text with its tags removed and its whitespace collapsed), or
    * when the claim lists no keywords, is similar enough to the claim's text:
      :func:`token_set_ratio` over content words ≥ :data:`FUZZY_THRESHOLD`.
Precision
    The share of tagged units whose every tag resolves to a span (a topic's lines, a raw turn, a
    summary, a code window) and whose text is supported by those spans: at least
    :data:`SUPPORT_THRESHOLD` of the unit's content words occur in the cited text.  An extractive
    excerpt scores 1.0; a sentence an LLM invented, or a tag pasted onto unrelated text, does not.
    (What a tag resolves to is the resolver's business: the golden benchmark's includes a raw
    turn's role, date and session id, which renderers print as the excerpt's label.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from ctxmill.model import TAG_IN_TEXT_RE, Tag

FUZZY_THRESHOLD = 0.75
"""Minimum :func:`token_set_ratio` between a claim without keywords and a unit's text.

0.75 means, roughly, that three quarters of the claim's content words (by characters) appear in
the unit; a paraphrase sharing only its subject ("the bot", "transcripts") stays below it."""

SUPPORT_THRESHOLD = 0.6
"""Minimum share of a unit's content words that must occur in the spans its tags cite.

Extractive excerpts sit at or near 1.0 (the renderer's own labels, such as a role or a date, cost
a few points); text that is not from the cited span rarely passes 0.4."""

EXCLUDED_SECTIONS = ("citations",)

_STOPWORDS = """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our ours out over own same she
    should so some such than that the their theirs them then there these they this those through
    to too under until up us very was we were what when where which while who whom why will with
    would you your yours"""
_STOP = frozenset(_STOPWORDS.split())
_WORD_RE = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_BULLET_RE = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+")
_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})")


@dataclass
class Unit:
    """One paragraph, list item or blockquote of a context.md, with its section and tags."""

    section: str  # the nearest level-2 heading, lowercased ("relevant history"); "" before any
    start: int  # 1-based first line
    end: int
    text: str  # the unit's text, tags included, whitespace collapsed
    tags: list[str]  # the tags it carries, as printed ("[raw:abc#3]")

    @property
    def plain(self) -> str:
        """The text with its tags removed, lowercased, whitespace collapsed."""
        return " ".join(TAG_IN_TEXT_RE.sub(" ", self.text).lower().split())


@dataclass
class Claim:
    id: str
    text: str
    sources: list[str]
    keywords: list[str] = field(default_factory=list)
    section: str | None = None

    @classmethod
    def from_yaml(cls, data: dict[str, Any], where: str) -> Claim:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a claim must be a mapping")
        missing = [k for k in ("id", "text", "sources") if not data.get(k)]
        if missing:
            raise ValueError(f"{where}: claim lacks {', '.join(missing)}")
        sources = data["sources"]
        keywords = data.get("keywords") or []
        if isinstance(sources, str):
            sources = [sources]
        if isinstance(keywords, str):
            keywords = [keywords]
        return cls(
            id=str(data["id"]),
            text=str(data["text"]),
            sources=[str(s).strip().strip("[]") for s in sources],
            keywords=[str(k) for k in keywords],
            section=str(data["section"]) if data.get("section") else None,
        )


@dataclass
class ClaimResult:
    id: str
    covered: bool
    unit: int | None = None  # the line where the covering unit starts
    best_similarity: float | None = None  # for keyword-less claims: the best ratio seen

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "covered": self.covered}
        if self.unit is not None:
            out["line"] = self.unit
        if self.best_similarity is not None:
            out["similarity"] = round(self.best_similarity, 3)
        return out


@dataclass
class Precision:
    tagged: int  # tagged units scored
    supported: int  # of those, units whose tags all resolve and whose text the spans support
    unresolved: list[str] = field(default_factory=list)  # tags that resolve to nothing
    unsupported: list[int] = field(default_factory=list)  # start lines of unsupported units

    @property
    def value(self) -> float | None:
        return self.supported / self.tagged if self.tagged else None


def split_units(markdown: str) -> list[Unit]:
    """Split a context.md into scored units (see the module docstring)."""
    lines = markdown.splitlines()
    i = 0
    if lines and lines[0].strip() == "---":
        for j in range(1, len(lines)):
            if lines[j].strip() in ("---", "..."):
                i = j + 1
                break
    units: list[Unit] = []
    section = ""
    cur: list[str] = []
    cur_start = 0
    kind = ""  # "item" | "para" | "quote"
    item_indent = 0
    fence: str | None = None

    def flush(end: int) -> None:
        nonlocal cur, kind
        text = " ".join(" ".join(cur).split())
        if text and section not in EXCLUDED_SECTIONS:
            tags = [m.group(0) for m in TAG_IN_TEXT_RE.finditer(text)]
            units.append(Unit(section, cur_start, end, text, tags))
        cur, kind = [], ""

    for n in range(i, len(lines)):
        line = lines[n]
        lineno = n + 1
        if fence is not None:
            cur.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        if m := _FENCE_RE.match(line):
            if not cur:
                cur_start, kind = lineno, "para"
            cur.append(line)
            fence = m.group(1)[:3]
            continue
        if not line.strip():
            if kind == "item":
                # A blank line ends an item unless the next content line is indented under it.
                nxt = next((ln for ln in lines[n + 1 :] if ln.strip()), "")
                indent = len(nxt) - len(nxt.lstrip())
                if nxt and indent > item_indent:
                    continue
            flush(lineno - 1)
            continue
        if h := _HEADING_RE.match(line):
            flush(lineno - 1)
            if len(h.group(1)) <= 2:
                section = h.group(2).strip().lower()
            continue
        bullet = _BULLET_RE.match(line)
        if bullet:
            indent = len(bullet.group(1))
            if kind == "item" and indent > item_indent:
                cur.append(line)  # a nested item belongs to its parent
                continue
            flush(lineno - 1)
            cur, cur_start, kind, item_indent = [line[bullet.end() :]], lineno, "item", indent
            continue
        quoted = line.lstrip().startswith(">")
        if quoted and kind not in ("quote", "item"):
            flush(lineno - 1)
            cur_start, kind = lineno, "quote"
        if not cur:
            cur_start, kind = lineno, kind or "para"
        cur.append(line.lstrip().lstrip(">").strip() if quoted else line)
    flush(len(lines))
    return units


def content_words(text: str) -> list[str]:
    """Lowercased words (letters and digits) that are not stopwords, in order."""
    return [w for w in _WORD_RE.findall(text.lower()) if w not in _STOP and len(w) > 1]


def token_set_ratio(a: str, b: str) -> float:
    """The token-set ratio of two texts over their content words, in [0, 1].

    The same construction as the common fuzzy-matching ``token_set_ratio``: with ``I`` the sorted
    shared words and ``A``/``B`` the sorted words only in a/b, the best of
    ``ratio(I, I+A)``, ``ratio(I, I+B)`` and ``ratio(I+A, I+B)``, where ``ratio`` is difflib's
    character similarity.  When every word of the shorter text occurs in the longer one, it is 1.
    """
    wa, wb = set(content_words(a)), set(content_words(b))
    if not wa or not wb:
        return 0.0
    inter = " ".join(sorted(wa & wb))
    only_a = " ".join(sorted(wa - wb))
    only_b = " ".join(sorted(wb - wa))
    combined_a = f"{inter} {only_a}".strip()
    combined_b = f"{inter} {only_b}".strip()
    if not inter:
        return SequenceMatcher(None, combined_a, combined_b, autojunk=False).ratio()
    return max(
        SequenceMatcher(None, inter, combined_a, autojunk=False).ratio(),
        SequenceMatcher(None, inter, combined_b, autojunk=False).ratio(),
        SequenceMatcher(None, combined_a, combined_b, autojunk=False).ratio(),
    )


def tag_matches(tag: str, source: str) -> bool:
    """Prefix match of a printed tag against a claim source, brackets ignored."""
    return tag.strip("[]").startswith(source.strip().strip("[]"))


def claim_covered(claim: Claim, units: Sequence[Unit]) -> ClaimResult:
    best: float | None = None
    keywords = [" ".join(k.lower().split()) for k in claim.keywords if k.strip()]
    for unit in units:
        if not any(tag_matches(t, s) for t in unit.tags for s in claim.sources):
            continue
        if keywords:
            plain = unit.plain
            if all(k in plain for k in keywords):
                return ClaimResult(claim.id, True, unit.start)
            continue
        ratio = token_set_ratio(claim.text, TAG_IN_TEXT_RE.sub(" ", unit.text))
        best = ratio if best is None else max(best, ratio)
        if ratio >= FUZZY_THRESHOLD:
            return ClaimResult(claim.id, True, unit.start, ratio)
    return ClaimResult(claim.id, False, None, best)


def coverage(claims: Sequence[Claim], markdown: str) -> list[ClaimResult]:
    units = split_units(markdown)
    return [claim_covered(c, units) for c in claims]


Resolver = Callable[[Tag], str | None]
"""Returns the text a tag points to, or None when it resolves to nothing."""


def support(text: str, cited: Iterable[str]) -> float:
    """The share of a unit's content words that occur in the cited spans."""
    words = content_words(TAG_IN_TEXT_RE.sub(" ", text))
    if not words:
        return 1.0
    pool: set[str] = set()
    for span in cited:
        pool.update(content_words(span))
    return sum(1 for w in words if w in pool) / len(words)


def precision(markdown: str, resolve: Resolver) -> Precision:
    result = Precision(0, 0)
    cache: dict[str, str | None] = {}
    for unit in split_units(markdown):
        if not unit.tags:
            continue
        result.tagged += 1
        spans: list[str] = []
        ok = True
        for printed in unit.tags:
            if printed not in cache:
                try:
                    cache[printed] = resolve(Tag.parse(printed))
                except (ValueError, LookupError, OSError):
                    cache[printed] = None
            span = cache[printed]
            if span is None:
                ok = False
                if printed not in result.unresolved:
                    result.unresolved.append(printed)
            else:
                spans.append(span)
        if ok and support(unit.text, spans) >= SUPPORT_THRESHOLD:
            result.supported += 1
        else:
            result.unsupported.append(unit.start)
    return result
