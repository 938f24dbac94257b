"""Ingest, search and build at scale, on a synthetic corpus shaped like real Claude Code transcripts.

The corpus is generated, deterministically, from a seed: no real transcript text is used.  Its shape
was measured on the real Claude Code transcripts in the shared benchmark data (17 files, 11.2 MB):

    share of bytes   user records 50% (tool results 29% of all bytes in `toolUseResult`),
                     progress records 30%, assistant records 19%, file-history snapshots 1%
    share of lines   progress 62%, tool results 14%, tool calls 14%, assistant text 7%,
                     user prompts 1%, file-history snapshots 1%, thinking 0.7%
    tools            Bash 40%, Read 21%, Edit 14%, Write 6%, TodoWrite 4%, Glob 4%, Grep 4%, …
    text sizes       tool result median 209 chars (p90 3.5 k, max 81 k), assistant text median
                     78 (p90 203), thinking median 184 (p90 1.3 k), user prompt median 221
                     (p90 8.7 k), tool input median 127 (p90 1.4 k)

Sessions average ~0.75 MB (800 transcripts ≈ 600 MB), with a long tail.

For each size the script measures, each phase in its own process (so peak memory is per phase):

    keyword    full ingest with no vectors (transcripts in an agent folder, so archiving counts)
    reingest   the same ingest again with nothing changed
    embed      full ingest with vectors (a fresh index)
    search     ~100 queries, keyword and hybrid: median and p95 latency
    build      `build_context` for 10 briefs: median time

and writes a markdown table, a JSON file and a PNG plot into benchmarks/out/.

    python benchmarks/ingest_scale.py --mb 10,100
    python benchmarks/ingest_scale.py --mb 600 --no-embed     # keyword path only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

# -- the synthetic corpus -------------------------------------------------------------------------

_ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "st", "pr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_TECH = (
    "function module handler request response cache index query schema migration token session "
    "config server client worker queue retry timeout error exception test fixture build deploy "
    "commit branch merge review parser renderer template component service store record field "
    "value list map string integer null async await callback event stream buffer socket thread "
    "lock transaction rollback checkpoint snapshot log metric trace span header payload route "
    "endpoint middleware plugin hook script command option flag default path file folder"
).split()
_VERBS = (
    "add remove rename move fix check read write update create delete run call return load save "
    "parse render validate compare merge split filter sort count wrap retry skip keep"
).split()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 3)))


class TextMaker:
    """Deterministic pseudo-prose from a made-up vocabulary plus common programming words."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = list(dict.fromkeys(_word(self.rng) for _ in range(6000)))
        self.sentences = [self._sentence() for _ in range(4000)]

    def _sentence(self) -> str:
        rng = self.rng
        words = []
        for _ in range(rng.randint(6, 18)):
            r = rng.random()
            words.append(
                rng.choice(_TECH)
                if r < 0.35
                else rng.choice(_VERBS)
                if r < 0.5
                else rng.choice(self.vocab)
            )
        words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice([".", ".", ".", "?", ":"])

    def ident(self) -> str:
        rng = self.rng
        style = rng.random()
        a, b = rng.choice(self.vocab), rng.choice(_TECH)
        if style < 0.4:
            return f"{a}_{b}"
        if style < 0.7:
            return f"{a.capitalize()}{b.capitalize()}"
        return f"{a}.{b}"

    def path(self) -> str:
        rng = self.rng
        parts = [rng.choice(self.vocab) for _ in range(rng.randint(1, 3))]
        return "src/" + "/".join(parts) + rng.choice([".py", ".ts", ".ex", ".go", ".md", ".rs"])

    def prose(self, chars: int) -> str:
        rng = self.rng
        out: list[str] = []
        n = 0
        while n < chars:
            s = rng.choice(self.sentences)
            if rng.random() < 0.25:
                s += f" See `{self.ident()}` in {self.path()}."
            out.append(s)
            n += len(s) + 1
        return " ".join(out)[: max(chars, 1)]

    def code(self, chars: int) -> str:
        rng = self.rng
        lines: list[str] = []
        n = 0
        i = rng.randint(1, 400)
        while n < chars:
            line = (
                f"{i:>6}→    {rng.choice(['def', 'let', 'fn', 'if', 'return', 'for'])} "
                f"{self.ident()}({self.ident()}, {rng.randint(0, 999)})"
            )
            lines.append(line)
            n += len(line) + 1
            i += 1
        return "\n".join(lines)


