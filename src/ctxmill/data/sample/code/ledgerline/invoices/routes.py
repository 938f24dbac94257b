"""Invoice endpoints for signed-in users (scoped to the user's organisation)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy.orm import Session

from ledgerline.auth.session import CurrentUser, get_current_user
from ledgerline.db.models import Invoice
from ledgerline.db.session import get_db
from ledgerline.invoices.pdf import enqueue_invoice_pdf

router = APIRouter()


@router.get("")
def list_invoices(user: CurrentUser = Depends(get_current_user), db: Session = Depends(get_db)):
    rows = db.query(Invoice).filter_by(org_id=user.org_id).order_by(Invoice.issued_at.desc())
    return [inv.as_dict() for inv in rows.limit(100)]


@router.get("/{invoice_id}")
def get_invoice(invoice_id: int, user: CurrentUser = Depends(get_current_user),
                db: Session = Depends(get_db)):
    inv = db.get(Invoice, invoice_id)
    if inv is None or inv.org_id != user.org_id:
        raise HTTPException(404, "no such invoice")
    return inv.as_dict()


@router.post("/{invoice_id}/pdf", status_code=202)
def request_pdf(invoice_id: int, user: CurrentUser = Depends(get_current_user),
                db: Session = Depends(get_db)):
    inv = db.get(Invoice, invoice_id)
    if inv is None or inv.org_id != user.org_id:
        raise HTTPException(404, "no such invoice")
    enqueue_invoice_pdf(inv.id)
    return {"queued": True}
