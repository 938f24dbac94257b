"""Stand-ins for model services, for tests that drive the real SDK clients end to end.

``ScriptedServer`` is an HTTP server on 127.0.0.1 that speaks enough of the Anthropic Messages API
(``POST /v1/messages``) and the OpenAI Chat Completions API (``POST /v1/chat/completions``) for the
official SDKs to work against it.  A test queues the replies it wants (normal answers, 429 with
``retry-after``, 500, 401, a body that is not JSON, an answer slower than the client's timeout) and
afterwards reads what the client sent from ``.requests``.  With nothing queued it echoes the last
user message in the shape the path calls for.

``FakeClaude`` writes a small ``claude`` executable into a folder (put that folder first on PATH):
it records its argv and stdin and then behaves as told: prints a result object, an error result,
junk, exits non-zero with a message on stderr, or sleeps past the caller's timeout.

    with ScriptedServer() as server:
        server.enqueue(rate_limited(retry_after=0), anthropic_message("hello"))
        backend = AnthropicBackend(api_key="test-key", base_url=server.url)
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Wait this long before answering (cut short when the server stops)."""
    content_type: str = "application/json"


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased header names."""
    body: Any
    """The JSON body, or the raw text when it was not JSON."""


def anthropic_message(
    text: str, *, input_tokens: int = 12, output_tokens: int = 5, model: str = "claude-test"
) -> Reply:
    return Reply(
        body={
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )


def openai_chat(
    text: str, *, prompt_tokens: int = 12, completion_tokens: int = 5, model: str = "test-model"
) -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def error_reply(status: int, message: str, *, retry_after: float | None = None) -> Reply:
    """An error in the shape both APIs use (``{"error": {"type", "message"}}``)."""
    kinds = {401: "authentication_error", 429: "rate_limit_error", 500: "api_error"}
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    body = {"type": "error", "error": {"type": kinds.get(status, "error"), "message": message}}
    return Reply(status=status, body=body, headers=headers)


def rate_limited(retry_after: float | None = 0.0) -> Reply:
    return error_reply(429, "rate limit reached for this test", retry_after=retry_after)


def server_error() -> Reply:
    return error_reply(500, "internal failure for this test")


def unauthorized() -> Reply:
    return error_reply(401, "invalid x-api-key")


def malformed() -> Reply:
    """A 200 whose body is cut off mid-JSON, as a broken proxy might send."""
    return Reply(body=b'{"id": "msg_test", "content": [{"type": "te')


def slow(delay_s: float, reply: Reply | None = None) -> Reply:
    base = reply or Reply()
    return Reply(base.status, base.body, base.headers, delay_s, base.content_type)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner = self.server.owner
        reply = owner._next(self.path, body)
        with owner._lock:
            owner.requests.append(Recorded("POST", self.path, headers, body))
        if reply.delay_s and owner._stopping.wait(reply.delay_s):
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to report


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: ScriptedServer


class ScriptedServer:
    """An HTTP server on 127.0.0.1 that answers from a queue of :class:`Reply`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    def _next(self, path: str, body: Any) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return _echo(path, body)

    def close(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _echo(path: str, body: Any) -> Reply:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = f"echo: {users[-1] if users else ''}"
    if path == ANTHROPIC_PATH:
        return anthropic_message(text)
    if path == OPENAI_PATH:
        return openai_chat(text)
    return error_reply(404, f"no such endpoint: {path}")


_CLAUDE_SCRIPT = """#!{python}
# A stand-in for Claude Code's `claude -p --output-format json`, written by the test suite.
import json, os, pathlib, sys, time
here = pathlib.Path(__file__).resolve().parent
behaviour = json.loads((here / "behaviour.json").read_text())
prompt = sys.stdin.read()
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": prompt, "pid": os.getpid(),
        "cwd": os.getcwd(), "CLAUDECODE": os.environ.get("CLAUDECODE")}}) + "\\n")
mode = behaviour.get("mode", "ok")
if mode == "sleep":
    time.sleep(behaviour.get("sleep_s", 30))
if mode == "exit":
    sys.stderr.write(behaviour.get("stderr", ""))
    sys.exit(behaviour.get("code", 1))
if mode == "garbage":
    print("this is not json")
    sys.exit(0)
result = {{
    "type": "result",
    "subtype": behaviour.get("subtype", "success"),
    "is_error": mode == "error",
    "result": behaviour.get("result", "echo: " + prompt),
    "session_id": "00000000-0000-0000-0000-000000000000",
    "num_turns": 1,
    "duration_ms": 5,
    "total_cost_usd": behaviour.get("cost", 0.0125),
    "usage": behaviour.get("usage", {{"input_tokens": 40, "output_tokens": 7,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100}}),
    "modelUsage": {{behaviour.get("model", "claude-test-model"): {{}}}},
}}
print(json.dumps(result))
sys.exit(1 if mode == "error" else 0)
"""


class FakeClaude:
    """A ``claude`` executable in ``folder`` that records its calls and acts as configured."""

    def __init__(self, folder: Path, name: str = "claude") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / name
        self.path.write_text(_CLAUDE_SCRIPT.format(python=sys.executable), encoding="utf-8")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.behave(mode="ok")

    def behave(self, **behaviour: Any) -> None:
        """``mode``: ok | error | exit | garbage | sleep; plus result, subtype, usage, cost,
        model, stderr, code, sleep_s."""
        (self.folder / "behaviour.json").write_text(json.dumps(behaviour), encoding="utf-8")

    def calls(self) -> list[dict[str, Any]]:
        log = self.folder / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def path_with_me_first(self) -> str:
        return f"{self.folder}{os.pathsep}{os.environ.get('PATH', '')}"
