"""Runtime settings, read once from the environment at import time.

Per-environment values live in deploy/values-*.yaml; local development reads .env
through docker compose. Never add a default for a secret.
"""

from __future__ import annotations

import os


def _bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes"}


ENV = os.environ.get("LEDGERLINE_ENV", "dev")  # dev | staging | prod

# --- database -------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://ledgerline@localhost/ledgerline")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
DB_MAX_OVERFLOW = int(os.environ.get("DB_MAX_OVERFLOW", "5"))

# --- sessions (see auth notes: server-side sessions, decided 2026-04-08) ---
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
SESSION_COOKIE_NAME = "ll_session"
SESSION_TTL_SECONDS = 12 * 60 * 60  # 12h; was 24h until April 2026
LEGACY_TOKEN_HEADER = "X-Session-Token"  # mobile app only; deprecation still open

# --- OIDC (not wired yet; see ledgerline/auth/oidc.py) ---------------------
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "")
OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "")
OIDC_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
OIDC_REDIRECT_PATH = "/auth/oidc/callback"

# --- logging ----------------------------------------------------------------
LOG_REQUEST_BODIES = _bool("LOG_REQUEST_BODIES", default=False)  # never true in prod

# --- payments -----------------------------------------------------------------
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
WEBHOOK_EVENTS_RETENTION_DAYS = 90

# --- background jobs (Postgres-backed queue, replaced Celery in June 2026) ------
WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "4"))
JOB_MAX_ATTEMPTS = 3
JOB_POLL_INTERVAL_SECONDS = 1.0
