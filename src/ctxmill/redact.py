"""Secret redaction, applied to every text before it reaches the index, an archive or a context file.

``redact(text)`` replaces each secret with ``[REDACTED:<kind>]`` and says how many it replaced.  The
replacement holds no quote and no backslash, and no pattern ends inside an escape sequence or takes
a quote, so a redacted JSON line is still valid JSON; redacting twice changes nothing more.

It runs over every transcript line at ingest (and ``redact_utf8`` over every archived file), so
almost all of its time goes into proving that a text holds no secret.  That proof is one pass, not
one pass per pattern: the text is UTF-8 encoded and sent through one ``bytes.translate`` that folds
ASCII case and maps some of the rarer letters (k w x y g, and upper-case A: the "anchors") to the
single byte ``\\x01``.  Every trigger (``sk-``, ``ghp_``, ``token``, ``-----BEGIN`` …) but one
contains an anchor, so one regex that starts with that byte finds them in one scan, and the regex
engine only stops at anchors.  The one without, ``secret``, has no letter rarer than ``c``, which
would stop the scan at 2-3% of all bytes; a substring search finds it instead.  A hit is checked
against the real bytes (``sg-`` folds like ``sk-``), and the precise pattern of a kind then runs
where its trigger starts, and nowhere else.  ``benchmarks/redact_speed.py`` measures the rate on
real transcripts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# Kinds, as they appear in the replacement.  No kind name is a keyword followed by an operator, and
# no value pattern accepts '[', which is what keeps redaction idempotent.
AWS_ACCESS_KEY = "aws-access-key"
AWS_SECRET_KEY = "aws-secret-key"
GITHUB_TOKEN = "github-token"
ANTHROPIC_KEY = "anthropic-key"
OPENAI_KEY = "openai-key"
SLACK_TOKEN = "slack-token"
SLACK_WEBHOOK = "slack-webhook"
GOOGLE_API_KEY = "google-api-key"
STRIPE_KEY = "stripe-key"
PRIVATE_KEY = "private-key"
JWT = "jwt"
URL_PASSWORD = "url-password"
SECRET_ASSIGNMENT = "secret-assignment"

KINDS = (
    AWS_ACCESS_KEY, AWS_SECRET_KEY, GITHUB_TOKEN, ANTHROPIC_KEY, OPENAI_KEY, SLACK_TOKEN,
    SLACK_WEBHOOK, GOOGLE_API_KEY, STRIPE_KEY, PRIVATE_KEY, JWT, URL_PASSWORD, SECRET_ASSIGNMENT,
)  # fmt: skip

MIN_ASSIGNED_LENGTH = 12  # an assigned value shorter than this is not treated as a secret
MIN_ASSIGNED_ENTROPY = 3.5  # bits per character


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret.  ``text[start:end]`` is what gets replaced: the whole token, but only the
    password of a URL and only the value of an assignment."""

    kind: str
    start: int
    end: int


def redact(text: str) -> tuple[str, int]:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``, and the number replaced."""
    findings = find_secrets(text)
    if not findings:
        return text, 0
    return _replace(text, findings), len(findings)


def redact_utf8(data: bytes) -> tuple[bytes, int]:
    """``redact`` for UTF-8 bytes, such as a whole transcript file; bytes that are not UTF-8 come
    back as U+FFFD.  The text is scanned in the encoded form it arrived in, and a file without a
    secret is returned as it is, so the common case encodes nothing."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        data = text.encode("utf-8")
    findings = _find(text, data) if len(text) >= 8 else []
    if not findings:
        return data, 0
    return _replace(text, findings).encode("utf-8"), len(findings)


