"""`ctxmill mcp` driven by the MCP SDK's own client over a real stdio pipe, on the sample memory."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

import ctxmill

OPEN_SESSION = "9d2c6a07-51e8-4f3b-8a64-c1e7b09f3d25"  # a sample session without a summary
TOOLS = {"search_memory", "build_context", "show_citation", "compress_session"}


def _server() -> StdioServerParameters:
    script = shutil.which("ctxmill", path=str(Path(sys.executable).parent))
    command, args = (script, []) if script else (sys.executable, ["-m", "ctxmill.cli"])
    env = {k: os.environ[k] for k in ("HOME", "CTXMILL_HOME", "CTXMILL_ALLOW_MODEL_REQUESTS")}
    return StdioServerParameters(command=command, args=[*args, "mcp", "--sample"], env=env)


def _text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def _session_run(calls: list[tuple[str, dict[str, Any]]]) -> tuple[Any, list[CallToolResult]]:
    results: list[CallToolResult] = []
    with anyio.fail_after(240):
        async with stdio_client(_server()) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            for name, arguments in calls:
                results.append(await session.call_tool(name, arguments))
    return listed, results


def test_the_server_lists_and_answers_every_tool_over_stdio() -> None:
    brief = "Migrate session auth to OIDC"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("search_memory", {"query": "refresh tokens in logs", "k": 5}),
        ("search_memory", {"query": "session cookies", "filters": {"layers": ["topic"]}}),
        ("build_context", {"brief": brief, "budget": 6000, "as_of": "2026-07-01"}),
        ("show_citation", {"tag": "[topic:auth.md#L1-L3]"}),
        ("compress_session", {"session_id": OPEN_SESSION}),
        ("compress_session", {"session_id": OPEN_SESSION}),
    ]
    cfg = ctxmill.load_config(sample=True)
    direct = ctxmill.search(
        "refresh tokens in logs", k=5, cfg=cfg
    )  # before compress adds a summary
    listed, results = anyio.run(_session_run, calls)

    assert {t.name for t in listed.tools} == TOOLS
    schema = next(t for t in listed.tools if t.name == "search_memory").input_schema
    assert set(schema["properties"]) == {"query", "mode", "filters", "k"}
    assert schema["required"] == ["query"]
    assert all(t.description and t.output_schema for t in listed.tools)
    for result in results:
        assert not result.is_error, _text(result)
        assert result.structured_content is not None

    found, topics, built, shown, written, again = results
    # The server answers with the library's own search: same hits, same order.
    assert found.structured_content is not None
    assert [h["tag"] for h in found.structured_content["hits"]] == [str(h.tag) for h in direct.hits]
    assert str(direct.hits[0].tag) in _text(found)

    assert topics.structured_content is not None
    layers = {h["layer"] for h in topics.structured_content["hits"]}
    assert layers == {"topic"}

    data = built.structured_content
    assert data is not None
    path = Path(data["path"])
    assert path.read_text(encoding="utf-8") == data["text"]
    assert f"# Context for: {brief}" in data["text"]
    assert 0 < data["tokens"] <= 6000 and data["budget"] == 6000
    assert data["citations"] and all(c.startswith("[") for c in data["citations"])
    assert _text(built).startswith(data["text"])

    lines = (cfg.topics_dir / "auth.md").read_text(encoding="utf-8").splitlines()[:3]
    assert shown.structured_content == {
        "tag": "[topic:auth.md#L1-L3]",
        "source": str(cfg.topics_dir / "auth.md"),
        "text": "\n".join(lines),
    }

    summary = written.structured_content
    assert summary is not None and summary["status"] == "written"
    summary_path = Path(summary["path"])
    assert summary_path.parent.parent == cfg.compressed_dir
    assert summary_path.read_text(encoding="utf-8") == summary["text"]
    assert f"session_id: {OPEN_SESSION}" in summary["text"]
    assert again.structured_content is not None
    assert again.structured_content["status"] == "unchanged"
    assert again.structured_content["path"] == summary["path"]


def test_tool_errors_come_back_as_errors_with_a_clear_message() -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("show_citation", {"tag": "auth.md line 3"}),
        ("show_citation", {"tag": "[topic:../../../etc/passwd#L1-L2]"}),
        ("show_citation", {"tag": "[raw:no-such-session#1]"}),
        ("compress_session", {"session_id": "no-such-session"}),
        ("build_context", {"brief": "   "}),
        ("build_context", {"brief": "x", "as_of": "last tuesday"}),
        ("search_memory", {"query": "tokens", "mode": "psychic"}),
        ("search_memory", {"query": "tokens", "filters": {"layers": ["gossip"]}}),
    ]
    _, results = anyio.run(_session_run, calls)

    messages = [_text(r) for r in results]
    assert all(r.is_error for r in results), messages
    bad_tag, outside, missing, unknown, empty, when, mode, layer = messages
    assert "not a citation tag" in bad_tag
    assert "must be relative" in outside
    assert "no session no-such-session" in missing
    assert "no-such-session" in unknown and "no such session" in unknown
    assert "brief is empty" in empty
    assert "not an ISO-8601" in when
    assert "mode" in mode
    assert "layers" in layer
