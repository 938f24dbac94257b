"""A backend with no model behind it, for tests, demos and debugging prompts without a key.

Replies come from a queue (``enqueue``) or from a function of the request; with neither, the last
user message is echoed back.  Errors can be queued too, to exercise retry and budget paths.  Every
request is kept in ``.calls``.  Token counts are deterministic (characters / 3.5, rounded up), so
tests can assert exact budgets.

    fake = FakeBackend(["first answer"])
    fake.enqueue(RateLimited("slow down", retry_after=0), "second answer")
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ctxmill.llm.base import CHARS_PER_TOKEN, Backend, Completion, Message, estimate_tokens

Reply = str | Completion | BaseException
ReplyFunction = Callable[[list[Message], str | None], str]


@dataclass(frozen=True)
class FakeCall:
    """One request the fake received."""

    messages: list[Message]
    system: str | None
    max_tokens: int
    temperature: float | None

    @property
    def prompt(self) -> str:
        """The last user message, which is what most tests want to look at."""
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else ""


class FakeBackend(Backend):
    __test__ = False  # not a test class, whatever pytest thinks of the name
    name = "fake"

    def __init__(
        self,
        replies: Iterable[Reply] | ReplyFunction | None = None,
        *,
        model: str = "fake",
        usd_per_million_tokens: float | None = None,
    ) -> None:
        self.model = model
        self.calls: list[FakeCall] = []
        self._queue: deque[Reply] = deque()
        self._function: ReplyFunction | None = None
        self._price = usd_per_million_tokens
        if callable(replies):
            self._function = replies
        elif replies is not None:
            self._queue.extend(replies)

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next calls with these, in order; an exception in the queue is raised."""
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        if self._price is None:
            return None
        return (input_tokens + output_tokens) * self._price / 1_000_000

    def complete(
        self,
        messages: list[Message],
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
    ) -> Completion:
        self.calls.append(FakeCall(list(messages), system, max_tokens, temperature))
        if self._queue:
            reply = self._queue.popleft()
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(reply, Completion):
                return reply
            text = reply
        elif self._function is not None:
            text = self._function(list(messages), system)
        else:
            text = self.calls[-1].prompt
        # Like a real model, never more than max_tokens of output.
        limit = int(max_tokens * CHARS_PER_TOKEN)
        if len(text) > limit:
            text = text[:limit]
        prompt = "\n".join(filter(None, [system, *(m.content for m in messages)]))
        input_tokens = estimate_tokens(prompt)
        output_tokens = estimate_tokens(text)
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=self.model,
            backend=self.name,
            duration_s=0.0,
            cost_usd=self.estimate_cost(input_tokens, output_tokens),
        )
