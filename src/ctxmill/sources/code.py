"""The code root: which files count as code, how a file is cut into chunks, and where identifiers
are used.

Code is searched by keyword only (its chunks are not embedded).  A chunk is a run of whole lines,
never overlapping the next, cut where it is cheap to see a boundary: before a top-level
definition (with the decorators and comments right above it), else before an indented one, else
after a blank line, and never longer than 60 lines.  Its tag ``[code:PATH:LINE]`` names the first
line.  Reference search uses ripgrep when it is on PATH and a plain scan of the same files when it
is not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from ctxmill.model import Chunk, Layer, Tag

MAX_FILE_BYTES = 1_000_000
MAX_CHUNK_LINES = 60
MIN_CHUNK_LINES = 5  # a definition shorter than this shares a chunk with what follows
MAX_LINE_CHARS = 500  # of a reference's line text
GIT_TIMEOUT_S = 60
RG_TIMEOUT_S = 120

SKIPPED_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", "build", "dist",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".next", "target",
        ".gradle", ".idea", ".eggs",
    }
)  # fmt: skip
BINARY_SUFFIXES = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd",
        ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar",
        ".war", ".whl", ".egg", ".so", ".dylib", ".dll", ".exe", ".o", ".a", ".lib", ".obj",
        ".class", ".pyc", ".pyo", ".wasm", ".bin", ".dat", ".db", ".sqlite", ".sqlite3",
        ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".m4a", ".wav", ".ogg",
        ".flac", ".mov", ".avi", ".mkv", ".webm", ".npy", ".npz", ".pt", ".pth", ".onnx",
        ".safetensors", ".gguf", ".parquet", ".arrow", ".pkl", ".xlsx", ".docx", ".pptx",
    }
)  # fmt: skip

# A definition at column 0 in the common languages: Python, JS/TS, Go, Rust, C-family types.
_TOP_DEF_RE = re.compile(
    r"(?:(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:def|class|function\*?|interface|enum)\s"
    r"|(?:export\s+)?(?:const|let|var|type)\s+\w+\s*(?::[^=]*)?=\s*(?:async\s*)?(?:\(|function)"
    r"|func\s|(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:fn|struct|enum|trait|impl|mod)\b"
    r"|(?:public|private|protected|internal|abstract|final|static|sealed)\s+(?:\w+\s+)*"
    r"(?:class|interface|enum|record)\s)"
)
# A definition inside a class or block: a method.
_INNER_DEF_RE = re.compile(
    r"[ \t]+(?:(?:async\s+)?def\s|(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?fn\s"
    r"|(?:(?:public|private|protected|static|async|override|final)\s+)+[\w<>\[\],\s]*\w+\s*\()"
)
# Lines that belong to the definition below them.
_PREAMBLE_RE = re.compile(r"(?:@|#(?!include)|//|/\*|\*|///|#\[)")


def list_code_files(root: Path) -> list[Path]:
    """The text files under ``root``, sorted: what git tracks or would add when ``root`` is in a
    work tree, otherwise everything found by a walk.  Either way VCS, dependency, cache and build
    folders, files over 1 MB, known binary types and files with NUL bytes are left out."""
    root = root.resolve()
    listed = _git_files(root)
    candidates = listed if listed is not None else _walk(root)
    return sorted(p for p in candidates if _is_text_file(p))


def code_chunks(path: Path, root: Path) -> list[Chunk]:
    """Non-overlapping chunks of whole lines, each tagged with its first line."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError:
        return []
    if b"\x00" in data[:8192]:
        return []
    rel = _relative(path, root)
    lines = [line.removesuffix("\r") for line in data.decode("utf-8", "replace").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file does not open another line
    timestamp = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        Chunk(
            layer=Layer.CODE,
            tag=Tag.code(rel, first + 1, last + 1),
            text="\n".join(lines[first : last + 1]),
            timestamp=timestamp,
            title=rel,
            path=str(path),
            embed=False,
        )
        for first, last in _spans(lines)
    ]


def find_references(root: Path, identifiers: list[str], limit: int) -> list[tuple[str, int, str]]:
    """Up to ``limit`` ``(path relative to root, 1-based line, line text)`` where one of
    ``identifiers`` occurs as a whole word, ordered by path then line."""
    idents = sorted({i for i in identifiers if i and not i.isspace()})
    if not idents or limit <= 0:
        return []
    root = root.resolve()
    rg = shutil.which("rg")
    if rg is not None:
        found = _rg_references(rg, root, idents, limit)
        if found is not None:
            return found
    return _scan_references(root, idents, limit)


# --- file selection ------------------------------------------------------------------------------


