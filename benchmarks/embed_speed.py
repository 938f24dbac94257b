"""Embedding speed of the shipped static model on ~1,000-character chunks of real transcripts.

The chunks come from the agent transcripts and chat exports under the shared data folder
(Claude Code / Codex / Gemini JSONL, SpecStory markdown): every string field of every JSONL
record, or the markdown text, concatenated per file and cut into chunks.  Prints the cold load
time (importing model2vec and reading the model), then texts/s and MB/s over all chunks, best
of ``--repeat`` runs, for the static model and for the hash embedder.

    .venv/bin/python benchmarks/embed_speed.py [--limit N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ctxmill.embed import Embedder, HashEmbedder, StaticEmbedder

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CTXMILL_SHARED_DATA", REPO.parent / "shared" / "data"))
CHUNK_CHARS = 1000


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def file_text(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text(errors="replace")
    parts: list[str] = []
    lines = path.read_text(errors="replace").splitlines()
    if path.suffix == ".json":
        lines = ["\n".join(lines)]
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        # Ids, timestamps and enum values are short; what an index embeds is the prose and code.
        parts.extend(s for s in strings(record) if len(s) > 40)
    return "\n".join(parts)


def chunks(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".jsonl", ".json", ".md"} or "locomo" in path.parts:
            continue
        if path.name.startswith(("FIXTURES_README", "README")):
            continue
        text = file_text(path)
        out.extend(text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS))
    return [c for c in out if len(c) >= CHUNK_CHARS // 2]


def best_rate(embedder: Embedder, texts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        embedder.embed(texts)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder of transcripts")
    parser.add_argument("--limit", type=int, default=0, help="use at most N chunks (0: all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    if not args.data.is_dir():
        print(
            f"transcript data not found at {args.data}; nothing to measure (set "
            "CTXMILL_SHARED_DATA or pass --data)",
            file=sys.stderr,
        )
        return 0
    texts = chunks(args.data)
    if args.limit:
        texts = texts[: args.limit]
    if not texts:
        print(f"no transcript chunks under {args.data}", file=sys.stderr)
        return 0
    megabytes = sum(len(t.encode()) for t in texts) / 1e6

    started = time.perf_counter()
    static = StaticEmbedder()
    static.embed(["warm up"])  # the first call imports model2vec and reads the model
    load = time.perf_counter() - started

    print(f"{len(texts):,} chunks of ~{CHUNK_CHARS} chars ({megabytes:.1f} MB) from {args.data}")
    print(f"static model {static.name} ({static.dim} dims): cold load {load:.2f} s\n")
    print("| embedder | seconds | texts/s | MB/s |")
    print("|---|---|---|---|")
    for embedder in (static, HashEmbedder(static.dim)):
        seconds = best_rate(embedder, texts, args.repeat)
        print(
            f"| {embedder.name} | {seconds:.2f} | {len(texts) / seconds:,.0f} | "
            f"{megabytes / seconds:.1f} |"
        )
    print(f"\nbest of {args.repeat} runs, {os.cpu_count()} CPUs")
    print("reproduce: " + " ".join(["python benchmarks/embed_speed.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
