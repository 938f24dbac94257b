"""Stripe webhook idempotency: the same event delivered twice is processed once."""

from __future__ import annotations

import json

from ledgerline.webhooks.stripe import record_event


def test_second_delivery_is_a_duplicate(db):
    assert record_event(db, "evt_test_0001", "invoice.paid") is True
    assert record_event(db, "evt_test_0001", "invoice.paid") is False


def test_duplicate_delivery_returns_200(client, signed):
    body = json.dumps({"id": "evt_test_0002", "type": "invoice.payment_failed",
                       "data": {"object": {"id": "in_test_9"}}}).encode()
    first = client.post("/webhooks/stripe", content=body, headers=signed(body))
    second = client.post("/webhooks/stripe", content=body, headers=signed(body))
    assert first.json() == {"status": "processed"}
    assert second.status_code == 200 and second.json() == {"status": "duplicate"}
