"""Secret redaction: every kind is found, ordinary text is left alone, JSON stays JSON, and a
second pass changes nothing.

Test secrets are assembled from pieces at run time so that no literal in this file looks like a
live credential to a scanner.
"""

from __future__ import annotations

import base64
import json
import random
import string

import pytest
from conftest import shared_data

from ctxmill import redact as r
from ctxmill.redact import Finding, find_secrets, redact, shannon_entropy

ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM, seed: int = 7) -> str:
    rng = random.Random(seed * 1000 + n)
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


AWS_ID = "AK" + "IA" + rand(16, string.ascii_uppercase + string.digits)
AWS_TEMP_ID = "AS" + "IA" + rand(16, string.ascii_uppercase + string.digits, seed=8)
AWS_SECRET = rand(40, ALNUM + "/+")
GH_CLASSIC = "gh" + "p_" + rand(36)
GH_FINE = "github" + "_pat_" + rand(22) + "_" + rand(59)
ANTHROPIC = "sk-" + "ant-" + "api03-" + rand(93, ALNUM + "-_") + "AA"
OPENAI = "sk-" + "proj-" + rand(48, ALNUM + "-_")
OPENAI_LEGACY = "sk-" + rand(48)
SLACK = "xox" + "b-" + "1234567890" + "-" + "9876543210" + "-" + rand(24)
WEBHOOK_PATH = "T" + rand(8).upper() + "/B" + rand(8).upper() + "/" + rand(24)
GOOGLE = "AI" + "za" + rand(35, ALNUM + "-_")
STRIPE = "sk" + "_live_" + rand(24)
STRIPE_RESTRICTED = "rk" + "_live_" + rand(24)
JWT_TOKEN = ".".join(
    [b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "1234567890", "iat": 1}), rand(43)]
)
PEM_BODY = "\n".join(rand(64, ALNUM + "+/", seed=i) for i in range(5)) + "\n" + rand(20) + "=="
PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\n" + PEM_BODY + "\n-----END " + "RSA PRIVATE KEY-----"
PASSWORD = "Tr0ub4dor" + "&3-xQ9z" + "K!v2"

