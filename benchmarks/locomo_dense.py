"""LoCoMo turn-retrieval probe: the static embedder against BM25 and their RRF fusion.

For every question with evidence (category 5, adversarial, is skipped), rank the turns of that
question's conversation, each written as ``speaker (session date): text``, and report the mean
share of evidence turns found in the top 1, 5 and 10:

- ``dense``: cosine similarity of the embedder's vectors (``ctxmill.embed``);
- ``bm25``: bm25s over lower-cased alphanumeric tokens;
- ``rrf``: reciprocal-rank fusion (k=60) of the two lists' top ``--depth`` turns.

Evidence ids are normalized as the data's README asks ("D8:6; D9:17" is split, "D30:05" and
"D:11:26" become "D30:5" and "D11:26") and the number normalized is printed.

    .venv/bin/python benchmarks/locomo_dense.py [--model DIR] [--embedder NAME] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctxmill.embed import Embedder, StaticEmbedder, get_embedder

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CTXMILL_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_DATA = SHARED_DATA / "locomo" / "locomo7.json"
KS = (1, 5, 10)
RRF_K = 60
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_EVIDENCE_RE = re.compile(r"^D:?(\d+):(\d+)$")
_SESSION_RE = re.compile(r"^session_(\d+)$")


@dataclass
class Question:
    conversation: int
    text: str
    category: int
    evidence: set[str]


@dataclass
class Conversation:
    ids: list[str]
    texts: list[str]


def normalize_evidence(raw: Iterable[str]) -> tuple[set[str], int]:
    """The evidence ids in canonical ``D<session>:<turn>`` form, and how many needed changing."""
    out: set[str] = set()
    changed = 0
    for entry in raw:
        canonical: list[str] = []
        for part in re.split(r"[;\s]+", entry.strip()):
            match = _EVIDENCE_RE.match(part)
            if match is not None:
                canonical.append(f"D{int(match.group(1))}:{int(match.group(2))}")
        # An entry that was split, rewritten or unreadable (and so dropped) counts once.
        changed += canonical != [entry.strip()]
        out.update(canonical)
    return out, changed


def load(path: Path) -> tuple[list[Conversation], list[Question], int]:
    samples: list[dict[str, Any]] = json.loads(path.read_text())
    conversations: list[Conversation] = []
    questions: list[Question] = []
    normalized = 0
    for index, sample in enumerate(samples):
        conv = sample["conversation"]
        ids: list[str] = []
        texts: list[str] = []
        sessions = sorted((int(m.group(1)), key) for key in conv if (m := _SESSION_RE.match(key)))
        for number, key in sessions:
            date = conv.get(f"session_{number}_date_time", "")
            for turn in conv[key]:
                ids.append(turn["dia_id"])
                texts.append(f"{turn['speaker']} ({date}): {turn['text']}")
        conversations.append(Conversation(ids, texts))
        for qa in sample["qa"]:
            if qa.get("category") == 5:
                continue
            evidence, changed = normalize_evidence(qa.get("evidence", []))
            normalized += changed
            if evidence:
                questions.append(Question(index, qa["question"], qa["category"], evidence))
    return conversations, questions, normalized


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def ranking(scores: np.ndarray) -> list[int]:
    """Row indices by descending score, ties in row order."""
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -scores))]


def rrf(lists: Sequence[Sequence[int]], depth: int) -> list[int]:
    fused: dict[int, float] = {}
    for ranked in lists:
        for rank, row in enumerate(ranked[:depth], start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused, key=lambda row: (-fused[row], row))


def recall(ranked: Sequence[str], evidence: set[str], k: int) -> float:
    return len(evidence.intersection(ranked[:k])) / len(evidence)


def run(
    conversations: list[Conversation], questions: list[Question], embedder: Embedder, depth: int
) -> tuple[dict[str, dict[int, float]], float]:
    import bm25s

    totals = {name: dict.fromkeys(KS, 0.0) for name in ("bm25", "dense", "rrf")}
    embed_seconds = 0.0
    for index, conv in enumerate(conversations):
        asked = [q for q in questions if q.conversation == index]
        if not asked:
            continue
        started = time.perf_counter()
        turn_vectors = embedder.embed(conv.texts)
        question_vectors = embedder.embed([q.text for q in asked])
        embed_seconds += time.perf_counter() - started
        index_bm25 = bm25s.BM25()
        index_bm25.index([tokens(t) for t in conv.texts], show_progress=False)
        for question, vector in zip(asked, question_vectors, strict=True):
            dense = ranking(turn_vectors @ vector)
            query = tokens(question.text)
            sparse = ranking(index_bm25.get_scores(query)) if query else []
            rankings = {"dense": dense, "bm25": sparse, "rrf": rrf([sparse, dense], depth)}
            for name, rows in rankings.items():
                ranked_ids = [conv.ids[row] for row in rows[: max(KS)]]
                for k in KS:
                    totals[name][k] += recall(ranked_ids, question.evidence, k)
    means = {name: {k: v / len(questions) for k, v in row.items()} for name, row in totals.items()}
    return means, embed_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a locomo10.json-style file"
    )
    parser.add_argument(
        "--model", type=Path, help="a model2vec directory (default: the shipped one)"
    )
    parser.add_argument("--embedder", default="m2v-minilm", help="registered embedder name")
    parser.add_argument("--depth", type=int, default=50, help="top turns of each list fused by RRF")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    if not args.data.exists():
        print(
            f"LoCoMo data not found at {args.data}; nothing to measure (set "
            "CTXMILL_SHARED_DATA or pass --data)",
            file=sys.stderr,
        )
        return 0
    conversations, questions, normalized = load(args.data)
    embedder = StaticEmbedder(args.model) if args.model else get_embedder(args.embedder)
    means, embed_seconds = run(conversations, questions, embedder, args.depth)

    command = " ".join(["python benchmarks/locomo_dense.py", *sys.argv[1:]])
    if args.json:
        print(
            json.dumps(
                {
                    "questions": len(questions),
                    "evidence_ids_normalized": normalized,
                    "embedder": embedder.name,
                    "dim": embedder.dim,
                    "recall": {
                        name: {f"@{k}": round(v, 4) for k, v in row.items()}
                        for name, row in means.items()
                    },
                    "embed_seconds": round(embed_seconds, 2),
                    "command": command,
                }
            )
        )
        return 0
    source = args.model or embedder.name
    print(
        f"LoCoMo {args.data.name}: {len(conversations)} conversations, {len(questions)} questions "
        f"with evidence (category 5 skipped), {normalized} evidence ids normalized"
    )
    print(f"embedder: {source} ({embedder.dim} dims), embedding took {embed_seconds:.2f} s\n")
    print("| ranking | recall@1 | recall@5 | recall@10 | @10 vs BM25 |")
    print("|---|---|---|---|---|")
    base = means["bm25"][10]
    labels = {
        "bm25": "BM25 (bm25s)",
        "dense": "dense (static model)",
        "rrf": f"RRF(BM25, dense), k={RRF_K}, top {args.depth} each",
    }
    for name in ("bm25", "dense", "rrf"):
        row = means[name]
        print(
            f"| {labels[name]} | {row[1]:.3f} | {row[5]:.3f} | {row[10]:.3f} | "
            f"{row[10] / base:.2f} |"
        )
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
