"""Forced context distillation: a planning session becomes an implementation prompt that a fresh
agent can follow cold, and a long prompt becomes a short one that keeps its rules.

Both jobs keep the signal and drop the wandering, and neither makes anything up:

* :func:`distill_session` writes the eight fixed parts of an implementation prompt (:data:`PARTS`)
  from a transcript or a markdown plan.  Without a model every line is pulled verbatim from the
  turn it came from and carries that turn's tag.  With a model, the model writes the parts citing
  turn numbers, and each claim is checked against the turns it cites (content words must overlap;
  identifiers and numbers must appear there), so what it cannot support is dropped.  Whatever the
  session never settled is written as an explicit ``TODO:`` line: a missing item is obvious, and
  ``ctxmill lint`` refuses the prompt until it is resolved or allowed.
* :func:`compress_prompt` fits a long prompt (a policy block, a product brief, a CLAUDE.md) under a
  token budget.  Sentences and bullets are scored by how much they read like a rule or a fact,
  duplicates and filler are dropped, and the budget is met by searching for how many of the
  best-ranked units fit, never by cutting the text off.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxmill.config import Config
from ctxmill.model import Session, Tag, Turn
from ctxmill.pipeline.brief import analyze, stem, stems
from ctxmill.pipeline.render import fence
from ctxmill.pipeline.text import containment, jaccard, sentences, shingles
from ctxmill.redact import redact
from ctxmill.sources import detect, parse_transcript
from ctxmill.sources.base import relative_to
from ctxmill.tokens import count_tokens

if TYPE_CHECKING:
    from ctxmill.llm import LLMRunner

PARTS = (
    "Goal",
    "Context",
    "Decisions and rejected alternatives",
    "Files and interfaces",
    "Phases",
    "Risks and rollback",
    "Test commands",
    "Definition of done",
)
PHASE_COLUMNS = ("Phase", "Goal", "Deliverables", "Exit criteria")
PROMPT_VERSION = "distill-1"


class DistillError(Exception):
    """A source that cannot be distilled, or a prompt that cannot be fitted; one line for the user."""


# -- the source ------------------------------------------------------------------------------


@dataclass
class Source:
    """The session being distilled; a markdown plan becomes a session of one turn per section."""

    session: Session
    path: Path
    kind: str  # transcript | markdown
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # markdown: turn → lines

    def cite(self, n: int) -> str:
        if self.kind == "markdown":
            start, end = self.spans.get(n, (1, 1))
            return f"[{self.path.name}#L{start}-L{end}]"
        return str(Tag.raw(self.session.id, n))

    @property
    def title(self) -> str:
        s = self.session
        if s.title:
            return s.title
        first = next((request_text(t.text) for t in s.turns if t.role == "user"), "")
        lines = [ln for ln in first.splitlines() if ln.strip()]
        return _clip(lines[0].lstrip("# ") if lines else "", 80) or self.path.stem


def request_text(text: str) -> str:
    """A user turn without what an IDE prepends to it (Codex: "# Context from my IDE setup: …")."""
    m = re.search(r"^#+\s*My request for \w+:\s*", text, re.M)
    return text[m.end() :].strip() if m else text


def load_source(path: Path, session_id: str | None = None) -> Source:
    """Read a transcript (any format ctxmill reads) or a markdown file as a :class:`Source`."""
    if not path.is_file():
        raise DistillError(f"{path}: no such file")
    fmt = detect(path)
    if fmt is not None:
        result = parse_transcript(fmt, path)
        sessions = [s for s in result.sessions if s.turns]
        if not sessions:
            raise DistillError(f"{path}: no turns in this {fmt} transcript")
        chosen = next((s for s in sessions if s.id == session_id), None) if session_id else None
        # A file holds the main session and its subagents' sidechains; the plan is in the main one.
        chosen = chosen or next((s for s in sessions if s.parent_id is None), sessions[0])
        return Source(chosen, path, "transcript")
    if path.name.removesuffix(".gz").lower().endswith((".md", ".markdown", ".txt")):
        return _markdown_source(path)
    raise DistillError(
        f"{path}: neither a transcript ctxmill reads (Claude Code, Codex, Gemini CLI, aider, OpenCode, SpecStory) nor markdown"
    )


def find_session(cfg: Config, session_id: str) -> tuple[Path, str]:
    """The transcript file of an indexed session (a unique id prefix is enough)."""
    from ctxmill.store import open_store

    if not cfg.index_path.exists():
        raise DistillError(f"{session_id}: no such file, and no index to look the session up in")
    store = open_store(cfg, readonly=True)
    try:
        record = store.get_session(session_id)
        if record is None:
            matches = [r for r in store.list_sessions() if r.id.startswith(session_id)]
            if len(matches) > 1:
                raise DistillError(
                    f"{session_id}: ambiguous, {len(matches)} sessions start with it "
                    f"({', '.join(r.id for r in matches[:3])}, …)"
                )
            record = matches[0] if matches else None
    finally:
        store.close()
    if record is None:
        raise DistillError(f"{session_id}: no such file or indexed session")
    for candidate in (record.source_path, record.archive_path):
        if candidate and Path(candidate).is_file():
            return Path(candidate), record.id
    raise DistillError(
        f"session {record.id}: its transcript is gone ({record.source_path}) and has no archive"
    )


def _markdown_source(path: Path) -> Source:
    import gzip

    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = raw.decode("utf-8", "replace").splitlines()
    title: str | None = None
    starts: list[int] = []
    fence_bar: str | None = None
    for i, line in enumerate(lines):
        if m := _FENCE_RE.match(line):
            fence_bar = None if fence_bar and line.strip().startswith(fence_bar) else m[2]
            continue
        if fence_bar is None and (h := _HEADING_RE.match(line)) and len(h[1]) <= 2:
            if len(h[1]) == 1 and title is None:
                title = _strip_md(h[2])
            starts.append(i)
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    session = Session(id=path.stem, agent="markdown", source_path=str(path), title=title)
    spans: dict[int, tuple[int, int]] = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        text = "\n".join(lines[start:end]).strip()
        if not text:
            continue
        n = len(session.turns) + 1
        session.turns.append(Turn(n=n, role="assistant", text=text))
        spans[n] = (start + 1, max(start + 1, end))
    if not session.turns:
        raise DistillError(f"{path}: the file is empty")
    return Source(session, path, "markdown", spans)


# -- reading turns into blocks ---------------------------------------------------------------

_FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+#.-]*)")
_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
_SHELL_LANGS = {
    "bash",
    "sh",
    "shell",
    "console",
    "zsh",
    "fish",
    "powershell",
    "ps1",
    "cmd",
    "terminal",
}


@dataclass
class Block:
    """A paragraph, list item, heading, table or fenced code block of one turn."""

    turn: int
    role: str
    kind: str  # text | item | heading | table | code
    text: str
    lang: str = ""
    heading: str = ""
    level: int = 0


def turn_blocks(turn: Turn) -> list[Block]:
    """Split a turn's text into blocks; tool-call echo lines and thinking are left out."""
    lines = turn.text.splitlines()
    blocks: list[Block] = []
    cur: list[str] = []
    cur_kind = "text"
    heading = ""
    skipping = False  # inside a "(thinking)" paragraph: the model's private reasoning

    def flush() -> None:
        nonlocal cur
        text = " ".join(" ".join(cur).split())
        if text and not skipping:
            blocks.append(Block(turn.n, turn.role, cur_kind, text, heading=heading))
        cur = []

    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _FENCE_RE.match(line):
            flush()
            skipping = False
            bar, lang = m[2], m[3].lower()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(bar):
                body.append(lines[i])
                i += 1
            i += 1
            code = textwrap.dedent("\n".join(body)).strip("\n")
            if code.strip():
                blocks.append(Block(turn.n, turn.role, "code", code, lang, heading))
            continue
        i += 1
        stripped = line.strip()
        if not stripped:
            flush()
            skipping = False
            continue
        if turn.role != "user" and line.startswith("→ "):
            flush()
            continue
        if stripped.startswith("(thinking)"):
            flush()
            skipping = True
            continue
        if skipping:
            continue
        if h := _HEADING_RE.match(line):
            flush()
            heading = _strip_md(h[2])
            blocks.append(Block(turn.n, turn.role, "heading", heading, level=len(h[1])))
            continue
        if stripped.startswith("|"):
            flush()
            rows = [stripped]
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            blocks.append(Block(turn.n, turn.role, "table", "\n".join(rows), heading=heading))
            continue
        if bm := _BULLET_RE.match(line):
            flush()
            cur_kind = "item"
            cur.append(line[bm.end() :])
            continue
        if not cur:
            cur_kind = "text"
        cur.append(line)
    flush()
    return blocks


# -- what a sentence is ----------------------------------------------------------------------

