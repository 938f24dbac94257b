"""``ctxmill mcp``: the library's verbs as tools of an MCP server on stdio.

Built on the official MCP Python SDK (2.x, whose high-level server is ``MCPServer``).  Each tool
calls :mod:`ctxmill.api`, exactly as the command line does:

    search_memory(query, mode, filters, k)   ctxmill.search
    build_context(brief, budget, as_of)      ctxmill.build; writes the file, returns text and path
    show_citation(tag)                       ctxmill.show
    compress_session(session_id)             ctxmill.compress for one session

A tool returns readable text as its content (what a model reads: a hit list, the context.md, the
cited passage, the summary) and the same result as structured content.  A failure comes back as
a tool error (``isError``) whose text is the one-line message the CLI would print.  Logs go to
stderr: stdout carries the protocol.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ctxmill import __version__, api
from ctxmill.config import Config

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
ctxmill searches a team's memory of a codebase: curated topic notes, summaries of past coding \
agent sessions, the raw session transcripts and the code. Every hit and every claim carries a \
citation tag such as [topic:auth.md#L1-L20], [session:ID], [raw:ID#N] or [code:PATH:LINE]; \
show_citation opens one. build_context writes a task's context.md (fixed sections, tagged claims, \
under a token budget); it is meant for high-stakes tasks (migrations, architectural changes, \
incidents), not for small edits."""

Mode = Literal["auto", "keyword", "semantic", "hybrid"]
LayerName = Literal["topic", "compressed", "raw", "code"]


class SearchFilters(BaseModel):
    """Restrictions on what search_memory returns; every field is optional."""

    layers: list[LayerName] | None = Field(
        default=None, description="Only hits from these memory layers."
    )
    since: str | None = Field(
        default=None, description="Only hits dated on or after this ISO-8601 date or time."
    )
    until: str | None = Field(
        default=None, description="Only hits dated before this ISO-8601 date or time."
    )
    project: str | None = Field(
        default=None, description="Only this project (the basename of a session's working dir)."
    )
    session: str | None = Field(default=None, description="Only this session id.")


class SearchOutput(BaseModel):
    mode: str = Field(description="The mode that ran (auto picks keyword or hybrid).")
    period: list[str] | None = Field(description="The [since, until) window a dated query used.")
    notes: list[str]
    hits: list[dict[str, Any]] = Field(
        description="Ranked hits: tag, layer, session_id, project, timestamp, title, role, "
        "score, snippet, found_by."
    )


class BuildOutput(BaseModel):
    path: str = Field(description="Where context.md was written.")
    text: str = Field(description="The whole context.md.")
    tokens: int
    budget: int
    sections: dict[str, int] = Field(description="Tokens used per section.")
    citations: list[str] = Field(description="Every tag the context cites.")
    notes: list[str]


class CitationOutput(BaseModel):
    tag: str
    source: str = Field(description="The file the text was read from.")
    text: str


class CompressOutput(BaseModel):
    session_id: str
    status: Literal["written", "unchanged"]
    path: str = Field(description="The session's newest summary.")
    text: str = Field(description="The summary: YAML front matter and six sections.")


