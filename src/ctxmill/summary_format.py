"""The compressed-summary format: how a summary file is laid out, and the validator that checks it.

A summary is YAML front matter between ``---`` lines followed by a markdown body with exactly these
second-level headings, in this order::

    ## Goal
    ## What happened
    ## Decisions and why
    ## Failed attempts and why
    ## Open threads
    ## Files

The body aims at 500–1,500 tokens and may never pass 2,000.  A body under 500 tokens is accepted
only when the session itself was short (``source_tokens`` in the front matter under
:data:`SHORT_SOURCE_TOKENS`): a summary cannot say more than the session did.  The same validator
runs on every summary, extractive or model-written, before it is written, so a file on disk has
always passed it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ctxmill.redact import redact
from ctxmill.tokens import count_tokens

HEADINGS = (
    "Goal",
    "What happened",
    "Decisions and why",
    "Failed attempts and why",
    "Open threads",
    "Files",
)
TARGET_MIN = 500
TARGET_MAX = 1_500
HARD_CAP = 2_000
SHORT_SOURCE_TOKENS = 2_000
OUTCOMES = ("completed", "abandoned", "unknown")

# Front-matter keys every summary carries (``supersedes`` only when it replaces an older one).
REQUIRED_FIELDS = (
    "session_id",
    "agent",
    "project",
    "cwd",
    "git_branch",
    "started",
    "ended",
    "files_touched",
    "commands",
    "topics",
    "outcome",
    "tokens",
    "compressor",
    "source_sha256",
)
_LIST_FIELDS = ("files_touched", "commands", "topics")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_HEADING_RE = re.compile(r"^## +(.+?)\s*$", re.MULTILINE)
_FENCE_RE = re.compile(r"^(```|~~~)", re.MULTILINE)


# libyaml's C parser when PyYAML was built with it: front matter is parsed once per summary on
# every validation and every pass, and the pure-Python parser is most of that time.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Block lists and literal blocks for multi-line strings, so a summary reads well by eye."""