# The planner narrating its own steps ("Let me check…", "Perfect!") says nothing a fresh agent needs.
_NARRATION_RE = re.compile(
    r"^(?:wait\b|hmm|actually,? let me|looking (?:at|more)|let me|now,? let me|now I|now let's|perfect|great|good|excellent|okay|ok\b|sure|done|"
    r"I see|I can see|I need to|I'll (?:read|check|look|examine|start|help|analy[sz]e|research|"
    r"first|now|also|begin|search|update|fix|add|create|implement|make|run|test|continue|"
    r"verify|explore|review)|let's (?:check|look|see|start|test|run|verify)|first,? let me|"
    r"based on (?:my|the|your) (?:research|analysis|review)|here (?:is|are) (?:a|an|the|some)|"
    r"you're right|thanks|thank you|the (?:user|file) (?:has|was))",
    re.I,
)
_DECIDE_RE = re.compile(
    r"\b(decided|decide to|decision|we(?:'ll| will| should) (?:use|go with|keep|store|switch|"
    r"adopt|implement|stick|add|build|start)|let's (?:use|go with|do|keep|implement|stick|switch|"
    r"adopt|add|build|start|go)|chose|choosing|go(?:ing)? with|settled on|opted|recommend(?:ed)?|"
    r"the plan is|approach|strategy|will be (?:stored|handled|implemented|done|used)|"
    r"should (?:use|be)|prefer(?:red)?|keep \S+ (?:unchanged|as is)|must|the fix is|solution)\b",
    re.I,
)
_REJECT_RE = re.compile(
    r"\b(instead of|rather than|reject(?:ed)?|not (?:going to|use|worth|needed|recommended|"
    r"necessary)|won't|will not|avoid|don't use|do not use|no longer|abandon(?:ed)?|ruled out|"
    r"overkill|too (?:complex|expensive|slow|risky|heavy)|unsafe|not safe|scope creep|"
    r"(?:requires?|needs?) (?:a )?(?:paid|api key|subscription))\b",
    re.I,
)
_WHY_RE = re.compile(
    r"\b(because|since|so that|so we|to avoid|in order to|due to|as it|as they|which means|"
    r"otherwise|the reason|therefore|thus|ensures?|prevents?)\b",
    re.I,
)
_RISK_RE = re.compile(
    r"\b(risks?|risky|caveat|careful|warning|danger|breaking|backward[s]? compat\w*|security|"
    r"rate[- ]limit\w*|quota|downtime|data loss|edge case|race condition|concurren\w+|pitfall|"
    r"gotcha|limitation|deprecat\w+|regression|leak\w*|fails?|failed|failing|did(?:n't| not) work|"
    r"permission error|timeout|blocks?)\b",
    re.I,
)
_ROLLBACK_RE = re.compile(
    r"\b(roll ?back|revert\w*|undo|feature flag|backup|restore|kill switch|downgrade|"
    r"backward[s]? compat\w*)\b",
    re.I,
)
_DONE_RE = re.compile(
    r"\b(definition of done|done when|acceptance criteria|success criteria|exit criteria|"
    r"is complete when|complete when|all tests pass|tests? (?:pass|green)|ready to (?:ship|merge))\b",
    re.I,
)
_STATE_RE = re.compile(
    r"\b(already|currently|existing|exists|current|today|at the moment|right now|"
    r"is implemented|are implemented|uses|is using|is built|is stored|lives in|is defined|"
    r"is handled|the codebase|architecture|we have|there is|there are|has|structure)\b",
    re.I,
)
_CONTEXT_HEADING_RE = re.compile(
    r"\b(current|status|existing|background|context|overview|architecture|how it works|"
    r"implemented|features?|summary|state|constraints?|requirements?)\b",
    re.I,
)
_EXIT_RE = re.compile(
    r"\b(tests?|pass(?:es|ing)?|green|verif\w+|check(?:s|ed)?|works?|succeed\w*|criteria|done when|"
    r"validat\w+|coverage|benchmark|no errors?|curl|build(?:s)? (?:passes|succeeds))\b",
    re.I,
)
_PHASE_RE = re.compile(
    r"^(?:\*\*)?(phase|step|stage|milestone|part|sprint)\s*(\d+|[ivx]+\b|one|two|three|four|five)"
    r"[*:.)\s–—-]*(.*)$",
    re.I,
)
_TEST_CMD_RE = re.compile(
    r"\b(pytest|unittest|tox|nox|(?:npm|pnpm|yarn|bun)(?: run)? (?:test|lint|typecheck|check)\b|"
    r"vitest|jest|mocha|playwright|go test|go vet|cargo (?:test|clippy|check)|"
    r"make (?:test|check|lint)|just (?:test|check|lint)|ruff|mypy|pyright|tsc|eslint|flake8|"
    r"black --check|phpunit|rspec|mvn (?:test|verify)|gradle(?:w)? test|ctest|mix (?:test|credo|"
    r"dialyzer|format --check-formatted)|dotnet test)\b"
)
_TRIVIAL_CMDS = {
    "ls", "cd", "pwd", "cat", "echo", "head", "tail", "find", "grep", "rg", "which", "mkdir",
    "wc", "clear", "sleep", "true", "tree", "stat", "file", "less", "more", "open", "history",
    "sed", "awk", "sort", "diff", "chmod", "touch", "cp", "mv", "rm", "kill", "pkill", "ps",
    "env", "export", "source", "date", "whoami", "type", "for", "while", "if",
}  # fmt: skip
_TRIVIAL_GIT = re.compile(r"^git (?:status|diff|log|show|branch|add|commit|stash|checkout|fetch)\b")
_ENV_LINE_RE = re.compile(r"^(?:export\s+)?[A-Z][A-Z0-9_]*=\S")

_EXTS = (
    "py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|java|kt|kts|rb|php|c|h|cc|cpp|hpp|cs|swift|sql|toml|yaml|"
    "yml|json|jsonl|md|mdx|txt|sh|bash|zsh|ini|cfg|conf|env|lock|html|css|scss|vue|svelte|proto|"
    "graphql|gql|ex|exs|heex|erl|lua|dart|scala|tf|xml|csv|ipynb"
)
_PATH_RE = re.compile(
    rf"(?<![\w/.@:-])(?:~?/)?(?:[\w@.+-]+/)*[\w@+-][\w.+-]*\.(?:{_EXTS})(?![\w/-])"
    r"|(?<![\w/.@:-])(?:[\w@.+-]+/)*(?:Dockerfile|Makefile|Justfile|Procfile|\.env|\.gitignore)\b"
)
# The agent's own files (plans, tool-result spills, scratch) are not part of the work.
_AGENT_PATH_RE = re.compile(r"(?:^|/)\.(?:claude|codex|cursor|specstory)/|^/tmp/|^/var/folders/")
_BACKTICK_RE = re.compile(r"`([^`\n]{2,160})`")
_FRAMEWORK_RE = re.compile(r"^[A-Z][A-Za-z]*\.(?:js|ts)$")  # Next.js, Node.js: products, not files

_SIGNATURE_RES = (
    re.compile(r"^\s*(?:@\w+(?:\(.*\))?\s+)?(?:async\s+)?def\s+\w+\s*\("),
    re.compile(r"^\s*class\s+\w+\s*[(:]"),
    re.compile(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*\w+\s*(?:<[^>]*>)?\("
    ),
    re.compile(r"^\s*(?:export\s+)?(?:declare\s+)?(?:interface|type|enum)\s+\w+"),
    re.compile(
        r"^\s*(?:export\s+)?(?:const|let)\s+\w+\s*(?::\s*[^=]+)?=\s*(?:async\s*)?\([^)]*\)\s*(?::\s*[^=]+)?=>"
    ),
    re.compile(
        r"^\s*(?:public\s+|private\s+|protected\s+|static\s+|readonly\s+)*\w+\s*\([^)]*\)\s*:\s*[\w<>\[\]|. ]+[;{]?\s*$"
    ),
    re.compile(r"^\s*func\s+(?:\([^)]*\)\s*)?\w+\s*\("),
    re.compile(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+\w+"),
    re.compile(r"^\s*(?:defp?|defmodule)\s+[\w.]+"),
)
# Words a model uses to frame a claim ("Decision: …", "Rejected because …"); not evidence.
_CITE_WORDS = frozenset(
    re.findall(
        r"\S+",
        """
    decision decided rejected alternative alternatives because goal phase deliverable
    deliverables exit criteria risk risks rollback test tests new file files session todo why
    chose choose user asked plan implement implementation use ran run runs command commands
    these this pass passes came
""",
    )
)


def _strip_md(text: str) -> str:
    return re.sub(r"[*_]{1,3}([^*_]+)[*_]{1,3}", r"\1", text).strip(" *_#")


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a sentence end when one is near, else a word."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if end > limit * 0.6:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + " …"


def _is_narration(sentence: str) -> bool:
    return bool(_NARRATION_RE.match(sentence.lstrip("*_> "))) and not re.search(
        r"\b(because|instead of|rather than)\b", sentence, re.I
    )


def signature_lines(code: str) -> list[str]:
    """Definition lines in ``code``: ``def …(``, ``class …``, ``function …(``, typed TS, Go, Rust."""
    found: list[str] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if not any(rx.match(line) for rx in _SIGNATURE_RES):
            continue
        sig = line.strip()
        # A Python signature may wrap: keep going until the colon that ends it.
        j = i
        while (
            sig.startswith(("def ", "async def ")) and not sig.rstrip().endswith(":") and j < i + 6
        ):
            j += 1
            if j >= len(lines):
                break
            sig += " " + lines[j].strip()
        found.append(sig.rstrip("{").rstrip())
    return found


def find_paths(text: str) -> list[str]:
    """File paths named in prose: ``src/app/page.tsx``, ``README.md``, ``Dockerfile``."""
    out: list[str] = []
    for m in _PATH_RE.finditer(text):
        p = m.group(0).rstrip(".,;:)")
        if "://" in text[max(0, m.start() - 12) : m.start() + 3] or p.startswith("www."):
            continue
        if _FRAMEWORK_RE.match(p) or re.fullmatch(r"[\d.]+", p):
            continue
        out.append(p)
    return out


def _identifiers(text: str) -> list[str]:
    """What must appear verbatim in a cited turn: code spans, paths, names with case or
    underscores, flags and numbers of two or more characters."""
    found = [m.strip() for m in _BACKTICK_RE.findall(text)]
    found += find_paths(text)
    found += re.findall(r"\b[A-Za-z]+[a-z][A-Z]\w*\b|\b[A-Za-z]*_\w+\b", text)
    found += re.findall(r"(?<![\w-])--[a-z][\w-]+", text)
    found += re.findall(r"(?<![\w.])\d[\d,.]*\d(?![\w])|(?<![\w.])\d{2,}(?![\w])", text)
    return list(dict.fromkeys(f for f in found if len(f) >= 2))


# -- the extractive distiller ----------------------------------------------------------------


@dataclass
class Line:
    """One line of a part: verbatim text and the turn it came from."""

    text: str
    turn: int | None = None

    def render(self, source: Source) -> str:
        return f"{self.text} {source.cite(self.turn)}" if self.turn else self.text


@dataclass
class Facts:
    """Everything pulled out of a session, before it is written as parts."""

    goal: list[Line] = field(default_factory=list)
    requests: list[Line] = field(default_factory=list)
    context: list[Line] = field(default_factory=list)
    decisions: list[Line] = field(default_factory=list)
    rejected: list[Line] = field(default_factory=list)
    questions: list[Line] = field(default_factory=list)
    files: list[Line] = field(default_factory=list)
    more_files: int = 0
    config: list[Line] = field(default_factory=list)
    signatures: list[Line] = field(default_factory=list)
    code: list[tuple[int, str, str]] = field(default_factory=list)  # turn, lang, code
    phases: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    phases_from: str = ""
    risks: list[Line] = field(default_factory=list)
    rollback: list[Line] = field(default_factory=list)
    tests: list[Line] = field(default_factory=list)
    commands: list[Line] = field(default_factory=list)
    done: list[Line] = field(default_factory=list)


@dataclass
class DroppedClaim:
    part: str
    text: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"part": self.part, "text": self.text, "reason": self.reason}


@dataclass
class Distilled:
    """An implementation prompt and what went into it."""

    text: str
    source: str
    session_id: str
    kind: str
    backend: str | None
    tokens: int
    todos: list[str]
    dropped: list[DroppedClaim] = field(default_factory=list)
    secrets_redacted: int = 0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "session_id": self.session_id,
            "kind": self.kind,
            "backend": self.backend,
            "tokens": self.tokens,
            "todos": self.todos,
            "dropped": [d.as_json() for d in self.dropped],
            "secrets_redacted": self.secrets_redacted,
            "notes": self.notes,
        }


