"""Request logging for dev and staging.

Logs method, path, status and timing for every request. Request bodies are logged
only when LOG_REQUEST_BODIES is set (dev only), and always through redact().
Response bodies are never logged: that is how refresh tokens reached the request
logs in March 2026.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware

from ledgerline import settings

log = logging.getLogger("ledgerline.requests")

REDACTED = "[REDACTED]"
REDACTED_KEYS = frozenset({
    "password", "authorization", "cookie", "x-session-token",
    "access_token", "refresh_token", "id_token", "code", "code_verifier",
    "client_secret", "card_number", "cvc",
})


def redact(value: object) -> object:
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in REDACTED_KEYS else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class DebugLoggingMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        body_note = ""
        if settings.LOG_REQUEST_BODIES and request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            raw = await request.body()
            try:
                body_note = " body=" + json.dumps(redact(json.loads(raw or b"null")))
            except ValueError:
                body_note = f" body=<{len(raw)} bytes, not json>"
        response = await call_next(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        headers = redact({k: v for k, v in request.headers.items()})
        log.debug(
            "%s %s -> %s %.1fms headers=%s%s",
            request.method, request.url.path, response.status_code, elapsed_ms,
            json.dumps(headers), body_note,
        )
        return response
