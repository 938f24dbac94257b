"""The LoCoMo benchmark: loading and evidence repair, transcripts the real parser reads, baselines,
scoring, and an end-to-end run on a small conversation written here in LoCoMo's layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_data

from ctxmill import sources
from ctxmill.bench.locomo import (
    BM25Turns,
    EvidenceStats,
    LocomoSettings,
    load_locomo,
    neighbour_rank,
    normalise_evidence,
    pack,
    parse_session_date,
    recall,
    recency_rank,
    run_locomo,
    summarise,
    turn_line,
    write_transcripts,
)


def _conversation() -> dict[str, Any]:
    s1 = [
        ("Ana", "D1:1", "Hi Ben! I adopted a grey cat called Pixel last weekend."),
        ("Ben", "D1:2", "Congrats! I started learning the cello in January."),
        ("Ana", "D1:3", "Pixel already knocked my coffee off the desk twice."),
    ]
    s2 = [
        ("Ben", "D2:1", "I played my first cello recital at the community hall yesterday."),
        ("Ana", "D2:2", "Amazing. I am moving to Lisbon in September for a new job."),
        ("Ben", "D2:3", "Lisbon is lovely; my sister studied architecture there."),
    ]

    def turns(rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        return [{"speaker": s, "dia_id": d, "text": t} for s, d, t in rows]

    s2_turns = turns(s2)
    s2_turns[0]["img_url"] = ["http://example.invalid/cello.jpg"]
    s2_turns[0]["blip_caption"] = "a photo of a cello on a stage"
    return {
        "sample_id": "conv-t1",
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": turns(s1),
            "session_2_date_time": "10:05 am on 2 June, 2023",
            "session_2": s2_turns,
            "session_3_date_time": "9:00 am on 1 July, 2023",  # a date without a session
        },
        "qa": [
            {
                "question": "What is the name of Ana's cat?",
                "answer": "Pixel",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "Where is Ana moving in September?",
                "answer": "Lisbon",
                "evidence": ["D02:2"],
                "category": 4,
            },
            {
                "question": "When did Ben play his first cello recital?",
                "answer": "1 June 2023",
                "evidence": ["D2:1; D1:2"],
                "category": 2,
            },
            {
                "question": "What did Ben's sister study?",
                "answer": "architecture",
                "evidence": ["D:2:3", "D"],
                "category": 1,
            },
            {
                "question": "What did Ana's dog knock off the desk?",
                "evidence": ["D1:3"],
                "category": 5,
                "adversarial_answer": "coffee",
            },
            {"question": "Which bands does Ben like?", "evidence": [], "category": 3},
            {"question": "Unknown turn", "evidence": ["D9:9"], "category": 4},
        ],
    }


@pytest.fixture
def locomo_file(tmp_path: Path) -> Path:
    path = tmp_path / "locomo_small.json"
    path.write_text(json.dumps([_conversation()]), encoding="utf-8")
    return path


def test_session_dates() -> None:
    when = parse_session_date("1:56 pm on 8 May, 2023")
    assert (when.year, when.month, when.day, when.hour, when.minute) == (2023, 5, 8, 13, 56)
    assert parse_session_date("12:04 am on 1 January, 2024").hour == 0


def test_evidence_is_normalised_and_counted() -> None:
    stats = EvidenceStats()
    assert normalise_evidence(["D8:6; D9:17", "D:11:26", "D30:05", "D", "D1:1"], stats) == [
        "D8:6",
        "D9:17",
        "D11:26",
        "D30:5",
        "D1:1",
    ]
    assert (stats.split, stats.normalised, stats.dropped_malformed) == (1, 2, 1)


def test_load_ignores_dates_without_sessions_and_unscorable_questions(locomo_file: Path) -> None:
    conversations, stats = load_locomo(locomo_file)
    (conv,) = conversations
    assert [n for n, _, _ in conv.sessions] == [1, 2]
    assert stats.dates_without_session == 1
    assert stats.questions_without_evidence == 2  # empty evidence; an id naming no turn
    assert stats.dropped_unknown == 1
    assert [q.evidence for q in conv.questions] == [
        ["D1:1"],
        ["D2:2"],
        ["D2:1", "D1:2"],
        ["D2:3"],
        ["D1:3"],
    ]
    cello = next(t for t in conv.turns if t.dia_id == "D2:1")
    assert "a photo of a cello on a stage" in cello.text


def test_transcripts_parse_with_the_claude_code_parser_and_tags_map_back(
    locomo_file: Path, tmp_path: Path
) -> None:
    (conv,), _ = load_locomo(locomo_file)
    tag_map = write_transcripts(conv, tmp_path / "raw")
    path = tmp_path / "raw" / "conv-t1" / "conv-t1-s2.jsonl"
    assert sources.detect(path) == "claude-code"
    (session,) = sources.parse_transcript("claude-code", path).sessions
    assert session.id == "conv-t1-s2"
    assert session.project == "conv-t1"
    assert [t.role for t in session.turns] == ["assistant", "user", "assistant"]
    for turn in session.turns:
        dia = tag_map[(session.id, turn.n)]
        original = next(t for t in conv.turns if t.dia_id == dia)
        assert turn.text.startswith(f"{original.speaker}: {original.text[:20]}")
    assert session.started is not None and session.started.startswith("2023-06-02T10:05")


def test_bm25_and_recency_rankings(locomo_file: Path) -> None:
    (conv,), _ = load_locomo(locomo_file)
    bm25 = BM25Turns(conv.turns)
    assert bm25.rank("What is the name of Ana's cat?")[0] == "D1:1"
    assert bm25.rank("cello recital")[0] == "D2:1"
    assert bm25.rank("zzz qqq") == []
    assert recency_rank(conv.turns)[:2] == ["D2:3", "D2:2"]


def test_packing_respects_the_budget(locomo_file: Path) -> None:
    (conv,), _ = load_locomo(locomo_file)
    by_dia = {t.dia_id: t for t in conv.turns}

    def words(text: str) -> int:
        return len(text.split())

    ranked = ["D2:1", "D1:1", "D2:2", "D1:3"]
    first = words(turn_line(by_dia["D2:1"])) + 1
    assert pack(ranked, by_dia, first, words) == ["D2:1"]
    assert pack(ranked, by_dia, 10_000, words) == ranked
    assert pack(ranked, by_dia, 3, words) == []


def test_recall_and_summary_per_category() -> None:
    assert recall(["D1:1", "D1:2"], ["D1:2", "D3:3"]) == 0.5
    rows = [
        {"category": 4, "evidence": ["a"], "ctxmill_ranked": ["a"], "ctxmill_cited": ["a"]},
        {"category": 2, "evidence": ["b", "c"], "ctxmill_ranked": ["x", "b"], "ctxmill_cited": []},
        {"category": 5, "evidence": ["d"], "ctxmill_ranked": ["d"], "ctxmill_cited": ["d"]},
    ]
    summary = summarise(rows, "ctxmill")
    assert summary["questions"] == 2
    assert summary["recall@1"] == 0.5
    assert summary["recall@5"] == 0.75
    assert summary["in_context_recall"] == 0.5
    assert summary["per_category"]["2"]["in_context_recall"] == 0.0
    assert summary["category_5"]["recall@1"] == 1.0


def test_end_to_end_with_packed_search(locomo_file: Path) -> None:
    run = run_locomo(locomo_file, LocomoSettings(budget=60, context="pack", embedder="hash"))
    payload = run.as_json()
    assert payload["tag_map_repairs"] == 0
    questions = payload["questions"]
    assert len(questions) == 5
    first = questions[0]
    assert set(first) >= {"sample_id", "question", "category", "evidence", "retrieved", "cited"}
    assert first["retrieved"][0] == "D1:1"  # the cat's name: keyword and vector search agree
    assert all(q["context_tokens"] <= 60 for q in questions)
    summary = payload["summary"]
    assert summary["questions"] == 4
    assert summary["ctxmill"]["category_5"]["questions"] == 1
    assert set(payload["baselines"]) == {"bm25", "recency"}
    assert payload["evidence"]["normalised"] == 2


def test_end_to_end_with_built_contexts(locomo_file: Path) -> None:
    pytest.importorskip("ctxmill.pipeline", exc_type=ImportError)
    run = run_locomo(
        locomo_file,
        LocomoSettings(budget=1000, context="build", embedder="hash", limit_questions=2),
    )
    payload = run.as_json()
    assert [q["category"] for q in payload["questions"]] == [4, 4]
    for q in payload["questions"]:
        assert set(q["cited"]) <= {t for t in ("D1:1", "D1:2", "D1:3", "D2:1", "D2:2", "D2:3")}
        assert q["context_tokens"] <= 1000
    assert payload["summary"]["over_budget_contexts"] == 0


def test_the_real_locomo_file_loads_with_its_known_quirks() -> None:
    path = shared_data("locomo", "locomo7.json")
    conversations, stats = load_locomo(path)
    assert len(conversations) == 7
    assert stats.dates_without_session > 0  # conv-26 lists dates without sessions
    assert stats.split >= 1 and stats.normalised >= 1 and stats.dropped_malformed >= 1
    main = [q for c in conversations for q in c.questions if q.category != 5]
    assert 1000 <= len(main) <= 1035


def test_neighbour_rank_lifts_turns_next_to_matches(locomo_file: Path) -> None:
    (conv,), _ = load_locomo(locomo_file)
    scores = {"D1:1": 0.03, "D1:3": 0.02, "D2:1": 0.025}
    assert neighbour_rank(scores, conv.turns, 0.0) == ["D1:1", "D2:1", "D1:3"]
    ranked = neighbour_rank(scores, conv.turns, 0.5)
    # D1:2 sits between two matches and now outranks a lone match; D1:3 and D2:1 are in
    # different sessions, so they do not lift each other
    assert ranked.index("D1:2") < ranked.index("D2:1")
    assert ranked[0] == "D1:1"
    assert "D2:3" not in ranked  # no match next to it


def test_locomo_cli_json_shape(locomo_file: Path, tmp_path: Path) -> None:
    exe = shutil.which("ctxmill", path=str(Path(sys.executable).parent)) or "ctxmill"
    log = tmp_path / "log.jsonl"
    proc = subprocess.run(
        [
            exe,
            "bench",
            "locomo",
            str(locomo_file),
            "--json",
            "--budget",
            "80",
            "--context",
            "pack",
            "--embedder",
            "hash",
            "--log",
            str(log),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert {"questions", "summary", "baselines"} <= set(payload)
    for q in payload["questions"]:
        assert {"sample_id", "question", "category", "evidence", "retrieved", "cited"} <= set(q)
    assert payload["summary"]["budget"] == 80
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["kind"] == "locomo" and "questions" not in entry
    assert entry["summary"]["ctxmill"]["questions"] == 4


_FACTS = [
    ("Ana", "I adopted a grey cat called Pixel from the shelter on Elm Street."),
    ("Ben", "My sister finished her architecture degree in Lisbon this spring."),
    ("Ana", "I signed up for a pottery class that meets every Thursday evening."),
    ("Ben", "I sold my old motorbike and bought a cargo bike for the kids."),
    ("Ana", "My grandmother taught me to bake rye bread with caraway seeds."),
    ("Ben", "I am training for a half marathon along the river in October."),
    ("Ana", "We repainted the kitchen a pale green colour last weekend."),
    ("Ben", "I started volunteering at the food bank on Saturday mornings."),
]
_SMALL_TALK = [
    "How have you been lately?",
    "Pretty good, work has been busy but fine.",
    "The weather was lovely this week, wasn't it?",
    "It really was, we spent a lot of time outside.",
    "Did you watch anything good recently?",
    "Not much, mostly old comedies in the evenings.",
]


def _long_conversation() -> dict[str, Any]:
    """Eight sessions of small talk, each with one fact in the middle, and a question per fact."""
    conversation: dict[str, Any] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    qa = []
    for n, (speaker, fact) in enumerate(_FACTS, 1):
        turns = []
        for i, text in enumerate([*_SMALL_TALK[:3], fact, *_SMALL_TALK[3:]], 1):
            who = speaker if i == 4 else ("Ana" if i % 2 else "Ben")
            turns.append({"speaker": who, "dia_id": f"D{n}:{i}", "text": text})
        conversation[f"session_{n}_date_time"] = f"10:00 am on {n} March, 2023"
        conversation[f"session_{n}"] = turns
        topic = " ".join(fact.split()[2:6])
        question = f"What did {speaker} say about {topic}?"
        qa.append({"question": question, "evidence": [f"D{n}:4"], "category": 4, "answer": fact})
    return {"sample_id": "conv-t2", "conversation": conversation, "qa": qa}


def test_a_small_budget_build_spends_it_on_evidence(tmp_path: Path) -> None:
    """At a few hundred tokens the built context (front matter, five sections, citations) still
    holds the evidence for most questions: the layout is compact and each turn's best passage
    is what goes in."""
    pytest.importorskip("ctxmill.pipeline", exc_type=ImportError)
    path = tmp_path / "locomo_long.json"
    path.write_text(json.dumps([_long_conversation()]), encoding="utf-8")
    run = run_locomo(path, LocomoSettings(budget=450, context="build", embedder="hash"))
    payload = run.as_json()
    summary = payload["summary"]
    assert summary["questions"] == len(_FACTS)
    assert summary["over_budget_contexts"] == 0
    assert all(q["context_tokens"] <= 450 for q in payload["questions"])
    assert summary["ctxmill"]["in_context_recall"] >= 0.75, summary["ctxmill"]
    assert summary["ctxmill"]["in_context_recall"] >= summary["bm25"]["in_context_recall"]