class _Extractor:
    """Pulls the facts of one session out of its turns, verbatim."""

    def __init__(self, source: Source, brief: str | None, code_root: Path | None) -> None:
        self.source = source
        self.session = source.session
        self.brief = analyze(brief) if brief and brief.strip() else None
        self.code_root = code_root
        self.blocks: dict[int, list[Block]] = {}
        self.relevant_turns: set[int] = set()
        self.notes: list[str] = []
        self._tree: dict[str, list[str]] | None = None  # code root: file name → paths
        for turn in self.session.turns:
            if turn.role not in ("user", "assistant"):
                continue
            blocks = turn_blocks(turn)
            if self.brief is not None:
                blocks = self._narrow(blocks)
            if blocks:
                self.relevant_turns.add(turn.n)
            self.blocks[turn.n] = blocks
        if self.brief is not None:
            # A turn that only calls tools (runs the tests, writes the file) belongs to the request
            # it serves: relevant when that request is.
            request = 0
            for turn in self.session.turns:
                if turn.role == "user":
                    request = turn.n
                elif turn.tool_calls and request in self.relevant_turns:
                    self.relevant_turns.add(turn.n)
            if not any(self.blocks.values()):
                self.notes.append("nothing in the session matched the brief; every part is a TODO")
        users = [t for t in self.session.turns if t.role == "user" and _is_request(t.text)]
        self.goal_words = stems(" ".join(t.text for t in users)) or stems(self.source.title)
        if self.brief is not None:
            self.goal_words |= self.brief.stems

    def _narrow(self, blocks: list[Block]) -> list[Block]:
        """Keep the blocks that touch the brief; code goes with the text that introduced it."""
        assert self.brief is not None
        kept: list[Block] = []
        last_kept = False
        for b in blocks:
            if b.kind == "code":
                hit = last_kept or self.brief.overlap(b.text) >= 0.5
            elif b.kind == "heading":
                hit = False
            else:
                hit = self.brief.overlap(b.text) >= 0.3
            if hit:
                kept.append(b)
            last_kept = hit if b.kind != "code" else last_kept
        return kept

    def texts(self, roles: Iterable[str] = ("user", "assistant")) -> Iterable[tuple[Block, str]]:
        """(block, sentence) for every prose sentence of the relevant blocks."""
        wanted = set(roles)
        for n in sorted(self.blocks):
            for b in self.blocks[n]:
                if b.role not in wanted or b.kind not in ("text", "item"):
                    continue
                for s in sentences(b.text) if b.kind == "text" else [b.text]:
                    if "chars elided" not in s:  # a transcript cut, not something anyone said
                        yield b, s

    def relevance(self, text: str) -> float:
        mine = stems(text)
        return len(mine & self.goal_words) / (len(mine) or 1)

    # each part ------------------------------------------------------------------------------

    def extract(self) -> Facts:
        f = Facts()
        self._goal(f)
        self._decisions(f)
        self._context(f)
        self._files(f)
        self._code(f)
        self._commands(f)
        self._phases(f)
        self._risks(f)
        self._done(f)
        return f

    def _goal(self, f: Facts) -> None:
        users = [
            t
            for t in self.session.turns
            if t.role == "user"
            and _is_request(t.text)
            and (self.brief is None or t.n in self.relevant_turns or not f.requests)
        ]
        if self.source.kind == "markdown":
            for turn in self.session.turns:
                head = next((b for b in self.blocks.get(turn.n, []) if b.kind == "heading"), None)
                if head and re.search(
                    r"goal|objective|summary|overview|purpose|why", head.text, re.I
                ):
                    body = [b for b in self.blocks[turn.n] if b.kind in ("text", "item")]
                    f.goal += [Line(_clip(b.text, 600), turn.n) for b in body[:4]]
                    break
            if not f.goal:
                first = next(
                    (b for n in sorted(self.blocks) for b in self.blocks[n] if b.kind == "text"),
                    None,
                )
                if first:
                    f.goal.append(Line(_clip(first.text, 600), first.turn))
            return
        if users:
            f.goal.append(Line(_clip(request_text(users[0].text), 800), users[0].n))
        for t in users[1:]:
            f.requests.append(Line(_clip(request_text(t.text), 300), t.n))
        f.requests = f.requests[:12]

    def _decisions(self, f: Facts) -> None:
        seen: list[set[tuple[str, ...]]] = []

        def novel(text: str) -> bool:
            sh = shingles(text)
            if any(containment(sh, s) >= 0.8 or jaccard(sh, s) >= 0.6 for s in seen):
                return False
            seen.append(sh)
            return True

        turns = {t.n: t for t in self.session.turns}
        for t in self.session.turns:
            if t.role != "user" or t.n not in self.relevant_turns:
                continue
            # Answers to the agent's multiple-choice questions are decisions in the user's words.
            for q, a in re.findall(r'"([^"\n]{4,300})"="([^"\n]{1,300})"', t.text):
                line = f"{_clip(q, 200)} → **{_clip(a, 200)}** (the user's answer)"
                if novel(line):
                    f.decisions.append(Line(line, t.n))
            if (
                _is_request(t.text)
                and _is_choice(t.text)
                and t.n != (f.goal[0].turn if f.goal else None)
            ):
                text = _clip(t.text, 300)
                if novel(text):
                    f.decisions.append(Line(f"The user chose: {text}", t.n))
        for b, s in self.texts(("assistant", "user")):
            if b.role == "user" or _is_narration(s) or s.rstrip().endswith("?") or len(s) < 25:
                continue
            if re.match(r"(?:alternatively|if you|you could|you can|option \w+:)", s, re.I):
                continue  # an option offered is not a decision taken
            rejected = bool(_REJECT_RE.search(s))
            decided = bool(_DECIDE_RE.search(s))
            if not (rejected or decided):
                continue
            if re.fullmatch(r"\*\*[^*]{1,80}\*\*:?", s.strip()):
                continue  # a bold label introducing a list, not a statement
            text = self._with_why(b, s)
            if not novel(text):
                continue
            if rejected:
                f.rejected.append(Line(_clip(text, 400), b.turn))
            else:
                suffix = "" if _WHY_RE.search(text) else " (why: not stated in the session)"
                f.decisions.append(Line(_clip(text, 400) + suffix, b.turn))
        f.decisions = self._best(f.decisions, 16)
        f.rejected = self._best(f.rejected, 10)
        # Questions: the user's that no later turn took up, and the agent's last ones.
        last_assistant = max((t.n for t in self.session.turns if t.role == "assistant"), default=0)
        for b, s in self.texts(("user", "assistant")):
            if not s.rstrip().endswith("?") or len(s) < 12:
                continue
            later = [turns[n] for n in sorted(turns) if n > b.turn and turns[n].role != "tool"]
            if b.role == "user":
                # The answer is everything the agent said before the user spoke again (the first
                # reply is often only "let me check").
                upto = next((t.n for t in later if t.role == "user"), None)
                answer = " ".join(
                    t.text for t in later if t.role == "assistant" and (upto is None or t.n < upto)
                )
                q = stems(s)
                if answer and len(q & stems(answer)) >= 0.4 * len(q):
                    continue
            elif b.turn != last_assistant or any(t.role == "user" for t in later):
                continue
            if novel(s):
                f.questions.append(
                    Line(f"TODO: settle this open question — {_clip(s, 300)}", b.turn)
                )
        f.questions = f.questions[:8]

    def _with_why(self, b: Block, s: str) -> str:
        if _WHY_RE.search(s) or b.kind != "text":
            return s
        parts = sentences(b.text)
        try:
            i = parts.index(s)
        except ValueError:
            return s
        nxt = parts[i + 1] if i + 1 < len(parts) else ""
        if nxt and (_WHY_RE.search(nxt) or re.match(r"(?:this|that|it|which)\b", nxt, re.I)):
            return f"{s} {nxt}"
        return s

    def _best(self, lines: list[Line], limit: int) -> list[Line]:
        """The ``limit`` lines closest to the goal, in session order."""
        if len(lines) <= limit:
            return lines
        ranked = sorted(lines, key=lambda ln: -self.relevance(ln.text))[:limit]
        keep = {id(ln) for ln in ranked}
        return [ln for ln in lines if id(ln) in keep]

    def _context(self, f: Facts) -> None:
        s = self.session
        where = [
            x
            for x in (
                s.project and f"project `{s.project}`",
                s.cwd and f"working directory `{s.cwd}`",
                s.git_branch and f"branch `{s.git_branch}`",
            )
            if x
        ]
        if where:
            f.context.append(Line("Planned in " + ", ".join(where) + "."))
        used = {ln.text.split(" (why:")[0] for ln in [*f.decisions, *f.rejected]}
        scored: list[tuple[float, int, Line]] = []
        for b, sent in self.texts(("assistant",)):
            if _is_narration(sent) or sent.endswith("?") or len(sent) < 30 or sent in used:
                continue
            quoted = sum(len(m) for m in re.findall(r"`[^`]*`|\"[^\"]*\"", sent))
            if quoted > 0.5 * len(sent):  # an example or a snippet, not a statement
                continue
            state = len(_STATE_RE.findall(sent))
            # Under a heading such as "Current status" or "Architecture" every line is context.
            if _CONTEXT_HEADING_RE.search(b.heading):
                state += 2
            score = (
                2.0 * min(state, 2) + min(len(_identifiers(sent)), 3) + 3.0 * self.relevance(sent)
            )
            if state and score >= 3:
                scored.append((score, len(scored), Line(_clip(sent, 400), b.turn)))
        best = sorted(scored, key=lambda x: (-x[0], x[1]))[:10]
        f.context += [ln for _, _, ln in sorted(best, key=lambda x: x[1])]

    def _files(self, f: Facts) -> None:
        cwd = self.session.cwd
        ops: dict[str, list[str]] = {}
        first_turn: dict[str, int] = {}

        def note(path: str, op: str, turn: int) -> None:
            p = relative_to(path, cwd).removeprefix("./")
            if not p or p in (".", "/") or "*" in p or _AGENT_PATH_RE.search(p):
                return
            ops.setdefault(p, []).append(op)
            first_turn.setdefault(p, turn)

        for t in self.session.turns:
            if self.brief is not None and t.n not in self.relevant_turns:
                continue
            for call in t.tool_calls:
                op = _file_op(call.name)
                for path in call.files:
                    if op:
                        note(path, op, t.n)
        for n in sorted(self.blocks):
            for b in self.blocks[n]:
                if b.kind in ("text", "item", "table", "heading"):
                    for p in find_paths(b.text):
                        note(p, "named", b.turn)
                elif b.kind == "code":
                    # Only a path in a comment on the first line names the file the code belongs to.
                    first = b.text.splitlines()[0]
                    if re.match(r"^\s*(?://|#|--|/\*)", first):
                        for p in find_paths(first):
                            note(p, "named", b.turn)
        # A bare name the session also wrote out in full is the same file.
        full = {p.rsplit("/", 1)[-1] for p in ops if "/" in p}
        for p in [p for p in ops if "/" not in p and p in full and set(ops[p]) == {"named"}]:
            del ops[p]
        if self.code_root is not None:
            # "invoices/routes.py" in prose is "app/invoices/routes.py" in the tree: one path.
            for p in list(ops):
                whole = self._in_code_root(p)
                if whole != p:
                    ops.setdefault(whole, []).extend(ops.pop(p))
                    first_turn[whole] = min(first_turn.get(whole, first_turn[p]), first_turn[p])
        rank = {"created": 0, "edited": 1, "named": 2, "read": 3}
        order = sorted(ops, key=lambda p: (min(rank[o] for o in ops[p]), first_turn[p]))
        for p in order[:40]:
            o = ops[p]
            kinds = [k for k in ("created", "edited", "read") if k in o]
            what = ", ".join(f"{k}{f' ({o.count(k)}×)' if o.count(k) > 1 else ''}" for k in kinds)
            what = what or "named"
            new = self._is_new(p, o)
            f.files.append(
                Line(f"- `{p}`{' (new)' if new else ''} — {what} in the session", first_turn[p])
            )
        f.more_files = max(0, len(order) - 40)

    def _in_code_root(self, path: str) -> str:
        """``path`` as it lies in the code root: itself, or the one file whose path ends with it."""
        assert self.code_root is not None
        if Path(path).is_absolute() or (self.code_root / path).exists():
            return path
        if self._tree is None:
            self._tree = _walk_tree(self.code_root)
        suffix = "/" + path.lstrip("/")
        found = [p for p in self._tree.get(path.rsplit("/", 1)[-1], []) if p.endswith(suffix)]
        return found[0] if len(found) == 1 else path

    def _is_new(self, path: str, ops: list[str]) -> bool:
        if self.code_root is not None:
            target = Path(path) if Path(path).is_absolute() else self.code_root / path
            return not target.exists()
        return ops[0] == "created" if ops else False

    def _code(self, f: Facts) -> None:
        sigs: dict[str, int] = {}
        blocks: list[tuple[int, str, str, list[str]]] = []
        for n in sorted(self.blocks):
            for b in self.blocks[n]:
                if b.role != "assistant" and b.role != "user":
                    continue
                if b.kind == "code":
                    if b.lang in _SHELL_LANGS:
                        continue
                    found = signature_lines(b.text)
                    for sig in found:
                        sigs[sig] = b.turn  # the last time it was written is the decided one
                    blocks.append((b.turn, b.lang, b.text, found))
                elif b.kind in ("text", "item"):
                    for m in _BACKTICK_RE.finditer(b.text):
                        span = m.group(1).strip()
                        if signature_lines(span):
                            sigs[span] = b.turn
        f.signatures = [Line(f"- `{sig}`", turn) for sig, turn in list(sigs.items())[:30]]
        # Code as decided: the last version of each block, short ones whole, with a signature
        # or a path comment (a block of output or a fragment says nothing on its own).
        latest: dict[str, tuple[int, str, str]] = {}
        for turn, lang, code, found in blocks:
            lines = code.splitlines()
            if len(lines) > 60:
                continue
            head = lines[0]
            if (
                not found
                and not re.match(r"^\s*(?://|#|--)\s*\S+\.\w+", head)
                and lang
                not in ("yaml", "yml", "toml", "json", "env", "ini", "sql", "graphql", "proto")
            ):
                continue
            key = found[0] if found else head
            latest[key] = (turn, lang, code)
        # The later a block was written the more decided it is: fill the caps from the end.
        total = 0
        chosen: list[tuple[int, str, str]] = []
        for turn, lang, code in sorted(latest.values(), key=lambda x: -x[0]):
            n = code.count("\n") + 1
            if total + n > 240 or len(chosen) >= 8:
                break
            chosen.append((turn, lang, code))
            total += n
        f.code = sorted(chosen, key=lambda x: x[0])

    def _commands(self, f: Facts) -> None:
        seen: set[str] = set()
        runs: dict[str, tuple[int, bool]] = {}  # command → (first turn, failed last time)
        for t in self.session.turns:
            if t.role == "tool" or (self.brief is not None and t.n not in self.relevant_turns):
                continue
            cmds: list[tuple[str, bool]] = [
                (c.command, c.is_error) for c in t.tool_calls if c.command
            ]
            for b in self.blocks.get(t.n, []):
                if b.kind == "code" and b.lang in _SHELL_LANGS:
                    for raw in b.text.splitlines():
                        line = raw.strip().removeprefix("$ ").strip()
                        if not line or line.startswith("#"):
                            continue
                        if _ENV_LINE_RE.match(line):
                            if line not in seen:
                                seen.add(line)
                                f.config.append(Line(f"- `{line}`", t.n))
                            continue
                        cmds.append((line, False))
            for cmd, failed in cmds:
                cmd = normalize_command(cmd)
                if not cmd or len(cmd) > 400:
                    continue
                if cmd in runs:
                    runs[cmd] = (runs[cmd][0], failed)  # the last run tells how it stands
                else:
                    runs[cmd] = (t.n, failed)
        for cmd, (turn, failed) in runs.items():
            if "\n" in cmd:
                continue  # an exploratory script, not a command anyone runs again
            first = cmd.split()[0]
            if _TEST_CMD_RE.search(cmd):
                mark = " (failed the last time the session ran it)" if failed else ""
                f.tests.append(Line(f"{cmd}{mark}", turn))
            elif first not in _TRIVIAL_CMDS and not _TRIVIAL_GIT.match(cmd):
                f.commands.append(Line(cmd, turn))
            if failed:
                f.risks.append(
                    Line(f"`{_clip(cmd, 200)}` still failed when the session ran it last.", turn)
                )
        f.tests = f.tests[:12]
        f.commands = f.commands[:15]
        f.risks = f.risks[:4]

    def _phases(self, f: Facts) -> None:
        table = self._phase_table()
        if table:
            f.phases, f.phases_from = table, "the phase table the session wrote"
            return
        listed = self._phase_headings()
        if listed:
            f.phases, f.phases_from = listed, "the phases the session listed"
            return
        f.phases_from = "the user's requests, in order"
        users = [
            t
            for t in self.session.turns
            if t.role == "user" and _is_request(t.text) and not t.text.rstrip().endswith("?")
        ]
        if self.brief is not None:
            users = [t for t in users if t.n in self.relevant_turns]
        ends = [t.n for t in users[1:]] + [len(self.session.turns) + 1]
        for t, end in zip(users, ends, strict=False):
            span = [x for x in self.session.turns if t.n < x.n < end]
            made: list[str] = []
            for x in span:
                for call in x.tool_calls:
                    if _file_op(call.name) in ("created", "edited"):
                        made += [relative_to(p, self.session.cwd) for p in call.files]
            if not made:
                for x in span:
                    for b in self.blocks.get(x.n, []):
                        made += find_paths(b.text) if b.kind != "code" else []
            made = [p for p in dict.fromkeys(made) if not _AGENT_PATH_RE.search(p)]
            deliver = ", ".join(f"`{p}`" for p in made[:6]) + (" …" if len(made) > 6 else "")
            passed = [
                normalize_command(c.command)
                for x in span
                for c in x.tool_calls
                if c.command and _TEST_CMD_RE.search(c.command) and not c.is_error
            ]
            exit_ = "; ".join(f"`{_clip(c, 120)}` passes" for c in list(dict.fromkeys(passed))[:4])
            f.phases.append((_clip(request_text(t.text), 160), deliver, exit_, t.n))
            if len(f.phases) >= 12:
                break

    def _phase_table(self) -> list[tuple[str, str, str, int | None]]:
        found: list[tuple[str, str, str, int | None]] = []
        for n in sorted(self.blocks):
            for b in self.blocks[n]:
                if b.kind != "table" or b.role != "assistant":
                    continue
                rows = [_cells(r) for r in b.text.splitlines()]
                rows = [r for r in rows if r and not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
                if len(rows) < 2 or not re.search(r"phase|step|stage|milestone", rows[0][0], re.I):
                    continue
                head = [c.lower() for c in rows[0]]
                gi = _column(head, r"goal|objective|name|description|what|focus|scope") or 1
                di = _column(head, r"deliverable|output|artifact|files?|changes?")
                ei = _column(head, r"exit|done|criteria|acceptance|verif|check|test")
                table: list[tuple[str, str, str, int | None]] = []
                for r in rows[1:]:
                    g, d, e = (_at(r, gi), _at(r, di), _at(r, ei))
                    # "1" or "Phase 1" names the row; the goal column says what it is.
                    plain = re.fullmatch(
                        r"(?:\*\*)?(?:phase|step|stage)?\s*\d+\.?(?:\*\*)?", r[0], re.I
                    )
                    name = g if plain and g else (f"{r[0]}: {g}" if g and g != r[0] else r[0])
                    table.append((name, d, e, b.turn))
                found = table  # the last table written is the plan as it stood at the end
        return found

    def _phase_headings(self) -> list[tuple[str, str, str, int | None]]:
        best: list[tuple[str, str, str, int | None]] = []
        for n in sorted(self.blocks):
            phases: list[tuple[str, str, str, int | None]] = []
            current: tuple[str, list[str], list[str]] | None = None
            level = 0
            for b in self.blocks[n]:
                m = _PHASE_RE.match(b.text) if b.kind in ("heading", "item") else None
                if m and (b.kind == "heading" or len(b.text) < 120):
                    if current:
                        phases.append(_phase_row(current, n))
                    current = (_clip(_strip_md(b.text), 160), [], [])
                    level = b.level
                    continue
                if current is None:
                    continue
                if b.kind == "heading" and b.level <= level:
                    phases.append(_phase_row(current, n))
                    current = None
                    continue
                if b.kind in ("item", "text"):
                    if _EXIT_RE.search(b.text) and not find_paths(b.text):
                        current[2].append(_clip(b.text, 160))
                    else:
                        current[1].append(_clip(b.text, 160))
            if current:
                phases.append(_phase_row(current, n))
            if len(phases) >= 2:
                best = phases
        return best

    def _risks(self, f: Facts) -> None:
        for b, s in self.texts(("assistant", "user")):
            if _is_narration(s) or s.endswith("?") or len(s) < 25:
                continue
            if _ROLLBACK_RE.search(s):
                f.rollback.append(Line(_clip(s, 300), b.turn))
            elif _RISK_RE.search(s):
                f.risks.append(Line(_clip(s, 300), b.turn))
        f.risks = self._best(_unique_lines(f.risks), 10)
        f.rollback = self._best(_unique_lines(f.rollback), 6)

    def _done(self, f: Facts) -> None:
        for b, s in self.texts(("assistant", "user")):
            if _DONE_RE.search(s) and not _is_narration(s):
                f.done.append(Line(_clip(s, 300), b.turn))
        f.done = _unique_lines(f.done)[-8:]  # the last word on "done" is the one that held


def normalize_command(cmd: str) -> str:
    """A command as someone would type it again: no ``cd X &&`` prefix, no ``2>&1 | tail``."""
    text = cmd.strip()
    if "\n" in text:
        return text
    text = " ".join(text.split())
    text = re.sub(r"^cd \S+ && ", "", text)
    text = re.sub(r"(?:\s+2>&1)?(?:\s*\|\s*(?:tail|head)(?:\s+-n)?(?:\s+-?\d+)?)?\s*$", "", text)
    return re.sub(r"\s+2>&1$", "", text).strip()


_SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", "dist", "build", "target"}


def _walk_tree(root: Path, limit: int = 200_000) -> dict[str, list[str]]:
    """File name → relative paths under ``root``, skipping VCS and dependency folders."""
    import os

    tree: dict[str, list[str]] = {}
    seen = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        rel = Path(folder).relative_to(root).as_posix()
        for name in files:
            tree.setdefault(name, []).append(name if rel == "." else f"{rel}/{name}")
            seen += 1
        if seen > limit:
            break
    return tree


def _file_op(tool: str) -> str | None:
    name = tool.lower()
    if name in ("write", "create", "create_file", "write_file"):
        return "created"
    if name in (
        "edit",
        "multiedit",
        "str_replace",
        "apply_patch",
        "notebookedit",
        "replace",
        "patch",
        "edit_file",
    ):
        return "edited"
    if name in ("read", "view", "read_file", "open", "notebookread", "shell", "exec", "bash"):
        return "read"
    return None


def _is_request(text: str) -> bool:
    """A user turn that asks for something (not "ok", not an interruption or a tool echo)."""
    flat = " ".join(text.split())
    if flat.startswith(("[Request interrupted", "User has approved", "Caveat:", "<")):
        return False
    return len([w for w in re.findall(r"[A-Za-z]{2,}", flat)]) >= 3


def _is_choice(text: str) -> bool:
    return bool(
        re.search(
            r"\b(let's|lets|go with|use|don't|do not|instead|no,|rather|prefer|only|never|always|"
            r"skip|keep|choose|pick|option)\b",
            text,
            re.I,
        )
    )


def _cells(row: str) -> list[str]:
    inner = row.strip().strip("|")
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def _at(row: list[str], i: int | None) -> str:
    return row[i] if i is not None and i < len(row) else ""


def _column(head: list[str], pattern: str) -> int | None:
    for i, cell in enumerate(head):
        if i and re.search(pattern, cell):
            return i
    return None


def _phase_row(
    current: tuple[str, list[str], list[str]], turn: int
) -> tuple[str, str, str, int | None]:
    goal, deliver, exit_ = current
    return goal, "; ".join(deliver[:4]), "; ".join(exit_[:3]), turn


def _unique_lines(lines: list[Line]) -> list[Line]:
    out: list[Line] = []
    seen: list[set[tuple[str, ...]]] = []
    for ln in lines:
        sh = shingles(ln.text)
        if any(containment(sh, s) >= 0.8 for s in seen):
            continue
        seen.append(sh)
        out.append(ln)
    return out


# -- writing the parts -----------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_parts(source: Source, f: Facts, brief: str | None) -> dict[str, list[str]]:
    """Each part's lines, tags attached; an empty part says what is missing as a ``TODO:``."""
    c = source.cite
    parts: dict[str, list[str]] = {p: [] for p in PARTS}

    goal = parts["Goal"]
    if brief:
        goal += [f"Narrowed to: **{' '.join(brief.split())}**", ""]
    goal += [ln.render(source) for ln in f.goal] or ["TODO: the session never stated its goal"]
    if f.requests:
        goal += ["", "Later requests in the session:", ""]
        goal += [f"- {ln.render(source)}" for ln in f.requests]

    ctx = parts["Context"]
    ctx += [f"- {ln.render(source)}" for ln in f.context]
    if not ctx:
        ctx.append("TODO: the session says nothing about the current state of the code")

    dec = parts["Decisions and rejected alternatives"]
    dec += [f"- {ln.render(source)}" for ln in f.decisions] or [
        "TODO: no decision was recorded in the session"
    ]
    dec += ["", "### Rejected alternatives", ""]
    dec += [f"- {ln.render(source)}" for ln in f.rejected] or ["- None recorded in the session."]
    if f.questions:
        dec += ["", "### Open questions", ""]
        dec += [ln.render(source) for ln in f.questions]

    files = parts["Files and interfaces"]
    files += [ln.render(source) for ln in f.files]
    if f.more_files:
        files.append(f"- … and {f.more_files} more files the session only read or named")
    if not f.files:
        files.append("TODO: the session named no file paths; list the files to create or change")
    if f.config:
        files += ["", "### Configuration", "", *(ln.render(source) for ln in f.config)]
    if f.signatures:
        files += ["", "### Signatures", "", *(ln.render(source) for ln in f.signatures)]
    if f.code:
        files += ["", "### Code as decided"]
        for turn, lang, code in f.code:
            files += ["", f"From {c(turn)}:", "", fence(code, lang)]

    ph = parts["Phases"]
    if f.phases:
        ph += [f"_From {f.phases_from}._", ""]
    ph += ["| " + " | ".join(PHASE_COLUMNS) + " |", "|---|---|---|---|"]
    for i, (goal_text, deliver, exit_, at) in enumerate(f.phases or [("", "", "", None)], 1):
        g = _cell(goal_text) or "TODO: the session defined no phases"
        if at:
            g += f" {c(at)}"
        d = _cell(deliver) or "TODO: deliverables not settled"
        e = _cell(exit_) or "TODO: exit criteria not settled"
        ph.append(f"| {i} | {g} | {d} | {e} |")

    risk = parts["Risks and rollback"]
    risk += [f"- {ln.render(source)}" for ln in f.risks] or [
        "TODO: no risk was discussed in the session"
    ]
    risk += ["", "### Rollback", ""]
    risk += [f"- {ln.render(source)}" for ln in f.rollback] or [
        "TODO: rollback was not discussed; say how to undo each phase"
    ]

    tests = parts["Test commands"]
    if f.tests:
        tests += [f"From {', '.join(dict.fromkeys(c(ln.turn) for ln in f.tests if ln.turn))}:", ""]
        tests.append(fence("\n".join(ln.text for ln in f.tests), "bash"))
    else:
        tests.append(
            "TODO: the session settled no test command; name the command that proves each phase"
        )
    if f.commands:
        tests += ["", "### Other commands from the session (setup, build, run)", ""]
        tests += [
            f"- `{_clip(ln.text, 200)}` {c(ln.turn)}" if ln.turn else f"- `{ln.text}`"
            for ln in f.commands
        ]

    done = parts["Definition of done"]
    done += [f"- {ln.render(source)}" for ln in f.done]
    done.append("- [ ] Every phase in the table meets its exit criteria.")
    for ln in f.tests:
        done.append(f"- [ ] `{ln.text.split(' (failed')[0]}` passes.")
    if not f.tests:
        done.append("TODO: name the command whose success proves the work is done")
    done.append("- [ ] Every decision above holds in the code; no rejected alternative came back.")
    return parts


def assemble(
    source: Source, parts: dict[str, list[str]], brief: str | None, backend: str | None
) -> str:
    s = source.session
    origin = f"`{source.path.name}`" + (
        f" (session `{s.id}`, {s.agent}, {len(s.turns)} turns)"
        if source.kind == "transcript"
        else ""
    )
    how = (
        f"written by {backend} and checked against the cited turns"
        if backend
        else "pulled verbatim from the session"
    )
    tagnote = (
        "`ctxmill show TAG` opens a tag"
        if source.kind == "transcript"
        else "tags give the source lines"
    )
    lines = [
        f"# Implementation prompt: {_clip(source.title, 120)}",
        "",
        f"_Distilled by ctxmill from {origin}; every line is {how}, tagged with where it came from "
        f"({tagnote}). Lines starting `TODO:` mark what the session never settled._",
    ]
    if brief:
        lines.append(f"_Scope: only what concerns “{' '.join(brief.split())}”._")
    for name in PARTS:
        body = parts.get(name) or []
        lines += ["", f"## {name}", "", *body]
    return "\n".join(lines).rstrip() + "\n"


def todo_items(text: str) -> list[tuple[int, str]]:
    """(1-based line, item) for every open ``TODO:`` of a prompt.

    Fenced code and inline code spans only talk about TODOs; a table row may hold several (one
    per cell, labelled with the row's first cell).
    """
    out: list[tuple[int, str]] = []
    bar: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if m := _FENCE_RE.match(line):
            bar = None if bar and line.strip().startswith(bar) else (bar or m[2])
            continue
        bare = re.sub(r"`[^`\n]*`", "", line)
        if bar is not None or "TODO:" not in bare:
            continue
        if not bare.strip().startswith("|"):
            out.append((n, bare.strip().lstrip("-*+ ").strip()))
            continue
        cells = _cells(bare)
        label = cells[0] if cells and cells[0] and "TODO:" not in cells[0] else ""
        for cell in cells:
            if "TODO:" in cell:
                todo = cell[cell.index("TODO:") :]
                out.append((n, f"{todo} (phase {label})" if label else todo))
    return out


def distill_session(
    source: Source,
    *,
    brief: str | None = None,
    runner: LLMRunner | None = None,
    code_root: Path | None = None,
) -> Distilled:
    """Write the implementation prompt for ``source``: extractive, or with ``runner``'s model."""
    extractor = _Extractor(source, brief, code_root)
    facts = extractor.extract()
    parts = render_parts(source, facts, brief)
    notes = list(extractor.notes)
    dropped: list[DroppedClaim] = []
    backend = None
    if runner is not None:
        backend = f"{runner.backend.name}:{runner.backend.model}"
        written, dropped, note = _model_parts(source, runner, brief, extractor)
        if note:
            notes.append(note)
        for name in PARTS:
            if written.get(name):
                parts[name] = written[name]
            elif note is None:
                notes.append(
                    f"'{name}': nothing the model wrote was supported; kept the extractive part"
                )
        if dropped:
            notes.append(
                f"{len(dropped)} model claims dropped as unsupported by the turns they cite"
            )
    text = assemble(source, parts, brief, backend)
    text, secrets = redact(text)
    if secrets:
        notes.append(f"{secrets} secrets redacted from the prompt")
    return Distilled(
        text=text,
        source=str(source.path),
        session_id=source.session.id,
        kind=source.kind,
        backend=backend,
        tokens=count_tokens(text),
        todos=[item for _, item in todo_items(text)],
        dropped=dropped,
        secrets_redacted=secrets,
        notes=notes,
    )


def append_context(text: str, context_md: str, brief: str) -> str:
    """The prompt with a context.md appended as an appendix, its headings pushed two levels down
    so that the prompt's own parts stay the only ``##`` headings."""
    body = context_md
    if body.startswith("---\n"):
        end = body.find("\n---\n", 4)
        body = body[end + 5 :] if end >= 0 else body
    out: list[str] = []
    bar: str | None = None
    for line in body.strip().splitlines():
        if m := _FENCE_RE.match(line):
            bar = None if bar and line.strip().startswith(bar) else (bar or m[2])
        elif bar is None and (h := re.match(r"^(#{1,4})(\s.*)$", line)):
            line = "#" * (len(h[1]) + 2) + h[2]
        out.append(line)
    appendix = [
        "",
        "## Appendix: context from the team's memory",
        "",
        f"_Built by `ctxmill build` for “{' '.join(brief.split())}”; background, not instructions._",
        "",
        *out,
    ]
    return text.rstrip() + "\n" + "\n".join(appendix) + "\n"


# -- the model path --------------------------------------------------------------------------

_SYSTEM = """You turn a planning session into a self-contained implementation prompt that a fresh \
coding agent can follow cold, with no other context. Use only what the session says.

Write exactly these second-level sections, in this order:
## Goal
## Context
## Decisions and rejected alternatives
## Files and interfaces
## Phases
## Risks and rollback
## Test commands
## Definition of done

Rules:
- End every bullet, paragraph and table row with the session turns it comes from, like [T12] or \
[T12, T15]. A line without a turn reference is deleted.
- Copy file paths, signatures, identifiers, commands and numbers exactly as the session wrote them.
- Decisions: say why. Rejected alternatives: say why they were rejected.
- Files and interfaces: one bullet per path, the path in backticks first, followed by (new) when \
the session creates it. Put signatures and code the session decided on in fenced blocks right after \
the bullet that cites them.
- Phases: one markdown table with the columns Phase | Goal | Deliverables | Exit criteria.
- Test commands: a bullet citing where they came from, then a ```bash block.
- Where the session never settled something a fresh agent needs, write a line starting with `TODO:` \
(it needs no turn reference).
Write nothing else: no preamble, no closing remarks."""

_CITE_RE = re.compile(r"\s*\[\s*T\s*(\d+(?:\s*[,;]\s*T?\s*\d+|\s*[-–]\s*T?\s*\d+)*)\s*\]")


def session_digest(
    source: Source, *, max_chars: int = 120_000, extractor: _Extractor | None = None
) -> str:
    """The session as the model reads it: numbered turns, tool output cut short, thinking dropped."""
    caps = {"user": 3000, "assistant": 6000, "tool": 600, "summary": 2000, "system": 600}
    turns = source.session.turns
    if extractor is not None and extractor.brief is not None:
        turns = [t for t in turns if t.n in extractor.relevant_turns]
    while True:
        parts = []
        for t in turns:
            body = re.sub(r"^\(thinking\).*$", "", t.text, flags=re.M).strip()
            parts.append(f"### T{t.n} ({t.role})\n{_head(body, caps.get(t.role, 600))}")
        text = "\n\n".join(parts)
        if len(text) <= max_chars or caps["assistant"] <= 400:
            return text[:max_chars]
        for k in caps:
            if k != "user":
                caps[k] //= 2


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[… {len(text) - limit} chars cut]"


def _turn_texts(source: Source) -> dict[int, str]:
    """What a claim may be checked against: each turn's text, its commands and paths."""
    out: dict[int, str] = {}
    for t in source.session.turns:
        extra = [c.command or "" for c in t.tool_calls] + [f for c in t.tool_calls for f in c.files]
        out[t.n] = "\n".join([t.text, *extra])
    return out


def _parse_cites(text: str) -> tuple[str, list[int]]:
    """``text`` without its ``[T3, T5]`` markers, and the turn numbers they name."""
    turns: list[int] = []
    for m in _CITE_RE.finditer(text):
        for part in re.split(r"[,;]", m.group(1)):
            nums = [int(x) for x in re.findall(r"\d+", part)]
            if len(nums) == 2 and re.search(r"[-–]", part) and 0 <= nums[1] - nums[0] <= 10:
                turns += list(range(nums[0], nums[1] + 1))
            else:
                turns += nums
    return _CITE_RE.sub("", text).rstrip(), list(dict.fromkeys(turns))


def check_claim(claim: str, cited: str) -> str | None:
    """Why ``claim`` is not supported by the ``cited`` text, or None when it is.

    Every identifier, path and number in the claim must appear in the cited text, and at least
    half of its content words must (by stem), so that a claim cannot borrow a real citation for a
    statement the turn never made.
    """
    low = cited.lower()
    for ident in _identifiers(claim):
        if ident.lower() not in low:
            return f"'{ident}' is not in the cited turn(s)"
    words = {stem(w) for w in _content(claim)} - {stem(w) for w in _CITE_WORDS}
    if not words:
        return None
    have = stems(cited)
    share = len(words & have) / len(words)
    if share < 0.5:
        return f"only {share:.0%} of its words are in the cited turn(s)"
    return None


def _content(text: str) -> list[str]:
    from ctxmill.pipeline.brief import content_words

    return [w for w in content_words(text) if not w.isdigit()]


def _model_parts(
    source: Source, runner: LLMRunner, brief: str | None, extractor: _Extractor
) -> tuple[dict[str, list[str]], list[DroppedClaim], str | None]:
    from ctxmill.llm.base import LLMError

    ask = "Write the implementation prompt for this session."
    if brief:
        ask += f" Narrow it to this part of the plan only: {' '.join(brief.split())}"
    digest = session_digest(source, extractor=extractor)
    try:
        reply = runner.complete(
            f"{ask}\n\n{digest}", system=_SYSTEM, max_tokens=6000, purpose="distill"
        )
    except LLMError as exc:
        return {}, [], f"model step failed, the prompt is extractive: {exc}"
    texts = _turn_texts(source)
    parts, dropped = verify_model_output(reply.text, texts, source.cite)
    if not parts:
        return {}, dropped, "the model wrote none of the required parts; the prompt is extractive"
    return parts, dropped, None


def verify_model_output(
    reply: str, turn_texts: dict[int, str], cite: Callable[[int], str]
) -> tuple[dict[str, list[str]], list[DroppedClaim]]:
    """Split a model's prompt into parts and keep only what the cited turns support.

    A bullet, paragraph or table row survives when it cites turns that exist and :func:`check_claim`
    accepts it against them; its ``[Tn]`` markers become tags.  A fenced block survives with the
    claim before it when most of its lines appear in that claim's turns.  ``TODO:`` lines stay:
    they claim nothing.  Unknown ``##`` sections are dropped.
    """
    parts: dict[str, list[str]] = {}
    dropped: list[DroppedClaim] = []
    names = {p.lower(): p for p in PARTS}
    current: str | None = None
    last_ok: list[int] | None = None  # turns of the claim a following code block belongs to
    lines = reply.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if h := re.match(r"^##\s+(.+?)\s*#*\s*$", line):
            title = _strip_md(h[1]).lower()
            # "## Decisions" or "## Files" for a part whose full title is longer still counts.
            first_words = {k.split()[0]: p for k, p in names.items()}
            current = names.get(title) or first_words.get(title.split()[0] if title else "")
            if current is not None:
                parts.setdefault(current, [])
            last_ok = None
            continue
        if current is None:
            continue
        out = parts[current]
        if m := _FENCE_RE.match(line):
            bar = m[2]
            body: list[str] = []
            while i < len(lines) and not lines[i].strip().startswith(bar):
                body.append(lines[i])
                i += 1
            i += 1
            code = "\n".join(body)
            if last_ok and _code_supported(code, "\n".join(turn_texts[n] for n in last_ok)):
                out += [fence(textwrap.dedent(code).strip("\n"), m[3])]
            else:
                dropped.append(
                    DroppedClaim(current, _clip(code, 200), "code not found in the cited turn(s)")
                )
            continue
        stripped = line.strip()
        if (
            not stripped
            or re.match(r"^#{3,6}\s", stripped)
            or re.fullmatch(r"\|?[\s:|-]+\|?", stripped)
        ):
            out.append(line)
            continue
        if "TODO:" in stripped:
            text, turns = _parse_cites(line)
            good = [n for n in turns if n in turn_texts]
            out.append(text + "".join(f" {cite(n)}" for n in good))
            last_ok = None
            continue
        if (
            stripped.startswith("|")
            and re.search(r"\bphase\b", stripped, re.I)
            and re.search(r"exit", stripped, re.I)
        ):
            out.append(line)  # the header row of the phase table
            continue
        text, turns = _parse_cites(line)
        claim = text.strip().lstrip("-*+ ").strip()
        if not turns:
            dropped.append(DroppedClaim(current, _clip(claim, 200), "cites no turn"))
            last_ok = None
            continue
        missing = [n for n in turns if n not in turn_texts]
        if missing:
            dropped.append(
                DroppedClaim(
                    current,
                    _clip(claim, 200),
                    f"cites turn(s) the session does not have: {missing}",
                )
            )
            last_ok = None
            continue
        plain = re.sub(r"\(new\)|\*\*|__|\|", " ", claim)
        why = check_claim(plain, "\n".join(turn_texts[n] for n in turns))
        if why:
            dropped.append(DroppedClaim(current, _clip(claim, 200), why))
            last_ok = None
            continue
        tags = " ".join(cite(n) for n in turns)
        if text.rstrip().endswith("|"):
            out.append(text.rstrip()[:-1].rstrip() + f" {tags} |")
        else:
            out.append(f"{text} {tags}")
        last_ok = turns
    kept = {k: _trim(v) for k, v in parts.items()}
    return {
        k: v for k, v in kept.items() if any(x.strip() and not x.startswith("#") for x in v)
    }, dropped


def _code_supported(code: str, cited: str) -> bool:
    lines = [ln.strip() for ln in code.splitlines() if ln.strip()]
    if not lines:
        return False
    low = cited.lower()
    found = sum(1 for ln in lines if ln.lower() in low)
    return found >= 0.8 * len(lines)


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    # A sub-heading or table header left with nothing under it says nothing.
    out: list[str] = []
    for i, line in enumerate(lines):
        if re.match(r"^#{3,6}\s", line.strip()):
            rest = next((x for x in lines[i + 1 :] if x.strip()), "")
            if not rest or re.match(r"^#{3,6}\s", rest.strip()):
                continue
        out.append(line)
    return out


# -- compressing a long prompt ---------------------------------------------------------------

_IMPERATIVES = frozenset(
    re.findall(
        r"\S+",
        """
    add allow always apply ask avoid be build call cap check choose cite close commit confirm
    copy create cut default define delete deny disable do don't drop emit enable ensure escalate
    escape explain fail fetch fix flag follow format give handle include keep label limit list
    log make mark merge mention move name never note open pass pin post prefer print put quote
    raise read record redact refer refuse reject release remove rename reply report require
    respond retry return review round run say send set ship show sign skip sort split start stop
    store tag tell test treat trim update use validate verify wait warn wrap write
""",
    )
)
_STRONG_RE = re.compile(
    r"\b(must(?: not)?|never|always|shall|required?|mandatory|forbidden|prohibited|do not|don't|"
    r"cannot|can't|only|at least|at most|no more than|no later than|exactly|under no|needs? (?:a|an|to|the)|"
    r"has to|have to|requires?|is required|not allowed|may not|may only|up to)\b",
    re.I,
)
# A heading that says its section is rules ("Things you must not do") makes each line under it one.
_RULE_HEADING_RE = re.compile(
    r"\b(must|never|don't|do not|rules?|polic(?:y|ies)|requirements?|constraints?|limits?|"
    r"guidelines?|conventions?|style|checks?|security|pitfalls|bitten|gotchas?)\b",
    re.I,
)
# A capitalised word inside a sentence is usually a name: a product, a place, a team.
_NAME_RE = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+(?: [A-Z][a-z]+)*")
_SOFT_RE = re.compile(
    r"\b(should|avoid|prefer|ensure|make sure|unless|except|instead|before|after|within)\b", re.I
)
_NUMBER_RE = re.compile(
    r"(?<![\w.])[$€£]?\d[\d,.:]*%?(?:\s?(?:ms|s|sec|min|h|hours?|days?|weeks?|MB|GB|KB|tokens?|USD|EUR))?"
)
_FILLER_RE = re.compile(
    r"\b(welcome|we(?:'re| are) (?:excited|thrilled|proud|happy)|this (?:document|section|page) "
    r"(?:describes|explains|covers|is)|as (?:mentioned|noted|discussed|described) (?:above|earlier|"
    r"before)|in summary|to summari[sz]e|overall|basically|simply put|in other words|it is worth "
    r"noting|it's worth noting|feel free|we hope|hopefully|thank you|thanks for|happy coding|"
    r"at the end of the day|needless to say|of course|over the years|journey|passionate|"
    r"world-class|best-in-class|delight|love)\b",
    re.I,
)


@dataclass
class Unit:
    """A heading, sentence, list item, table row or code block of a long prompt."""

    line: int  # 1-based line where it starts
    kind: str  # heading | sentence | item | row | head | code
    text: str  # as rendered (items with their marker, sentences bare)
    level: int = 0  # heading level
    para: int = -1  # sentences of one paragraph re-join on one line
    parent: int = -1  # index of the heading it sits under
    table: int = -1  # rows of one table share their header
    score: float = 0.0
    tokens: int = 0

    def as_json(self, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "kind": self.kind, "text": self.text}
        if reason:
            out["reason"] = reason
        return out


@dataclass
class CompressedPrompt:
    text: str
    budget: int
    tokens_before: int
    tokens_after: int
    units: list[Unit]
    kept: list[int]
    dropped: dict[int, str]  # unit index → filler | duplicate of line N | budget

    def as_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for reason in self.dropped.values():
            key = reason.split(" ")[0]
            counts[key] = counts.get(key, 0) + 1
        return {
            "budget": self.budget,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "kept": len(self.kept),
            "dropped_counts": counts,
            "dropped": [self.units[i].as_json(r) for i, r in sorted(self.dropped.items())],
        }


def prompt_units(text: str) -> list[Unit]:
    """Split a markdown prompt into the units :func:`compress_prompt` keeps or drops."""
    units: list[Unit] = []
    lines = text.splitlines()
    parents: list[int] = []  # the heading stack, as unit indexes
    para_no = 0
    table_no = 0
    buf: list[str] = []
    buf_start = 0

    def parent() -> int:
        return parents[-1] if parents else -1

    def flush() -> None:
        nonlocal buf, para_no
        if not buf:
            return
        first = buf[0]
        joined = " ".join(x.strip() for x in buf)
        if bm := _BULLET_RE.match(first):
            indent = bm.group(1)
            marker = first[len(indent) : bm.end()].strip()
            body = " ".join([first[bm.end() :].strip(), *(x.strip() for x in buf[1:])])
            units.append(Unit(buf_start + 1, "item", f"{indent}{marker} {body}", parent=parent()))
        else:
            para_no += 1
            for s in sentences(joined) or [joined]:
                units.append(Unit(buf_start + 1, "sentence", s, para=para_no, parent=parent()))
        buf = []

    i = 0
    if lines and lines[0].strip() == "---":  # front matter travels whole
        end = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), None)
        if end is not None:
            units.append(Unit(1, "code", "\n".join(lines[: end + 1])))
            i = end + 1
    while i < len(lines):
        line = lines[i]
        if m := _FENCE_RE.match(line):
            flush()
            start = i
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(m[2]):
                i += 1
            units.append(Unit(start + 1, "code", "\n".join(lines[start : i + 1]), parent=parent()))
            i += 1
            continue
        if h := _HEADING_RE.match(line):
            flush()
            level = len(h[1])
            while parents and units[parents[-1]].level >= level:
                parents.pop()
            units.append(Unit(i + 1, "heading", line.strip(), level=level, parent=parent()))
            parents.append(len(units) - 1)
            i += 1
            continue
        if line.strip().startswith("|"):
            flush()
            table_no += 1
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append((i, lines[i].strip()))
                i += 1
            head = [r for r in rows[:2]]
            if len(rows) >= 2 and re.fullmatch(r"\|?[\s:|-]+\|?", rows[1][1]):
                units.append(
                    Unit(
                        head[0][0] + 1,
                        "head",
                        "\n".join(r for _, r in head),
                        parent=parent(),
                        table=table_no,
                    )
                )
                rows = rows[2:]
            for n, r in rows:
                units.append(Unit(n + 1, "row", r, parent=parent(), table=table_no))
            continue
        if not line.strip():
            flush()
        elif _BULLET_RE.match(line):
            flush()
            buf, buf_start = [line], i
        else:
            if not buf:
                buf_start = i
            buf.append(line)
        i += 1
    flush()
    return units


