"""Claim coverage and precision on hand-written context.md texts."""

from __future__ import annotations

from ctxmill.bench.scoring import (
    FUZZY_THRESHOLD,
    Claim,
    claim_covered,
    content_words,
    coverage,
    precision,
    split_units,
    support,
    tag_matches,
    token_set_ratio,
)
from ctxmill.model import Tag

CONTEXT = """---
brief: Migrate session auth to OIDC
budget: 8000
tokens: 310
---
# Context for: Migrate session auth to OIDC

## Recent state

- Sessions are signed cookies issued by `auth/session.py` [topic:auth.md#L3-L6]
- Refresh tokens are rotated on every use [topic:auth.md#L8-L9]
  and the rotation is logged without the token itself

## Relevant history

1. A first attempt with library X was abandoned because refresh tokens leaked into the
   request logs [raw:5f1c2a#12]
2. The team chose Authlib instead [session:5f1c2a]

> user: do not log the Authorization header, ever [raw:5f1c2a#14]
> (said after the leak was found)

A paragraph with no tag about the migration plan.

```python
# a code block without a tag
```

## Unresolved threads

- Whether service accounts move too is open [raw:77aa01#3]

## Citations

- [raw:5f1c2a#12] library X abandoned because refresh tokens leaked into the request logs
- [raw:99ff00#1] a tag that only the citations list names
"""


def _units() -> list[tuple[str, list[str]]]:
    return [(u.section, u.tags) for u in split_units(CONTEXT)]


def test_units_are_items_paragraphs_and_quotes_outside_citations() -> None:
    units = split_units(CONTEXT)
    sections = {u.section for u in units}
    assert "citations" not in sections
    assert [u.tags for u in units if u.tags] == [
        ["[topic:auth.md#L3-L6]"],
        ["[topic:auth.md#L8-L9]"],
        ["[raw:5f1c2a#12]"],
        ["[session:5f1c2a]"],
        ["[raw:5f1c2a#14]"],
        ["[raw:77aa01#3]"],
    ]
    rotated = next(u for u in units if "[topic:auth.md#L8-L9]" in u.tags)
    assert "without the token itself" in rotated.text  # continuation line stays with its item
    leak = next(u for u in units if "[raw:5f1c2a#12]" in u.tags)
    assert leak.section == "relevant history"
    assert "request logs" in leak.plain and "[raw" not in leak.plain
    quote = next(u for u in units if "[raw:5f1c2a#14]" in u.tags)
    assert "said after the leak was found" in quote.text


def test_front_matter_and_headings_are_not_units() -> None:
    texts = " ".join(u.text for u in split_units(CONTEXT))
    assert "budget: 8000" not in texts
    assert "Context for:" not in texts


def test_nested_items_and_indented_blocks_belong_to_their_item() -> None:
    md = "## History\n\n- parent [raw:a#1]\n  - child names the keyword\n\n    more under it\n- next\n"
    units = split_units(md)
    assert len(units) == 2
    assert "keyword" in units[0].text and "more under it" in units[0].text
    assert units[1].text == "next"


def test_keyword_claim_needs_a_matching_tag_and_every_keyword() -> None:
    claim = Claim("c1", "library X leaked refresh tokens", ["raw:5f1c"], ["refresh token", "LOGS"])
    result = claim_covered(claim, split_units(CONTEXT))
    assert result.covered and result.unit is not None
    wrong_source = Claim("c2", "same", ["raw:77aa"], ["refresh token"])
    assert not claim_covered(wrong_source, split_units(CONTEXT)).covered
    missing_keyword = Claim("c3", "same", ["raw:5f1c"], ["refresh token", "OIDC provider"])
    assert not claim_covered(missing_keyword, split_units(CONTEXT)).covered


def test_a_claim_is_not_covered_by_the_citations_list() -> None:
    claim = Claim("c1", "x", ["raw:99ff00"], ["tag that only the citations list names"])
    assert not claim_covered(claim, split_units(CONTEXT)).covered