def _replace(text: str, findings: list[Finding]) -> str:
    out: list[str] = []
    pos = 0
    for f in findings:
        out.append(text[pos : f.start])
        out.append(f"[REDACTED:{f.kind}]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def find_secrets(text: str) -> list[Finding]:
    """The secrets in ``text``, sorted by position and non-overlapping."""
    if len(text) < 8:
        return []
    return _find(text, text.encode("utf-8", "surrogatepass"))


def _find(text: str, raw: bytes) -> list[Finding]:
    """``find_secrets`` given ``raw``, the UTF-8 form of ``text``."""
    folded = raw.translate(_FOLD)
    hits = _trigger_ends(folded)
    # '@' needs no anchor: searching for one character is a memchr
    url = b"@" in raw and b"://" in raw
    if not hits and not url:
        return []

    found: list[tuple[Finding, int]] = []  # (finding, priority): lower wins at the same start
    if hits:
        to_char = _CharOffsets(raw, ascii_only=len(raw) == len(text))
        for end, index in hits:
            trigger = _TRIGGERS[index]
            start = end - len(trigger.text)
            # anchor letters are one byte in the folded form, so `sg-` hits `sk-`: check the
            # real bytes before anything else
            seen = raw[start:end]
            if seen != _TRIGGER_BYTES[index] and seen.lower() != _TRIGGER_BYTES[index]:
                continue
            if trigger.detector == _KEYWORD:
                finding = _assignment_at(text, to_char(end))
                priority = _KEYWORD_PRIORITY
            else:
                priority, match_at = _DETECTORS[trigger.detector]
                finding = match_at(text, to_char(start))
            if finding is not None:
                found.append((finding, priority))
    if url:
        found.extend((f, _URL_PRIORITY) for f in _url_passwords(text))
    return _resolve(found)


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# --- the gate ------------------------------------------------------------------------------------

_ANCHOR = 1
_KEYWORD = "keyword"
# A keyword counts only when followed by what can come before an operator, so the many `tokens`
# and `token_count`s in transcripts never leave the regex engine.
_KEYWORD_FOLLOWER = r"""(?=[ \t"'\\:=])"""


def _fold_table() -> bytes:
    table = bytearray(range(256))
    table[_ANCHOR] = 0  # a \x01 in the input must not pass for an anchor
    for c in range(ord("A"), ord("Z") + 1):
        table[c] = c + 32
    # not c: it is 2-3% of all bytes, and only `secret` would need it (see _SCANNED)
    for ch in "kwxyg":
        table[ord(ch)] = table[ord(ch.upper())] = _ANCHOR
    # upper-case A alone is an anchor (AKIA, ASIA, AIza); lower-case a stays itself
    table[ord("A")] = _ANCHOR
    return bytes(table)


_FOLD = _fold_table()


@dataclass(frozen=True)
class _Trigger:
    text: str
    detector: str
    case_sensitive: bool = True


_TRIGGERS: tuple[_Trigger, ...] = (
    _Trigger("AKIA", AWS_ACCESS_KEY),
    _Trigger("ASIA", AWS_ACCESS_KEY),
    _Trigger("AIza", GOOGLE_API_KEY),
    _Trigger("eyJ", JWT),
    *(_Trigger(f"gh{c}_", GITHUB_TOKEN) for c in "pousr"),
    _Trigger("github_pat_", GITHUB_TOKEN),
    _Trigger("sk-", OPENAI_KEY),  # sk-ant- is told apart by the precise pattern
    *(_Trigger(f"{p}k_{mode}_", STRIPE_KEY) for p in "sr" for mode in ("live", "test")),
    *(_Trigger(f"xox{c}-", SLACK_TOKEN) for c in "abpors"),
    _Trigger("hooks.slack.com/", SLACK_WEBHOOK),
    _Trigger("-----BEGIN", PRIVATE_KEY),
    *(
        _Trigger(word, _KEYWORD, case_sensitive=False)
        for word in (
            "password", "passwd", "secret", "token", "secret_key", "secret-key", "secretkey",
            "api_key", "api-key", "apikey", "access_key", "access-key", "accesskey",
            "private_key", "private-key", "privatekey",
        )
    ),
)  # fmt: skip


# What the bytes of each trigger must be: as written, or lower-cased when case does not matter.
_TRIGGER_BYTES = tuple((t.text if t.case_sensitive else t.text.lower()).encode() for t in _TRIGGERS)


def _atoms(trigger: _Trigger) -> list[frozenset[int]]:
    """The trigger as the set of folded bytes each of its characters may be."""
    atoms = []
    for ch in trigger.text:
        forms = {_FOLD[ord(ch)]}
        if not trigger.case_sensitive:
            forms |= {_FOLD[ord(ch.lower())], _FOLD[ord(ch.upper())]}
        atoms.append(frozenset(forms))
    return atoms


def _regex(atom: frozenset[int]) -> str:
    """One atom as regex text (latin-1, encoded when compiled)."""
    if len(atom) == 1:
        return re.escape(chr(min(atom)))
    return "[" + "".join(re.escape(chr(b)) for b in sorted(atom)) + "]"


@dataclass
class _Node:
    children: dict[frozenset[int], _Node] = field(default_factory=dict)
    leaves: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"{_regex(atom)}(?:{child.render()})" for atom, child in self.children.items()]
        return "|".join(parts + self.leaves)