def _lognormal(rng: random.Random, median: float, p90: float, cap: int) -> int:
    sigma = max(0.1, math.log(p90 / median) / 1.2816)
    return max(1, min(cap, int(rng.lognormvariate(math.log(median), sigma))))


TOOLS = [
    ("Bash", 40),
    ("Read", 21),
    ("Edit", 14),
    ("Write", 6),
    ("TodoWrite", 4),
    ("Glob", 4),
    ("Grep", 4),
    ("Task", 2),
    ("WebSearch", 2),
    ("WebFetch", 2),
    ("MultiEdit", 1),
]


def _session_records(
    tm: TextMaker, sid: str, cwd: str, start: datetime, target: int
) -> Iterator[str]:
    """JSONL lines of one synthetic session, about ``target`` bytes."""
    rng = tm.rng
    size = 0
    n = 0
    parent: str | None = None
    clock = start
    names = [t for t, _ in TOOLS]
    weights = [w for _, w in TOOLS]

    def base(kind: str) -> dict[str, Any]:
        nonlocal n, parent, clock
        n += 1
        clock += timedelta(seconds=rng.randint(1, 40))
        rec_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
        rec = {
            "parentUuid": parent,
            "isSidechain": False,
            "userType": "external",
            "cwd": cwd,
            "sessionId": sid,
            "version": "2.1.39",
            "gitBranch": "main",
            "slug": "synthetic-session",
            "type": kind,
            "uuid": rec_uuid,
            "timestamp": clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randint(0, 999):03d}Z",
        }
        parent = rec_uuid
        return rec

    def emit(rec: dict[str, Any]) -> str:
        nonlocal size
        line = json.dumps(rec, ensure_ascii=False)
        size += len(line) + 1
        return line

    snapshot = {
        "type": "file-history-snapshot",
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "snapshot": {"trackedFileBackups": {}, "timestamp": start.isoformat()},
        "isSnapshotUpdate": False,
    }
    yield emit(snapshot)
    while size < target:
        rec = base("user")
        rec["message"] = {"role": "user", "content": tm.prose(_lognormal(rng, 221, 8669, 16000))}
        yield emit(rec)
        for _ in range(rng.randint(3, 14)):
            for _ in range(rng.randint(2, 7)):
                prog = base("progress")
                prog["data"] = {
                    "type": rng.choice(["hook_progress", "bash_progress", "agent_progress"]),
                    "hookEvent": "PostToolUse",
                    "command": tm.path(),
                    "output": tm.prose(rng.randint(80, 600)),
                }
                prog["toolUseID"] = f"toolu_{rng.getrandbits(64):016x}"
                yield emit(prog)
            msg_id = f"msg_{rng.getrandbits(64):016x}"
            if rng.random() < 0.1:
                think = base("assistant")
                think["message"] = {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-opus-4-6",
                    "content": [
                        {
                            "type": "thinking",
                            "thinking": tm.prose(_lognormal(rng, 184, 1344, 28000)),
                            "signature": "c2ln" * 40,
                        }
                    ],
                }
                yield emit(think)
            if rng.random() < 0.35:
                text = base("assistant")
                text["message"] = {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-opus-4-6",
                    "content": [
                        {"type": "text", "text": tm.prose(_lognormal(rng, 78, 203, 15000))}
                    ],
                    "usage": {
                        "input_tokens": rng.randint(1, 9),
                        "output_tokens": rng.randint(10, 900),
                    },
                }
                yield emit(text)
            tool = rng.choices(names, weights)[0]
            tool_id = f"toolu_{rng.getrandbits(64):016x}"
            if tool == "Bash":
                tool_input: dict[str, Any] = {
                    "command": f"{rng.choice(['pytest', 'mix test', 'git diff', 'rg', 'npm run'])} {tm.path()}",
                    "description": tm.prose(40),
                }
            elif tool in ("Read", "Write", "Edit", "MultiEdit"):
                tool_input = {"file_path": "/home/dev/" + tm.path()}
                if tool != "Read":
                    tool_input["content" if tool == "Write" else "new_string"] = tm.code(
                        _lognormal(rng, 127, 1358, 20000)
                    )
            else:
                tool_input = {"pattern": tm.ident(), "query": tm.prose(60)}
            call = base("assistant")
            call["requestId"] = f"req_{rng.getrandbits(48):012x}"
            call["message"] = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-6",
                "content": [{"type": "tool_use", "id": tool_id, "name": tool, "input": tool_input}],
                "usage": {"input_tokens": rng.randint(1, 9), "output_tokens": rng.randint(10, 900)},
            }
            yield emit(call)
            out_len = _lognormal(rng, 209, 3540, 80000)
            output = tm.code(out_len) if tool == "Read" else tm.prose(out_len)
            res = base("user")
            res["message"] = {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_id,
                        "content": output,
                        "is_error": rng.random() < 0.05,
                    }
                ],
            }
            res["toolUseResult"] = {
                "stdout": output,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
            }
            res["sourceToolAssistantUUID"] = call["uuid"]
            yield emit(res)
            if size >= target:
                break


