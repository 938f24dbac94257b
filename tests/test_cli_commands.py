"""The command group loads each area's module only when one of its commands is asked for."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click

import ctxmill.cli as cli_pkg
from ctxmill.cli import _COMMANDS, cli


def test_every_registered_command_is_in_the_lazy_table() -> None:
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        importlib.import_module(f"ctxmill.cli.{info.name}")
    # A command module that registers a name the table lacks would be unreachable until some
    # other command happened to import it.
    assert set(cli.commands) == set(_COMMANDS)
    bench = cli.commands["bench"]
    assert isinstance(bench, click.Group)
    assert {"golden", "locomo", "report", "distill"} <= set(bench.commands)


def test_the_hook_command_loads_nothing_heavy() -> None:
    probe = (
        "import sys; from ctxmill.cli import cli; "
        "cmd = cli.get_command(None, 'hook'); "
        "assert cmd is not None and 'session-end' in cmd.commands; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'model2vec', 'ctxmill'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "ctxmill.cli.hook" in loaded
    assert not [m for m in loaded if m.startswith(("numpy", "model2vec", "ctxmill.pipeline"))]
    assert "ctxmill.ingest" not in loaded and "ctxmill.compress" not in loaded
