"""Stripe webhooks.

Stripe delivers at least once and retries when we answer slowly (>10s) or non-2xx,
so the same event can arrive twice, on different pods, seconds apart. Idempotency:
the event id is inserted into webhook_events (UNIQUE event_id) in the same
transaction as the side effects; a conflict means "already processed" and we answer
200 without doing anything. Emails go out only after the commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.orm import Session

from ledgerline import settings
from ledgerline.db.session import get_db
from ledgerline.invoices.pdf import enqueue_invoice_pdf
from ledgerline.notifications import send_dunning, send_receipt

router = APIRouter()

SIGNATURE_TOLERANCE_SECONDS = 300


def verify_signature(payload: bytes, header: str, secret: str) -> None:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, signature = parts.get("t"), parts.get("v1")
    if not timestamp or not signature:
        raise HTTPException(400, "malformed Stripe-Signature")
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        raise HTTPException(400, "stale webhook")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature):
        raise HTTPException(400, "bad signature")


def record_event(db: Session, event_id: str, event_type: str) -> bool:
    """True when this delivery is the first one for event_id."""
    row = db.execute(
        text(
            "INSERT INTO webhook_events (event_id, type) VALUES (:id, :type) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ),
        {"id": event_id, "type": event_type},
    ).first()
    return row is not None


@router.post("/stripe")
async def stripe_webhook(
    request: Request,
    stripe_signature: str = Header(alias="Stripe-Signature"),
    db: Session = Depends(get_db),
):
    payload = await request.body()
    verify_signature(payload, stripe_signature, settings.STRIPE_WEBHOOK_SECRET)
    event = json.loads(payload)
    with db.begin():
        if not record_event(db, event["id"], event["type"]):
            return {"status": "duplicate"}
        after_commit = handle_event(db, event)
    for action in after_commit:
        action()
    return {"status": "processed"}


def handle_event(db: Session, event: dict) -> list:
    """Apply the event inside the open transaction; return the after-commit actions."""
    obj = event["data"]["object"]
    invoice_id = obj.get("metadata", {}).get("ledgerline_invoice_id")
    if event["type"] == "invoice.paid":
        db.execute(
            text("UPDATE invoices SET status = 'paid', paid_at = now() WHERE stripe_invoice_id = :sid"),
            {"sid": obj["id"]},
        )
        db.execute(
            text("INSERT INTO ledger_entries (invoice_id, kind, amount_cents, stripe_event_id) "
                 "VALUES (:inv, 'payment', :amount, :evt)"),
            {"inv": invoice_id, "amount": obj["amount_paid"], "evt": event["id"]},
        )
        return [lambda: send_receipt(invoice_id), lambda: enqueue_invoice_pdf(invoice_id)]
    if event["type"] == "invoice.payment_failed":
        db.execute(
            text("UPDATE invoices SET status = 'payment_failed' WHERE stripe_invoice_id = :sid"),
            {"sid": obj["id"]},
        )
        return [lambda: send_dunning(invoice_id)]
    return []
