"""``ctxmill keys`` end to end: the stored key is the one a backend sends, and is never printed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from llm_servers import ScriptedServer

from ctxmill.llm import Message, get_backend, keys_path

EXE = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
KEY = "sk-proj-Zq8cT2vWm4Lx7Yp1Rb6Nd3Fh9Kj0Gs5A"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)
    env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        [EXE, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_set_list_use_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stored = run("keys", "set", "openai", stdin=KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert KEY not in stored.stdout + stored.stderr
    assert stat.S_IMODE(keys_path().stat().st_mode) == 0o600

    listed = run("keys", "list", "--json")
    assert listed.returncode == 0 and KEY not in listed.stdout
    rows = {r["name"]: r["source"] for r in json.loads(listed.stdout)["keys"]}
    assert rows == {"openai": "stored", "anthropic": "none"}
    assert run("keys", "path").stdout.strip() == str(keys_path())

    # The key stored through the CLI is what the real client sends to the server.
    with ScriptedServer() as server:
        backend = get_backend("openai:test-model", base_url=server.url + "/v1")
        backend.complete([Message("user", "hi")], max_tokens=5)
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"

    assert run("keys", "delete", "openai").returncode == 0
    again = run("keys", "delete", "openai")
    assert again.returncode == 1
    assert again.stderr.strip() == "ctxmill: error: no stored key named 'openai'"


def test_environment_key_is_listed_by_source_not_value() -> None:
    env = dict(os.environ, ANTHROPIC_API_KEY=KEY)
    shown = subprocess.run(
        [EXE, "keys", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0
    assert "env ANTHROPIC_API_KEY" in shown.stdout and KEY not in shown.stdout


def test_empty_key_is_refused() -> None:
    empty = run("keys", "set", "anthropic", stdin="\n")
    assert empty.returncode == 1
    assert "non-empty" in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    assert not keys_path().exists()


def test_a_damaged_key_file_is_one_line_and_left_as_it_is() -> None:
    path = keys_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    junk = b"\x00\xffnot json{"
    path.write_bytes(junk)
    for args, stdin in ((("keys", "list"), None), (("keys", "set", "openai"), KEY)):
        result = run(*args, stdin=stdin)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "cannot read stored keys" in result.stderr and KEY not in result.stderr
    assert path.read_bytes() == junk
