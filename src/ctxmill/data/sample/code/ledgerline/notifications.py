"""Customer emails. Called only after the database commit (see conventions)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def send_receipt(invoice_id: int | str) -> None:
    log.info("receipt email queued", extra={"invoice_id": invoice_id})


def send_dunning(invoice_id: int | str) -> None:
    log.info("dunning email queued", extra={"invoice_id": invoice_id})
