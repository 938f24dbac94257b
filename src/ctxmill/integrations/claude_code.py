"""Install ctxmill into Claude Code, and take it out again.

Four things, at the places Claude Code reads them (project scope: the project folder; user scope:
the home folder):

    what                          project                                  user
    the deep-context skill        .claude/skills/deep-context/SKILL.md     ~/.claude/skills/deep-context/SKILL.md
    the /deep-context command     .claude/commands/deep-context.md         ~/.claude/commands/deep-context.md
    the SessionEnd hook           .claude/settings.json                    ~/.claude/settings.json
    the MCP server "ctxmill"      .mcp.json                                ~/.claude.json

Rules, so that installing is safe to repeat and to undo:

- JSON files are merged: every other key, hook and server stays as it was.  A file that is not a
  JSON object (or whose ``hooks``/``mcpServers`` have the wrong shape) stops the whole install
  before anything is written.
- The first time a file that already existed is changed, its original is copied to ``FILE.bak``;
  a later change never overwrites that copy.
- Nothing that differs from what ctxmill would write is replaced: a different ``deep-context``
  skill, or another server already called ``ctxmill``, is reported and left alone.
- What install wrote is identified exactly: the hook by its command string, the server by its
  whole entry, the files by their content.  Install records the SHA-256 of each file it writes
  (in ``$CTXMILL_HOME/installs/claude-code.json``) so that uninstall deletes a file only while it
  is unchanged, and removes the files and folders install created once they are empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ctxmill.config import home_dir

Scope = Literal["project", "user"]

SKILL_NAME = "deep-context"
HOOK_COMMAND = "ctxmill hook session-end"
# The hook only queues the session and starts a detached worker; 10 s is headroom over Claude
# Code's 1.5 s default for all SessionEnd hooks together, for a cold start on a slow disk.
HOOK_HANDLER: dict[str, Any] = {"type": "command", "command": HOOK_COMMAND, "timeout": 10}
MCP_NAME = "ctxmill"
MCP_SERVER: dict[str, Any] = {"type": "stdio", "command": "ctxmill", "args": ["mcp"]}

_DESCRIPTION = (
    "Build a task-specific context.md with ctxmill (topic notes, past sessions, transcripts and "
    "code, every claim cited) before a high-stakes task, then hand the task to a fresh session."
)

_BODY = """\
# /deep-context

The brief: $ARGUMENTS

Run this only because the user asked for it by name; never start it on your own. Building the
context takes a while and pays off for high-stakes work only: an architectural change, a
migration, a multi-file refactor of a core system, an incident. For a small edit, a quick question
or UI iteration, say that the ordinary context is enough and ask whether to go on anyway.

1. If the brief above is empty, ask the user for one or two sentences that state the task.
2. Build the context (quote the brief for the shell):

   ```bash
   ctxmill build "<brief>" -o context.md
   ```

   ctxmill brings its index up to date, writes `context.md` and prints one line: tokens used,
   citations, candidate sessions. `--budget N` sets the token budget (default 50000);
   `--as-of 2026-04-01` builds as of a past moment. If it reports that there is no memory or no
   index, run `ctxmill ingest` and show the user what it says.
3. Read `context.md`. Tell the user in a few lines what it surfaced that matters for the task:
   earlier attempts and why they failed, decisions the task would reverse, unresolved threads,
   files and consumers to check. Quote the citation tags as they appear;
   `ctxmill show "<tag>"` opens any of them.
4. Hand off. The task is best done by a fresh session whose only input is the brief and the
   context:

   ```bash
   ctxmill run "<brief>" --context context.md
   ```

   This starts `claude -p` with the context appended to its system prompt and streams its
   output. It edits files and can run for a long time, so ask the user first, and start it in
   the background or give the user the command to run in a terminal. `--dry-run` prints the exact
   command without starting anything. If the user would rather continue here, work from
   `context.md` instead of searching again.
"""

SKILL_TEXT = f"""\
---
name: {SKILL_NAME}
description: {_DESCRIPTION}
argument-hint: <brief>
disable-model-invocation: true
---

