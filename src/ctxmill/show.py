"""Resolve a citation tag to the text it points to, reading the source where it still exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctxmill.config import Config
from ctxmill.model import Tag
from ctxmill.store import open_store

CODE_LINES = 40


def show_tag(cfg: Config, tag: Tag) -> dict[str, Any]:
    """``{"tag", "source", "text"}`` for a tag; raises LookupError with a readable message."""
    if tag.kind == "topic":
        return _topic(cfg, tag)
    if tag.kind == "code":
        return _code(cfg, tag)
    store = open_store(cfg)
    try:
        hits = store.chunks_for_tag(tag)
        if tag.kind == "raw":
            if not hits:
                record = store.get_session(tag.ref)
                if record is None:
                    raise LookupError(f"no session {tag.ref} in the index")
                raise LookupError(
                    f"session {tag.ref} has no turn {tag.start} ({record.turns} turns)"
                )
            hit = hits[0]
            record = store.get_session(tag.ref)
            head = f"{hit.role or 'turn'} · {hit.timestamp or ''}".strip(" ·")
            return {
                "tag": str(tag),
                "source": (record.archive_path or record.source_path) if record else hit.path,
                "text": f"{head}\n{hit.text}",
            }
        if not hits:
            raise LookupError(f"no compressed summary for session {tag.ref} in the index")
        path = Path(hits[0].path or "")
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if not text:
            text = "\n\n".join(f"## {h.title}\n{h.text}" for h in hits)
        return {"tag": str(tag), "source": str(path), "text": text}
    finally:
        store.close()


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise LookupError(f"{path} does not exist")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _topic(cfg: Config, tag: Tag) -> dict[str, Any]:
    path = cfg.topics_dir / tag.ref
    lines = _lines(path)
    start = tag.start or 1
    end = min(tag.end or len(lines), len(lines))
    if start > len(lines):
        raise LookupError(f"{path} has {len(lines)} lines; the tag names line {start}")
    return {"tag": str(tag), "source": str(path), "text": "\n".join(lines[start - 1 : end])}


def _code(cfg: Config, tag: Tag) -> dict[str, Any]:
    if cfg.code_root is None:
        raise LookupError("no code root configured (use --code DIR or [code] root in ctxmill.toml)")
    path = cfg.code_root / tag.ref
    lines = _lines(path)
    line = tag.start or 1
    if line > len(lines):
        raise LookupError(f"{path} has {len(lines)} lines; the tag names line {line}")
    shown = range(line, min(len(lines), line + CODE_LINES - 1) + 1)
    text = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in shown)
    return {"tag": str(tag), "source": str(path), "text": text}