def generate(root: Path, mb: float, seed: int = 7) -> dict[str, Any]:
    """Write about ``mb`` MB of synthetic sessions under ``root/claude/projects``."""
    tm = TextMaker(seed)
    rng = tm.rng
    target_total = int(mb * 1_000_000)
    projects = root / "claude" / "projects"
    written = 0
    sessions = 0
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    while written < target_total:
        project = f"-home-dev-{rng.choice(tm.vocab)}{rng.randint(1, 9)}"
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        size = min(_lognormal(rng, 450_000, 1_800_000, 6_000_000), target_total - written + 20_000)
        folder = projects / project
        folder.mkdir(parents=True, exist_ok=True)
        begin = start + timedelta(hours=sessions * 3)
        path = folder / f"{sid}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for line in _session_records(
                tm, sid, "/home/dev/" + project.rsplit("-", 1)[-1], begin, size
            ):
                fh.write(line + "\n")
        written += path.stat().st_size
        sessions += 1
    return {"bytes": written, "sessions": sessions, "vocab": tm.vocab[:2000]}


# -- one measured phase, in its own process ---------------------------------------------------------


def _config(corpus: Path, home: Path, embedder: str) -> Any:
    from ctxmill.config import Config

    return Config(
        memory_root=home / "memory",
        transcript_dirs=[corpus / "claude" / "projects"],
        discover=False,
        embedder=embedder,
        home=home,
    )


