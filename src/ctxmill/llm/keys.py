"""API keys: where they are stored and the order in which they are looked up.

A key is resolved in this order, first match wins:

1. the key passed explicitly (``api_key=`` / ``--key``);
2. the key stored under the backend's name in ``$CTXMILL_HOME/keys.json`` (``set_key``);
3. the backend's environment variable (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``).

The file is written with mode 0600.  Keys are never logged, printed or put in error messages; only
the names of stored keys are ever listed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ctxmill.config import home_dir
from ctxmill.llm.base import LLMError

ENV_VARS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def keys_path() -> Path:
    return home_dir() / "keys.json"


def _read() -> dict[str, str]:
    path = keys_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LLMError(f"cannot read stored keys in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise LLMError(f"{path}: expected a JSON object of name → key")
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def _write(keys: dict[str, str]) -> None:
    path = keys_path()
    tmp = path.with_name(path.name + ".tmp")
    # Create the file 0600 from the start so the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keys, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply when the temp file already existed
    os.replace(tmp, path)


def set_key(name: str, value: str) -> None:
    """Store ``value`` as the key for ``name`` (a backend name such as ``anthropic``)."""
    name, value = name.strip(), value.strip()
    if not name or not value:
        raise LLMError("a key needs a name and a non-empty value")
    keys = _read()
    keys[name] = value
    _write(keys)


def delete_key(name: str) -> bool:
    """Forget the stored key for ``name``; False when there was none."""
    keys = _read()
    if name not in keys:
        return False
    del keys[name]
    _write(keys)
    return True


def stored_key_names() -> list[str]:
    return sorted(_read())


def resolve_key(name: str, explicit: str | None = None, env_var: str | None = None) -> str | None:
    """The key for backend ``name`` by the documented order, or None when there is none."""
    if explicit:
        return explicit
    stored = _read().get(name)
    if stored:
        return stored
    var = env_var or ENV_VARS.get(name)
    value = os.environ.get(var, "").strip() if var else ""
    return value or None