def _gate_pattern() -> re.Pattern[bytes]:
    # A trie of what follows each trigger's first anchor, so every branch starts with a literal
    # that the regex engine rejects without entering it; a leaf checks the whole trigger with a
    # fixed-width look-behind and names it with an empty group.  Most anchors are followed by a
    # byte that no branch starts with, so one look-ahead class turns them away before the branch.
    anchor = frozenset([_ANCHOR])
    root = _Node()
    for i, trigger in enumerate(_TRIGGERS):
        atoms = _atoms(trigger)
        if anchor not in atoms:
            continue  # found by a substring search instead (_SCANNED)
        if anchor not in atoms[:-1]:
            raise AssertionError(f"trigger {trigger.text!r} needs an anchor letter before its end")
        node = root
        for atom in atoms[atoms.index(anchor) + 1 :]:
            node = node.children.setdefault(atom, _Node())
        behind = "".join(_regex(atom) for atom in atoms)
        ahead = _KEYWORD_FOLLOWER if trigger.detector == _KEYWORD else ""
        node.leaves.append(f"(?<={behind}){ahead}(?P<t{i}>)")
    followers = frozenset().union(*root.children)
    return re.compile(
        f"{_regex(anchor)}(?={_regex(followers)})(?:{root.render()})".encode("latin-1")
    )


_GATE = _gate_pattern()


def _scanned() -> tuple[tuple[int, bytes], ...]:
    """Triggers with no anchor letter, as the folded bytes a plain substring search looks for."""
    out = []
    for i, trigger in enumerate(_TRIGGERS):
        atoms = _atoms(trigger)
        if frozenset([_ANCHOR]) in atoms:
            continue
        if any(len(atom) != 1 for atom in atoms):
            raise AssertionError(f"trigger {trigger.text!r} folds to more than one form")
        out.append((i, bytes(min(atom) for atom in atoms)))
    return tuple(out)


_SCANNED = _scanned()
_FOLLOWER_BYTES = frozenset(b" \t\"'\\:=")  # what _KEYWORD_FOLLOWER lets through


def _trigger_ends(folded: bytes) -> list[tuple[int, int]]:
    """(end offset, trigger index) of every place a trigger may be, in order."""
    hits = [(m.end(), int(str(m.lastgroup)[1:])) for m in _GATE.finditer(folded)]
    extra = False
    for index, literal in _SCANNED:
        keyword = _TRIGGERS[index].detector == _KEYWORD
        at = folded.find(literal)
        while at >= 0:
            end = at + len(literal)
            if not keyword or (end < len(folded) and folded[end] in _FOLLOWER_BYTES):
                hits.append((end, index))
                extra = True
            at = folded.find(literal, at + 1)
    if extra:
        hits.sort()
    return hits


