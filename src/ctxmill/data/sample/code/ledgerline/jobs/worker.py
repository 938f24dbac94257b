"""`ledgerline worker`: runs queued jobs. Same image as the API, separate deployment.

Concurrency is WORKER_CONCURRENCY threads (default 4), kept well under the
database pool (DB_POOL_SIZE 10 + DB_MAX_OVERFLOW 5): a handler holds a connection
only for its short reads and writes.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ledgerline import settings
from ledgerline.jobs import queue
from ledgerline.invoices import pdf  # noqa: F401  (registers invoice_pdf)
from ledgerline.webhooks import retention  # noqa: F401  (registers prune_webhook_events)

log = logging.getLogger(__name__)


def _run_one() -> bool:
    claimed = queue.claim_next()
    if claimed is None:
        return False
    job_id, kind, payload, attempts = claimed
    try:
        queue.HANDLERS[kind](payload)
    except Exception:
        log.exception("job %s (%s) failed, attempt %s", job_id, kind, attempts)
        queue.finish(job_id, traceback.format_exc(limit=5), attempts)
    else:
        queue.finish(job_id, None, attempts)
    return True


def _loop() -> None:
    while True:
        if not _run_one():
            time.sleep(settings.JOB_POLL_INTERVAL_SECONDS)


def main() -> None:
    with ThreadPoolExecutor(max_workers=settings.WORKER_CONCURRENCY) as pool:
        for _ in range(settings.WORKER_CONCURRENCY):
            pool.submit(_loop)
