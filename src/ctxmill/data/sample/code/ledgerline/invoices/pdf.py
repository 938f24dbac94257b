"""Invoice PDFs: rendered by the job worker, never in the API process.

The API enqueues an ``invoice_pdf`` job; ``ledgerline worker`` picks it up
(see ledgerline/jobs/). Rendering takes 2-4 s per invoice and must not hold a
database connection while it runs.
"""

from __future__ import annotations

from ledgerline.db.models import Invoice
from ledgerline.db.session import SessionLocal
from ledgerline.jobs.queue import enqueue, register

JOB_KIND = "invoice_pdf"


def enqueue_invoice_pdf(invoice_id: int | str) -> int:
    return enqueue(JOB_KIND, {"invoice_id": int(invoice_id)})


def render_invoice_pdf(invoice: dict) -> bytes:
    from ledgerline.invoices import _template  # weasyprint is slow to import

    return _template.render(invoice)


@register(JOB_KIND)
def run_invoice_pdf_job(payload: dict) -> None:
    with SessionLocal() as db:  # short read, then release the connection
        invoice = db.get(Invoice, payload["invoice_id"]).as_dict()
    pdf = render_invoice_pdf(invoice)
    with SessionLocal.begin() as db:
        db.get(Invoice, payload["invoice_id"]).pdf_blob = pdf