def _git_files(root: Path) -> list[Path] | None:
    """Tracked and addable files, or None when ``root`` is not in a git work tree (or no git)."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    names = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    # ls-files also names deleted files, submodule folders and symlinks: keep real files
    paths = (root / n for n in dict.fromkeys(names) if n and not _in_skipped_dir(n))
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def _in_skipped_dir(rel: str) -> bool:
    """A repository that forgot to ignore .venv or node_modules still does not make them code."""
    return any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in rel.split("/")[:-1])


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                yield path


def _is_text_file(path: Path) -> bool:
    if path.suffix.lower() in BINARY_SUFFIXES:
        return False
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return False
        with path.open("rb") as fh:
            return b"\x00" not in fh.read(8192)
    except OSError:
        return False


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --- chunking ------------------------------------------------------------------------------------

_TOP, _INNER, _BLANK = 3, 2, 1  # boundary strength: where a chunk may start


def _boundaries(lines: list[str]) -> list[int]:
    """For each line, how good a place it is to start a chunk (0: not at all)."""
    score = [0] * len(lines)
    for i, line in enumerate(lines):
        if _TOP_DEF_RE.match(line):
            start = i
            # decorators and comments directly above belong to the definition
            while start > 0 and lines[start - 1].strip() and _PREAMBLE_RE.match(lines[start - 1]):
                start -= 1
            score[start] = max(score[start], _TOP)
        elif _INNER_DEF_RE.match(line):
            start = i
            while start > 0 and _PREAMBLE_RE.match(lines[start - 1].lstrip()):
                if not lines[start - 1].strip():
                    break
                start -= 1
            score[start] = max(score[start], _INNER)
        elif i > 0 and line.strip() and not lines[i - 1].strip():
            score[i] = max(score[i], _BLANK)
    return score


def _spans(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line indexes of each chunk, with blank lines trimmed from both ends."""
    score = _boundaries(lines)
    cuts: list[int] = [0]
    start = 0
    i = 1
    while i < len(lines):
        if score[i] == _TOP and i - start >= MIN_CHUNK_LINES:
            cuts.append(i)
            start = i
        elif i - start >= MAX_CHUNK_LINES:
            # too long: cut at the best boundary in the second half, the latest of equals
            window = range(start + MAX_CHUNK_LINES // 2, i + 1)
            best = max(window, key=lambda j: (score[j], j))
            cut = best if score[best] else i
            cuts.append(cut)
            start = cut
        i += 1
    cuts.append(len(lines))
    spans: list[tuple[int, int]] = []
    for a, b in pairwise(cuts):
        first, last = a, b - 1
        while first <= last and not lines[first].strip():
            first += 1
        while last >= first and not lines[last].strip():
            last -= 1
        if first <= last:
            spans.append((first, last))
    return spans


# --- references ----------------------------------------------------------------------------------


def _rg_references(
    rg: str, root: Path, idents: list[str], limit: int
) -> list[tuple[str, int, str]] | None:
    """Matches from ripgrep (None when it fails), over the files list_code_files would keep."""
    cmd = [
        rg, "--no-config", "--no-heading", "--line-number", "--null", "--color", "never",
        "--word-regexp", "--fixed-strings", "--sort", "path", "--hidden",
        "--max-filesize", str(MAX_FILE_BYTES),
    ]  # fmt: skip
    for name in sorted(SKIPPED_DIRS):
        cmd += ["--glob", f"!{name}/"]
    for suffix in sorted(BINARY_SUFFIXES):
        cmd += ["--glob", f"!*{suffix}"]
    for ident in idents:
        cmd += ["-e", ident]
    cmd += ["--", "."]
    out: list[tuple[str, int, str]] = []
    try:
        proc = subprocess.Popen(
            cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            file_name, sep, rest = raw.partition(b"\0")
            line_no, colon, matched = rest.partition(b":")
            if not sep or not colon or not line_no.isdigit():
                continue
            rel = file_name.decode("utf-8", "surrogateescape").removeprefix("./")
            line = matched.decode("utf-8", "replace").rstrip("\r\n")
            out.append((rel, int(line_no), line[:MAX_LINE_CHARS]))
            if len(out) >= limit:
                break
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(timeout=RG_TIMEOUT_S)
    # 0: matches, 1: none; killed after enough lines is fine; anything else: fall back
    if len(out) < limit and code not in (0, 1):
        return None
    return out


def _scan_references(root: Path, idents: list[str], limit: int) -> list[tuple[str, int, str]]:
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, idents)) + r")(?!\w)")
    out: list[tuple[str, int, str]] = []
    for path in list_code_files(root):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not any(ident in text for ident in idents):
            continue
        rel = _relative(path, root)
        for n, line in enumerate(text.split("\n"), start=1):
            if pattern.search(line):
                out.append((rel, n, line.rstrip("\r")[:MAX_LINE_CHARS]))
                if len(out) >= limit:
                    return out
    return out
