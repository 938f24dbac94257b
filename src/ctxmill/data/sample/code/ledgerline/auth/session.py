"""Server-side sessions in Redis.

A session is an opaque random token in the ``ll_session`` cookie (or, for the mobile
app only, the legacy ``X-Session-Token`` header) that maps to a JSON blob in Redis
under ``sess:<token>``. Every session of a user is also listed in ``user_sess:<id>``
so that one call can revoke them all (logout everywhere, admin lock-out).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field

import redis
from fastapi import Depends, HTTPException, Request, status
from starlette.middleware.base import BaseHTTPMiddleware

from ledgerline import settings

log = logging.getLogger(__name__)

SESSION_COOKIE = settings.SESSION_COOKIE_NAME
LEGACY_TOKEN_HEADER = settings.LEGACY_TOKEN_HEADER


@dataclass(frozen=True)
class CurrentUser:
    id: int
    email: str
    org_id: int
    roles: tuple[str, ...] = field(default_factory=tuple)


class RedisSessionStore:
    def __init__(self, client: redis.Redis, ttl_seconds: int = settings.SESSION_TTL_SECONDS):
        self.client = client
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_url(cls, url: str = settings.REDIS_URL) -> RedisSessionStore:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def create(self, user: CurrentUser) -> str:
        token = secrets.token_urlsafe(32)
        pipe = self.client.pipeline()
        pipe.setex(f"sess:{token}", self.ttl_seconds, json.dumps(asdict(user)))
        pipe.sadd(f"user_sess:{user.id}", token)
        pipe.expire(f"user_sess:{user.id}", self.ttl_seconds)
        pipe.execute()
        return token

    def get(self, token: str) -> CurrentUser | None:
        raw = self.client.get(f"sess:{token}")
        if raw is None:
            return None
        data = json.loads(raw)
        data["roles"] = tuple(data.get("roles", ()))
        return CurrentUser(**data)

    def revoke(self, token: str) -> None:
        self.client.delete(f"sess:{token}")

    def revoke_all(self, user_id: int) -> int:
        tokens = self.client.smembers(f"user_sess:{user_id}")
        if tokens:
            self.client.delete(*(f"sess:{t}" for t in tokens))
        self.client.delete(f"user_sess:{user_id}")
        return len(tokens)


class SessionMiddleware(BaseHTTPMiddleware):
    """Resolves the session token to ``request.state.user`` (None when anonymous)."""

    async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        token = request.cookies.get(SESSION_COOKIE)
        if token is None and LEGACY_TOKEN_HEADER in request.headers:
            token = request.headers[LEGACY_TOKEN_HEADER]
            log.info("legacy session header used", extra={"path": request.url.path})
        store: RedisSessionStore = request.app.state.session_store
        request.state.session_token = token
        request.state.user = store.get(token) if token else None
        return await call_next(request)


def get_current_user(request: Request) -> CurrentUser:
    user = getattr(request.state, "user", None)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not signed in")
    return user


def require_role(role: str):  # type: ignore[no-untyped-def]
    def dependency(user: CurrentUser = Depends(get_current_user)) -> CurrentUser:
        if role not in user.roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs role {role}")
        return user

    return dependency