def phase(
    name: str, corpus: Path, home: Path, embedder: str, queries: list[str], briefs: list[str]
) -> dict[str, Any]:
    os.environ["CTXMILL_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"phase": name}
    cfg = _config(corpus, home, embedder)
    if name in ("keyword", "reingest", "embed"):
        from ctxmill.ingest import ingest

        t0, c0 = time.perf_counter(), os.times()
        report = ingest(cfg, embed=name == "embed")
        result["seconds"] = time.perf_counter() - t0
        # CPU time, worker processes included: on a shared machine wall time says more about the
        # neighbours than about ctxmill.
        c1 = os.times()
        result["cpu_s"] = c1.user - c0.user + c1.system - c0.system
        result["worker_cpu_s"] = (
            c1.children_user - c0.children_user + c1.children_system - c0.children_system
        )
        result["embed_seconds"] = report.embed_seconds
        result["bytes_read"] = report.bytes_read
        result["files_read"] = report.files_read
        result["files_unchanged"] = report.files_unchanged
        result["chunks"] = report.chunks_added
        result["vectors"] = report.vectors_added
        result["problems"] = len(report.problems)
        result["index_mb"] = (
            cfg.index_path.stat().st_size / 1e6 if cfg.index_path.exists() else None
        )
    elif name == "search":
        from ctxmill.search import search
        from ctxmill.store import open_store

        cold = time.perf_counter()
        store = open_store(cfg, readonly=True)
        for mode in ("keyword", "hybrid"):
            search(store, queries[0], mode=mode, k=10)  # warm: model load, page cache
            # the first query: keyword's includes opening the index, hybrid's loading the
            # embedding model and the vectors
            result[f"{mode}_first_ms"] = (time.perf_counter() - cold) * 1000
            times = []
            for q in queries:
                t0 = time.perf_counter()
                search(store, q, mode=mode, k=10)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            result[f"{mode}_median_ms"] = statistics.median(times)
            result[f"{mode}_p95_ms"] = times[int(len(times) * 0.95) - 1]
            cold = time.perf_counter()
        store.close()
    elif name == "build":
        try:
            from ctxmill.pipeline import build_context
        except ImportError as exc:
            result["error"] = f"pipeline not importable: {exc}"
        else:
            from ctxmill.store import open_store

            store = open_store(cfg)
            build_context(cfg, briefs[0], store=store)  # warm
            times = []
            tokens = []
            for brief in briefs:
                t0 = time.perf_counter()
                built = build_context(cfg, brief, store=store)
                times.append(time.perf_counter() - t0)
                tokens.append(built.tokens)
            store.close()
            result["build_median_s"] = statistics.median(times)
            result["build_max_s"] = max(times)
            result["build_tokens_median"] = statistics.median(tokens)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if workers_peak:
        result["worker_peak_rss_mb"] = workers_peak
    return result


def run_phase(
    name: str, corpus: Path, home: Path, embedder: str, queries: list[str], briefs: list[str]
) -> dict[str, Any]:
    spec = json.dumps(
        {
            "name": name,
            "corpus": str(corpus),
            "home": str(home),
            "embedder": embedder,
            "queries": queries,
            "briefs": briefs,
        }
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--phase-json", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {
            "phase": name,
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}",
        }
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- the whole run ---------------------------------------------------------------------------------


def _queries(vocab: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 3))] + [
            rng.choice(_TECH) for _ in range(rng.randint(0, 2))
        ]
        if i % 5 == 0:
            words.append(rng.choice(["timeout", "retry", "migration", "cache"]))
        out.append(" ".join(words))
    return out