def test_keywords_do_not_match_inside_tags() -> None:
    claim = Claim("c1", "x", ["raw:5f1c"], ["5f1c2a"])
    assert not claim_covered(claim, split_units(CONTEXT)).covered


def test_claim_without_keywords_uses_the_fuzzy_threshold() -> None:
    close = Claim(
        "c1",
        "A first attempt with library X was abandoned because refresh tokens leaked into logs",
        ["raw:5f1c"],
    )
    result = claim_covered(close, split_units(CONTEXT))
    assert result.covered
    assert result.best_similarity is not None and result.best_similarity >= FUZZY_THRESHOLD
    far = Claim("c2", "Password hashing moved from bcrypt to argon2id last year", ["raw:5f1c"])
    missed = claim_covered(far, split_units(CONTEXT))
    assert not missed.covered
    assert missed.best_similarity is not None and missed.best_similarity < FUZZY_THRESHOLD


def test_coverage_keeps_claim_order() -> None:
    claims = [
        Claim("a", "x", ["topic:auth.md"], ["signed cookies"]),
        Claim("b", "x", ["session:"], ["Keycloak"]),
        Claim("c", "x", ["raw:77aa01"], ["service accounts"]),
    ]
    assert [(r.id, r.covered) for r in coverage(claims, CONTEXT)] == [
        ("a", True),
        ("b", False),
        ("c", True),
    ]


def test_tag_prefix_matching() -> None:
    assert tag_matches("[raw:5f1c2a#12]", "raw:5f1c")
    assert tag_matches("[raw:5f1c2a#12]", "[raw:5f1c2a#12]")
    assert tag_matches("[topic:auth.md#L3-L6]", "topic:auth.md")
    assert not tag_matches("[topic:auth.md#L3-L6]", "topic:deploy.md")
    assert not tag_matches("[session:5f1c2a]", "raw:5f1c")


def test_token_set_ratio_bounds() -> None:
    assert token_set_ratio("refresh tokens leaked", "the refresh tokens leaked into logs") == 1.0
    assert token_set_ratio("", "anything") == 0.0
    assert token_set_ratio("alpha beta", "gamma delta") < 0.5
    assert content_words("The bot's replies, and the API") == ["bot's", "replies", "api"]


def test_precision_counts_resolved_and_supported_units() -> None:
    spans = {
        "[topic:auth.md#L3-L6]": "Sessions are signed cookies issued by auth/session.py",
        "[topic:auth.md#L8-L9]": "Refresh tokens are rotated on every use; rotation is logged "
        "without the token itself",
        "[raw:5f1c2a#12]": "We abandoned library X: refresh tokens leaked into the request logs",
        "[session:5f1c2a]": "Decided: Authlib instead of library X",
        "[raw:5f1c2a#14]": "do not log the Authorization header, ever",
        # [raw:77aa01#3] resolves to nothing
    }

    def resolve(tag: Tag) -> str | None:
        return spans.get(str(tag))

    result = precision(CONTEXT, resolve)
    assert result.tagged == 6
    assert result.unresolved == ["[raw:77aa01#3]"]
    # supported: both topic items, and the first-attempt item (7 of its 9 content words are the
    # span's). Not supported: "The team chose Authlib instead" paraphrases its summary (2 of 4
    # words), the quote adds "user: … (said after the leak was found)" (4 of 8), and the
    # unresolved tag.
    assert result.supported == 3
    assert result.unsupported == [18, 20, 31]
    assert result.value == 3 / 6


def test_support_is_the_share_of_unit_words_in_the_spans() -> None:
    assert support("refresh tokens leaked [raw:a#1]", ["the refresh tokens leaked"]) == 1.0
    assert support("refresh tokens leaked", ["nothing alike"]) == 0.0
    assert support("[raw:a#1]", []) == 1.0