def rule_score(text: str) -> float:
    """How much a sentence or bullet reads like a rule or a fact a model must keep."""
    plain = _BULLET_RE.sub("", text, count=1).strip().lstrip("*_>").strip()
    words = re.findall(r"[A-Za-z][A-Za-z']*", plain)
    score = 0.0
    if words and words[0].lower() in _IMPERATIVES:
        score += 2.0
    score += 2.0 * min(len(_STRONG_RE.findall(plain)), 2)
    score += 1.0 * min(len(_SOFT_RE.findall(plain)), 2)
    numbers = [n for n in _NUMBER_RE.findall(plain) if re.search(r"\d", n)]
    score += 1.0 * min(len(numbers), 3)
    score += 1.5 * min(len(_identifiers_loose(plain)), 3)
    score += 0.5 * min(len(_NAME_RE.findall(plain)), 2)
    if _FILLER_RE.search(plain):
        score -= 3.0
    if plain.endswith("?"):
        score -= 1.0
    if len(words) < 4 and score < 2:
        score -= 1.0
    return score


def _identifiers_loose(text: str) -> list[str]:
    found = [m for m in _BACKTICK_RE.findall(text)]
    found += find_paths(text)
    found += re.findall(
        r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b[a-z]+(?:_[a-z0-9]+)+\b|\b[a-z]+[A-Z]\w+\b", text
    )
    found += re.findall(r"(?<![\w-])--[a-z][\w-]+|https?://\S+|\b[\w.+-]+@[\w-]+\.[\w.]+\b", text)
    return list(dict.fromkeys(found))


