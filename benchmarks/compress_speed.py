"""How fast the extractive compression pass is, and how long its summaries come out.

Reads every transcript in the shared real data (Claude Code, Codex and SpecStory files), and for
each main session (subagents are folded into their parents) parses it, writes the extractive
summary and validates it, all in memory.  Prints sessions per second (with and without parsing)
and the body token counts (min / median / max), then the command that reproduces the numbers.

    python benchmarks/compress_speed.py [--data DIR] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from ctxmill import sources
from ctxmill.compress import SummaryRejected, _subagent_files, compress_session
from ctxmill.summary_format import split_summary
from ctxmill.tokens import TOKENIZER_NAME, count_tokens

DEFAULT_DATA = Path(
    os.environ.get("CTXMILL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
FOLDERS = ("claude-code", "specstory/gryag")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--repeat", type=int, default=3, help="passes to time (best is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    files = [
        p
        for folder in FOLDERS
        if (args.data / folder).is_dir()
        for p in sorted((args.data / folder).rglob("*"))
        if p.is_file() and sources.detect(p) is not None
    ]
    if not files:
        print(
            f"no transcripts under {args.data} (set --data or CTXMILL_SHARED_DATA)", file=sys.stderr
        )
        return 1
    count_tokens("warm up")  # the tokenizer loads once per process; not part of a pass
    best_total = best_compress = float("inf")
    tokens: list[int] = []
    invalid = 0
    for _ in range(max(1, args.repeat)):
        tokens, invalid, total_s, compress_s = _pass(files)
        best_total, best_compress = min(best_total, total_s), min(best_compress, compress_s)
    n = len(tokens)
    result = {
        "transcript_files": len(files),
        "sessions": n,
        "invalid_summaries": invalid,
        "sessions_per_s": round(n / best_total, 1),
        "sessions_per_s_without_parsing": round(n / best_compress, 1),
        "seconds": round(best_total, 3),
        "tokens_min": min(tokens),
        "tokens_median": statistics.median(tokens),
        "tokens_max": max(tokens),
        "under_500": sum(1 for t in tokens if t < 500),
        "tokenizer": TOKENIZER_NAME,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    command = f"python benchmarks/compress_speed.py --data {args.data} --repeat {args.repeat}"
    if args.json:
        print(json.dumps({**result, "command": command}, indent=2))
        return 0
    print(
        f"{n} sessions from {len(files)} files in {best_total:.2f}s: "
        f"{result['sessions_per_s']} sessions/s "
        f"({result['sessions_per_s_without_parsing']} sessions/s without parsing); "
        f"{invalid} invalid"
    )
    print(
        f"summary body tokens ({TOKENIZER_NAME}): min {result['tokens_min']}, median "
        f"{result['tokens_median']}, max {result['tokens_max']}; {result['under_500']} under 500 "
        "(short sessions)"
    )
    print(f"reproduce: {command}")
    return 0


def _pass(files: list[Path]) -> tuple[list[int], int, float, float]:
    tokens: list[int] = []
    invalid = 0
    compress_s = 0.0
    started = time.perf_counter()
    for path in files:
        parsed = sources.parse_transcript(sources.detect(path) or "", path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        for session in parsed.sessions:
            if session.parent_id or not any(t.role in ("user", "assistant") for t in session.turns):
                continue
            children = [c for c in parsed.sessions if c.parent_id == session.id]
            children += _subagent_files(path, session.id)
            t0 = time.perf_counter()
            try:
                text = compress_session(session, children=children, sha=sha)  # validates
            except SummaryRejected:
                invalid += 1
                continue
            finally:
                compress_s += time.perf_counter() - t0
            tokens.append(count_tokens(split_summary(text)[1].strip()))
    return tokens, invalid, time.perf_counter() - started, compress_s


if __name__ == "__main__":
    sys.exit(main())
