"""What a brief asks for: its content words, the identifiers and paths it names, and whether it
asks about history (which widens the pre-filter's time window).

Everything here is plain text analysis shared by every stage, so that the pre-filter, the workers
and the aggregator agree on what "matches the brief" means.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each else few for from
    further get got had has have having he her here hers him his how i if in into is it its itself
    just let like make me more most my no nor not now of off on once only or other our ours out over
    own same she should so some such than that the their theirs them then there these they this
    those through to too under until up us use used using very via was we were what when where
    which while who whom why will with would yet you your yours"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Words that name the kind of work rather than its subject: they match every session and so
# carry no signal for retrieval.
_WORK_WORD_TEXT = """add adding change changes changing delete drop fix fixes fixing flag implement
    implementing make migrate migrating migration move new need needs please port refactor remove
    rename replace task update updating work working want"""
_WORK_WORDS = frozenset(_WORK_WORD_TEXT.split())

_HISTORY_WORDS = re.compile(
    r"\b(originally|original|why did we|why do we|why we|last (?:year|quarter|month|spring|"
    r"summer|autumn|fall|winter)|history|historical(?:ly)?|before|previous(?:ly)?|earlier|"
    r"used to|back when|in the past|ago|again|revert(?:ed)?|re-?attempt|retry the|first attempt|"
    r"last time|when did|who decided|(?:19|20)\d\d)\b",
    re.I,
)
_MONTHS = "|".join(m for m in calendar.month_name if m)
_MONTH_RE = re.compile(rf"\b(?:{_MONTHS})\b")  # capitalised only: "may" is a verb

_PATH_RE = re.compile(
    r"(?<![\w/.-])(?:[\w.-]+/)+[\w.-]+|\b[\w-]+\.(?:py|js|ts|tsx|jsx|go|rs|java|"
    r"rb|php|c|h|cc|cpp|hpp|cs|kt|swift|sql|toml|yaml|yml|json|md|sh|ini|cfg)\b"
)
_FLAG_RE = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]+")
_CAMEL_RE = re.compile(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z0-9]*\b|\b[A-Z]{2,}[a-z][A-Za-z0-9]*\b")
_SNAKE_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b")
_CONST_RE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
_DOTTED_RE = re.compile(r"\b[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+(?:\(\))?")
_BACKTICK_RE = re.compile(r"`([^`\n]{2,80})`")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9']*|\d+(?:\.\d+)?")

# "rename get_user to fetch_user", "replace X", "remove the --legacy flag": what the brief says
# will change, whose every reference the code worker lists.
_CHANGE_VERBS = re.compile(
    r"\b(rename|replace|remove|drop|delete|deprecate|migrate|change|split|move|rewrite|retire|"
    r"swap|refactor|convert|upgrade|downgrade|switch)\b",
    re.I,
)


_SUFFIXES = (
    "ations",
    "ation",
    "ings",
    "ing",
    "ions",
    "ion",
    "ers",
    "er",
    "ed",
    "es",
    "s",
    "ate",
    "at",
    "ly",
    "e",
)


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A deliberately crude stemmer: enough that "migrate", "migration" and "migrating" meet, and
    "logs", "logged" and "logging" too.  Two rounds of suffix stripping, stems of 3+ letters.

    Cached: a build stems the same few thousand words over and over."""
    w = word.lower()
    for _ in range(2):
        for suffix in _SUFFIXES:
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                if (
                    suffix in ("ing", "ings", "ed")
                    and len(w) >= 4
                    and w[-1] == w[-2]
                    and w[-1] not in "lsz"
                ):
                    w = w[:-1]
                break
        else:
            break
    return w


def words(text: str) -> list[str]:
    """Lower-cased word tokens (identifiers split at underscores and dots)."""
    return [w.lower() for w in _WORD_RE.findall(text.replace("_", " "))]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text) if not w.isdigit()}


