"""Copy the third-party transcripts each golden set's data.yaml names into its memory/sessions/raw/.

`ctxmill bench golden` does this itself before it runs a set; this script does only the copy, for
reading the sets with `ctxmill show` or `ctxmill search`.

    python bench/golden/link_data.py [--data DIR]

DIR defaults to $CTXMILL_SHARED_DATA, else a shared/data folder beside a parent of this folder.
The copies land in git-ignored folders and are never committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctxmill.bench.golden import find_data_root, find_sets, link_set_data

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder holding the shared benchmark data")
    args = parser.parse_args()
    root = find_data_root(HERE, args.data)
    missing = 0
    for set_dir in find_sets(HERE):
        count, reason = link_set_data(set_dir, root)
        if reason:
            print(f"{set_dir.name}: skipped: {reason}", file=sys.stderr)
            missing += 1
        else:
            print(f"{set_dir.name}: {count} files in {set_dir / 'memory' / 'sessions' / 'raw'}")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