def render_units(units: list[Unit], keep: set[int]) -> str:
    """The kept units in their original order, with the headings and table headers they need."""
    needed = set(keep)
    for i in keep:
        p = units[i].parent
        while p >= 0 and p not in needed:
            needed.add(p)
            p = units[p].parent
    heads = {u.table: j for j, u in enumerate(units) if u.kind == "head"}
    for i in keep:
        if units[i].kind == "row" and units[i].table in heads:
            needed.add(heads[units[i].table])
    out: list[str] = []
    last_para = -2
    for j, u in enumerate(units):
        if j not in needed:
            continue
        if u.kind == "sentence" and u.para == last_para and out:
            out[-1] += " " + u.text
            continue
        if u.kind in ("heading", "code", "head") or (u.kind == "sentence"):
            if out and out[-1] != "":
                out.append("")
        elif u.kind in ("item", "row") and out and out[-1] != "":
            prev = units[_prev(needed, j)]
            if prev.kind not in ("item", "row", "head"):
                out.append("")
        out.append(u.text)
        last_para = u.para if u.kind == "sentence" else -2
        if u.kind in ("heading", "code"):
            out.append("")
    return "\n".join(x for k, x in enumerate(out) if x or (k and out[k - 1])).strip() + "\n"


def _prev(needed: set[int], j: int) -> int:
    return max((k for k in needed if k < j), default=j)


