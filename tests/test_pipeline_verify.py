"""The model step: claims may only cite excerpt ids they were given, and each claim is checked
against what it cites.  Driven by the fake backend, scripted per test."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pipeline_build import AS_OF, OIDC, items, make_parcel

from ctxmill.config import Config
from ctxmill.ingest import ingest
from ctxmill.llm import BackendTimeout, FakeBackend, Message
from ctxmill.pipeline import build_context
from ctxmill.pipeline.verify import parse_claims, support_problem

BRIEF = "Migrate session auth to OIDC"


@pytest.fixture
def parcel(tmp_path: Path) -> Config:
    cfg = make_parcel(tmp_path)
    ingest(cfg)
    return cfg


def excerpt_ids(prompt: str) -> dict[str, str]:
    """id -> text of every excerpt the model was shown."""
    return dict(re.findall(r"^(E\d+) \[[^\]]*\] (.*)$", prompt, re.M))


def first_id(prompt: str, needle: str) -> str:
    return next(i for i, text in excerpt_ids(prompt).items() if needle in text)


def reply(claims: list[dict[str, object]]) -> str:
    return "Here you go:\n```json\n" + json.dumps({"claims": claims}) + "\n```"


def scripted(make: Callable[[str], str]) -> FakeBackend:
    def answer(messages: list[Message], system: str | None) -> str:
        assert system and "JSON" in system
        return make(messages[-1].content)

    return FakeBackend(answer)


def test_supported_claims_replace_their_excerpts_with_the_systems_tags(parcel: Config) -> None:
    def make(prompt: str) -> str:
        leak = first_id(prompt, "refresh tokens leaked into the request logs")
        return reply(
            [
                {
                    "section": "history",
                    "text": "The oidclib OIDC attempt was reverted: refresh tokens leaked into the request logs.",
                    "cite": [leak],
                }
            ]
        )

    result = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=scripted(make))
    history = items(result.text, "## Relevant history")
    claim = next(i for i in history if i.startswith("- The oidclib OIDC attempt was reverted"))
    assert claim.endswith(f"[session:{OIDC}]")  # the tag came from the excerpt, not the model
    assert result.record["verification"]["kept"] == 1
    assert result.record["backend"] == "fake:fake"
    assert not result.record["verification"]["fallback"]


def test_claim_citing_an_id_it_was_not_given_is_dropped(parcel: Config) -> None:
    def make(prompt: str) -> str:
        good = first_id(prompt, "Session TTL is 12h")
        return reply(
            [
                {"section": "recent_state", "text": "Session TTL is 12h.", "cite": [good]},
                {
                    "section": "history",
                    "text": "OIDC was tried in 2019 with Okta.",
                    "cite": ["E999"],
                },
                {"section": "history", "text": "Sessions moved to Memcached.", "cite": []},
            ]
        )

    result = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=scripted(make))
    report = result.record["verification"]
    assert report["kept"] == 1 and len(report["dropped"]) == 2
    assert any("E999" in d for d in report["dropped"])
    assert "Okta" not in result.text and "Memcached" not in result.text
    assert any("2 model claims dropped" in n for n in result.notes)


def test_claim_with_an_invented_number_is_dropped_or_marked(parcel: Config) -> None:
    def make(prompt: str) -> str:
        ttl = first_id(prompt, "Session TTL is 12h")
        return reply([{"section": "recent_state", "text": "Session TTL is 48h.", "cite": [ttl]}])

    dropped = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=scripted(make))
    assert "48h" not in dropped.text
    assert dropped.record["verification"]["dropped"] == [
        "claim 1: has a number that is not in the cited text"
    ]
    assert any("Session TTL is 12h" in i for i in items(dropped.text, "## Recent state"))

    marked = build_context(
        parcel, BRIEF, as_of=AS_OF, budget=6000, backend=scripted(make), keep_unverified=True
    )
    line = next(i for i in items(marked.text, "## Recent state") if "48h" in i)
    assert "(unverified)" in line and "[topic:auth.md#L" in line
    assert marked.record["verification"]["unverified"] == 1


def test_timeout_falls_back_to_the_extractive_context(parcel: Config) -> None:
    extractive = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000)
    fake = FakeBackend([BackendTimeout("fake: no answer within 120s")])
    result = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=fake)
    assert len(fake.calls) == 1
    assert "BackendTimeout" in result.record["verification"]["fallback"]
    assert any("context is extractive" in n for n in result.notes)
    body = result.text.split("\n---\n", 1)[1]
    assert body == extractive.text.split("\n---\n", 1)[1]


def test_an_answer_that_is_not_json_falls_back(parcel: Config) -> None:
    fake = FakeBackend(["Sorry, I cannot help with that."])
    result = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=fake)
    assert "not the JSON" in result.record["verification"]["fallback"]
    assert items(result.text, "## Recent state")


def test_a_model_cannot_write_a_tag(parcel: Config) -> None:
    def make(prompt: str) -> str:
        ttl = first_id(prompt, "Session TTL is 12h")
        return reply(
            [
                {
                    "section": "recent_state",
                    "text": "Session TTL is 12h [session:forged].",
                    "cite": [ttl],
                }
            ]
        )

    result = build_context(parcel, BRIEF, as_of=AS_OF, budget=6000, backend=scripted(make))
    assert "[session:forged]" not in result.text
    assert "[session:forged]" not in result.citations


def test_support_check() -> None:
    cited = ["Session TTL is 12h: SESSION_TTL = 12 * 3600 in parcel/settings.py."]
    assert support_problem("The session TTL is 12h.", cited) is None
    assert "number" in (support_problem("The session TTL is 24h.", cited) or "")
    assert "identifier" in (support_problem("SESSION_LIFETIME is 12h.", cited) or "")
    assert "words" in (support_problem("Tokens rotate weekly via a cron job.", cited) or "")


def test_parse_claims() -> None:
    assert parse_claims('{"claims": [{"text": "a", "cite": ["E1"]}]}') == [
        {"text": "a", "cite": ["E1"]}
    ]
    assert parse_claims("no json here") is None
    assert parse_claims('{"claims": "not a list"}') is None
    assert parse_claims("{broken") is None
