"""Redaction speed on real agent transcripts: every line of every JSONL file under the shared
Claude Code data, redacted one line at a time as ingest does.

Prints MB/s (UTF-8 bytes of input per second, by wall clock and by the process's CPU time), best
of ``--repeat`` runs, for ``redact`` and, for scale, for the bare encode + translate + gate scan
that every line pays; then how many lines held
a secret and of which kinds.  The real transcripts hold no secrets, so any count is a false
positive to look at (``--show`` prints them).  Exits 0 with a note when the data is absent.

    .venv/bin/python benchmarks/redact_speed.py [--repeat 7] [--show]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ctxmill.redact import _FOLD, _GATE, find_secrets, redact

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CTXMILL_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_lines(root: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(root.rglob("*.jsonl")):
        lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return lines


def best_rates(
    fn: Callable[[str], object], lines: list[str], nbytes: int, repeat: int
) -> tuple[float, float]:
    """(wall MB/s, CPU MB/s), best of ``repeat``; CPU time is less disturbed by a busy machine."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for line in lines:
            fn(line)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return nbytes / wall / 1e6, nbytes / cpu / 1e6


def gate_only(line: str) -> object:
    return _GATE.search(line.encode("utf-8", "surrogatepass").translate(_FOLD))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--show", action="store_true", help="print each finding with context")
    args = parser.parse_args()

    root = SHARED_DATA / "claude-code"
    if not root.is_dir():
        print(f"skipped: {root} not found (set CTXMILL_SHARED_DATA)")
        return 0
    lines = load_lines(root)
    nbytes = sum(len(line.encode("utf-8", "surrogatepass")) for line in lines)
    print(f"corpus: {len(lines):,} lines, {nbytes / 1e6:.1f} MB from {root}")
    for name, fn in (("redact", redact), ("gate only (floor)", gate_only)):
        wall, cpu = best_rates(fn, lines, nbytes, args.repeat)
        print(f"{name + ':':<19} {wall:5.0f} MB/s wall, {cpu:5.0f} MB/s CPU time")

    kinds: Counter[str] = Counter()
    for line in lines:
        for f in find_secrets(line):
            kinds[f.kind] += 1
            if args.show:
                print(f"  {f.kind}: {line[max(0, f.start - 40) : f.end + 20]!r}")
    print(f"findings: {sum(kinds.values())} {dict(kinds)}")
    print(f"reproduce: .venv/bin/python benchmarks/{Path(__file__).name} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