def _str_representer(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render_summary(front: dict[str, Any], body: str) -> str:
    """The file text for ``front`` and ``body`` (body starting at ``## Goal``)."""
    head = yaml.dump(
        front,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return f"---\n{head}---\n\n{body.strip()}\n"


def split_summary(text: str) -> tuple[dict[str, Any] | None, str, list[str]]:
    """``(front matter, body, problems)``; front matter is None when it cannot be read."""
    if not text.startswith("---\n"):
        return None, text, ["no YAML front matter (the file must start with a '---' line)"]
    end = text.find("\n---\n", 3)
    if end < 0:
        return None, text, ["the YAML front matter is not closed by a '---' line"]
    try:
        front = yaml.load(text[4:end], Loader=_Loader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        return None, text[end + 5 :], [f"the YAML front matter does not parse: {first}"]
    if not isinstance(front, dict):
        return None, text[end + 5 :], ["the YAML front matter is not a mapping"]
    return front, text[end + 5 :].lstrip("\n"), []


def headings(body: str) -> list[str]:
    """The ``##`` headings of ``body`` outside code fences, in order."""
    return [m.group(1) for m in _HEADING_RE.finditer(_outside_fences(body))]


def sections(body: str) -> dict[str, str]:
    """Heading → its text (stripped), for the ``##`` headings outside code fences."""
    plain = _outside_fences(body)
    marks = list(_HEADING_RE.finditer(plain))
    out: dict[str, str] = {}
    for i, m in enumerate(marks):
        stop = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        out.setdefault(m.group(1), body[m.end() : stop].strip())
    return out


def _outside_fences(body: str) -> str:
    """``body`` with fenced code blanked (same length), so a ``## `` inside code is no heading."""
    if "```" not in body and "~~~" not in body:
        return body
    out: list[str] = []
    fence: str | None = None
    for line in body.splitlines(keepends=True):
        m = _FENCE_RE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append(" " * (len(line) - 1) + line[-1:])
        elif fence is not None:
            if line.startswith(fence):
                fence = None
            out.append(" " * (len(line) - 1) + line[-1:])
        else:
            out.append(line)
    return "".join(out)


def body_problems(body: str, *, source_tokens: int | None = None) -> list[str]:
    """What is wrong with a summary body on its own: headings, sizes, secrets."""
    problems: list[str] = []
    found = headings(body)
    if found != list(HEADINGS):
        missing = [h for h in HEADINGS if h not in found]
        extra = [h for h in found if h not in HEADINGS]
        if missing:
            problems.append("missing headings: " + ", ".join(f"'## {h}'" for h in missing))
        if extra:
            problems.append("unexpected headings: " + ", ".join(f"'## {h}'" for h in extra))
        if not missing and not extra:
            problems.append("headings out of order or repeated: expected " + ", ".join(HEADINGS))
    else:
        first = _HEADING_RE.search(_outside_fences(body))
        if first is not None and body[: first.start()].strip():
            problems.append("text before '## Goal'")
        for name, text in sections(body).items():
            if not text:
                problems.append(f"section '## {name}' is empty (write 'None recorded.' instead)")
    tokens = count_tokens(body.strip())
    if tokens > HARD_CAP:
        problems.append(f"body is {tokens} tokens, over the hard cap of {HARD_CAP}")
    elif tokens < TARGET_MIN and (source_tokens is None or source_tokens >= SHORT_SOURCE_TOKENS):
        why = f" for a session of {source_tokens} tokens" if source_tokens is not None else ""
        problems.append(f"body is {tokens} tokens, under the minimum of {TARGET_MIN}{why}")
    _, secrets = redact(body)
    if secrets:
        problems.append(f"body contains {secrets} secret(s); redact before writing")
    return problems


def validate_summary(text: str) -> list[str]:
    """Problems with a summary file's text, one line each; an empty list means it is valid.

    Checks the front matter (every required field, its type, the outcome, the compressor record,
    the source hash, ``tokens`` equal to the body's count), the six headings in order with
    nothing before them and no empty section, the token range, and that no secret is left.
    """
    front, body, problems = split_summary(text)
    if front is None:
        return problems
    for key in REQUIRED_FIELDS:
        if key not in front:
            problems.append(f"front matter lacks '{key}'")
    sid = front.get("session_id")
    if "session_id" in front and (not isinstance(sid, str) or not sid.strip()):
        problems.append("'session_id' must be a non-empty string")
    for key in _LIST_FIELDS:
        value = front.get(key)
        if key in front and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            problems.append(f"'{key}' must be a list of strings")
    if "outcome" in front and front.get("outcome") not in OUTCOMES:
        problems.append(f"'outcome' must be one of {', '.join(OUTCOMES)}")
    compressor = front.get("compressor")
    if "compressor" in front and (
        not isinstance(compressor, dict)
        or not {"backend", "model", "prompt_version"} <= set(compressor)
    ):
        problems.append("'compressor' must be a mapping with backend, model and prompt_version")
    sha = front.get("source_sha256")
    if "source_sha256" in front and not (isinstance(sha, str) and _SHA_RE.match(sha)):
        problems.append("'source_sha256' must be 64 lowercase hex digits")
    supersedes = front.get("supersedes")
    if supersedes is not None and not (isinstance(supersedes, str) and supersedes.strip()):
        problems.append("'supersedes' must name the summary file it replaces")
    source_tokens = front.get("source_tokens")
    if source_tokens is not None and not isinstance(source_tokens, int):
        problems.append("'source_tokens' must be an integer")
        source_tokens = None
    tokens = front.get("tokens")
    actual = count_tokens(body.strip())
    if "tokens" in front and tokens != actual:
        problems.append(f"'tokens' says {tokens} but the body has {actual}")
    problems += body_problems(body, source_tokens=source_tokens)
    _, secrets = redact(text[: len(text) - len(body)])
    if secrets:
        problems.append(f"front matter contains {secrets} secret(s); redact before writing")
    return problems