def compress_prompt(text: str, budget: int) -> CompressedPrompt:
    """Fit ``text`` under ``budget`` tokens, keeping the units that read most like rules and facts.

    Filler (score ≤ 0) and near-duplicates of a better unit are dropped first; the rest are ranked
    by score (earlier first on ties, since prompts tend to put what matters first), the longest
    prefix of the ranking that fits is found by binary search over whole renders, and what is left
    is offered once more in ranked order, so that a short rule still fits after a long one did not.
    """
    if budget < 1:
        raise DistillError("--budget must be a positive number of tokens")
    units = prompt_units(text)
    before = count_tokens(text)
    dropped: dict[int, str] = {}
    candidates: list[int] = []
    for i, u in enumerate(units):
        if u.kind == "heading":
            continue
        if u.kind == "head":
            continue
        u.score = rule_score(u.text) + (2.0 if u.kind in ("code", "row") else 0.0)
        if u.parent >= 0 and u.kind != "code" and _RULE_HEADING_RE.search(units[u.parent].text):
            u.score += 1.5
        if u.score <= 0:
            dropped[i] = "filler"
        else:
            candidates.append(i)
    # Value for its cost, as in a knapsack; the exponent under 1 keeps a long rule that carries
    # several facts from losing to every short one.
    for i in candidates:
        units[i].tokens = max(1, count_tokens(units[i].text))
    ranked = sorted(candidates, key=lambda i: (-units[i].score / units[i].tokens ** 0.7, i))
    kept_sh: list[tuple[int, set[tuple[str, ...]]]] = []
    ranked_unique: list[int] = []
    for i in ranked:
        sh = shingles(units[i].text)
        twin = next(
            (j for j, s in kept_sh if containment(sh, s) >= 0.8 or jaccard(sh, s) >= 0.6), None
        )
        if twin is not None and units[i].kind != "code":
            dropped[i] = f"duplicate of line {units[twin].line}"
            continue
        kept_sh.append((i, sh))
        ranked_unique.append(i)

    def fits(keep: set[int]) -> bool:
        return count_tokens(render_units(units, keep)) <= budget

    lo, hi = 0, len(ranked_unique)
    while lo < hi:  # the largest k whose top-k ranking fits
        mid = (lo + hi + 1) // 2
        if fits(set(ranked_unique[:mid])):
            lo = mid
        else:
            hi = mid - 1
    keep = set(ranked_unique[:lo])
    for i in ranked_unique[lo:]:
        if fits(keep | {i}):
            keep.add(i)
        else:
            dropped[i] = "budget"
    result = render_units(units, keep) if keep else ""
    return CompressedPrompt(
        text=result,
        budget=budget,
        tokens_before=before,
        tokens_after=count_tokens(result),
        units=units,
        kept=sorted(keep),
        dropped=dropped,
    )
