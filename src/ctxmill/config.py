"""Where things live and how ctxmill is set up.

Settings come from, lowest precedence first: built-in defaults, ``$CTXMILL_HOME/config.toml`` (or
the user config dir), the nearest ``ctxmill.toml`` from the working directory upward, and finally
command-line options.  All of ctxmill's own state (index, run records, keys, queue) lives under one
data dir, ``$CTXMILL_HOME`` when set, so that tests and benchmarks never touch a user's real state.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

APP = "ctxmill"
PROJECT_FILE = "ctxmill.toml"


class ConfigError(Exception):
    """A configuration problem, reported to the user as one line."""


def home_dir() -> Path:
    """The data dir holding all of ctxmill's own state."""
    env = os.environ.get("CTXMILL_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_config_file() -> Path:
    if os.environ.get("CTXMILL_HOME"):
        return home_dir() / "config.toml"
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def find_project_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


@dataclass
class LLMSettings:
    backend: str | None = None  # None: no model, every stage extractive
    model: str | None = None
    base_url: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 4
    max_tokens_total: int | None = None
    max_cost_usd: float | None = None


@dataclass
class Config:
    memory_root: Path
    code_root: Path | None = None
    transcript_dirs: list[Path] = field(default_factory=list)  # extra agent folders
    aider_projects: list[Path] = field(default_factory=list)  # repos with .aider.chat.history.md
    discover: bool = True
    embedder: str = "m2v-minilm"  # "none" turns semantic search off
    budget: int = 50_000
    window_days: int = 90
    agent_command: list[str] = field(default_factory=lambda: ["claude", "-p"])
    quiet_minutes: int = 30  # a session unchanged this long counts as closed
    llm: LLMSettings = field(default_factory=LLMSettings)
    home: Path = field(default_factory=home_dir)

    @property
    def topics_dir(self) -> Path:
        return self.memory_root / "topics"

    @property
    def compressed_dir(self) -> Path:
        return self.memory_root / "sessions" / "compressed"

    @property
    def raw_dir(self) -> Path:
        return self.memory_root / "sessions" / "raw"

    @property
    def index_path(self) -> Path:
        """One index per memory root, so switching ``--memory`` never mixes two memories."""
        key = hashlib.sha1(str(self.memory_root.resolve()).encode()).hexdigest()[:10]
        return self.home / "index" / f"{self.memory_root.resolve().name or 'root'}-{key}.db"

    def agent_dirs(self) -> list[tuple[str, Path]]:
        """(agent, folder) pairs to read transcripts from: configured ones, then discovered ones."""
        found: list[tuple[str, Path]] = [(_guess_agent(p), p) for p in self.transcript_dirs]
        found += [("aider", p) for p in self.aider_projects]
        if self.discover:
            found.extend(discover_agent_dirs())
            # aider keeps its history in the repository itself; the code root is the one we know.
            if self.code_root is not None and (self.code_root / ".aider.chat.history.md").is_file():
                found.append(("aider", self.code_root))
        unique: dict[Path, str] = {}
        for agent, path in found:
            if path.is_dir():
                unique.setdefault(path.resolve(), agent)
        return [(agent, path) for path, agent in unique.items()]


def _guess_agent(path: Path) -> str:
    text = str(path)
    if "codex" in text:
        return "codex"
    if "specstory" in text:
        return "specstory"
    if ".gemini" in text:
        return "gemini"
    if "opencode" in text:
        return "opencode"
    return "claude-code"


def discover_agent_dirs() -> list[tuple[str, Path]]:
    """The places coding agents keep transcripts by default (formats.md §0)."""
    home = Path.home()
    dirs: list[tuple[str, Path]] = []
    claude_roots = [p for p in os.environ.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    claude_roots += [str(home / ".claude"), str(home / ".config" / "claude")]
    dirs += [("claude-code", Path(root).expanduser() / "projects") for root in claude_roots]
    codex_home = Path(os.environ.get("CODEX_HOME", home / ".codex")).expanduser()
    dirs.append(("codex", codex_home / "sessions"))
    dirs.append(("gemini", home / ".gemini" / "tmp"))
    data_home = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share").expanduser()
    dirs.append(("opencode", data_home / "opencode"))
    return [(agent, path) for agent, path in dirs if path.is_dir()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    memory: Path | None = None,
    code: Path | None = None,
    discover: bool | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve the configuration; explicit arguments (command-line options) win."""
    raw: dict[str, Any] = {}
    base_dir = (cwd or Path.cwd()).resolve()
    user_file = user_config_file()
    if user_file.is_file():
        raw = _merge(raw, _read_toml(user_file))
    project_file = find_project_file(cwd)
    if project_file:
        raw = _merge(raw, _read_toml(project_file))
        base_dir = project_file.parent

    def path_of(value: Any) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (base_dir / p)

    mem = raw.get("memory", {})
    memory_root = memory.resolve() if memory else path_of(mem.get("root", "memory"))
    code_cfg = raw.get("code", {})
    if code:
        code_root: Path | None = code.resolve()
    elif "root" in code_cfg:
        code_root = path_of(code_cfg["root"])
    else:
        code_root = None
    src = raw.get("sources", {})
    index = raw.get("index", {})
    build = raw.get("build", {})
    run = raw.get("run", {})
    llm = raw.get("llm", {})
    command = run.get("command", ["claude", "-p"])
    if isinstance(command, str):
        command = command.split()
    try:
        cfg = Config(
            memory_root=memory_root,
            code_root=code_root,
            transcript_dirs=[path_of(p) for p in src.get("paths", [])],
            aider_projects=[path_of(p) for p in src.get("aider", [])],
            discover=bool(src.get("discover", True)) if discover is None else discover,
            embedder=str(index.get("embedder", "m2v-minilm")),
            budget=int(build.get("budget", 50_000)),
            window_days=int(build.get("window_days", 90)),
            agent_command=[str(c) for c in command],
            quiet_minutes=int(raw.get("compress", {}).get("quiet_minutes", 30)),
            llm=LLMSettings(
                backend=llm.get("backend"),
                model=llm.get("model"),
                base_url=llm.get("base_url"),
                timeout_s=float(llm.get("timeout_s", 120.0)),
                max_retries=int(llm.get("max_retries", 4)),
                max_tokens_total=llm.get("max_tokens_total"),
                max_cost_usd=llm.get("max_cost_usd"),
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid setting in {project_file or user_file}: {exc}") from exc
    return cfg


def sample_dir() -> Path:
    """The sample memory shipped inside the package (read-only: copy it before use)."""
    return Path(str(resources.files("ctxmill") / "data" / "sample"))


def sample_config(refresh: bool = False) -> Config:
    """A working copy of the shipped sample under the data dir, configured as a project would be."""
    target = home_dir() / "sample"
    if refresh and target.exists():
        shutil.rmtree(target)
    if not target.exists():
        shutil.copytree(sample_dir(), target)
    cfg = Config(
        memory_root=target / "memory",
        code_root=target / "code",
        transcript_dirs=[target / "claude" / "projects", target / "codex" / "sessions"],
        discover=False,
    )
    return replace(cfg, home=home_dir())