@dataclass
class Brief:
    text: str
    terms: list[str] = field(default_factory=list)
    """Content words of the brief, most specific first (identifiers' parts included)."""
    identifiers: list[str] = field(default_factory=list)
    """Paths, CamelCase, snake_case, CONSTANTS, dotted names and --flags, as written."""
    paths: list[str] = field(default_factory=list)
    changing: list[str] = field(default_factory=list)
    """Identifiers the brief says will change: every reference to them is a consumer to check."""
    history: bool = False

    weights: dict[str, float] = field(default_factory=dict)
    """Weight of each term stem (rarer in the memory: heavier); 1.0 for a stem not listed."""

    @property
    def stems(self) -> set[str]:
        return {stem(t) for t in self.terms if not t.isdigit()}

    def overlap(self, text: str) -> float:
        """Weighted share of the brief's term stems that occur in ``text`` (0..1), plus the share
        of its identifiers that occur verbatim (so an identifier counts about double)."""
        wanted = self.stems
        if not wanted:
            return 0.0
        have = stems(text)
        total = sum(self.weights.get(s, 1.0) for s in wanted)
        score = sum(self.weights.get(s, 1.0) for s in wanted & have) / total if total else 0.0
        if self.identifiers:
            lowered = text.lower()
            hits = sum(1 for ident in self.identifiers if ident.lower() in lowered)
            score += hits / len(self.identifiers)
        return score

    def weigh(self, documents: list[str]) -> None:
        """Weight the term stems by inverse document frequency over ``documents`` (lower-cased
        texts), so that a rare word of the brief ("Celery") counts for more than a common one
        ("job").  Substring presence is close enough for a weight."""
        if not documents:
            return
        n = len(documents)
        for s in self.stems:
            df = sum(1 for d in documents if s in d)
            self.weights[s] = max(0.2, math.log((n + 1) / (df + 0.5)))


def analyze(text: str) -> Brief:
    """Parse a brief; never fails (an empty brief yields an empty analysis)."""
    text = " ".join(text.split())
    paths = _unique(m.rstrip(".,;:") for m in _PATH_RE.findall(text))
    idents: list[str] = [*paths]
    for rx in (_FLAG_RE, _CONST_RE, _SNAKE_RE, _CAMEL_RE):
        idents += rx.findall(text)
    idents += [d for d in _DOTTED_RE.findall(text) if not _is_sentence_dot(d)]
    idents += [b.strip() for b in _BACKTICK_RE.findall(text)]
    identifiers = _unique(i for i in idents if len(i) > 2)
    # "session.py" inside "ledgerline/auth/session.py" is the same name, not a second one.
    identifiers = [i for i in identifiers if not any(i != p and p.endswith("/" + i) for p in paths)]
    terms = _unique(
        w for w in content_words(text) if w not in _WORK_WORDS and (len(w) > 2 or w.isdigit())
    )
    history = bool(_HISTORY_WORDS.search(text) or _MONTH_RE.search(text))
    changing: list[str] = []
    if _CHANGE_VERBS.search(text):
        changing = [i for i in identifiers if not i.startswith("--") or "flag" in text.lower()]
    return Brief(
        text=text,
        terms=terms,
        identifiers=identifiers,
        paths=paths,
        changing=changing,
        history=history,
    )


def identifiers_in(text: str) -> list[str]:
    """Code-like names in free text (backticked spans, snake_case, CamelCase, CONSTANTS, paths)."""
    found: list[str] = []
    for span in _BACKTICK_RE.findall(text):
        span = span.strip().rstrip("()")
        if re.fullmatch(r"[\w./:-]+", span) and not span.isdigit():
            found.append(span)
    found += [m.rstrip(".,;:") for m in _PATH_RE.findall(text)]
    for rx in (_CONST_RE, _SNAKE_RE, _CAMEL_RE):
        found += rx.findall(text)
    return _unique(found)


def _is_sentence_dot(token: str) -> bool:
    """ "done.Then" is a typo, "e.g" an abbreviation; dotted identifiers have no short parts."""
    parts = token.rstrip("()").split(".")
    return any(len(p) < 2 for p in parts) or token.lower() in {"e.g", "i.e", "etc"}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))
