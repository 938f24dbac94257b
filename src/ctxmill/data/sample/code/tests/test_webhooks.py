"""Stripe webhook idempotency: the same event delivered twice is processed once."""

from __future__ import annotations

import json
import threading

from sqlalchemy import text

from ledgerline.db.session import SessionLocal
from ledgerline.webhooks.retention import prune_webhook_events
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


def test_concurrent_deliveries_process_once(clean_db):
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def deliver() -> None:
        with SessionLocal() as db, db.begin():
            barrier.wait()
            results.append(record_event(db, "evt_test_race", "invoice.paid"))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == [False, True]


def test_prune_keeps_recent_events(clean_db):
    with SessionLocal.begin() as db:
        db.execute(text("INSERT INTO webhook_events (event_id, type, received_at) VALUES "
                        "('evt_old', 'invoice.paid', now() - interval '91 days'), "
                        "('evt_new', 'invoice.paid', now() - interval '89 days')"))
    prune_webhook_events({})
    with SessionLocal() as db:
        left = db.execute(text("SELECT event_id FROM webhook_events")).scalars().all()
    assert left == ["evt_new"]