{_BODY}"""

COMMAND_TEXT = f"""\
---
description: {_DESCRIPTION}
argument-hint: <brief>
disable-model-invocation: true
---

{_BODY}"""


class InstallError(Exception):
    """The install cannot go ahead (a malformed settings file, an unreadable path); one line."""


@dataclass(frozen=True)
class Target:
    """Where Claude Code reads each piece, for one scope."""

    scope: Scope
    root: Path  # the project folder, or the home folder for the user scope

    @classmethod
    def for_scope(cls, scope: Scope, project: Path | None = None) -> Target:
        root = Path.home() if scope == "user" else (project or Path.cwd())
        return cls(scope, root.resolve())

    @property
    def claude_dir(self) -> Path:
        return self.root / ".claude"

    @property
    def skill_file(self) -> Path:
        return self.claude_dir / "skills" / SKILL_NAME / "SKILL.md"

    @property
    def command_file(self) -> Path:
        return self.claude_dir / "commands" / f"{SKILL_NAME}.md"

    @property
    def settings_file(self) -> Path:
        return self.claude_dir / "settings.json"

    @property
    def mcp_file(self) -> Path:
        return self.root / (".claude.json" if self.scope == "user" else ".mcp.json")

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.root}"

    def show(self, path: Path) -> str:
        """A path as the user thinks of it: relative to the project, or under ``~``."""
        rel = path.relative_to(self.root)
        return f"~/{rel}" if self.scope == "user" else str(rel)


_PAST = {
    "create": "created",
    "update": "updated",
    "add": "added",
    "remove": "removed",
    "delete": "deleted",
}


@dataclass
class Step:
    """One change to one file."""

    verb: Literal["create", "update", "add", "remove", "delete"]
    path: Path
    what: str  # e.g. "the SessionEnd hook `ctxmill hook session-end`"
    text: str | None  # the file's new content; None deletes it
    new_dirs: list[Path] = field(default_factory=list)  # folders this step creates, outermost first

    @property
    def creates_file(self) -> bool:
        return self.text is not None and not self.path.exists()

    def describe(self, target: Target, *, done: bool) -> str:
        verb = _PAST[self.verb] if done else f"would {self.verb}"
        where = target.show(self.path)
        if self.verb in ("add", "remove"):
            return f"{verb} {self.what} {'to' if self.verb == 'add' else 'from'} {where}"
        return f"{verb} {where} ({self.what})"


@dataclass
class Plan:
    target: Target
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left alone, and why
    prune: list[Path] = field(default_factory=list)  # folders to remove if empty (uninstall)


# -- planning ----------------------------------------------------------------------------------


def plan_install(target: Target) -> Plan:
    """What install would change; reads only.  Raises :class:`InstallError` on a bad file."""
    plan = Plan(target)
    record = _record().get(target.key, {})
    settings = _load_json(target.settings_file)
    servers_doc = _load_json(target.mcp_file)
    for path, text, what in _files(target):
        _plan_file(plan, path, text, what, record)
    hooks = _session_end(settings, target.settings_file)
    if not any(_is_ours(h) for group in hooks for h in _handlers(group)):
        new = dict(settings or {})
        new_hooks = dict(new.get("hooks") or {})
        new_hooks["SessionEnd"] = [*hooks, {"hooks": [dict(HOOK_HANDLER)]}]
        new["hooks"] = new_hooks
        what = f"the SessionEnd hook `{HOOK_COMMAND}`"
        plan.steps.append(_addition(target, target.settings_file, what, new))
    servers = _servers(servers_doc, target.mcp_file)
    if MCP_NAME not in servers:
        new = dict(servers_doc or {})
        new["mcpServers"] = {**servers, MCP_NAME: dict(MCP_SERVER)}
        what = f"the MCP server `{MCP_NAME}` (ctxmill mcp)"
        plan.steps.append(_addition(target, target.mcp_file, what, new))
    elif servers[MCP_NAME] != MCP_SERVER:
        plan.notes.append(
            f"{target.show(target.mcp_file)} already has an MCP server named `{MCP_NAME}` with "
            "other settings; left as it is"
        )
    return plan


def plan_uninstall(target: Target) -> Plan:
    """What uninstall would change: only what install adds, identified exactly; reads only."""
    plan = Plan(target)
    record = _record().get(target.key, {})
    shas: dict[str, str] = record.get("files", {})
    created = {Path(p) for p in record.get("created_files", [])}
    for path, text, what in _files(target):
        if not path.is_file():
            continue
        expected = shas.get(str(path), _sha256(text))
        if _sha256(path.read_text(encoding="utf-8", errors="replace")) == expected:
            plan.steps.append(Step("delete", path, what, None))
        else:
            plan.notes.append(f"{target.show(path)} changed since install; kept")
    settings = _load_json(target.settings_file)
    hooks = _session_end(settings, target.settings_file)
    if settings is not None and any(_is_ours(h) for g in hooks for h in _handlers(g)):
        new = _without_hook(settings, hooks)
        what = f"the SessionEnd hook `{HOOK_COMMAND}`"
        plan.steps.append(_removal(target.settings_file, what, new, created))
    servers_doc = _load_json(target.mcp_file)
    servers = _servers(servers_doc, target.mcp_file)
    if servers_doc is not None and MCP_NAME in servers:
        if servers[MCP_NAME] == MCP_SERVER:
            new = dict(servers_doc)
            rest = {k: v for k, v in servers.items() if k != MCP_NAME}
            if rest:
                new["mcpServers"] = rest
            else:
                del new["mcpServers"]
            what = f"the MCP server `{MCP_NAME}`"
            plan.steps.append(_removal(target.mcp_file, what, new, created))
        else:
            plan.notes.append(
                f"the MCP server `{MCP_NAME}` in {target.show(target.mcp_file)} is not the one "
                "install writes; kept"
            )
    # Folders install created, deepest first; the skill's own folder is ctxmill's by its name.
    folders = {Path(p) for p in record.get("created_dirs", [])} | {target.skill_file.parent}
    plan.prune = sorted(folders, key=lambda p: len(p.parts), reverse=True)
    return plan


def _files(target: Target) -> list[tuple[Path, str, str]]:
    return [
        (target.skill_file, SKILL_TEXT, "the deep-context skill"),
        (target.command_file, COMMAND_TEXT, "the /deep-context command"),
    ]


def _plan_file(plan: Plan, path: Path, text: str, what: str, record: dict[str, Any]) -> None:
    if not path.exists():
        plan.steps.append(Step("create", path, what, text, _new_dirs(path, plan.target.root)))
        return
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{path}: cannot read: {exc}") from exc
    if current == text:
        return
    if record.get("files", {}).get(str(path)) == _sha256(current):
        # Written by an earlier install and untouched since: bring it up to date.
        plan.steps.append(Step("update", path, what, text))
        return
    plan.notes.append(
        f"{plan.target.show(path)} exists and is not ctxmill's; left as it is "
        "(move it away and install again to get ctxmill's)"
    )


def _addition(target: Target, path: Path, what: str, data: dict[str, Any]) -> Step:
    return Step("add", path, what, _dump(data), _new_dirs(path, target.root))


def _removal(path: Path, what: str, data: dict[str, Any], created: set[Path]) -> Step:
    """Remove an entry; a JSON file install created goes when nothing else is left in it."""
    if not data and path in created:
        return Step("delete", path, f"{what}; nothing else was in it", None)
    return Step("remove", path, what, _dump(data))


def _without_hook(settings: dict[str, Any], groups: list[Any]) -> dict[str, Any]:
    kept: list[Any] = []
    for group in groups:
        handlers = _handlers(group)
        rest = [h for h in handlers if not _is_ours(h)]
        if len(rest) == len(handlers):
            kept.append(group)
        elif rest:
            kept.append({**group, "hooks": rest})
        # A group that held only ctxmill's handler was added by install: it goes entirely.
    new = dict(settings)
    hooks = dict(new["hooks"])
    if kept:
        hooks["SessionEnd"] = kept
    else:
        del hooks["SessionEnd"]
    if hooks:
        new["hooks"] = hooks
    else:
        del new["hooks"]
    return new


# -- reading settings --------------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, None when absent; a malformed one stops everything."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{path}: cannot read: {exc}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InstallError(
            f"{path} is not valid JSON ({exc}); fix it first, nothing was changed"
        ) from exc
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object; nothing was changed")
    return data


def _session_end(settings: dict[str, Any] | None, path: Path) -> list[Any]:
    hooks = (settings or {}).get("hooks", {})
    if not isinstance(hooks, dict):
        raise InstallError(f'{path}: "hooks" is not an object; nothing was changed')
    groups = hooks.get("SessionEnd", [])
    if not isinstance(groups, list):
        raise InstallError(f'{path}: "hooks.SessionEnd" is not a list; nothing was changed')
    return groups


def _handlers(group: Any) -> list[Any]:
    handlers = group.get("hooks") if isinstance(group, dict) else None
    return handlers if isinstance(handlers, list) else []


def _is_ours(handler: Any) -> bool:
    return isinstance(handler, dict) and handler.get("command") == HOOK_COMMAND


def _servers(doc: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    servers = (doc or {}).get("mcpServers", {})
    if not isinstance(servers, dict):
        raise InstallError(f'{path}: "mcpServers" is not an object; nothing was changed')
    return servers


# -- applying ----------------------------------------------------------------------------------


def apply(plan: Plan, *, install: bool) -> None:
    """Carry out the plan, backing up each settings file once, then update the record."""
    records = _record()
    entry = records.get(plan.target.key) or {}
    files: dict[str, str] = entry.setdefault("files", {})
    created_files: list[str] = entry.setdefault("created_files", [])
    created_dirs: list[str] = entry.setdefault("created_dirs", [])
    for step in plan.steps:
        if step.text is None:
            step.path.unlink(missing_ok=True)
            continue
        if step.creates_file:
            created_files.append(str(step.path))
        elif step.verb in ("add", "remove"):
            _backup(step.path)  # skill and command files are ctxmill's own: no copy needed
        created_dirs += [str(d) for d in step.new_dirs if str(d) not in created_dirs]
        _write(step.path, step.text)
        if step.verb in ("create", "update"):
            files[str(step.path)] = _sha256(step.text)
    for folder in plan.prune:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if install:
        records[plan.target.key] = entry
    else:
        records.pop(plan.target.key, None)
    _save_record(records)


def _backup(path: Path) -> None:
    backup = path.with_name(path.name + ".bak")
    if not backup.exists():
        shutil.copy2(path, backup)


def _write(path: Path, text: str) -> None:
    """Through a temp file in the same folder, keeping the old file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _new_dirs(path: Path, root: Path) -> list[Path]:
    """The folders between ``root`` and ``path`` that do not exist yet, outermost first."""
    return [p for p in reversed(path.parents) if p.is_relative_to(root) and not p.exists()]


def _record_path() -> Path:
    return home_dir() / "installs" / "claude-code.json"


def _record() -> dict[str, Any]:
    try:
        data = json.loads(_record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the record only sharpens uninstall; without it, content decides
    return data if isinstance(data, dict) else {}


def _save_record(records: dict[str, Any]) -> None:
    path = _record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, _dump(records))


def path_warning() -> str | None:
    """Claude Code starts the hook and the MCP server as ``ctxmill``; say so when that name does
    not resolve on PATH."""
    if shutil.which("ctxmill"):
        return None
    here = Path(sys.executable).parent
    hint = f" (this one is in {here})" if (here / "ctxmill").exists() else ""
    return (
        f"`ctxmill` is not on PATH{hint}: Claude Code runs the hook and the MCP server by that "
        "name, so add its folder to PATH"
    )
