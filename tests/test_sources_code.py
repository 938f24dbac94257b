"""The code root: file selection (git and plain walk), chunks on definition boundaries, and
reference search with ripgrep and without it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ctxmill.model import Layer
from ctxmill.sources.code import (
    MAX_CHUNK_LINES,
    code_chunks,
    find_references,
    list_code_files,
)

APP = '''\
"""Session handling."""

import time

SESSION_TTL = 43200


class SessionStore:
    """Keeps sessions in memory."""

    def __init__(self) -> None:
        self.sessions: dict[str, float] = {}

    def create(self, user: str) -> str:
        token = f"t-{user}"
        self.sessions[token] = time.time() + SESSION_TTL
        return token


# The one entry point routes use.
@cached
def get_current_user(token: str) -> str | None:
    store = SessionStore()
    username = token.removeprefix("t-")
    return username if token in store.sessions else None


def get_user_count() -> int:
    return get_current_user_id() + SESSION_TTLS
'''

UTIL_JS = """\
export function formatUser(user) {
  return user.name;
}

export const getCurrentUser = async (req) => {
  return req.user;
};
"""


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_tree(root: Path) -> None:
    files: dict[str, str | bytes] = {
        "src/app.py": APP,
        "src/util.js": UTIL_JS,
        "README.md": "# Demo\n\nCall get_current_user(token) from routes.\n",
        ".github/workflows/ci.yml": "run: pytest  # checks get_current_user\n",
        ".gitignore": "*.log\nnode_modules/\nbuild/\n",
        "debug.log": "get_current_user called\n",
        "node_modules/pkg/index.js": "module.exports = get_current_user;\n",
        "build/lib/app.py": "def get_current_user(): pass\n",
        ".venv/lib/site.py": "get_current_user = None\n",
        "src/__pycache__/app.cpython-311.pyc": b"\x00\x01get_current_user",
        "logo.png": b"\x89PNG\r\n\x1a\nget_current_user",
        "data/blob.txt": b"header\x00get_current_user",
        "data/huge.txt": "get_current_user\n" + "x" * 1_100_000,
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    make_tree(root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    (root / "src" / "new_module.py").write_text("from app import get_current_user\n")  # untracked
    return root


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    root.mkdir()
    make_tree(root)
    return root


def rels(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root.resolve()).as_posix() for p in paths]


def test_git_work_tree_lists_tracked_and_addable_text_files(repo: Path) -> None:
    assert rels(list_code_files(repo), repo) == [
        ".github/workflows/ci.yml",
        ".gitignore",
        "README.md",  # .venv is not in .gitignore, but a virtualenv is never code
        "src/app.py",
        "src/new_module.py",
        "src/util.js",
    ]
    # a folder inside the work tree lists its own files, relative to itself
    assert rels(list_code_files(repo / "src"), repo / "src") == [
        "app.py",
        "new_module.py",
        "util.js",
    ]


def test_plain_folder_walk_skips_dependency_and_build_folders(plain: Path) -> None:
    assert rels(list_code_files(plain), plain) == [
        ".github/workflows/ci.yml",
        ".gitignore",
        "README.md",
        "debug.log",
        "src/app.py",
        "src/util.js",
    ]


def test_chunks_follow_definitions_and_cover_the_file_exactly(repo: Path) -> None:
    path = repo / "src" / "app.py"
    chunks = code_chunks(path, repo)
    lines = APP.split("\n")
    spans = [(c.tag.start, c.tag.end) for c in chunks]
    assert spans == [(1, 5), (8, 17), (20, 25), (28, 29)]
    for c in chunks:
        assert c.layer is Layer.CODE and not c.embed
        assert c.title == "src/app.py" and c.path == str(path)
        assert c.tag.start is not None and c.tag.end is not None
        assert c.text == "\n".join(lines[c.tag.start - 1 : c.tag.end])
        assert str(c.tag) == f"[code:src/app.py:{c.tag.start}]"
    # each top-level definition opens a chunk, with the comment and decorator above it
    firsts = {lines[c.tag.start - 1] for c in chunks if c.tag.start}
    assert "# The one entry point routes use." in firsts
    assert "class SessionStore:" in firsts
    ends = [c.tag.end for c in chunks]
    starts = [c.tag.start for c in chunks]
    assert all(e < s for e, s in zip(ends, starts[1:], strict=False) if e and s)


def test_long_code_is_cut_at_most_every_60_lines(tmp_path: Path) -> None:
    body = "\n".join(f"    total += step({i})" for i in range(150))
    text = f"def crunch() -> int:\n    total = 0\n{body}\n\n    return total\n"
    path = tmp_path / "crunch.py"
    path.write_text(text)
    chunks = code_chunks(path, tmp_path)
    assert len(chunks) >= 3
    assert all(
        c.tag.end - c.tag.start + 1 <= MAX_CHUNK_LINES for c in chunks if c.tag.end and c.tag.start
    )
    assert "\n".join(c.text for c in chunks).replace("\n\n", "\n") == text.strip().replace(
        "\n\n", "\n"
    )


def test_binary_and_missing_files_give_no_chunks(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02")
    assert code_chunks(tmp_path / "x.bin", tmp_path) == []
    assert code_chunks(tmp_path / "gone.py", tmp_path) == []
    (tmp_path / "empty.py").write_text("\n\n")
    assert code_chunks(tmp_path / "empty.py", tmp_path) == []


EXPECTED_REFS = [
    (".github/workflows/ci.yml", 1, "run: pytest  # checks get_current_user"),
    ("README.md", 3, "Call get_current_user(token) from routes."),
    ("src/app.py", 5, "SESSION_TTL = 43200"),
    ("src/app.py", 16, "        self.sessions[token] = time.time() + SESSION_TTL"),
    ("src/app.py", 22, "def get_current_user(token: str) -> str | None:"),
    ("src/new_module.py", 1, "from app import get_current_user"),
]


def without_rg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH that has git but no ripgrep, so the pure-Python scan runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git_exe = shutil.which("git")
    assert git_exe is not None
    os.symlink(git_exe, bin_dir / "git")
    monkeypatch.setenv("PATH", str(bin_dir))


def test_references_without_ripgrep(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_rg(monkeypatch, tmp_path)
    assert shutil.which("rg") is None
    refs = find_references(repo, ["get_current_user", "SESSION_TTL"], 100)
    assert refs == EXPECTED_REFS  # whole words only: not get_current_user_id, not SESSION_TTLS
    assert find_references(repo, ["get_current_user", "SESSION_TTL"], 2) == EXPECTED_REFS[:2]
    assert find_references(repo, [], 10) == []
    assert find_references(repo, ["user"], 100) == [
        ("src/app.py", 14, "    def create(self, user: str) -> str:"),
        ("src/app.py", 15, '        token = f"t-{user}"'),
        ("src/util.js", 1, "export function formatUser(user) {"),
        ("src/util.js", 2, "  return user.name;"),
        ("src/util.js", 6, "  return req.user;"),
    ]


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep (rg) is not on PATH")
def test_references_with_ripgrep_match_the_scan(
    repo: Path, plain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idents = ["get_current_user", "SESSION_TTL", "user"]
    with_rg = {root: find_references(root, idents, 100) for root in (repo, plain)}
    assert with_rg[repo][:1] == EXPECTED_REFS[:1]
    assert find_references(repo, idents, 3) == with_rg[repo][:3]
    without_rg(monkeypatch, tmp_path)
    for root, found in with_rg.items():
        assert found == find_references(root, idents, 100), root.name
