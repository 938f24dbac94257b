"""``ctxmill keys``: store, list and delete the API keys the LLM backends use."""

from __future__ import annotations

import json
import os
import sys

import click

from ctxmill.cli import Failure, cli, json_option, out


@cli.group("keys")
def keys_group() -> None:
    """Store, list and delete API keys for the LLM backends.

    \b
    A backend's key is looked up in this order, first match wins:
      1. the key given explicitly (api_key= in Python);
      2. the key stored here under the backend's name ($CTXMILL_HOME/keys.json, mode 0600);
      3. the environment variable (ANTHROPIC_API_KEY, OPENAI_API_KEY).
    Keys are never printed: `keys list` shows names and where each backend's key comes from.
    """


@keys_group.command("set")
@click.argument("name")
@click.option(
    "--value",
    help="The key itself. Default: read from stdin when piped, else a hidden prompt. "
    "Prefer those: a key on the command line stays in the shell history.",
)
def keys_set(name: str, value: str | None) -> None:
    """Store the key for backend NAME (anthropic, openai, or any name an [llm] config uses).

    \b
      ctxmill keys set anthropic                  # prompts, input hidden
      printf %s "$KEY" | ctxmill keys set openai  # from a pipe
    """
    from ctxmill.llm import LLMError, set_key

    if value is None:
        if sys.stdin.isatty():
            value = click.prompt(f"key for {name}", hide_input=True)
        else:
            value = sys.stdin.read()
    try:
        set_key(name, value)
    except (LLMError, OSError) as exc:
        raise Failure(str(exc)) from exc
    out.print(f"stored the key for {name.strip()}")


@keys_group.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """Show which backends have a key, and where it would be taken from (stored or environment)."""
    from ctxmill.llm import LLMError, keys_path, stored_key_names
    from ctxmill.llm.keys import ENV_VARS

    try:
        stored = stored_key_names()
    except LLMError as exc:
        raise Failure(str(exc)) from exc
    rows = []
    for name in sorted(set(stored) | set(ENV_VARS)):
        var = ENV_VARS.get(name)
        source = (
            "stored"
            if name in stored
            else (f"env {var}" if var and os.environ.get(var, "").strip() else "none")
        )
        rows.append({"name": name, "source": source, "env_var": var})
    if as_json:
        click.echo(json.dumps({"path": str(keys_path()), "keys": rows}, indent=2))
        return
    for row in rows:
        out.print(f"{row['name']:<12} {row['source']}")
    out.print(f"stored keys: {keys_path()}")


@keys_group.command("delete")
@click.argument("name")
def keys_delete(name: str) -> None:
    """Forget the stored key for backend NAME (the environment variable is left alone)."""
    from ctxmill.llm import LLMError, delete_key

    try:
        removed = delete_key(name)
    except (LLMError, OSError) as exc:
        raise Failure(str(exc)) from exc
    if not removed:
        raise Failure(f"no stored key named {name!r}")
    out.print(f"deleted the stored key for {name}")


@keys_group.command("path")
def keys_path_cmd() -> None:
    """Print where stored keys live."""
    from ctxmill.llm import keys_path

    click.echo(str(keys_path()))