def measure(mb: float, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"ctxmill-scale-{mb:g}mb-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        info = generate(work, mb, seed=args.seed)
        gen_s = time.perf_counter() - t0
        real_mb = info["bytes"] / 1e6
        print(
            f"[{mb:g} MB] generated {real_mb:.1f} MB in {info['sessions']} sessions ({gen_s:.1f}s)",
            flush=True,
        )
        queries = _queries(info["vocab"], args.queries, args.seed)
        briefs = [
            f"fix the {q} timeout in the worker" if i % 2 else f"why did we change {q}"
            for i, q in enumerate(_queries(info["vocab"], args.builds, args.seed + 1))
        ]
        row: dict[str, Any] = {"mb": round(real_mb, 1), "sessions": info["sessions"]}
        kw = run_phase("keyword", work, work / "home-kw", "none", queries, briefs)
        print(f"[{mb:g} MB] keyword ingest: {kw}", flush=True)
        row["keyword_s"] = kw.get("seconds")
        if kw.get("cpu_s") is not None:
            row["keyword_cpu_s"] = kw["cpu_s"] + kw.get("worker_cpu_s", 0.0)
        row["keyword_mb_s"] = real_mb / kw["seconds"] if kw.get("seconds") else None
        row["keyword_peak_mb"] = kw.get("peak_rss_mb")
        row["index_mb"] = kw.get("index_mb")
        row["chunks"] = kw.get("chunks")
        re_ = run_phase("reingest", work, work / "home-kw", "none", queries, briefs)
        print(f"[{mb:g} MB] no-change re-ingest: {re_}", flush=True)
        row["reingest_s"] = re_.get("seconds")
        row["reingest_cpu_s"] = re_.get("cpu_s")
        row["reingest_peak_mb"] = re_.get("peak_rss_mb")
        home = work / "home-kw"
        if not args.no_embed:
            em = run_phase("embed", work, work / "home-embed", args.embedder, queries, briefs)
            print(f"[{mb:g} MB] ingest with embeddings: {em}", flush=True)
            row["embed_total_s"] = em.get("seconds")
            row["embed_s"] = em.get("embed_seconds")
            row["embed_peak_mb"] = em.get("peak_rss_mb")
            row["vectors"] = em.get("vectors")
            if em.get("seconds") is not None:
                home = work / "home-embed"
                shutil.rmtree(work / "home-kw", ignore_errors=True)
        emb = args.embedder if home.name == "home-embed" else "none"
        se = run_phase("search", work, home, emb, queries, briefs)
        print(f"[{mb:g} MB] search: {se}", flush=True)
        for key in ("keyword_median_ms", "keyword_p95_ms", "hybrid_median_ms", "hybrid_p95_ms"):
            row[key] = se.get(key)
        row["hybrid_has_vectors"] = emb != "none"
        bu = run_phase("build", work, home, emb, queries, briefs)
        print(f"[{mb:g} MB] build: {bu}", flush=True)
        row["build_median_s"] = bu.get("build_median_s")
        row["build_max_s"] = bu.get("build_max_s")
        row["build_peak_mb"] = bu.get("peak_rss_mb")
        row["errors"] = [f"{p['phase']}: {p['error']}" for p in (kw, re_, se, bu) if p.get("error")]
        return row
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def search_only(work: Path, args: argparse.Namespace) -> None:
    """Search and build timings on an existing index, each run in fresh processes."""
    homes = [work / "home-embed", work / "home-kw"]
    home = next((h for h in homes if _config(work, h, "none").index_path.exists()), None)
    if home is None:
        sys.exit(f"no index under {work}/home-embed or {work}/home-kw: run with --keep first")
    embedder = args.embedder if home.name == "home-embed" else "none"
    vocab = TextMaker(args.seed).vocab[:2000]  # the vocabulary generate() drew the corpus from
    queries = _queries(vocab, args.queries, args.seed)
    briefs = [
        f"fix the {q} timeout in the worker" if i % 2 else f"why did we change {q}"
        for i, q in enumerate(_queries(vocab, args.builds, args.seed + 1))
    ]
    runs: dict[str, list[float]] = {}
    for i in range(args.repeat):
        for name in ("search", "build"):
            res = run_phase(name, work, home, embedder, queries, briefs)
            print(f"run {i + 1} {name}: {res}", flush=True)
            for key, value in res.items():
                if isinstance(value, float) and not key.endswith("_mb"):
                    runs.setdefault(key, []).append(value)
    print(f"\n{home}: median of {args.repeat} runs")
    for key, values in runs.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {key:22s} {statistics.median(values):9.3f}   (runs: {each})")
    print("reproduce: python benchmarks/ingest_scale.py " + " ".join(sys.argv[1:]))


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def write_outputs(rows: list[dict[str, Any]], command: str) -> tuple[Path, Path, Path | None]:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"# ctxmill ingest at scale ({stamp}, {os.cpu_count()} cores)",
        "",
        f"Reproduce: `{command}`",
        "",
        "| corpus MB | sessions | keyword ingest s (CPU s) | MB/s | peak MB | no-change re-ingest s (CPU s) | ingest+vectors s (embed s) | peak MB | search kw median/p95 ms | hybrid median/p95 ms | build median s (max) | index MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mb']} | {r['sessions']} | {_fmt(r.get('keyword_s'))} ({_fmt(r.get('keyword_cpu_s'))}) | {_fmt(r.get('keyword_mb_s'), '.1f')} | "
            f"{_fmt(r.get('keyword_peak_mb'), '.0f')} | {_fmt(r.get('reingest_s'), '.3f')} ({_fmt(r.get('reingest_cpu_s'), '.3f')}) | "
            f"{_fmt(r.get('embed_total_s'))} ({_fmt(r.get('embed_s'))}) | {_fmt(r.get('embed_peak_mb'), '.0f')} | "
            f"{_fmt(r.get('keyword_median_ms'), '.1f')}/{_fmt(r.get('keyword_p95_ms'), '.1f')} | "
            f"{_fmt(r.get('hybrid_median_ms'), '.1f')}/{_fmt(r.get('hybrid_p95_ms'), '.1f')} | "
            f"{_fmt(r.get('build_median_s'))} ({_fmt(r.get('build_max_s'))}) | {_fmt(r.get('index_mb'), '.0f')} |"
        )
    for r in rows:
        for e in r.get("errors", []):
            lines.append(f"\n{r['mb']} MB: {e}")
    md = OUT / "ingest_scale.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    js = OUT / "ingest_scale.json"
    js.write_text(
        json.dumps({"timestamp": stamp, "command": command, "rows": rows}, indent=2),
        encoding="utf-8",
    )
    png: Path | None = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [r["mb"] for r in rows]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for key, label in (
            ("keyword_s", "keyword ingest"),
            ("embed_total_s", "ingest + vectors"),
            ("build_median_s", "build (median)"),
        ):
            pts = [(x, r.get(key)) for x, r in zip(xs, rows, strict=True) if r.get(key) is not None]
            if pts:
                ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax1.set_xlabel("corpus MB")
        ax1.set_ylabel("seconds")
        ax1.set_title("time")
        ax1.legend()
        for key, label in (
            ("keyword_peak_mb", "keyword ingest"),
            ("embed_peak_mb", "ingest + vectors"),
            ("build_peak_mb", "build"),
        ):
            pts = [(x, r.get(key)) for x, r in zip(xs, rows, strict=True) if r.get(key) is not None]
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax2.set_xlabel("corpus MB")
        ax2.set_ylabel("peak RSS MB")
        ax2.set_title("memory")
        ax2.legend()
        fig.tight_layout()
        png = OUT / "ingest_scale.png"
        fig.savefig(png, dpi=110)
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
    return md, js, png


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--phase-json":
        spec = json.loads(sys.argv[2])
        res = phase(
            spec["name"],
            Path(spec["corpus"]),
            Path(spec["home"]),
            spec["embedder"],
            spec["queries"],
            spec["briefs"],
        )
        print(json.dumps(res))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mb", default="10,100", help="corpus sizes in MB, comma-separated (default 10,100)"
    )
    parser.add_argument("--queries", type=int, default=100, help="search queries per size")
    parser.add_argument("--builds", type=int, default=10, help="builds per size")
    parser.add_argument("--embedder", default="m2v-minilm", help="embedder for the vector phase")
    parser.add_argument(
        "--no-embed", action="store_true", help="skip the ingest-with-vectors phase"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--tmp", default=None, help="folder for the corpora (default: the system temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora")
    parser.add_argument(
        "--search-only",
        metavar="DIR",
        help="time search and build on a corpus kept by --keep (its home-embed or home-kw "
        "index), --repeat times, instead of generating and ingesting",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs for --search-only")
    args = parser.parse_args()
    if args.search_only:
        search_only(Path(args.search_only), args)
        return
    sizes = [float(s) for s in args.mb.split(",") if s.strip()]
    command = "python benchmarks/ingest_scale.py " + " ".join(sys.argv[1:])
    rows = [measure(mb, args) for mb in sizes]
    md, js, png = write_outputs(rows, command)
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md}, {js}" + (f", {png}" if png else ""))
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