# (kind, text, the secret that must disappear)
CASES = [
    (r.AWS_ACCESS_KEY, f"export AWS_ACCESS_KEY_ID={AWS_ID}", AWS_ID),
    (r.AWS_ACCESS_KEY, f"creds: {AWS_TEMP_ID} (temporary)", AWS_TEMP_ID),
    (r.AWS_SECRET_KEY, f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    (r.AWS_SECRET_KEY, f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"', AWS_SECRET),
    (r.GITHUB_TOKEN, f"git push https://{GH_CLASSIC}@github.com/o/r", GH_CLASSIC),
    (r.GITHUB_TOKEN, f"GH_TOKEN {GH_FINE} done", GH_FINE),
    *(
        (r.GITHUB_TOKEN, f"{p}{GH_CLASSIC[4:]}", f"{p}{GH_CLASSIC[4:]}")
        for p in ("gh" + "o_", "gh" + "u_", "gh" + "s_", "gh" + "r_")
    ),
    (r.ANTHROPIC_KEY, f"ANTHROPIC_API_KEY {ANTHROPIC}", ANTHROPIC),
    (r.OPENAI_KEY, f"client = OpenAI(api_key='{OPENAI}')", OPENAI),
    (r.OPENAI_KEY, f"key {OPENAI_LEGACY}.", OPENAI_LEGACY),
    (r.SLACK_TOKEN, f"SLACK_BOT {SLACK}", SLACK),
    (r.SLACK_WEBHOOK, f"curl https://hooks.slack.com/services/{WEBHOOK_PATH} -d x", WEBHOOK_PATH),
    (r.GOOGLE_API_KEY, f"maps?key={GOOGLE}&q=x", GOOGLE),
    (r.STRIPE_KEY, f"stripe.api_key_live {STRIPE}", STRIPE),
    (r.STRIPE_KEY, f"({STRIPE_RESTRICTED})", STRIPE_RESTRICTED),
    (r.PRIVATE_KEY, f"id_rsa:\n{PEM}\nend", PEM_BODY),
    (r.JWT, f"Authorization: Bearer {JWT_TOKEN}", JWT_TOKEN),
    (r.URL_PASSWORD, f"DATABASE_URL=postgres://app:{PASSWORD}@db.internal:5432/x", PASSWORD),
    (r.SECRET_ASSIGNMENT, f'password = "{PASSWORD}"', PASSWORD),
    (r.SECRET_ASSIGNMENT, f"  client_secret: {PASSWORD}", PASSWORD),
    (r.SECRET_ASSIGNMENT, f'{{"SECRET": "{PASSWORD}"}}', PASSWORD),
    (r.SECRET_ASSIGNMENT, f'{{"api_key": "{PASSWORD}"}}', PASSWORD),
    (r.SECRET_ASSIGNMENT, f"DEPLOY_TOKEN={PASSWORD}", PASSWORD),
    (r.SECRET_ASSIGNMENT, f"SECRET_KEY = 'django-insecure-{PASSWORD}'", PASSWORD),
    (r.SECRET_ASSIGNMENT, f"const apiKey = '{PASSWORD}';", PASSWORD),
    (r.SECRET_ASSIGNMENT, f"PRIVATE_KEY := `{PASSWORD}`", PASSWORD),
]


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_every_kind_is_found_and_replaced(kind: str, text: str, secret: str) -> None:
    findings = find_secrets(text)
    assert [f.kind for f in findings] == [kind]
    out, n = redact(text)
    assert n == 1
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out


def test_finding_spans_the_secret_exactly() -> None:
    text = f"é → 🔑 pw: postgres://bob:{PASSWORD}@host and {GH_CLASSIC} end"
    spans = [text[f.start : f.end] for f in find_secrets(text)]
    assert spans == [PASSWORD, GH_CLASSIC]


def test_url_keeps_user_and_host() -> None:
    out, _ = redact(f"mysql://root:{PASSWORD}@127.0.0.1/db")
    assert out == "mysql://root:[REDACTED:url-password]@127.0.0.1/db"


def test_two_secrets_on_a_line_and_specific_kind_wins_over_assignment() -> None:
    text = f'token = "{JWT_TOKEN}" and password="{PASSWORD}"'
    assert [f.kind for f in find_secrets(text)] == [r.JWT, r.SECRET_ASSIGNMENT]


def test_private_key_with_json_escaped_newlines() -> None:
    line = json.dumps({"type": "tool_result", "content": f"cat key.pem\n{PEM}\n$ ls"})
    assert "\\n" in line and "\n" not in line  # the newlines are escapes inside one JSON string
    out, n = redact(line)
    assert n == 1
    assert json.loads(out)["content"] == "cat key.pem\n[REDACTED:private-key]\n$ ls"


def test_private_key_inside_doubly_encoded_json() -> None:
    inner = json.dumps({"stdout": PEM})
    line = json.dumps({"content": inner})  # JSON in a JSON string: newlines become \\n
    out, n = redact(line)
    assert n == 1
    assert json.loads(json.loads(out)["content"])["stdout"] == "[REDACTED:private-key]"


def test_truncated_private_key_is_still_redacted() -> None:
    cut = PEM[: PEM.index("-----END")] + "... (output truncated)"
    out, n = redact(cut)
    assert n == 1
    assert PEM_BODY.splitlines()[2] not in out


def test_secret_after_json_escaped_newline() -> None:
    # an .env file read by a tool: each key starts right after a \n escape
    line = json.dumps({"content": f"A=1\n{GH_CLASSIC}\nSECRET_TOKEN={PASSWORD}\n"})
    out, n = redact(line)
    assert n == 2
    assert json.loads(out)["content"] == (
        "A=1\n[REDACTED:github-token]\nSECRET_TOKEN=[REDACTED:secret-assignment]\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "session 123e4567-e89b-12d3-a456-426614174000 resumed",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)",
        '"data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"',
        "token = get_token()",
        "token = self.tokenizer.encode_batch",
        'password = os.environ["DB_PASSWORD"]',
        "api_key: str = Field(default=None)",
        '"usage": {"input_tokens": 1234, "cache_read_input_tokens": 98765}',
        "max_tokens=4096, secret_name=None",
        "secret: ${{ secrets.DEPLOY_KEY }}",
        "API_KEY=<your-api-key-here>",
        "password: changeme",
        'token = "xxxxxxxxxxxxxxxxxxxx"',
        "the token: authentication happens later",
        "pip install sk-learn-compatible-tools; task-1234; risk-assessment",
        "see http://localhost:8080/@scope/pkg and git@github.com:org/repo.git",
        "postgres://user:password@localhost/db",
        "ssh://git@github.com:22/org/repo",
        "xox is a game; sk- prefix; ghp_ prefix; AKIA prefix; eyJ prefix",
        "SECRET_KEY = env('DJANGO_SECRET_KEY')",
        "accessToken = response.data.accessToken",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "phoenix_live_view sg-0a1b2c3d4e5f keyword",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert find_secrets(text) == []
    assert redact(text) == (text, 0)


def test_redacted_json_lines_stay_valid_json() -> None:
    for kind, text, secret in CASES:
        record = {"message": {"content": [{"type": "text", "text": f'say "{text}"\n\\done'}]}}
        line = json.dumps(record)
        out, n = redact(line)
        assert n >= 1, kind
        decoded = json.loads(out)  # raises if a quote or an escape was broken
        assert secret not in json.dumps(decoded), kind


def test_redaction_is_idempotent() -> None:
    everything = "\n".join(text for _, text, _ in CASES)
    once, n = redact(everything)
    assert n == len(CASES)
    assert redact(once) == (once, 0)
    line = json.dumps({"t": everything})
    once_json, _ = redact(line)
    assert redact(once_json) == (once_json, 0)


def test_bad_input_does_not_crash() -> None:
    text = "\ud800 lone surrogate then " + GH_CLASSIC + " \x00\x01 bytes"
    out, n = redact(text)
    assert n == 1 and GH_CLASSIC not in out
    assert redact("") == ("", 0)
    assert redact("short") == ("short", 0)


def test_bytes_are_redacted_as_their_text_is() -> None:
    lines = [json.dumps({"type": "user", "text": text}) for _, text, _ in CASES]
    data = ("\n".join(lines) + "\n→ done\n").encode()
    out, n = r.redact_utf8(data)
    expected, count = redact(data.decode())
    assert (out, n) == (expected.encode(), count) and n >= len(CASES)
    for _, _, secret in CASES:
        assert secret.encode() not in out
    # Bad UTF-8 comes back as U+FFFD, as a lenient decode would give it.
    damaged = b"\xff\xfe token: " + STRIPE.encode() + b" \xc3"
    out, n = r.redact_utf8(damaged)
    assert n == 1 and out == redact(damaged.decode("utf-8", "replace"))[0].encode()
    clean = b"nothing secret here, just tokens and keys"
    assert r.redact_utf8(clean) == (clean, 0)


def test_entropy_threshold_decides_assignments() -> None:
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0
    low = "password = 'abababababababab'"  # 16 chars, 1 bit per char
    assert find_secrets(low) == []
    assert find_secrets(f"password = '{PASSWORD}'") == [
        Finding(r.SECRET_ASSIGNMENT, 12, 12 + len(PASSWORD))
    ]


def test_real_transcripts_hold_no_false_positives() -> None:
    root = shared_data("claude-code")
    lines = [line for p in sorted(root.rglob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(lines) > 1000
    hits = [(line[f.start - 30 : f.end + 10], f.kind) for line in lines for f in find_secrets(line)]
    assert hits == []
