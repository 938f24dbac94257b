"""Daily prune of webhook_events older than WEBHOOK_EVENTS_RETENTION_DAYS.

Was a Celery beat task until June 2026; now a self-rescheduling job.
"""

from __future__ import annotations

from sqlalchemy import text

from ledgerline import settings
from ledgerline.db.session import SessionLocal
from ledgerline.jobs.queue import enqueue, register

JOB_KIND = "prune_webhook_events"


@register(JOB_KIND)
def prune_webhook_events(payload: dict) -> None:
    with SessionLocal.begin() as db:
        db.execute(
            text("DELETE FROM webhook_events WHERE received_at < now() - make_interval(days => :d)"),
            {"d": settings.WEBHOOK_EVENTS_RETENTION_DAYS},
        )
    enqueue(JOB_KIND, {}, run_after_seconds=24 * 3600)
