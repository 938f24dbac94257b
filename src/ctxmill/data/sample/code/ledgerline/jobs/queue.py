"""A small job queue in Postgres (replaced Celery + RabbitMQ in June 2026).

Workers claim one job at a time with SELECT ... FOR UPDATE SKIP LOCKED, so any
number of worker processes can poll the same table without double-claiming.
A job that raises is retried with backoff up to JOB_MAX_ATTEMPTS, then stays
'failed' (nothing alerts on that yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import text

from ledgerline import settings
from ledgerline.db.session import SessionLocal

HANDLERS: dict[str, Callable[[dict], None]] = {}


def register(kind: str) -> Callable[[Callable[[dict], None]], Callable[[dict], None]]:
    def wrap(fn: Callable[[dict], None]) -> Callable[[dict], None]:
        HANDLERS[kind] = fn
        return fn

    return wrap


def enqueue(kind: str, payload: dict, run_after_seconds: int = 0) -> int:
    with SessionLocal.begin() as db:
        return db.execute(
            text(
                "INSERT INTO jobs (kind, payload, run_after) "
                "VALUES (:kind, :payload, now() + make_interval(secs => :delay)) RETURNING id"
            ),
            {"kind": kind, "payload": json.dumps(payload), "delay": run_after_seconds},
        ).scalar_one()


def claim_next() -> tuple[int, str, dict, int] | None:
    with SessionLocal.begin() as db:
        row = db.execute(
            text(
                "SELECT id, kind, payload, attempts FROM jobs "
                "WHERE status = 'queued' AND run_after <= now() "
                "ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
        ).first()
        if row is None:
            return None
        db.execute(
            text("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                 "started_at = now() WHERE id = :id"),
            {"id": row.id},
        )
        return row.id, row.kind, json.loads(row.payload), row.attempts + 1


def finish(job_id: int, error: str | None, attempts: int) -> None:
    if error is None:
        status, delay = "done", 0
    elif attempts >= settings.JOB_MAX_ATTEMPTS:
        status, delay = "failed", 0
    else:
        status, delay = "queued", 30 * 2 ** (attempts - 1)
    with SessionLocal.begin() as db:
        db.execute(
            text("UPDATE jobs SET status = :status, last_error = :error, finished_at = now(), "
                 "run_after = now() + make_interval(secs => :delay) WHERE id = :id"),
            {"status": status, "error": error, "delay": delay, "id": job_id},
        )