class _CharOffsets:
    """Maps byte offsets of the UTF-8 form to character offsets; cheap when called in order."""

    def __init__(self, raw: bytes, ascii_only: bool) -> None:
        self.raw, self.ascii_only = raw, ascii_only
        self.byte_pos = self.char_pos = 0

    def __call__(self, byte_pos: int) -> int:
        if self.ascii_only:
            return byte_pos
        if byte_pos < self.byte_pos:
            self.byte_pos = self.char_pos = 0
        self.char_pos += len(self.raw[self.byte_pos : byte_pos].decode("utf-8", "surrogatepass"))
        self.byte_pos = byte_pos
        return self.char_pos


# --- precise patterns ----------------------------------------------------------------------------

_MatchAt = Callable[[str, int], "Finding | None"]


def _starts_word(text: str, start: int) -> bool:
    """True when ``start`` begins a token: not glued to a word, or right after a ``\\n``-style
    escape, so that a key at the start of a line inside a JSON string still counts."""
    if start == 0:
        return True
    prev = text[start - 1]
    if not (prev.isalnum() or prev in "_-"):
        return True
    return prev in "nrt" and start >= 2 and text[start - 2] == "\\"


def _ends_word(text: str, end: int) -> bool:
    return end >= len(text) or not (text[end].isalnum() or text[end] in "_-")


def _random_looking(value: str) -> bool:
    # kebab-case words after a prefix (`sk-learn-compatible-api-version`) have no digits
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


_AWS_ACCESS_RE = re.compile(r"A(?:KIA|SIA)[A-Z0-9]{16}")
_GOOGLE_RE = re.compile(r"AIza[0-9A-Za-z_-]{35}")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")
_GITHUB_RE = re.compile(r"g(?:h[pousr]_[A-Za-z0-9]{30,255}|ithub_pat_[A-Za-z0-9_]{20,255})")
_SK_RE = re.compile(r"sk-[A-Za-z0-9_-]{20,}")
_STRIPE_RE = re.compile(r"[sr]k_(?:live|test)_[0-9A-Za-z]{16,}")
_SLACK_RE = re.compile(r"xox[abpors]-[A-Za-z0-9-]{8,}[A-Za-z0-9]")
_WEBHOOK_RE = re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9_/-]{8,})")
_PEM_HEAD_RE = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
# The body: base64 and header characters, real line breaks, and \n-style escapes taken whole (a
# run of backslashes with its letter), so a match never ends inside an escape sequence.
_PEM_BODY = r"(?:[A-Za-z0-9+/=:,. \t\r\n-]|\\+[nrt])"
_PEM_TO_END_RE = re.compile(
    _PEM_BODY + r"{0,20000}?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
)
_PEM_TRUNCATED_RE = re.compile(_PEM_BODY + "{0,20000}")
# the user part takes no '[' so an earlier replacement (`https://[REDACTED:…]@host`) is not a user
_URL_RE = re.compile(r"://([^\s:/@\"'\\<>\[\]]*):([^\s/@\"'\\<>]+)@(?=[A-Za-z0-9\[])")


def _anchored(
    pattern: re.Pattern[str],
    kind: str,
    check: Callable[[str], bool] | None = None,
    group: int = 0,
) -> _MatchAt:
    """A detector that tries ``pattern`` where its trigger starts."""

    def match_at(text: str, start: int) -> Finding | None:
        m = pattern.match(text, start)
        if m is None or not (_starts_word(text, start) and _ends_word(text, m.end())):
            return None
        if check is not None and not check(m[group]):
            return None
        return Finding(kind, m.start(group), m.end(group))

    return match_at


def _sk_key_at(text: str, start: int) -> Finding | None:
    m = _SK_RE.match(text, start)
    if m is None or not _starts_word(text, start) or not _random_looking(m[0][3:]):
        return None
    return Finding(ANTHROPIC_KEY if m[0].startswith("sk-ant-") else OPENAI_KEY, start, m.end())


def _private_key_at(text: str, start: int) -> Finding | None:
    head = _PEM_HEAD_RE.match(text, start)
    if head is None:
        return None
    tail = _PEM_TO_END_RE.match(text, head.end())
    if tail is None:  # cut off, as in a truncated tool output: take the body that follows
        tail = _PEM_TRUNCATED_RE.match(text, head.end())
    return Finding(PRIVATE_KEY, start, tail.end() if tail else head.end())


