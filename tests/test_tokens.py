"""Token counting and truncation with the o200k encoding, and the estimate it falls back to."""

from __future__ import annotations

from ctxmill import tokens
from ctxmill.tokens import count_many, count_tokens, estimate_tokens, truncate_to_tokens

PROSE = (
    "The migration moved session auth to OIDC. The first attempt stored refresh tokens in "
    "logs, so it was abandoned.\nThe second attempt kept them in the vault.\n\n"
    "Open question: who rotates the signing key? Nobody owns it yet.\n"
)


def test_counts_are_o200k() -> None:
    assert tokens.TOKENIZER_NAME == "o200k_base"
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    # a special-token string counts as the text it is, never as one control token
    assert count_tokens("<|endoftext|>") > 1


def test_count_many_matches_one_by_one() -> None:
    texts = [PROSE, "", "def f(x):\n    return x * 2\n", "naïve café 🧠" * 20]
    assert count_many(texts) == [count_tokens(t) for t in texts]
    assert count_many([]) == []
    assert count_many(iter(["a b", "c"])) == [2, 1]


def test_truncate_keeps_short_text_whole() -> None:
    assert truncate_to_tokens(PROSE, 10_000) == PROSE
    assert truncate_to_tokens(PROSE, 0) == ""
    assert truncate_to_tokens("", 5) == ""


def test_truncate_prefers_a_line_or_sentence_end() -> None:
    limit = count_tokens(PROSE) - 3
    out = truncate_to_tokens(PROSE, limit)
    assert PROSE.startswith(out)
    assert count_tokens(out) <= limit
    assert out.endswith("key? ")  # the last sentence end in the final stretch

    lines = "".join(f"line {i} of the log\n" for i in range(20)) + "and a tail"
    out = truncate_to_tokens(lines, count_tokens(lines) - 1)
    assert out == "".join(f"line {i} of the log\n" for i in range(20))

    sentences = "word " * 30 + "and that is all. Then more"
    out = truncate_to_tokens(sentences, count_tokens(sentences) - 1)
    assert out == "word " * 30 + "and that is all. "


def test_truncate_without_a_boundary_cuts_at_a_token() -> None:
    text = "x" * 5000
    out = truncate_to_tokens(text, 7)
    assert count_tokens(out) == 7
    assert text.startswith(out)
    emoji = "🧠" * 50  # several tokens per character: the cut never splits one
    out = truncate_to_tokens(emoji, 5)
    assert set(out) <= {"🧠"} and count_tokens(out) <= 5


def test_estimate_and_an_encoding_that_cannot_load() -> None:
    assert estimate_tokens("abcdefg") == 2
    assert estimate_tokens("") == 0
    assert tokens._loads("no-such-encoding") is False
    assert tokens._loads(tokens.ENCODING) is True
    out = tokens._truncate_by_chars("one two three.\nfour five six seven eight nine ten", 10)
    assert out == "one two three.\nfour five six seven "[: len(out)] and len(out) <= 35
