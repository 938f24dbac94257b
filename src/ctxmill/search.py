"""Search over the index: keyword (FTS5/BM25), semantic (vectors), hybrid (RRF) and auto routing.

``auto`` routes by query type, as the date-heavy corpora that motivated ctxmill need: a query that
names a date or a period goes to the keyword index restricted to that period (the relevance marker
is one token in a sea of boilerplate, which embeddings blur), an open-ended one goes to hybrid.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from ctxmill.embed import Embedder, get_embedder
from ctxmill.store.base import Filters, Hit, Store

MODES = ("auto", "keyword", "semantic", "hybrid")
RRF_K = 60

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ISO_MONTH = re.compile(r"\b(\d{4})-(\d{2})\b(?!-)")
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_RE})\.?(?:,?\s+(\d{{4}}))?\b", re.I
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b", re.I
)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{4}})\b", re.I)
_MONTH_ONLY = re.compile(rf"\b(?:in|during|since|from|of)\s+({_MONTH_RE})\b", re.I)


@dataclass
class SearchResult:
    hits: list[Hit]
    mode: str  # the mode that actually ran
    period: tuple[str, str] | None = None  # the date window auto routing applied
    notes: list[str] = field(default_factory=list)


def date_window(query: str, today: date | None = None) -> tuple[str, str] | None:
    """The [since, until) ISO window a query names, if any ("2026-03-14", "March 2026", "May 3")."""
    today = today or datetime.now(UTC).date()
    if m := _ISO_DAY.search(query):
        day = _safe_date(int(m[1]), int(m[2]), int(m[3]))
        if day:
            return _window(day, day + timedelta(days=1))
    if m := _DAY_MONTH.search(query):
        year = int(m[3]) if m[3] else _recent_year(_MONTHS[m[2].lower()], today)
        day = _safe_date(year, _MONTHS[m[2].lower()], int(m[1]))
        if day:
            return _window(day, day + timedelta(days=1))
    if m := _MONTH_DAY.search(query):
        year = int(m[3]) if m[3] else _recent_year(_MONTHS[m[1].lower()], today)
        day = _safe_date(year, _MONTHS[m[1].lower()], int(m[2]))
        if day:
            return _window(day, day + timedelta(days=1))
    if m := _MONTH_YEAR.search(query):
        return _month(int(m[2]), _MONTHS[m[1].lower()])
    if (m := _ISO_MONTH.search(query)) and 1 <= int(m[2]) <= 12:
        return _month(int(m[1]), int(m[2]))
    if m := _MONTH_ONLY.search(query):
        month = _MONTHS[m[1].lower()]
        return _month(_recent_year(month, today), month)
    lowered = query.lower()
    if "yesterday" in lowered:
        return _window(today - timedelta(days=1), today)
    if "last week" in lowered:
        return _window(today - timedelta(days=7), today + timedelta(days=1))
    return None


def search(
    store: Store,
    query: str,
    *,
    mode: str = "auto",
    k: int = 10,
    filters: Filters | None = None,
    embedder: Embedder | None = None,
    today: date | None = None,
) -> SearchResult:
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    filters = filters or Filters()
    if mode == "auto":
        window = None if (filters.since or filters.until) else date_window(query, today)
        if window:
            dated = replace(filters, since=window[0], until=window[1])
            hits = store.keyword_search(query, dated, k)
            if hits:
                return SearchResult(hits, "keyword", window)
            result = search(store, query, mode="hybrid", k=k, filters=filters, embedder=embedder)
            result.notes.append(f"nothing matched in {window[0][:10]}..{window[1][:10]}; widened")
            return result
        return search(store, query, mode="hybrid", k=k, filters=filters, embedder=embedder)
    if mode == "keyword":
        return SearchResult(store.keyword_search(query, filters, k), "keyword")
    vector_hits, notes = _semantic(store, query, filters, max(k, 50), embedder)
    if mode == "semantic":
        return SearchResult(vector_hits[:k], "semantic", notes=notes)
    keyword_hits = store.keyword_search(query, filters, max(k, 50), snippets=False)
    fused = rrf([keyword_hits, vector_hits], k)
    # Marking terms costs a lookup per hit: only for the hits that survive the fusion.
    store.keyword_snippets(query, [h for h in fused if "keyword" in h.found_by])
    return SearchResult(fused, "hybrid", notes=notes)


def rrf(rankings: list[list[Hit]], k: int, weights: list[float] | None = None) -> list[Hit]:
    """Reciprocal rank fusion: robust to the incomparable score scales of BM25 and cosine."""
    fused: dict[int, Hit] = {}
    scores: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        weight = weights[i] if weights else 1.0
        for rank, hit in enumerate(ranking, 1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (RRF_K + rank)
            if hit.chunk_id in fused:
                kept = fused[hit.chunk_id]
                kept.found_by = list(dict.fromkeys([*kept.found_by, *hit.found_by]))
                if not kept.snippet or "«" not in kept.snippet:
                    kept.snippet = hit.snippet or kept.snippet
            else:
                fused[hit.chunk_id] = replace(hit, found_by=list(hit.found_by))
    ordered = sorted(fused.values(), key=lambda h: -scores[h.chunk_id])[:k]
    for hit in ordered:
        hit.score = scores[hit.chunk_id]
    return ordered


def _semantic(
    store: Store, query: str, filters: Filters, k: int, embedder: Embedder | None
) -> tuple[list[Hit], list[str]]:
    name = store.embedder_name()
    if name is None:
        return [], ["no vectors in the index (embedder off or not yet run); keyword only"]
    embedder = embedder if embedder is not None and embedder.name == name else get_embedder(name)
    vector = embedder.embed([query])[0]
    return store.vector_search(vector, filters, k), []


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _recent_year(month: int, today: date) -> int:
    """A month named without a year means its most recent occurrence."""
    return today.year if month <= today.month else today.year - 1


def _month(year: int, month: int) -> tuple[str, str]:
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return _window(start, end)


def _window(start: date, end: date) -> tuple[str, str]:
    return (start.isoformat(), end.isoformat())