def _url_passwords(text: str) -> list[Finding]:
    return [
        Finding(URL_PASSWORD, m.start(2), m.end(2))
        for m in _URL_RE.finditer(text)
        if not _placeholder(m[2])
    ]


# After a keyword: an optional closing quote of a key (perhaps JSON-escaped), the operator, an
# optional opening quote, then the value.  The value stops at quotes, backslashes, whitespace and
# code punctuation, so it never takes part of an escape or a string delimiter.
_ASSIGN_RE = re.compile(
    r"""(?:\\?["'])?[ \t]*(?::=|=>|[:=])[ \t]*(\\?["'`])?([^\s"'\\`,;<>()\[\]{}]{12,})"""
)
_CODE_REF_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_]+")
_AWS_SECRET_VALUE_RE = re.compile(r"[A-Za-z0-9/+=]{40}")
_PLACEHOLDER_WORDS = frozenset(
    ["password", "passwd", "pass", "secret", "token", "changeme", "change_me", "null", "none"]
)
_PLACEHOLDER_PARTS = ("xxxx", "****", "....", "example", "placeholder", "redacted", "dummy")


def _placeholder(value: str) -> bool:
    low = value.lower()
    if low in _PLACEHOLDER_WORDS or low.startswith(("your", "my-", "my_")):
        return True
    if value[0] in "$%{<[*" or len(set(low)) <= 2:  # ${VAR}, %VAR%, <your-key>, ***
        return True
    return any(part in low for part in _PLACEHOLDER_PARTS)


def _assignment_at(text: str, keyword_end: int) -> Finding | None:
    m = _ASSIGN_RE.match(text, keyword_end)
    if m is None:
        return None
    value = m[2]
    if _placeholder(value):
        return None
    before = text[max(0, keyword_end - 21) : keyword_end].lower().replace("-", "_")
    if before == "aws_secret_access_key" and _AWS_SECRET_VALUE_RE.fullmatch(value):
        return Finding(AWS_SECRET_KEY, m.start(2), m.end(2))
    if m[1] is None and (_CODE_REF_RE.fullmatch(value) or _IDENTIFIER_RE.fullmatch(value)):
        return None  # unquoted code: `token = self.config.api_token`, `secret = OTHER_NAME`
    if shannon_entropy(value[:256]) < MIN_ASSIGNED_ENTROPY:
        return None
    return Finding(SECRET_ASSIGNMENT, m.start(2), m.end(2))


_DETECTORS: dict[str, tuple[int, _MatchAt]] = {
    PRIVATE_KEY: (0, _private_key_at),
    AWS_ACCESS_KEY: (1, _anchored(_AWS_ACCESS_RE, AWS_ACCESS_KEY)),
    GITHUB_TOKEN: (1, _anchored(_GITHUB_RE, GITHUB_TOKEN)),
    OPENAI_KEY: (1, _sk_key_at),
    STRIPE_KEY: (1, _anchored(_STRIPE_RE, STRIPE_KEY)),
    SLACK_TOKEN: (1, _anchored(_SLACK_RE, SLACK_TOKEN, _random_looking)),
    SLACK_WEBHOOK: (1, _anchored(_WEBHOOK_RE, SLACK_WEBHOOK, group=1)),
    GOOGLE_API_KEY: (1, _anchored(_GOOGLE_RE, GOOGLE_API_KEY)),
    JWT: (2, _anchored(_JWT_RE, JWT)),
}
_URL_PRIORITY = 2
_KEYWORD_PRIORITY = 3  # the generic rule loses to any specific kind at the same start


def _resolve(found: list[tuple[Finding, int]]) -> list[Finding]:
    """Sorted and non-overlapping: at the same start the more specific kind, then the longer."""
    found.sort(key=lambda fp: (fp[0].start, fp[1], -fp[0].end))
    out: list[Finding] = []
    for f, _ in found:
        if not out or f.start >= out[-1].end:
            out.append(f)
    return out
