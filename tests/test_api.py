"""The Python API: the CLI's verbs as ``ctxmill.<verb>()``, on real corpora on disk."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus import SAMPLE_OIDC_PLAN, SAMPLE_OIDC_TRY

import ctxmill
from ctxmill import api
from ctxmill.cli import cli

VERBS = ("ingest", "search", "show", "build", "compress", "distill", "load_config")


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_import_ctxmill_loads_nothing_else() -> None:
    out = python(
        "import sys, ctxmill; print(sorted(m for m in sys.modules if m.startswith('ctxmill')));"
        "print('numpy' in sys.modules, 'click' in sys.modules)"
    )
    assert out.splitlines() == ["['ctxmill']", "False False"]


def test_the_verbs_stay_functions_whichever_module_was_imported_first() -> None:
    out = python(
        "import ctxmill.search, ctxmill.ingest, ctxmill.show, ctxmill.compress, ctxmill.distill\n"
        "import ctxmill, ctxmill.api\n"
        "from ctxmill.search import date_window\n"
        "from ctxmill import search\n"
        "names = ('ingest', 'search', 'show', 'compress', 'distill', 'build')\n"
        "print(all(getattr(ctxmill, n) is getattr(ctxmill.api, n) for n in names))\n"
        "print(search is ctxmill.api.search, callable(date_window))"
    )
    assert out.splitlines() == ["True", "True True"]


@pytest.mark.parametrize("name", VERBS)
def test_every_verb_is_documented_and_typed(name: str) -> None:
    fn = getattr(ctxmill, name)
    assert fn is getattr(api, name)
    assert fn.__doc__ and len(fn.__doc__.split()) > 10
    sig = inspect.signature(fn)
    assert sig.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    assert name in ctxmill.__all__


def test_the_package_lists_exactly_the_api() -> None:
    # ctxmill/__init__.py repeats api.__all__ so that `import ctxmill` need not load the API.
    assert set(ctxmill.__all__) - {"__version__"} == set(api.__all__)


def test_the_verbs_on_the_sample_memory(tmp_path: Path) -> None:
    cfg = ctxmill.load_config(sample=True)
    report = ctxmill.ingest(cfg=cfg)
    assert report.sessions >= 6 and report.chunks_added > 0

    result = ctxmill.search("tokens written to the debug log", k=5, cfg=cfg)
    assert result.hits and result.mode == "hybrid"
    cli_hits = CliRunner().invoke(
        cli, ["search", "tokens written to the debug log", "-k", "5", "--sample", "--json"]
    )
    assert [h["tag"] for h in json.loads(cli_hits.output)] == [str(h.tag) for h in result.hits]
    topics = ctxmill.search("session cookie", layers=["topic"], cfg=cfg, refresh=False)
    assert topics.hits and {h.layer.value for h in topics.hits} == {"topic"}

    raw = next(h for h in result.hits if h.layer.value == "raw")
    passage = ctxmill.show(str(raw.tag), cfg=cfg)
    assert passage.tag == str(raw.tag) and raw.text in passage.text

    out = tmp_path / "ctx" / "context.md"
    built = ctxmill.build(
        "Migrate session auth to OIDC", budget=8000, as_of="2026-07-01", output=out, cfg=cfg
    )
    assert built.path == out and out.read_text(encoding="utf-8") == built.text
    assert "# Context for: Migrate session auth to OIDC" in built.text
    assert 0 < built.tokens <= 8000 and built.citations
    opened = ctxmill.show(built.citations[0], cfg=cfg, refresh=False)
    assert opened.text.strip()

    compressed = ctxmill.compress(session_ids=[SAMPLE_OIDC_TRY], backend="none", cfg=cfg)
    (written,) = compressed.written
    assert written.session_id == SAMPLE_OIDC_TRY and Path(str(written.path)).is_file()
    assert compressed.indexed

    distilled = ctxmill.distill(SAMPLE_OIDC_PLAN[:8], backend="none", cfg=cfg)
    assert distilled.session_id == SAMPLE_OIDC_PLAN
    assert "## Goal" in distilled.text and f"[raw:{SAMPLE_OIDC_PLAN}#" in distilled.text


def test_reading_verbs_bring_the_index_up_to_date_unless_told_not_to(tmp_path: Path) -> None:
    topics = tmp_path / "memory" / "topics"
    topics.mkdir(parents=True)
    (topics / "brewing.md").write_text("# Brewing\n\nThe zymurgy rota lives in the wiki.\n")
    cfg = ctxmill.load_config(tmp_path / "memory", discover=False)
    assert [str(h.tag) for h in ctxmill.search("zymurgy", cfg=cfg).hits] == [
        "[topic:brewing.md#L1-L3]"
    ]

    (topics / "kilns.md").write_text("# Kilns\n\nKiln schedules mention zymurgy too.\n")
    stale = ctxmill.search("zymurgy", mode="keyword", cfg=cfg, refresh=False)
    assert len(stale.hits) == 1
    fresh = ctxmill.search("zymurgy", mode="keyword", cfg=cfg)
    assert {str(h.tag) for h in fresh.hits} == {
        "[topic:brewing.md#L1-L3]",
        "[topic:kilns.md#L1-L3]",
    }


def test_problems_raise_one_error_type_with_a_readable_message(tmp_path: Path) -> None:
    (tmp_path / "memory" / "topics").mkdir(parents=True)
    cfg = ctxmill.load_config(tmp_path / "memory", discover=False)
    cases = [
        (lambda: ctxmill.show("line 3 of auth.md", cfg=cfg), "not a citation tag"),
        (lambda: ctxmill.show("[topic:../secrets.md#L1-L2]", cfg=cfg), "must be relative"),
        (lambda: ctxmill.show("[topic:nope.md#L1-L2]", cfg=cfg), "does not exist"),
        (lambda: ctxmill.search("x", mode="psychic", cfg=cfg), "unknown search mode"),
        (lambda: ctxmill.search("x", layers=["gossip"], cfg=cfg), "layers are"),
        (lambda: ctxmill.search("  ", cfg=cfg), "query is empty"),
        (lambda: ctxmill.build("", cfg=cfg), "brief is empty"),
        (lambda: ctxmill.build("x", as_of="soonish", cfg=cfg), "not an ISO-8601"),
        (lambda: ctxmill.compress(backend="psychic", cfg=cfg), "unknown LLM backend"),
        (lambda: ctxmill.distill("no-such-session", cfg=cfg), "no such file or indexed session"),
    ]
    for call, message in cases:
        with pytest.raises(ctxmill.CtxmillError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_a_broken_config_file_is_a_ctxmill_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ctxmill.toml").write_text("[memory\nroot = 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ctxmill.CtxmillError, match="invalid TOML"):
        ctxmill.load_config()
    with pytest.raises(ctxmill.CtxmillError, match="invalid TOML"):
        ctxmill.search("anything")  # no cfg: the settings found from the working directory