def create_server(cfg: Config) -> MCPServer:
    """The ctxmill MCP server for the memory ``cfg`` points at."""
    server: MCPServer = MCPServer("ctxmill", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    def search_memory(
        query: Annotated[str, Field(description="What to look for, in words or identifiers.")],
        mode: Annotated[
            Mode,
            Field(
                description="keyword (BM25), semantic (vectors), hybrid (both, fused) or auto "
                "(a query naming a date or period: keyword within it; otherwise hybrid)."
            ),
        ] = "auto",
        filters: SearchFilters | None = None,
        k: Annotated[int, Field(ge=1, le=100, description="Number of hits.")] = 10,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Search the team's memory (topic notes, session summaries, raw transcripts, code).

        Returns ranked hits, each with its citation tag, date and a snippet; open a hit in full
        with show_citation.
        """
        f = filters or SearchFilters()
        with _tool_errors("search_memory"):
            result = api.search(
                query,
                mode=mode,
                k=k,
                layers=f.layers,
                since=f.since,
                until=f.until,
                project=f.project,
                session=f.session,
                cfg=cfg,
            )
        hits = [h.as_json() for h in result.hits]
        lines = [*result.notes]
        for hit in result.hits:
            date = (hit.timestamp or "")[:10] or "-"
            snippet = "\n".join(f"    {line}" for line in hit.snippet.strip().splitlines())
            lines.append(f"{hit.tag}  {date}  {hit.score:.4f}\n{snippet}")
        output = SearchOutput(
            mode=result.mode,
            period=list(result.period) if result.period else None,
            notes=result.notes,
            hits=hits,
        )
        return _result(output, "\n".join(lines) or "no hits")

    @server.tool()
    def build_context(
        brief: Annotated[str, Field(description="The task, in a sentence or a paragraph.")],
        budget: Annotated[
            int | None,
            Field(
                ge=1,
                description="Token budget for context.md (default: the configured budget, "
                "50000). Claude Code truncates tool results over 25000 tokens unless "
                "MAX_MCP_OUTPUT_TOKENS is raised, so ask for 20000 or less there, or read "
                "the file at the returned path.",
            ),
        ] = None,
        as_of: Annotated[
            str | None,
            Field(description="Build as of this ISO-8601 moment: nothing dated later is used."),
        ] = None,
    ) -> Annotated[CallToolResult, BuildOutput]:
        """Write context.md for a high-stakes task: what is true now, relevant history (failed
        attempts, decisions and why), unresolved threads, files likely to touch, and citations.

        Returns the text and the path it was written to (under ctxmill's data dir); hand the
        file to a fresh agent with `ctxmill run "<brief>" --context <path>`.
        """
        output = _context_path(cfg, brief)
        with _tool_errors("build_context"):
            built = api.build(brief, budget=budget, as_of=as_of, output=output, cfg=cfg)
        data = BuildOutput(
            path=str(built.path or output),
            text=built.text,
            tokens=built.tokens,
            budget=int(built.record.get("budget") or budget or cfg.budget),
            sections=built.sections,
            citations=built.citations,
            notes=built.notes,
        )
        summary = (
            f"written to {data.path}: {data.tokens} tokens of {data.budget}, "
            f"{len(data.citations)} citations"
        )
        return _result(data, built.text, summary)

    @server.tool()
    def show_citation(
        tag: Annotated[
            str,
            Field(
                description="A citation tag as printed: [topic:PATH#Lx-Ly], [session:ID], "
                "[raw:ID#N] or [code:PATH:LINE]."
            ),
        ],
    ) -> Annotated[CallToolResult, CitationOutput]:
        """Open a citation tag: the topic lines, session summary, transcript turn or code it
        points to, read from the source."""
        with _tool_errors("show_citation"):
            passage = api.show(tag, cfg=cfg)
        return _result(CitationOutput(**passage.as_json()), passage.text)

    @server.tool()
    def compress_session(
        session_id: Annotated[str, Field(description="The session's full id.")],
    ) -> Annotated[CallToolResult, CompressOutput]:
        """Summarise one session into the memory (append-only: a grown transcript gets a new
        summary that supersedes the old one; an unchanged one returns its summary)."""
        with _tool_errors("compress_session"):
            data = _compress_one(cfg, session_id.strip())
        return _result(data, data.text)

    return server


def serve(cfg: Config) -> None:
    """Run the server on stdin/stdout until the client closes it."""
    logging.basicConfig(level=logging.WARNING, format="ctxmill mcp: %(message)s")
    create_server(cfg).run("stdio")


def _compress_one(cfg: Config, session_id: str) -> CompressOutput:
    from ctxmill.compress import existing_summaries

    if not session_id:
        raise api.CtxmillError("the session id is empty")
    report = api.compress(session_ids=[session_id], cfg=cfg)
    # A pass also takes whatever the SessionEnd hook queued; only this session's result counts.
    result = next((r for r in report.results if r.session_id == session_id), None)
    if result is None:
        raise api.CtxmillError(f"session {session_id}: nothing to summarise")
    if result.status not in ("written", "unchanged"):
        raise api.CtxmillError(f"session {session_id}: {result.status}: {result.reason}")
    newest = existing_summaries(cfg.compressed_dir).get(session_id)
    path = Path(result.path) if result.path else (newest.newest if newest else None)
    if path is None or not path.is_file():
        raise api.CtxmillError(f"session {session_id}: its summary file is missing")
    status: Literal["written", "unchanged"] = (
        "written" if result.status == "written" else "unchanged"
    )
    return CompressOutput(
        session_id=session_id,
        status=status,
        path=str(path),
        text=path.read_text(encoding="utf-8"),
    )


def _context_path(cfg: Config, brief: str) -> Path:
    """A new file per build under the data dir, so that builds never overwrite each other or a
    context.md in the user's project."""
    slug = "-".join(re.findall(r"[a-z0-9]+", brief.lower())[:6])[:48] or "context"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return cfg.home / "contexts" / f"{stamp}-{slug}.md"


def _result(data: BaseModel, *texts: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text) for text in texts],
        structured_content=data.model_dump(mode="json"),
    )


@contextmanager
def _tool_errors(tool: str) -> Iterator[None]:
    """Every failure reaches the client as a tool error carrying a readable message."""
    try:
        yield
    except api.CtxmillError as exc:
        raise ToolError(str(exc)) from exc
    except Exception as exc:
        log.exception("%s failed", tool)
        raise ToolError(f"{tool} failed: {type(exc).__name__}: {exc}") from exc
